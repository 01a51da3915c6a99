"""Checkpoint loading on synthetic files written in the layouts users bring (zoo state dicts, training snapshots,
DataParallel prefixes, legacy serialisation, ImageNet backbones) and in every broken way we could think of."""
import os
import pickle
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

from posebench.models.checkpoint import CheckpointError, load_backbone, load_checkpoint, read_state_dict
from posebench.models.hourglass import HourglassArch, StackedHourglass
from posebench.models.resnet import pose_resnet_small, resnet_small


class Payload:
    def __init__(self, target): self.target = target
    def __reduce__(self): return (os.system, (f'touch {self.target}',))


@pytest.fixture
def trained():
    torch.manual_seed(0)
    m = pose_resnet_small().eval()
    for p in m.parameters(): p.data.normal_()  # distinct values everywhere, so a wrong copy shows
    return m


@pytest.mark.parametrize('layout', ['bare', 'legacy', 'snapshot', 'model_wrapper', 'ddp_bare'])
def test_layouts_round_trip(tmp_path, trained, layout):
    sd, f = trained.state_dict(), tmp_path / 'ck.pth'
    obj = {'bare': sd, 'legacy': sd, 'model_wrapper': {'model': sd, 'epoch': 3},
           'snapshot': {'epoch': 140, 'model': 'pose_resnet', 'perf': 0.7, 'optimizer': {'state': {}, 'param_groups': [{'lr': 1e-3}]},
                        'state_dict': {f'module.{k}': v for k, v in sd.items()}},
           'ddp_bare': {f'module.{k}': v for k, v in sd.items()}}[layout]
    torch.save(obj, f, _use_new_zipfile_serialization=layout != 'legacy')
    m = pose_resnet_small().eval()
    rep = load_checkpoint(m, f)
    assert len(rep.loaded) == len(sd) and not (rep.missing or rep.unexpected or rep.reinitialised)
    x = torch.randn(1, 3, 128, 96)
    with torch.no_grad(): assert torch.equal(m(x), trained(x))


def _write_bad(tmp_path, kind) -> Path:
    f = tmp_path / f'{kind}.pth'
    good = tmp_path / 'good.pth'
    torch.save(pose_resnet_small().state_dict(), good)
    if kind == 'text': f.write_text('model weights: see README\n')
    elif kind == 'empty': f.write_bytes(b'')
    elif kind == 'truncated': f.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == 'foreign_zip':
        with zipfile.ZipFile(f, 'w') as z: z.writestr('weights.txt', '1 2 3')
    elif kind == 'object': torch.save({'w': torch.ones(1), 'run': Payload(tmp_path / 'pwned')}, f)
    elif kind == 'raw_pickle': f.write_bytes(pickle.dumps({'run': Payload(tmp_path / 'pwned')}))
    return f


@pytest.mark.parametrize('kind,msg', [('text', 'not a PyTorch checkpoint'), ('empty', 'empty file'),
                                      ('truncated', 'truncated or not a PyTorch checkpoint'),
                                      ('foreign_zip', 'truncated or not a PyTorch checkpoint'),
                                      ('object', 'contains a pickled posix.system object'),
                                      ('raw_pickle', 'not a PyTorch checkpoint')])
def test_bad_files_give_a_clear_error_and_run_nothing(tmp_path, kind, msg):
    f = _write_bad(tmp_path, kind)
    with pytest.raises(CheckpointError, match=msg) as e: load_checkpoint(pose_resnet_small(), f)
    assert str(f) in str(e.value) and '\n' not in str(e.value)
    assert not (tmp_path / 'pwned').exists()


def test_missing_file_and_non_tensor_entries(tmp_path):
    with pytest.raises(CheckpointError, match='no such checkpoint file'): read_state_dict(tmp_path / 'nope.pth')
    torch.save({'w': torch.ones(1), 'epoch': 3}, tmp_path / 'mixed.pth')
    with pytest.raises(CheckpointError, match="entry 'epoch' is a int"): read_state_dict(tmp_path / 'mixed.pth')


