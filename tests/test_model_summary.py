"""The model summary run notebook (nbs/runs/model_summary.ipynb), run small through `posebench run`: its table holds
the parameter counts and MACs the library computes, and latency (torch, and the ONNX export in onnxruntime) when asked
for. No timing is checked here: the figures are the notebook's."""
import csv
import json
import subprocess

import pytest

from posebench.models import hrnet, resnet
from posebench.models.summary import count_macs, count_params
from posebench.test_utils import posebench_cli as posebench_cmd


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('ms')
    args = ['run', 'model_summary', '-q', '-p', 'models', 'hrnet_w8_small,pose_resnet_small,hrnet_w32', '-p', 'reps', '0',
            '--out', str(tmp / 'runs')]
    r = subprocess.run([*posebench_cmd(), *args], cwd=tmp, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (d,) = [p for p in (tmp / 'runs').iterdir() if p.is_dir()]
    return d


def test_table_matches_library(run):
    with open(run / 'model_summary.csv') as f: rows = {r['name']: r for r in csv.DictReader(f)}
    assert list(rows) == ['hrnet_w8_small', 'pose_resnet_small', 'hrnet_w32']
    for name, build, size in [('hrnet_w8_small', hrnet.hrnet_w8_small, (96, 128)),
                              ('pose_resnet_small', resnet.pose_resnet_small, (96, 128))]:
        m = build()
        assert int(rows[name]['params']) == count_params(m)
        assert int(rows[name]['macs']) == count_macs(m, size)
    assert int(rows['hrnet_w32']['params']) == 28536113  # the official layout's count (official-keys), built on 'meta'
    assert rows['hrnet_w32']['latency_ms'] == '' and rows['hrnet_w32']['onnx_ms'] == ''  # reps=0: no timing
    m = json.loads((run / 'metrics.json').read_text())
    assert m['reps'] == 0 and len(m['rows']) == 3 and m['onnx'] is False


def test_onnx_latency_column(tmp_path):
    "On the CPU with reps > 0 the model is also exported and timed in onnxruntime, printed next to torch."
    r = subprocess.run([*posebench_cmd(), 'run', 'model_summary', '-p', 'models', 'hrnet_w8_small', '-p', 'reps', '1', '-p', 'warmup', '0', '-p', 'onnx', 'auto',
                        '-p', 'device', 'cpu', '--out', str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (d,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    with open(d / 'model_summary.csv') as f: (row,) = csv.DictReader(f)
    assert float(row['latency_ms']) > 0 and float(row['onnx_ms']) > 0
    assert '| model | input HxW | torch ms | onnxruntime ms | torch / onnxruntime |' in r.stdout + r.stderr
    assert json.loads((d / 'metrics.json').read_text())['onnx'] is True


def test_unknown_model_is_a_clear_error(tmp_path):
    r = subprocess.run([*posebench_cmd(), 'run', 'model_summary', '-q', '-p', 'models', 'hrnet_w33', '--out', str(tmp_path)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and 'unknown models' in (r.stdout + r.stderr)
