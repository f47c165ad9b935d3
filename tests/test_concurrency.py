"""Several Python threads calling the ops at once.

The ops keep no shared mutable state: workspaces are per call, or per thread
(the depthwise kernels' row and padding buffers and the GEMM's packing
buffers are thread_local, grown to the largest shape a thread has seen and
reused), so calls from concurrent Python threads (each of which may also run at::parallel_for) on
*shared* weight tensors must give exactly the serial results. Since the
kernels are bitwise deterministic for any intra-op thread count (see
test_determinism.py), the comparison is bitwise. Gradients are taken with
``torch.autograd.grad`` so that no thread accumulates into a shared ``.grad``
(that accumulation order would be racy by design, not by our ops).
"""
from __future__ import annotations

import threading

import pytest
import torch

import mobilenet_ext as mx

ops = mx.ops

N_THREADS = 4
ROUNDS = 6


def _make_jobs():
    g = torch.Generator().manual_seed(7)
    # shared parameters
    wd = torch.randn(24, 1, 3, 3, generator=g, requires_grad=True)   # C=12, m=2
    bd = torch.randn(24, generator=g, requires_grad=True)
    wd5 = torch.randn(17, 1, 5, 3, generator=g, requires_grad=True)
    wp = torch.randn(40, 24, 1, 1, generator=g, requires_grad=True)
    bp = torch.randn(40, generator=g, requires_grad=True)
    jobs = []
    for i in range(8):
        mf = torch.channels_last if i % 2 else torch.contiguous_format
        x = torch.randn(2, 12, 15 + i, 13, generator=g).contiguous(memory_format=mf)
        x5 = torch.randn(1 + i % 3, 17, 19, 11 + i, generator=g).contiguous(memory_format=mf)
        r = torch.randn(2, 40, (15 + i + 1) // 2, 7, generator=g).contiguous(memory_format=mf)
        jobs.append(("block", x, r, i))
        jobs.append(("dw5", x5, None, i))
    params = dict(wd=wd, bd=bd, wd5=wd5, wp=wp, bp=bp)
    return jobs, params


def _run(job, p):
    """Forward + backward (+ fused forward) of one job; returns all results."""
    kind, x, r, i = job
    x = x.detach().requires_grad_(True)
    if kind == "block":
        h = ops.depthwise_conv2d(x, p["wd"], p["bd"], stride=2, padding=1)
        y = ops.pointwise_conv2d(torch.relu(h), p["wp"], p["bp"])
        loss = (y * y).sum() if i % 2 else (y * r).sum()
        grads = torch.autograd.grad(loss, [x, p["wd"], p["bd"], p["wp"], p["bp"]])
        with torch.no_grad():
            hf = ops.depthwise_conv2d_fused(x, p["wd"], p["bd"], 2, 1, 1, "relu")
            yf = ops.pointwise_conv2d_fused(hf, p["wp"], p["bp"], "hardswish", r)
        return [y.detach(), yf, *grads]
    y = ops.depthwise_conv2d(x, p["wd5"], None, stride=(1, 2), padding=(2, 1), dilation=(2, 1))
    grads = torch.autograd.grad(y, [x, p["wd5"]], torch.ones_like(y))
    return [y.detach(), *grads]


@pytest.mark.parametrize("intra_threads", [1, 2])
def test_threads_calling_at_once_match_serial(intra_threads):
    """N_THREADS Python threads each run all jobs ROUNDS times (in a
    different order per thread), released together by a barrier, against
    shared weights; every result must equal the serial one bitwise. Run
    with 1 and 2 intra-op threads per caller (so with 2, parallel_for
    regions of different callers overlap)."""
    old = torch.get_num_threads()
    torch.set_num_threads(intra_threads)
    try:
        jobs, params = _make_jobs()
        serial = [_run(j, params) for j in jobs]
        snapshot = {k: v.detach().clone() for k, v in params.items()}
        barrier = threading.Barrier(N_THREADS)
        errors = []

        def worker(tid):
            try:
                # OpenMP's thread count is per calling thread: set it here too
                torch.set_num_threads(intra_threads)
                barrier.wait()
                order = list(range(len(jobs)))
                for rnd in range(ROUNDS):
                    order = order[tid + rnd:] + order[: tid + rnd]  # differ per thread and round
                    for k in order:
                        out = _run(jobs[k], params)
                        for a, b in zip(out, serial[k]):
                            if not torch.equal(a, b):
                                errors.append(f"thread {tid} round {rnd} job {k}: max diff {(a - b).abs().max().item()}")
                                return
            except Exception as e:  # noqa: BLE001
                errors.append(f"thread {tid}: {type(e).__name__}: {e}")

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(N_THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a worker hung"
        assert not errors, "\n".join(errors[:10])
        for k, v in params.items():
            assert torch.equal(v.detach(), snapshot[k]), f"shared parameter {k} was modified"
            assert v.grad is None, f"shared parameter {k} got a .grad"
    finally:
        torch.set_num_threads(old)


def test_concurrent_error_paths_do_not_disturb_good_calls():
    """Threads raising argument errors while others compute: the good calls
    still give the serial results and every bad call raises ValueError."""
    jobs, params = _make_jobs()
    ref = _run(jobs[0], params)
    bad_w = torch.randn(5, 1, 3, 3)
    errors, barrier = [], threading.Barrier(4)

    def good():
        barrier.wait()
        for _ in range(10):
            out = _run(jobs[0], params)
            if not all(torch.equal(a, b) for a, b in zip(out, ref)):
                errors.append("good call differs from serial")

    def bad():
        barrier.wait()
        for _ in range(50):
            try:
                ops.depthwise_conv2d(jobs[0][1], bad_w)
                errors.append("bad call did not raise")
            except ValueError:
                pass

    ts = [threading.Thread(target=f) for f in (good, good, bad, bad)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
    assert not errors, errors[:5]
