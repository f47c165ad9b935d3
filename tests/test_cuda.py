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

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True, scope="module")
def _cuda_kernels_built():
    """On a machine with a GPU a build without the CUDA kernels is a failure,
    not a skip: otherwise the whole CUDA suite could vanish silently."""
    if not mx.cuda_built():
        pytest.fail("a CUDA GPU is visible but mobilenet_ext was built without its CUDA kernels "
                    "(rebuild with FORCE_CUDA=1 or on this machine; see setup.py)")

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


# ---------------------------------------------------------------------------
# The specialised kernels (csrc/cuda/cuda_tiling.h decides which runs):
#  depthwise NCHW tiled / NHWC vectorised forward for K in {3, 5, 7}, stride
#  1 / 2, padding < K; stride-1 grad_input as a flipped forward; one-pass
#  grad_weight with a deterministic second stage; tensor-core GEMM (fp16 /
#  bf16, 16-byte-chunkable operands) with split-K for few C tiles.
# ---------------------------------------------------------------------------
def _specialised_dw_grid():
    cases = []
    maps = [(1, 1), (7, 7), (14, 14), (17, 9), (33, 40), (112, 3)]
    i = 0
    for k in (3, 5, 7):
        for s in (1, 2):
            for p in range(k):
                H, W = maps[i % len(maps)]
                while H + 2 * p < k:
                    H += 3
                while W + 2 * p < k:
                    W += 2
                # C a multiple of 8 reaches the NHWC vector kernel for every
                # dtype; C = 12 only for float32 / float64 (fp16 falls back)
                C = [8, 16, 24, 12, 40][i % 5]
                cases.append(dict(k=k, s=s, p=p, H=H, W=W, N=1 + i % 2, C=C))
                i += 1
    return cases


