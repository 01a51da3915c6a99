"""The associative-embedding decoding benchmark run notebook (nbs/runs/ae_benchmark.ipynb), run small through the real
`posebench run` command on ground-truth maps of COCO-MINI val: its tables are written, agree with metrics.json, and
posebench's decoder gives back every person of those images."""
import csv
import json

import pytest

from posebench.test_utils import run_notebook, shared_data

N_IMAGES = 3


def read_csv(p):
    with open(p) as f: return list(csv.DictReader(f))


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    if shared_data('coco-mini') is None: pytest.skip('../shared/data/coco-mini is absent: the benchmark decodes its val images')
    return run_notebook('ae_benchmark', tmp_path_factory.mktemp('ae'),
                        dict(n_images=N_IMAGES, rows='input_res,native_flip', reps=1, time_images=2, n_boot=20))


def test_tables_written(run):
    for n in ('accuracy', 'decode_time_cpu', 'time_by_persons'):
        assert (run / f'{n}.csv').stat().st_size > 0 and (run / f'{n}.md').read_text().startswith('**'), n
    m = json.loads((run / 'metrics.json').read_text())
    assert m['n_images'] == N_IMAGES and m['reps'] == 1 and m['torch_threads'] == 1
    assert m['decode_time_cuda'] is None or isinstance(m['decode_time_cuda'], list)


def test_accuracy(run):
    rows = {r['row']: r for r in read_csv(run / 'accuracy.csv')}
    assert list(rows) == ['input_res_flip', 'input_res', 'native_flip']
    top = rows['input_res_flip']
    assert float(top['AP']) >= 0.99, top  # maps at input resolution: every person back (measured 1.000 on these images)
    assert int(top['persons']) == int(top['gt_persons'])  # no duplicate, no fragment
    assert float(top['dAP']) == 0 and float(top['dAP_lo']) == 0 == float(top['dAP_hi'])  # paired with itself
    assert float(rows['native_flip']['AP']) >= 0.95, rows['native_flip']  # strides 4 and 2 (measured 1.000)
    nat = rows['native_flip']
    assert float(nat['dAP_lo']) <= float(nat['dAP']) <= float(nat['dAP_hi'])
    m = json.loads((run / 'metrics.json').read_text())
    assert m['goal_ap']['met'] and m['reports']['input_res_flip']['AP'] == pytest.approx(float(top['AP']), abs=1e-12)


def test_speed_table(run):
    rows = {r['variant']: r for r in read_csv(run / 'decode_time_cpu.csv')}
    assert list(rows) == ['native_flip', 'native_no_refine', 'input_res_flip', 'official_native_flip']
    stages = ('aggregate', 'peaks', 'group', 'refine', 'adjust')
    for v, r in rows.items():
        assert float(r['total_ms']) > 0 and float(r['wall_ms']) > 0 and float(r['aggregate_ms']) > 0
        assert float(r['total_ms']) <= sum(float(r[f'{s}_ms']) for s in stages) * 1.5 + 1  # medians of stages vs of totals
    assert float(rows['native_no_refine']['refine_ms']) < 0.5 < float(rows['native_flip']['refine_ms'])
    m = json.loads((run / 'metrics.json').read_text())
    g = m['decode_time_cpu']['goal']
    assert g['limit_ms'] == 20 and g['native_flip_median_ms'] == pytest.approx(float(rows['native_flip']['total_ms']), rel=1e-9)
    assert g['native_flip_max_ms'] == max(m['decode_time_cpu']['per_image_total_ms']['native_flip']) and g['met'] == (g['native_flip_max_ms'] <= 20)
    assert len(m['decode_time_cpu']['per_image_total_ms']['native_flip']) == 2
