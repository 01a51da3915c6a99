"""posebench.models.bundle: self-describing model files (architecture, codec, schema, weights, version) that hold only
plain values and tensors, load tensors-only, give the same outputs, and fail with a CheckpointError naming the file."""
import os

import numpy as np
import pytest
import torch

from posebench import __version__
from posebench.codecs.gaussian import GaussianHeatmap
from posebench.codecs.integral import IntegralHeatmap
from posebench.codecs.refine import Argmax, Dark, QuarterShift
from posebench.core import COCO17, CROWDPOSE14, MPII16, KeypointSchema, SchemaError
from posebench.models.bundle import (Bundle, codec_from_dict, codec_to_dict, load_model, plain, save_model, schema_from_dict,
                                     schema_to_dict)
from posebench.models.checkpoint import CheckpointError
from posebench.models.zoo import CODECS, build_codec, build_model

HAND = KeypointSchema('hand3', ('wrist', 'left_tip', 'right_tip'), ((0, 1), (0, 2)), ((1, 2),), (0.05, 0.06, 0.06),
                      ((10, 20, 30), (40, 50, 60), (70, 80, 90)))
PLAIN = {dict, list, str, int, float, bool, type(None), torch.Tensor}


def types_in(o) -> set:
    if isinstance(o, dict): return set().union({type(k) for k in o}, *map(types_in, o.values()))
    if isinstance(o, (list, tuple)): return set().union({type(o)}, *map(types_in, o))
    return {type(o)}


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    "A narrow HRNet with a custom 3-keypoint schema, its input and outputs, and its bundle file."
    torch.manual_seed(0)
    m = build_model('hrnet_w8_small', n_kpts=3).eval()
    x = torch.randn(2, 3, 128, 96)
    with torch.no_grad(): y = m(x)
    f = save_model(tmp_path_factory.mktemp('bundle') / 'hand.pt', m, arch='hrnet_w8_small', codec=build_codec('udp', (96, 128)),
                   schema=HAND, extra={'AP': np.float64(0.25), 'epochs': 3, 'run': tmp_path_factory.getbasetemp()})
    return m, x, y, f


@pytest.mark.parametrize('codec', [build_codec(n, (96, 128)) for n in CODECS] + [
    GaussianHeatmap((96, 128), (24, 32), 'hrnet', None, 1.5, decoder=Argmax()),
    GaussianHeatmap((96, 128), (24, 32), 'hrnet', 0, 1., False, 3., QuarterShift(per_axis=True)),
    GaussianHeatmap((192, 256), (48, 64), decoder=Dark.udp(guard=True, kernel=7, max_step=.5)),
    IntegralHeatmap((96, 128), (24, 32), sigma=1., norm='sihn', score='max', beta=2.)], ids=lambda c: repr(c)[:40])
def test_codec_round_trip(codec):
    d = codec_to_dict(codec)
    assert types_in(d) <= PLAIN
    back = codec_from_dict(d)
    assert back == codec and type(back) is type(codec) and type(getattr(back, 'decoder', None)) is type(getattr(codec, 'decoder', None))


def test_codec_errors():
    with pytest.raises(ValueError, match="unknown codec type 'os.system'"): codec_from_dict({'type': 'os.system'})
    with pytest.raises(ValueError, match='has no field stride'): codec_from_dict({**codec_to_dict(build_codec('msra')), 'stride': 4})
    with pytest.raises(ValueError, match='sigma must be > 0'): codec_from_dict({**codec_to_dict(build_codec('dark')), 'sigma': 0})

    class Sub(GaussianHeatmap): pass
    with pytest.raises(TypeError, match='cannot save a Sub'): codec_to_dict(Sub())


@pytest.mark.parametrize('schema', [COCO17, MPII16, CROWDPOSE14, HAND], ids=lambda s: s.name)
def test_schema_round_trip(schema):
    d = schema_to_dict(schema)
    assert types_in(d) <= PLAIN
    assert d['skeleton'] == [[i + 1, j + 1] for i, j in schema.skeleton]  # COCO's 1-based skeleton
    assert schema_from_dict(d) == schema


def test_schema_errors():
    d = schema_to_dict(HAND)
    with pytest.raises(ValueError, match='lacks sigmas'): schema_from_dict({k: v for k, v in d.items() if k != 'sigmas'})
    with pytest.raises(SchemaError, match='not an involution'): schema_from_dict({**d, 'flip_pairs': [[2, 3], [1, 2]]})


def test_plain():
    assert plain({'a': np.float32(0.5), 'b': (1, np.int64(2)), 'p': os.path.join('x', 'y')}) == {'a': 0.5, 'b': [1, 2], 'p': 'x/y'}
    assert type(plain(np.float64(1.5))) is float
    with pytest.raises(TypeError, match=r"extra\['hm'\]: a ndarray is not a plain value \(.*\) \(use .tolist\(\)\)"): plain({'hm': np.zeros(2)}, 'extra')


