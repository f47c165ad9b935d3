"""CUDA backend against F.conv2d in float64 (skipped without a GPU).

The same grid as tests/test_ops.py, in float32, float64, float16 and
bfloat16 (float32 accumulation), plus fused ops, autocast, determinism and a
converted torchvision model."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mobilenet_ext as mx
from _helpers import conv_reference, make_layout
from test_ops import DW_CASES, PW_CASES, _id

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and mx.cuda_built()),
    reason="needs a CUDA GPU and a build with the CUDA kernels",
)

ops = mx.ops
# max error relative to the reference's scale; fp16 has a 10-bit and bf16 a
# 7-bit mantissa (inputs are rounded to them; accumulation is float32)
TOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 4e-3, torch.bfloat16: 3e-2}
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def _close(got, ref, dtype, what):
    scale = 1.0 + ref.abs().max().item()
    err = (got.double() - ref).abs().max().item() if ref.numel() else 0.0
    # low-precision sums grow with the number of terms; the reference sees
    # inputs already rounded to dtype, so this bounds the accumulation only
    assert err <= TOL[dtype] * scale, f"{what}: max err {err:.3g} > {TOL[dtype]} * {scale:.3g}"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", DW_CASES, ids=_id)
def test_depthwise_cuda(case, dtype):
    g = torch.Generator().manual_seed(0)
    k = case["k"] if isinstance(case["k"], tuple) else (case["k"], case["k"])
    C, m = case["C"], case["m"]
    x0 = torch.randn(case["N"], C, case["H"], case["W"], generator=g).to("cuda", dtype)
    w = torch.randn(C * m, 1, *k, generator=g).to("cuda", dtype).requires_grad_(True)
    b = torch.randn(C * m, generator=g).to("cuda", dtype).requires_grad_(True) if case["bias"] else None
    x = make_layout(x0, case["layout"]).requires_grad_(True)
    args = (case["s"], case["p"], case["d"])
    y = ops.depthwise_conv2d(x, w, b, *args)
    assert y.dtype == dtype and y.device.type == "cuda"
    gy = torch.randn(y.shape, generator=g).to("cuda", dtype)
    ref_y, ref_gx, ref_gw, ref_gb = conv_reference(x, w, b, *args, groups=C, grad_out=gy)
    _close(y, ref_y, dtype, "forward")
    grads = torch.autograd.grad(y, [x, w] + ([b] if b is not None else []), gy)
    _close(grads[0], ref_gx, dtype, "grad_input")
    _close(grads[1], ref_gw, dtype, "grad_weight")
    if b is not None:
        _close(grads[2], ref_gb, dtype, "grad_bias")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", PW_CASES, ids=lambda c: "{N}x{Cin}->{Cout}x{H}x{W}-{layout}".format(**c))
def test_pointwise_cuda(case, dtype):
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(case["N"], case["Cin"], case["H"], case["W"], generator=g).to("cuda", dtype)
    w = (torch.randn(case["Cout"], case["Cin"], 1, 1, generator=g) / case["Cin"] ** 0.5).to("cuda", dtype).requires_grad_(True)
    b = torch.randn(case["Cout"], generator=g).to("cuda", dtype).requires_grad_(True) if case["bias"] else None
    x = make_layout(x0, case["layout"]).requires_grad_(True)
    y = ops.pointwise_conv2d(x, w, b)
    gy = torch.randn(y.shape, generator=g).to("cuda", dtype)
    ref_y, ref_gx, ref_gw, ref_gb = conv_reference(x, w, b, 1, 0, 1, 1, grad_out=gy)
    _close(y, ref_y, dtype, "forward")
    grads = torch.autograd.grad(y, [x, w] + ([b] if b is not None else []), gy)
    _close(grads[0], ref_gx, dtype, "grad_input")
    _close(grads[1], ref_gw, dtype, "grad_weight")


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("act", [None, "relu", "relu6", "hardswish"])
def test_fused_cuda(act, layout):
    acts = {None: lambda t: t, "relu": F.relu, "relu6": F.relu6, "hardswish": F.hardswish}
    g = torch.Generator().manual_seed(2)
    x = make_layout(torch.randn(2, 24, 11, 10, generator=g), layout).cuda()
    w, b = torch.randn(24, 1, 3, 3, generator=g).cuda(), torch.randn(24, generator=g).cuda()
    y = ops.depthwise_conv2d_fused(x, w, b, 2, 1, 1, activation=act)
    _close(y, acts[act](conv_reference(x, w, b, 2, 1, 1, groups=24)), torch.float32, "depthwise fused")
    wp, bp = torch.randn(40, 24, 1, 1, generator=g).cuda(), torch.randn(40, generator=g).cuda()
    r = make_layout(torch.randn(2, 40, 11, 10, generator=g), layout).cuda()
    y = ops.pointwise_conv2d_fused(x, wp, bp, activation=act, residual=r)
    _close(y, acts[act](conv_reference(x, wp, bp, 1, 0, 1, groups=1)) + r.double(), torch.float32, "pointwise fused")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_autocast_runs_our_ops_in_low_precision(dtype):
    x = torch.randn(2, 16, 12, 12, device="cuda", requires_grad=True)
    w = torch.randn(16, 1, 3, 3, device="cuda", requires_grad=True)
    wp = torch.randn(8, 16, 1, 1, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=dtype):
        y = ops.depthwise_conv2d(x, w, None, 1, 1)
        z = ops.pointwise_conv2d(y, wp)
    assert y.dtype == dtype and z.dtype == dtype
    z.float().sum().backward()
    assert x.grad.dtype == torch.float32 and w.grad.dtype == torch.float32


def test_grad_weight_is_deterministic():
    x = torch.randn(8, 64, 28, 28, device="cuda")
    w = torch.randn(64, 1, 3, 3, device="cuda")
    gy = torch.randn(8, 64, 28, 28, device="cuda")
    ext = torch.ops.mobilenet_ext
    for layout in ["nchw", "nhwc"]:
        xl, gl = make_layout(x, layout), make_layout(gy, layout)
        a = ext.depthwise_conv2d_backward_weight(gl, xl, w, [1, 1], [1, 1], [1, 1])
        b = ext.depthwise_conv2d_backward_weight(gl, xl, w, [1, 1], [1, 1], [1, 1])
        assert torch.equal(a, b)
        wp = torch.randn(32, 64, 1, 1, device="cuda")
        gp = make_layout(torch.randn(8, 32, 28, 28, device="cuda"), layout)
        a = ext.pointwise_conv2d_backward_weight(gp, xl, wp)
        b = ext.pointwise_conv2d_backward_weight(gp, xl, wp)
        assert torch.equal(a, b)


def test_empty_batch_cuda():
    x = torch.randn(0, 8, 5, 5, device="cuda", requires_grad=True)
    w = torch.randn(8, 1, 3, 3, device="cuda", requires_grad=True)
    y = ops.depthwise_conv2d(x, w, None, 1, 1)
    assert y.shape == (0, 8, 5, 5)
    y.sum().backward()
    assert torch.equal(w.grad, torch.zeros_like(w))


def test_converted_mobilenet_v2_cuda():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(num_classes=10).cuda().eval()
    conv = mx.convert(model)
    x = torch.randn(2, 3, 64, 64, device="cuda")
    with torch.no_grad():
        _close(conv(x), model(x).double(), torch.float32, "mobilenet_v2")
