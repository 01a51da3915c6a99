"""Gaussian heatmap codecs (posebench.codecs.gaussian): targets equal the published per-keypoint code, weights for
invisible and off-map keypoints, multi-person max-merge, alignment, and round trips within each preset's tolerance."""
import numpy as np
import pytest
import torch

from posebench.codecs.gaussian import GaussianHeatmap, dark_heatmap, msra_heatmap, render_gaussians, udp_heatmap
from posebench.codecs.refine import Dark
from posebench.oracles import check_codec, ref_encode_dark, ref_encode_msra, ref_encode_udp

PRESETS = {'msra': (msra_heatmap, ref_encode_msra), 'dark': (dark_heatmap, ref_encode_dark), 'udp': (udp_heatmap, ref_encode_udp)}


def _drawn(maps):
    "Truncated targets: weight 1 exactly when the map is non-zero (HRNet's br == 0 row fixed)."
    return maps.reshape(len(maps), -1).max(1) > 0


@pytest.mark.parametrize('name', PRESETS)
@pytest.mark.parametrize('sigma', [1., 2., 3.])
def test_targets_equal_reference(name, sigma):
    make, oracle = PRESETS[name]
    c = make((192, 256), (48, 64), sigma)
    rng = np.random.default_rng(int(sigma * 10))
    kp = rng.uniform(-60, 260, (200, 2)); vis = (rng.random(200) > 0.2).astype(np.float32)
    e = c.encode(kp, vis)
    ref, rw = oracle(c.to_heatmap(kp), vis, c.heatmap_size, sigma)
    np.testing.assert_allclose(e.targets, np.asarray(ref).reshape(e.targets.shape), atol=1e-6)
    rw = np.asarray(rw).reshape(-1) > 0
    expect = rw & _drawn(np.asarray(ref)) if c.truncate else rw
    np.testing.assert_array_equal(e.weights > 0, expect)
    assert 0 < e.weights.sum() < vis.sum()


@pytest.mark.parametrize('kw', [dict(unbiased=False, truncate=3.), dict(unbiased=True, truncate=None), dict(unbiased=True, truncate=3.)])
def test_vectorised_equals_per_keypoint(kw):
    rng = np.random.default_rng(1)
    mu = rng.uniform(-8, 40, (4, 17, 2)); vis = rng.random((4, 17)) > 0.3
    maps, inside = render_gaussians(mu, (32, 24), 2., vis=vis, **kw)
    one = [[render_gaussians(mu[n, k][None], (32, 24), 2., vis=vis[n, k][None], **kw) for k in range(17)] for n in range(4)]
    np.testing.assert_array_equal(maps, np.stack([np.max([one[n][k][0][0] for n in range(4)], 0) for k in range(17)]))
    np.testing.assert_array_equal(inside, [[one[n][k][1][0, 0] for k in range(17)] for n in range(4)])


