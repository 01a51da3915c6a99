"""Train a named recipe of the main job (`posebench run train`) for N epochs and append its AP by epoch to a CSV.

    OMP_NUM_THREADS=1 python tools/recipe_study.py CONFIG [--epochs N] [--csv runs/recipe_study.csv] [--threads 1]
    python tools/recipe_study.py --list

Every row: config, epoch, total epochs of the schedule, optimiser steps so far, AP without flip test on the synthetic
validation set (500 images, the generator's defaults), training wall seconds so far (validation excluded), training
images/s, and the threads. The data loader runs in the main process (workers 0), so the wall time includes loading:
with one thread, the figures compare recipes by the CPU time they need. Run one study at a time.
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# the main job's defaults (nbs/runs/train.ipynb before the study), each config overrides some of them
BASE = dict(arch='pose_resnet_small', input_w=96, input_h=128, stride=4, sigma=None, codec='dark', n_train=2000, batch_size=32,
            optimizer='adam', lr=1e-3, weight_decay=0., schedule='multistep', warmup_steps=0, amp=None, channels_last=False,
            aug={}, model_kw={})
_FAST = dict(amp='bf16', channels_last=True)
_ADAMW = dict(optimizer='adamw', lr=2e-3, weight_decay=1e-4, schedule='cosine', warmup_steps=200)
_LIGHT = dict(rot_factor=30., rot_prob=0.4, half_body_prob=0.15)  # milder than HRNet's COCO augmentation
_MIN = dict(rot_prob=0., half_body_prob=0., scale_factor=0.25)  # flip and scale only
CONFIGS: dict[str, dict] = {
    'default': {},
    'bf16cl': _FAST,  # the default, faster arithmetic only
    'sigma2': dict(_FAST, sigma=2.),  # wider targets at 32x24
    'adamw_cos': dict(_FAST, **_ADAMW),
    'adamw_cos_s2': dict(_FAST, **_ADAMW, sigma=2.),
    'wide': dict(_FAST, **_ADAMW, arch='pose_resnet_small_w24', aug=_MIN),  # resnet_small 1.5x as wide
    'hrnet_w8': dict(_FAST, **_ADAMW, arch='hrnet_w8_small', aug=_MIN),
    'lightaug': dict(_FAST, **_ADAMW, aug=_LIGHT),
    'minaug': dict(_FAST, **_ADAMW, aug=_MIN),
    's2hm_min': dict(_FAST, **_ADAMW, stride=2, sigma=2., model_kw=dict(deconv_channels=(64, 64, 64, 32)), aug=_MIN),
    'flipaug': dict(_FAST, **_ADAMW, aug=dict(rot_prob=0., half_body_prob=0., scale_factor=0.)),  # flip only
    'wide_flip': dict(_FAST, **_ADAMW, arch='pose_resnet_small_w24', aug=dict(rot_prob=0., half_body_prob=0., scale_factor=0.)),
    'n4000': dict(_FAST, **_ADAMW, n_train=4000, aug=_MIN, arch='pose_resnet_small_w24'),  # not run here: the data runs went through posebench run train (docs page)
}


def _setup_threads(threads: int):
    os.environ['OMP_NUM_THREADS'] = str(threads)
    import torch
    torch.set_num_threads(threads)


def build(name: str):
    "Config `name`'s (config dict, train and validation annotations, codec, training dataset, validation dataset, model, generation s)."
    import torch

    from posebench.codecs.zoo import build_codec
    from posebench.data.readers import read_annotations
    from posebench.data.synthetic import ensure_synthetic
    from posebench.data.topdown import Augment, TopDownDataset
    from posebench.models.zoo import build_model

    c = {**BASE, **CONFIGS[name]}
    t_gen = time.perf_counter()
    tr_root = ensure_synthetic(n_train=c['n_train'], n_val=500, verbose=False)
    gen_s = time.perf_counter() - t_gen
    val_root = ensure_synthetic(verbose=False)  # the validation set: the default's 500 images, whatever n_train is
    train = read_annotations(tr_root / 'annotations/person_keypoints_train.json', 'coco')
    val = read_annotations(val_root / 'annotations/person_keypoints_val.json', 'coco')
    codec = build_codec(c['codec'], (c['input_w'], c['input_h']), c['sigma'], stride=c['stride'])
    train_ds = TopDownDataset(train, codec, train=True, aug=Augment(**c['aug']), seed=0)
    val_ds = TopDownDataset(val, codec, train=False)
    torch.manual_seed(0)
    if isinstance(c['arch'], dict):  # an architecture under study: a PoseResNet of BasicBlocks
        from posebench.models.layers import BasicBlock
        from posebench.models.resnet import PoseResNet, ResNetArch
        a = c['arch']
        model = PoseResNet(ResNetArch(BasicBlock, a['layers'], a['widths'], a['stem']), n_kpts=train.schema.n_kpts, deconv_channels=a['head'])
    else: model = build_model(c['arch'], n_kpts=train.schema.n_kpts, **c['model_kw'])
    return c, train, val, codec, train_ds, val_ds, model, gen_s


def run(name: str, epochs: int, csv_path: Path, threads: int = 1, out_dir: Path | None = None) -> list[dict]:
    "Train config `name` for `epochs` epochs (its schedule over those epochs); one CSV row per epoch."
    _setup_threads(threads)
    from torch.utils.data import DataLoader

    from posebench.data.topdown import check_batch
    from posebench.eval.coco import coco_eval
    from posebench.eval.topdown import predict_dataset
    from posebench.train.loop import TrainConfig, fit
    from posebench.train.zoo import loss_for

    c, train, val, codec, train_ds, val_ds, model, gen_s = build(name)
    loader = DataLoader(train_ds, batch_size=c['batch_size'], shuffle=True, num_workers=0, drop_last=True)
    ms = tuple(sorted({max(1, round(epochs * 170 / 210)), max(1, round(epochs * 200 / 210))} - {epochs}))
    cfg = TrainConfig(epochs=epochs, lr=c['lr'], optimizer=c['optimizer'], weight_decay=c['weight_decay'], schedule=c['schedule'],
                      warmup_steps=c['warmup_steps'], milestones=ms, amp=c['amp'], channels_last=c['channels_last'], device='cpu',
                      seed=0, val_every=1, log_every=50, progress=False)
    rows, clock = [], dict(t0=time.perf_counter(), val=0.)
    params = sum(p.numel() for p in model.parameters())

    def val_fn(m, epoch):
        t = time.perf_counter()
        train_s = t - clock['t0'] - clock['val']
        p = predict_dataset(m, val_ds, flip_test=False, batch_size=64)['codec']
        ap = coco_eval(val, p.results(val.schema.sigmas))['AP']
        steps = (epoch + 1) * len(loader)
        row = dict(config=name, epoch=epoch + 1, epochs=epochs, steps=steps, ap=round(100 * ap, 2), train_s=round(train_s, 1),
                   img_s=round(steps * c['batch_size'] / train_s, 1), threads=threads, gen_s=round(gen_s, 1), params_m=round(params / 1e6, 3),
                   persons=len(train_ds), commit=_commit())
        rows.append(row)
        new = not csv_path.exists()
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        with open(csv_path, 'a', newline='') as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new: w.writeheader()
            w.writerow(row)
        print(row, flush=True)
        clock['val'] += time.perf_counter() - t
        return {'AP': ap}

    out = out_dir or Path(tempfile.mkdtemp(prefix=f'recipe-{name}-'))
    fit(model, loader, loss_for(codec), cfg, out, val_fn=val_fn, resume=False, batch_check=check_batch)
    return rows


def throughput(names: list[str], threads: int = 1, steps: int = 12, rounds: int = 3) -> dict[str, float]:
    "Training images/s of each config (data loading in the process, forward, backward, step), measured side by side: `rounds` rounds of `steps` steps each, round-robin, median."
    _setup_threads(threads)
    import itertools
    import statistics

    import torch
    from torch.utils.data import DataLoader

    from posebench.train.loop import TrainConfig, auto_precision, make_optimizer
    from posebench.train.zoo import loss_for
    runs = {}
    for n in names:
        c, _, _, codec, train_ds, _, model, _ = build(n)
        amp, cl = auto_precision(c['amp'], c['channels_last'], 'cpu')
        if cl: model = model.to(memory_format=torch.channels_last)
        opt = make_optimizer(model, TrainConfig(optimizer=c['optimizer'], lr=c['lr'], weight_decay=c['weight_decay']))
        it = itertools.cycle(DataLoader(train_ds, batch_size=c['batch_size'], shuffle=True, num_workers=0, drop_last=True))
        runs[n] = (c, model.train(), opt, loss_for(codec), it, amp, cl)
    rates = {n: [] for n in names}
    for r in range(rounds + 1):
        for n in names:
            c, model, opt, loss_fn, it, amp, cl = runs[n]
            t = time.perf_counter()
            for _ in range(steps):
                b = next(it)
                x = b['image'].contiguous(memory_format=torch.channels_last) if cl else b['image']
                with torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp == 'bf16'):
                    out = model(x)
                loss = loss_fn(out.float(), b); opt.zero_grad(); loss.backward(); opt.step()
            if r: rates[n].append(steps * c['batch_size'] / (time.perf_counter() - t))  # round 0 warms up
    return {n: statistics.median(v) for n, v in rates.items()}


def _commit() -> str:
    try: return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError: return ''


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('config', nargs='?')
    ap.add_argument('--epochs', type=int, default=6)
    ap.add_argument('--csv', type=Path, default=ROOT / 'runs' / 'recipe_study.csv')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--list', action='store_true')
    ap.add_argument('--throughput', nargs='+', metavar='CONFIG', help='compare the training images/s of these configs side by side')
    a = ap.parse_args(argv)
    if a.throughput:
        rates = throughput(a.throughput, a.threads)
        for n, v in rates.items(): print(f'{n:16s} {v:7.1f} img/s  {v / rates[a.throughput[0]]:.2f}x')
        return
    if a.list or a.config is None:
        for k, v in CONFIGS.items(): print(f'{k:14s} {v}')
        return
    if a.config not in CONFIGS: sys.exit(f'unknown config {a.config!r}; known: {", ".join(CONFIGS)}')
    run(a.config, a.epochs, a.csv, a.threads)


if __name__ == '__main__':
    main()
