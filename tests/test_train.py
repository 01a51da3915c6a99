"""posebench.train.loop where its notebook cannot go: a SIGTERM in the middle of an epoch, DataLoader worker processes,
and two-process DDP under torchrun (gloo) through the notebook launcher `python -m posebench.launch`, with a loss that
learns a parameter. The notebook (nbs/31_train.loop.ipynb) tests the rest. Also imported by the DDP test's notebook
for its data, model and loss."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from posebench.codecs.gaussian import msra_heatmap
from posebench.train.loop import Interrupted, TrainConfig, fit, load_train_state, read_log
from posebench.train.losses import HeatmapLoss

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    "One intra-op thread: on 2 shared cores, 2 OpenMP threads per process can be 100x slower when another process runs."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------- generated data and tiny models

class Dots(Dataset):
    """K coloured dots on a 48x64 image, MSRA targets at the dots (the posebench.data.topdown sample dict).
    aug='global': a random shift from torch's global RNG (reproducible only by restoring RNG state);
    aug='pure': a shift that is a function of (epoch, index), as TopDownDataset's augmentation is.
    interrupt=(epoch, k, how): on the k-th sample loaded in that epoch raise KeyboardInterrupt ('kbd') or send this
    process SIGTERM ('term'; only on RANK 0 under torchrun)."""
    def __init__(self, n=24, K=3, aug='global', interrupt=None, seed=0):
        self.aug, self.interrupt, self.epoch, self.count = aug, interrupt, 0, 0
        self.codec = msra_heatmap((48, 64), (12, 16), sigma=1.5)
        g = torch.Generator().manual_seed(seed)
        self.kpts = 6 + torch.rand(n, K, 2, generator=g) * torch.tensor([36., 52.])
        self.colours = torch.eye(3)[torch.arange(K) % 3] * 2 - 0.5

    def __len__(self): return len(self.kpts)
    def set_epoch(self, e): self.epoch, self.count = e, 0

    def __getitem__(self, i):
        if self.interrupt and self.interrupt[:2] == (self.epoch, self.count):
            how, self.interrupt = self.interrupt[2], None
            if how == 'kbd': raise KeyboardInterrupt
            if int(os.environ.get('RANK', 0)) == 0: os.kill(os.getpid(), signal.SIGTERM)
        self.count += 1
        if self.aug == 'global': shift = (torch.rand(2) - 0.5) * 4
        elif self.aug == 'pure': shift = (torch.rand(2, generator=torch.Generator().manual_seed(1000 * self.epoch + i)) - 0.5) * 4
        else: shift = 0
        kp = self.kpts[i] + shift
        yy, xx = torch.meshgrid(torch.arange(64.), torch.arange(48.), indexing='ij')
        blob = torch.exp(-((xx - kp[:, :1, None]) ** 2 + (yy - kp[:, 1:, None]) ** 2) / 4.5)
        enc = self.codec.encode(kp.numpy(), np.ones(len(kp)))
        return dict(image=torch.einsum('khw,kc->chw', blob, self.colours) - 0.5, target=torch.from_numpy(enc.targets),
                    weight=torch.from_numpy(enc.weights), kpts=kp, vis=torch.ones(len(kp)), meta=dict(index=i))


def tiny_net(K=3, bn=True, seed=0):
    "A 3-conv stride-4 heatmap net (48x64 -> 12x16), with or without BatchNorm."
    torch.manual_seed(seed)
    norm = [nn.BatchNorm2d(8)] if bn else []
    return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), *norm, nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, K, 1))


class UncertaintyWeighted(nn.Module):
    "HeatmapLoss weighted by a learned log-variance s: (exp(-s) L + s) / 2 (Kendall et al. 2018, arXiv:1705.07115)."
    def __init__(self, s0: float = 0.):
        super().__init__(); self.log_var, self.hm = nn.Parameter(torch.tensor(float(s0))), HeatmapLoss()
    def forward(self, out, batch): return 0.5 * (torch.exp(-self.log_var) * self.hm(out, batch) + self.log_var)


CFG = dict(lr=3e-3, progress=False, device='cpu')  # the suite is CPU-only and exact (GPU kernels need deterministic=True)


def train(out, *, epochs=3, interrupt=None, init_seed=0, aug='global', workers=0, batch_size=8, bn=True, **kw):
    m = tiny_net(bn=bn, seed=init_seed)
    dl = DataLoader(Dots(interrupt=interrupt, aug=aug), batch_size=batch_size, shuffle=True, num_workers=workers)
    hist = fit(m, dl, HeatmapLoss(), TrainConfig(epochs=epochs, **{**CFG, **kw}), out)
    return m.state_dict(), hist


def same(a: dict, b: dict) -> bool: return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def max_diff(a: dict, b: dict) -> float: return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


# ---------------------------------------------------------------- resume is exact: signals and worker processes

@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    "An uninterrupted 3-epoch run (shuffled loader, global-RNG augmentation, BatchNorm, Adam)."
    out = tmp_path_factory.mktemp('ref')
    return train(out)[0], out


def test_resume_mid_epoch_after_sigterm_is_bit_identical(reference, tmp_path):
    ref, out = reference[0], tmp_path / 'run'
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as e:
        train(out, interrupt=(1, 10, 'term'))  # SIGTERM while loading batch 1 of epoch 1: stop after that step
    assert e.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is handler  # fit put the previous handler back
    ck = load_train_state(out / 'last.pt')
    assert (ck['epoch'], ck['batches_done'], ck['step']) == (1, 2, 5)
    res, hist = train(out, init_seed=1)
    assert same(ref, res)
    assert [r['epoch'] for r in hist] == [0, 1, 2]
    assert [r['loss'] for r in hist] == [r['loss'] for r in read_log(reference[1])]  # the split epoch logs the same mean
    steps = read_log(out, 'steps.jsonl')
    assert [r['step'] for r in steps] == sorted({r['step'] for r in steps})  # no step logged twice


def ctrl_c_at(n):
    "HeatmapLoss that raises KeyboardInterrupt on its n-th call (after that batch's forward pass)."
    calls = [0]
    def loss(out, batch):
        calls[0] += 1
        if calls[0] == n: raise KeyboardInterrupt
        return HeatmapLoss()(out, batch)
    return loss


@pytest.mark.parametrize('aug,at', [('global', 4), ('pure', 5)])
def test_resume_with_worker_processes_is_bit_identical(tmp_path, aug, at):
    """Workers draw a 'global' augmentation from their own RNG, seeded from (seed, epoch, rank) by set_epoch: exact at
    an epoch boundary (call 4 = epoch 1's first batch). Mid-epoch (call 5), batches move to other workers, so only an
    augmentation that is a function of (epoch, index) — 'pure', TopDownDataset's — resumes exactly."""
    ref, _ = train(tmp_path / 'a', epochs=2, workers=2, aug=aug)
    with pytest.raises(KeyboardInterrupt):  # a worker cannot raise KeyboardInterrupt into the main process: the loss does
        fit(tiny_net(), DataLoader(Dots(aug=aug), batch_size=8, shuffle=True, num_workers=2), ctrl_c_at(at),
            TrainConfig(epochs=2, **CFG), tmp_path / 'b')
    assert load_train_state(tmp_path / 'b' / 'last.pt')['batches_done'] == at - 4
    res, _ = train(tmp_path / 'b', epochs=2, workers=2, init_seed=1, aug=aug)
    assert same(ref, res)


# ---------------------------------------------------------------- two processes, gloo, through the notebook launcher

DDP_NB = [
    ("epochs = 2\nbatch_size = 4\nstop_epoch = -1  # SIGTERM on rank 0 at sample stop_at of epoch stop_epoch\nstop_at = -1\nout_dir = None\n", ['parameters']),
    (f"import os, sys, torch\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
     "import test_train as tt\nfrom torch.utils.data import DataLoader\n"
     "from posebench.train.loop import fit, TrainConfig", []),
    ("model, loss = tt.tiny_net(bn=False), tt.UncertaintyWeighted()\n"
     "stop = (stop_epoch, stop_at, 'term') if stop_epoch >= 0 else None\n"
     "dl = DataLoader(tt.Dots(aug='pure', interrupt=stop), batch_size=batch_size, shuffle=True)", []),
    ("hist = fit(model, dl, loss, TrainConfig(epochs=epochs, **tt.CFG), out_dir)\n"
     "torch.save(dict(model=model.state_dict(), loss=loss.state_dict()), f\"{out_dir}/rank{os.environ.get('RANK', 0)}.pt\")", []),
    ("print('after fit on rank', os.environ.get('RANK', 0), len(hist))", []),
]


def torchrun(nb, out, *params, timeout=240):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
           '-m', 'posebench.launch', str(nb), '--out', str(out), *params]
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT)}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def test_ddp_two_processes_gloo_interrupt_resume_and_match_single_process(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src, metadata=dict(tags=tags)) for src, tags in DDP_NB]
    nbformat.write(nb, tmp_path / 'ddp.ipynb')
    out = tmp_path / 'run'
    # 1. SIGTERM on rank 0 while loading epoch 1's second batch: both ranks stop after the same step, rank 0 saves
    r = torchrun(tmp_path / 'ddp.ipynb', out, '-p', 'stop_epoch', '1', '-p', 'stop_at', '5')
    assert r.returncode != 0, r.stdout + r.stderr
    ck = load_train_state(out / 'last.pt')
    assert (ck['epoch'], ck['batches_done'], ck['world'], len(ck['ranks'])) == (1, 2, 2, 2), r.stderr[-3000:]
    assert not (out / 'rank0.pt').exists()
    # 2. the same command resumes and finishes
    r = torchrun(tmp_path / 'ddp.ipynb', out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    w0, w1 = (torch.load(out / f'rank{i}.pt', weights_only=True) for i in range(2))
    assert same(w0['model'], w1['model']) and same(w0['loss'], w1['loss'])  # both ranks end with identical model and loss
    assert abs(float(w0['loss']['log_var'])) > 1e-3  # the loss's parameter was trained (and synchronised)
    ck = load_train_state(out / 'last.pt')
    assert list(ck['loss']) == ['log_var'] and same(ck['model'], w0['model'])  # the plain model's keys, as without DDP
    log = read_log(out)
    assert [(x['epoch'], x['world']) for x in log] == [(0, 2), (1, 2)]
    assert [x['step'] for x in log] == [3, 6]  # 24 samples / (2 ranks x 4) = 3 steps per epoch
    executed = nbformat.read(out / 'ddp.ipynb', as_version=4)
    text = json.dumps(executed.cells[-1].outputs)
    assert 'after fit on rank 0 2' in text  # rank 0 ran the cells after fit ...
    assert 'after fit' not in (out / 'rank1.log').read_text()  # ... rank 1 stopped after the fit cell
    assert json.loads((out / 'meta.json').read_text())['status'] == 'ok'
    # 3. one process with the global batch (2 x 4) sees the same samples per step: the same weights up to float rounding
    m, loss = tiny_net(bn=False), UncertaintyWeighted()
    fit(m, DataLoader(Dots(aug='pure'), batch_size=8, shuffle=True), loss, TrainConfig(epochs=2, **CFG), tmp_path / 'single')
    assert max_diff(w0['model'], m.state_dict()) < 1e-6, max_diff(w0['model'], m.state_dict())  # observed 5e-8: summation order
    assert max_diff(w0['loss'], loss.state_dict()) < 1e-6, max_diff(w0['loss'], loss.state_dict())
    assert read_log(tmp_path / 'single')[-1]['loss'] == pytest.approx(log[-1]['loss'], rel=1e-5)
