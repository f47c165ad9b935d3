"""`python -m mobilenet_ext export`: our ops become standard ONNX nodes that
ONNX Runtime runs with the PyTorch model's results; torch.export .pt2 round
trip."""
from __future__ import annotations

import argparse

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mobilenet_ext as mx
from mobilenet_ext._plan import PlannedSequential
from mobilenet_ext import export as E
from mobilenet_ext import models as M
from mobilenet_ext.nn import DepthwiseConv2d, PointwiseConv2d

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

STANDARD = {"Conv", "Relu", "Clip", "HardSwish", "Add"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def randomize(model):
    """Non-trivial BatchNorm statistics and a classifier with O(1) outputs."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(c, generator=g) * 0.4 - 0.2)
        elif isinstance(m, nn.Linear):
            m.weight.data.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features ** 0.5)
    return model


def nodes(proto):
    return [n.op_type for n in proto.graph.node]


def ort_run(path, x):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(s.run(None, {s.get_inputs()[0].name: x.numpy()})[0])


class Layer(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


# Each case: (our op call, reference with F.conv2d + torch activations, ONNX nodes expected besides Conv)
g = torch.Generator().manual_seed(0)
W_DW = torch.randn(12, 1, 3, 5, generator=g)      # 6 channels, multiplier 2, 3x5 kernel
B_DW = torch.randn(12, generator=g)
W_PW = torch.randn(10, 6, 1, 1, generator=g)
B_PW = torch.randn(10, generator=g)
R = torch.randn(2, 10, 9, 11, generator=g)
W_ST = torch.randn(8, 6, 3, 3, generator=g)       # dense (stem) conv, 6 -> 8 channels
B_ST = torch.randn(8, generator=g)

CASES = {
    "dw_plain": (lambda x: mx.ops.depthwise_conv2d(x, W_DW, None, (2, 1), (1, 2), (1, 2)),
                 lambda x: F.conv2d(x, W_DW, None, (2, 1), (1, 2), (1, 2), groups=6), set()),
    "dw_bias_relu": (lambda x: mx.ops.depthwise_conv2d_fused(x, W_DW, B_DW, 1, (1, 2), 1, "relu"),
                     lambda x: F.relu(F.conv2d(x, W_DW, B_DW, 1, (1, 2), 1, groups=6)), {"Relu"}),
    "dw_relu6": (lambda x: mx.ops.depthwise_conv2d_fused(x, W_DW, B_DW, 2, 1, 1, "relu6"),
                 lambda x: F.relu6(F.conv2d(x, W_DW, B_DW, 2, 1, 1, groups=6)), {"Clip"}),
    "pw_plain": (lambda x: mx.ops.pointwise_conv2d(x, W_PW, B_PW),
                 lambda x: F.conv2d(x, W_PW, B_PW), set()),
    "pw_hardswish_residual": (lambda x: mx.ops.pointwise_conv2d_fused(x, W_PW, B_PW, "hardswish", R),
                              lambda x: F.hardswish(F.conv2d(x, W_PW, B_PW)) + R, {"HardSwish", "Add"}),
    "stem_relu6": (lambda x: mx.ops.conv2d_small_cin_fused(x, W_ST, B_ST, 2, 1, "relu6"),
                   lambda x: F.relu6(F.conv2d(x, W_ST, B_ST, 2, 1)), {"Clip"}),
    "pw_residual_only": (lambda x: mx.ops.pointwise_conv2d_fused(x, W_PW, None, None, R),
                         lambda x: F.conv2d(x, W_PW) + R, {"Add"}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_op_exports_as_standard_onnx(case, tmp_path):
    ours, ref, extra = CASES[case]
    x = torch.randn(2, 6, 9, 11, generator=torch.Generator().manual_seed(2))
    proto = E.export_onnx(Layer(ours).eval(), x, str(tmp_path / "m.onnx"), dynamic_batch=False)
    ops_ = nodes(proto)
    assert ops_.count("Conv") == 1
    assert set(ops_) - {"Constant"} <= {"Conv"} | extra and extra <= set(ops_), ops_
    assert all(n.domain in ("", "ai.onnx") for n in proto.graph.node)
    conv = next(n for n in proto.graph.node if n.op_type == "Conv")
    group = {a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute}.get("group", 1)
    assert group == (6 if case.startswith("dw") else 1)
    onnx.checker.check_model(onnx.load(str(tmp_path / "m.onnx")), full_check=True)
    got = ort_run(tmp_path / "m.onnx", x)
    want = ref(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,fuse", [
    ("mobilenet_v2", True), ("mobilenet_v3_small", True),
    # the unfused ops are covered per op above; whole unfused / V1 models take ~10-20 s each here
    pytest.param("mobilenet_v3_small", False, marks=pytest.mark.slow),
    pytest.param("mobilenet_v1", True, marks=pytest.mark.slow),
])
def test_model_onnx_matches_pytorch_and_pt2_round_trip(name, fuse, tmp_path):
    torch.manual_seed(0)
    model = randomize(getattr(M, name)(width_mult=0.5, num_classes=10)).eval()
    ref_model = M.__dict__[name](width_mult=0.5, num_classes=10, backend="torch").eval()
    ref_model.load_state_dict(model.state_dict())  # nn.Conv2d reference, independent of our kernels
    n_convs = sum(isinstance(m, (nn.Conv2d, DepthwiseConv2d, PointwiseConv2d)) for m in model.modules())
    if fuse:
        model = mx.fuse(model)
    lines = []
    rep = E.export_model(model, str(tmp_path), input_size=40, batch_size=1, name="m", log=lines.append)
    assert rep.passed, lines
    # ONNX: standard nodes only, one Conv per convolution of the model
    ops_ = rep.onnx_nodes
    assert ops_["Conv"] == n_convs
    assert not any(n.domain not in ("", "ai.onnx") for n in onnx.load(rep.onnx_path).graph.node)
    x = torch.randn(3, 3, 40, 40, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = ref_model(x)
    got = ort_run(rep.onnx_path, x)
    scale = want.abs().max().item()
    assert scale > 0.1
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4 * scale)
    # torch.export: our ops are in the graph (fused ones after mx.fuse), the loaded .pt2 matches eager exactly
    ours = {k for k in rep.program_ops if k.startswith("mobilenet_ext.")}
    assert "mobilenet_ext.depthwise_conv2d_fused.default" in ours if fuse else \
        {"mobilenet_ext.depthwise_conv2d.default", "mobilenet_ext.pointwise_conv2d.default"} <= ours
    if fuse and name != "mobilenet_v1":
        assert "mobilenet_ext.pointwise_conv2d_fused.default" in ours  # residual add in the GEMM epilogue
        assert ops_["Add"] >= 1
    loaded = torch.export.load(rep.pt2_path).module()
    with torch.no_grad():
        got = loaded(x)
        # exactly the module tree on the same NCHW input; the fused model's
        # replay runs an NCHW input in channels_last (_plan.CHANNELS_LAST_INSIDE):
        # equal to rounding (squeeze-excitation means, average pool)
        planned = model(x)
        for m in model.modules():
            if isinstance(m, PlannedSequential):
                m.plan_enabled = False
        assert torch.equal(got, model(x))
        torch.testing.assert_close(got, planned, rtol=0, atol=1e-5 * scale)
    assert rep.onnx_max_err[1] <= 1e-4 and rep.onnx_max_err[3] <= 1e-4


def _cli(argv):
    p = argparse.ArgumentParser()
    E.add_arguments(p)
    return E.main(p.parse_args(argv))


def test_cli_export_from_train_checkpoint(tmp_path, capsys):
    from mobilenet_ext import train as T

    p = argparse.ArgumentParser()
    T.add_arguments(p)
    targs = p.parse_args(["--model", "mobilenet_v3_small", "--width-mult", "0.5", "--epochs", "1", "--threads",
                          "1", "--no-progress", "--out", str(tmp_path / "run"), "--batch-size", "64"])
    d = T.load_digits(16)
    import dataclasses

    small = dataclasses.replace(d, train_x=d.train_x[:128], train_y=d.train_y[:128])
    T.train(targs, dataset=small, log=lambda *a: None)
    rc = _cli(["--checkpoint", str(tmp_path / "run" / "last.pt"), "--input-size", "32", "--out",
               str(tmp_path / "exp"), "--no-torch-export"])  # the .pt2 path is tested above
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "mobilenet_v3_small x0.5 (10 classes" in out and "all checks passed" in out
    assert (tmp_path / "exp" / "last.onnx").is_file() and not (tmp_path / "exp" / "last.pt2").exists()
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    model = M.mobilenet_v3_small(width_mult=0.5, num_classes=10, backend="torch").eval()
    model.load_state_dict(ck["model_state"])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ort_run(tmp_path / "exp" / "last.onnx", x), model(x), rtol=1e-4, atol=1e-4)


def test_cli_errors(tmp_path, capsys, monkeypatch):
    assert _cli(["--opset", "12", "--out", str(tmp_path), "--input-size", "32", "--no-torch-export"]) == 2
    err = capsys.readouterr().err
    assert "--opset must be an int >= 14" in err and "got 12" in err
    assert _cli(["--checkpoint", str(tmp_path / "nope.pt")]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(E.ExportError, match="'onnxruntime' package"):
        E.run_onnx(str(tmp_path / "x.onnx"), torch.zeros(1))
