"""posebench's OffsetGuided Hourglass-104 against the official layout in ../shared/data/official-keys: same state_dict
(names, order, shapes, dtypes, with and without the scale head), output shapes, parameter count and MACs, and the
official checkpoint format ({'epoch', 'train_loss', 'model_state_dict', ...}) loads strictly. The model is built on
the meta device (shapes only), so the whole file runs in a few seconds."""
import json

import pytest
import torch

from posebench.models.checkpoint import CheckpointError, load_checkpoint
from posebench.models.offsetguided import offsetguided_hg104
from posebench.models.summary import count_params, model_summary

FILES = ['offsetguided_posenet_hg104_640']


def _official(shared, name: str) -> dict:
    return json.loads((shared / 'official-keys' / f'{name}.json').read_text())


def _layout(m) -> list:
    return [[k, list(v.shape), str(v.dtype).removeprefix('torch.')] for k, v in m.state_dict().items()]


def _checkpoint(entries) -> dict:
    "An official OffsetGuided checkpoint (networks.save_model) holding meta tensors of the listed shapes and dtypes."
    sd = {k: torch.empty(s, dtype=getattr(torch, t), device='meta') for k, s, t in entries}
    return {'epoch': 77, 'train_loss': 0.0123, 'model_state_dict': sd,
            'optimizer_state_dict': {'state': {}, 'param_groups': [{'lr': 1.25e-4, 'params': [0, 1]}]}}


def test_every_file_of_this_family_is_covered(shared):
    assert sorted(p.stem for p in (shared / 'official-keys').glob('offsetguided_*.json')) == FILES


@pytest.mark.parametrize('name', FILES)
def test_official_layout(shared, name):
    ref = _official(shared, name)
    with torch.device('meta'): model = offsetguided_hg104(n_kpts=ref['num_joints']).eval()
    ours = _layout(model)
    assert len(ours) == ref['num_state_dict_entries']
    assert ours == ref['state_dict']
    assert count_params(model) == ref['params']
    assert count_params(model.basenet) == ref['params_breakdown']['basenet']
    h, w = ref['input_size']
    with torch.no_grad(): out = model(torch.zeros(1, 3, h, w, device='meta'))
    assert list(out) == ['heatmaps', 'offsets']  # no scale head, as the README's evaluation builds it
    flat = [*out['heatmaps'], *out['offsets']]  # the official order: hmp stack 0, 1, then omp stack 0, 1
    assert [list(o.shape) for o in flat] == ref['output_shapes']
    row = model_summary(model, (w, h), convention='repo', reps=0)
    assert row['macs'] == ref['macs']
    assert row['gflops_1e9'] == pytest.approx(ref['gflops'], abs=1e-3)
    assert row['gflops_2p30'] == pytest.approx(ref['gflops_2p30'], abs=1e-3)
    assert row['gflops_exact_1e9'] == row['gflops_1e9']  # no transposed convolution


@pytest.mark.parametrize('name', FILES)
def test_include_scale_layout(shared, name):
    "The training command's --include-scale adds exactly the listed scale-head entries, at the end."
    ref = _official(shared, name)
    with torch.device('meta'): model = offsetguided_hg104(n_kpts=ref['num_joints'], include_scale=True).eval()
    assert _layout(model) == ref['state_dict'] + ref['extra_keys_with_include_scale']
    assert count_params(model) == 187_737_360
    with torch.no_grad(): out = model(torch.zeros(1, 3, 256, 256, device='meta'))
    assert [list(o.shape) for o in out['scales']] == [[1, ref['num_joints'], 64, 64]] * 2


@pytest.mark.parametrize('name', FILES)
def test_official_checkpoint_loads_strict(shared, name):
    ref = _official(shared, name)
    with torch.device('meta'): model = offsetguided_hg104(n_kpts=ref['num_joints'])
    ckpt = _checkpoint(ref['state_dict'])
    rep = load_checkpoint(model, ckpt, strict=True)
    assert len(rep.loaded) == ref['num_state_dict_entries'] and not (rep.missing or rep.unexpected or rep.reinitialised)
    # a checkpoint trained with --include-scale: its scale head fits the model built with it, strictly ...
    scaled = _checkpoint(ref['state_dict'] + ref['extra_keys_with_include_scale'])
    with torch.device('meta'): model_s = offsetguided_hg104(n_kpts=ref['num_joints'], include_scale=True)
    assert len(load_checkpoint(model_s, scaled, strict=True).loaded) == len(scaled['model_state_dict'])
    # ... and is refused by the evaluation model unless asked to drop it (as the official evaluate.py does silently)
    with pytest.raises(CheckpointError, match='unexpected: headnets.1.scale_convs.0.weight'):
        load_checkpoint(model, scaled, strict=True)
    with pytest.warns(UserWarning, match='loaded partially'):
        rep = load_checkpoint(model, scaled, strict=False)
    assert rep.unexpected == [k for k, _, _ in ref['extra_keys_with_include_scale']]
    assert len(rep.loaded) == ref['num_state_dict_entries'] and not rep.missing


@pytest.mark.parametrize('name', FILES)
def test_other_skeleton_reinitialises_only_the_offset_head(shared, name):
    "The official COCO checkpoint into a model with another skeleton (16 limbs): the offset convs are re-initialised."
    ref = _official(shared, name)
    with torch.device('meta'): model = offsetguided_hg104(n_kpts=ref['num_joints'], n_limbs=16)
    with pytest.warns(UserWarning, match='head size differs'):
        rep = load_checkpoint(model, _checkpoint(ref['state_dict']), strict=True)
    assert rep.reinitialised == [f'headnets.1.reg_convs.{i}.{p}' for i in (0, 1) for p in ('weight', 'bias')]
    assert len(rep.loaded) == ref['num_state_dict_entries'] - 4 and not (rep.missing or rep.unexpected)
