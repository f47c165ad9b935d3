"""One layer case: build its inputs, validate ours against ``F.conv2d``, time
both with the alternating timer and report the row.

Validation
    Each case first checks that our op and ``F.conv2d`` agree (outputs, and
    gradients for the backward directions); a mismatch marks the row FAILED
    and the run exits 1.

Peak memory
    For forward+backward, the peak of bytes allocated during one step above
    what was live before it: on CUDA ``torch.cuda.max_memory_allocated``; on
    CPU the running sum of the allocation / free events that
    ``torch.profiler(profile_memory=True)`` records (every allocation through
    PyTorch's CPU allocator, ours and oneDNN's included).
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import warnings
import zlib
from dataclasses import asdict
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .common import DTYPE_SHORT, LAYOUTS, Settings
from .roofline import roofline_pct
from .suite import LayerCase
from .timing import Candidate, ratio_median, sync, time_alternating

__all__ = ["TOLERANCE", "rel_err", "run_layer_case"]

#: ``fn(x, w, b)``: one side's layer call.
LayerFn = Callable[[torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor]
Inputs = Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]

#: Relative tolerances (max |ours - torch| / max(1, max |torch|)) per dtype: (output, gradients).
TOLERANCE = {torch.float32: (1e-4, 1e-3), torch.float16: (1e-2, 3e-2), torch.bfloat16: (5e-2, 1e-1)}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max(1, max |b|), computed in float32 (at least)."""
    if a.dtype in (torch.float16, torch.bfloat16):
        a, b = a.float(), b.float()
    if a.numel() == 0:
        return 0.0
    inf = float("inf")
    return torch.linalg.vector_norm(a - b, inf).item() / max(1.0, torch.linalg.vector_norm(b, inf).item())


def _peak_bytes(fn: Callable[[], Any], device: str) -> Optional[int]:
    """Peak bytes allocated by ``fn()`` above what was live before (see the module docstring)."""
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - base)
    from torch.profiler import ProfilerActivity, profile

    with warnings.catch_warnings(), _quiet_stderr_fd():
        warnings.simplefilter("ignore")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
    # One raw event per allocation (+bytes) and free (-bytes) through the CPU allocator.
    events = [(e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and str(e.device_type()).endswith("CPU")]
    if not events:
        return None
    live = peak = 0
    for _, d in sorted(events, key=lambda t: t[0]):
        live += d
        peak = max(peak, live)
    return int(peak)


@contextlib.contextmanager
def _quiet_stderr_fd() -> Iterator[None]:
    """Silence file descriptor 2 (the profiler's C++ start/stop log lines)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _make_layer_inputs(case: LayerCase, device: str, seed: int) -> Inputs:
    """Input, weight and bias of one case (seeded; input in the case's layout)."""
    s = case.shape
    g = torch.Generator(device="cpu").manual_seed(seed)
    fmt = LAYOUTS[case.layout]
    x = torch.randn(case.batch, s.cin, s.h, s.w, generator=g)
    if s.kind == "dw":
        w = torch.randn(s.cout, 1, s.k, s.k, generator=g) / s.k
    else:
        w = torch.randn(s.cout, s.cin, 1, 1, generator=g) / math.sqrt(s.cin)
    b = torch.randn(s.cout, generator=g) if s.bias else None
    conv: Callable[[torch.Tensor], torch.Tensor] = lambda t: t.to(device=device, dtype=case.dtype)  # noqa: E731
    x = conv(x).contiguous(memory_format=fmt)
    return x, conv(w), (conv(b) if b is not None else None)


def _layer_fns(case: LayerCase) -> Tuple[LayerFn, LayerFn]:
    """(ours, torch) functions of (x, w, b)."""
    from .. import ops

    s = case.shape
    if s.kind == "dw":
        def ours(x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor]) -> torch.Tensor:
            return ops.depthwise_conv2d(x, w, b, s.stride, s.padding, s.dilation)

        def ref(x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor]) -> torch.Tensor:
            return F.conv2d(x, w, b, s.stride, s.padding, s.dilation, groups=s.cin)
    else:
        def ours(x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor]) -> torch.Tensor:
            return ops.pointwise_conv2d(x, w, b)

        def ref(x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor]) -> torch.Tensor:
            return F.conv2d(x, w, b)
    return ours, ref


def _grad_output(y: torch.Tensor, seed: int) -> torch.Tensor:
    """A gradient for ``y``: uniform in [-1, 1) (randn is several times slower on big maps)."""
    g = torch.Generator(device=y.device).manual_seed(seed)
    return torch.empty_like(y).uniform_(-1.0, 1.0, generator=g)


def _layer_candidates(case: LayerCase, fn: LayerFn, bufs: Sequence[Inputs],
                      gys: Sequence[Optional[torch.Tensor]], name: str) -> Candidate:
    """The timed call of one side on input set ``i``: forward; backward of a
    graph built once (input and weight gradients, ``retain_graph``); or both."""
    d = case.direction
    if d == "fwd":
        return Candidate(name, lambda i: fn(*bufs[i]), len(bufs))
    for x, w, b in bufs:
        x.requires_grad_(True)
        w.requires_grad_(True)
    if d == "bwd":
        saved = [(fn(x, w, b), x, w) for x, w, b in bufs]

        def call(i: int) -> Tuple[torch.Tensor, ...]:
            y, x, w = saved[i]
            return torch.autograd.grad(y, (x, w), gys[i], retain_graph=True)
        return Candidate(name, call, len(bufs))

    def call_fb(i: int) -> Tuple[torch.Tensor, ...]:
        x, w, b = bufs[i]
        return torch.autograd.grad(fn(x, w, b), (x, w), gys[i])
    return Candidate(name, call_fb, len(bufs))


