"""Headless tests of posebench.vis.widgets: build each widget, set control values, check the output changed as it should."""
import numpy as np
import pytest

from posebench.codecs.gaussian import dark_heatmap, msra_heatmap
from posebench.core import COCO17
from posebench.vis.heatmaps import people_from_records, roundtrip_predictions, synthetic_people
from posebench.vis.widgets import CodecPlayground, HeatmapExplorer, PredictionBrowser


@pytest.fixture(scope='module')
def people():
    return synthetic_people(4, seed=1)


def test_playground_errors_follow_the_offset():
    pg = CodecPlayground(dx=.3, dy=.3)
    assert pg.errors['argmax'] == pytest.approx(np.hypot(.3, .3), abs=1e-4)
    assert pg.errors['quarter'] == pytest.approx(np.hypot(.05, .05), abs=1e-4)  # 0.25 px steps: |.25 - .3| per axis
    assert pg.errors['dark'] < 1e-3
    png, table = pg.image.value, pg.table.value
    pg.dx.value = .7  # argmax rounds x up now
    assert pg.errors['argmax'] == pytest.approx(np.hypot(.3, .3), abs=1e-4)
    assert pg.errors['quarter'] == pytest.approx(np.hypot(.05, .05), abs=1e-4)
    assert pg.image.value != png and pg.table.value != table and '23.700' in pg.table.value
    pg.dx.value = .9
    assert pg.errors['argmax'] == pytest.approx(np.hypot(.1, .3), abs=1e-4)


def test_playground_controls_change_the_map():
    pg = CodecPlayground()
    pg.width.value = 64
    assert tuple(pg.state()[0].shape) == (1, 1, 85, 64)
    e0 = pg.errors['dark']
    pg.noise.value = .1
    assert pg.errors['dark'] > e0 + 1e-3  # noise costs DARK its exactness
    png = pg.image.value
    pg.kernel.value = 3
    assert pg.image.value != png  # a different modulation kernel: different curves and estimates
    pg.sigma.value = 3.
    assert pg.state()[0].max() > .9  # noise std .1 on a unit peak


def test_playground_redraw_is_timed():
    pg = CodecPlayground()
    for v in (.1, .2, .3): pg.dx.value = v
    assert len(pg.timings) == 4 and all(t > 0 for t in pg.timings) and np.isfinite(pg.cpu_ms)


def test_explorer_every_decoder_and_source(people):
    ex = HeatmapExplorer(people, joint='left_shoulder')
    assert set(ex.errors) == {'argmax', 'quarter', 'dark', 'dark_udp'}
    assert ex.errors['dark'] < .05 < ex.errors['argmax']  # targets: DARK recovers the truth
    png = ex.image.value
    ex.source.value = 'predicted'
    assert 'simulated' in ex.table.value and ex.image.value != png
    assert ex.errors['dark'] > .05  # the simulated prediction is off by its jitter
    png = ex.image.value
    ex.opacity.value = .1
    assert ex.image.value != png and ex.table.value  # opacity changes the picture, not the numbers
    t = ex.table.value; ex.opacity.value = .9; assert ex.table.value == t
    ex.joint.value = COCO17.index('right_hip')
    assert 'right_hip' in ex.table.value
    ex.decoder.value = 'quarter'
    assert '▶ quarter' in ex.table.value
    png = ex.image.value; ex.all_joints.value = True; assert ex.image.value != png
    ex.sample.value = 1
    assert ex.data()[0].kpts.shape == (17, 2) and ex.image.value != png


def test_explorer_rejects_no_people():
    with pytest.raises(ValueError, match='at least one Person'): HeatmapExplorer([])


def test_browser_sorts_filters_and_pages(people):
    pred = roundtrip_predictions(people, msra_heatmap((192, 256), (48, 64)), jitter=2., noise=.05)
    pb = PredictionBrowser(people, pred, note='codec round trip (no model)')
    assert (np.diff(pb.oks[pb.order]) >= 0).all() and pb.current == pb.order[0]
    png = pb.image.value
    pb.rank.value = len(people) - 1
    assert pb.current == pb.order[-1] and pb.image.value != png and f'{len(people)}/{len(people)}' in pb.table.value
    pb.sort.value = 'err'
    assert (np.diff(np.nanmean(pb.err[pb.order], 1)) <= 0).all()
    k = COCO17.index('left_ankle')
    pb.joint.value = k
    assert np.isfinite(pb.err[pb.order, k]).all() and (np.diff(pb.err[pb.order, k]) <= 0).all()
    assert pb.rank.max == len(pb.order) - 1 and 'left_ankle error' in pb.table.value


def test_browser_checks_shapes(people):
    with pytest.raises(ValueError, match=r'preds must be \(P, K, 2\)'):
        PredictionBrowser(people, np.zeros((len(people) + 1, 17, 2)))


def test_widgets_on_coco_mini(shared):
    from posebench.data.readers import read_coco
    ann = read_coco(shared / 'coco-mini/annotations/person_keypoints_val2017.json')
    ppl = people_from_records(ann.records, min_kpts=10)[:4]
    assert len(ppl) == 4
    ex = HeatmapExplorer(ppl, codec=dark_heatmap((192, 256), (48, 64)), joint='left_hip')
    assert ex.errors['dark'] < .05
    pb = PredictionBrowser(ppl, roundtrip_predictions(ppl, dark_heatmap((192, 256), (48, 64))))
    assert np.nanmin(pb.oks) > .9  # a clean round trip of real people
