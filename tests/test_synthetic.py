"""Synthetic people (posebench.data.synthetic): sub-pixel registration, annotations that agree with the pixels,
COCO files pycocotools loads, determinism, statistics and a learnable left/right cue."""
import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from posebench.core import COCO17, MPII16, KeypointSchema
from posebench.data import synthetic as syn
from posebench.data.synthetic import SynthConfig, ensure_synthetic, make_synthetic_coco, render_scene

CFG = SynthConfig()
W, H = CFG.size


@pytest.fixture(scope='module')
def scenes():
    return [render_scene(CFG, np.random.default_rng([7, i])) for i in range(200)]


def _centroid(w):
    yy, xx = np.mgrid[:w.shape[0], :w.shape[1]]
    return np.array([(w * xx).sum(), (w * yy).sum()]) / w.sum()


def test_subpixel_registration():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48].astype(np.float64)
    for _ in range(100):
        a, b, r = rng.uniform(14, 34, 2), rng.uniform(14, 34, 2), rng.uniform(1.5, 6)
        disc = syn.coverage(syn.sdf_capsule(xx, yy, a, a, r, r)[0])
        limb = syn.coverage(syn.sdf_capsule(xx, yy, a, b, r, r)[0])
        assert np.abs(_centroid(disc) - a).max() < 0.01
        assert np.abs(_centroid(limb) - (a + b) / 2).max() < 0.01
        assert abs(disc.sum() / (np.pi * (r * r + (np.pi * syn.EDGE_TAU) ** 2 / 3)) - 1) < 0.01  # soft edge adds pi^3 tau^2 / 3


def test_rendered_joint_is_centred_on_its_keypoint():
    "A lone hand (a capsule ending at the wrist) drawn by the scene painter puts its round end on the wrist."
    rng = np.random.default_rng(1)
    for _ in range(20):
        w = rng.uniform(20, 40, 2); r = rng.uniform(2, 5)
        img = np.zeros((64, 64, 3), np.float32)
        syn._paint(img, dict(kind='capsule', geom=(w, w, r, r), colour=np.full(3, 255.)), np.ones((64, 64, 1), np.float32))
        assert np.abs(_centroid(img[..., 0]) - w).max() < 0.05  # shading is symmetric about the centre too


def test_annotations_agree_with_pixels(scenes):
    face = np.isin(syn.schema_joints(COCO17), [syn.JOINTS.index(f) for f in ('nose', 'l_eye', 'r_eye', 'l_ear', 'r_ear')])
    for img, p in scenes:
        assert img.shape == (H, W, 3) and img.dtype == np.uint8
        assert not (p['masks'].sum(0) > 1).any()
        for kp, v, own, m, bb, area in zip(p['kpts'], p['vis'], p['kpt_layer'], p['masks'], p['bbox'], p['area']):
            assert ((kp[v > 0] >= 0) & (kp[v > 0] <= (W - 1, H - 1))).all() and (kp[v == 0] == 0).all()
            x, y = np.rint(kp).astype(int).T
            seen = (p['layer_map'][y, x] <= own) & m[y, x]
            assert seen[v == 2].all() and not seen[v == 1].any()
            assert m[y, x][(v == 2) & ~face].all()
            ys, xs = np.nonzero(m)
            assert list(bb) == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1] and area == m.sum()
            assert bb[0] >= 0 and bb[1] >= 0 and bb[0] + bb[2] <= W and bb[1] + bb[3] <= H


def test_statistics(scenes):
    n_per = np.array([len(p['area']) for _, p in scenes])
    vis = np.concatenate([p['vis'] for _, p in scenes])
    box_h = np.concatenate([p['bbox'][:, 3] for _, p in scenes]) / H
    assert set(np.unique(n_per)) >= set(range(1, CFG.n_persons[1] + 1))
    assert np.percentile(box_h, 10) < .2 and np.percentile(box_h, 90) > .6
    assert .1 < np.mean([(v == 0).any() for v in vis]) < .6  # truncated persons
    assert .3 < np.mean([(v == 1).any() for v in vis]) < .99  # persons with a hidden keypoint
    assert .1 < (vis == 1).sum() / (vis > 0).sum() < .45


