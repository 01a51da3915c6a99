"""The batched codecs of `posebench.codecs` against the per-keypoint oracles of `posebench.oracles`
(straight, one-map-at-a-time implementations of the published algorithms), and `check_codec` on every preset.

Maps follow the spec's harness (dark_fpd_higherhrnet.md §1.11): σ=2 Gaussians at uniform sub-pixel centres over
the whole map plus N(0, 0.01²) noise, seeded; B=4, K=17, 64×48. Decoders are compared on valid maps only (the
oracles keep HRNet's `(0, 0)` for maps with max ≤ 0; posebench puts invalid maps at the centre with score 0)."""
import numpy as np
import pytest
import torch

from posebench.codecs.core import argmax_2d
from posebench.oracles import (check_codec, ref_argmax, ref_dark, ref_dark_udp, ref_encode_dark, ref_encode_msra,
                               ref_encode_udp, ref_quarter, ref_sihn, ref_soft_argmax, ref_softmax)

TOL_PX = 1e-3  # decoder vs oracle, heatmap px (issue 3, item 5)
B, K, H, W, SIGMA = 4, 17, 64, 48, 2.


def noisy_maps(B=B, K=K, size=(W, H), sigma=SIGMA, noise=0.01, seed=0, border_every=0):
    "Harness maps `(B, K, H, W)` float32 and their true centres `(B, K, 2)`; every `border_every`-th centre within 2 px of an edge."
    rng = np.random.default_rng(seed)
    w, h = size
    mu = rng.uniform([0, 0], [w - 1, h - 1], (B, K, 2))
    if border_every:
        m = mu.reshape(-1, 2)[::border_every]
        m[:, 0] = np.where(rng.random(len(m)) < 0.5, rng.uniform(0, 2, len(m)), rng.uniform(w - 3, w - 1, len(m)))
        mu.reshape(-1, 2)[::border_every] = m
    yy, xx = np.mgrid[:h, :w]
    g = np.exp(-((xx - mu[..., 0, None, None]) ** 2 + (yy - mu[..., 1, None, None]) ** 2) / (2 * sigma ** 2))
    return (g + rng.normal(0, noise, g.shape)).astype(np.float32), mu


def with_invalid(hm):
    "The harness maps plus NaN, all-zero, negative and constant maps in sample 0."
    hm = hm.copy()
    hm[0, 0] = np.nan; hm[0, 1] = 0; hm[0, 2] = -1; hm[0, 3] = 0.5
    return hm


def assert_agree(xy, xy_ref, valid, tol=TOL_PX):
    xy, valid = xy.detach().cpu().double().numpy(), valid.cpu().numpy()
    d = np.abs(xy - xy_ref).max(-1)[valid]
    assert valid.sum() > 0 and d.max() <= tol, f'max |batched - oracle| = {d.max():.3g} px at {np.argmax(d)} (tol {tol})'


# ---------------------------------------------------------------- decoders

