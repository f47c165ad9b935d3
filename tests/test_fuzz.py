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
