"""The package as users install it: lean imports, the layout nbdev promises, the torch range, the README."""
import configparser
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _cfg():
    cp = configparser.ConfigParser(delimiters=['='])
    cp.read(ROOT / 'settings.ini')
    return cp['DEFAULT']


def _exported_modules():
    "Module names declared by `#| default_exp` in the notebooks."
    mods = []
    for nb in sorted((ROOT / 'nbs').rglob('*.ipynb')):
        for c in json.loads(nb.read_text())['cells']:
            src = ''.join(c['source'])
            if c['cell_type'] == 'code' and src.startswith('#| default_exp'):
                mods.append('posebench.' + src.split()[2])
    return mods


def test_every_notebook_module_exists_and_imports_without_dev_tools():
    mods = _exported_modules()
    assert {'posebench.core', 'posebench.geometry'} <= set(mods)
    code = ('import importlib, sys\n'
            f'for m in {mods!r}: importlib.import_module(m)\n'
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('nbdev', 'fastcore', 'execnb'))\n"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, f'the exported package imports dev tools: {r.stdout}{r.stderr}'


def test_runtime_requirements_are_lean_and_torch_is_a_range():
    reqs = _cfg()['requirements'].split()
    names = {r.split('>')[0].split('<')[0].split('=')[0] for r in reqs}
    assert names == {'torch', 'numpy', 'scipy', 'opencv-python-headless', 'matplotlib', 'plotly', 'pycocotools', 'ipywidgets', 'tqdm',
                     'filelock'}  # scipy: the Hungarian algorithm of associative-embedding grouping (codecs.ae)
    torch_req = next(r for r in reqs if r.startswith('torch'))
    assert '==' not in torch_req and '>=' in torch_req and '<' in torch_req, torch_req
    assert 'nbdev==2.4.14' in _cfg()['dev_requirements'].split()
    assert not any(r.startswith(('papermill', 'nbdev', 'pytest')) for r in reqs)


def test_onnx_is_an_extra_that_the_test_suite_installs():
    "onnx and onnxruntime (posebench export, predict model.onnx) are the `onnx` extra, and in `dev` (tools/install.sh dev)."
    cfg = _cfg()
    onnx = {r.split('>')[0] for r in cfg['onnx_requirements'].split()}
    assert onnx == {'onnx', 'onnxruntime'} and onnx <= {r.split('>')[0] for r in cfg['dev_requirements'].split()}
    extras = re.search(r"reqs\(f'\{k\}_requirements'\) for k in \(([^)]*)\)", (ROOT / 'setup.py').read_text())
    assert extras and "'onnx'" in extras[1], 'setup.py must turn onnx_requirements into the onnx extra'


def test_readme_is_generated_from_index():
    readme = (ROOT / 'README.md').read_text()
    assert readme.startswith('<!-- generated from nbs/index.ipynb')
    pytest.importorskip('nbclient')
    r = subprocess.run([sys.executable, 'tools/make_readme.py', '--check'], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_two_commands_are_in_the_readme_and_ci_runs_the_second():
    readme = (ROOT / 'README.md').read_text()
    ci = (ROOT / '.ci' / 'run').read_text()
    test_cmd = 'bash tools/install.sh dev && bash tools/test.sh'
    assert test_cmd in readme and test_cmd in ci
    assert 'bash tools/install.sh run && .venv/bin/posebench run train' in readme
