"""Heatmap decoders (posebench.codecs.refine) against per-keypoint references of the published algorithms."""
import cv2
import numpy as np
import pytest
import torch

from posebench.codecs.core import argmax_2d
from posebench.codecs.refine import Argmax, Dark, QuarterShift, gaussian_blur, gaussian_maps, local_blur

try:  # the canonical oracles (nbs/96_oracles.ipynb) return (xy, max); keep xy
    from posebench import oracles as _o
    ref_argmax, ref_quarter = (lambda hm: _o.ref_argmax(hm)[0]), (lambda hm: _o.ref_quarter(hm)[0])
    ref_dark, ref_dark_udp = (lambda hm, ks: _o.ref_dark(hm, ks)[0]), (lambda hm, ks: _o.ref_dark_udp(hm, ks)[0])
except ImportError:  # minimal loop references from the spec
    def ref_argmax(hm):
        B, K, H, W = hm.shape; out = np.zeros((B, K, 2))
        for b in range(B):
            for k in range(K):
                y, x = np.unravel_index(np.argmax(hm[b, k]), (H, W)); out[b, k] = x, y
        return out

    def ref_quarter(hm):
        out = ref_argmax(hm); B, K, H, W = hm.shape
        for b in range(B):
            for k in range(K):
                h = hm[b, k]; x, y = out[b, k].astype(int)
                if 1 < x < W - 1 and 1 < y < H - 1:
                    out[b, k] += 0.25 * np.sign([h[y, x + 1] - h[y, x - 1], h[y + 1, x] - h[y - 1, x]])
        return out

    def _modulate(h, ks, dtype):
        H, W = h.shape; r = (ks - 1) // 2; m = h.max()
        d = np.zeros((H + 2 * r, W + 2 * r), dtype); d[r:-r, r:-r] = h
        d = cv2.GaussianBlur(d, (ks, ks), 0)[r:-r, r:-r]
        return d * (m / d.max())

    def ref_dark(hm, ks):  # DarkPose get_final_preds (float64 blur, np.linalg, border skip)
        out = ref_argmax(hm); B, K, H, W = hm.shape
        for b in range(B):
            for k in range(K):
                L = np.log(np.maximum(_modulate(hm[b, k].astype(np.float64), ks, np.float64), 1e-10))
                x, y = out[b, k].astype(int)
                if 1 < x < W - 2 and 1 < y < H - 2:
                    dx, dy = (L[y, x + 1] - L[y, x - 1]) / 2, (L[y + 1, x] - L[y - 1, x]) / 2
                    dxx = (L[y, x + 2] - 2 * L[y, x] + L[y, x - 2]) / 4
                    dyy = (L[y + 2, x] - 2 * L[y, x] + L[y - 2, x]) / 4
                    dxy = (L[y + 1, x + 1] - L[y - 1, x + 1] - L[y + 1, x - 1] + L[y - 1, x - 1]) / 4
                    if dxx * dyy - dxy ** 2 != 0:
                        out[b, k] -= np.linalg.inv(np.array([[dxx, dxy], [dxy, dyy]])) @ np.array([dx, dy])
        return out

    def ref_dark_udp(hm, ks):  # MMPose refine_keypoints_dark_udp
        out = ref_argmax(hm); B, K, H, W = hm.shape
        for b in range(B):
            for k in range(K):
                d = _modulate(hm[b, k].astype(np.float32), ks, np.float32)
                L = np.pad(np.log(np.clip(d, 1e-3, 50.)), 1, mode='edge'); x, y = out[b, k].astype(int) + 1
                dx, dy = (L[y, x + 1] - L[y, x - 1]) / 2, (L[y + 1, x] - L[y - 1, x]) / 2
                dxx = L[y, x + 1] - 2 * L[y, x] + L[y, x - 1]; dyy = L[y + 1, x] - 2 * L[y, x] + L[y - 1, x]
                dxy = 0.5 * (L[y + 1, x + 1] - L[y, x + 1] - L[y + 1, x] + 2 * L[y, x] - L[y, x - 1] - L[y - 1, x]
                             + L[y - 1, x - 1])
                Hs = np.array([[dxx, dxy], [dxy, dyy]]) + np.finfo(np.float32).eps * np.eye(2)
                out[b, k] -= np.linalg.inv(Hs) @ np.array([dx, dy])
        return out