@pytest.mark.parametrize('name', PRESETS)
def test_weights_invisible_offmap_nonfinite(name):
    c = PRESETS[name][0]((64, 64), (16, 16))  # 'hrnet' stride 4; 'udp' 63/15
    kp = c.to_input(np.array([[-30., 5.], [-2.5, 5.], [8.2, 8.3], [np.nan, 3.], [8., np.inf], [40., 7.]]))
    e = c.encode(kp, np.array([1, 1, 0, 1, 1, 1]))
    np.testing.assert_array_equal(e.weights, [0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(e.targets.reshape(6, -1).max(1) > 0, [False, True, False, False, False, False])
    assert np.isfinite(e.targets).all()


def test_hrnet_empty_patch_row_gets_weight_zero():
    "HRNet keeps weight 1 at br == 0 with an all-zero map; posebench gives weight 0 (documented deviation)."
    ref, rw = ref_encode_msra(np.array([[-8., 5.]]), np.ones(1), (16, 16), 2.)
    assert np.asarray(rw).reshape(-1)[0] == 1 and np.asarray(ref).max() == 0
    maps, inside = render_gaussians(np.array([[-8., 5.]]), (16, 16), 2., unbiased=False, truncate=3)
    assert not inside[0, 0] and maps.max() == 0


def test_multi_person_max_merge():
    c = dark_heatmap((192, 256), (48, 64))
    rng = np.random.default_rng(2)
    kp = rng.uniform(0, 190, (3, 17, 2)); vis = rng.random((3, 17)) > 0.3
    e = c.encode(kp, vis)
    np.testing.assert_array_equal(e.targets, np.max([c.encode(kp[n], vis[n]).targets for n in range(3)], 0))
    np.testing.assert_array_equal(e.weights, vis.any(0).astype(np.float32))
    np.testing.assert_array_equal(e.extra['inst_weights'], vis.astype(np.float32))
    assert e.kpts.shape == (3, 17, 2)


def test_alignment():
    x = np.array([[100.3, 57.9]])
    np.testing.assert_allclose(msra_heatmap((192, 256), (48, 64)).encode(x, np.ones(1)).kpts[0, 0], [100.3 * 48 / 192, 57.9 * 64 / 256], rtol=1e-6)
    np.testing.assert_allclose(dark_heatmap((192, 256), (48, 64)).encode(x, np.ones(1)).kpts[0, 0], [100.3 * 47 / 191, 57.9 * 63 / 255], rtol=1e-6)
    peak = msra_heatmap((192, 256), (48, 64)).encode(x, np.ones(1)).targets[0].argmax()
    assert np.unravel_index(peak, (64, 48)) == (int(57.9 / 4 + .5), int(100.3 / 4 + .5))


def test_bad_input():
    with pytest.raises(ValueError, match=r'got kpts \(17, 2\), vis \(16,\)'): dark_heatmap((192, 256), (48, 64)).encode(np.zeros((17, 2)), np.ones(16))
    with pytest.raises(ValueError, match='sigma must be > 0'): GaussianHeatmap(sigma=0)
    with pytest.raises(ValueError, match=r'got shape \(17, 3\)'): render_gaussians(np.zeros((17, 3)), (8, 8), 2.)


@pytest.mark.parametrize('name', PRESETS)
@pytest.mark.parametrize('ins,hs,sigma', [((192, 256), (48, 64), 2.), ((96, 128), (24, 32), 1.)])
def test_round_trip_within_tol(name, ins, hs, sigma):
    c = PRESETS[name][0](ins, hs, sigma)
    r = check_codec(c, n=256, seed=3)
    assert r['max'] <= c.tol_interior and r['border_max'] <= c.tol


def test_dark_interior_and_baseline_rounding():
    "Noiseless unbiased targets: DARK within 0.01 heatmap px inside; the integer-centred target keeps its ~0.5 px rounding."
    rng = np.random.default_rng(4)
    for c, lo, hi in [(dark_heatmap((192, 256), (48, 64)), 0, 0.01), (udp_heatmap((192, 256), (48, 64)), 0, 0.01),
                      (msra_heatmap((192, 256), (48, 64), decoder=Dark()), 0.45, 0.5 + 1e-4)]:
        W, H = c.heatmap_size; m = c.interior_margin
        mu = np.stack([rng.uniform(m, W - 1 - m, 500), rng.uniform(m, H - 1 - m, 500)], -1)
        e = c.encode(c.to_input(mu), np.ones(500))
        err = np.abs(c.to_heatmap(c.decode(torch.from_numpy(e.targets)[None]).kpts[0, 0].double().numpy()) - mu).max()
        assert lo <= err < hi, (c, err)


def test_flip_back_udp_is_exact():
    c = dark_heatmap((192, 256), (48, 64))
    x = np.array([[60.3, 100.7]]); xf = x * [-1, 1] + [191, 0]
    back = c.flip_back(torch.from_numpy(c.encode(xf, np.ones(1)).targets)[None], [0])
    np.testing.assert_allclose(back.numpy(), c.encode(x, np.ones(1)).targets[None], atol=1e-5)
