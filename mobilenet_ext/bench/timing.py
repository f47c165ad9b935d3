"""The alternating A/B timer.

The candidates of a case (ours and ``F.conv2d``; for models also ONNX
Runtime) are timed alternately in the same process with the same inputs and
threads (A B, B A, A B ...): each single measurement is a
``torch.utils.benchmark.Timer`` (``num_threads`` set) on CPU, CUDA events
with warm-up and rotating input buffers (larger than L2) on CUDA.  Reported:
the median time of each and the median of the per-round ratios
``t_torch / t_ours`` (the speedup), so slow drift of a shared machine cancels
out of the ratio.
"""
from __future__ import annotations

import logging
import math
import statistics
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import torch

from .common import Settings

__all__ = ["Candidate", "sync", "time_alternating", "ratio_median", "geomean"]


class Candidate:
    """One side of a comparison: ``call(i)`` runs it on input set ``i``."""

    def __init__(self, name: str, call: Callable[[int], Any], nbufs: int = 1) -> None:
        self.name = name
        self.call = call
        self.nbufs = nbufs
        self._timer: Any = None  # torch.utils.benchmark.Timer, made on the first CPU measurement


def sync(device: str) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device == "cuda":
        torch.cuda.synchronize()


def _measure_once(c: Candidate, number: int, settings: Settings, slow: bool = False) -> float:
    """Seconds per call of one measurement of ``number`` calls.

    On CPU a ``torch.utils.benchmark.Timer`` with ``num_threads``.
    ``Timer.timeit`` first runs ``max(number // 100, 2)`` warm-up calls; for
    a ``slow`` candidate (one call >= 20 ms, so ``number == 1``) that would
    triple the cost of the case, so the Timer's own single measurement
    (``Timer._timeit`` under the Timer's thread setting) is used instead: the
    validation call and the previous rounds have warmed it up already."""
    if settings.device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for j in range(number):
            c.call(j % c.nbufs)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / number
    if c._timer is None:
        # torch.utils.benchmark imports cpp_extension, which warns about CUDA_HOME on CPU-only machines.
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        from torch.utils import benchmark

        fn = c.call
        c._timer = benchmark.Timer(stmt="fn(0)", globals={"fn": fn}, num_threads=settings.threads,
                                   label=c.name)
    if slow and hasattr(c._timer, "_timeit"):
        from torch.utils.benchmark.utils import common

        with common.set_torch_threads(settings.threads):
            return c._timer._timeit(number) / number
    return c._timer.timeit(number).mean


def _calibrate(c: Candidate, settings: Settings) -> float:
    """Rough seconds per call (the validation call before it warmed up the CPU path)."""
    warm = 3 if settings.device == "cuda" else 0
    for j in range(warm):
        c.call(j % c.nbufs)
    sync(settings.device)
    t0 = time.perf_counter()
    c.call(0)
    sync(settings.device)
    return max(time.perf_counter() - t0, 1e-7)


def time_alternating(cands: Sequence[Candidate], settings: Settings,
                     budget_s: Optional[float] = None,
                     hints: Optional[Dict[str, float]] = None,
                     settle_s: float = 0.0) -> Dict[str, Any]:
    """Time ``cands`` in alternating rounds (the order flips every round).

    Each round is at least ``settings.min_rounds`` and at most
    ``settings.max_rounds`` rounds, as many as fit in ``budget_s``.
    Returns per candidate the median seconds per call and all samples, the
    number of rounds and calls per measurement.  Round ``r`` gives one sample
    of each candidate, so per-round ratios can be formed.

    ``settle_s > 0``: before each sample, sleep that long and make one
    untimed call, so that worker threads of the candidate timed before it
    (ONNX Runtime's or OpenMP's pool, spin-waiting after their last task)
    have gone idle and do not compete with this one for the cores."""
    budget = settings.budget_s if budget_s is None else budget_s
    # A slow candidate (its validation call, ``hints``, took > 20 ms) is not called again to calibrate.
    hints = hints or {}
    est = [hints[c.name] if hints.get(c.name, 0.0) > 0.02 and settings.device == "cpu"
           else _calibrate(c, settings) for c in cands]
    # Calls per measurement: enough to last min_sample_s (timer resolution, dispatch noise).
    numbers = [max(1, math.ceil(settings.min_sample_s / t)) for t in est]
    slow = [n == 1 and t >= 0.02 for n, t in zip(numbers, est)]
    per_round = sum(n * t for n, t in zip(numbers, est))
    rounds = int(min(settings.max_rounds, max(settings.min_rounds, budget // per_round)))
    samples: Dict[str, List[float]] = {c.name: [] for c in cands}
    order = list(range(len(cands)))
    t0 = time.perf_counter()
    done = 0
    for r in range(rounds):
        seq = order if r % 2 == 0 else order[::-1]
        for i in seq:
            if settle_s > 0:
                time.sleep(settle_s)
                cands[i].call(0)
            samples[cands[i].name].append(_measure_once(cands[i], numbers[i], settings, slow[i]))
        done = r + 1
        # A machine that slowed down since the calibration must not stretch the case without bound.
        if done >= settings.min_rounds and time.perf_counter() - t0 > 2 * budget:
            break
    rounds = done
    return {"rounds": rounds, "numbers": {c.name: n for c, n in zip(cands, numbers)}, "samples": samples,
            "median": {k: statistics.median(v) for k, v in samples.items()}}


def ratio_median(samples: Dict[str, List[float]], num: str, den: str) -> float:
    """Median over rounds of ``samples[num][r] / samples[den][r]``."""
    return statistics.median(a / b for a, b in zip(samples[num], samples[den]))


def geomean(xs: Iterable[Optional[float]]) -> Optional[float]:
    """Geometric mean of the positive finite values (None and others skipped); None when none is left."""
    vals = [x for x in xs if x is not None and x > 0 and math.isfinite(x)]
    if not vals:
        return None
    return math.exp(sum(math.log(x) for x in vals) / len(vals))

