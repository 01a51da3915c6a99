"""`python -m posebench.launch` in one process: the notebook's cells run in the launcher's own process with the
parameters injected after the `parameters` cell; rank 0 keeps printed text, values and figures as the executed
notebook's outputs and writes meta.json; a failing cell stops the run with exit status 1 and is named by its number in
the notebook as written. (Two processes under torchrun: tests/test_train.py.)"""
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat

from posebench.core import project_root

ROOT = project_root(Path(__file__).parent)

CELLS = [('x = 1\nout_dir = None', ['parameters']),
         ("print('x is', x, '| out_dir is', out_dir)", []),
         ('x * 10', []),
         ('import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0]);', []),
         ("raise ValueError(f'x = {x}: stop here')", []),
         ("print('never')", [])]


def test_one_process_run_outputs_figures_failure_and_meta(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src, metadata=dict(tags=tags)) for src, tags in CELLS]
    nbformat.write(nb, tmp_path / 'nb.ipynb')
    out = tmp_path / 'run'
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT)}
    r = subprocess.run([sys.executable, '-m', 'posebench.launch', str(tmp_path / 'nb.ipynb'), '--out', str(out), '-p', 'x', '3'],
                       capture_output=True, text=True, timeout=180, cwd=tmp_path, env=env)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    assert 'rank 0: code cell 5 of nb.ipynb failed: ValueError: x = 3: stop here' in r.stderr, r.stderr[-3000:]
    assert f'x is 3 | out_dir is {out.resolve()}' in r.stdout  # rank 0's output also reaches the terminal
    assert 'never' not in r.stdout
    ex = nbformat.read(out / 'nb.ipynb', as_version=4)
    assert [c.metadata.get('tags', []) for c in ex.cells][:2] == [['parameters'], ['injected-parameters']]
    outs = [c.outputs for c in ex.cells]
    assert [(o.output_type, o.text) for o in outs[2]] == [('stream', f'x is 3 | out_dir is {out.resolve()}\n')]
    assert [(o.output_type, o.data['text/plain']) for o in outs[3]] == [('execute_result', '30')]
    assert [o.output_type for o in outs[4]] == ['display_data'] and 'image/png' in outs[4][0].data  # an inline figure
    assert (outs[5][-1].output_type, outs[5][-1].ename) == ('error', 'ValueError') and 'Traceback' in outs[5][0].text  # and the traceback
    assert outs[6] == []
    meta = json.loads((out / 'meta.json').read_text())
    assert (meta['status'], meta['kernel'], meta['parameters'], meta['run_dir']) == ('failed', 'in-process', {'x': 3}, str(out.resolve()))
