"""Synthetic people (posebench.data.synthetic): the checks nbs/03_data.synthetic.ipynb does not make yet — the scene
painter's joint placement, other schemas, splits, and the default data root. (Sub-pixel registration, annotations
that agree with the pixels, COCO files, determinism, statistics and the left/right cue are tested in the notebook.)"""
import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from posebench.core import MPII16, KeypointSchema
from posebench.data import synthetic as syn
from posebench.data.synthetic import SynthConfig, ensure_synthetic, make_synthetic_coco, render_scene



def _centroid(w):
    yy, xx = np.mgrid[:w.shape[0], :w.shape[1]]
    return np.array([(w * xx).sum(), (w * yy).sum()]) / w.sum()


def test_rendered_joint_is_centred_on_its_keypoint():
    "A lone hand (a capsule ending at the wrist) drawn by the scene painter puts its round end on the wrist."
    rng = np.random.default_rng(1)
    for _ in range(20):
        w = rng.uniform(20, 40, 2); r = rng.uniform(2, 5)
        img = np.zeros((64, 64, 3), np.float32)
        syn._paint(img, dict(kind='capsule', geom=(w, w, r, r), colour=np.full(3, 255.)), np.ones((64, 64, 1), np.float32))
        assert np.abs(_centroid(img[..., 0]) - w).max() < 0.05  # shading is symmetric about the centre too


def test_other_schemas():
    img, p = render_scene(SynthConfig(schema=MPII16), np.random.default_rng(3))
    assert p['kpts'].shape[1:] == (16, 2) and p['vis'].shape[1] == 16
    with pytest.raises(ValueError, match=r"no joint for keypoints \['tail'\]"):
        render_scene(SynthConfig(schema=KeypointSchema('pet', ('nose', 'tail'), (), (), (.1, .1))), 0)


def test_splits_differ(tmp_path):
    "The same seed gives other people in another split (nbs/03 checks the files and the determinism within a split)."
    tr = make_synthetic_coco(tmp_path / 'a', 'train', 8, seed=0, workers=1)
    val = make_synthetic_coco(tmp_path / 'a', 'val', 8, seed=0, workers=1)
    assert json.loads(val.read_text())['annotations'] != json.loads(tr.read_text())['annotations']


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
