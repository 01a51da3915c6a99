"""ONNX export of the architectures of the zoo (`posebench.models.zoo.MODELS`). Every CPU-sized model (each kind:
top-down, stacked Hourglass, bottom-up HigherHRNet, OffsetGuided, IHL) is exported with its weights and run by
onnxruntime against torch: every output, named, within 1e-4, at a batch size other than the traced one. A full-size
model is built from the same module classes at other widths, depths and stack counts (checked below for all of them:
every module class of every full-size architecture is in an exported small one); exporting a full-size graph takes
5-10 s on one core, so three layouts are exported, as graphs only (weights as graph inputs, `export_params=False`) at
a reduced input size and checked by ONNX's strict shape inference: HRNet-W32, the 2-stack Hourglass and OffsetGuided's
Hourglass-104. The notebook nbs/29_models.onnx.ipynb tests the functions themselves; `posebench export` and
`posebench predict model.onnx` are tested in tests/test_predict.py."""
import onnx
import pytest
import torch

from posebench.models.onnx import OnnxModel, export_model, flatten_outputs, output_names, output_structure
from posebench.models.zoo import MODELS, build_model

SMALL = [n for n in MODELS if n.endswith('_small')]
FULL = [n for n in MODELS if n not in SMALL]
FULL_LAYOUTS = ['hrnet_w32', 'hourglass2_256', 'offsetguided_hg104']  # exported as graphs; the others: module classes checked
LAYOUT_SIZE = (128, 128)  # (w, h): a multiple of every stride and hourglass depth in the zoo


def _classes(name) -> set[str]:
    with torch.device('meta'): net = build_model(name, n_kpts=17)
    return {f'{type(m).__module__}.{type(m).__qualname__}' for m in net.modules()}


def test_every_architecture_is_covered():
    "Every kind has a small model exported with weights; every module class of every full-size model is in one of them."
    assert len(SMALL) + len(FULL) == len(MODELS) and len(SMALL) >= 9 and set(FULL_LAYOUTS) <= set(FULL)
    assert {MODELS[n].kind for n in SMALL} == {'topdown', 'stacked', 'bottomup', 'offsets'}
    assert any(n.startswith('ihl_') for n in SMALL)
    exported = set().union(*(_classes(n) for n in SMALL))
    missing = {n: sorted(_classes(n) - exported) for n in FULL}
    assert not any(missing.values()), {n: m for n, m in missing.items() if m}


def _reset(net):
    "PyTorch's default initialisation instead of the zoo's near-zero heads: outputs of order one, so 1e-4 means something."
    for m in net.modules():
        if hasattr(m, 'reset_parameters'): m.reset_parameters()
    return net.eval()


@pytest.mark.parametrize('name', SMALL)
def test_small_model_runs_in_onnxruntime_like_torch(name, tmp_path):
    torch.manual_seed(0)
    net = _reset(build_model(name, n_kpts=17))
    w, h = MODELS[name].input_size
    om = OnnxModel(export_model(net, tmp_path / f'{name}.onnx', (w, h)))
    x = torch.randn(3, 3, h, w)
    with torch.no_grad(): want = net(x)
    got = om(x)
    assert output_structure(got) == output_structure(want)
    assert om.names == output_names(output_structure(want))
    for n, g, t in zip(om.names, flatten_outputs(got), flatten_outputs(want)):
        assert g.shape == t.shape, (n, g.shape, t.shape)
        assert t.abs().max() > .01, f'{name} {n}: outputs too small for the tolerance to mean anything'
        assert (g - t).abs().max() < 1e-4, (name, n, float((g - t).abs().max()))


@pytest.mark.parametrize('name', FULL_LAYOUTS)
def test_full_size_layout_exports(name, tmp_path):
    with torch.device('meta'): net = build_model(name, n_kpts=17)
    net = net.to_empty(device='cpu').eval()  # no initialisation: only the graph is exported
    f = export_model(net, tmp_path / f'{name}.onnx', LAYOUT_SIZE, export_params=False)
    m = onnx.load(f)
    onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    with torch.device('meta'), torch.no_grad(): want = build_model(name, n_kpts=17).eval()(torch.zeros(1, 3, *LAYOUT_SIZE[::-1]))
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
    assert [v.name for v in m.graph.output] == output_names(output_structure(want))
    assert [dims(v) for v in m.graph.output] == [['batch', *t.shape[1:]] for t in flatten_outputs(want)]
    assert [dims(v) for v in m.graph.input if v.name == 'images'] == [['batch', 3, LAYOUT_SIZE[1], LAYOUT_SIZE[0]]]
