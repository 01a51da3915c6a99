"""The training notebook (nbs/runs/train.ipynb) run small through the real `posebench run` command, on the synthetic
default and on COCO-MINI: it trains, writes its decoder table, curves, predictions and model bundle, and the numbers it
reports are those the library computes again from the saved bundle."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from posebench.data.readers import read_coco
from posebench.data.topdown import TopDownDataset
from posebench.eval.coco import coco_eval
from posebench.codecs.zoo import decoder_variants
from posebench.eval.topdown import predict_dataset
from posebench.models.bundle import load_model
from posebench.train.loop import read_log


def posebench_cmd():
    exe = Path(sys.executable).parent / 'posebench'
    return [str(exe)] if exe.exists() else [sys.executable, '-m', 'posebench.runner']


def run_train(tmp: Path, *params) -> Path:
    env = {**os.environ, 'POSEBENCH_DATA': str(tmp / 'data'), 'MPLBACKEND': 'Agg'}
    args = ['run', 'train', '-q', '-p', 'workers', '0', *params, '--out', str(tmp / 'runs')]
    r = subprocess.run([*posebench_cmd(), *args], cwd=tmp, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (d,) = [p for p in (tmp / 'runs').iterdir() if p.is_dir()]
    return d


@pytest.fixture(scope='module')
def synthetic_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('train')
    return run_train(tmp, '-p', 'n_synthetic', '120', '-p', 'epochs', '2', '-p', 'val_every', '1', '-p', 'n_show', '2')


def test_run_folder(synthetic_run):
    d = synthetic_run
    for f in ('train.ipynb', 'curves.png', 'predictions.png', 'breakdown.png', 'decoders.md', 'metrics.json', 'model.pt',
              'log.jsonl', 'steps.jsonl', 'last.pt', 'params.json', 'meta.json'):
        assert (d / f).stat().st_size > 0, f
    assert json.loads((d / 'meta.json').read_text())['status'] == 'ok'
    log = read_log(d)
    assert [r['epoch'] for r in log] == [0, 1] and all(0 <= r['val_AP'] <= 1 for r in log)
    assert all(r['data_time'] > 0 and r['step_time'] > 0 for r in log)
    table = (d / 'decoders.md').read_text()
    for name in ('mean pose in the box', 'argmax', 'quarter', 'dark', 'integral'): assert f'| {name}' in table
    assert 'ΔAP vs quarter [95% CI] |' in table and table.count('| reference |') == 1


def test_reported_numbers_recomputed_from_bundle(synthetic_run, monkeypatch):
    "metrics.json's decoder APs are what predict_dataset + coco_eval give for the saved model: nothing invented."
    d = synthetic_run
    m = json.loads((d / 'metrics.json').read_text())
    assert set(m['decoders']) == {'argmax', 'quarter', 'dark', 'integral'} and m['boxes'] == 'ground-truth'
    assert m['reference_decoder'] == 'quarter' and set(m['bootstrap']) == {'baseline', 'argmax', 'dark', 'integral'}
    for name in ('argmax', 'dark', 'integral'):  # each interval pairs the decoder with the reference on the same images
        r = m['bootstrap'][name]
        assert r['lo'] <= r['delta'] <= r['hi'] and r['delta'] == pytest.approx(m['decoders'][name]['AP'] - m['decoders']['quarter']['AP'], abs=1e-6)
    model, codec, schema = (b := load_model(d / 'model.pt')).model, b.codec, b.schema
    assert codec.input_size == (96, 128) and schema.n_kpts == 17
    root = d.parent.parent / 'data'
    (syn,) = [p for p in root.iterdir() if p.name.startswith('synthetic')]
    val = read_coco(syn / 'annotations/person_keypoints_val.json')
    preds = predict_dataset(model, TopDownDataset(val, codec, train=False), decoder_variants(codec, ('dark', 'argmax')), flip_test=True)
    for name in ('dark', 'argmax'):
        ap = coco_eval(val, preds[name].results(val.schema.sigmas))['AP']
        assert ap == pytest.approx(m['decoders'][name]['AP'], abs=1e-9), name


def test_runs_on_coco_mini(shared, tmp_path):
    ann = shared / 'coco-mini' / 'annotations'
    d = run_train(tmp_path, '-p', 'data', 'coco', '-p', 'train_ann', str(ann / 'person_keypoints_train2017.json'),
                  '-p', 'val_ann', str(ann / 'person_keypoints_val2017.json'), '-p', 'epochs', '1', '-p', 'n_show', '2')
    m = json.loads((d / 'metrics.json').read_text())
    val = read_coco(ann / 'person_keypoints_val2017.json')
    assert m['persons_val'] == len(val) and set(m['decoders']) == {'argmax', 'quarter', 'dark', 'integral'}
    assert all(0 <= v['AP'] <= 1 for v in m['decoders'].values()) and 0 <= m['baseline']['AP'] <= 1


def test_heatmap_stride_must_match_the_model(tmp_path):
    "A codec stride that is not the model's output stride stops the run before training, saying which parameter to set."
    env = {**os.environ, 'POSEBENCH_DATA': str(tmp_path / 'data'), 'MPLBACKEND': 'Agg'}
    args = ['run', 'train', '-q', '-p', 'workers', '0', '-p', 'n_synthetic', '8', '-p', 'epochs', '1', '-p', 'heatmap_stride', '2',
            '--out', str(tmp_path / 'runs')]
    r = subprocess.run([*posebench_cmd(), *args], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode != 0
    assert 'outputs 24x32 heatmaps at 96x128 but the codec expects 48x64: set heatmap_stride' in r.stdout + r.stderr, r.stdout[-2000:] + r.stderr[-2000:]
