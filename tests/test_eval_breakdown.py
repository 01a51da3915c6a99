"""Per-keypoint breakdown (posebench.eval.breakdown) against a plain per-keypoint loop, plus tables and figures."""
import numpy as np
import pytest

from posebench.core import COCO17
from posebench.eval.breakdown import breakdown_rows, breakdown_table, keypoint_breakdown, plot_breakdown


def loop_stats(pred, gt, vis, area, sigmas, ts):
    "The statistics written as loops over keypoints, straight from their definitions."
    out = []
    for k in range(gt.shape[1]):
        m = vis[:, k] > 0
        e = np.hypot(*(pred[m, k] - gt[m, k]).T)
        s = np.sqrt(area[m])
        o = np.exp(-e ** 2 / (2 * area[m] * (2 * sigmas[k]) ** 2))
        out.append([m.sum(), e.mean() if m.any() else np.nan, np.median(e) if m.any() else np.nan, (e / s).mean() if m.any() else np.nan,
                    *[(e / s <= t).mean() if m.any() else np.nan for t in ts], o.mean() if m.any() else np.nan])
    return np.array(out, float)


def test_matches_loop():
    rng = np.random.default_rng(0)
    N = 30
    gt = rng.uniform(0, 400, (N, 17, 2)); vis = rng.integers(0, 3, (N, 17)); vis[:, 3] = 0
    boxes = np.concatenate([rng.uniform(0, 100, (N, 2)), rng.uniform(20, 200, (N, 2))], 1)
    pred = gt + rng.normal(0, 8, gt.shape)
    b = keypoint_breakdown(pred, gt, vis, boxes=boxes, schema=COCO17, thresholds=(0.05, 0.1))
    exp = loop_stats(pred, gt, vis, boxes[:, 2] * boxes[:, 3], np.array(COCO17.sigmas), (0.05, 0.1))
    got = np.stack([b.count, b.mean_px, b.median_px, b.mean_norm, *b.pck, b.oks], 1)
    np.testing.assert_allclose(got, exp, rtol=1e-12)
    cols, rows = breakdown_rows(b)
    assert rows[3][1] == 0 and np.isnan(rows[3][2]) and rows[-1][1] == (vis > 0).sum()
    assert rows[-1][2] == pytest.approx(np.hypot(*(pred - gt)[vis > 0].T).mean())
    assert '| left_ear | 0 | – |' in breakdown_table(b) and breakdown_table(b, 'html').count('<tr>') == 19


def test_torch_and_figure():
    torch = pytest.importorskip('torch')
    gt = np.random.default_rng(1).uniform(0, 100, (4, 17, 2)); vis = np.ones((4, 17))
    pred = torch.from_numpy(gt + 2.)
    b = keypoint_breakdown(pred, torch.from_numpy(gt), vis, areas=np.full(4, 400.), schema=COCO17)
    np.testing.assert_allclose(b.mean_px, np.full(17, np.sqrt(8)), rtol=1e-12)
    np.testing.assert_allclose(b.mean_norm, np.full(17, np.sqrt(8) / 20), rtol=1e-12)
    fig = plot_breakdown(b, 'mean_norm')
    np.testing.assert_allclose([p.get_height() for p in fig.axes[0].patches], b.mean_norm)
    import matplotlib.pyplot as plt
    plt.close(fig)
