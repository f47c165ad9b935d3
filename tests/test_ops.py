"""Forward and backward of our ops against F.conv2d (float64 reference)
over a grid of kernel sizes, strides, paddings, dilations, map sizes,
batches, channels, multipliers, bias and memory layouts."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
import torch.utils._python_dispatch

import mobilenet_ext as mx
from _helpers import assert_close, conv_reference, make_layout

ops = mx.ops


def _depthwise_grid():
    sizes = [(7, 7), (8, 6), (1, 1), (9, 12), (5, 3), (13, 11)]
    channels = [1, 3, 8, 17, 64]
    layouts = ["nchw", "nhwc", "strided"]
    cases = []
    i = 0
    for k, s, d in itertools.product([1, 3, 5, 7], [1, 2], [1, 2]):
        for p in range(0, k + 1):
            H, W = sizes[i % len(sizes)]
            # grow the map until the output is at least 1x1
            while H + 2 * p < d * (k - 1) + 1:
                H += 3
            while W + 2 * p < d * (k - 1) + 1:
                W += 4
            cases.append(
                dict(k=k, s=s, p=p, d=d, H=H, W=W, N=[1, 3][i % 2], C=channels[i % len(channels)],
                     m=1 if i % 7 else 2, bias=i % 3 != 0, layout=layouts[i % 3])
            )
            i += 1
    # asymmetric kernels, strides and paddings
    cases += [
        dict(k=(3, 5), s=(1, 2), p=(1, 2), d=(1, 1), H=10, W=9, N=2, C=5, m=1, bias=True, layout="nchw"),
        dict(k=(5, 3), s=(2, 1), p=(0, 1), d=(2, 1), H=12, W=7, N=1, C=8, m=3, bias=False, layout="nhwc"),
        dict(k=(1, 7), s=(1, 1), p=(0, 3), d=(1, 1), H=6, W=11, N=2, C=16, m=1, bias=True, layout="nhwc"),
    ]
    return cases


DW_CASES = _depthwise_grid()


def _id(c):
    return "k{k}-s{s}-p{p}-d{d}-{N}x{C}x{H}x{W}-m{m}-{b}-{layout}".format(b="bias" if c["bias"] else "nobias", **c)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", DW_CASES, ids=_id)
def test_depthwise_matches_conv2d(case, dtype):
    g = torch.Generator().manual_seed(0)
    k = case["k"] if isinstance(case["k"], tuple) else (case["k"], case["k"])
    C, m = case["C"], case["m"]
    x0 = torch.randn(case["N"], C, case["H"], case["W"], generator=g, dtype=dtype)
    w = torch.randn(C * m, 1, *k, generator=g, dtype=dtype).requires_grad_(True)
    b = torch.randn(C * m, generator=g, dtype=dtype).requires_grad_(True) if case["bias"] else None
    x = make_layout(x0, case["layout"]).requires_grad_(True)
    args = (case["s"], case["p"], case["d"])

    y = ops.depthwise_conv2d(x, w, b, *args)
    gy = torch.randn(y.shape, generator=g, dtype=dtype)
    ref_y, ref_gx, ref_gw, ref_gb = conv_reference(x, w, b, *args, groups=C, grad_out=gy)
    assert y.dtype == dtype
    assert_close(y, ref_y, dtype, "forward")
    if case["layout"] == "nhwc" and C > 1 and y.shape[2] * y.shape[3] > 1:
        assert y.is_contiguous(memory_format=torch.channels_last)
    elif case["layout"] != "nhwc":
        assert y.is_contiguous()

    grads = torch.autograd.grad(y, [x, w] + ([b] if b is not None else []), gy)
    assert_close(grads[0], ref_gx, dtype, "grad_input")
    assert_close(grads[1], ref_gw, dtype, "grad_weight")
    if b is not None:
        assert_close(grads[2], ref_gb, dtype, "grad_bias")


PW_CASES = [
    dict(N=N, Cin=ci, Cout=co, H=H, W=W, bias=bias, layout=layout)
    for (N, ci, co, H, W, bias, layout) in [
        (1, 1, 1, 1, 1, True, "nchw"),
        (3, 3, 8, 7, 7, False, "nhwc"),
        (1, 17, 64, 8, 6, True, "nchw"),
        (3, 64, 17, 5, 9, True, "nhwc"),
        (2, 8, 3, 1, 1, False, "strided"),
        (1, 32, 16, 14, 14, True, "nhwc"),
        (2, 96, 24, 7, 7, False, "nchw"),
        (1, 160, 320, 3, 5, True, "strided"),
        (3, 13, 29, 11, 1, True, "nhwc"),
        (1, 144, 24, 16, 16, False, "nchw"),
        (2, 300, 77, 9, 10, True, "nchw"),
        (2, 300, 77, 9, 10, True, "nhwc"),
        # channels_last with Cin < Cout: the weight gradient as X^T gY (transposed
        # product), with its reduction over N*H*W split across threads
        (8, 16, 96, 28, 28, False, "nhwc"),
        (4, 24, 88, 23, 19, True, "nhwc"),
        # ... and the direct form where the transposed one's buffer would be
        # large next to the activations (N*H*W < 16 * Cin)
        (1, 40, 120, 5, 7, True, "nhwc"),
        # 9-16 columns with a reduction >= 32: the gradient GEMMs on the 16-wide
        # (AVX2) tile on AVX-512 machines (gemm_kernels_f32_backward)
        (4, 16, 16, 15, 13, True, "nhwc"),
        (3, 12, 48, 9, 11, False, "nhwc"),
        (2, 16, 40, 12, 10, True, "nchw"),
        # 1x1 maps (squeeze-excitation): one GEMM with M = N in either layout
        (5, 72, 24, 1, 1, True, "nchw"),
        (5, 24, 72, 1, 1, False, "nhwc"),
        (33, 40, 17, 1, 1, True, "nchw"),
    ]
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", PW_CASES, ids=lambda c: "{N}x{Cin}->{Cout}x{H}x{W}-{layout}-{bias}".format(**c))
def test_pointwise_matches_conv2d(case, dtype):
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(case["N"], case["Cin"], case["H"], case["W"], generator=g, dtype=dtype)
    w = torch.randn(case["Cout"], case["Cin"], 1, 1, generator=g, dtype=dtype).requires_grad_(True)
    b = torch.randn(case["Cout"], generator=g, dtype=dtype).requires_grad_(True) if case["bias"] else None
    x = make_layout(x0, case["layout"]).requires_grad_(True)
    y = ops.pointwise_conv2d(x, w, b)
    gy = torch.randn(y.shape, generator=g, dtype=dtype)
    ref_y, ref_gx, ref_gw, ref_gb = conv_reference(x, w, b, 1, 0, 1, 1, grad_out=gy)
    assert_close(y, ref_y, dtype, "forward")
    if case["layout"] == "nhwc" and case["Cin"] > 1 and case["H"] * case["W"] > 1:
        assert y.is_contiguous(memory_format=torch.channels_last)
    grads = torch.autograd.grad(y, [x, w] + ([b] if b is not None else []), gy)
    assert_close(grads[0], ref_gx, dtype, "grad_input")
    assert_close(grads[1], ref_gw, dtype, "grad_weight")
    if b is not None:
        assert_close(grads[2], ref_gb, dtype, "grad_bias")


# NCHW maps of at most 256 pixels with 2+ images: the forward and grad_input
# GEMMs run on groups of images with their columns merged (merged_image_jobs
# in csrc/glue/cpu_ops.cpp: about 512 columns per group, the images left
# over as one more group). (N, C_in, C_out, H, W): 10 images of 7x7 per group
# and 3 left over; one group of 11 with 15 pixels each (panels spanning 3-5
# images); 196 pixels (groups of 2, one image left); a reduction of 600 (two
# K blocks: C reloaded through the merged tiles)
MERGED = [(33, 24, 40, 7, 7), (11, 13, 37, 5, 3), (3, 70, 17, 14, 14), (5, 600, 30, 4, 4)]
MERGED_ACTS = {None: lambda t: t, "relu": F.relu, "relu6": F.relu6, "hardswish": F.hardswish}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", MERGED, ids=lambda s: "x".join(map(str, s)))
def test_pointwise_nchw_small_maps_merged_images(shape, dtype):
    N, Ci, Co, H, W = shape
    g = torch.Generator().manual_seed(N + Ci)
    x = torch.randn(N, Ci, H, W, generator=g, dtype=dtype, requires_grad=True)
    w = torch.randn(Co, Ci, 1, 1, generator=g, dtype=dtype)
    b = torch.randn(Co, generator=g, dtype=dtype)
    r = torch.randn(N, Co, H, W, generator=g, dtype=dtype)
    y = ops.pointwise_conv2d(x, w, b)
    gy = torch.randn(y.shape, generator=g, dtype=dtype)
    (gx,) = torch.autograd.grad(y, x, gy)
    ref_y, ref_gx, _, _ = conv_reference(x, w, b, 1, 0, 1, 1, grad_out=gy)
    assert_close(y, ref_y, dtype, "forward")
    assert_close(gx, ref_gx, dtype, "grad_input")
    # image by image (batch 1: nothing merged) the same bits
    xs = x.detach()
    one = [ops.pointwise_conv2d(xs[i : i + 1], w, b) for i in range(N)]
    assert torch.equal(y.detach(), torch.cat(one)), "forward differs from the per-image product"
    gone = []
    for i in range(N):
        xi = xs[i : i + 1].clone().requires_grad_(True)
        gone.append(torch.autograd.grad(ops.pointwise_conv2d(xi, w, b), xi, gy[i : i + 1])[0])
    assert torch.equal(gx, torch.cat(gone)), "grad_input differs from the per-image product"
    if dtype == torch.float32:
        for act, f in MERGED_ACTS.items():
            y = ops.pointwise_conv2d_fused(xs, w, b, act, r)
            assert_close(y, f(ref_y) + r.double(), dtype, f"fused {act}")
            if ops.gemm_panel(False) > 0:  # the kernel's own panel: bitwise the unpacked op
                pk = ops.pointwise_pack_weight(w, ops.gemm_panel(False))
                assert torch.equal(ops.pointwise_conv2d_packed(xs, w, pk, b, act, r), y), f"packed {act}"
            one = [ops.pointwise_conv2d_fused(xs[i : i + 1], w, b, act, r[i : i + 1]) for i in range(N)]
            assert torch.equal(y, torch.cat(one)), f"fused {act}: differs from the per-image product"


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("act", [None, "relu", "relu6", "hardswish"])
def test_fused_ops_match_reference(act, layout):
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(2)
    acts = {None: lambda t: t, "relu": F.relu, "relu6": F.relu6, "hardswish": F.hardswish}
    x = make_layout(torch.randn(2, 24, 11, 10, generator=g) * 4, layout)
    w = torch.randn(24, 1, 3, 3, generator=g)
    b = torch.randn(24, generator=g)
    y = ops.depthwise_conv2d_fused(x, w, b, 2, 1, 1, activation=act)
    ref = acts[act](conv_reference(x, w, b, 2, 1, 1, groups=24))
    assert_close(y, ref, torch.float32, "depthwise fused")

    wp = torch.randn(40, 24, 1, 1, generator=g)
    bp = torch.randn(40, generator=g)
    res = make_layout(torch.randn(2, 40, 11, 10, generator=g), layout)
    y = ops.pointwise_conv2d_fused(x, wp, bp, activation=act, residual=res)
    ref = acts[act](conv_reference(x, wp, bp, 1, 0, 1, groups=1)) + res.double()
    assert_close(y, ref, torch.float32, "pointwise fused")
    y = ops.pointwise_conv2d_fused(x, wp, None, activation=act)
    ref = acts[act](conv_reference(x, wp, None, 1, 0, 1, groups=1))
    assert_close(y, ref, torch.float32, "pointwise fused, no bias/residual")


def test_fused_ops_have_no_backward():
    x = torch.randn(1, 4, 5, 5, requires_grad=True)
    w = torch.randn(4, 1, 3, 3)
    y = ops.depthwise_conv2d_fused(x, w, None, 1, 1, 1, "relu")
    with pytest.raises(RuntimeError, match="inference only"):
        y.sum().backward()


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(3)
    for (k, s, p, d, m, layout) in [(3, 1, 1, 1, 1, "nchw"), (5, 2, 2, 1, 2, "nhwc"), (3, 2, 0, 2, 1, "strided"), (7, 1, 3, 1, 1, "nhwc")]:
        x = make_layout(torch.randn(2, 3, 9, 8, dtype=torch.float64, generator=g), layout).requires_grad_(True)
        w = torch.randn(3 * m, 1, k, k, dtype=torch.float64, generator=g, requires_grad=True)
        b = torch.randn(3 * m, dtype=torch.float64, generator=g, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x, w, b: ops.depthwise_conv2d(x, w, b, s, p, d), (x, w, b))
    for layout in ["nchw", "nhwc"]:
        x = make_layout(torch.randn(2, 5, 4, 3, dtype=torch.float64, generator=g), layout).requires_grad_(True)
        w = torch.randn(6, 5, 1, 1, dtype=torch.float64, generator=g, requires_grad=True)
        b = torch.randn(6, dtype=torch.float64, generator=g, requires_grad=True)
        assert torch.autograd.gradcheck(ops.pointwise_conv2d, (x, w, b))


class _OpLog(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the name of every op that reaches the dispatcher."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.name())
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("kind", ["depthwise", "pointwise"])
@pytest.mark.parametrize("need", [(True, False, True), (False, True, False), (True, True, True), (False, False, True)],
                         ids=lambda n: "".join(c if r else "-" for c, r in zip("xwb", n)))
def test_only_needed_grads_are_computed(kind, need):
    """The backward runs the grad_input / grad_weight kernel only for the
    tensors that require a gradient (checked on the ops actually dispatched),
    and the gradients it does compute match the float64 reference."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 6, 6, generator=g, dtype=torch.float64)
    if kind == "depthwise":
        w = torch.randn(4, 1, 3, 3, generator=g, dtype=torch.float64)
        conv = lambda x, w, b: ops.depthwise_conv2d(x, w, b, 1, 1)  # noqa: E731
        ref_conv = lambda x, w, b: torch.nn.functional.conv2d(x, w, b, 1, 1, 1, 4)  # noqa: E731
    else:
        w = torch.randn(5, 4, 1, 1, generator=g, dtype=torch.float64)
        conv = lambda x, w, b: ops.pointwise_conv2d(x, w, b)  # noqa: E731
        ref_conv = lambda x, w, b: torch.nn.functional.conv2d(x, w, b)  # noqa: E731
    b = torch.randn(w.shape[0], generator=g, dtype=torch.float64)
    leaves = [t.requires_grad_(r) for t, r in zip((x, w, b), need)]
    wanted = [t for t in leaves if t.requires_grad]
    y = conv(x, w, b)
    gy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    with _OpLog() as log:
        grads = torch.autograd.grad(y, wanted, gy)
    ran = {n.split("::")[1].split(".")[0] for n in log.names if n.startswith("mobilenet_ext::")}
    expect = {f"{kind}_conv2d_backward_input"} if need[0] else set()
    if need[1]:
        expect.add(f"{kind}_conv2d_backward_weight")
    assert ran == expect, f"backward ran {sorted(ran)}, needed only {sorted(expect)}"
    refs = [t.detach().clone().requires_grad_(r) for t, r in zip((x, w, b), need)]
    ref_grads = torch.autograd.grad(ref_conv(*refs), [t for t in refs if t.requires_grad], gy)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_empty_batch():
    for layout in ["nchw", "nhwc"]:
        x = make_layout(torch.randn(0, 8, 5, 5), layout).requires_grad_(True)
        w = torch.randn(8, 1, 3, 3, requires_grad=True)
        y = ops.depthwise_conv2d(x, w, None, 1, 1)
        assert y.shape == (0, 8, 5, 5)
        y.sum().backward()
        assert x.grad.shape == x.shape and torch.equal(w.grad, torch.zeros_like(w))
        wp = torch.randn(3, 8, 1, 1, requires_grad=True)
        y = ops.pointwise_conv2d(x, wp)
        assert y.shape == (0, 3, 5, 5)
        y.sum().backward()
        assert torch.equal(wp.grad, torch.zeros_like(wp))


