"""No memory leak and no per-call workspace growth.

Resident memory (``/proc/self/statm``) is read after a warm-up (so that the
allocator, the OpenMP pool, autograd and lazily initialised kernels are in
their steady state) and again after 10^4 more calls; glibc's free lists are
trimmed (``malloc_trim``) before each reading so that only memory that is
really held counts. A leak of even one small output per call would show as
tens of MB; we allow 2 MB (~200 bytes per call) for allocator noise. The
workspace test runs the shapes that take the scratch-buffer paths
(channels_last depthwise grad_weight partial sums, split-K pointwise
grad_weight) and checks that RSS does not keep growing.
"""
from __future__ import annotations

import ctypes
import gc
import os
import sys

import pytest
import torch

import mobilenet_ext as mx

ops = mx.ops

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")

PAGE = os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(autouse=True)
def one_thread():
    """Leaks don't depend on the thread count, and one thread keeps 10^4
    steps fast on a loaded 2-core machine (tiny parallel regions cost a
    time slice each there)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

CALLS = int(os.environ.get("MNX_LEAK_CALLS", "10000"))
SLACK = 2 << 20

try:
    _libc = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc
    _libc = None


def rss() -> int:
    gc.collect()
    if _libc is not None and hasattr(_libc, "malloc_trim"):
        _libc.malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _growth(step, calls=CALLS, warmup=1000):
    for _ in range(warmup):
        step()
    r0 = rss()
    for _ in range(calls):
        step()
    r1 = rss()
    return r1 - r0


def _small():
    g = torch.Generator().manual_seed(0)
    t = {}
    for mf, tag in ((torch.contiguous_format, "nchw"), (torch.channels_last, "nhwc")):
        t["x_" + tag] = torch.randn(2, 8, 9, 9, generator=g).contiguous(memory_format=mf)
        t["r_" + tag] = torch.randn(2, 16, 5, 5, generator=g).contiguous(memory_format=mf)
    t["wd"] = torch.randn(16, 1, 3, 3, generator=g)  # m = 2
    t["bd"] = torch.randn(16, generator=g)
    t["wp"] = torch.randn(16, 16, 1, 1, generator=g)
    t["bp"] = torch.randn(16, generator=g)
    return t


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_forward_no_leak(layout):
    """10^4 inference calls (depthwise, pointwise, both fused ops with a
    residual) keep RSS flat."""
    t = _small()
    x, r = t["x_" + layout], t["r_" + layout]

    def step():
        with torch.no_grad():
            h = ops.depthwise_conv2d(x, t["wd"], t["bd"], stride=2, padding=1)
            ops.pointwise_conv2d(h, t["wp"], t["bp"])
            hf = ops.depthwise_conv2d_fused(x, t["wd"], t["bd"], 2, 1, 1, "relu6")
            ops.pointwise_conv2d_fused(hf, t["wp"], t["bp"], "hardswish", r)

    grew = _growth(step)
    print(f"forward {layout}: RSS {grew / 2**10:+.0f} kB over {CALLS} steps")
    assert grew < SLACK, f"RSS grew by {grew / 2**20:.2f} MB over {CALLS} forward steps ({grew / CALLS:.0f} B/step)"


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_forward_backward_no_leak(layout):
    """10^4 forward+backward steps (depthwise -> pointwise, grads of input,
    weights and biases) keep RSS flat: the autograd graph, the saved tensors
    and the backward ops' outputs are all released."""
    t = _small()
    x = t["x_" + layout].clone().requires_grad_(True)
    params = [t[k].clone().requires_grad_(True) for k in ("wd", "bd", "wp", "bp")]

    def step():
        wd, bd, wp, bp = params
        y = ops.pointwise_conv2d(ops.depthwise_conv2d(x, wd, bd, stride=2, padding=1), wp, bp)
        torch.autograd.grad(y.sum(), [x, *params])

    grew = _growth(step)
    print(f"fwd+bwd {layout}: RSS {grew / 2**10:+.0f} kB over {CALLS} steps")
    assert grew < SLACK, f"RSS grew by {grew / 2**20:.2f} MB over {CALLS} fwd+bwd steps ({grew / CALLS:.0f} B/step)"


def test_scratch_workspaces_do_not_grow():
    """Shapes whose grad_weight uses a scratch buffer (channels_last depthwise
    with multiplier 1: per-row-chunk partial sums; pointwise with few weight
    tiles and N*H*W >= 2048: split-K partial products) and the non-contiguous
    input path (copied): 10^4 calls after warm-up, RSS flat (the smallest
    scratch, split-K's 2 x 16 x 16 floats, would leak 20 MB)."""
    g = torch.Generator().manual_seed(1)
    xd = torch.randn(2, 16, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    wd = torch.randn(16, 1, 3, 3, generator=g)
    gd = torch.randn(2, 16, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    xp = torch.randn(2, 16, 40, 40, generator=g)
    wp = torch.randn(16, 16, 1, 1, generator=g)
    gp = torch.randn(2, 16, 40, 40, generator=g)
    xs = torch.randn(2, 8, 12, 24, generator=g)[..., ::2]
    raw = torch.ops.mobilenet_ext

    def step():
        raw.depthwise_conv2d_backward_weight(gd, xd, wd, [1, 1], [1, 1], [1, 1])
        raw.pointwise_conv2d_backward_weight(gp, xp, wp)
        raw.pointwise_conv2d_backward_weight(gp.contiguous(memory_format=torch.channels_last),
                                             xp.contiguous(memory_format=torch.channels_last), wp)
        ops.depthwise_conv2d(xs, wd[:8], padding=1)

    grew = _growth(step, warmup=300)
    print(f"scratch paths: RSS {grew / 2**10:+.0f} kB over {CALLS} steps")
    assert grew < SLACK, f"RSS grew by {grew / 2**20:.2f} MB over scratch-path calls"
