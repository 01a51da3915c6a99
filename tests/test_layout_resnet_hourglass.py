"""posebench's SimpleBaseline and Hourglass models against the official layouts in ../shared/data/official-keys:
same state_dict (names, order, shapes, dtypes), output shapes, parameter count and MACs under the stated convention.
Full models are built on the meta device (shapes only), so the whole file runs in seconds."""
import json
import re

import pytest
import torch

from posebench.models import hourglass, resnet
from posebench.models.checkpoint import load_checkpoint
from posebench.models.summary import count_macs, count_params, model_summary

FILES = [f'pose_resnet_{d}_{s}' for d in (50, 101, 152) for s in ('256x192', '384x288', '256x256')] + [
    'darkpose_hourglass_4stack_256feat_128x96', 'darkpose_hourglass_8stack_256feat_128x96',
    'fpd_hourglass_4stack_128feat_256x256', 'fpd_hourglass_8stack_256feat_256x256']


def build(name: str, n_kpts: int) -> torch.nn.Module:
    "The posebench model of an official file name, on the meta device."
    with torch.device('meta'):
        if m := re.fullmatch(r'pose_resnet_(\d+)_\d+x\d+', name):
            return getattr(resnet, f'pose_resnet{m[1]}')(n_kpts=n_kpts)
        m = re.fullmatch(r'(darkpose|fpd)_hourglass_(\d)stack_(\d+)feat_\d+x\d+', name)
        return getattr(hourglass, f'hourglass{m[2]}_{m[3]}')(n_kpts=n_kpts)


def test_every_file_of_these_families_is_covered(shared):
    on_disk = {p.stem for p in (shared / 'official-keys').glob('*.json') if p.stem.startswith(('pose_resnet', 'darkpose_hourglass', 'fpd_hourglass'))}
    assert on_disk == set(FILES)


@pytest.mark.parametrize('name', FILES)
def test_official_layout(shared, name):
    ref = json.loads((shared / 'official-keys' / f'{name}.json').read_text())
    model = build(name, ref['num_joints'])
    ours = [[k, list(v.shape), str(v.dtype).removeprefix('torch.')] for k, v in model.state_dict().items()]
    assert len(ours) == ref['num_state_dict_entries']
    assert ours == ref['state_dict']
    assert count_params(model) == ref['params']
    h, w = ref['input_size']
    out = model(torch.zeros(1, 3, h, w, device='meta'))
    assert [list(o.shape) for o in (out if isinstance(out, list) else [out])] == ref['output_shapes']
    row = model_summary(model, (w, h), convention='repo', reps=0)  # one hooked forward counts both conventions
    assert row['macs'] == pytest.approx(ref['macs'], rel=5e-3)
    assert row['gflops_2p30'] == pytest.approx(ref['gflops_2p30'], abs=1e-3)
    assert row['gflops_1e9'] == pytest.approx(ref['gflops'], abs=1e-3)
    if 'gflops_exact_deconv' in ref:
        assert row['gflops_exact_1e9'] == pytest.approx(ref['gflops_exact_deconv'], rel=5e-3)
    else:  # no transposed convolution: both conventions agree
        assert row['gflops_exact_1e9'] == row['gflops_1e9']
    # a checkpoint with exactly this layout (tensors of the listed shapes and dtypes) loads strictly
    ckpt = {k: torch.empty(s, dtype=getattr(torch, t), device='meta') for k, s, t in ref['state_dict']}
    rep = load_checkpoint(model, ckpt, strict=True)
    assert len(rep.loaded) == len(ckpt) and not (rep.missing or rep.unexpected or rep.reinitialised)


@pytest.mark.parametrize('build_small,size', [(resnet.pose_resnet_small, (96, 128)), (hourglass.hourglass_small, (96, 128))])
def test_meta_count_equals_real_count(build_small, size):
    "Counting on the meta device (used above) gives the same MACs as a real CPU forward pass."
    real = build_small()
    with torch.device('meta'): meta = build_small()
    for conv in ('repo', 'exact'):
        assert count_macs(meta, size, conv) == count_macs(real, size, conv) > 0