def test_nan_and_inf_propagate_like_conv2d():
    import torch.nn.functional as F

    x = torch.randn(1, 4, 8, 8)
    x[0, 1, 3, 3] = float("nan")
    x[0, 2, 5, 6] = float("inf")
    w = torch.rand(4, 1, 3, 3) + 0.1
    y = ops.depthwise_conv2d(x, w, None, 1, 1)
    ref = F.conv2d(x, w, None, 1, 1, groups=4)
    assert torch.equal(torch.isnan(y), torch.isnan(ref))
    assert torch.equal(torch.isinf(y), torch.isinf(ref))
    wp = torch.rand(3, 4, 1, 1) + 0.1
    y = ops.pointwise_conv2d(x, wp)
    ref = F.conv2d(x, wp)
    assert torch.equal(torch.isnan(y), torch.isnan(ref))
    assert torch.equal(torch.isinf(y), torch.isinf(ref))


def test_threads_scale_and_agree():
    """Results do not depend on torch.set_num_threads (our kernels split
    independent units; reductions have a fixed order)."""
    old = torch.get_num_threads()
    x = torch.randn(2, 32, 20, 20, requires_grad=True)
    w = torch.randn(32, 1, 3, 3, requires_grad=True)
    outs = []
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            y = ops.depthwise_conv2d(x, w, None, 1, 1)
            gx, gw = torch.autograd.grad(y.square().sum(), [x, w])
            outs.append((y, gx, gw))
    finally:
        torch.set_num_threads(old)
    for a, b in zip(outs[0], outs[1]):
        assert torch.equal(a, b)


