"""MPII PCKh (posebench.eval.mpii): against a re-implementation of HRNet's evaluate (masked arrays, as the original),
hand-computed cases, both head normalisers, and the MPII sample."""
import numpy as np
import pytest

from posebench.core import MPII16
from posebench.data.readers import read_mpii
from posebench.eval.mpii import head_size_from_boxes, head_size_from_joints, mpii_pckh

SC_BIAS = 0.6


def hrnet_pckh(preds, pos_gt, jnt_visible, headboxes, threshold):
    "HRNet lib/dataset/mpii.py evaluate, with its (K, 2, N) / (2, 2, N) layouts."
    pos_pred_src = np.transpose(preds, [1, 2, 0])
    pos_gt_src = np.transpose(pos_gt, [1, 2, 0])
    headboxes_src = np.transpose(headboxes, [1, 2, 0])
    jnt_visible = jnt_visible.T
    uv_err = np.linalg.norm(pos_pred_src - pos_gt_src, axis=1)
    headsizes = np.linalg.norm(headboxes_src[1, :, :] - headboxes_src[0, :, :], axis=0) * SC_BIAS
    scaled = np.multiply(np.divide(uv_err, headsizes * np.ones((len(uv_err), 1))), jnt_visible)
    jnt_count = np.sum(jnt_visible, axis=1)
    less = np.multiply(scaled <= threshold, jnt_visible)
    PCKh = np.divide(100. * np.sum(less, axis=1), jnt_count)
    PCKh = np.ma.array(PCKh, mask=False); PCKh.mask[6:8] = True
    jc = np.ma.array(jnt_count, mask=False); jc.mask[6:8] = True
    ratio = jc / np.sum(jc).astype(np.float64)
    j = {n: MPII16.index(n) for n in MPII16.keypoints}
    two = lambda a, b: 0.5 * (PCKh[j[a]] + PCKh[j[b]])  # noqa: E731
    return {'Head': PCKh[j['head_top']], 'Shoulder': two('l_shoulder', 'r_shoulder'), 'Elbow': two('l_elbow', 'r_elbow'),
            'Wrist': two('l_wrist', 'r_wrist'), 'Hip': two('l_hip', 'r_hip'), 'Knee': two('l_knee', 'r_knee'),
            'Ankle': two('l_ankle', 'r_ankle'), 'Mean': np.sum(PCKh * ratio)}, np.asarray(PCKh.data)


@pytest.mark.parametrize('seed', range(3))
def test_matches_hrnet_evaluate(seed):
    rng = np.random.default_rng(seed)
    N = 40
    gt = rng.uniform(0, 500, (N, 16, 2))
    vis = (rng.uniform(size=(N, 16)) > 0.15).astype(float)
    tl = rng.uniform(0, 400, (N, 2)); hb = np.stack([tl, tl + rng.uniform(20, 80, (N, 2))], 1)  # (N, 2, 2)
    hs = head_size_from_boxes(hb)
    pred = gt + rng.normal(0, 1, gt.shape) * hs[:, None, None] * rng.uniform(0, 0.6, (N, 16, 1))
    rep = mpii_pckh(pred, gt, vis, head_boxes=hb, alphas=(0.5, 0.1))
    for a in (0.5, 0.1):
        groups, per = hrnet_pckh(pred, gt, vis, hb, a)
        for g, v in groups.items(): assert rep['groups'][f'PCKh@{a:g}'][g] == pytest.approx(v / 100, abs=1e-12), (a, g)
        np.testing.assert_allclose(list(rep['per_joint'][f'PCKh@{a:g}'].values()), per / 100, rtol=1e-12)
    assert rep[f'PCKh@{0.5:g}'] == rep['groups']['PCKh@0.5']['Mean']


def test_hand_computed():
    rng = np.random.default_rng(0)
    gt = rng.uniform(100, 400, (2, 16, 2)); vis = np.ones((2, 16)); vis[1, [0, 9]] = 0
    ratio = np.stack([0.04 * np.arange(16), np.full(16, 0.3)])
    ang = rng.uniform(0, 2 * np.pi, (2, 16))
    pred = gt + (ratio * np.array([30., 60.])[:, None])[..., None] * np.stack([np.cos(ang), np.sin(ang)], -1)
    pred[1, [0, 9]] = np.nan  # unlabelled: anything, NaN included
    rep = mpii_pckh(pred, gt, vis, head_boxes=[[100, 100, 130, 140], [0, 0, 60, 80]])
    assert rep['PCKh@0.5'] == 23 / 26 and rep['PCKh@0.1'] == 3 / 26
    assert rep['groups']['PCKh@0.5']['Shoulder'] == 0.75 and rep['groups']['PCKh@0.5']['Head'] == 1.
    assert rep['count']['head_top'] == 1 and rep['boxes'] == 'gt'
    assert '| PCKh@0.5 | 100.0 | 75.0 | 75.0 | 75.0 | 100.0 | 100.0 | 100.0 | 88.5 |' in str(rep)
    assert '0.6 x head-box diagonal (official)' in str(rep).splitlines()[0]


def test_head_neck_fallback_and_errors():
    gt = np.zeros((2, 16, 2)); gt[:, 8] = [50, 70]; gt[:, 9] = [50, 40]; vis = np.ones((2, 16))
    np.testing.assert_array_equal(head_size_from_joints(gt, vis), [30., 30.])
    pred = gt.copy(); pred[0, 0] += [15, 0]; pred[1, 0] += [15.001, 0]  # exactly 0.5 x 30, and a hair more
    rep = mpii_pckh(pred, gt, vis, head_norm='head_neck')
    assert rep['per_joint']['PCKh@0.5']['r_ankle'] == 0.5 and rep['per_joint']['PCKh@0.1']['r_ankle'] == 0.
    assert 'fallback, not the official normaliser' in str(rep)
    vis[1, 8] = 0
    with pytest.raises(ValueError, match=r'head size \(head_neck\) of person 1 is nan \(head_top or upper_neck unlabelled\)'):
        mpii_pckh(pred, gt, vis, head_norm='head_neck')
    with pytest.raises(ValueError, match='the official PCKh needs head boxes'):
        mpii_pckh(pred, gt, vis)
    bad = pred.copy(); bad[0, 15, 0] = np.inf
    with pytest.raises(ValueError, match=r'pred: non-finite value inf at person 0, keypoint 15 \(l_wrist\)'):
        mpii_pckh(bad, gt, np.ones((2, 16)), head_norm='head_neck')


def test_mpii_sample(shared):
    mp = read_mpii(shared / 'samples/mpii/test_mpii.json')
    rep = mpii_pckh(mp.kpts, mp.kpts, mp.vis, head_norm='head_neck')
    assert rep['PCKh@0.5'] == 1. and rep['PCKh@0.1'] == 1. and rep['n_persons'] == len(mp)
    assert rep['count'] == dict(zip(MPII16.keypoints, (mp.vis > 0).sum(0).tolist()))
    hs = head_size_from_joints(mp.kpts, mp.vis)
    moved = mp.kpts + 0.2 * hs[:, None, None] * np.array([0.6, 0.8])
    rep = mpii_pckh(moved, mp.kpts, mp.vis, head_norm='head_neck', alphas=(0.5, 0.21, 0.19))
    assert (rep['PCKh@0.5'], rep['PCKh@0.21'], rep['PCKh@0.19']) == (1., 1., 0.)
