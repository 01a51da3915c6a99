"""`posebench run`: run folders with the executed notebook, typed params, provenance and the notebook's outputs;
failing cells and unknown parameters give a non-zero exit and a clear message. Runs the real console script."""
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import nbformat
import numpy as np
import pytest

from posebench.core import project_root
from posebench.runner import main, new_run_dir, notebook_parameters, parse_value
from posebench.test_utils import posebench_cli as posebench_cmd

ROOT = project_root(Path(__file__).parent)
RUN_DIR_RE = re.compile(r'^\d{8}-\d{6}-[\w.-]+$')


def run_cli(*args, cwd, timeout=120):
    env = {k: v for k, v in os.environ.items() if k != 'TQDM_MININTERVAL'}  # so the runner's default applies
    return subprocess.run([*posebench_cmd(), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def only_run_dir(out: Path) -> Path:
    ds = [d for d in out.iterdir() if d.is_dir()]
    assert len(ds) == 1, ds
    assert RUN_DIR_RE.match(ds[0].name), ds[0].name
    return ds[0]


def write_nb(path, *cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src, metadata=dict(tags=tags)) for src, tags in cells]
    nbformat.write(nb, path)
    return path


def persons_from_json(ann_file: Path) -> tuple[dict, np.ndarray]:
    "Persons per image id and the (P, K) visibility flags, straight from a COCO json: non-crowd, >= 1 labelled keypoint."
    d = json.loads(Path(ann_file).read_text())
    anns = [a for a in d['annotations'] if not a.get('iscrowd', 0) and (np.reshape(a['keypoints'], (-1, 3))[:, 2] > 0).any()]
    per = Counter(a['image_id'] for a in anns)
    vis = np.array([np.reshape(a['keypoints'], (-1, 3))[:, 2] for a in anns], int)
    return {str(im['id']): per.get(im['id'], 0) for im in d['images']}, vis


# ---------------------------------------------------------------- the dataset study, end to end

@pytest.fixture(scope='module')
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('study')
    # run from outside the project: the bare name must still resolve to nbs/runs/dataset_study.ipynb
    r = run_cli('run', 'dataset_study', '-p', 'n_images', 6, '-p', 'seed', 1, '-p', 'n_show', 2,
                '-p', 'synthetic_root', tmp / 'synthetic', '--out', tmp / 'runs', cwd=tmp, timeout=180)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return only_run_dir(tmp / 'runs'), r


def test_study_run_folder(study):
    d, r = study
    assert d.name.endswith('-dataset_study')
    nb = nbformat.read(d / 'dataset_study.ipynb', as_version=4)
    tags = [c.metadata.get('tags', []) for c in nb.cells]
    assert ['parameters'] in tags and ['injected-parameters'] in tags
    inj = next(c for c in nb.cells if 'injected-parameters' in c.metadata.get('tags', []))
    assert f'out_dir = "{d.resolve()}"' in inj.source or f"out_dir = '{d.resolve()}'" in inj.source, inj.source
    assert not [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs if o.output_type == 'error']
    assert 'synthetic/train' in r.stdout  # cell output streamed to the terminal
    assert f'done: {d}' in r.stdout


def test_study_params_and_meta(study):
    d, _ = study
    params = json.loads((d / 'params.json').read_text())
    assert params == {'n_images': 6, 'seed': 1, 'n_show': 2, 'synthetic_root': str(d.parent.parent / 'synthetic')}
    assert type(params['n_images']) is int
    meta = json.loads((d / 'meta.json').read_text())
    assert meta['status'] == 'ok' and meta['error'] is None
    assert meta['seed'] == 1 and meta['defaults']['seed'] == 0
    assert meta['run_dir'] == str(d.resolve())
    assert meta['argv'][:3] == ['posebench', 'run', 'dataset_study']
    assert meta['start'] < meta['end'] and meta['duration_s'] > 0
    assert meta['device'].startswith(('CPU', 'CUDA'))
    import numpy
    import papermill

    import posebench
    v = meta['versions']
    assert (v['python'], v['numpy'], v['papermill'], v['posebench']) == (
        platform.python_version(), numpy.__version__, papermill.__version__, posebench.__version__)
    assert v['torch'] and v['cv2']
    if shutil.which('git') and (ROOT / '.git').exists():
        head = subprocess.run(['git', '-C', str(ROOT), 'rev-parse', 'HEAD'], capture_output=True, text=True)
        if head.returncode == 0:  # a checkout with at least one commit
            assert meta['git']['rev'] == head.stdout.strip() and isinstance(meta['git']['dirty'], bool)


def test_study_figures_and_metrics(study):
    d, _ = study
    from PIL import Image
    for f in ('visibility.png', 'scale_and_persons.png', 'samples_synthetic_train.png', 'samples_synthetic_val.png'):
        w, h = Image.open(d / f).size
        assert w >= 150 and h >= 150, (f, w, h)
    m = json.loads((d / 'metrics.json').read_text())
    assert {'synthetic/train', 'synthetic/val'} <= set(m)
    for label, s in m.items():
        per_image, vis = persons_from_json(Path(s['ann_file']))
        assert s['n_images'] == len(per_image)
        assert s['persons_per_image'] == per_image, label
        assert s['n_persons'] == sum(per_image.values()) == len(vis)
        assert s['persons_per_image_hist'] == {str(k): v for k, v in sorted(Counter(per_image.values()).items())}
        counts = np.array([[c['v0'], c['v1'], c['v2']] for c in s['visibility'].values()])
        np.testing.assert_array_equal(counts, (vis[..., None] == np.arange(3)).sum(0), err_msg=label)
        if s['n_persons']: assert 0 < s['scale_sqrt_area']['p5'] <= s['scale_sqrt_area']['p50'] <= s['scale_sqrt_area']['p95']
    assert m['synthetic/train']['n_images'] == 6  # the size parameter reached ensure_synthetic


def test_study_includes_coco_mini(study, shared):
    d, _ = study
    m = json.loads((d / 'metrics.json').read_text())
    assert {'coco-mini/train2017', 'coco-mini/val2017'} <= set(m)
    assert (d / 'samples_coco-mini_val2017.png').exists()


# ---------------------------------------------------------------- failures

def test_failing_cell(tmp_path):
    nb = write_nb(tmp_path / 'broken.ipynb', ('x = 1\nseed = 7\nout_dir = None', ['parameters']),
                  ("import os\nprint('before the failure, TQDM_MININTERVAL =', os.environ.get('TQDM_MININTERVAL'))", []),
                  ("raise ValueError(f'x is {x}, which is wrong')", []), ("print('never')", []))
    r = run_cli('run', nb, '-p', 'x', 3, '--out', tmp_path / 'runs', cwd=tmp_path)
    assert r.returncode != 0
    assert 'ValueError' in r.stderr and 'x is 3, which is wrong' in r.stderr, r.stderr
    assert 'cell 3 of broken.ipynb' in r.stderr  # counted from 1 in the notebook as written
    assert 'before the failure, TQDM_MININTERVAL = 5' in r.stdout  # streamed, and the runner's default reached the kernel
    assert 'never' not in r.stdout
    d = only_run_dir(tmp_path / 'runs')
    meta = json.loads((d / 'meta.json').read_text())
    assert meta['status'] == 'failed' and meta['seed'] == 7  # the notebook's default seed
    assert (meta['error']['ename'], meta['error']['evalue'], meta['error']['cell']) == ('ValueError', 'x is 3, which is wrong', 3)
    out = nbformat.read(d / 'broken.ipynb', as_version=4)  # the executed notebook with the error is kept
    errs = [o for c in out.cells if c.cell_type == 'code' for o in c.outputs if o.output_type == 'error']
    assert [e.ename for e in errs] == ['ValueError']


def test_fixed_run_dir_keeps_earlier_attempts(tmp_path):
    "--dir: the same folder on every run (what lets a training notebook resume); each earlier meta.json is kept."
    nb = write_nb(tmp_path / 'count.ipynb', ('out_dir = None\nfail = False', ['parameters']),
                  ("from pathlib import Path\nf = Path(out_dir) / 'count.txt'\nn = int(f.read_text()) + 1 if f.exists() else 1\n"
                   "f.write_text(str(n)); print('attempt', n)\nassert not fail, 'asked to fail'", []))
    d = tmp_path / 'runs' / 'fixed'
    assert run_cli('run', nb, '--dir', d, '-p', 'fail', True, cwd=tmp_path).returncode != 0
    r = run_cli('run', nb, '--dir', d, cwd=tmp_path)
    assert r.returncode == 0 and 'attempt 2' in r.stdout, r.stdout + r.stderr
    assert (d / 'count.txt').read_text() == '2' and [p.name for p in (tmp_path / 'runs').iterdir()] == ['fixed']
    first, last = json.loads((d / 'meta.1.json').read_text()), json.loads((d / 'meta.json').read_text())
    assert first['status'] == 'failed' and last['status'] == 'ok' and last['previous'] == 'meta.1.json'
    r = run_cli('run', nb, '--dir', d, '--out', tmp_path, cwd=tmp_path)
    assert r.returncode != 0 and 'not with out (--out)' in r.stderr


def test_unknown_parameter_fails_before_running(tmp_path):
    r = run_cli('run', 'dataset_study', '-p', 'sed', 1, '--out', tmp_path / 'runs', cwd=tmp_path)
    assert r.returncode != 0
    assert 'unknown parameter sed' in r.stderr and 'seed=0' in r.stderr, r.stderr
    assert not (tmp_path / 'runs').exists()  # nothing was started


def test_unknown_notebook_lists_known(tmp_path):
    r = run_cli('run', 'no_such_study', cwd=tmp_path)
    assert r.returncode != 0 and "notebook 'no_such_study' not found" in r.stderr and 'dataset_study' in r.stderr


# ---------------------------------------------------------------- in-process pieces

def test_parse_value_like_papermill():
    from papermill.cli import _resolve_type
    for s in ['True', 'False', 'None', '3', '-3', '2.5', '1e-4', 'inf', 'synthetic', 'a/b.json', 'true', '0x1f', '']:
        a, b = parse_value(s), _resolve_type(s)
        assert type(a) is type(b) and a == b, s
    # beyond papermill's -p: Python literals of lists, tuples and dicts (papermill needs -y for those)
    assert parse_value('[170, 200]') == [170, 200] and parse_value('(1, 2.5)') == (1, 2.5) and parse_value("{'a': 1}") == {'a': 1}
    assert parse_value('[not python') == '[not python' and parse_value('[a, b]') == '[a, b]'  # not literals: kept as strings


def test_notebook_parameters_of_study():
    p = notebook_parameters(ROOT / 'nbs' / 'runs' / 'dataset_study.ipynb')
    assert {'data', 'seed', 'n_show', 'shared', 'out_dir'} <= set(p)
    assert (p['data'], p['seed'], p['out_dir'], p['shared']) == ('synthetic', 0, None, True)


def test_new_run_dir_never_reuses(tmp_path):
    ds = [new_run_dir(tmp_path, 'x') for _ in range(5)]
    assert len(set(ds)) == 5 and all(d.is_dir() and RUN_DIR_RE.match(d.name) for d in ds)


def test_fetch_delegates(monkeypatch):
    import types
    seen = []
    fake = types.ModuleType('posebench.data.fetch')
    fake.cli = lambda argv: seen.append(argv) or 3
    monkeypatch.setitem(sys.modules, 'posebench.data.fetch', fake)
    assert main(['fetch', 'coco-mini', '--dest', 'x']) == 3
    assert seen == [['coco-mini', '--dest', 'x']]
