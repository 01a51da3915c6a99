"""`posebench predict` from the command line (`posebench.runner.main`): the JSON it writes is what `predict` returns,
its one-line-per-image output, and errors as one line on stderr with status 1. Everything else about `predict` is
tested in nbs/45_predict.ipynb."""
import json

import numpy as np
import pytest
import torch

from posebench.codecs.gaussian import dark_heatmap
from posebench.codecs.zoo import build_codec
from posebench.core import COCO17
from posebench.data.readers import read_coco
from posebench.data.synthetic import ensure_synthetic
from posebench.models.bundle import save_model
from posebench.models.zoo import build_model
from posebench.predict import list_images, predict
from posebench.runner import main

CODEC = dark_heatmap((96, 128), (24, 32), 1.)


@pytest.fixture(scope='module')
def synth(tmp_path_factory):
    root = ensure_synthetic(tmp_path_factory.mktemp('synthetic'), n_train=2, n_val=8, verbose=False, workers=1)
    return root / 'images' / 'val', read_coco(root / 'annotations' / 'person_keypoints_val.json')


@pytest.fixture(scope='module')
def bundle(tmp_path_factory):
    torch.manual_seed(0)
    net = build_model('hrnet_w8_small', n_kpts=17)
    return save_model(tmp_path_factory.mktemp('bundle') / 'w8.pt', net, arch='hrnet_w8_small', codec=CODEC, schema=COCO17)


def test_cli(synth, bundle, tmp_path, capsys):
    folder, ann = synth
    dets = [dict(image_id=r.image_id, category_id=1, bbox=r.bbox.tolist(), score=.8) for r in ann]
    (tmp_path / 'dets.json').write_text(json.dumps(dets))
    out = tmp_path / 'out' / 'kp.json'
    assert main(['predict', str(bundle), str(folder), '--boxes', str(tmp_path / 'dets.json'), '--out', str(out), '--device', 'cpu', '--batch-size', '4']) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    want = predict(bundle, folder, boxes=tmp_path / 'dets.json', device='cpu').to_coco()
    assert json.loads(out.read_text()) == json.loads(json.dumps(want)) and len(want) == len(ann)
    assert len(lines) == len(list_images(folder)) + 1 and lines[0].startswith('000000001.jpg (id 1): ')
    assert lines[-1] == f'posebench predict: {len(ann)} persons in {len(list_images(folder))} images (boxes: detections dets.json) -> {out}'
    # no flip test, quiet, whole images, OKS-NMS: other keypoints, one line
    assert main(['predict', str(bundle), str(folder), '--out', str(tmp_path / 'noflip.json'), '--no-flip', '-q', '--nms', '--device', 'cpu']) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and 'boxes: whole image' in lines[0]
    noflip = json.loads((tmp_path / 'noflip.json').read_text())
    assert len(noflip) == len(list_images(folder)) and all(len(e['keypoints']) == 51 for e in noflip)
    # errors: one line on stderr, status 1, nothing written
    (tmp_path / 'bad').mkdir(); (tmp_path / 'bad' / 'a.jpg').write_bytes(b'nope')
    assert main(['predict', str(bundle), str(tmp_path / 'bad'), '--out', str(tmp_path / 'x.json')]) == 1
    assert f'posebench predict: error: cannot decode image file {tmp_path / "bad" / "a.jpg"}' in capsys.readouterr().err
    assert main(['predict', str(tmp_path / 'dets.json'), str(folder), '--out', str(tmp_path / 'x.json')]) == 1
    assert 'dets.json: not a PyTorch checkpoint' in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(['predict', str(bundle), str(folder), '--out', str(tmp_path / 'x.json'), '--device', 'cuda']) == 1
        assert capsys.readouterr().err.strip() == "posebench predict: error: device 'cuda' was asked for, but torch sees no CUDA device"
    assert not (tmp_path / 'x.json').exists()
    with pytest.raises(SystemExit): main(['predict', '--help'])
    assert '--min-box-score' in capsys.readouterr().out


