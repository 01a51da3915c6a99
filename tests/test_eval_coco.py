"""COCO keypoint evaluation (posebench.eval.coco): OKS against pycocotools, HRNet's rescoring and OKS-NMS against
loop re-implementations of the original code, hand-computed AP, result files, and real data from ../shared/data."""
import json

import numpy as np
import pytest

from posebench.core import COCO17, schema_to_coco_category
from posebench.data.readers import AnnotationError, read_coco, read_detections
from posebench.eval.coco import (KeypointResults, coco_eval, crop_area, displace_for_oks, nms_oks, oks, oks_nms, rescore,
                                 run_cocoeval, topdown_results)

SIG = np.array(COCO17.sigmas)


# ------------------------------------------------------------------ the original code's semantics, as loops

def hrnet_oks_iou(g, d, a_g, a_d, sigmas, in_vis_thre=None):
    "HRNet lib/nms/nms.py oks_iou: g (K*3,), d (M, K*3); the list `and` keeps only the second mask."
    vars_ = (sigmas * 2) ** 2
    xg, yg, vg = g[0::3], g[1::3], g[2::3]
    ious = np.zeros(d.shape[0])
    for n in range(d.shape[0]):
        xd, yd, vd = d[n, 0::3], d[n, 1::3], d[n, 2::3]
        e = ((xd - xg) ** 2 + (yd - yg) ** 2) / vars_ / ((a_g + a_d[n]) / 2 + np.spacing(1)) / 2
        if in_vis_thre is not None:
            ind = list(vg > in_vis_thre) and list(vd > in_vis_thre)
            e = e[ind]
        ious[n] = np.sum(np.exp(-e)) / e.shape[0] if e.shape[0] != 0 else 0.0
    return ious


def hrnet_oks_nms(kpts3, scores, areas, thresh, sigmas, in_vis_thre=None):
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        ovr = hrnet_oks_iou(kpts3[i], kpts3[order[1:]], areas[i], areas[order[1:]], sigmas, in_vis_thre)
        order = order[np.where(ovr <= thresh)[0] + 1]
    return keep


def hrnet_rescore(kpt_scores, box_score, thr=0.2):
    s, n = 0, 0
    for t in kpt_scores:
        if t > thr: s += t; n += 1
    return box_score * (s / n if n else 0)


# ------------------------------------------------------------------ unit level

@pytest.mark.parametrize('seed', range(4))
def test_oks_nms_matches_hrnet_loop(seed):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 300, (4, 17, 2))
    k = np.concatenate([base + rng.normal(0, s, base.shape) for s in (0.5, 2, 6)])  # near-duplicates of 4 persons
    sc, ks, ar = rng.uniform(0, 1, len(k)), rng.uniform(0, 1, (len(k), 17)), rng.uniform(2000, 20000, len(k))
    k3 = np.concatenate([k, ks[..., None]], -1).reshape(len(k), -1)
    for thr in (0.5, 0.9):
        for vt in (None, 0.3):
            assert oks_nms(k, sc, ar, thr, SIG, ks, vt).tolist() == hrnet_oks_nms(k3, sc, ar, thr, SIG, vt)
    M = nms_oks(k, ar, SIG, ks, 0.3)
    for i in range(len(k)):
        np.testing.assert_allclose(M[i], hrnet_oks_iou(k3[i], k3, ar[i], ar, SIG, 0.3), rtol=1e-12)


def test_oks_nms_hand_case():
    A = np.random.default_rng(1).uniform(100, 200, (17, 2))
    P = np.stack([A, displace_for_oks(A, 5000., SIG, 0.95), displace_for_oks(A, 5000., SIG, 0.85, np.pi), A + 1000])
    a = np.full(4, 5000.)
    assert oks_nms(P, [0.8, 0.9, 0.7, 0.6], a).tolist() == [1, 2, 3]      # B kept, A (0.95) dropped, C vs B ≈ 0.64 kept
    assert oks_nms(P, [0.9, 0.8, 0.7, 0.6], a, thr=0.8).tolist() == [0, 3]


def test_rescore_matches_hrnet_loop():
    rng = np.random.default_rng(0)
    s = rng.uniform(0, 0.5, (50, 17)); s[3] = 0.1; s[4, :5] = 0.2  # one with no score above 0.2; exactly 0.2 excluded
    b = rng.uniform(0, 1, 50)
    np.testing.assert_allclose(rescore(s, b), [hrnet_rescore(si, bi) for si, bi in zip(s, b)], rtol=1e-12)
    assert rescore(s, b)[3] == 0


