"""posebench.train: exact resume (after an epoch, mid-epoch, SIGTERM, with workers), gradient accumulation, AMP on the
CPU, LR schedule values, weight decay, divergence, and two-process DDP under torchrun (gloo) through the notebook
launcher `python -m posebench.train.loop`. Also imported by the DDP test's notebook for its data and model."""
import json
import math
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
from posebench.models.checkpoint import load_checkpoint
from posebench.train.loop import Interrupted, TrainConfig, fit, load_train_state, lr_factor, read_log
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


CFG = dict(lr=3e-3, progress=False, device='cpu')  # the suite is CPU-only and exact (GPU kernels need deterministic=True)


def train(out, *, epochs=3, interrupt=None, init_seed=0, aug='global', workers=0, batch_size=8, bn=True, **kw):
    m = tiny_net(bn=bn, seed=init_seed)
    dl = DataLoader(Dots(interrupt=interrupt, aug=aug), batch_size=batch_size, shuffle=True, num_workers=workers)
    hist = fit(m, dl, HeatmapLoss(), TrainConfig(epochs=epochs, **{**CFG, **kw}), out)
    return m.state_dict(), hist


def same(a: dict, b: dict) -> bool: return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def max_diff(a: dict, b: dict) -> float: return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


# ---------------------------------------------------------------- resume is exact

@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    "An uninterrupted 3-epoch run (shuffled loader, global-RNG augmentation, BatchNorm, Adam)."
    out = tmp_path_factory.mktemp('ref')
    return train(out)[0], out


def test_resume_after_epoch_1_is_bit_identical(reference, tmp_path):
    ref, out = reference[0], tmp_path / 'run'
    with pytest.raises(KeyboardInterrupt):
        train(out, interrupt=(2, 0, 'kbd'))  # Ctrl-C while loading the first sample of epoch 2
    ck = load_train_state(out / 'last.pt')
    assert (ck['epoch'], ck['batches_done']) == (2, 0)
    assert [r['epoch'] for r in read_log(out)] == [0, 1]
    res, hist = train(out, init_seed=1)  # other initial weights: only the checkpoint can make them equal
    assert same(ref, res)
    assert [r['loss'] for r in hist] == [r['loss'] for r in read_log(reference[1])]


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


def test_finished_run_only_loads_and_checkpoint_loads_with_the_model_loader(reference, tmp_path):
    ref, out = reference
    m = tiny_net(seed=5)
    hist = fit(m, DataLoader(Dots(), batch_size=8), HeatmapLoss(), TrainConfig(epochs=3, **CFG), out)
    assert len(hist) == 3 and same(ref, m.state_dict())
    m2 = tiny_net(seed=6)
    load_checkpoint(m2, out / 'last.pt')  # posebench.models.checkpoint reads the 'model' entry, tensors only
    assert same(ref, m2.state_dict())
    with pytest.raises(RuntimeError, match='cannot resume this model'):
        fit(nn.Sequential(nn.Conv2d(3, 3, 1)), DataLoader(Dots(), batch_size=8), HeatmapLoss(), TrainConfig(epochs=3, **CFG), out)


# ---------------------------------------------------------------- accumulation, AMP, schedule, decay, divergence

def test_grad_accumulation_equals_the_larger_batch(tmp_path):
    "accum=2 with batch 4 == accum=1 with batch 8 (no BatchNorm; 24 samples: groups of 2, 2, 2 micro-batches)."
    a, _ = train(tmp_path / 'a', epochs=2, bn=False, batch_size=4, accum_steps=2)
    b, _ = train(tmp_path / 'b', epochs=2, bn=False, batch_size=8)
    assert max_diff(a, b) < 1e-5
    # 20 samples: the last group of each epoch has one micro-batch of 4, divided by 1 — as the last batch of 8 is 4
    ds = Dots(n=20, aug=None)
    ws = []
    for bs, acc in ((4, 2), (8, 1)):
        m = tiny_net(bn=False)
        fit(m, DataLoader(ds, batch_size=bs, shuffle=True), HeatmapLoss(), TrainConfig(epochs=2, accum_steps=acc, **CFG), tmp_path / f'c{bs}')
        ws.append(m.state_dict())
    assert max_diff(*ws) < 1e-5
    assert load_train_state(tmp_path / 'c4' / 'last.pt')['step'] == 6  # ceil(5 / 2) = 3 optimiser steps per epoch


@pytest.mark.parametrize('amp', ['bf16', 'fp16'])
def test_amp_on_cpu_trains_with_fp32_loss_and_weights(tmp_path, amp):
    w, hist = train(tmp_path, epochs=3, amp=amp, lr=1e-2, grad_clip=1.)  # fp16: the scaler unscales before clipping
    assert all(math.isfinite(r['loss']) for r in hist) and hist[-1]['loss'] < hist[0]['loss']
    assert all(v.dtype in (torch.float32, torch.int64) for v in w.values())
    ck = load_train_state(tmp_path / 'last.pt')
    assert bool(ck['scaler']) == (amp == 'fp16')  # the GradScaler's state is checkpointed
    if amp == 'fp16': assert ck['scaler']['scale'] > 0


