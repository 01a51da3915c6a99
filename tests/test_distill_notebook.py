"""The fast pose distillation run notebook (nbs/runs/distill.ipynb) run tiny through the real `posebench run` command:
it trains a teacher and three students, writes its table, heatmap figure, metrics and bundles, and the numbers it
reports are those the library computes again from the saved bundles."""
import json

import numpy as np
import pytest

from posebench.data.readers import read_coco
from posebench.data.topdown import TopDownDataset
from posebench.eval.bootstrap import paired_bootstrap
from posebench.eval.coco import coco_eval
from posebench.eval.topdown import predict_dataset
from posebench.models.bundle import load_model
from posebench.test_utils import run_notebook
from posebench.train.loop import read_log

ROWS = ('teacher', 'student', 'student + FPD', 'student + FPD + unlabelled')


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    return run_notebook('distill', tmp_path_factory.mktemp('distill'),
                        dict(workers=0, n_synthetic=24, n_unlabelled=12, teacher_epochs=1, epochs=1, batch_size=16, n_boot=40, latency_reps=1,
                             flip_test=False))


def test_run_folder_and_table(run):
    for f in ('distill.ipynb', 'distill.md', 'heatmaps.png', 'metrics.json', 'teacher.pt', 'student.pt', 'student_fpd.pt',
              'student_fpd_unlabelled.pt', 'unlabelled_boxes.json'):
        assert (run / f).stat().st_size > 0, f
    assert json.loads((run / 'meta.json').read_text())['status'] == 'ok'
    table = (run / 'distill.md').read_text()
    for row in ROWS: assert f'| {row} |' in table
    assert 'teacher cost per training step' in table
    m = json.loads((run / 'metrics.json').read_text())
    assert list(m['rows']) == list(ROWS) and m['reference'] == 'student'
    for n, r in m['rows'].items():
        assert 0 <= r['score'] <= 1 and r['params'] > 0 and r['gflops'] > 0 and r['latency_ms'] > 0, n
        if n != 'student': assert r['bootstrap']['lo'] <= r['bootstrap']['delta'] <= r['bootstrap']['hi'], n
    assert m['rows']['teacher']['params'] > m['rows']['student']['params'] and m['teacher_forward_ms'] > 0


def test_same_steps_for_every_student(run):
    "The fairness rule: the three students took the same number of optimiser steps, the same epochs."
    steps = {d: read_log(run / d)[-1]['step'] for d in ('student', 'student_fpd', 'student_fpd_unlabelled')}
    assert len(set(steps.values())) == 1, steps
    m = json.loads((run / 'metrics.json').read_text())
    assert m['unlabelled_samples'] > 0 and {r['steps'] for n, r in m['rows'].items() if n != 'teacher'} == set(steps.values())


def test_reported_numbers_recomputed_from_bundles(run):
    "The AP and the bootstrap difference of the FPD row are what the library computes from the saved bundles."
    m = json.loads((run / 'metrics.json').read_text())
    (syn,) = [p for p in (run.parent.parent / 'data').iterdir() if p.name.startswith('synthetic') and
              json.loads((p / 'manifest.json').read_text())['seed'] == 0]
    val = read_coco(syn / 'annotations/person_keypoints_val.json')
    res = {}
    for n, f in (('student', 'student.pt'), ('student + FPD', 'student_fpd.pt')):
        b = load_model(run / f)
        p = predict_dataset(b.model, TopDownDataset(val, b.codec, train=False), flip_test=False)['codec']
        res[n] = p.results(val.schema.sigmas)
        assert coco_eval(val, res[n])['AP'] == pytest.approx(m['rows'][n]['score'], abs=1e-9), n
    bs = paired_bootstrap(val, res['student + FPD'], res['student'], n=40, seed=0)
    assert np.allclose([bs['delta'], bs['lo'], bs['hi']], [m['rows']['student + FPD']['bootstrap'][k] for k in ('delta', 'lo', 'hi')])
