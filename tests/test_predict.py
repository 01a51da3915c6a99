"""`posebench predict` from the command line (`posebench.runner.main`): the JSON it writes is what `predict` returns,
its one-line-per-image output, and errors as one line on stderr with status 1. Everything else about `predict` is
tested in nbs/45_predict.ipynb."""
import json

import pytest
import torch

from posebench.codecs.gaussian import dark_heatmap
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
