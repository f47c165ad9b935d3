"""64-bit indexing: tensors with more than 2^31 elements on CPU.

Each test allocates one float32 input of ~2.15e9 elements (8.6 GB) plus a
small output (stride 2 or few output channels, so that input + output fit
in ~11 GB), runs the op, and checks slices at the *end* of the tensor (element
offsets > 2^31, where an int32 offset would have wrapped) and at the start
against F.conv2d on the corresponding input slice. Marked ``slow``
(``pytest -m slow tests/test_large.py``) and skipped when MemAvailable is
too small.
"""
from __future__ import annotations

import gc
import time

import pytest
import torch
import torch.nn.functional as F

import mobilenet_ext as mx

ops = mx.ops

pytestmark = pytest.mark.slow

GB = 1 << 30


def mem_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def need(nbytes: int) -> None:
    avail = mem_available()
    if avail < nbytes + 2 * GB:
        pytest.skip(f"needs {(nbytes + 2 * GB) / GB:.1f} GB free, MemAvailable is {avail / GB:.1f} GB")


@pytest.fixture(autouse=True)
def _free():
    yield
    gc.collect()


def big_input(shape, channels_last):
    n = 1
    for s in shape:
        n *= s
    assert n > 2 ** 31, shape
    x = torch.empty(shape, dtype=torch.float32,
                    memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    x.uniform_(-1.0, 1.0, generator=torch.Generator().manual_seed(0))
    return x


def conv_rows_ref(x, w, b, oh0, oh1, stride, pad, groups):
    """F.conv2d output rows [oh0, oh1) (all columns) from the input rows they
    read, padded by hand; 3x3-style kernels, dilation 1."""
    kh = w.shape[2]
    H = x.shape[2]
    lo, hi = oh0 * stride - pad, (oh1 - 1) * stride - pad + kh
    xs = x[:, :, max(lo, 0):min(hi, H)].contiguous().to(torch.float64)
    xs = F.pad(xs, (pad, pad, max(0, -lo), max(0, hi - H)))
    return F.conv2d(xs, w.to(torch.float64), None if b is None else b.to(torch.float64), stride=stride, groups=groups)


def _report(request, what, seconds):
    print(f"\n[{request.node.name}] {what}: {seconds:.1f} s")


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_depthwise_forward_over_2_31_elements(channels_last, request):
    """Depthwise 3x3, stride 2, padding 1 on [2, 4, 16385, 16385] (NCHW) or
    [1, 8, 16385, 16385] (channels_last): 2.148e9 input elements."""
    shape = (1, 8, 16385, 16385) if channels_last else (2, 4, 16385, 16385)
    need(shape[0] * shape[1] * 16385 * 16385 * 4 * 5 // 4)
    t0 = time.perf_counter()
    x = big_input(shape, channels_last)
    C = shape[1]
    w = torch.randn(C, 1, 3, 3, generator=torch.Generator().manual_seed(1))
    b = torch.randn(C, generator=torch.Generator().manual_seed(2))
    t1 = time.perf_counter()
    y = ops.depthwise_conv2d(x, w, b, stride=2, padding=1)
    t2 = time.perf_counter()
    _report(request, "fill", t1 - t0)
    _report(request, "depthwise forward", t2 - t1)
    OH = y.shape[2]
    assert y.shape == (shape[0], C, 8193, 8193)
    assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    for oh0, oh1 in [(0, 2), (OH // 2, OH // 2 + 1), (OH - 3, OH)]:
        ref = conv_rows_ref(x, w, b, oh0, oh1, 2, 1, C)
        torch.testing.assert_close(y[:, :, oh0:oh1].to(torch.float64), ref, rtol=0, atol=2e-4,
                                   msg=lambda m: f"rows {oh0}:{oh1}: {m}")
    del x, y


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_depthwise_grad_weight_over_2_31_elements(channels_last, request):
    """Depthwise grad_weight (stride 2) over the same 2.148e9-element input
    with a grad_output that is zero except at a few positions at the start
    and the very end: each weight gradient is then a sum of a few known
    products, read from input offsets on both sides of 2^31."""
    shape = (1, 8, 16385, 16385) if channels_last else (2, 4, 16385, 16385)
    need(shape[0] * shape[1] * 16385 * 16385 * 4 * 5 // 4)
    x = big_input(shape, channels_last)
    N, C = shape[:2]
    w = torch.randn(C, 1, 3, 3)
    OH = 8193
    gy = torch.zeros(N, C, OH, OH).contiguous(
        memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    spots = [(N - 1, C - 1, OH - 1, OH - 1), (N - 1, C - 1, OH - 2, OH - 5), (0, 0, 0, 0), (N - 1, C // 2, OH - 1, 3)]
    expect = torch.zeros(C, 1, 3, 3, dtype=torch.float64)
    for k, (n, c, oh, ow) in enumerate(spots):
        g = 0.5 + k
        gy[n, c, oh, ow] = g
        for kh in range(3):
            for kw in range(3):
                ih, iw = 2 * oh - 1 + kh, 2 * ow - 1 + kw
                if 0 <= ih < 16385 and 0 <= iw < 16385:
                    expect[c, 0, kh, kw] += g * float(x[n, c, ih, iw])
    t0 = time.perf_counter()
    gw = torch.ops.mobilenet_ext.depthwise_conv2d_backward_weight(gy, x, w, [2, 2], [1, 1], [1, 1])
    _report(request, "depthwise grad_weight", time.perf_counter() - t0)
    torch.testing.assert_close(gw.to(torch.float64), expect, rtol=1e-5, atol=1e-5)
    del x, gy


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_pointwise_forward_over_2_31_elements(channels_last, request):
    """Pointwise 16 -> 2 channels on [1, 16, 11586, 11586]: 2.148e9 input
    elements; GEMM operand offsets beyond 2^31 in both layouts."""
    shape = (1, 16, 11586, 11586)
    numel = 16 * 11586 * 11586
    need(numel * 4 * 9 // 8)
    x = big_input(shape, channels_last)
    w = torch.randn(2, 16, 1, 1, generator=torch.Generator().manual_seed(3))
    b = torch.randn(2)
    t0 = time.perf_counter()
    y = ops.pointwise_conv2d(x, w, b)
    _report(request, "pointwise forward", time.perf_counter() - t0)
    H = shape[2]
    for h0, h1 in [(0, 2), (H - 2, H)]:
        ref = F.conv2d(x[:, :, h0:h1].to(torch.float64), w.to(torch.float64), b.to(torch.float64))
        torch.testing.assert_close(y[:, :, h0:h1].to(torch.float64), ref, rtol=0, atol=2e-4)
    del x, y