def _warmth(scenes, side):
    k = COCO17.index(f'{side}_wrist')
    return np.array([img[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).astype(float).mean(0) @ (1, 0, -1)
                     for img, p in scenes for kp, v in zip(p['kpts'], p['vis']) if v[k] == 2
                     for x, y in [np.rint(kp[k]).astype(int).clip(1, (W - 2, H - 2))]])


def test_left_right_cue(scenes):
    assert _warmth(scenes, 'left').mean() - _warmth(scenes, 'right').mean() > 100
    plain = [render_scene(SynthConfig(side_tint=0), np.random.default_rng([7, i])) for i in range(100)]
    assert abs(_warmth(plain, 'left').mean() - _warmth(plain, 'right').mean()) < 25


def test_other_schemas():
    img, p = render_scene(SynthConfig(schema=MPII16), np.random.default_rng(3))
    assert p['kpts'].shape[1:] == (16, 2) and p['vis'].shape[1] == 16
    with pytest.raises(ValueError, match=r"no joint for keypoints \['tail'\]"):
        render_scene(SynthConfig(schema=KeypointSchema('pet', ('nose', 'tail'), (), (), (.1, .1))), 0)


def test_coco_files_and_determinism(tmp_path):
    js = make_synthetic_coco(tmp_path / 'a', 'train', 24, seed=0, workers=1)
    coco = COCO(str(js))
    assert len(coco.getImgIds()) == 24 and len(list((tmp_path / 'a/images/train').glob('*.jpg'))) == 24
    assert coco.loadCats(1)[0]['keypoints'] == list(COCO17.keypoints)
    for a in coco.loadAnns(coco.getAnnIds()):
        k = np.array(a['keypoints']).reshape(-1, 3)
        assert a['num_keypoints'] == (k[:, 2] > 0).sum() and (k[k[:, 2] == 0, :2] == 0).all()
        assert coco.annToMask(a).sum() == a['area'] and a['iscrowd'] == 0
    same = make_synthetic_coco(tmp_path / 'b', 'train', 24, seed=0, workers=2)
    other = make_synthetic_coco(tmp_path / 'c', 'train', 24, seed=1, workers=2)
    assert js.read_bytes() == same.read_bytes() and js.read_bytes() != other.read_bytes()
    val = make_synthetic_coco(tmp_path / 'a', 'val', 24, seed=0, workers=1)  # another split, other images
    assert json.loads(val.read_text())['annotations'] != json.loads(js.read_text())['annotations']


def test_ensure_synthetic(tmp_path, monkeypatch):
    monkeypatch.setenv('POSEBENCH_DATA', str(tmp_path))
    root = ensure_synthetic(n_train=6, n_val=3, verbose=False)
    assert root.parent == tmp_path and root.name.startswith('synthetic-')  # not the default size: its own folder
    man = json.loads((root / 'manifest.json').read_text())
    assert man['version'] == syn.GENERATOR_VERSION and man['counts'] == dict(train=6, val=3) and man['seed'] == 0
    stamp = (root / 'annotations/person_keypoints_val.json').stat().st_mtime_ns
    assert ensure_synthetic(n_train=6, n_val=3) == root  # unchanged: nothing rewritten
    assert (root / 'annotations/person_keypoints_val.json').stat().st_mtime_ns == stamp
    small = ensure_synthetic(n_train=4, n_val=3, verbose=False)  # another size: another folder, the first one untouched
    assert small != root and len(list((small / 'images/train').glob('*.jpg'))) == 4
    assert (root / 'annotations/person_keypoints_val.json').stat().st_mtime_ns == stamp
    assert ensure_synthetic(root, n_train=4, n_val=3, verbose=False) == root  # an explicit folder is regenerated to the request
    assert len(list((root / 'images/train').glob('*.jpg'))) == 4
    other = ensure_synthetic(n_train=2, n_val=1, cfg=SynthConfig(size=(128, 96)), verbose=False)
    assert other.name.startswith('synthetic-') and other != root
    assert COCO(str(other / 'annotations/person_keypoints_train.json')).loadImgs(1)[0]['width'] == 128
