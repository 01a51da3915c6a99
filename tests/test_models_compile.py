"""Every architecture's small variant runs under torch.compile (inductor), in channels_last and under bf16 autocast,
and gives the eager answer. (The full-size models are exercised in the notebooks' `#| slow` cells.)"""
import pytest
import torch

from posebench.models.higherhrnet import higher_hrnet_w8_small
from posebench.models.hourglass import hourglass_small
from posebench.models.hrnet import hrnet_w8_small
from posebench.models.offsetguided import offsetguided_hg_small, offsetguided_hrnet_w8_small
from posebench.models.resnet import pose_resnet_small

SMALL = {'pose_resnet_small': (pose_resnet_small, (1, 3, 64, 48)), 'hrnet_w8_small': (hrnet_w8_small, (1, 3, 64, 48)),
         'hourglass_small': (hourglass_small, (1, 3, 64, 64)), 'higher_hrnet_w8_small': (higher_hrnet_w8_small, (1, 3, 64, 64)),
         'offsetguided_hg_small': (offsetguided_hg_small, (1, 3, 64, 64)), 'offsetguided_hrnet_w8_small': (offsetguided_hrnet_w8_small, (1, 3, 64, 64))}


def _outs(y):
    if isinstance(y, dict): return [t for v in y.values() for t in _outs(v)]  # named heads (bottom-up offsets)
    return list(y) if isinstance(y, (list, tuple)) else [y]


@pytest.mark.parametrize('name', SMALL)
def test_compile_channels_last_autocast(name):
    build, shape = SMALL[name]
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(shape)
    with torch.no_grad():
        ref = _outs(model(x))
        got = _outs(torch.compile(model)(x))
        for a, b in zip(ref, got): torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4)
        cl = _outs(model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last)))
        for a, b in zip(ref, cl): torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            bf = _outs(model(x))
        for a, b in zip(ref, bf):
            # offset-guided heads hand back float32 (their 1x1 convs run in bf16, the output is upcast for the decoder)
            assert b.dtype == (torch.float32 if name.startswith('offsetguided') else torch.bfloat16) and torch.isfinite(b).all()
            assert (b.float() - a).abs().max() <= 0.05 * a.abs().max() + 1e-3
