"""Property-based (hypothesis) tests of the mobilenet_ext ops.

Every example draws a random *valid* configuration (batch 0..3, channel
counts including 1, primes and 8/16-block edges, odd/even non-square kernels,
stride, per-axis padding, dilation, channel multiplier, bias on/off, float32
or float64, and a memory layout for the input and for the incoming gradient:
NCHW, channels_last, or a non-contiguous / storage-offset view) and compares
the op's forward and every gradient (input, weight, bias) with ``F.conv2d``
computed in float64 on the same values.

Tolerance: the op and the reference see exactly the same (rounded) inputs, so
the only difference is rounding in the sums of products. For a sum of K
products, in any order, ``|fl(sum) - sum| <= K * u * sum|a_i * b_i|``
(Higham, Accuracy and Stability of Numerical Algorithms, 3.1; u = 2^-24 for
float32, 2^-53 for float64), whatever the blocking, vectorisation or thread
split. ``sum|a_i * b_i|`` is computed exactly for every output element by
running the float64 reference on ``|x|, |w|, |b|, |grad|``. We check every
element against ``2 * (K + 2) * u * abs_ref`` (2x margin; the float64
reference's own error is of the same order for float64), with K the largest
number of terms of any output of the config. This is a worst-case bound, so
it never flakes, yet it is elementwise and so stricter than "1e-4 of the
output's scale" (for K <= 1200 it is <= 1.5e-4 of sum|a_i b_i| in float32 and
~3e-13 in float64, far below the 1e-10 a float64 kernel could hide a bug in).

Malformed inputs are drawn the same way (one defect per example) and must
raise ValueError/RuntimeError/TypeError naming the offending argument; a
batch of them, plus absurd integer arguments, is replayed in a subprocess to
prove that nothing crashes the interpreter. NaN/Inf inputs must give the
same NaN/Inf masks as ``F.conv2d``.

Profiles are in tests/conftest.py (``HYPOTHESIS_PROFILE=long`` for
thousands of examples per property).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, note, strategies as st  # noqa: E402

import mobilenet_ext as mx  # noqa: E402

ops = mx.ops
raw = torch.ops.mobilenet_ext

DTYPES = [torch.float32, torch.float64]
UNIT = {torch.float32: 2.0 ** -24, torch.float64: 2.0 ** -53}
CHANNELS = [1, 2, 3, 4, 5, 7, 8, 9, 11, 13, 15, 16, 17, 23, 24, 31, 32, 33]
LAYOUTS = ["nchw", "nhwc", "strided", "offset", "chan_slice", "nhwc_chan_slice", "permuted"]
ACTS = [None, "relu", "relu6", "hardswish"]
ACT_FN = {None: lambda t: t, "relu": F.relu, "relu6": F.relu6, "hardswish": F.hardswish}


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------
def as_layout(x: torch.Tensor, kind: str) -> torch.Tensor:
    """x (4-D) with the same values laid out as `kind`."""
    n, c, h, w = x.shape
    if kind == "nchw":
        return x.contiguous()
    if kind == "nhwc":
        return x.contiguous(memory_format=torch.channels_last)
    if kind == "strided":  # innermost stride 2
        big = torch.zeros(n, c, h, 2 * w, dtype=x.dtype)
        big[..., ::2] = x
        return big[..., ::2]
    if kind == "offset":  # NCHW-contiguous but with a storage offset
        flat = torch.zeros(x.numel() + 3, dtype=x.dtype)
        v = flat[3:].view(n, c, h, w)
        v.copy_(x)
        return v
    if kind == "chan_slice":  # NCHW tensor with extra channels, sliced
        big = torch.zeros(n, c + 3, h, w, dtype=x.dtype)
        big[:, 1:1 + c] = x
        return big[:, 1:1 + c]
    if kind == "nhwc_chan_slice":  # channels_last tensor with extra channels, sliced
        big = torch.zeros(n, c + 3, h, w, dtype=x.dtype).contiguous(memory_format=torch.channels_last)
        big[:, 2:2 + c] = x
        return big[:, 2:2 + c]
    if kind == "permuted":  # stored as [N, C, W, H]
        return x.transpose(2, 3).contiguous().transpose(2, 3)
    raise ValueError(kind)


def expected_format(x: torch.Tensor) -> torch.memory_format:
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def rand(gen, shape, dtype, scale=1.0):
    return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)


def check_close(got, ref, absref, dtype, K, what, slack=1.0):
    """|got - ref| <= 2 (K + 2) u |.|-reference elementwise (see module doc)."""
    assert got.shape == ref.shape, f"{what}: shape {tuple(got.shape)} != {tuple(ref.shape)}"
    assert got.dtype == dtype, f"{what}: dtype {got.dtype} != {dtype}"
    if ref.numel() == 0:
        return
    g = got.detach().to(torch.float64)
    tol = slack * 2.0 * (K + 2) * UNIT[dtype] * absref + 1e-300
    err = (g - ref).abs()
    bad = ~(err <= tol)
    if bad.any():
        idx = tuple(int(i) for i in bad.nonzero()[0])
        ratio = (err / tol).max().item()
        raise AssertionError(
            f"{what}: {int(bad.sum())}/{ref.numel()} elements out of tolerance, first at {idx}: "
            f"got {g[idx].item()!r}, ref {ref[idx].item()!r}, tol {tol[idx].item():.3g} "
            f"(max err/tol {ratio:.3g}, K={K}, dtype={dtype})"
        )


def reference(x, w, b, stride, padding, dilation, groups, g=None):
    """F.conv2d in float64 (+ grads for grad_output g)."""
    x64 = x.detach().to(torch.float64).requires_grad_(g is not None)
    w64 = w.detach().to(torch.float64).requires_grad_(g is not None)
    b64 = None if b is None else b.detach().to(torch.float64).requires_grad_(g is not None)
    y = F.conv2d(x64, w64, b64, stride, padding, dilation, groups)
    if g is None:
        return y.detach(), None, None, None
    ins = [x64, w64] + ([b64] if b64 is not None else [])
    gr = torch.autograd.grad(y, ins, g.detach().to(torch.float64))
    return y.detach(), gr[0], gr[1], (gr[2] if b is not None else None)


def abs_reference(x, w, b, stride, padding, dilation, groups, g=None):
    """Per-element sum of |terms| of every output (the error-bound scale)."""
    return reference(x.abs(), w.abs(), None if b is None else b.abs(), stride, padding, dilation, groups,
                     None if g is None else g.abs())


# --------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------
@st.composite
def dw_configs(draw):
    kh, kw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, kh)), draw(st.integers(0, kw))
    effh, effw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    lo_h, lo_w = max(1, effh - 2 * ph), max(1, effw - 2 * pw)
    h = draw(st.integers(lo_h, max(lo_h, 20)))
    w = draw(st.integers(lo_w, max(lo_w, 20)))
    return dict(
        n=draw(st.integers(0, 3)), c=draw(st.sampled_from(CHANNELS)), m=draw(st.integers(1, 3)),
        h=h, w=w, kh=kh, kw=kw, stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw),
        bias=draw(st.booleans()), dtype=draw(st.sampled_from(DTYPES)),
        layout=draw(st.sampled_from(LAYOUTS)), glayout=draw(st.sampled_from(["nchw", "nhwc", "strided"])),
        wlayout=draw(st.sampled_from(["contig", "strided"])),
        scale=draw(st.sampled_from([1.0, 1.0, 1e-3, 1e3])), seed=draw(st.integers(0, 2 ** 31 - 1)),
    )


@st.composite
def pw_configs(draw):
    # at most one dimension crosses the GEMM's cache blocks (KC=512, MC=144,
    # NC=1024) so that an example stays cheap
    big = draw(st.sampled_from([None, None, None, "cin", "cout", "hw"]))
    cin = draw(st.sampled_from([511, 512, 513, 530])) if big == "cin" else draw(st.integers(1, 40))
    cout = draw(st.sampled_from([143, 144, 145, 151])) if big == "cout" else draw(st.integers(1, 40))
    if big == "hw":
        h, w = draw(st.sampled_from([(33, 32), (32, 33), (35, 31)]))
    else:
        h, w = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    return dict(
        n=draw(st.integers(0, 3)) if big is None else draw(st.integers(0, 2)), cin=cin, cout=cout, h=h, w=w,
        bias=draw(st.booleans()), dtype=draw(st.sampled_from(DTYPES)),
        layout=draw(st.sampled_from(LAYOUTS)), glayout=draw(st.sampled_from(["nchw", "nhwc", "strided"])),
        wlayout=draw(st.sampled_from(["contig", "strided"])),
        scale=draw(st.sampled_from([1.0, 1.0, 1e-3, 1e3])), seed=draw(st.integers(0, 2 ** 31 - 1)),
    )


def weight_view(wt: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "contig":
        return wt.contiguous()
    return as_layout(wt, "strided")


def dw_tensors(cfg):
    gen = torch.Generator().manual_seed(cfg["seed"])
    dt, s = cfg["dtype"], cfg["scale"]
    x = as_layout(rand(gen, (cfg["n"], cfg["c"], cfg["h"], cfg["w"]), dt, s), cfg["layout"])
    wt = weight_view(rand(gen, (cfg["c"] * cfg["m"], 1, cfg["kh"], cfg["kw"]), dt), cfg["wlayout"])
    b = rand(gen, (cfg["c"] * cfg["m"],), dt, s) if cfg["bias"] else None
    return gen, x, wt, b


def pw_tensors(cfg):
    gen = torch.Generator().manual_seed(cfg["seed"])
    dt, s = cfg["dtype"], cfg["scale"]
    x = as_layout(rand(gen, (cfg["n"], cfg["cin"], cfg["h"], cfg["w"]), dt, s), cfg["layout"])
    wt = weight_view(rand(gen, (cfg["cout"], cfg["cin"], 1, 1), dt), cfg["wlayout"])
    b = rand(gen, (cfg["cout"],), dt, s) if cfg["bias"] else None
    return gen, x, wt, b


# --------------------------------------------------------------------------
# Forward and all gradients against F.conv2d in float64
# --------------------------------------------------------------------------
def _run_and_check(op, x, wt, b, conv_args, groups, gen, cfg, K_fwd, K_gi, K_gw):
    x0, w0, b0 = x.clone(), wt.clone(), None if b is None else b.clone()
    xl = x.detach().requires_grad_(True)  # keeps strides and storage offset
    wl = wt.detach().requires_grad_(True)
    bl = None if b is None else b.detach().requires_grad_(True)
    y = op(xl, wl, bl)
    assert y.is_contiguous(memory_format=expected_format(x)), (
        f"output strides {y.stride()} do not follow the input's memory format (input strides {x.stride()})")
    g = as_layout(rand(gen, tuple(y.shape), cfg["dtype"]), cfg["glayout"])
    y.backward(g)

    ref = reference(x, wt, b, *conv_args, groups, g)
    aref = abs_reference(x, wt, b, *conv_args, groups, g)
    dt = cfg["dtype"]
    check_close(y, ref[0], aref[0], dt, K_fwd, "forward")
    check_close(xl.grad, ref[1], aref[1], dt, K_gi, "grad_input")
    check_close(wl.grad, ref[2], aref[2], dt, K_gw, "grad_weight")
    if b is not None:
        check_close(bl.grad, ref[3], aref[3], dt, K_gw, "grad_bias")
    # the op must not write to its inputs
    assert torch.equal(x, x0) and torch.equal(wt, w0) and (b is None or torch.equal(b, b0)), "an input was modified"


@given(dw_configs())
def test_depthwise_fuzz_forward_backward(cfg):
    note(repr(cfg))
    gen, x, wt, b = dw_tensors(cfg)
    args = (cfg["stride"], cfg["padding"], cfg["dilation"])
    op = lambda xx, ww, bb: ops.depthwise_conv2d(xx, ww, bb, *args)  # noqa: E731
    oh = (cfg["h"] + 2 * args[1][0] - args[2][0] * (cfg["kh"] - 1) - 1) // args[0][0] + 1
    ow = (cfg["w"] + 2 * args[1][1] - args[2][1] * (cfg["kw"] - 1) - 1) // args[0][1] + 1
    kk = cfg["kh"] * cfg["kw"]
    _run_and_check(op, x, wt, b, args, cfg["c"], gen, cfg,
                   K_fwd=kk + 1, K_gi=cfg["m"] * kk, K_gw=max(1, cfg["n"] * oh * ow))


@given(pw_configs())
def test_pointwise_fuzz_forward_backward(cfg):
    note(repr(cfg))
    gen, x, wt, b = pw_tensors(cfg)
    _run_and_check(ops.pointwise_conv2d, x, wt, b, (1, 0, 1), 1, gen, cfg,
                   K_fwd=cfg["cin"] + 1, K_gi=cfg["cout"], K_gw=max(1, cfg["n"] * cfg["h"] * cfg["w"]))


# --------------------------------------------------------------------------
# Fused inference ops against F.conv2d + activation (+ residual)
# --------------------------------------------------------------------------
def _check_fused(y, x, ref, aref, dt, K, act, residual=None):
    """act is 1.5-Lipschitz (hardswish) and rounds once more; the residual add
    rounds once more."""
    r = ACT_FN[act](ref)
    # bound on |act(conv)| error: 1.5 * conv bound + a few ulps of the result
    a = 1.5 * aref + 2.0 * r.abs() / (K + 2)
    if residual is not None:
        res = residual.to(torch.float64)
        r = r + res
        a = a + (r.abs() + res.abs()) / (K + 2)
    assert y.is_contiguous(memory_format=expected_format(x))
    check_close(y, r, a, dt, K, f"fused {act}{' + residual' if residual is not None else ''}")


@given(dw_configs(), st.sampled_from(ACTS))
def test_depthwise_fused_fuzz(cfg, act):
    note(repr(cfg))
    gen, x, wt, b = dw_tensors(cfg)
    args = (cfg["stride"], cfg["padding"], cfg["dilation"])
    with torch.no_grad():
        y = ops.depthwise_conv2d_fused(x, wt, b, *args, activation=act)
    ref = reference(x, wt, b, *args, cfg["c"])[0]
    aref = abs_reference(x, wt, b, *args, cfg["c"])[0]
    _check_fused(y, x, ref, aref, cfg["dtype"], cfg["kh"] * cfg["kw"] + 1, act)


@given(pw_configs(), st.sampled_from(ACTS), st.sampled_from([None, "nchw", "nhwc", "strided"]))
def test_pointwise_fused_fuzz(cfg, act, res_layout):
    note(repr(cfg))
    gen, x, wt, b = pw_tensors(cfg)
    shape = (cfg["n"], cfg["cout"], cfg["h"], cfg["w"])
    residual = None if res_layout is None else as_layout(rand(gen, shape, cfg["dtype"], cfg["scale"]), res_layout)
    with torch.no_grad():
        y = ops.pointwise_conv2d_fused(x, wt, b, act, residual)
    ref = reference(x, wt, b, 1, 0, 1, 1)[0]
    aref = abs_reference(x, wt, b, 1, 0, 1, 1)[0]
    _check_fused(y, x, ref, aref, cfg["dtype"], cfg["cin"] + 1, act, residual)


# --------------------------------------------------------------------------
# NaN / Inf propagate as in F.conv2d
# --------------------------------------------------------------------------
def _poison(gen, t, count, layout="nchw"):
    """A copy of t with NaN, +Inf and -Inf at random places, laid out as `layout`."""
    t = t.contiguous().clone()
    if t.numel():
        flat = t.view(-1)
        vals = [float("nan"), float("inf"), -float("inf")]
        idx = torch.randint(0, t.numel(), (count,), generator=gen).tolist()
        kinds = torch.randint(0, 3, (count,), generator=gen).tolist()
        for i, k in zip(idx, kinds):
            flat[i] = vals[k]
    return as_layout(t, layout)


def _same_masks(got, ref, what):
    got = got.detach().to(torch.float64)
    assert torch.equal(torch.isnan(got), torch.isnan(ref)), f"{what}: NaN mask differs from F.conv2d"
    assert torch.equal(torch.isposinf(got), torch.isposinf(ref)), f"{what}: +Inf mask differs from F.conv2d"
    assert torch.equal(torch.isneginf(got), torch.isneginf(ref)), f"{what}: -Inf mask differs from F.conv2d"


@given(dw_configs(), st.integers(1, 6))
def test_depthwise_nan_inf_propagate(cfg, count):
    """Non-finite values in the input (forward, grad_weight) and in grad_output
    (grad_input) give the same NaN/+Inf/-Inf masks as F.conv2d. Weights stay
    finite and non-zero (randn), so no 0*Inf and the masks don't depend on
    the summation order."""
    note(repr(cfg))
    gen, x, wt, b = dw_tensors(cfg)
    x = _poison(gen, x, count, cfg["layout"])
    args = (cfg["stride"], cfg["padding"], cfg["dilation"])
    y = ops.depthwise_conv2d(x, wt, b, *args)
    ref = reference(x, wt, b, *args, cfg["c"])[0]
    _same_masks(y, ref, "forward")
    g = _poison(gen, rand(gen, tuple(y.shape), cfg["dtype"]), count)
    gw = raw.depthwise_conv2d_backward_weight(g.isfinite().to(g.dtype) + 0.5, x, wt, *map(list, args))
    gi = raw.depthwise_conv2d_backward_input(g, x.nan_to_num(0.0, 0.0, 0.0), wt, *map(list, args))
    _, ref_gi, _, _ = reference(x.nan_to_num(0.0, 0.0, 0.0), wt, None, *args, cfg["c"], g)
    _, _, ref_gw, _ = reference(x, wt, None, *args, cfg["c"], g.isfinite().to(g.dtype) + 0.5)
    _same_masks(gi, ref_gi, "grad_input")
    _same_masks(gw, ref_gw, "grad_weight")


@given(pw_configs(), st.integers(1, 6))
def test_pointwise_nan_inf_propagate(cfg, count):
    """As the depthwise test, for the pointwise GEMM (forward, fused forward,
    grad_input, grad_weight)."""
    note(repr(cfg))
    gen, x, wt, b = pw_tensors(cfg)
    x = _poison(gen, x, count, cfg["layout"])
    y = ops.pointwise_conv2d(x, wt, b)
    ref = reference(x, wt, b, 1, 0, 1, 1)[0]
    _same_masks(y, ref, "forward")
    _same_masks(ops.pointwise_conv2d_fused(x, wt, b, None, None), ref, "fused forward")
    g = _poison(gen, rand(gen, tuple(y.shape), cfg["dtype"]), count)
    g_pos = g.isfinite().to(g.dtype) + 0.5
    xf = x.nan_to_num(0.0, 0.0, 0.0)
    gi = raw.pointwise_conv2d_backward_input(g, xf, wt)
    gw = raw.pointwise_conv2d_backward_weight(g_pos, x, wt)
    _same_masks(gi, reference(xf, wt, None, 1, 0, 1, 1, g)[1], "grad_input")
    _same_masks(gw, reference(x, wt, None, 1, 0, 1, 1, g_pos)[2], "grad_weight")


def test_zero_size_spatial_with_padding_gives_bias():
    """H or W = 0 is accepted when padding makes the output non-empty (F.conv2d
    refuses such input): every tap lies in the zero padding, so the output is
    the bias and grad_weight is zero. Checks the kernels read nothing of the
    empty input."""
    for mf in (torch.contiguous_format, torch.channels_last):
        for shape, k, p in [((1, 2, 0, 5), 1, 1), ((2, 9, 5, 0), 3, 2), ((1, 16, 0, 9), (1, 3), (2, 1))]:
            x = torch.randn(*shape).contiguous(memory_format=mf).requires_grad_(True)
            kh, kw = (k, k) if isinstance(k, int) else k
            w = torch.randn(shape[1], 1, kh, kw, requires_grad=True)
            b = torch.randn(shape[1])
            y = ops.depthwise_conv2d(x, w, b, padding=p)
            assert y.numel() > 0 and torch.equal(y, b.view(1, -1, 1, 1).expand_as(y))
            y.backward(torch.randn_like(y))
            assert x.grad.shape == x.shape and bool((w.grad == 0).all())
            yf = ops.depthwise_conv2d_fused(x.detach(), w.detach(), b, padding=p, activation="relu")
            assert torch.equal(yf, b.relu().view(1, -1, 1, 1).expand_as(yf))


# --------------------------------------------------------------------------
# Malformed inputs: one defect per example; must raise naming the argument
# --------------------------------------------------------------------------
BAD_DTYPES = [torch.int32, torch.int64, torch.uint8, torch.bool, torch.complex64, torch.float16, torch.bfloat16]
ERRORS = (ValueError, RuntimeError, TypeError)

DW_DEFECTS = [
    "input_ndim", "input_dtype", "weight_dtype", "bias_dtype", "weight_not_dw", "weight_channels", "weight_ndim",
    "weight_zero_kernel", "bias_size", "bias_ndim", "stride_lt1", "dilation_lt1", "padding_neg", "output_small",
    "zero_channels", "pair_len_raw", "pair_len_py", "pair_type", "grad_output_shape", "grad_output_dtype",
    "activation",
]
PW_DEFECTS = [
    "input_ndim", "input_dtype", "weight_dtype", "bias_dtype", "weight_not_1x1", "weight_ndim", "cin_mismatch",
    "bias_size", "bias_ndim", "zero_channels", "zero_spatial", "residual_shape", "residual_dtype",
    "grad_output_shape", "grad_output_dtype", "activation",
]


def _other_dtype(draw, dt):
    return draw(st.sampled_from([d for d in [torch.float32, torch.float64, torch.float16] if d != dt]))


def _dw_call(variant, x, w, b, stride, padding, dilation, g, act=0):
    if variant == "forward":
        return lambda: raw.depthwise_conv2d(x, w, b, stride, padding, dilation)
    if variant == "fused":
        return lambda: raw.depthwise_conv2d_fused(x, w, b, stride, padding, dilation, act)
    if variant == "backward_input":
        return lambda: raw.depthwise_conv2d_backward_input(g, x, w, stride, padding, dilation)
    return lambda: raw.depthwise_conv2d_backward_weight(g, x, w, stride, padding, dilation)


@st.composite
def bad_depthwise_calls(draw):
    defect = draw(st.sampled_from(DW_DEFECTS))
    n, c, m = draw(st.integers(0, 2)), draw(st.integers(1, 9)), draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    h, w_ = draw(st.integers(kh, 9)), draw(st.integers(kw, 9))
    dt = draw(st.sampled_from(DTYPES))
    stride, padding, dilation = [1, 1], [0, 0], [1, 1]
    x = torch.randn(n, c, h, w_, dtype=dt)
    if draw(st.booleans()):
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(c * m, 1, kh, kw, dtype=dt)
    b = torch.randn(c * m, dtype=dt) if draw(st.booleans()) else None
    variants = ["forward", "fused", "backward_input", "backward_weight"]
    if defect in ("bias_dtype", "bias_size", "bias_ndim"):
        b = torch.randn(c * m, dtype=dt)
        variants = ["forward", "fused"]
    elif defect in ("grad_output_shape", "grad_output_dtype"):
        variants = ["backward_input", "backward_weight"]
    elif defect == "activation":
        variants = ["fused"]
    variant = draw(st.sampled_from(variants))
    g_shape = [n, c * m, h - kh + 1, w_ - kw + 1]
    g_dt = dt
    act = draw(st.integers(0, 3))
    name = defect.split("_")[0]
    if defect == "input_ndim":
        x = torch.randn(*([2, c, h, w_, 2][: draw(st.sampled_from([1, 2, 3, 5]))]), dtype=dt)
    elif defect == "input_dtype":
        bad = draw(st.sampled_from(BAD_DTYPES))
        x, w = x.to(bad), w.to(bad)
        b = None if b is None else b.to(bad)
        g_dt = bad
    elif defect == "weight_dtype":
        w = w.to(_other_dtype(draw, dt))
    elif defect == "bias_dtype":
        b = b.to(_other_dtype(draw, dt))
    elif defect == "weight_not_dw":
        w = torch.randn(c * m, draw(st.integers(2, 3)), kh, kw, dtype=dt)
    elif defect == "weight_channels":
        c2 = max(c, 2)
        x = torch.randn(n, c2, h, w_, dtype=dt)
        w = torch.randn(c2 * m + draw(st.integers(1, c2 - 1)), 1, kh, kw, dtype=dt)
        b = None
    elif defect == "weight_ndim":
        w = w.reshape(c * m, kh, kw) if draw(st.booleans()) else w.unsqueeze(0)
    elif defect == "weight_zero_kernel":
        w = torch.randn(c * m, 1, 0, kw, dtype=dt) if draw(st.booleans()) else torch.randn(c * m, 1, kh, 0, dtype=dt)
        name = "kernel size"
    elif defect == "bias_size":
        b = torch.randn(c * m + draw(st.sampled_from([-1, 1, 5])), dtype=dt)
    elif defect == "bias_ndim":
        b = b.view(1, -1) if draw(st.booleans()) else b.view(-1, 1)
    elif defect in ("stride_lt1", "dilation_lt1", "padding_neg"):
        lst = {"stride": stride, "dilation": dilation, "padding": padding}[name]
        bad = draw(st.sampled_from([-1, -7, -(2 ** 40)] + ([0] if name != "padding" else [])))
        lst[draw(st.integers(0, 1))] = bad
    elif defect == "output_small":
        kh, kw = max(kh, 2), max(kw, 2)
        dilation = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
        effh, effw = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
        if draw(st.booleans()):
            h = draw(st.integers(1, effh - 1))
        else:
            w_ = draw(st.integers(1, effw - 1))
        x = torch.randn(n, c, h, w_, dtype=dt)
        w = torch.randn(c * m, 1, kh, kw, dtype=dt)
        b, g_shape = None, [n, c * m, 1, 1]
        name = "output size"
    elif defect == "zero_channels":
        x = torch.randn(n, 0, h, w_, dtype=dt)
        w = torch.randn(draw(st.sampled_from([0, m])), 1, kh, kw, dtype=dt)
        b, name = None, "channel"
    elif defect == "pair_len_raw":
        which = draw(st.sampled_from(["stride", "padding", "dilation"]))
        bad = draw(st.sampled_from([[], [1], [1, 1, 1]]))
        stride, padding, dilation = [bad if which == k else v for k, v in
                                     [("stride", stride), ("padding", padding), ("dilation", dilation)]]
        name = which
    elif defect in ("pair_len_py", "pair_type"):
        which = draw(st.sampled_from(["stride", "padding", "dilation"]))
        bad = draw(st.sampled_from([(), (1, 1, 1), [2, 2, 2, 2]] if defect == "pair_len_py"
                                   else [1.5, "2", None, (1.0, 1), (True, 1), True, [1, "a"]]))
        fn = ops.depthwise_conv2d_fused if variant == "fused" else ops.depthwise_conv2d
        return (lambda: fn(x, w, b, **{which: bad})), which, (defect, which, bad)
    elif defect == "grad_output_shape":
        i = draw(st.integers(0, 3))
        g_shape = list(g_shape)
        g_shape[i] += draw(st.sampled_from([1, 2]))
        name = "grad_output"
    elif defect == "grad_output_dtype":
        g_dt = _other_dtype(draw, dt)
        name = "grad_output"
    elif defect == "activation":
        act = draw(st.sampled_from([-1, 4, 5, 100, -(2 ** 40)]))
    g = torch.randn(*g_shape, dtype=torch.float64).to(g_dt) if g_dt.is_floating_point else torch.zeros(*g_shape, dtype=g_dt)
    return _dw_call(variant, x, w, b, stride, padding, dilation, g, act), name, (defect, variant)


@st.composite
def bad_pointwise_calls(draw):
    defect = draw(st.sampled_from(PW_DEFECTS))
    n, cin, cout = draw(st.integers(0, 2)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    h, w_ = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    dt = draw(st.sampled_from(DTYPES))
    x = torch.randn(n, cin, h, w_, dtype=dt)
    if draw(st.booleans()):
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(cout, cin, 1, 1, dtype=dt)
    b = torch.randn(cout, dtype=dt) if draw(st.booleans()) else None
    res = None
    g_shape, g_dt, act = [n, cout, h, w_], dt, draw(st.integers(0, 3))
    variants = ["forward", "fused", "backward_input", "backward_weight"]
    if defect.startswith("bias"):
        b = torch.randn(cout, dtype=dt)
        variants = ["forward", "fused"]
    elif defect.startswith("residual") or defect == "activation":
        variants = ["fused"]
    elif defect.startswith("grad_output"):
        variants = ["backward_input", "backward_weight"]
    variant = draw(st.sampled_from(variants))
    name = defect.split("_")[0]
    if defect == "input_ndim":
        x = torch.randn(*([2, cin, h, w_, 2][: draw(st.sampled_from([1, 2, 3, 5]))]), dtype=dt)
    elif defect == "input_dtype":
        bad = draw(st.sampled_from(BAD_DTYPES))
        x, w, g_dt = x.to(bad), w.to(bad), bad
        b = None if b is None else b.to(bad)
    elif defect == "weight_dtype":
        w = w.to(_other_dtype(draw, dt))
    elif defect == "bias_dtype":
        b = b.to(_other_dtype(draw, dt))
    elif defect == "weight_not_1x1":
        w = torch.randn(cout, cin, draw(st.integers(1, 3)), draw(st.integers(2, 3)), dtype=dt)
        if draw(st.booleans()):
            w = w.transpose(2, 3)
    elif defect == "weight_ndim":
        w = w.view(cout, cin) if draw(st.booleans()) else w.view(cout, cin, 1)
    elif defect == "cin_mismatch":
        w = torch.randn(cout, cin + draw(st.sampled_from([1, 3])), 1, 1, dtype=dt)
        name = "weight has"
    elif defect == "bias_size":
        b = torch.randn(cout + draw(st.sampled_from([-1, 1, 4])), dtype=dt)
    elif defect == "bias_ndim":
        b = b.view(1, -1)
    elif defect == "zero_channels":
        x = torch.randn(n, 0, h, w_, dtype=dt)
        w = torch.randn(cout, 0, 1, 1, dtype=dt)
        name = "channel"
    elif defect == "zero_spatial":
        h, w_ = draw(st.sampled_from([(0, w_), (h, 0), (0, 0)]))
        x = torch.randn(n, cin, h, w_, dtype=dt)
        g_shape = [n, cout, h, w_]
        name = "output size"
    elif defect == "residual_shape":
        shp = [n, cout, h, w_]
        shp[draw(st.integers(0, 3))] += 1
        res = torch.randn(*shp, dtype=dt)
    elif defect == "residual_dtype":
        res = torch.randn(n, cout, h, w_, dtype=_other_dtype(draw, dt))
    elif defect == "grad_output_shape":
        g_shape[draw(st.integers(0, 3))] += 1
        name = "grad_output"
    elif defect == "grad_output_dtype":
        g_dt, name = _other_dtype(draw, dt), "grad_output"
    elif defect == "activation":
        act = draw(st.sampled_from([-1, 4, 7, 2 ** 33]))
    g = torch.randn(*g_shape, dtype=torch.float64).to(g_dt) if g_dt.is_floating_point else torch.zeros(*g_shape, dtype=g_dt)
    call = {
        "forward": lambda: raw.pointwise_conv2d(x, w, b),
        "fused": lambda: raw.pointwise_conv2d_fused(x, w, b, act, res),
        "backward_input": lambda: raw.pointwise_conv2d_backward_input(g, x, w),
        "backward_weight": lambda: raw.pointwise_conv2d_backward_weight(g, x, w),
    }[variant]
    return call, name, (defect, variant)


def _expect_named_error(call, name, what):
    note(repr(what))
    with pytest.raises(ERRORS) as ei:
        call()
    msg = str(ei.value)
    assert name in msg, f"{what}: error does not name {name!r}: {type(ei.value).__name__}: {msg}"


@given(bad_depthwise_calls())
def test_depthwise_malformed_raises_naming_argument(case):
    _expect_named_error(*case)


@given(bad_pointwise_calls())
def test_pointwise_malformed_raises_naming_argument(case):
    _expect_named_error(*case)


# --------------------------------------------------------------------------
# Never a crash: a seeded batch of malformed and absurd calls in a subprocess
# --------------------------------------------------------------------------
_CRASH_SCRIPT = textwrap.dedent(r"""
    import random, sys, torch
    import mobilenet_ext  # noqa: F401  (loads the ops)
    raw = torch.ops.mobilenet_ext
    rng = random.Random(int(sys.argv[1]))
    torch.manual_seed(int(sys.argv[1]))
    # absurd values that can never lead to a real allocation (they either
    # overflow int64 in the size computation or give a small output)
    BIG_SD = [2**31 - 1, 2**31, 2**32 + 1, 2**62, 2**62 + 2**61, 2**63 - 1, -2**63, -2**31, -1, 0]
    BIG_P = [2**62, 2**63 - 1, -2**63, -2**31, -1]
    DT = [torch.float16, torch.bfloat16, torch.int32, torch.int64, torch.complex64, torch.bool, torch.float64]
    def r(lo, hi): return rng.randint(lo, hi)
    def to(t, dt): return t.to(dt) if (dt.is_floating_point or dt.is_complex) else torch.zeros(t.shape, dtype=dt)
    def relayout(t):
        k = rng.random()
        if t.dim() == 4 and k < 0.3: return t.contiguous(memory_format=torch.channels_last)
        if t.dim() >= 1 and k < 0.4 and t.shape[-1] > 0:
            big = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype); big[..., ::2] = t; return big[..., ::2]
        return t
    outcomes = {}
    for i in range(int(sys.argv[2])):
        dw = rng.random() < 0.55
        dt = rng.choice([torch.float32, torch.float64])
        n, c = r(0, 3), r(1, 17)
        if dw:
            m, kh, kw = r(1, 3), r(1, 5), r(1, 5)
            h, w_ = r(kh, 12), r(kw, 12)
            x, w = torch.randn(n, c, h, w_, dtype=dt), torch.randn(c * m, 1, kh, kw, dtype=dt)
            cout, oh, ow = c * m, h - kh + 1, w_ - kw + 1
        else:
            cout, h, w_ = r(1, 20), r(1, 9), r(1, 9)
            x, w = torch.randn(n, c, h, w_, dtype=dt), torch.randn(cout, c, 1, 1, dtype=dt)
            oh, ow = h, w_
        b = torch.randn(cout, dtype=dt) if rng.random() < 0.5 else None
        g = torch.randn(n, cout, oh, ow, dtype=dt)
        res = torch.randn(n, cout, oh, ow, dtype=dt) if rng.random() < 0.5 else None
        s, p, d, act = [1, 1], [0, 0], [1, 1], r(0, 3)
        muts = []
        for _ in range(rng.choice([0, 1, 1, 1, 2])):
            k = rng.choice(["sd", "sd", "p", "len", "dtype", "ndim", "shape", "zero", "act", "layout"])
            muts.append(k)
            if k == "sd":
                lst = rng.choice([s, d])
                if len(lst) == 2: lst[r(0, 1)] = rng.choice(BIG_SD)
            elif k == "p":
                if len(p) == 2: p[r(0, 1)] = rng.choice(BIG_P)
            elif k == "len":
                L = rng.choice([0, 1, 3]); v = [r(1, 2)] * L
                if rng.random() < 0.5: s = v
                elif rng.random() < 0.5: p = [0] * L
                else: d = v
            elif k == "dtype":
                which, ndt = r(0, 4), rng.choice(DT)
                if which == 0: x = to(x, ndt)
                elif which == 1: w = to(w, ndt)
                elif which == 2 and b is not None: b = to(b, ndt)
                elif which == 3: g = to(g, ndt)
                else: x, w, g = to(x, ndt), to(w, ndt), to(g, ndt)
            elif k == "ndim":
                t = rng.choice(["x", "w", "b", "g"])
                shp = [r(0, 4) for _ in range(rng.choice([0, 1, 2, 3, 5]))]
                new = torch.randn(shp, dtype=dt)
                if t == "x": x = new
                elif t == "w": w = new
                elif t == "b": b = new
                else: g = new
            elif k == "shape":
                t = rng.choice(["x", "w", "b", "g", "res"])
                shp = [r(0, 6) for _ in range(4 if t != "b" else 1)]
                new = torch.randn(shp, dtype=dt)
                if t == "x": x = new
                elif t == "w": w = new
                elif t == "b": b = new
                elif t == "g": g = new
                else: res = new
            elif k == "zero":
                t = rng.choice(["x", "w", "g"]); tt = {"x": x, "w": w, "g": g}[t]
                if tt.dim():
                    shp = list(tt.shape); shp[r(0, tt.dim() - 1)] = 0
                    new = torch.zeros(shp, dtype=tt.dtype)
                    if t == "x": x = new
                    elif t == "w": w = new
                    else: g = new
            elif k == "act": act = rng.choice([-1, 4, 2**40, -2**63])
            else:
                x, w, g = relayout(x), relayout(w), relayout(g)
                if res is not None: res = relayout(res)
        op = rng.choice(["fwd", "fused", "bi", "bw"])
        try:
            if dw:
                if op == "fwd": raw.depthwise_conv2d(x, w, b, s, p, d)
                elif op == "fused": raw.depthwise_conv2d_fused(x, w, b, s, p, d, act)
                elif op == "bi": raw.depthwise_conv2d_backward_input(g, x, w, s, p, d)
                else: raw.depthwise_conv2d_backward_weight(g, x, w, s, p, d)
            else:
                if op == "fwd": raw.pointwise_conv2d(x, w, b)
                elif op == "fused": raw.pointwise_conv2d_fused(x, w, b, act, res)
                elif op == "bi": raw.pointwise_conv2d_backward_input(g, x, w)
                else: raw.pointwise_conv2d_backward_weight(g, x, w)
            key = "returned"
        except (ValueError, RuntimeError, TypeError, IndexError, OverflowError) as e:
            key = type(e).__name__
        outcomes[key] = outcomes.get(key, 0) + 1
    print("DONE", outcomes)