DECODERS = [Argmax(), QuarterShift(), QuarterShift(per_axis=True), Dark(), Dark(kernel=11), Dark(kernel=3),
            Dark(guard=True), Dark(border='shrink'), Dark(border='edge'), Dark.udp(), Dark.udp(border='shrink')]


def noisy_maps(B, K, size, sigma, noise, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.rand(B, K, 2, generator=g) * (torch.tensor(size, dtype=torch.float32) - 1)
    return gaussian_maps(mu, sigma, size) + noise * torch.randn(B, K, size[1], size[0], generator=g), mu


@pytest.mark.parametrize('sigma', [1., 2., 3.])
def test_dark_recovers_unbiased_gaussians(sigma):
    g = torch.Generator().manual_seed(int(sigma))
    W, H = 48, 64
    mu = 3 * sigma + torch.rand(1, 300, 2, generator=g) * (torch.tensor([W, H]) - 1 - 6 * sigma)
    hm = gaussian_maps(mu, sigma, (W, H)); hm0 = hm.clone()
    for dec in (Dark(), Dark(kernel=11), Dark(guard=True), Dark(border='shrink'), Dark.udp()):
        assert (dec(hm, sigma)[0] - mu).abs().max() < 0.01, dec
    assert torch.equal(hm, hm0)
    e_arg, e_q = (Argmax()(hm)[0] - mu).abs(), (QuarterShift()(hm)[0] - mu).abs()
    assert 0.45 < e_arg.max() <= 0.5 + 1e-5 and 0.2 < e_arg.mean() < 0.3  # sawtooth
    assert 0.22 < e_q.max() <= 0.25 + 1e-5 and 0.1 < e_q.mean() < 0.15  # staircase


def test_sawtooth_and_steps():
    t = torch.linspace(20, 21, 101)
    hm = gaussian_maps(torch.stack([t, torch.full_like(t, 30.3)], -1)[None], 2., (48, 64))
    xa, xq = Argmax()(hm)[0][0, :, 0], QuarterShift()(hm)[0][0, :, 0]
    assert xa[:50].eq(20).all() and xa[51:].eq(21).all()
    assert xq[1:50].eq(20.25).all() and xq[51:100].eq(20.75).all() and xq[0] == 20 and xq[100] == 21
    assert (Dark()(hm, 2.)[0][0, :, 0] - t).abs().max() < 1e-3


@pytest.mark.parametrize('seed', [0, 1])
def test_against_references(seed):
    hm, _ = noisy_maps(8, 17, (48, 64), 2., 0.01, seed)
    if seed: hm[:, :, 20:24, 20:24] = -1e-3  # negative blocks: forces the exact rescale on some maps
    a = hm.numpy().copy()
    np.testing.assert_array_equal(Argmax()(hm)[0].numpy(), ref_argmax(a))
    np.testing.assert_array_equal(QuarterShift()(hm)[0].numpy(), ref_quarter(a))
    for ks in (3, 11, 17):
        np.testing.assert_allclose(Dark(kernel=ks)(hm)[0].numpy(), ref_dark(a, ks), atol=1e-3)
        np.testing.assert_allclose(Dark.udp(kernel=ks)(hm)[0].numpy(), ref_dark_udp(a, ks), atol=1e-3)
    np.testing.assert_array_equal(hm.numpy(), a)  # never modified in place


def test_argmax_2d_validity():
    hm, _ = noisy_maps(4, 6, (12, 10), 2., 0.1)
    hm[0, 0] = float('nan'); hm[0, 1, 2, 3] = float('inf'); hm[0, 2, 1, 1] = -float('inf'); hm[0, 3] = 0.3
    hm[0, 4] = 0; hm[1, 0] = -hm[1, 0].abs()
    _, val, valid = argmax_2d(hm)
    assert valid[0, :5].tolist() == [False, False, True, False, False] and not valid[1, 0] and valid[2:].all()  # -inf is allowed
    assert (val[~valid] == 0).all()


def test_local_blur_equals_whole_map_blur():
    hm, _ = noisy_maps(2, 17, (48, 64), 2., 0.05)
    xy, val, _ = argmax_2d(hm)
    xy[0, :5] = torch.tensor([[0, 0], [47, 63], [1, 30], [46, 2], [20, 62]])
    for ks in (3, 11, 17):
        full = torch.nn.functional.pad(gaussian_blur(hm, ks) / (hm.amax((-2, -1), keepdim=True)), (2, 2, 2, 2))
        full = full * torch.nn.functional.pad(hm.amax((-2, -1), keepdim=True).expand_as(hm), (2, 2, 2, 2))
        loc = local_blur(hm, xy, ks) * (hm.amax((-2, -1)) / gaussian_blur_max(hm, ks))[..., None, None]
        for b in range(2):
            for k in range(17):
                x, y = xy[b, k].tolist(); w = full[b, k, y:y + 5, x:x + 5]; m = w != 0
                torch.testing.assert_close(loc[b, k][m], w[m], atol=1e-5, rtol=1e-5)


def gaussian_blur_max(hm, ks):  # max of the un-rescaled blur
    from posebench.codecs.refine import _blur
    return _blur(hm, ks).amax((-2, -1))


@pytest.mark.parametrize('dec', DECODERS, ids=repr)
def test_bad_maps_dtypes_empty(dec):
    g = torch.Generator().manual_seed(5)
    hm = gaussian_maps(4 + torch.rand(2, 6, 2, generator=g) * 30, 2., (48, 64))
    hm[0, 0] = float('nan'); hm[0, 1] = 0; hm[0, 2] = 0.7; hm[0, 3, 5, 5] = float('inf'); hm[0, 4] = -hm[0, 4]
    hm[0, 5, 10, 10] = -float('inf')
    hm0 = hm.clone()
    xy, s = dec(hm, 2.)
    assert torch.isfinite(xy).all() and torch.isfinite(s).all()
    assert s[0, :5].eq(0).all() and xy[0, :5].eq(torch.tensor([23., 31.])).all() and (s[1] > 0).all()
    assert s[0, 5] > 0  # -inf away from the peak (a log map) leaves the peak well defined
    assert torch.equal(hm.isnan(), hm0.isnan()) and torch.equal(hm.nan_to_num(), hm0.nan_to_num())
    ref = dec(hm[1:], 2.)[0]
    for dt, tol in ((torch.float16, 0.05), (torch.bfloat16, 0.2)):
        h = hm[1:].to(dt)
        assert torch.equal(dec(h, 2.)[0], dec(h.float(), 2.)[0])
        assert (dec(h, 2.)[0] - ref).abs().max() < tol
    xy, s = dec(torch.zeros(0, 17, 64, 48), 2.)
    assert xy.shape == (0, 17, 2) and s.shape == (0, 17)


def test_guard_is_inert_on_good_maps_and_bounds_bad_ones():
    hm, _ = noisy_maps(16, 17, (48, 64), 2., 0.01)
    torch.testing.assert_close(Dark(kernel=11, guard=True)(hm)[0], Dark(kernel=11)(hm)[0])
    g = torch.Generator().manual_seed(7)  # bimodal / flat-top maps: the faithful step can fly, the guarded one cannot
    hm = torch.rand(16, 17, 64, 48, generator=g) * 0.01 + 1
    p = argmax_2d(hm)[0].float()
    assert ((Dark(kernel=11, guard=True)(hm)[0] - p).norm(dim=-1) <= 1 + 1e-5).all()


def test_errors():
    with pytest.raises(ValueError, match='needs the target sigma'): Dark()(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match='stencil must be'): Dark(stencil='x')
    with pytest.raises(ValueError, match='border must be'): Dark(border='x')
    with pytest.raises(ValueError, match='odd'): Dark(kernel=4)
    with pytest.raises(ValueError, match=r'\(B, K, H, W\)'): Dark(kernel=11)(torch.rand(8, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no GPU')
def test_cuda_matches_cpu():
    hm, _ = noisy_maps(16, 17, (48, 64), 2., 0.01)
    for dec in DECODERS:
        a, b = dec(hm, 2.), dec(hm.cuda(), 2.)
        torch.testing.assert_close(b[0].cpu(), a[0], atol=1e-4, rtol=0)
        torch.testing.assert_close(b[1].cpu(), a[1])
