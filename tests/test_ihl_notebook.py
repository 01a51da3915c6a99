"""The integral comparison run notebook (nbs/runs/integral_compare.ipynb) run tiny through the real `posebench run`
command: every row trains, the AP table, the low-resolution table, the curves and metrics.json are written, and the AP
and bootstrap numbers it reports are those pycocotools and `eval.bootstrap.paired_bootstrap` give."""
import json

import pytest

from posebench.test_utils import run_notebook
from posebench.train.loop import read_log


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    return run_notebook('integral_compare', tmp_path_factory.mktemp('ihl'),
                        dict(n_synthetic=24, epochs=1, batch_size=16, n_boot=20, workers=0, val_every=1, low_res_rows='dark,ihl'))


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
    for v in m['low_res'].values():
        assert v['err4'] > 0 and v['err8'] > 0 and 0 < v['med4'] and 0 < v['med8']
        assert v['dAP_lo'] <= v['dAP'] + 1e-12 and v['dAP'] <= v['dAP_hi'] + 1e-12
        assert v['dAP'] == pytest.approx(v['AP8'] - v['AP4'], abs=1e-9)  # the paired difference of the two trainings' APs
    assert 'ΔAP stride 8 − 4 [95% CI]' in (run / 'low_res.md').read_text()
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
