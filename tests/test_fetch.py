"""`posebench fetch` through the real console script, in a subprocess: the runner hands its arguments to
`posebench.data.fetch.cli` and the exit status comes back. Nothing is downloaded. (`fetch`, `check`, `download`,
`extract` and `cli` themselves are tested in nbs/04_data.fetch.ipynb.)"""
import subprocess
import sys
from pathlib import Path


def posebench_fetch(*args):
    exe = Path(sys.executable).parent / 'posebench'
    cmd = [str(exe)] if exe.exists() else [sys.executable, '-m', 'posebench.runner']
    return subprocess.run([*cmd, 'fetch', *map(str, args)], capture_output=True, text=True, timeout=120)


def test_console_script(tmp_path):
    r = posebench_fetch('mpii', '--root', tmp_path / 'data', '--dry-run')
    assert r.returncode == 0, r.stderr
    assert 'would fetch' in r.stdout and 'download https://datasets.d2.mpi-inf.mpg.de/' in r.stdout, r.stdout
    assert not (tmp_path / 'data').exists()  # a dry run creates nothing
    r = posebench_fetch('crowdpose', '--root', tmp_path, '--check')
    assert r.returncode == 1 and 'missing file crowdpose/json/crowdpose_train.json' in r.stdout, (r.stdout, r.stderr)
    r = posebench_fetch('flickr')
    assert r.returncode == 2 and "invalid choice: 'flickr'" in r.stderr, r.stderr