def _validate_layer(case: LayerCase, ours: LayerFn, ref: LayerFn, x: torch.Tensor, w: torch.Tensor,
                    b: Optional[torch.Tensor], hints: Optional[Dict[str, float]] = None) -> float:
    """Max relative error of ours vs F.conv2d (outputs, and input/weight
    gradients for the backward directions); raises AssertionError past the
    tolerance.  ``hints`` receives the seconds each side took (a first
    estimate of its cost)."""
    tol_out, tol_grad = TOLERANCE[case.dtype]
    x = x.detach().clone().requires_grad_(case.direction != "fwd")
    w = w.detach().clone().requires_grad_(case.direction != "fwd")
    timing: Dict[str, float] = {}
    gy = None
    results = {}
    for name, fn in (("ours", ours), ("torch", ref)):
        t0 = time.perf_counter()
        y = fn(x, w, b)
        g = None
        if case.direction != "fwd":
            if gy is None:
                gy = _grad_output(y, 7)
            g = torch.autograd.grad(y, (x, w), gy)
        sync(str(y.device.type))
        timing[name] = time.perf_counter() - t0
        results[name] = (y, g)
    if hints is not None:
        hints.update(timing)
    (ya, ga), (yb, gb) = results["ours"], results["torch"]
    if ya.shape != yb.shape:
        raise AssertionError(f"output shape {tuple(ya.shape)} != nn.Conv2d's {tuple(yb.shape)}")
    err = rel_err(ya, yb)
    if not err <= tol_out:
        raise AssertionError(f"forward differs from F.conv2d: rel. error {err:.3g} > {tol_out:g}")
    if case.direction == "fwd":
        return err
    for what, a, r in zip(("grad_input", "grad_weight"), ga, gb):
        e = rel_err(a, r)
        if not e <= tol_grad:
            raise AssertionError(f"{what} differs from F.conv2d: rel. error {e:.3g} > {tol_grad:g}")
        err = max(err, e)
    return err


def _nbufs(case: LayerCase, device: str) -> int:
    """Rotating input sets on CUDA: enough that they do not fit in L2 together."""
    if device != "cuda":
        return 1
    per = case.bytes() // (2 if case.direction == "fwdbwd" else 1)
    l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 * 2**20)
    return int(min(16, max(1, math.ceil(3 * l2 / max(per, 1)))))


def run_layer_case(case: LayerCase, settings: Settings, roof: Dict[str, Any]) -> Dict[str, Any]:
    """Validate and time one layer case; returns its JSON row."""
    row: Dict[str, Any] = {
        "id": case.id, "group": case.group, "op": case.shape.group, "shape": case.shape.name,
        **{k: v for k, v in asdict(case.shape).items()}, "oh": case.shape.oh, "ow": case.shape.ow,
        "models": case.models, "batch": case.batch, "layout": case.layout, "direction": case.direction,
        "dtype": DTYPE_SHORT[case.dtype], "flops": case.flops(), "bytes": case.bytes(),
    }
    ours, ref = _layer_fns(case)
    try:
        x, w, b = _make_layer_inputs(case, settings.device, seed=zlib.crc32(case.shape.name.encode()))
        hints: Dict[str, float] = {}
        row["max_rel_err"] = _validate_layer(case, ours, ref, x, w, b, hints)
    except Exception as e:  # noqa: BLE001 - any failure of ours marks the row
        row.update(status="FAILED", error=f"{type(e).__name__}: {e}")
        return row
    nb = _nbufs(case, settings.device)
    bufs = [(x, w, b)] + [_make_layer_inputs(case, settings.device, seed=i + 1) for i in range(nb - 1)]
    # Both sides read the very same tensors (autograd.grad does not accumulate into .grad).
    gys = []
    if case.direction != "fwd":
        n = case.shape.numels(case.batch)
        with torch.no_grad():
            gys = [_grad_output(ours(*bf), 11 + i) if n["y"] else None for i, bf in enumerate(bufs)]
    a = _layer_candidates(case, ours, bufs, gys, "ours")
    t = _layer_candidates(case, ref, bufs, gys, "torch")
    if case.direction == "bwd":  # validation ran forward + backward; bwd alone is about 2/3 of it
        hints = {k: v * 2 / 3 for k, v in hints.items()}
    try:
        r = time_alternating([a, t], settings, hints=hints)
    except Exception as e:  # noqa: BLE001 - e.g. out of memory: report it, go on with the next case
        row.update(status="FAILED", error=f"timing: {type(e).__name__}: {e}")
        return row
    to, tt = r["median"]["ours"], r["median"]["torch"]
    row.update(status="ok", ours_ms=to * 1e3, torch_ms=tt * 1e3,
               speedup=ratio_median(r["samples"], "torch", "ours"), rounds=r["rounds"],
               calls_per_sample=r["numbers"],
               samples_ms={k: [round(v * 1e3, 6) for v in vs] for k, vs in r["samples"].items()})
    gbps, gfl, pct, bound = roofline_pct(case.flops(), case.bytes(), to, roof, case.dtype)
    row.update(GBps=gbps, GFLOPs=gfl, pct_roofline=pct, bound=bound)
    gbps_t, gfl_t, pct_t, _ = roofline_pct(case.flops(), case.bytes(), tt, roof, case.dtype)
    row.update(torch_GBps=gbps_t, torch_GFLOPs=gfl_t, torch_pct_roofline=pct_t)
    if settings.memory and case.direction == "fwdbwd":
        row["peak_mem_ours"] = _peak_bytes(lambda: a.call(0), settings.device)
        row["peak_mem_torch"] = _peak_bytes(lambda: t.call(0), settings.device)
    return row