# The specialised forward kernels (NCHW: 8-channel c8 blocks on AVX2, the row
# ring on NEON; NHWC: 8-pixel groups) take square 3x3/5x5/7x7, stride 1/2,
# dilation 1: widths below, at and past their 8/16/32-column steps, every
# padding 0..k-1, channel counts that are and are not multiples of 8, every
# fused activation.
_ACTS = {
    None: lambda t: t,
    "relu": torch.relu,
    "relu6": lambda t: t.clamp(0, 6),
    "hardswish": torch.nn.functional.hardswish,
}


def _specialised_forward_grid():
    cases, i = [], 0
    for k, s, layout in itertools.product([3, 5, 7], [1, 2], ["nchw", "nhwc"]):
        for p in range(k):
            for W in (k - p if k - p > 0 else 1, 9, 20, 37, 71):
                H = [k + 2, 11, 16][i % 3]
                if W + 2 * p < k or H + 2 * p < k:
                    i += 1
                    continue
                cases.append(dict(k=k, s=s, p=p, H=H, W=W, N=1 + i % 2, C=[8, 24, 12][i % 3],
                                  act=list(_ACTS)[i % 4], layout=layout))
                i += 1
    return cases


@pytest.mark.parametrize(
    "case", _specialised_forward_grid(),
    ids=lambda c: "k{k}-s{s}-p{p}-{N}x{C}x{H}x{W}-{act}-{layout}".format(**c))
