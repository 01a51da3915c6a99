"""posebench.train.distill where its notebook cannot go: the official FPD Hourglass teachers and students from
checkpoints of their published layouts (../shared/data/official-keys), and two-process DDP under torchrun (gloo)
through the notebook launcher — the frozen teacher (with BatchNorm) rides inside fit's DDP wrapper: both ranks end with
the same student, equal to one process with the global batch, the teacher unchanged and left out of the checkpoint."""
import json

import nbformat
import pytest
import torch
from torch.utils.data import DataLoader

import test_train as tt
from posebench.codecs.gaussian import msra_heatmap
from posebench.train.distill import DistillLoss, load_teacher
from posebench.train.loop import TrainConfig, fit, load_train_state, read_log

NB = [
    ("epochs = 2\nbatch_size = 4\nout_dir = None\n", ['parameters']),
    (f"import os, sys, torch\nsys.path.insert(0, {str(tt.ROOT / 'tests')!r})\n"
     "import test_train as tt\nfrom torch.utils.data import DataLoader\n"
     "from posebench.train.loop import fit, TrainConfig\nfrom posebench.train.distill import DistillLoss", []),
    ("model, teacher = tt.tiny_net(bn=False), tt.tiny_net(bn=True, seed=5)\n"
     "loss = DistillLoss(teacher, tt.Dots().codec, alpha=0.5)\n"
     "dl = DataLoader(tt.Dots(aug='pure'), batch_size=batch_size, shuffle=True)", []),
    ("hist = fit(model, dl, loss, TrainConfig(epochs=epochs, **tt.CFG), out_dir)\n"
     "torch.save(dict(model=model.state_dict(), teacher=teacher.state_dict()), f\"{out_dir}/rank{os.environ.get('RANK', 0)}.pt\")", []),
]


@pytest.mark.parametrize('name,arch', [('fpd_hourglass_8stack_256feat_256x256', 'hourglass8_256'),
                                       ('fpd_hourglass_4stack_128feat_256x256', 'hourglass4_128')])
def test_official_fpd_hourglass_checkpoint_loads_as_teacher(shared, tmp_path, name, arch):
    "A checkpoint in the official layout (DataParallel's `module.` prefix) loads strictly with load_teacher and distils."
    ref = json.loads((shared / 'official-keys' / f'{name}.json').read_text())
    g = torch.Generator().manual_seed(0)
    def tensor(k, s, t):  # small random weights (finite outputs through every stack), unit variances
        if not t.startswith('float'): return torch.zeros(s, dtype=getattr(torch, t))
        return torch.ones(s) if k.endswith('running_var') else 0.05 * torch.randn(s, generator=g)
    sd = {'module.' + k: tensor(k, s, t) for k, s, t in ref['state_dict']}
    torch.save({'state_dict': sd}, tmp_path / 'official.pth')
    model, codec = load_teacher(tmp_path / 'official.pth', arch=arch, n_kpts=ref['num_joints'])
    assert codec is None and not model.training
    for k, v in model.state_dict().items(): assert torch.equal(v, sd['module.' + k]), k
    if arch == 'hourglass4_128':  # the official pair's student shape: the teacher's 64x64 maps land on its grid
        x = torch.zeros(1, 3, 64, 64)
        student_out = [torch.zeros(1, ref['num_joints'], 16, 16, requires_grad=True) for _ in range(4)]
        c = msra_heatmap((64, 64), (16, 16))
        loss = DistillLoss(model, c, teacher_codec=c)(student_out, dict(image=x, target=torch.zeros(1, ref['num_joints'], 16, 16),
                                                                        weight=torch.ones(1, ref['num_joints'])))
        loss.backward()
        assert torch.isfinite(loss) and all(o.grad is not None for o in student_out)


def test_ddp_two_processes_match_one_process(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src, metadata=dict(tags=tags)) for src, tags in NB]
    nbformat.write(nb, tmp_path / 'ddp.ipynb')
    out = tmp_path / 'run'
    r = tt.torchrun(tmp_path / 'ddp.ipynb', out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    w0, w1 = (torch.load(out / f'rank{i}.pt', weights_only=True) for i in range(2))
    assert tt.same(w0['model'], w1['model'])
    fresh = tt.tiny_net(bn=True, seed=5).state_dict()
    assert tt.same(w0['teacher'], fresh) and tt.same(w1['teacher'], fresh)  # BatchNorm statistics included: eval mode throughout
    ck = load_train_state(out / 'last.pt')
    assert ck['loss'] == {} and tt.same(ck['model'], w0['model'])  # the teacher is not in the checkpoint
    assert [x['world'] for x in read_log(out)] == [2, 2]
    m = tt.tiny_net(bn=False)
    loss = DistillLoss(tt.tiny_net(bn=True, seed=5), tt.Dots().codec, alpha=0.5)
    fit(m, DataLoader(tt.Dots(aug='pure'), batch_size=8, shuffle=True), loss, TrainConfig(epochs=2, **tt.CFG), tmp_path / 'single')
    assert tt.max_diff(w0['model'], m.state_dict()) < 1e-6, tt.max_diff(w0['model'], m.state_dict())
    assert read_log(tmp_path / 'single')[-1]['loss'] == read_log(out)[-1]['loss'] or \
        abs(read_log(tmp_path / 'single')[-1]['loss'] / read_log(out)[-1]['loss'] - 1) < 1e-5
