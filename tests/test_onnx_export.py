"""Plain ``torch.onnx.export(model, (x,), f)`` (torch's default dynamo
exporter, no custom table) on converted and fused models: our ops lower to
standard ONNX nodes through their registered decompositions and ONNX Runtime
gives the PyTorch model's results. The same decompositions must not change
what eager, torch.compile and torch.export run: our ops stay in the graph."""
from __future__ import annotations

import collections

import pytest
import torch
import torchvision
from torch import nn

import mobilenet_ext as mx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

STANDARD = {"Conv", "Relu", "Clip", "HardSwish", "HardSigmoid", "Add", "Mul", "ReduceMean", "Gemm", "Reshape",
            "Flatten", "GlobalAveragePool", "Constant", "Identity"}


def _randomized(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and O(1) activations (torchvision's
    init gives outputs ~1e-10 in a deep random model)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.rand(c, generator=g) * 0.2 - 0.1)
    return model


def _ort_run(path, x: torch.Tensor) -> torch.Tensor:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])


CASES = {
    "mobilenet_v2 converted": lambda: mx.convert(_randomized(torchvision.models.mobilenet_v2())).eval(),
    "mobilenet_v2 converted+fused": lambda: mx.fuse(mx.convert(_randomized(torchvision.models.mobilenet_v2())).eval()),
    "mobilenet_v3_small converted+fused": lambda: mx.fuse(
        mx.convert(_randomized(torchvision.models.mobilenet_v3_small())).eval()),
    "mx.models.mobilenet_v2 fused (residual in the epilogue)": lambda: mx.fuse(
        _randomized(mx.models.mobilenet_v2()).eval()),
}


@pytest.mark.parametrize("no_grad", [False, True], ids=["grad", "no_grad"])
@pytest.mark.parametrize("name", list(CASES))
def test_plain_torch_onnx_export_runs_in_onnxruntime(name, no_grad, tmp_path, capsys):
    torch.manual_seed(0)
    model = CASES[name]()
    x = torch.randn(2, 3, 64, 64)
    path = tmp_path / "m.onnx"
    with torch.no_grad() if no_grad else torch.enable_grad():
        ref = model(x).detach()
        # exactly what a PyTorch user writes first: no table, no options
        torch.onnx.export(model, (x,), str(path))
    proto = onnx.load(str(path))
    kinds = collections.Counter(n.op_type for n in proto.graph.node)
    domains = {n.domain for n in proto.graph.node}
    assert domains <= {"", "ai.onnx"}, f"custom-domain nodes left: {domains}"
    assert set(kinds) <= STANDARD, f"unexpected nodes: {set(kinds) - STANDARD}"
    n_convs = sum(isinstance(m, (nn.Conv2d, mx.nn.DepthwiseConv2d, mx.nn.PointwiseConv2d)) for m in model.modules())
    assert kinds["Conv"] == n_convs
    got = _ort_run(path, x)
    assert got.shape == ref.shape
    err = (got - ref).abs().max().item()
    assert ref.abs().max().item() > 1e-3, "degenerate model output: the comparison would be vacuous"
    assert err <= 1e-4 * ref.abs().max().item(), f"{name}: ORT vs PyTorch max |diff| {err:.3g}"


def _our_ops(graph) -> collections.Counter:
    return collections.Counter(str(n.target) for n in graph.nodes if "mobilenet_ext" in str(n.target))


def test_decompositions_do_not_replace_our_ops_elsewhere():
    model = mx.fuse(mx.convert(_randomized(torchvision.models.mobilenet_v3_small())).eval())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ep = torch.export.export(model, (x,))
        assert _our_ops(ep.graph)["mobilenet_ext.depthwise_conv2d_fused.default"] == 11
        # the default decompositions of torch.export keep them too
        assert sum(_our_ops(ep.run_decompositions().graph).values()) == sum(_our_ops(ep.graph).values())
    # inductor still calls our kernels, forward and backward
    m = mx.convert(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 16, 1)))
    xs = torch.randn(2, 8, 10, 10, requires_grad=True)
    compiled = torch.compile(m, backend="inductor", fullgraph=True)
    compiled(xs).sum().backward()
    with torch.profiler.profile() as prof:
        compiled(xs).sum().backward()
    names = {e.name for e in prof.events()}
    for op in ("depthwise_conv2d", "depthwise_conv2d_backward_input", "depthwise_conv2d_backward_weight",
               "pointwise_conv2d", "pointwise_conv2d_backward_input", "pointwise_conv2d_backward_weight"):
        assert f"mobilenet_ext::{op}" in names, f"{op} not called under torch.compile"
    assert "aten::convolution" not in names
