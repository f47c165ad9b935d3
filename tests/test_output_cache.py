"""The CPU output cache (csrc/glue/cpu_output_cache.cpp): large outputs are
reused, the limit holds, empty_cpu_cache / set_cpu_cache_limit release
memory, the profiler still sees every output, and results are unchanged."""
from __future__ import annotations

import sys

import pytest
import torch

import mobilenet_ext as mx
from mobilenet_ext import ops

MB = 1 << 20


@pytest.fixture
def cache():
    old = mx.set_cpu_cache_limit(256 * MB)
    mx.empty_cpu_cache()
    try:
        yield
    finally:
        mx.set_cpu_cache_limit(old)


def _dw(x, w):
    return ops.depthwise_conv2d_fused(x, w, None, 1, 1, 1, "relu")


def test_reuse_and_counts(cache):
    x = torch.randn(2, 64, 64, 64)  # 2 MiB output
    w = torch.randn(64, 1, 3, 3)
    ref = torch.nn.functional.relu(torch.nn.functional.conv2d(x, w, None, 1, 1, 1, 64))
    s0 = mx.cpu_cache_stats()
    y = _dw(x, w)
    ptr = y.data_ptr()
    torch.testing.assert_close(y, ref)
    s1 = mx.cpu_cache_stats()
    assert s1["in_use_bytes"] - s0["in_use_bytes"] >= y.numel() * 4
    del y
    s2 = mx.cpu_cache_stats()
    assert s2["cached_bytes"] >= x.numel() * 4 and s2["in_use_bytes"] == s0["in_use_bytes"]
    y2 = _dw(x, w)  # the freed buffer again
    assert y2.data_ptr() == ptr and mx.cpu_cache_stats()["hits"] == s2["hits"] + 1
    torch.testing.assert_close(y2, ref)  # no stale value survives
    del y2
    released = mx.empty_cpu_cache()
    assert released >= x.numel() * 4 and mx.cpu_cache_stats()["cached_bytes"] == 0


def test_limit_and_off(cache):
    w = torch.randn(16, 1, 3, 3)
    mx.set_cpu_cache_limit(3 * MB)
    outs = [_dw(torch.randn(1, 16, 128, 128 + 8 * i), w) for i in range(4)]  # ~1.0-1.1 MiB each
    del outs
    st = mx.cpu_cache_stats()
    assert st["cached_bytes"] <= 3 * MB and st["evictions"] >= 1
    assert mx.set_cpu_cache_limit(0) == 3 * MB
    assert mx.cpu_cache_stats()["cached_bytes"] == 0
    y = _dw(torch.randn(1, 16, 128, 128), w)
    del y
    assert mx.cpu_cache_stats()["cached_bytes"] == 0  # off: freed at once


def test_small_outputs_bypass_the_cache(cache):
    s0 = mx.cpu_cache_stats()
    y = _dw(torch.randn(1, 8, 16, 16), torch.randn(8, 1, 3, 3))
    del y
    s1 = mx.cpu_cache_stats()
    assert (s1["hits"], s1["misses"]) == (s0["hits"], s0["misses"])


def test_profiler_counts_cached_outputs(cache):
    from torch.profiler import ProfilerActivity, profile
    x, w = torch.randn(2, 64, 64, 64), torch.randn(64, 1, 3, 3)
    _dw(x, w)  # warm: the next output is a cache hit
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        y = _dw(x, w)
        del y
    sizes = [e.nbytes() for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    assert any(b >= x.numel() * 4 for b in sizes) and any(b <= -x.numel() * 4 for b in sizes), sizes


def test_errors():
    with pytest.raises(ValueError, match="limit_bytes must be >= 0"):
        mx.set_cpu_cache_limit(-1)
    with pytest.raises(TypeError, match="must be an int"):
        mx.set_cpu_cache_limit(1.5)


def test_bad_environment_variable():
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-c", "import mobilenet_ext as mx; mx.cpu_cache_stats()"],
                       env={**__import__("os").environ, "MOBILENET_EXT_CPU_CACHE_MB": "lots"},
                       capture_output=True, text=True)
    assert r.returncode != 0 and "MOBILENET_EXT_CPU_CACHE_MB must be a whole number" in r.stderr


def test_resize_through_the_cache(cache):
    y = _dw(torch.randn(2, 64, 64, 64), torch.randn(64, 1, 3, 3))
    y.resize_(4, 64, 64, 64).fill_(1.0)  # storage grows through the cache's allocator
    assert y.sum().item() == y.numel()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="page-granular buffers on Linux only")
def test_reused_buffer_is_cut_to_the_request(cache):
    # A larger free buffer handed to a smaller request gives its tail pages
    # back: the bytes in use (and counted by the profiler) are the request's,
    # rounded up to a page, not the old buffer's.
    import mmap
    w = torch.randn(64, 1, 3, 3)
    y = _dw(torch.randn(2, 64, 64, 72), w)  # 2.25 MiB
    ptr = y.data_ptr()
    del y
    s0 = mx.cpu_cache_stats()
    x = torch.randn(2, 64, 64, 65)
    y = _dw(x, w)  # 10% smaller: takes the freed buffer
    want = -(-y.numel() * 4 // mmap.PAGESIZE) * mmap.PAGESIZE
    s1 = mx.cpu_cache_stats()
    assert y.data_ptr() == ptr and s1["hits"] == s0["hits"] + 1
    assert s1["in_use_bytes"] - s0["in_use_bytes"] == want
    assert s1["cached_bytes"] == s0["cached_bytes"] - 2 * 64 * 64 * 72 * 4  # the tail went back to the system
    torch.testing.assert_close(y, torch.relu(torch.nn.functional.conv2d(x, w, None, 1, 1, 1, 64)))


@pytest.mark.parametrize("mode", ["0", "1", ""])
def test_huge_page_modes_give_the_same_outputs(mode):
    """MOBILENET_EXT_HUGE_PAGES off, always, and adaptive (unset: stops
    asking once a huge page is slow to fault in): outputs of 4 MiB and more,
    fresh and reused, equal F.conv2d's in every mode."""
    import os
    import subprocess
    code = (
        "import torch, torch.nn.functional as F\n"
        "from mobilenet_ext import ops\n"
        "torch.manual_seed(0)\n"
        "w = torch.randn(96, 1, 3, 3)\n"
        "for n in (4, 8, 4, 6):\n"
        "    x = torch.randn(n, 96, 56, 56)\n"
        "    y = ops.depthwise_conv2d(x, w, None, 1, 1, 1)\n"
        "    torch.testing.assert_close(y, F.conv2d(x, w, None, 1, 1, 1, 96), rtol=1e-5, atol=1e-5)\n"
        "print('ok')\n")
    env = {**os.environ}
    env.pop("MOBILENET_EXT_HUGE_PAGES", None)
    if mode:
        env["MOBILENET_EXT_HUGE_PAGES"] = mode
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
