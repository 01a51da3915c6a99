"""The bottom-up training notebook (nbs/runs/train_bottomup.ipynb) run tiny through the real `posebench run` command on the
synthetic default, once per method (greedy offset-guided grouping, associative embedding): it trains, writes its curves,
loss parts, results table, predictions and model bundle, and the numbers it reports are those the library computes again
from the saved bundle."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from posebench.data.bottomup import BottomUpDataset
from posebench.data.readers import read_coco
from posebench.eval.bottomup import gt_map_results, predict_bottomup
from posebench.eval.coco import KeypointResults, coco_eval
from posebench.models.bundle import load_model
from posebench.predict import predict
from posebench.test_utils import run_notebook
from posebench.train.loop import read_log

METHODS = ('offsets', 'ae')
SCORES = {'offsets': 'all_kpts', 'ae': 'codec'}  # the official person score of each method


@pytest.fixture(scope='module', params=METHODS)
def tiny_run(request, tmp_path_factory):
    "24 training scenes, 6 for evaluation, at 128×96, 3 epochs of 6 steps (about 30 s per method on 2 cores, the kernel's start included)."
    method = request.param
    tmp = tmp_path_factory.mktemp(f'train_bottomup_{method}')
    params = dict(method=method, n_synthetic=24, input_w=128, input_h=96, epochs=3, batch_size=4, lr=5e-3, workers=0, n_show=2)
    if method == 'ae':  # after 18 steps the heatmaps peak at about 0.05: below the decoder's 0.1, the tiny run would find nobody
        params['codec_kw'] = "{'det_thr': 0.01}"
    return method, run_notebook('train_bottomup', tmp, params, timeout=600)


def _val(d: Path):
    (syn,) = [p for p in (d.parent.parent / 'data').iterdir() if p.name.startswith('synthetic')]
    return read_coco(syn / 'annotations/person_keypoints_val.json')


def test_run_folder(tiny_run):
    method, d = tiny_run
    for f in ('train_bottomup.ipynb', 'curves.png', 'predictions.png', 'results.md', 'val_predictions.json', 'metrics.json', 'model.pt',
              'log.jsonl', 'steps.jsonl', 'loss_parts.jsonl', 'last.pt', 'params.json', 'meta.json'):
        assert (d / f).stat().st_size > 0, f
    assert json.loads((d / 'meta.json').read_text())['status'] == 'ok'
    log = read_log(d)
    assert [r['epoch'] for r in log] == [0, 1, 2] and all(0 <= r['val_AP'] <= 1 for r in log)
    parts = read_log(d, 'loss_parts.jsonl')
    assert [p['epoch'] for p in parts] == [0, 1, 2]
    lam = {'offsets': {'heatmap': 1, 'offset': 1e4, 'scale': 10}, 'ae': {'heatmap': 1, 'heatmap_1': 1, 'push': 1e-3, 'pull': 1e-3}}[method]
    for p, r in zip(parts, log):  # the parts, weighted by the official lambdas, add up to the logged loss of the epoch
        assert set(p) == {'epoch', *lam} and all(p[k] > 0 and math.isfinite(p[k]) for k in lam)
        assert sum(w * p[k] for k, w in lam.items()) == pytest.approx(r['loss'], rel=1e-4)
    table = (d / 'results.md').read_text()
    for row in ('dataset prior', 'before training', 'trained, no flip test', 'trained, flip test', 'ground-truth maps'): assert f'| {row}' in table
    m = json.loads((d / 'metrics.json').read_text())
    assert [c['epoch'] for c in m['curve']] == [0, 1, 2, 3] and m['curve'][0]['AP'] == m['initial']['AP'] == 0  # untrained heads: below every threshold
    assert 0 <= m['prior']['AP'] < m['ceiling']['AP'] <= 1 and m['method'] == method and m['score'] == SCORES[method]
    assert m['arch'] == {'offsets': 'offsetguided_hg_small', 'ae': 'higher_hrnet_w16_small'}[method] and m['offset_gain'] == {'offsets': 10, 'ae': 1}[method]
    assert '| ΔAP vs prior [95% CI]' in table.splitlines()[2]
    c = m['bootstrap_vs_prior']['ceiling']  # the ceiling against the prior, paired over the same images
    assert c['lo'] <= c['delta'] <= c['hi'] and c['delta'] == pytest.approx(m['ceiling']['AP'] - m['prior']['AP'], abs=1e-6)


def test_reported_numbers_recomputed_from_bundle(tiny_run):
    "The saved predictions and metrics.json's APs are what predict_bottomup / gt_map_results + coco_eval give for the saved bundle."
    method, d = tiny_run
    m = json.loads((d / 'metrics.json').read_text())
    b = load_model(d / 'model.pt')
    assert b.kind == {'offsets': 'offsets', 'ae': 'bottomup'}[method] and b.codec.input_size == (128, 96) and b.schema.n_kpts == 17
    assert not b.codec.use_scale if method == 'offsets' else b.codec.strides == (4, 2) and b.extra['score'] == 'codec'
    val = _val(d)
    ds = BottomUpDataset(val, b.codec, train=False, resize=b.extra['val_resize'], min_area=0)  # the evaluation scores every person
    score = SCORES[method]
    res = predict_bottomup(b.model, ds, flip_test=True, score=score)
    assert len(res) > 0, 'the tiny run finds no person: the checks below would compare nothing'
    saved = KeypointResults.read(d / 'val_predictions.json', boxes='none', gt=val)
    np.testing.assert_array_equal(saved.image_id, res.image_id)
    for a in ('kpts', 'kpt_scores', 'score'): np.testing.assert_array_equal(getattr(saved, a), getattr(res, a), err_msg=a)
    assert coco_eval(val, res)['AP'] == pytest.approx(m['model']['AP'], abs=1e-9)
    assert coco_eval(val, gt_map_results(ds, score=score))['AP'] == pytest.approx(m['ceiling']['AP'], abs=1e-9)
    # offsets: the last quick validation ran the model with the offset gain as a hook; the bundle has it folded into the weights
    assert coco_eval(val, predict_bottomup(b.model, ds, flip_test=False, score=score))['AP'] == pytest.approx(m['no_flip']['AP'], abs=1e-6)
    # posebench.predict (what `posebench predict` runs) loads the bundle and finds the same persons in an image
    img = val.images[int(res.image_id[0])].path
    p = predict(d / 'model.pt', str(img))
    mine = res.image_id == res.image_id[0]
    assert len(p.kpts) == int(mine.sum())
    np.testing.assert_allclose(np.sort(p.kpts.reshape(len(p.kpts), -1), 0), np.sort(res.kpts[mine].reshape(int(mine.sum()), -1), 0), atol=1e-3)