def test_argmax_oracle():
    from posebench.codecs.refine import Argmax
    hm = with_invalid(noisy_maps()[0])
    t = torch.from_numpy(hm)
    xy, s = Argmax()(t, SIGMA)
    _, _, valid = argmax_2d(t)
    xr, vr = ref_argmax(hm)
    assert_agree(xy, xr, valid, tol=0)
    np.testing.assert_array_equal(s.numpy()[valid.numpy()], vr[valid.numpy()])
    # posebench's documented difference on invalid maps: centre, score 0 (the oracle: (0, 0), raw max)
    inv = ~valid.numpy()
    assert inv[0, :4].all() and (s.numpy()[inv] == 0).all()
    np.testing.assert_array_equal(xy.numpy()[inv], np.tile([(W - 1) // 2, (H - 1) // 2], (inv.sum(), 1)))


def test_quarter_oracle():
    from posebench.codecs.refine import QuarterShift
    hm = with_invalid(noisy_maps(border_every=3)[0])
    t = torch.from_numpy(hm)
    xy, s = QuarterShift()(t, SIGMA)
    _, _, valid = argmax_2d(t)
    xr, vr = ref_quarter(hm)
    assert_agree(xy, xr, valid)
    assert (xr[valid.numpy()] % 1 == 0).any() and (xr[valid.numpy()] % 1 != 0).any()  # both branches are exercised
    np.testing.assert_allclose(s.numpy()[valid.numpy()], vr[valid.numpy()], rtol=0, atol=1e-7)


@pytest.mark.parametrize('ks', [3, 11, 17])
def test_dark_oracle(ks):
    from posebench.codecs.refine import Dark
    hm = with_invalid(noisy_maps(border_every=3)[0])
    t = torch.from_numpy(hm)
    xy, s = Dark(kernel=ks)(t, SIGMA)
    _, _, valid = argmax_2d(t)
    xr, vr = ref_dark(hm, ks)
    assert_agree(xy, xr, valid)
    v = valid.numpy()
    skipped = (xr[v] % 1 == 0).all(-1)
    assert skipped.sum() >= 5 and (~skipped).sum() >= 20, 'the border rule (unrefined maps) and the interior are both covered'
    np.testing.assert_allclose(s.numpy()[v], vr[v], rtol=0, atol=1e-7)  # score: the un-blurred max


def test_dark_default_kernel_oracle():
    from posebench.codecs.refine import Dark, blur_kernel_size
    hm = noisy_maps(seed=1)[0]
    t = torch.from_numpy(hm)
    assert_agree(Dark()(t, SIGMA)[0], ref_dark(hm, blur_kernel_size(SIGMA))[0], argmax_2d(t)[2])


@pytest.mark.parametrize('ks', [3, 11])
def test_dark_udp_oracle(ks):
    from posebench.codecs.refine import Dark
    hm = with_invalid(noisy_maps(border_every=3)[0])
    t = torch.from_numpy(hm)
    xy, s = Dark.udp(kernel=ks)(t, SIGMA)
    _, _, valid = argmax_2d(t)
    xr, vr = ref_dark_udp(hm, ks)
    assert_agree(xy, xr, valid)
    np.testing.assert_allclose(s.numpy()[valid.numpy()], vr[valid.numpy()], rtol=0, atol=1e-7)


def test_dark_oracle_noiseless_accuracy():
    "Both oracles recover noiseless interior DARK targets within 0.01 heatmap px, as the batched decoder must."
    from posebench.codecs.refine import Dark
    hm, mu = noisy_maps(noise=0.)
    inner = ((mu >= 6) & (mu <= np.array([W - 7, H - 7]))).all(-1)
    for ref, dec in ((ref_dark, Dark(kernel=11)), (ref_dark_udp, Dark.udp(kernel=11))):
        assert np.abs(ref(hm, 11)[0] - mu).max(-1)[inner].max() < 0.01
        assert np.abs(dec(torch.from_numpy(hm), SIGMA)[0].double().numpy() - mu).max(-1)[inner].max() < 0.01


@pytest.mark.parametrize('norm', ['softmax', 'sihn'])
@pytest.mark.parametrize('beta', [1., 5.])
def test_integral_oracle(norm, beta):
    from posebench.codecs.integral import IntegralHeatmap, sihn_norm, soft_argmax, softmax_norm
    f = noisy_maps(noise=0.1)[0] * 3
    t = torch.from_numpy(f)
    h = softmax_norm(t, beta) if norm == 'softmax' else sihn_norm(t, beta, eps=0.)
    hr = ref_softmax(f, beta) if norm == 'softmax' else ref_sihn(f, beta)
    np.testing.assert_allclose(h.double().numpy(), hr, rtol=1e-5, atol=1e-8)  # float32 softmax
    assert_agree(soft_argmax(h)[0], ref_soft_argmax(hr), torch.ones(B, K, dtype=torch.bool))
    codec = IntegralHeatmap(norm=norm, beta=beta, eps=0.)
    d = codec.decode(t)
    np.testing.assert_allclose(d.kpts[:, 0].double().numpy(), codec.to_input(ref_soft_argmax(hr)), rtol=0,
                               atol=TOL_PX * max(codec.to_input(np.ones(2))))


# ---------------------------------------------------------------- encoders

def _presets():
    from posebench.codecs.gaussian import dark_heatmap, msra_heatmap, udp_heatmap
    sz = dict(input_size=(192, 256), heatmap_size=(48, 64))
    return {'msra': msra_heatmap(**sz), 'dark': dark_heatmap(**sz), 'udp': udp_heatmap(**sz)}


def _oracle_encoder(codec):
    if not codec.unbiased: return ref_encode_msra
    return ref_encode_dark if codec.truncate is None else ref_encode_udp


def _encode_cases(codec, n=170, seed=0):
    "Keypoints `(n, 2)` in input px over and beyond the heatmap (sub-pixel), and visibilities in {0, 1, 2}."
    rng = np.random.default_rng(seed)
    Wh, Hh = codec.heatmap_size
    r = 3 * codec.sigma + 2
    hm = rng.uniform([-r, -r], [Wh - 1 + r, Hh - 1 + r], (n, 2))
    return np.asarray(codec.to_input(hm)), rng.integers(0, 3, n)


@pytest.mark.parametrize('name', ['msra', 'dark', 'udp'])
def test_encoder_oracle(name):
    codec = _presets()[name]
    kpts, vis = _encode_cases(codec)
    ref = _oracle_encoder(codec)
    for b in range(0, len(kpts), K):
        k, v = kpts[b:b + K], vis[b:b + K]
        enc = codec.encode(k, v)
        mu = np.asarray(codec.to_heatmap(k))
        tr, wr = ref(mu, v, codec.heatmap_size, codec.sigma)
        np.testing.assert_allclose(enc.targets, tr, rtol=0, atol=1e-6)
        # posebench's documented fix of the originals' `br < 0` test: a patch whose exclusive end is 0 is off the map
        c = np.trunc(mu + 0.5)
        empty_patch = (codec.truncate is not None or not codec.unbiased) & (c == -3 * codec.sigma - 1).any(-1)
        np.testing.assert_array_equal(np.asarray(enc.weights)[~empty_patch], wr[~empty_patch])
        assert (np.asarray(enc.weights)[empty_patch] == 0).all()


def test_encoder_oracle_empty_patch_quirk():
    "HRNet/MMPose keep weight 1 for a patch ending at column 0 (nothing drawn); posebench gives weight 0."
    codec = _presets()['msra']
    mu = np.array([[-3 * codec.sigma - 1 - 0.9, 10.2]])  # int(μ + 0.5) = -3σ - 1: br = 0
    tr, wr = ref_encode_msra(mu, [1], codec.heatmap_size, codec.sigma)
    enc = codec.encode(codec.to_input(mu), np.array([1]))
    assert wr[0] == 1 and not tr.any() and enc.weights[0] == 0 and not np.asarray(enc.targets).any()


# ---------------------------------------------------------------- round trips

_DECODERS = ['Argmax', 'QuarterShift', 'Dark', 'DarkUDP']
_TARGETS = {'dark': (True, None), 'udp': (True, 3.), 'msra': (False, 3.)}  # (unbiased, truncate)


def _codec(target, decoder, align):
    from posebench.codecs.gaussian import GaussianHeatmap
    from posebench.codecs.refine import Argmax, Dark, QuarterShift
    dec = {'Argmax': Argmax, 'QuarterShift': QuarterShift, 'Dark': Dark, 'DarkUDP': Dark.udp}[decoder]()
    unbiased, truncate = _TARGETS[target]
    return GaussianHeatmap(align=align, unbiased=unbiased, truncate=truncate, decoder=dec)


@pytest.mark.parametrize('name', ['msra', 'dark', 'udp'])
def test_check_codec_presets(name):
    codec = _presets()[name]
    rep = check_codec(codec, sizes=[(codec.input_size, codec.heatmap_size), ((96, 128), (24, 32))])
    assert rep['max'] <= rep['tol']


@pytest.mark.parametrize('align', ['udp', 'hrnet'])
@pytest.mark.parametrize('decoder', _DECODERS)
@pytest.mark.parametrize('target', list(_TARGETS))
def test_check_codec_gaussian(target, decoder, align):
    rep = check_codec(_codec(target, decoder, align), n=128)
    assert rep['n'] == 128 and rep['max'] <= rep['tol']


def test_check_codec_integral_sihn():
    from posebench.codecs.integral import IntegralHeatmap
    for align in ('udp', 'hrnet'):
        rep = check_codec(IntegralHeatmap(norm='sihn', align=align))
        assert rep['max'] <= rep['tol']


def test_check_codec_integral_softmax():
    from posebench.codecs.integral import IntegralHeatmap
    # a softmax decoder reads logits: the logits of a normalised target are its log (up to a constant)
    rep = check_codec(IntegralHeatmap(norm='softmax'), as_output=lambda t: np.log(np.maximum(t, 1e-30)))
    assert rep['max'] <= rep['tol']