def test_strict_refuses_before_touching_the_model(trained):
    sd = trained.state_dict()
    m = pose_resnet_small()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    for bad, msg in [({**sd, 'extra.weight': torch.ones(1)}, 'unexpected: extra.weight'),
                     ({k: v for k, v in sd.items() if k != 'layer2.0.bn1.weight'}, 'missing: layer2.0.bn1.weight'),
                     ({**sd, 'conv1.weight': torch.ones(16, 1, 7, 7)}, r'conv1.weight: checkpoint \[16, 1, 7, 7\] vs model \[16, 3, 7, 7\]')]:
        with pytest.raises(CheckpointError, match=msg): load_checkpoint(m, bad)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_old_checkpoint_without_num_batches_tracked_loads_strictly(trained):
    sd = {k: v for k, v in trained.state_dict().items() if not k.endswith('num_batches_tracked')}
    m = pose_resnet_small()
    assert load_checkpoint(m, sd).missing == []
    assert torch.equal(m.bn1.running_var, trained.bn1.running_var)


def test_other_keypoint_count_reinitialises_the_head(trained):
    m = pose_resnet_small(n_kpts=16)
    with pytest.warns(UserWarning, match=r'final_layer.weight: checkpoint \[17, 64, 1, 1\] vs model \[16, 64, 1, 1\]'):
        rep = load_checkpoint(m, trained.state_dict())
    assert rep.reinitialised == ['final_layer.weight', 'final_layer.bias']
    assert torch.equal(m.deconv_layers[3].weight, trained.deconv_layers[3].weight)
    assert torch.equal(m.final_layer.bias, torch.zeros(16)) and m.final_layer.weight.std() < 0.01


def test_hourglass_head_reinit_covers_both_directions():
    "score.i maps features to K heatmaps, score_.i maps K heatmaps back: both change with K."
    src = StackedHourglass(HourglassArch(2, 32), n_kpts=17)
    m = StackedHourglass(HourglassArch(2, 32), n_kpts=16)
    with pytest.warns(UserWarning, match='re-initialised 5 head tensors'):
        rep = load_checkpoint(m, src.state_dict())
    assert rep.reinitialised == ['score.0.weight', 'score.0.bias', 'score.1.weight', 'score.1.bias', 'score_.0.weight']
    assert torch.equal(m.fc_[0].weight, src.fc_[0].weight) and torch.equal(m.score_[0].bias, src.score_[0].bias)


def test_torchvision_backbone_into_pose_resnet():
    tv = resnet_small().state_dict()
    tv.update({'fc.weight': torch.randn(1000, 128), 'fc.bias': torch.zeros(1000)})
    m = pose_resnet_small()
    head = m.final_layer.weight.detach().clone()
    rep = load_backbone(m, {f'module.{k}': v for k, v in tv.items()})
    assert rep.ignored == {'fc': 2} and rep.missing == [] and rep.unexpected == []
    assert torch.equal(m.layer3[0].conv1.weight, tv['layer3.0.conv1.weight'])
    assert torch.equal(m.final_layer.weight, head)
    with pytest.raises(CheckpointError, match='lacks'):
        load_backbone(pose_resnet_small(), {k: v for k, v in tv.items() if not k.startswith('layer4')})


def test_hrnet_imagenet_layout_into_pose_hrnet(tmp_path):
    hrnet = pytest.importorskip('posebench.models.hrnet')
    pose = hrnet.hrnet_w8_small()
    inet = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in pose.state_dict().items() if not k.startswith('final_layer')}
    last = max(int(k.split('.')[1]) for k in inet if k.startswith('stage4.'))
    inet.update({'incre_modules.0.0.conv1.weight': torch.zeros(32, 8, 1, 1), 'downsamp_modules.0.0.weight': torch.zeros(256, 128, 3, 3),
                 'final_layer.0.weight': torch.zeros(2048, 1024, 1, 1), 'final_layer.1.weight': torch.zeros(2048),
                 'classifier.weight': torch.zeros(1000, 2048), f'stage4.{last}.fuse_layers.2.0.0.0.weight': torch.zeros(32, 8, 3, 3)})
    torch.save(inet, tmp_path / 'hrnet_w8_imagenet.pth')
    m = hrnet.hrnet_w8_small()
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a complete backbone loads without warnings
        rep = load_backbone(m, tmp_path / 'hrnet_w8_imagenet.pth')
    assert rep.ignored == {'incre_modules': 1, 'downsamp_modules': 1, 'final_layer': 2, 'classifier': 1}
    assert rep.unexpected == [f'stage4.{last}.fuse_layers.2.0.0.0.weight'] and rep.missing == []
    sd = m.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in inet.items() if k in sd)
    assert sum(k in sd for k in inet) == len(rep.loaded) > 100
