"""Integral codec: SIHN and softmax normalisation, soft-argmax moments and grid convention, IntegralHeatmap
(spec ../shared/specs/sihn_dsdt.md §13 tests 1-5 and 12)."""
import numpy as np
import pytest
import torch

from posebench.codecs.integral import (IntegralHeatmap, dsdt_moments, sihn_norm, soft_argmax, softmax_norm,
                                       truncation_bias)
from posebench.geometry import flip_points

SIZES = dict(input_size=(192, 256), heatmap_size=(48, 64))


def _loop_soft_argmax(h):
    "Per-keypoint reference: plain loops over b, k, j, i (numpy float64)."
    h = np.asarray(h, dtype=np.float64)
    B, K, H, W = h.shape
    mu, var = np.zeros((B, K, 2)), np.zeros((B, K, 2))
    for b in range(B):
        for k in range(K):
            for j in range(H):
                for i in range(W): mu[b, k] += h[b, k, j, i] * np.array([i, j])
            for j in range(H):
                for i in range(W): var[b, k] += h[b, k, j, i] * (np.array([i, j]) - mu[b, k]) ** 2
    return mu, var


def _rand(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_sihn_basics():  # §13 test 1
    f = _rand(3, 4, 16, 12, dtype=torch.float64)
    h = sihn_norm(f)
    assert (h >= 0).all()
    torch.testing.assert_close(h.sum((-2, -1)), torch.ones(3, 4, dtype=torch.float64))
    amin = f.flatten(-2).argmin(-1, keepdim=True)
    assert h.flatten(-2).gather(-1, amin).abs().max() == 0
    for beta, c in [(0.5, 3.), (1., -10.), (7., 0.25)]:
        assert (sihn_norm(beta * f + c, beta=beta) - h).abs().max() < 1e-15
    with pytest.raises(ValueError, match='beta > 0'): sihn_norm(f, beta=-1.)
    assert sihn_norm(torch.ones(1, 1, 4, 4), eps=0.).isnan().all()  # the official 0/0
    assert sihn_norm(torch.ones(1, 1, 4, 4)).abs().sum() == 0  # posebench's eps


def test_softmax_temperature():
    f = _rand(2, 3, 16, 12, dtype=torch.float64)
    torch.testing.assert_close(softmax_norm(f, beta=3.), softmax_norm(3. * f))
    torch.testing.assert_close(softmax_norm(f).sum((-2, -1)), torch.ones(2, 3, dtype=torch.float64))
    peak = f.flatten(-2).argmax(-1)
    f = (f.flatten(-2) + torch.nn.functional.one_hot(peak, 16 * 12)).view_as(f)  # the peak 1 above the runner-up
    ent = [-(p * p.clamp_min(1e-300).log()).sum((-2, -1)) for p in (softmax_norm(f, b) for b in (0.1, 1., 10.))]
    assert (ent[0] > ent[1]).all() and (ent[1] > ent[2]).all()  # higher beta, sharper map
    sharp = softmax_norm(f, beta=300.)
    assert (sharp.flatten(-2).argmax(-1) == peak).all() and (sharp.flatten(-2).amax(-1) > 1 - 1e-6).all()
    mu, _ = soft_argmax(sharp)
    torch.testing.assert_close(mu, torch.stack([peak % 12, peak // 12], -1).double(), atol=1e-5, rtol=0)
    mu0, _ = soft_argmax(softmax_norm(f, beta=1e-9))
    torch.testing.assert_close(mu0, torch.tensor([5.5, 7.5], dtype=torch.float64).expand(2, 3, 2), atol=1e-6, rtol=0)


def test_delta_heatmap():  # §13 test 2
    f = torch.zeros(1, 1, 64, 48); f[0, 0, 10, 30] = 5
    mu, var = dsdt_moments(sihn_norm(f))
    torch.testing.assert_close(mu[0, 0], torch.tensor([0.625, 0.15625]))
    assert var.abs().max() == 0


def test_gaussian_moments():  # §13 test 3
    x0, y0, s = 20.37, 33.61, 2.
    jj, ii = np.mgrid[:64, :48]
    g = np.exp(-((ii - x0) ** 2 + (jj - y0) ** 2) / (2 * s ** 2)); g /= g.sum()
    mu, var = dsdt_moments(torch.from_numpy(g)[None, None])
    np.testing.assert_allclose(np.sqrt(var[0, 0].numpy()) * [48, 64], [s, s], atol=1e-3)
    np.testing.assert_allclose(mu[0, 0].numpy(), [x0 / 48, y0 / 64], atol=1e-9)


def test_pixel_convention_official_equals_hrnet():  # §13 test 4, §4
    c = IntegralHeatmap(norm='sihn', align='hrnet', **SIZES)
    kp = np.array([[4 * 11., 4 * 40.]])  # x_in = 4·i, stride 4
    t = torch.from_numpy(c.encode(kp, np.ones(1)).targets)[None]
    mu_n, _ = dsdt_moments(t)
    torch.testing.assert_close(mu_n[0, 0] * torch.tensor([192., 256.]), torch.tensor(kp[0], dtype=torch.float32))
    torch.testing.assert_close(c.to_input(torch.tensor([24., 32.])), torch.tensor([96., 128.]))  # μ_n = 0.5 → 96
    logits = _rand(3, 17, 64, 48, seed=1)
    official = dsdt_moments(sihn_norm(logits))[0] * torch.tensor([192., 256.])
    torch.testing.assert_close(c.decode(logits).kpts[:, 0], official, atol=1e-4, rtol=0)
    udp = IntegralHeatmap(norm='sihn', align='udp', **SIZES).decode(logits).kpts[:, 0]
    assert (udp - official).abs().max() > 0.1  # the alignment matters


@pytest.mark.parametrize('norm', ['sihn', 'softmax'])
def test_gradcheck(norm):  # §13 test 5
    f = _rand(2, 2, 5, 4, seed=2, dtype=torch.float64).requires_grad_()
    c = IntegralHeatmap(norm=norm, beta=1.5)
    assert torch.autograd.gradcheck(lambda x: torch.cat(c.moments(x), -1), (f,))


def test_flip():  # §13 test 12
    w = 192
    off = lambda c: torch.stack([1 - c[..., 0] - 1 / w, c[..., 1]], -1)
    cn = torch.rand(2, 17, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(off(off(cn)), cn)
    x = 51.75
    torch.testing.assert_close(off(torch.tensor([(w - 1 - x) / w, 0.3], dtype=torch.float64))[0],
                               torch.tensor(x / w, dtype=torch.float64))
    c = IntegralHeatmap(**SIZES)
    fi = list(range(17)); fi[1], fi[2] = 2, 1
    k = cn * torch.tensor([192., 256.], dtype=torch.float64)
    torch.testing.assert_close(c.flip_test_kpts(k, flip_points(k, w, fi), fi), k)
    # posebench's input-px flip and the official normalised flip are the same map
    torch.testing.assert_close(flip_points(k, w, None) / torch.tensor([192., 256.], dtype=torch.float64), off(cn))


@pytest.mark.parametrize('align', ['udp', 'hrnet'])
@pytest.mark.parametrize('norm', ['sihn', 'softmax'])
def test_round_trip_interior(norm, align):
    c = IntegralHeatmap(norm=norm, align=align, sigma=2., **SIZES)
    W, H = c.heatmap_size
    hm_xy = np.random.default_rng(4).uniform(c.margin, [W - 1 - c.margin, H - 1 - c.margin], size=(32, 2))
    kp = c.to_input(hm_xy)
    e = c.encode(kp, np.ones(32))
    np.testing.assert_allclose(e.targets.sum((1, 2)), 1, atol=1e-5)
    np.testing.assert_allclose(e.kpts[0], hm_xy, atol=1e-4)
    t = torch.from_numpy(e.targets)[None]
    d = c.decode(t if norm == 'sihn' else t.log())
    err = (d.kpts[0, 0].double() - torch.from_numpy(kp)).norm(dim=-1)
    assert err.max() <= c.tol, (err.max(), c.tol)
    assert (d.scores > 0.98).all()


def test_round_trip_whole_map_and_border_bias():
    c = IntegralHeatmap(norm='sihn', sigma=2., **SIZES)
    hm_xy = np.random.default_rng(5).uniform(-0.5, [47.5, 63.5], size=(300, 2))
    kp = c.to_input(hm_xy)
    t = torch.from_numpy(np.stack([c.encode(k[None], np.ones(1)).targets[0] for k in kp]))[None]
    d = c.decode(t).kpts[0, 0].double()
    err = (d - torch.from_numpy(kp)).norm(dim=-1)
    assert err.max() <= c.tol_border
    # the error is the truncation bias, predicted per axis
    pred = np.stack([truncation_bias(hm_xy[:, 0], 48, 2.), truncation_bias(hm_xy[:, 1], 64, 2.)], -1)
    np.testing.assert_allclose(c.to_heatmap(d.numpy()) - hm_xy, pred, atol=1e-3)
    assert truncation_bias(-0.5, 48, 2.) > 1.5 and abs(truncation_bias(8., 48, 2.)) < 1e-3


def test_matches_loop_reference():
    c = IntegralHeatmap(norm='softmax', beta=2., **SIZES)
    hm = _rand(2, 3, 64, 48, seed=6) * 3
    h = c.normalise(hm)
    mu, var = soft_argmax(h)
    rmu, rvar = _loop_soft_argmax(h.numpy())
    np.testing.assert_allclose(mu.numpy(), rmu, atol=1e-3)
    np.testing.assert_allclose(var.numpy(), rvar, atol=1e-3)
    np.testing.assert_allclose(c._decode_hm(hm)[0].numpy(), rmu, atol=1e-3)


def test_encode_weights_and_errors():
    c = IntegralHeatmap(**SIZES)
    e = c.encode(np.array([[[50.3, 100.7], [-20., 10.], [10., 300.], [100.1, 100.2]]]), np.array([[2, 2, 1, 0]]))
    assert e.weights.tolist() == [1, 0, 0, 0] and e.targets.dtype == np.float32
    np.testing.assert_allclose(e.targets.sum((1, 2)), [1, 0, 0, 0], atol=1e-5)
    with pytest.raises(ValueError, match='one person per sample'): c.encode(np.zeros((2, 4, 2)), np.ones((2, 4)))
    with pytest.raises(ValueError, match='norm must be'): IntegralHeatmap(norm='l2')


@pytest.mark.parametrize('norm', ['sihn', 'softmax'])
def test_no_peak_empty_and_low_precision(norm):
    c = IntegralHeatmap(norm=norm, **SIZES)
    hm = _rand(2, 4, 64, 48, seed=7)
    hm[0, 0, 1, 1] = float('nan'); hm[0, 1, 2, 2] = float('inf'); hm[0, 2] = 3.; hm[0, 3] = float('-inf')
    d = c.decode(hm)
    assert d.scores[0, 0].tolist() == [0.] * 4 and (d.scores[1] > 0).all()
    torch.testing.assert_close(d.kpts[0, 0], c.to_input(torch.tensor([[23.5, 31.5]] * 4)))
    assert d.kpts.isfinite().all()
    assert c.decode(torch.zeros(0, 17, 64, 48)).kpts.shape == (0, 1, 17, 2)
    for dt in (torch.float16, torch.bfloat16):
        x = hm[1:].to(dt)
        dd = c.decode(x)
        assert dd.kpts.dtype == torch.float32
        torch.testing.assert_close(dd.kpts, c.decode(x.float()).kpts, atol=1e-4, rtol=0)


def test_autograd_through_decode():
    c = IntegralHeatmap(norm='sihn', **SIZES)
    x = _rand(2, 3, 64, 48, seed=8).requires_grad_()
    c.decode(x).kpts.sum().backward()
    assert x.grad.isfinite().all() and x.grad.abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')
@pytest.mark.parametrize('norm', ['sihn', 'softmax'])
def test_cuda_matches_cpu(norm):
    c = IntegralHeatmap(norm=norm, **SIZES)
    hm = _rand(4, 17, 64, 48, seed=9); hm[0, 0] = float('nan')
    a, b = c.decode(hm), c.decode(hm.cuda())
    torch.testing.assert_close(b.kpts.cpu(), a.kpts, atol=1e-4, rtol=0)
    torch.testing.assert_close(b.scores.cpu(), a.scores, atol=1e-5, rtol=0)


@pytest.mark.parametrize('align', ['udp', 'hrnet'])
@pytest.mark.parametrize('norm', ['sihn', 'softmax'])
def test_check_codec(norm, align):
    oracles = pytest.importorskip('posebench.oracles')
    c = IntegralHeatmap(norm=norm, align=align)
    as_output = None if norm == 'sihn' else (lambda t: np.log(np.maximum(t, 0)) if t.size else t)  # softmax(log t) = t
    with np.errstate(divide='ignore'):
        r = oracles.check_codec(c, as_output=as_output, sizes=[((192, 256), (48, 64)), ((96, 128), (24, 32))])
    assert r['max'] <= c.tol and r['border_max'] <= c.tol_border


@pytest.mark.parametrize('norm', ['sihn', 'softmax'])
def test_matches_oracles(norm):
    oracles = pytest.importorskip('posebench.oracles')
    hm = _rand(2, 17, 64, 48, seed=10) * 3
    c = IntegralHeatmap(norm=norm, beta=1.5)
    ref_h = oracles.ref_sihn(hm.numpy(), 1.5) if norm == 'sihn' else oracles.ref_softmax(hm.numpy(), 1.5)
    np.testing.assert_allclose(c.normalise(hm).numpy(), ref_h, atol=1e-6)
    np.testing.assert_allclose(c._decode_hm(hm)[0].numpy(), oracles.ref_soft_argmax(ref_h), atol=1e-3)