def test_lr_schedule_values_and_the_lrs_actually_used(tmp_path):
    hr = TrainConfig()  # HRNet: 210 epochs, x0.1 at 170 and 200
    assert [lr_factor(hr, e * 100, 100) for e in (0, 169, 170, 199, 200, 209)] == [1, 1, 0.1, 0.1, 0.1 ** 2, 0.1 ** 2]
    cos = TrainConfig(schedule='cosine', epochs=4, warmup_steps=3, warmup_factor=0.1, lr=1e-2, min_lr=1e-4)
    assert lr_factor(cos, 0, 3) == pytest.approx(0.1) and lr_factor(cos, 3, 3) == pytest.approx(1)
    assert lr_factor(cos, 12, 3) == pytest.approx(0.01) and lr_factor(cos, 3 + 9 / 2, 3) == pytest.approx(0.505)
    _, hist = train(tmp_path, epochs=4, schedule='cosine', warmup_steps=3, warmup_factor=0.1, lr=1e-2, min_lr=1e-4, log_every=1)
    steps = read_log(tmp_path, 'steps.jsonl')
    assert [r['step'] for r in steps] == list(range(1, 13))
    assert [r['lr'] for r in steps] == pytest.approx([1e-2 * lr_factor(cos, s, 3) for s in range(12)], rel=1e-12)
    assert hist[-1]['lr'] == steps[-1]['lr']
    ms = TrainConfig(epochs=3, milestones=(1, 2), gamma=0.5)
    _, hist = train(tmp_path / 'ms', epochs=3, milestones=(1, 2), gamma=0.5)
    assert [lr_factor(ms, 3 * e, 3) for e in range(3)] == [1, 0.5, 0.25]
    assert [r['lr'] for r in hist] == pytest.approx([3e-3, 1.5e-3, 7.5e-4], rel=1e-12)


def test_adamw_decays_weights_not_biases_or_norms(tmp_path):
    "A loss of zero: the only change AdamW makes is the decoupled decay p <- p (1 - lr wd) of the conv weights."
    m = tiny_net(); w0 = {k: v.clone() for k, v in m.state_dict().items()}
    zero = lambda out, batch: (out * 0).sum()
    fit(m, DataLoader(Dots(), batch_size=8), zero, TrainConfig(epochs=1, optimizer='adamw', weight_decay=0.1, lr=0.01, progress=False, device='cpu'), tmp_path)
    for k, v in m.state_dict().items():
        if k.endswith('weight') and v.ndim == 4: torch.testing.assert_close(v, w0[k] * (1 - 0.01 * 0.1) ** 3)
        elif v.is_floating_point() and 'running' not in k: assert torch.equal(v, w0[k]), k


def test_validation_every_n_epochs_in_eval_mode_without_grad(tmp_path):
    seen = []
    def val_fn(model, epoch):
        seen.append((epoch, model.training, torch.is_grad_enabled()))
        return dict(score=epoch / 10, n=np.int64(3))
    hist = fit(tiny_net(), DataLoader(Dots(), batch_size=8), HeatmapLoss(), TrainConfig(epochs=3, val_every=2, **CFG), tmp_path, val_fn=val_fn)
    assert seen == [(1, False, False), (2, False, False)]  # every 2nd epoch and the last
    assert [r.get('val_score') for r in hist] == [None, 0.1, 0.2] and hist[1]['val_n'] == 3.0
    with pytest.raises(TypeError, match='dict of numbers'):
        fit(tiny_net(), DataLoader(Dots(), batch_size=8), HeatmapLoss(), TrainConfig(epochs=1, **CFG), tmp_path / 'b',
            val_fn=lambda m, e: dict(ap='high'))


def test_a_failing_val_fn_keeps_the_epoch_and_the_rerun_continues_exactly(tmp_path):
    def val_ok(model, epoch): return dict(e=epoch)
    def val_bad(model, epoch):
        if epoch == 1: raise RuntimeError('evaluation broke')
        return dict(e=epoch)
    run = lambda out, val: fit(tiny_net(), DataLoader(Dots(), batch_size=8, shuffle=True), HeatmapLoss(), TrainConfig(epochs=3, **CFG), out, val_fn=val)
    run(tmp_path / 'a', val_ok)
    with pytest.raises(RuntimeError, match='evaluation broke'):
        run(tmp_path / 'b', val_bad)
    ck = load_train_state(tmp_path / 'b' / 'last.pt')
    assert (ck['epoch'], ck['batches_done']) == (1, 3)  # epoch 1 trained, its end (validation, log) still to do
    hist = run(tmp_path / 'b', val_ok)
    assert [r['val_e'] for r in hist] == [0, 1, 2]
    assert [r['loss'] for r in hist] == [r['loss'] for r in read_log(tmp_path / 'a')]
    assert same(load_train_state(tmp_path / 'a' / 'last.pt')['model'], load_train_state(tmp_path / 'b' / 'last.pt')['model'])