""")



@pytest.mark.parametrize("seed", [0, 1])
def test_malformed_batch_never_crashes(seed):
    """300 random calls per seed (MNX_CRASH_BATCH to change), each a valid
    depthwise/pointwise forward, fused or backward call with 0-2 mutations
    (wrong dtype/ndim/shape/zero-size dims, other layouts, absurd
    stride/padding/dilation such as 2^63-1 or -2^63, wrong pair lengths, bad
    activation codes) in a child interpreter: it must finish with exit code
    0, i.e. every call raised a Python exception or returned; none aborted
    or segfaulted. (Replay one locally with
    ``python -c "$SCRIPT" <seed> <count>``.)"""
    n = int(os.environ.get("MNX_CRASH_BATCH", "300"))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _CRASH_SCRIPT, str(seed), str(n)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0 and "DONE" in proc.stdout, (
        f"child died with return code {proc.returncode} (negative = signal)\nstdout: {proc.stdout[-2000:]}\n"
        f"stderr: {proc.stderr[-4000:]}")


# check_pair in csrc/glue/common.cpp bounds stride, padding and dilation by
# 2^31: dilation * (k - 1) + 1 used to wrap in int64 for dilation = 2^63 - 1
# (found by this test; F.conv2d has the same overflow).
def test_dilation_overflow_is_rejected():
    x, w = torch.randn(1, 2, 8, 8), torch.randn(2, 1, 3, 3)
    for call in (lambda: ops.depthwise_conv2d(x, w, dilation=2 ** 63 - 1),
                 lambda: ops.depthwise_conv2d(x, w, dilation=(1, 2 ** 63 - 1))):
        try:
            y = call()
        except (ValueError, RuntimeError):
            continue
        raise AssertionError(f"accepted, returned shape {tuple(y.shape)}")