SPECIALISED_DW = _specialised_dw_grid()


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", SPECIALISED_DW, ids=lambda c: "k{k}-s{s}-p{p}-{N}x{C}x{H}x{W}".format(**c))
def test_depthwise_specialised_cuda(case, dtype, layout):
    g = torch.Generator().manual_seed(3)
    k, C = case["k"], case["C"]
    x0 = torch.randn(case["N"], C, case["H"], case["W"], generator=g).to("cuda", dtype)
    x = make_layout(x0, layout).requires_grad_(True)
    w = torch.randn(C, 1, k, k, generator=g).to("cuda", dtype).requires_grad_(True)
    b = torch.randn(C, generator=g).to("cuda", dtype).requires_grad_(True)
    y = ops.depthwise_conv2d(x, w, b, case["s"], case["p"], 1)
    gy = torch.randn(y.shape, generator=g).to("cuda", dtype)
    ref_y, ref_gx, ref_gw, ref_gb = conv_reference(x, w, b, case["s"], case["p"], 1, groups=C, grad_out=gy)
    _close(y, ref_y, dtype, "forward")
    if layout == "nhwc" and y.shape[2] * y.shape[3] > 1:
        assert y.is_contiguous(memory_format=torch.channels_last)
    gx, gw, gb = torch.autograd.grad(y, [x, w, b], gy)
    _close(gx, ref_gx, dtype, "grad_input")
    _close(gw, ref_gw, dtype, "grad_weight")
    _close(gb, ref_gb, dtype, "grad_bias")


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("act", [None, "relu", "relu6", "hardswish"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("k,s", [(3, 1), (3, 2), (5, 1), (5, 2), (7, 1), (7, 2)])
def test_depthwise_fused_specialised_cuda(k, s, dtype, act, layout):
    acts = {None: lambda t: t, "relu": F.relu, "relu6": F.relu6, "hardswish": F.hardswish}
    g = torch.Generator().manual_seed(4)
    x = make_layout(torch.randn(2, 32, 19, 23, generator=g) * 3, layout).to("cuda", dtype)
    w, b = torch.randn(32, 1, k, k, generator=g).to("cuda", dtype), torch.randn(32, generator=g).to("cuda", dtype)
    y = ops.depthwise_conv2d_fused(x, w, b, s, k // 2, 1, activation=act)
    _close(y, acts[act](conv_reference(x, w, b, s, k // 2, 1, groups=32)), dtype, "depthwise fused")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_depthwise_misaligned_and_large_cuda(dtype):
    """A channels_last view whose data pointer is not 16-byte aligned takes
    the generic kernel; large maps take several tiles and plane groups."""
    g = torch.Generator().manual_seed(5)
    base = torch.randn(1 * 16 * 20 * 20 + 1, generator=g).to("cuda", dtype)
    x = base[1:].view(1, 20, 20, 16).permute(0, 3, 1, 2)  # channels_last, offset 1 element
    assert x.is_contiguous(memory_format=torch.channels_last) and x.data_ptr() % 16 != 0
    w = torch.randn(16, 1, 3, 3, generator=g).to("cuda", dtype)
    _close(ops.depthwise_conv2d(x, w, None, 1, 1), conv_reference(x, w, None, 1, 1, 1, groups=16), dtype, "misaligned")
    for layout in ["nchw", "nhwc"]:
        xl = make_layout(torch.randn(2, 24, 150, 131, generator=g), layout).to("cuda", dtype)
        wl = torch.randn(24, 1, 5, 5, generator=g).to("cuda", dtype)
        _close(ops.depthwise_conv2d(xl, wl, None, 2, 2), conv_reference(xl, wl, None, 2, 2, 1, groups=24), dtype, "large")


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("k,s,d,m", [(3, 1, 1, 1), (5, 2, 1, 1), (7, 1, 2, 1), (3, 2, 1, 2)])
def test_grad_weight_bitwise_deterministic_cuda(k, s, d, m, dtype, layout):
    """Same bits on every run and under use_deterministic_algorithms (no
    atomics anywhere); large N * OH gives many chunks."""
    g = torch.Generator().manual_seed(6)
    x = make_layout(torch.randn(16, 24, 56, 56, generator=g), layout).to("cuda", dtype)
    w = torch.randn(24 * m, 1, k, k, generator=g).to("cuda", dtype)
    pad = d * (k - 1) // 2
    y = ops.depthwise_conv2d(x, w, None, s, pad, d)
    gy = make_layout(torch.randn(y.shape, generator=g), layout).to("cuda", dtype)
    ext = torch.ops.mobilenet_ext
    args = ([s, s], [pad, pad], [d, d])
    first = ext.depthwise_conv2d_backward_weight(gy, x, w, *args)
    for _ in range(3):
        assert torch.equal(first, ext.depthwise_conv2d_backward_weight(gy, x, w, *args))
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert torch.equal(first, ext.depthwise_conv2d_backward_weight(gy, x, w, *args))
    finally:
        torch.use_deterministic_algorithms(prev)
    ref = conv_reference(x, w, None, s, pad, d, groups=24, grad_out=gy)[2]
    _close(first, ref, dtype, "grad_weight")


# Pointwise shapes for the tensor-core kernel: channel counts multiples of 8
# (NHWC always chunkable, NCHW when H*W % 8 == 0), MobileNet late layers with
# 7x7 maps (split-K), tails in every dimension, and non-chunkable fallbacks.
PW_TC_CASES = [
    dict(N=2, Cin=32, Cout=64, H=56, W=56),
    dict(N=1, Cin=960, Cout=160, H=7, W=7),
    dict(N=4, Cin=160, Cout=960, H=7, W=7),
    dict(N=1, Cin=24, Cout=144, H=28, W=28),
    dict(N=3, Cin=136, Cout=40, H=8, W=9),
    dict(N=1, Cin=16, Cout=8, H=1, W=1),
    dict(N=2, Cin=20, Cout=12, H=5, W=5),  # not chunkable: SIMT
]


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", PW_TC_CASES, ids=lambda c: "{N}x{Cin}->{Cout}x{H}x{W}".format(**c))
def test_pointwise_tensor_core_cuda(case, dtype, layout):
    g = torch.Generator().manual_seed(7)
    x = make_layout(torch.randn(case["N"], case["Cin"], case["H"], case["W"], generator=g), layout).to("cuda", dtype).requires_grad_(True)
    w = (torch.randn(case["Cout"], case["Cin"], 1, 1, generator=g) / case["Cin"] ** 0.5).to("cuda", dtype).requires_grad_(True)
    b = torch.randn(case["Cout"], generator=g).to("cuda", dtype).requires_grad_(True)
    y = ops.pointwise_conv2d(x, w, b)
    gy = torch.randn(y.shape, generator=g).to("cuda", dtype)
    ref_y, ref_gx, ref_gw, ref_gb = conv_reference(x, w, b, 1, 0, 1, 1, grad_out=gy)
    _close(y, ref_y, dtype, "forward")
    gx, gw, gb = torch.autograd.grad(y, [x, w, b], gy)
    _close(gx, ref_gx, dtype, "grad_input")
    _close(gw, ref_gw, dtype, "grad_weight")
    _close(gb, ref_gb, dtype, "grad_bias")
    ext = torch.ops.mobilenet_ext
    a1 = ext.pointwise_conv2d_backward_weight(gy, x.detach(), w.detach())
    assert torch.equal(a1, ext.pointwise_conv2d_backward_weight(gy, x.detach(), w.detach()))


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("act", [None, "relu", "relu6", "hardswish"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("hw", [(56, 56), (7, 7)])
def test_pointwise_fused_tensor_core_cuda(hw, dtype, act, layout):
    """bias + activation + residual epilogue, with and without split-K."""
    acts = {None: lambda t: t, "relu": F.relu, "relu6": F.relu6, "hardswish": F.hardswish}
    g = torch.Generator().manual_seed(8)
    x = make_layout(torch.randn(2, 96, *hw, generator=g), layout).to("cuda", dtype)
    wp = (torch.randn(24, 96, 1, 1, generator=g) / 96 ** 0.5).to("cuda", dtype)
    bp = torch.randn(24, generator=g).to("cuda", dtype)
    r = make_layout(torch.randn(2, 24, *hw, generator=g), layout).to("cuda", dtype)
    y = ops.pointwise_conv2d_fused(x, wp, bp, activation=act, residual=r)
    _close(y, acts[act](conv_reference(x, wp, bp, 1, 0, 1, groups=1)) + r.double(), dtype, "pointwise fused")


def test_pointwise_misaligned_operand_cuda():
    """A half tensor at an odd element offset cannot use cp.async: SIMT."""
    base = torch.randn(2 * 16 * 8 * 8 + 1, device="cuda", dtype=torch.float16)
    x = base[1:].view(2, 16, 8, 8)
    w = torch.randn(32, 16, 1, 1, device="cuda", dtype=torch.float16)
    _close(ops.pointwise_conv2d(x, w), conv_reference(x, w, None, 1, 0, 1, 1), torch.float16, "misaligned")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_on_side_stream_and_second_device_cuda(dtype):
    """Kernels run on the current stream (results valid after syncing that
    stream only) and under a device guard when another device is current."""
    x = torch.randn(4, 64, 28, 28, device="cuda", dtype=dtype)
    w = torch.randn(64, 1, 3, 3, device="cuda", dtype=dtype)
    ref = ops.depthwise_conv2d(x, w, None, 1, 1)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        y = ops.depthwise_conv2d(x, w, None, 1, 1)
    s.synchronize()
    assert torch.equal(y, ref)
    if torch.cuda.device_count() > 1:
        with torch.cuda.device(1):
            assert torch.equal(ops.depthwise_conv2d(x, w, None, 1, 1), ref)
