"""The integral comparison run notebook (nbs/runs/integral_compare.ipynb) run tiny through the real `posebench run`
command: every row trains, the AP table, the low-resolution table, the curves and metrics.json are written, and the AP
and bootstrap numbers it reports are those pycocotools and `eval.bootstrap.paired_bootstrap` give."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from posebench.train.loop import read_log


def posebench_cmd():
    exe = Path(sys.executable).parent / 'posebench'
    return [str(exe)] if exe.exists() else [sys.executable, '-m', 'posebench.runner']


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('ihl')
    env = {**os.environ, 'POSEBENCH_DATA': str(tmp / 'data'), 'MPLBACKEND': 'Agg'}
    args = ['run', 'integral_compare', '-q', '-p', 'n_synthetic', '24', '-p', 'epochs', '1', '-p', 'batch_size', '16',
            '-p', 'n_boot', '20', '-p', 'workers', '0', '-p', 'val_every', '1', '-p', 'low_res_rows', 'dark,ihl', '--out', str(tmp / 'runs')]
    r = subprocess.run([*posebench_cmd(), *args], cwd=tmp, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (d,) = [p for p in (tmp / 'runs').iterdir() if p.is_dir()]
    return d


def test_run_folder(run):
    for f in ('integral_compare.ipynb', 'ap_table.md', 'low_res.md', 'curves.png', 'metrics.json', 'params.json', 'meta.json'):
        assert (run / f).stat().st_size > 0, f
    assert json.loads((run / 'meta.json').read_text())['status'] == 'ok'
    m = json.loads((run / 'metrics.json').read_text())
    rows = ['heatmap + DARK', 'soft-argmax', 'IHL', 'IHL, σ scores', 'IHL, no Sinkhorn']
    assert list(m['rows']) == rows and m['reference'] == 'heatmap + DARK'
    table = (run / 'ap_table.md').read_text()
    for name in rows: assert f'| {name} |' in table
    for name in rows[1:]:
        r = m['rows'][name]
        assert r['dAP_lo'] <= r['dAP'] + 1e-12 and r['dAP'] <= r['dAP_hi'] + 1e-12 and 0 <= r['AP'] <= 1
    assert set(m['low_res']) == {'heatmap + DARK', 'IHL'}
    assert all(v['err4'] > 0 and v['err8'] > 0 for v in m['low_res'].values())
    for sub in ('heatmap_plus_DARK_s4', 'IHL_s4', 'IHL_no_Sinkhorn_s4', 'soft-argmax_s4', 'IHL_s8'):
        log = read_log(run / sub)
        assert [r['epoch'] for r in log] == [0] and 0 <= log[0]['val_AP'] <= 1, sub


def test_ihl_checkpoint_keeps_the_flow(run):
    "fit saved the IHL loss's RealNVP flow and call counter with the model."
    import torch
    ck = torch.load(run / 'IHL_s4' / 'last.pt', map_location='cpu', weights_only=True)
    assert 'flow.s.0.0.weight' in ck['loss'] and int(ck['loss']['calls']) >= 1
    ck2 = torch.load(run / 'IHL_no_Sinkhorn_s4' / 'last.pt', map_location='cpu', weights_only=True)
    assert 'flow.t.5.4.bias' in ck2['loss']