def test_round_trip_same_outputs(saved):
    m, x, y, f = saved
    b = load_model(f)
    assert isinstance(b, Bundle) and not b.model.training
    with torch.no_grad(): assert torch.equal(b.model(x), y)
    assert (b.arch, b.codec, b.schema, b.version, b.kind) == ('hrnet_w8_small', build_codec('udp', (96, 128)), HAND, __version__, 'topdown')
    assert b.extra['AP'] == 0.25 and b.extra['epochs'] == 3 and isinstance(b.extra['run'], str)
    assert next(b.model.parameters()).device.type == 'cpu'
    assert load_model(f, device='auto').model is not None  # CUDA when available


def test_file_holds_only_plain_values(saved):
    raw = torch.load(saved[3], weights_only=True)
    assert types_in(raw) <= PLAIN
    assert (raw['format'], raw['format_version'], raw['arch'], raw['n_kpts']) == ('posebench-bundle', 1, 'hrnet_w8_small', 3)
    assert raw['codec']['type'] == 'GaussianHeatmap' and raw['codec']['decoder']['type'] == 'Dark'
    assert raw['schema']['keypoints'] == list(HAND.keypoints) and raw['schema']['flip_pairs'] == [[2, 3]]


def test_stacked_and_wrapped(tmp_path):
    hg = build_model('hourglass_small', n_kpts=17).eval()
    x = torch.randn(1, 3, 128, 96)
    with torch.no_grad(): want = hg(x)[-1]
    b = load_model(save_model(tmp_path / 'hg.pt', torch.nn.DataParallel(hg), arch='hourglass_small', codec=build_codec('msra', (96, 128)), schema=COCO17))
    with torch.no_grad(): assert torch.equal(b.model(x)[-1], want)
    assert b.kind == 'stacked'


def test_save_refuses(tmp_path, saved):
    m, codec = saved[0], build_codec('udp', (96, 128))
    bad = tmp_path / 'bad.pt'
    with pytest.raises(ValueError, match="does not fit architecture 'hrnet_w16_small'"):
        save_model(bad, m, arch='hrnet_w16_small', codec=codec, schema=HAND)
    with pytest.raises(ValueError, match=r'final_layer\.weight: model \(3, .* vs hrnet_w8_small \(17, '):
        save_model(bad, m, arch='hrnet_w8_small', codec=codec, schema=COCO17)
    with pytest.raises(ValueError, match='makes 24x32 heatmaps from 96x128 inputs, but the codec expects 48x64'):
        save_model(bad, m, arch='hrnet_w8_small', codec=build_codec('udp', (96, 128), stride=2), schema=HAND)
    with pytest.raises(ValueError, match="unknown architecture 'resnet50'"):
        save_model(bad, m, arch='resnet50', codec=codec, schema=HAND)
    with pytest.raises(TypeError, match="extra\\['cfg'\\]: a object is not a plain value"):
        save_model(bad, m, arch='hrnet_w8_small', codec=codec, schema=HAND, extra={'cfg': object()})
    with pytest.raises(TypeError, match='schema must be a KeypointSchema'):
        save_model(bad, m, arch='hrnet_w8_small', codec=codec, schema=HAND.name)
    assert not bad.exists() and not list(tmp_path.glob('.*tmp'))


class Evil:
    def __reduce__(self): return (os.system, ('echo pwned',))


def test_load_errors_name_the_file(tmp_path, saved):
    f = saved[3]
    raw = torch.load(f, weights_only=True)
    data = f.read_bytes()

    def write(name, **change):
        torch.save({**raw, **change}, tmp_path / name)
        return tmp_path / name
    (tmp_path / 'trunc.pt').write_bytes(data[:len(data) // 3])
    (tmp_path / 'notes.txt').write_text('hello')
    torch.save(saved[0].state_dict(), tmp_path / 'plain.pt')
    torch.save({**raw, 'extra': Evil()}, tmp_path / 'evil.pt')
    cases = {tmp_path / 'trunc.pt': 'truncated or not a PyTorch checkpoint',
             tmp_path / 'notes.txt': 'not a PyTorch checkpoint',
             tmp_path / 'missing.pt': 'no such checkpoint file',
             tmp_path / 'plain.pt': 'not a posebench model bundle',
             tmp_path / 'evil.pt': 'contains a pickled',
             write('arch.pt', arch='hrnet_w99'): "unknown architecture 'hrnet_w99'",
             write('codec.pt', codec={'type': 'SimCC', 'input_size': [1, 2]}): "unknown codec type 'SimCC'",
             write('version.pt', format_version=7): 'bundle format version 7',
             write('nocodec.pt', codec=None): 'codec must be a dict',
             write('schema.pt', schema={**raw['schema'], 'sigmas': [0.1]}): '1 sigmas for 3 keypoints',
             write('weights.pt', state_dict={k: v for k, v in raw['state_dict'].items() if not k.startswith('final_layer')}):
                 'does not fit PoseHRNet (strict=True): loaded'}
    for path, msg in cases.items():
        with pytest.raises(CheckpointError) as e: load_model(path)
        assert str(path) in str(e.value) and msg in str(e.value), (path.name, str(e.value))
    missing = dict(raw); del missing['state_dict']
    torch.save(missing, tmp_path / 'nosd.pt')
    with pytest.raises(CheckpointError, match="nosd.pt: bundle lacks the entry 'state_dict'"): load_model(tmp_path / 'nosd.pt')
