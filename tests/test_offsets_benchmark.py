"""The guiding-offset decoding benchmark run notebook (nbs/runs/offsets_benchmark.ipynb), run small through the real
`posebench run` command on ground-truth maps of COCO-MINI val: its tables are written, agree with metrics.json, and
the fast decoder keeps the AP it has on those images."""
import csv
import json

import pytest

from posebench.test_utils import run_notebook, shared_data

N_IMAGES = 3
FAST_AP = 0.9307  # posebench's fast decode on the ground-truth maps of the first 3 images (measured: 0.93069; deterministic)


def read_csv(p):
    with open(p) as f: return list(csv.DictReader(f))


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    if shared_data('coco-mini') is None: pytest.skip('../shared/data/coco-mini is absent: the benchmark decodes its val images')
    return run_notebook('offsets_benchmark', tmp_path_factory.mktemp('ob'),
                        dict(n_images=N_IMAGES, rows='official,oracle_pieces', reps=1, time_images=1, n_boot=20))


def test_tables_written(run):
    for n in ('accuracy', 'decode_time_cpu', 'group_time_by_persons'):
        assert (run / f'{n}.csv').stat().st_size > 0 and (run / f'{n}.md').read_text().startswith('**'), n
    m = json.loads((run / 'metrics.json').read_text())
    assert m['n_images'] == N_IMAGES and m['reps'] == 1 and m['torch_threads'] == 1


def test_accuracy(run):
    rows = {r['row']: r for r in read_csv(run / 'accuracy.csv')}
    assert list(rows) == ['fast', 'official', 'oracle_pieces', 'published harness']
    fast = rows['fast']
    assert float(fast['AP']) >= FAST_AP - 0.005, fast['AP']  # the fast decoder did not get worse on these images
    assert float(fast['dAP']) == 0 and float(fast['dAP_lo']) == 0 == float(fast['dAP_hi'])  # paired with itself
    assert int(fast['persons']) <= int(fast['gt_persons']) + 1
    # the ground-truth-map ceiling: the fast decoder reaches what a perfect grouping makes of these maps
    assert float(fast['AP']) == pytest.approx(float(rows['oracle_pieces']['AP']), abs=1e-3)
    off = rows['official']
    assert float(off['dAP_lo']) <= float(off['dAP']) <= float(off['dAP_hi'])
    assert float(off['dAP']) == pytest.approx(float(off['AP']) - float(fast['AP']), abs=1e-9)
    assert rows['published harness']['AP'] == '0.854'
    m = json.loads((run / 'metrics.json').read_text())
    assert m['reports']['fast']['AP'] == pytest.approx(float(fast['AP']), abs=1e-12)


def test_speed_table(run):
    rows = {r['variant']: r for r in read_csv(run / 'decode_time_cpu.csv')}
    assert list(rows) == ['fast', 'official mode', 'official code', 'official (published harness)']
    for v in ('fast', 'official mode', 'official code'):
        r = rows[v]
        assert float(r['total_ms']) > 0 and float(r['group_ms']) > 0
        assert float(r['total_ms']) == pytest.approx(float(r['post_ms']) + float(r['group_ms']), rel=1e-6)
    assert rows['fast']['upsample_ms'] == 'nan' and float(rows['official code']['upsample_ms']) > 0
    m = json.loads((run / 'metrics.json').read_text())
    ratio = float(rows['official mode']['total_ms']) / float(rows['fast']['total_ms'])
    assert m['ratios']['official_mode_over_fast'] == pytest.approx(ratio, rel=1e-9)
    assert m['decode_time_cpu']['machine']['cpu_share'] > 0
