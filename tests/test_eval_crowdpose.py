"""CrowdPose AP (posebench.eval.crowdpose): crowdposetools' OKS scale and crowd levels on the CrowdPose sample,
with hand-computed expectations."""
import json

import numpy as np
import pytest

from posebench.core import CROWDPOSE14
from posebench.data.readers import read_coco, read_crowdpose
from posebench.eval.coco import KeypointResults, displace_for_oks
from posebench.eval.crowdpose import crowd_levels, crowdpose_coco, crowdpose_eval


def test_perfect_predictions_and_empty_levels(shared):
    cp = read_crowdpose(shared / 'samples/crowdpose/test_crowdpose.json')
    res = KeypointResults([r.image_id for r in cp], cp.kpts, np.ones(cp.vis.shape), np.ones(len(cp)), 'gt')
    rep = crowdpose_eval(cp, res)
    assert [rep[k] for k in ('AP', 'AP50', 'AP75', 'AR', 'AR50', 'AR75', 'AP_medium')] == [1.] * 7
    assert np.isnan(rep['AP_easy']) and np.isnan(rep['AP_hard'])
    assert rep['level_images'] == {'easy': 0, 'medium': 2, 'hard': 0} and rep['bounds'] == [0.2, 0.8]
    # crowdposetools' OKS scale: 0.53 * bbox w * h of the file's box
    raw = json.loads((shared / 'samples/crowdpose/test_crowdpose.json').read_text())
    areas = {a['id']: a['area'] for a in crowdpose_coco(cp).dataset['annotations']}
    assert all(areas[a['id']] == pytest.approx(0.53 * a['bbox'][2] * a['bbox'][3]) for a in raw['annotations'])


def test_levels_by_hand(shared, tmp_path):
    d = json.loads((shared / 'samples/crowdpose/test_crowdpose.json').read_text())
    for im in d['images']: im['crowdIndex'] = {106848: 0.05, 103319: 0.9}[im['id']]
    (tmp_path / 'split.json').write_text(json.dumps(d))
    sp = read_crowdpose(tmp_path / 'split.json', img_dir=shared / 'samples/crowdpose')
    hard = np.array([r.image_id == 103319 for r in sp])
    area = np.array([0.53 * r.bbox[2] * r.bbox[3] for r in sp])
    k = np.where(hard[:, None, None], displace_for_oks(sp.kpts, area, CROWDPOSE14.sigmas, 0.72, angle=2.), sp.kpts)
    res = KeypointResults([r.image_id for r in sp], k, np.ones(sp.vis.shape), np.where(hard, 0.5, 0.9), 'detector')
    rep = crowdpose_eval(sp, res)
    assert rep['AP_hard'] == pytest.approx(0.5, abs=1e-12) and rep['AP_easy'] == 1. and np.isnan(rep['AP_medium'])
    frac = (np.linspace(0, 1, 101) <= hard.mean()).sum() / 101  # recall points reached by the exact half
    assert rep['AP'] == pytest.approx((5 + 5 * frac) / 10, abs=1e-12) and rep['AR'] == pytest.approx(0.75)
    assert rep['boxes'] == 'detector' and 'boxes: detector' in str(rep)
    assert crowdpose_eval(sp, res, bounds=(0.1, 0.8))['level_images'] == {'easy': 1, 'medium': 0, 'hard': 1}


def test_crowd_index_required(shared):
    ann = read_coco(shared / 'samples/coco/test_coco.json')
    with pytest.raises(ValueError, match="field 'crowdIndex': missing"):
        crowd_levels(ann.images)
    cp = read_crowdpose(shared / 'samples/crowdpose/test_crowdpose.json')
    with pytest.raises(ValueError, match='bounds must be'):
        crowd_levels(cp.images, (0.8, 0.2))