def test_grad_clip_channels_last_and_batch_check(tmp_path):
    w0 = tiny_net(bn=False).state_dict()
    clipped, _ = train(tmp_path / 'a', epochs=1, bn=False, grad_clip=1e-12)  # |g| << Adam's eps: steps of ~lr·1e-4
    free, _ = train(tmp_path / 'b', epochs=1, bn=False, channels_last=True)
    assert max_diff(w0, clipped) < 3e-6 < 1e-3 < max_diff(w0, free)
    def check(batch):
        if batch['meta']['index'].max() >= 20: raise ValueError('batch with sample 20+')
    with pytest.raises(ValueError, match='sample 20'):
        fit(tiny_net(), DataLoader(Dots(), batch_size=8), HeatmapLoss(), TrainConfig(epochs=1, **CFG), tmp_path / 'c', batch_check=check)


def test_diverged_loss_raises_and_keeps_the_last_good_checkpoint(tmp_path):
    calls = [0]
    def loss(out, batch):
        calls[0] += 1
        return HeatmapLoss()(out, batch) * (float('nan') if calls[0] > 3 else 1)
    with pytest.raises(FloatingPointError, match='training diverged'):
        fit(tiny_net(), DataLoader(Dots(), batch_size=8), loss, TrainConfig(epochs=3, log_every=1, **CFG), tmp_path)
    ck = load_train_state(tmp_path / 'last.pt')
    assert (ck['epoch'], ck['batches_done']) == (1, 0) and all(torch.isfinite(v).all() for v in ck['model'].values())


def test_bad_inputs_have_clear_errors(tmp_path):
    with pytest.raises(TypeError, match="dicts with an 'image' tensor"):
        fit(tiny_net(), DataLoader([(torch.zeros(3, 64, 48), 0)] * 4, batch_size=2), HeatmapLoss(), TrainConfig(epochs=1, **CFG), tmp_path)
    with pytest.raises(ValueError, match='no batches'):
        fit(tiny_net(), DataLoader(Dots(n=3), batch_size=4, drop_last=True), HeatmapLoss(), TrainConfig(epochs=1, **CFG), tmp_path / 'b')
    with pytest.raises(FileNotFoundError, match='no such checkpoint'):
        fit(tiny_net(), DataLoader(Dots(), batch_size=8), HeatmapLoss(), TrainConfig(epochs=1, **CFG), tmp_path / 'c', resume=tmp_path / 'none.pt')


# ---------------------------------------------------------------- two processes, gloo, through the notebook launcher

DDP_NB = [
    ("epochs = 2\nbatch_size = 4\nstop_epoch = -1  # SIGTERM on rank 0 at sample stop_at of epoch stop_epoch\nstop_at = -1\nout_dir = None\n", ['parameters']),
    (f"import os, sys, torch\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
     "import test_train as tt\nfrom torch.utils.data import DataLoader\n"
     "from posebench.train.loop import fit, TrainConfig\nfrom posebench.train.losses import HeatmapLoss", []),
    ("model = tt.tiny_net(bn=False)\n"
     "stop = (stop_epoch, stop_at, 'term') if stop_epoch >= 0 else None\n"
     "dl = DataLoader(tt.Dots(aug='pure', interrupt=stop), batch_size=batch_size, shuffle=True)", []),
    ("hist = fit(model, dl, HeatmapLoss(), TrainConfig(epochs=epochs, **tt.CFG), out_dir)\n"
     "torch.save(model.state_dict(), f\"{out_dir}/rank{os.environ.get('RANK', 0)}.pt\")", []),
    ("print('after fit on rank', os.environ.get('RANK', 0), len(hist))", []),
]


def torchrun(nb, out, *params, timeout=240):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
           '-m', 'posebench.train.loop', str(nb), '--out', str(out), *params]
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
    assert same(w0, w1)  # both ranks end with identical weights
    log = read_log(out)
    assert [(x['epoch'], x['world']) for x in log] == [(0, 2), (1, 2)]
    assert [x['step'] for x in log] == [3, 6]  # 24 samples / (2 ranks x 4) = 3 steps per epoch
    executed = nbformat.read(out / 'ddp.ipynb', as_version=4)
    text = json.dumps(executed.cells[-1].outputs)
    assert 'after fit on rank 0 2' in text  # rank 0 ran the cells after fit ...
    assert 'after fit' not in (out / 'rank1.log').read_text()  # ... rank 1 stopped after the fit cell
    assert json.loads((out / 'meta.json').read_text())['status'] == 'ok'
    # 3. one process with the global batch (2 x 4) sees the same samples per step: the same weights up to float rounding
    m = tiny_net(bn=False)
    fit(m, DataLoader(Dots(aug='pure'), batch_size=8, shuffle=True), HeatmapLoss(), TrainConfig(epochs=2, **CFG), tmp_path / 'single')
    assert max_diff(w0, m.state_dict()) < 1e-6, max_diff(w0, m.state_dict())  # observed 5e-8: summation order
    assert read_log(tmp_path / 'single')[-1]['loss'] == pytest.approx(log[-1]['loss'], rel=1e-5)
