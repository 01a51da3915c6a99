"""The training notebook (nbs/runs/train.ipynb) run small through the real `posebench run` command, on the synthetic
default and on COCO-MINI: it trains, writes its decoder table, curves, predictions and model bundle, and the numbers it
reports are those the library computes again from the saved bundle."""
import json
from pathlib import Path

import pytest

from posebench.codecs.zoo import decoder_variants
from posebench.data.readers import read_coco
from posebench.data.topdown import TopDownDataset
from posebench.eval.coco import coco_eval
from posebench.eval.topdown import predict_dataset
from posebench.models.bundle import load_model
from posebench.test_utils import run_notebook
from posebench.train.loop import read_log


def run_train(tmp: Path, **params) -> Path:
    return run_notebook('train', tmp, dict(workers=0, **params), timeout=600)


@pytest.fixture(scope='module')
def synthetic_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('train')
    return run_train(tmp, n_synthetic=120, epochs=2, val_every=1, n_show=2)


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
    # the oracle: the model's own DARK AP first, then each replacement by the ground truth, every labelled keypoint = 1
    o = m['oracle']['AP']
    assert list(o)[0] == 'the model' and o['the model'] == pytest.approx(m['decoders']['dark']['AP'], abs=1e-12)
    assert o['every labelled keypoint from the ground truth'] == pytest.approx(1.0, abs=1e-9)
    assert 0 < m['oracle']['occluded_share'] < 1 and 0 < m['oracle']['small_share'] < 1


def test_runs_on_coco_mini(shared, tmp_path):
    ann = shared / 'coco-mini' / 'annotations'
    d = run_train(tmp_path, data='coco', train_ann=ann / 'person_keypoints_train2017.json', val_ann=ann / 'person_keypoints_val2017.json',
                  epochs=1, n_show=2)
    m = json.loads((d / 'metrics.json').read_text())
    val = read_coco(ann / 'person_keypoints_val2017.json')
    assert m['persons_val'] == len(val) and set(m['decoders']) == {'argmax', 'quarter', 'dark', 'integral'}
    assert all(0 <= v['AP'] <= 1 for v in m['decoders'].values()) and 0 <= m['baseline']['AP'] <= 1


def test_heatmap_stride_must_match_the_model(tmp_path):
    "A codec stride that is not the model's output stride stops the run before training, saying which parameter to set."
    with pytest.raises(AssertionError, match='outputs 24x32 heatmaps at 96x128 but the codec expects 48x64: set heatmap_stride'):
        run_train(tmp_path, n_synthetic=8, epochs=1, heatmap_stride=2)