def test_crop_area_is_hrnets_scale_product():
    box = np.array([[10., 20., 30., 100.], [0., 0., 120., 60.]])
    ar = 192 / 256
    # HRNet _xywh2cs: widen or heighten to the aspect ratio, then x1.25; area = prod(scale * 200)
    exp = [(100 * ar) * 100 * 1.25 ** 2, 120 * (120 / ar) * 1.25 ** 2]
    np.testing.assert_allclose(crop_area(box, ar), exp, rtol=1e-12)


def _one_image_coco(tmp_path, persons):
    anns = [dict(id=i + 1, image_id=1, category_id=1, iscrowd=0, bbox=b, area=a, num_keypoints=17,
                 keypoints=np.concatenate([k, np.full((17, 1), 2.)], 1).ravel().tolist()) for i, (k, b, a) in enumerate(persons)]
    d = dict(images=[dict(id=1, file_name='x.jpg', width=640, height=480)], annotations=anns, categories=[schema_to_coco_category(COCO17)])
    (tmp_path / 'gt.json').write_text(json.dumps(d))
    return read_coco(tmp_path / 'gt.json', check_images=False)


def test_two_person_ap_by_hand(tmp_path):
    rng = np.random.default_rng(3)
    g = np.stack([rng.uniform(50, 250, (17, 2)), rng.uniform(350, 600, (17, 2))]).astype(np.float32).astype(np.float64)
    areas = np.array([4000., 9000.])
    gt = _one_image_coco(tmp_path, [(g[0], [50, 50, 200, 200], 4000.), (g[1], [350, 50, 250, 400], 9000.)])
    pred = np.stack([displace_for_oks(g[i], areas[i], SIG, t, angle=0.7) for i, t in enumerate([0.82, 0.62])])
    np.testing.assert_allclose(np.diag(oks(pred, g, np.ones((2, 17)), areas, SIG)), [0.82, 0.62], rtol=1e-9)
    res = KeypointResults([1, 1], pred, np.ones((2, 17)), [0.9, 0.8], 'gt')
    np.testing.assert_allclose(run_cocoeval(gt.coco, res, SIG).ious[1, 1], oks(pred, g, np.ones((2, 17)), areas, SIG), rtol=1e-9)
    rep = coco_eval(gt, res)
    assert rep['AP'] == pytest.approx((3 + 4 * 51 / 101) / 10, abs=1e-12)
    assert rep['AP50'] == 1 and rep['AP75'] == pytest.approx(51 / 101, abs=1e-12) and rep['AR'] == pytest.approx(0.5)
    assert rep['boxes'] == 'gt' and 'boxes: gt (ground-truth boxes)' in str(rep)


def test_results_json_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    r = KeypointResults(np.array([5, 9]), rng.uniform(0, 500, (2, 17, 2)), rng.uniform(0, 1, (2, 17)), [0.3, 0.8], 'detector')
    f = r.write(tmp_path / 'sub' / 'res.json')
    raw = json.loads(f.read_text())
    assert [set(e) for e in raw] == [{'image_id', 'category_id', 'keypoints', 'score'}] * 2 and len(raw[0]['keypoints']) == 51
    assert raw[1]['keypoints'][:3] == [r.kpts[1, 0, 0], r.kpts[1, 0, 1], r.kpt_scores[1, 0]] and raw[1]['image_id'] == 9
    assert raw[1]['keypoints'][3] == r.kpts[1, 1, 0] and raw[1]['score'] == 0.8
    r2 = KeypointResults.read(f, boxes='detector', n_kpts=17)
    for a in ('image_id', 'kpts', 'kpt_scores', 'score'): np.testing.assert_array_equal(getattr(r2, a), getattr(r, a))
    raw[1]['keypoints'] = raw[1]['keypoints'][:-3]
    (tmp_path / 'bad.json').write_text(json.dumps(raw))
    with pytest.raises(AnnotationError, match=r"bad.json: result #1 \(image_id=9\): field 'keypoints': expected 51 values \(17 keypoints x 3\), got 48"):
        KeypointResults.read(tmp_path / 'bad.json', boxes='gt', n_kpts=17)
    with pytest.raises(ValueError, match='kpt_scores: non-finite value nan at person 0, keypoint 3'):
        s = r.kpt_scores.copy(); s[0, 3] = np.nan
        KeypointResults(r.image_id, r.kpts, s, r.score, 'gt')


# ------------------------------------------------------------------ real data