def test_depthwise_specialised_forward(case):
    g = torch.Generator().manual_seed(2)
    x = make_layout(4 * torch.randn(case["N"], case["C"], case["H"], case["W"], generator=g), case["layout"])
    w = torch.randn(case["C"], 1, case["k"], case["k"], generator=g)
    b = torch.randn(case["C"], generator=g)
    ref = _ACTS[case["act"]](conv_reference(x, w, b, case["s"], case["p"], 1, groups=case["C"]))
    y = ops.depthwise_conv2d_fused(x, w, b, case["s"], case["p"], 1, activation=case["act"])
    assert_close(y, ref, torch.float32, "fused forward")
    y = ops.depthwise_conv2d(x, w, None, case["s"], case["p"], 1)
    assert_close(y, conv_reference(x, w, None, case["s"], case["p"], 1, groups=case["C"]), torch.float32, "forward")


@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("c", [16, 20, 3])
def test_depthwise_grad_weight_channels_last_rows(k, stride, c):
    # the channels_last weight gradient's row kernel (3x3 any width, 5x5 /
    # 7x7 on rows of 28 pixels and more; csrc/cpu/generic/depthwise_nhwc.h)
    # and the per-tap column sums it leaves the channel tail and narrow rows
    # to, against the float64 reference: border columns, padding wider than
    # the taps reach, odd widths, several batches and row chunks
    ops = torch.ops.mobilenet_ext
    torch.manual_seed(k * 100 + stride * 10 + c)
    for h, w, p in ((9, 28, k // 2), (6, 31, k // 2 + 1), (5, 13, 0), (40, 30, k // 2)):
        oh, ow = (h + 2 * p - k) // stride + 1, (w + 2 * p - k) // stride + 1
        if oh < 1 or ow < 1:
            continue
        x = torch.randn(3, c, h, w).contiguous(memory_format=torch.channels_last)
        g = torch.randn(3, c, oh, ow).contiguous(memory_format=torch.channels_last)
        wt = torch.randn(c, 1, k, k)
        got = ops.depthwise_conv2d_backward_weight(g, x, wt, [stride, stride], [p, p], [1, 1])
        want = torch.nn.grad.conv2d_weight(x.double(), wt.shape, g.double(), stride=stride, padding=p, groups=c)
        # each element sums 3 * oh * ow float32 products: bound by the sum of |g x|
        bound = 4 * 3 * oh * ow * 2 ** -24 * torch.nn.grad.conv2d_weight(
            x.double().abs(), wt.shape, g.double().abs(), stride=stride, padding=p, groups=c) + 1e-30
        assert ((got.double() - want).abs() <= bound).all(), (h, w, p)


@pytest.mark.parametrize("kind", ["dw3x3s1", "dw5x5s2", "pw_nhwc", "pw_nchw"])
def test_training_forward_streams_same_bits(kind):
    """Outputs of 4 MiB and more are written with non-temporal stores when the
    input requires grad (training: pointwise GEMMs, channels_last depthwise
    rows) and grad_input always: the same values as the plain stores of
    inference, and as F.conv2d in float64 within the rounding bound."""
    g = torch.Generator().manual_seed(7)
    if kind.startswith("dw"):
        k, s = (3, 1) if kind == "dw3x3s1" else (5, 2)
        x = torch.randn(2, 64, 96 * s, 96 * s, generator=g).contiguous(memory_format=torch.channels_last)
        w = torch.randn(64, 1, k, k, generator=g)
        f = lambda t: ops.depthwise_conv2d(t, w, None, s, k // 2, 1)  # noqa: E731
        ref = lambda t: conv_reference(t, w, None, s, k // 2, 1, 64)  # noqa: E731
    else:
        x = torch.randn(2, 32, 96, 96, generator=g)
        if kind == "pw_nhwc":
            x = x.contiguous(memory_format=torch.channels_last)
        w = torch.randn(80, 32, 1, 1, generator=g)
        f = lambda t: ops.pointwise_conv2d(t, w, None)  # noqa: E731
        ref = lambda t: conv_reference(t, w, None, 1, 0, 1, 1)  # noqa: E731
    with torch.no_grad():
        y0 = f(x)
    xr = x.clone().requires_grad_(True)
    y1 = f(xr)
    assert y1.numel() * 4 >= 4 << 20
    assert torch.equal(y0, y1.detach())
    assert_close(y1, ref(x), torch.float32, kind)
    gy = torch.randn(y1.shape, generator=g)
    (gx,) = torch.autograd.grad(y1, xr, gy)
    _, ref_gx, _, _ = conv_reference(x, w, None, *((s, k // 2, 1, 64) if kind.startswith("dw") else (1, 0, 1, 1)), grad_out=gy)
    assert_close(gx, ref_gx, torch.float32, f"{kind} grad_input")
