"""Exact official layouts of the released IHL models (ducongju/IHL, MMPose 1.0.0rc0): for ihl_hrnet_w32_256x192 and
ihl_resnet_101_256x192 in ../shared/data/official-keys, `IHLPoseNet` has the same state_dict entries (order, shapes,
dtypes) — the RealNVP flow inside the model included — and output shapes; the MMPose → official renaming turns them into
the plain pose_hrnet / pose_resnet layouts, so the same files load into `PoseHRNet` / `PoseResNet`. Built on the meta
device: shapes only."""
import json

import pytest
import torch

from posebench.models.checkpoint import is_mmpose, mmpose_flow_state, mmpose_key, mmpose_to_official
from posebench.models.hrnet import hrnet_w32
from posebench.models.ihl import RealNVP, ihl_hrnet_w32, ihl_pose_resnet101
from posebench.models.resnet import pose_resnet101
from posebench.models.summary import count_macs, count_params

FILES = {'ihl_hrnet_w32_256x192': (ihl_hrnet_w32, 'pose_hrnet_w32_256x192', hrnet_w32),
         'ihl_resnet_101_256x192': (ihl_pose_resnet101, 'pose_resnet_101_256x192', pose_resnet101)}


def _official(shared, name: str) -> dict:
    return json.loads((shared / 'official-keys' / f'{name}.json').read_text())


def _layout(m) -> list:
    return [[k, list(v.shape), str(v.dtype).removeprefix('torch.')] for k, v in m.state_dict().items()]


def test_every_file_covered(shared):
    assert sorted(p.stem for p in (shared / 'official-keys').glob('ihl_*.json')) == sorted(FILES)


@pytest.mark.parametrize('name', list(FILES))
def test_official_layout(shared, name):
    off = _official(shared, name)
    with torch.device('meta'): m = FILES[name][0](n_kpts=off['num_joints']).eval()
    assert len(off['state_dict']) == off['num_state_dict_entries']
    assert _layout(m) == off['state_dict']
    assert count_params(m, trainable_only=False) == off['params_all']
    fc = sum(p.numel() for p in m.head.fc.parameters())
    assert count_params(m) == off['params'] - fc  # the release's dead fc takes no gradients here (DDP-safe)
    assert count_params(m) - sum(p.numel() for p in m.flow.parameters()) == off['params_forward']
    h, w = off['input_size']
    with torch.no_grad():
        c, hm = m.forward_official(torch.zeros(1, 3, h, w, device='meta'))
    assert [list(c.shape), list(hm.shape)] == off['output_shapes']
    assert abs(count_macs(m, (w, h)) / off['macs'] - 1) < 0.005  # only the layers forward runs (not the flow or fc)


@pytest.mark.parametrize('name', list(FILES))
def test_mmpose_renaming_gives_the_official_layout(shared, name):
    off, plain = _official(shared, name), _official(shared, FILES[name][1])
    keys = [k for k, _, _ in off['state_dict']]
    mapped = [(mmpose_key(k), s, d) for k, s, d in off['state_dict']]
    assert [[k, s, d] for k, s, d in mapped if k is not None] == plain['state_dict']
    dropped = [k for k, (n, _, _) in zip(keys, mapped) if n is None]
    assert len(dropped) == 79 and sum(k.startswith('head.loss_module.') for k in dropped) == 75


@pytest.mark.parametrize('name', list(FILES))
def test_release_checkpoint_loads(shared, name):
    "A state_dict with the release's names and shapes loads strictly into IHLPoseNet, and renamed into the plain model."
    off = _official(shared, name)
    torch.manual_seed(0)
    sd = {k: (torch.randn(s) * 0.01 if d == 'float32' else torch.zeros(s, dtype=getattr(torch, d))) for k, s, d in off['state_dict']}
    sd = {k: (torch.ones_like(v) if k.endswith('running_var') or k.endswith('flow_model.cov') else v) for k, v in sd.items()}
    sd = {k: (torch.zeros_like(v) if k.endswith('flow_model.loc') else v) for k, v in sd.items()}
    builder, _, plain_builder = FILES[name]
    with torch.device('meta'): m, p = builder(n_kpts=off['num_joints']), plain_builder(n_kpts=off['num_joints'])
    m.load_state_dict(sd, strict=True, assign=True)
    assert is_mmpose(sd)
    p.load_state_dict(mmpose_to_official(sd), strict=True, assign=True)
    flow = RealNVP(); flow.load_state_dict(mmpose_flow_state(sd), strict=True)
    assert torch.equal(flow.t[5][4].bias, sd['head.loss_module.loss_modules.0.flow_model.t.5.4.bias'])