def test_perfect_predictions_on_coco_mini_val_give_ap_1(shared):
    val = read_coco(shared / 'coco-mini/annotations/person_keypoints_val2017.json')
    res = KeypointResults([r.image_id for r in val], val.kpts, np.ones(val.vis.shape), np.ones(len(val)), 'gt')
    rep = coco_eval(val, res)
    assert (rep['AP'], rep['AP50'], rep['AP75'], rep['AR']) == (1., 1., 1., 1.)
    assert rep['n_images'] == len(val.images) and rep['n_results'] == len(val)


def test_oks_equals_pycocotools_on_coco_mini(shared):
    val = read_coco(shared / 'coco-mini/annotations/person_keypoints_val2017.json')
    rng = np.random.default_rng(0)
    pred = val.kpts + rng.normal(0, 4, val.kpts.shape)
    res = KeypointResults([r.image_id for r in val], pred, np.ones(val.vis.shape), rng.uniform(0.1, 1, len(val)), 'gt')
    E = run_cocoeval(val.coco, res, SIG)
    raw = {a['id']: a for a in val.coco.dataset['annotations']}
    n = 0
    for (img, _), ious in E.ious.items():
        if len(ious) == 0: continue
        dts = sorted(E._dts[img, 1], key=lambda d: -d['score'])
        gts = [raw[g['id']] for g in E._gts[img, 1]]
        gk = np.array([g['keypoints'] for g in gts], float).reshape(len(gts), 17, 3)
        dk = np.array([d['keypoints'] for d in dts], float).reshape(len(dts), 17, 3)
        mine = oks(dk[..., :2], gk[..., :2], gk[..., 2], [g['area'] for g in gts], SIG)
        lab = gk[..., 2].sum(1) > 0  # keypoint-less persons: COCO uses a box distance, we give NaN
        np.testing.assert_allclose(mine[:, lab], ious[:, lab], rtol=1e-9, atol=1e-12)
        n += lab.sum()
    assert n >= len(val)


def test_detector_boxes_rescoring_and_nms_on_sample(shared):
    ann = read_coco(shared / 'samples/coco/test_coco.json')
    det = read_detections(shared / 'samples/coco/test_coco_det_AP_H_56.json', ann)
    gtb, gimg = np.stack([r.bbox for r in ann]), np.array([r.image_id for r in ann])
    lo = np.maximum(det.bbox[:, None, :2], gtb[None, :, :2])
    hi = np.minimum(det.bbox[:, None, :2] + det.bbox[:, None, 2:], gtb[None, :, :2] + gtb[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), -1)
    iou = inter / (np.prod(det.bbox[:, None, 2:], -1) + np.prod(gtb[None, :, 2:], -1) - inter)
    idx = np.where(det.image_id[:, None] == gimg[None], iou, -1).argmax(1)
    ks = np.full((len(det), 17), 0.9)
    res = topdown_results(det.image_id, ann.kpts[idx], ks, det.score, crop_area(det.bbox, 0.75), boxes='detector', sigmas=SIG)
    assert len(res) == len(ann) and res.steps == ('rescore(kpt_thr=0.2)', f'oks_nms(thr=0.9): {len(det)} -> {len(ann)}')
    assert (np.abs(res.score[:, None] - 0.9 * det.score[None].astype(float)).min(1) < 1e-12).all()  # box score x mean kpt score 0.9
    rep = coco_eval(ann, res)
    assert rep['AP'] == 1. and rep['boxes'] == 'detector' and 'boxes: detector (detector boxes)' in rep.summary()
    assert 'oks_nms(thr=0.9)' in rep.summary().splitlines()[0]
    raw = topdown_results(det.image_id, ann.kpts[idx], ks, det.score, crop_area(det.bbox, 0.75), boxes='detector', sigmas=SIG, rescore=False, nms=False)
    assert coco_eval(ann, raw)['AP'] < 1 and len(raw) == len(det)


def test_bench_still_works_and_agrees(shared):
    from posebench.codecs.bench import coco_keypoint_ap, coco_results
    val = read_coco(shared / 'samples/coco/test_coco.json')
    rng = np.random.default_rng(1)
    k = val.kpts + rng.normal(0, 3, val.kpts.shape)
    s = np.ones(val.vis.shape)
    old = coco_keypoint_ap(val.coco, coco_results(val, k, s))
    new = coco_eval(val, KeypointResults([r.image_id for r in val], k, s, np.ones(len(val)), 'gt'))
    assert old['AP'] == pytest.approx(100 * new['AP'], abs=1e-9)


def test_empty_results_to_coco():
    from posebench.eval.coco import KeypointResults
    r = KeypointResults(np.zeros(0, np.int64), np.zeros((0, 17, 2)), np.zeros((0, 17)), np.zeros(0), 'gt')
    assert len(r) == 0 and r.to_coco() == []
