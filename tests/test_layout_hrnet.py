"""Exact official layouts of HRNet and HigherHRNet (issue 4): for every pose_hrnet_* / higher_hrnet_* file in
../shared/data/official-keys, the posebench model has the same state_dict entries (order, shapes, dtypes), output
shapes, parameter count and MACs (repos' convention) as the official model. Models are built on the meta device:
shapes only, no arithmetic, so even HigherHRNet-W48 at 640x640 takes well under a second."""
import json

import pytest
import torch

from posebench.models.hrnet import HRNet, hrnet, hrnet_w32, hrnet_w48, ARCHS
from posebench.models.higherhrnet import higher_hrnet, higher_hrnet_w32, higher_hrnet_w48
from posebench.models.summary import count_macs, count_params

BUILDERS = {'pose_hrnet_w32': hrnet_w32, 'pose_hrnet_w48': hrnet_w48,
            'higher_hrnet_w32': higher_hrnet_w32, 'higher_hrnet_w48': higher_hrnet_w48}
FILES = ['pose_hrnet_w32_256x192', 'pose_hrnet_w48_256x192', 'pose_hrnet_w32_384x288', 'pose_hrnet_w48_384x288',
         'pose_hrnet_w32_256x256', 'pose_hrnet_w48_256x256',
         'higher_hrnet_w32_512', 'higher_hrnet_w32_640', 'higher_hrnet_w48_640']


def _official(shared, name: str) -> dict:
    return json.loads((shared / 'official-keys' / f'{name}.json').read_text())


def _layout(m) -> list:
    return [[k, list(v.shape), str(v.dtype).removeprefix('torch.')] for k, v in m.state_dict().items()]


def test_every_file_covered(shared):
    found = sorted(p.stem for pat in ('pose_hrnet_*.json', 'higher_hrnet_*.json') for p in (shared / 'official-keys').glob(pat))
    assert found == sorted(FILES)


@pytest.mark.parametrize('name', FILES)
def test_official_layout(shared, name):
    off = _official(shared, name)
    with torch.device('meta'): m = BUILDERS[name.rsplit('_', 1)[0]](n_kpts=off['num_joints']).eval()
    assert len(off['state_dict']) == off['num_state_dict_entries']
    assert _layout(m) == off['state_dict']
    assert count_params(m) == off['params']
    h, w = off['input_size']
    with torch.no_grad(): out = m(torch.zeros(1, 3, h, w, device='meta'))
    out = out if isinstance(out, list) else [out]
    assert [list(y.shape) for y in out] == off['output_shapes']
    macs = count_macs(m, (w, h))  # the repos' rule: conv weight size x output H x W, deconv at output resolution
    assert abs(macs / off['macs'] - 1) < 0.005
    if name.startswith('higher'):  # HigherHRNet's README prints MACs/1e9; the real deconv MACs are 1/4 of the rule's
        assert round(macs / 1e9, 1) == off['published']['gflops']
        assert abs(count_macs(m, (w, h), 'exact') / 1e9 / off['gflops_exact_deconv'] - 1) < 0.005
    else:  # the top-down repos print MACs/2^30
        assert abs(macs / 2**30 / off['gflops_2p30'] - 1) < 0.005


def test_w32_loads_official_layout_strict(shared):
    "A state_dict with exactly the official names and shapes (as a published checkpoint) loads with strict=True."
    off = _official(shared, 'pose_hrnet_w32_256x192')
    torch.manual_seed(0)
    sd = {k: (torch.randn(s) * 0.01 if d == 'float32' else torch.zeros(s, dtype=getattr(torch, d))) for k, s, d in off['state_dict']}
    sd = {k: (torch.ones_like(v) if k.endswith('running_var') else v) for k, v in sd.items()}
    m = hrnet_w32(n_kpts=off['num_joints']).eval()
    m.load_state_dict(sd, strict=True)
    assert torch.equal(m.final_layer.weight, sd['final_layer.weight'])
    with torch.no_grad(): y = m(torch.randn(1, 3, 128, 96))  # a real forward (half size, to stay quick on CPU)
    assert y.shape == (1, off['num_joints'], 32, 24) and torch.isfinite(y).all() and y.std() > 0


@pytest.mark.parametrize('arch', list(ARCHS))
def test_backbone_feature_info(arch):
    with torch.device('meta'): bb = HRNet(ARCHS[arch]).eval()
    with torch.no_grad(): fs = bb(torch.zeros(2, 3, 256, 192, device='meta'))
    assert [tuple(f.shape) for f in fs] == [(2, fi.channels, 256 // fi.stride, 192 // fi.stride) for fi in bb.feature_info]
    assert [fi.stride for fi in bb.feature_info] == [4, 8, 16, 32]
    assert [fi.channels for fi in bb.feature_info] == ARCHS[arch].channels


@pytest.mark.parametrize('width', [18, 40])
def test_any_width_heads_from_feature_info(width):
    with torch.device('meta'):
        p, hh = hrnet(width, n_kpts=14), higher_hrnet(width, n_kpts=14)
    assert p.final_layer.weight.shape == (14, width, 1, 1)
    assert hh.deconv_layers[0][0][0].weight.shape == (width + 28, width, 4, 4)
    assert [m.weight.shape[0] for m in hh.final_layers] == [28, 14]