@pytest.fixture(scope='module')
def offsets_bundle(tmp_path_factory):
    "An untrained guiding-offset network: PyTorch's default initialisation (the zoo's near-zero heads find nobody), heatmap bias raised so that it finds candidates."
    torch.manual_seed(0)
    net = build_model('offsetguided_hrnet_w8_small', n_kpts=17)
    for m in net.modules():
        if hasattr(m, 'reset_parameters'): m.reset_parameters()
    with torch.no_grad(): net.headnets[0].hp_convs[0].bias.add_(.5)
    return save_model(tmp_path_factory.mktemp('bundle') / 'og.pt', net, arch='offsetguided_hrnet_w8_small',
                      codec=build_codec('offsets', input_size=(256, 256)), schema=COCO17)


def test_cli_bottomup(synth, offsets_bundle, tmp_path, capsys):
    "A bottom-up bundle on whole 256x192 images: well-formed COCO JSON, what `predict` returns, keypoints in image px."
    folder, _ = synth
    files = list_images(folder)[:2]
    out = tmp_path / 'bu.json'
    assert main(['predict', str(offsets_bundle), *files, '--out', str(out), '--device', 'cpu']) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    got = json.loads(out.read_text())
    want = predict(offsets_bundle, files, device='cpu')
    assert got == json.loads(json.dumps(want.to_coco())) and len(got) == len(want) > 10
    assert len(lines) == 3 and lines[-1] == f'posebench predict: {len(got)} persons in 2 images (boxes: none, bottom-up) -> {out}'
    assert {e['image_id'] for e in got} <= {1, 2} and all(sorted(e) == ['bbox', 'category_id', 'image_id', 'keypoints', 'score'] for e in got)
    kp = np.array([e['keypoints'] for e in got]).reshape(-1, 17, 3)
    assert np.isfinite(kp).all() and np.allclose([e['score'] for e in got], kp[..., 2].mean(1))
    found = kp[kp[..., 2] > 0][:, :2]
    assert (kp[..., 2] > 0).sum(1).min() >= 2  # persons come from limbs: at least two keypoints
    # the 256x192 image is centred in the 256x256 input: found keypoints lie in the input's area mapped back, padding included
    assert found[:, 0].min() >= 0 and found[:, 0].max() <= 255 and found[:, 1].min() >= -32 and found[:, 1].max() <= 223
    assert found[:, 1].min() < -8 and found[:, 1].max() > 200  # an untrained net finds "keypoints" in the padding too: y spans it
    box = np.array([e['bbox'] for e in got])
    assert np.allclose(box[:, :2], [k[k[:, 2] > 0][:, :2].min(0) for k in kp])
    # no flip, quiet
    assert main(['predict', str(offsets_bundle), *files, '--out', str(tmp_path / 'nf.json'), '--no-flip', '-q', '--batch-size', '1']) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1
    assert json.loads((tmp_path / 'nf.json').read_text()) == json.loads(json.dumps(predict(offsets_bundle, files, flip_test=False, device='cpu', batch_size=1).to_coco()))
    # person boxes and OKS-NMS mean nothing to a bottom-up model: one line on stderr, status 1
    (tmp_path / 'dets.json').write_text(json.dumps([dict(image_id=1, category_id=1, bbox=[1, 2, 30, 40], score=.9)]))
    assert main(['predict', str(offsets_bundle), *files, '--boxes', str(tmp_path / 'dets.json'), '--out', str(tmp_path / 'x.json')]) == 1
    assert 'a bottom-up model finds every person in the whole image' in capsys.readouterr().err
    assert main(['predict', str(offsets_bundle), *files, '--nms', '--out', str(tmp_path / 'x.json')]) == 1
    assert 'a bottom-up model has no boxes' in capsys.readouterr().err
    assert not (tmp_path / 'x.json').exists()
