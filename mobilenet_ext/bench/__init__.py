"""``python -m mobilenet_ext bench``: our depthwise / pointwise ops and the
MobileNets built on them, side by side with nn.Conv2d, against the roofline.

Layer suite
    Every distinct depthwise and pointwise layer shape of MobileNetV1 (224x224),
    V2, V3-Large and V3-Small (found by running the models of
    :mod:`mobilenet_ext.models` with forward hooks, deduplicated, each shape
    remembering which models use it) plus the 7x7 depthwise layers of
    ConvNeXt-T; batch 1 and 32 on CPU (1, 32, 256 on CUDA); NCHW and
    channels_last; forward, backward (input and weight gradients of a saved
    graph) and forward+backward.

Measurement
    Each case first checks that our op and ``F.conv2d`` agree (outputs, and
    gradients for the backward directions); a mismatch marks the row FAILED and
    the run exits 1.  Then the two are timed alternately in the same process
    with the same inputs and threads (A B, B A, A B ...): each single
    measurement is a ``torch.utils.benchmark.Timer`` (``num_threads`` set) on
    CPU, CUDA events with warm-up and rotating input buffers (larger than L2)
    on CUDA.  Reported: the median time of each and the median of the
    per-round ratios ``t_torch / t_ours`` (the speedup), so slow drift of a
    shared machine cancels out of the ratio.

Roofline
    Once per run: copy bandwidth (``Tensor.copy_`` of a 128 MiB tensor on
    CPU, 64 MiB with --quick, 512 MiB on CUDA; read + write bytes) and the
    sgemm rate (``torch.mm`` 1024^3 on CPU, cuBLAS 8192^3 with
    TF32 off on CUDA).  Each row reports GB/s over the compulsory bytes
    (inputs, outputs and weights once), GFLOP/s (2 per multiply-add) and the
    percentage of the roofline ``min(peak_flops, intensity * bandwidth)``.
    On the CPU the bandwidth is cache-aware: copies of 1, 4, 16 and 64 MiB
    (read + write) are timed too, and a case is held to the smallest copy at
    least as large as its compulsory bytes (a batch-1 layer that fits in L2
    is compared with an L2-resident copy, not with DRAM).

Peak memory
    For forward+backward, the peak of bytes allocated during one step above
    what was live before it: on CUDA ``torch.cuda.max_memory_allocated``; on
    CPU the running sum of the allocation / free events that
    ``torch.profiler(profile_memory=True)`` records (every allocation through
    PyTorch's CPU allocator, ours and oneDNN's included).

Model suite
    MobileNetV1/V2/V3-L/V3-S: inference (eval) at batch 1 and 32, NCHW and
    channels_last, ours = ``mx.fuse(mx.convert(model).eval())`` with the same
    weights as the nn.Conv2d model; a training step (forward, cross-entropy,
    backward, SGD) at batch 32 (256 with AMP on CUDA); on CPU also ONNX
    Runtime's inference of the nn.Conv2d model at batch 1.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import io
import json
import logging
import math
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = [
    "LayerShape", "LayerCase", "ModelCase", "layer_shapes", "layer_cases", "model_cases",
    "measure_roofline", "run", "render_table", "render_markdown", "render_readme",
    "add_arguments", "main",
]

SCHEMA = "mobilenet_ext.bench/1"
REPO_ROOT = Path(__file__).resolve().parent.parent.parent
MODEL_NAMES = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")
MODEL_SHORT = {"mobilenet_v1": "V1", "mobilenet_v2": "V2", "mobilenet_v3_large": "V3-L",
               "mobilenet_v3_small": "V3-S"}
DIRECTIONS = ("fwd", "bwd", "fwdbwd")
LAYOUTS = {"nchw": torch.contiguous_format, "cl": torch.channels_last}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DTYPE_SHORT = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
#: ConvNeXt-T stages: (channels, feature map) of its 7x7 depthwise convs (bias, padding 3).
CONVNEXT_T_DW = ((96, 56), (192, 28), (384, 14), (768, 7))
#: Shapes of the --quick subset (names as LayerShape.name gives them).
QUICK_SHAPES = (
    "dw3x3/s1 144x56x56", "dw3x3/s2 96x112x112", "dw5x5/s1 120x28x28", "dw7x7/s1 384x14x14",
    "pw 24->144 56x56", "pw 512->512 14x14", "pw 320->1280 7x7",
)
#: Relative tolerances (max |ours - torch| / max(1, max |torch|)) per dtype: (output, gradients).
TOLERANCE = {torch.float32: (1e-4, 1e-3), torch.float16: (1e-2, 3e-2), torch.bfloat16: (5e-2, 1e-1)}


#: How each figure is measured (copied into results.json).
METHODS = {
    "timing": "ours and nn.Conv2d (F.conv2d) alternate in rounds (A B, B A, ...), same inputs and threads; "
              "CPU: each sample is torch.utils.benchmark.Timer(num_threads).timeit(n) with n calls lasting "
              ">= min_sample_s; CUDA: CUDA events around n calls after warm-up, rotating input copies "
              "larger than L2 together, TF32 off. Times are medians over rounds.",
    "speedup": "median over rounds of t_torch / t_ours measured in the same round",
    "bytes": "compulsory bytes: fwd = x + y + w (+ bias); bwd = dy + x + w read, dx + dw written; fwdbwd = both",
    "flops": "2 per multiply-add; bwd = 2 x forward (input and weight gradients), fwdbwd = 3 x forward",
    "pct_roofline": "achieved GFLOP/s / min(gemm GFLOP/s, flops/bytes x copy GB/s), both ceilings measured "
                    "at the start of the run; on the CPU the copy bandwidth is cache-aware: that of the smallest "
                    "measured copy (1, 4, 16, 64 MiB read + write, then the DRAM copy) at least as large as the "
                    "case's compulsory bytes",
    "peak_mem": "fwd+bwd only: peak of bytes allocated during one step above what was live before it; CPU: "
                "running sum in time order of the allocation/free events torch.profiler(profile_memory=True) "
                "records for PyTorch's CPU allocator; CUDA: torch.cuda.max_memory_allocated - allocated before",
    "onnxruntime": "CPU model rows at batch 1 NCHW: the nn.Conv2d model exported with torch.onnx, "
                   "intra_op_num_threads = threads, spin-waiting of its workers off; in those rows each "
                   "sample is preceded by a 20 ms pause and one untimed call, so no runtime's idle "
                   "threads compete with the one being timed",
    "validation": "before timing: max|ours - torch| / max(1, max|torch|) of the output (and input/weight "
                  "gradients for bwd, fwdbwd) within tolerance, else the row is FAILED and the run exits 1",
}


# ==========================================================================
# Settings
# ==========================================================================
@dataclass
class Settings:
    """How long and how often each case is timed."""

    device: str = "cpu"
    threads: int = 1
    dtypes: Tuple[torch.dtype, ...] = (torch.float32,)
    quick: bool = False
    budget_s: float = 0.4        # target timing time per case (both candidates together)
    min_rounds: int = 5          # alternating rounds, at least (slow cases stop here)
    max_rounds: int = 25
    min_sample_s: float = 0.004  # one measurement lasts at least this long (calls repeated)
    progress: bool = True
    memory: bool = True          # peak memory of forward+backward

    @classmethod
    def for_mode(cls, device: str, threads: int, dtypes, quick: bool, **kw) -> "Settings":
        s = cls(device=device, threads=threads, dtypes=tuple(dtypes), quick=quick)
        if quick:
            s.budget_s, s.min_rounds, s.max_rounds, s.min_sample_s = 0.12, 3, 10, 0.002
        for k, v in kw.items():
            if v is not None:
                setattr(s, k, v)
        return s


# ==========================================================================
# Shapes
# ==========================================================================
@dataclass(frozen=True)
class LayerShape:
    """One depthwise (``kind="dw"``) or pointwise (``"pw"``) layer at batch 1."""

    kind: str
    cin: int
    cout: int
    h: int
    w: int
    k: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    bias: bool = False

    @property
    def oh(self) -> int:
        return (self.h + 2 * self.padding - self.dilation * (self.k - 1) - 1) // self.stride + 1

    @property
    def ow(self) -> int:
        return (self.w + 2 * self.padding - self.dilation * (self.k - 1) - 1) // self.stride + 1

    @property
    def group(self) -> str:
        """Op family for the geomean groups: ``dw``, ``pw`` or ``pw-se`` (the
        1x1 convs of squeeze-excitation on 1x1 maps: GEMVs, a separate regime)."""
        if self.kind == "pw" and self.h == 1 and self.w == 1:
            return "pw-se"
        return self.kind

    @property
    def name(self) -> str:
        if self.kind == "dw":
            s = f"dw{self.k}x{self.k}/s{self.stride} {self.cin}x{self.h}x{self.w}"
            if self.cout != self.cin:
                s += f" m{self.cout // self.cin}"
            if self.dilation != 1:
                s += f" d{self.dilation}"
            return s
        return f"pw {self.cin}->{self.cout} {self.h}x{self.w}"

    def macs(self, batch: int) -> int:
        """Multiply-adds of one forward at ``batch``."""
        if self.kind == "dw":
            return batch * self.cout * self.oh * self.ow * self.k * self.k
        return batch * self.h * self.w * self.cin * self.cout

    def numels(self, batch: int) -> Dict[str, int]:
        """Elements of input, output, weight and bias."""
        w = self.cout * self.k * self.k if self.kind == "dw" else self.cout * self.cin
        return {"x": batch * self.cin * self.h * self.w, "y": batch * self.cout * self.oh * self.ow,
                "w": w, "b": self.cout if self.bias else 0}


def _shape_of_module(m: torch.nn.Module, in_shape: Sequence[int]) -> Optional[LayerShape]:
    from ..nn import DepthwiseConv2d, PointwiseConv2d

    _, c, h, w = in_shape
    bias = getattr(m, "bias", None) is not None
    if isinstance(m, DepthwiseConv2d):
        kh, kw = m.kernel_size
        if kh != kw or m.stride[0] != m.stride[1] or m.padding[0] != m.padding[1] or m.dilation[0] != m.dilation[1]:
            raise ValueError(f"benchmark: non-square depthwise layer {m} is not supported")
        return LayerShape("dw", c, m.out_channels, h, w, kh, m.stride[0], m.padding[0], m.dilation[0], bias)
    if isinstance(m, PointwiseConv2d):
        return LayerShape("pw", c, m.out_channels, h, w, bias=bias)
    return None


def model_layer_shapes(name: str, resolution: int = 224) -> List[LayerShape]:
    """The depthwise and pointwise layers of ``mobilenet_ext.models.<name>``
    (backend="ext") at ``resolution``, in execution order, found with
    forward hooks on one batch-1 forward pass."""
    from .. import models
    from ..nn import DepthwiseConv2d, PointwiseConv2d

    model = getattr(models, name)(backend="ext").eval()
    found: List[LayerShape] = []

    def hook(mod, inputs, output):
        s = _shape_of_module(mod, inputs[0].shape)
        if s is not None:
            found.append(s)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (DepthwiseConv2d, PointwiseConv2d))]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, resolution, resolution))
    finally:
        for h in handles:
            h.remove()
    return found


@functools.lru_cache(maxsize=None)
def _layer_shapes_cached() -> Tuple[Tuple[LayerShape, Tuple[str, ...]], ...]:
    return tuple((s, tuple(u)) for s, u in _layer_shapes())


def layer_shapes() -> List[Tuple[LayerShape, List[str]]]:
    """Every distinct layer shape of the suite with the models using it
    (``"V2 x3"`` = three layers of MobileNetV2), depthwise first, then by size."""
    return [(s, list(u)) for s, u in _layer_shapes_cached()]


def _layer_shapes() -> List[Tuple[LayerShape, List[str]]]:
    """Every distinct layer shape of the suite with the models using it
    (``"V2 x3"`` = three layers of MobileNetV2), depthwise first, then by size."""
    users: Dict[LayerShape, Dict[str, int]] = {}
    for name in MODEL_NAMES:
        for s in model_layer_shapes(name):
            users.setdefault(s, {}).setdefault(MODEL_SHORT[name], 0)
            users[s][MODEL_SHORT[name]] += 1
    for c, hw in CONVNEXT_T_DW:
        s = LayerShape("dw", c, c, hw, hw, 7, 1, 3, 1, True)
        users.setdefault(s, {})["ConvNeXt-T"] = 3 if c != 384 else 9  # blocks per stage: 3, 3, 9, 3
    out = []
    for s, u in users.items():
        out.append((s, [m if n == 1 else f"{m} x{n}" for m, n in u.items()]))
    order = {"dw": 0, "pw": 1, "pw-se": 2}
    out.sort(key=lambda t: (order[t[0].group], t[0].k, t[0].stride, -t[0].h, t[0].cin, t[0].cout, t[0].bias))
    return out


# ==========================================================================
# Cases
# ==========================================================================
@dataclass
class LayerCase:
    shape: LayerShape
    models: List[str]
    batch: int
    layout: str
    direction: str
    dtype: torch.dtype

    @property
    def id(self) -> str:
        return f"{self.shape.name} b{self.batch} {self.layout} {self.direction} {DTYPE_SHORT[self.dtype]}"

    @property
    def group(self) -> str:
        return f"{self.shape.group} {self.layout} b{self.batch} {self.direction} {DTYPE_SHORT[self.dtype]}"

    def flops(self) -> int:
        return 2 * self.shape.macs(self.batch) * {"fwd": 1, "bwd": 2, "fwdbwd": 3}[self.direction]

    def bytes(self) -> int:
        """Compulsory bytes: forward reads x, w (b) and writes y; backward
        reads dy, x, w and writes dx, dw; forward+backward is both."""
        n = self.shape.numels(self.batch)
        fwd = n["x"] + n["y"] + n["w"] + n["b"]
        bwd = n["y"] + 2 * n["x"] + 2 * n["w"]
        elems = {"fwd": fwd, "bwd": bwd, "fwdbwd": fwd + bwd}[self.direction]
        return elems * torch.tensor([], dtype=self.dtype).element_size()


@dataclass
class ModelCase:
    model: str
    mode: str       # "infer" | "train"
    batch: int
    layout: str
    dtype: torch.dtype
    with_ort: bool = False

    @property
    def id(self) -> str:
        return f"model {self.model} {self.mode} b{self.batch} {self.layout} {DTYPE_SHORT[self.dtype]}"

    @property
    def group(self) -> str:
        return f"model {self.mode} {self.layout} b{self.batch} {DTYPE_SHORT[self.dtype]}"


def layer_cases(settings: Settings) -> List[LayerCase]:
    """All layer cases of the run (before --filter)."""
    gpu = settings.device == "cuda"
    batches = (1, 32, 256) if gpu else (1, 32)
    cases = []
    shapes = layer_shapes()
    if settings.quick:
        by_name = {s.name: (s, u) for s, u in shapes}
        missing = [n for n in QUICK_SHAPES if n not in by_name]
        if missing:
            raise RuntimeError(f"benchmark: quick shapes not found in the models: {missing}")
        for name in QUICK_SHAPES:
            s, u = by_name[name]
            combos = [(1, "nchw", "fwd"), (1, "cl", "fwd"), (1, "nchw", "fwdbwd"), (1, "cl", "bwd"),
                      (32 if not gpu else 256, "nchw", "fwd")]
            for b, lay, d in combos:
                cases.append(LayerCase(s, u, b, lay, d, settings.dtypes[0]))
        return cases
    for dtype in settings.dtypes:
        for s, u in shapes:
            for b in batches:
                for lay in LAYOUTS:
                    for d in DIRECTIONS:
                        cases.append(LayerCase(s, u, b, lay, d, dtype))
    return cases


def model_cases(settings: Settings, with_ort: bool) -> List[ModelCase]:
    """All model cases of the run (before --filter)."""
    gpu = settings.device == "cuda"
    dtype = settings.dtypes[0]
    if settings.quick:
        return [ModelCase("mobilenet_v2", "infer", 1, "nchw", dtype, with_ort and not gpu),
                ModelCase("mobilenet_v2", "train", 4 if not gpu else 64, "nchw", dtype)]
    cases = []
    for m in MODEL_NAMES:
        for b in (1, 32):
            for lay in LAYOUTS:
                cases.append(ModelCase(m, "infer", b, lay, dtype, with_ort and not gpu and b == 1 and lay == "nchw"))
        for lay in LAYOUTS:
            cases.append(ModelCase(m, "train", 256 if gpu else 32, lay, dtype))
    return cases


# ==========================================================================
# Timing
# ==========================================================================
class _Candidate:
    """One side of a comparison: ``call(i)`` runs it on input set ``i``."""

    def __init__(self, name: str, call: Callable[[int], Any], nbufs: int = 1):
        self.name = name
        self.call = call
        self.nbufs = nbufs
        self._timer = None


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _measure_once(c: _Candidate, number: int, settings: Settings, slow: bool = False) -> float:
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


def _calibrate(c: _Candidate, settings: Settings) -> float:
    """Rough seconds per call (the validation call before it warmed up the CPU path)."""
    warm = 3 if settings.device == "cuda" else 0
    for j in range(warm):
        c.call(j % c.nbufs)
    _sync(settings.device)
    t0 = time.perf_counter()
    c.call(0)
    _sync(settings.device)
    return max(time.perf_counter() - t0, 1e-7)


def time_alternating(cands: Sequence[_Candidate], settings: Settings,
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


def geomean(xs: Iterable[float]) -> Optional[float]:
    xs = [x for x in xs if x is not None and x > 0 and math.isfinite(x)]
    if not xs:
        return None
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


# ==========================================================================
# Machine, roofline
# ==========================================================================
def _git_info() -> Dict[str, Any]:
    def git(*a: str) -> Optional[str]:
        """stdout of a git command ("" when empty), None when git fails (no git, not a checkout)."""
        try:
            p = subprocess.run(["git", *a], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return p.stdout.strip() if p.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD") or None, "branch": git("rev-parse", "--abbrev-ref", "HEAD") or None,
            "dirty": bool(status) if status is not None else None}


def machine_info(settings: Settings) -> Dict[str, Any]:
    """CPU model and ISA flags, core counts, torch/ORT versions, our ISA."""
    from .. import _native

    info: Dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "machine": platform.machine(), "logical_cpus": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
        flags = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", text, re.M)
        info["cpu_model"] = model.group(1).strip() if model else platform.processor()
        fl = set(flags.group(1).split()) if flags else set()
        wanted = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                  "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "asimd", "sve")
        info["isa_flags"] = [f for f in wanted if f in fl]
        info["avx512"] = "avx512f" in fl
    except OSError:
        info["cpu_model"] = platform.processor()
    info["mobilenet_ext_cpu_isa"] = _native.cpu_isa()
    info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    info["mkldnn"] = torch.backends.mkldnn.is_available()
    if settings.device == "cuda":
        p = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": p.name, "memory_gb": round(p.total_memory / 2**30, 1),
                       "capability": f"{p.major}.{p.minor}", "sms": p.multi_processor_count,
                       "cuda": torch.version.cuda}
    return info


def versions() -> Dict[str, Optional[str]]:
    import numpy

    from .. import __version__

    v: Dict[str, Optional[str]] = {"mobilenet_ext": __version__, "torch": torch.__version__,
                                   "numpy": numpy.__version__}
    for mod in ("torchvision", "onnxruntime", "onnx", "onnxscript"):
        try:
            v[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional packages
            v[mod] = None
    return v


# Copy sizes (bytes read + written, total) of the cache-aware bandwidth
# ladder on the CPU: from about an L2's size to well past the L3s of the
# machines this runs on. A case is held to the bandwidth of the smallest
# copy at least as large as its compulsory bytes: batch-1 layers whose data
# sit in cache are compared with a cache-resident copy, not with DRAM.
CPU_COPY_LADDER = (1 * 2**20, 4 * 2**20, 16 * 2**20, 64 * 2**20)


def _copy_GBps(nbytes: int, dev: str, settings: Settings, budget_s: float) -> float:
    """Best copy_ rate of an ``nbytes`` (read + write) copy, in GB/s."""
    a = torch.empty(nbytes // 8, device=dev).uniform_()
    b = torch.empty_like(a)
    c = _Candidate("copy", lambda i: b.copy_(a))
    r = time_alternating([c], settings, budget_s=budget_s)
    return nbytes / min(r["samples"]["copy"]) / 1e9


def measure_roofline(settings: Settings) -> Dict[str, Any]:
    """Copy bandwidth (GB/s, read + write) and GEMM rate (GFLOP/s per dtype)
    measured on this machine with ``settings.threads`` threads. On the CPU
    also the copy bandwidth at the cache-sized copies of
    ``CPU_COPY_LADDER`` (``copy_GBps_ladder``: [[total bytes, GB/s], ...])."""
    dev = settings.device
    quick = settings.quick
    rb = min(1.0, max(0.05, 2 * settings.budget_s))  # timing time per ceiling
    out: Dict[str, Any] = {}
    nbytes = (64 if quick else 128) * 2**20 if dev == "cpu" else 512 * 2**20
    out["copy_GBps"] = _copy_GBps(2 * nbytes, dev, settings, rb)
    out["copy_bytes"] = nbytes
    if dev == "cpu":
        ladder = [[n, _copy_GBps(n, dev, settings, rb / 2)] for n in CPU_COPY_LADDER if n < 2 * nbytes]
        out["copy_GBps_ladder"] = ladder + [[2 * nbytes, out["copy_GBps"]]]
    gemm: Dict[str, float] = {}
    n = (1024 if dev == "cpu" else 8192)
    for dt in settings.dtypes:
        if dev == "cpu" and dt != torch.float32:
            continue
        A = torch.randn(n, n, device=dev, dtype=dt)
        B = torch.randn(n, n, device=dev, dtype=dt)
        C = torch.empty(n, n, device=dev, dtype=dt)
        g = _Candidate("gemm", lambda i: torch.mm(A, B, out=C))
        r = time_alternating([g], settings, budget_s=rb)
        gemm[DTYPE_SHORT[dt]] = 2 * n**3 / min(r["samples"]["gemm"]) / 1e9
    out["gemm_GFLOPs"] = gemm
    out["gemm_n"] = n
    out["method"] = ("best of alternating-timer samples: copy_ of a {} MiB tensor (2 x bytes){}, "
                     "torch.mm {}^3 (2n^3 FLOP){}").format(
                         nbytes // 2**20,
                         "; cache-aware: copies of " + ", ".join(f"{x // 2**20} MiB" for x in CPU_COPY_LADDER)
                         + " (read + write) held against cases with at most as many compulsory bytes"
                         if dev == "cpu" else "",
                         n, ", TF32 off" if dev == "cuda" else "")
    return out


def _ladder_text(roof: Dict[str, Any]) -> str:
    ladder = roof.get("copy_GBps_ladder")
    if not ladder:
        return ""
    return " (cache-aware: " + ", ".join(f"{n / 2**20:.0f} MiB {g:.0f}" for n, g in ladder[:-1]) + " GB/s)"


def bandwidth_for(roof: Dict[str, Any], nbytes: float) -> float:
    """The copy bandwidth a case with ``nbytes`` compulsory bytes is held
    to: that of the smallest measured copy at least as large (its data sit
    in the same cache level), the DRAM copy beyond the ladder. Results
    without a ladder (older runs, CUDA) use the one DRAM figure."""
    for size, gbps in roof.get("copy_GBps_ladder") or ():
        if nbytes <= size:
            return gbps
    return roof["copy_GBps"]


def roofline_pct(flops: float, nbytes: float, seconds: float, roof: Dict[str, Any], dtype: torch.dtype
                 ) -> Tuple[float, float, float, str]:
    """(GB/s, GFLOP/s, % of roofline, bound) of one run; the roofline is
    ``min(gemm rate, flops / bytes x bandwidth_for(bytes))``."""
    peak = roof["gemm_GFLOPs"].get(DTYPE_SHORT[dtype]) or roof["gemm_GFLOPs"].get("f32")
    bw = bandwidth_for(roof, nbytes)
    gbps = nbytes / seconds / 1e9
    gflops = flops / seconds / 1e9
    attainable = min(peak, flops / nbytes * bw)
    return gbps, gflops, 100.0 * gflops / attainable, ("mem" if flops / nbytes * bw < peak else "flop")


# ==========================================================================
# Layer cases
# ==========================================================================
def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
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
def _quiet_stderr_fd():
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


def _make_layer_inputs(case: LayerCase, device: str, seed: int):
    s = case.shape
    g = torch.Generator(device="cpu").manual_seed(seed)
    fmt = LAYOUTS[case.layout]
    x = torch.randn(case.batch, s.cin, s.h, s.w, generator=g)
    if s.kind == "dw":
        w = torch.randn(s.cout, 1, s.k, s.k, generator=g) / s.k
    else:
        w = torch.randn(s.cout, s.cin, 1, 1, generator=g) / math.sqrt(s.cin)
    b = torch.randn(s.cout, generator=g) if s.bias else None
    conv = lambda t: t.to(device=device, dtype=case.dtype)  # noqa: E731
    x = conv(x).contiguous(memory_format=fmt)
    return x, conv(w), (conv(b) if b is not None else None)


def _layer_fns(case: LayerCase):
    """(ours, torch) functions of (x, w, b)."""
    from .. import ops

    s = case.shape
    if s.kind == "dw":
        def ours(x, w, b):
            return ops.depthwise_conv2d(x, w, b, s.stride, s.padding, s.dilation)

        def ref(x, w, b):
            return F.conv2d(x, w, b, s.stride, s.padding, s.dilation, groups=s.cin)
    else:
        def ours(x, w, b):
            return ops.pointwise_conv2d(x, w, b)

        def ref(x, w, b):
            return F.conv2d(x, w, b)
    return ours, ref


def _grad_output(y: torch.Tensor, seed: int) -> torch.Tensor:
    """A gradient for ``y``: uniform in [-1, 1) (randn is several times slower on big maps)."""
    g = torch.Generator(device=y.device).manual_seed(seed)
    return torch.empty_like(y).uniform_(-1.0, 1.0, generator=g)


def _layer_candidates(case: LayerCase, fn, bufs, gys, name: str) -> _Candidate:
    """The timed call of one side on input set ``i``: forward; backward of a
    graph built once (input and weight gradients, ``retain_graph``); or both."""
    d = case.direction
    if d == "fwd":
        return _Candidate(name, lambda i: fn(*bufs[i]), len(bufs))
    for x, w, b in bufs:
        x.requires_grad_(True)
        w.requires_grad_(True)
    if d == "bwd":
        saved = [(fn(x, w, b), x, w) for x, w, b in bufs]

        def call(i):
            y, x, w = saved[i]
            return torch.autograd.grad(y, (x, w), gys[i], retain_graph=True)
        return _Candidate(name, call, len(bufs))

    def call_fb(i):
        x, w, b = bufs[i]
        return torch.autograd.grad(fn(x, w, b), (x, w), gys[i])
    return _Candidate(name, call_fb, len(bufs))


def _validate_layer(case: LayerCase, ours, ref, x, w, b, hints: Optional[Dict[str, float]] = None) -> float:
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
        _sync(str(y.device.type))
        timing[name] = time.perf_counter() - t0
        results[name] = (y, g)
    if hints is not None:
        hints.update(timing)
    (ya, ga), (yb, gb) = results["ours"], results["torch"]
    if ya.shape != yb.shape:
        raise AssertionError(f"output shape {tuple(ya.shape)} != nn.Conv2d's {tuple(yb.shape)}")
    err = _rel_err(ya, yb)
    if not err <= tol_out:
        raise AssertionError(f"forward differs from F.conv2d: rel. error {err:.3g} > {tol_out:g}")
    if case.direction == "fwd":
        return err
    for what, a, r in zip(("grad_input", "grad_weight"), ga, gb):
        e = _rel_err(a, r)
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


# ==========================================================================
# Model cases
# ==========================================================================
def _build_models(case: ModelCase, device: str):
    """(nn.Conv2d model, our model): ours is ``mx.convert`` of the nn.Conv2d
    model (so the weights are the same), then for inference
    ``mx.fuse(ours.eval())``; for training it stays unfused."""
    from .. import convert, fuse, models

    ctor = getattr(models, case.model)
    torch.manual_seed(0)
    ref = ctor(backend="torch")
    with torch.no_grad():  # non-trivial BatchNorm statistics so fusing is exercised
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    ours = convert(ref)  # a converted deep copy
    fmt = LAYOUTS[case.layout]
    ref = ref.to(device=device, memory_format=fmt)
    ours = ours.to(device=device, memory_format=fmt)
    if case.mode == "infer":
        ref.eval()
        ours = fuse(ours.eval())
        if case.dtype != torch.float32:
            ref, ours = ref.to(case.dtype), ours.to(case.dtype)
    else:
        ref.train()
        ours.train()
    return ref, ours


def _ort_session(model: torch.nn.Module, x: torch.Tensor, threads: int, tmpdir: str):
    """An onnxruntime session of ``model`` exported with torch.onnx (the
    TorchScript exporter first: it takes seconds where the dynamo exporter
    takes tens of seconds on a small machine; the dynamo one as fallback)."""
    import onnxruntime as ort

    path = os.path.join(tmpdir, "model.onnx")
    errors = []
    for dynamo in (False, True):
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (x,), path, dynamo=dynamo, input_names=["input"],
                                  output_names=["output"], opset_version=18)
            break
        except Exception as e:  # noqa: BLE001 - try the other exporter
            errors.append(f"dynamo={dynamo}: {type(e).__name__}: {e}")
    else:
        raise RuntimeError("torch.onnx.export failed: " + "; ".join(errors))
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ORT's workers spin-wait after a run by default; on a 2-core machine that
    # kept both cores busy for tens of ms and doubled the time of whatever ran
    # next (mobilenet_v2 b1 on our ops: 10 ms alone, 19-28 ms right after an
    # ORT call). Without spinning ORT alone was ~5% slower (5.2 vs 4.9 ms).
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return sess, sess.get_inputs()[0].name


def run_model_case(case: ModelCase, settings: Settings) -> Dict[str, Any]:
    """Validate and time one model case; returns its JSON row."""
    dev = settings.device
    row: Dict[str, Any] = {"id": case.id, "group": case.group, "model": case.model, "mode": case.mode,
                           "batch": case.batch, "layout": case.layout, "dtype": DTYPE_SHORT[case.dtype]}
    fmt = LAYOUTS[case.layout]
    try:
        ref, ours = _build_models(case, dev)
        g = torch.Generator().manual_seed(1)
        x = torch.randn(case.batch, 3, 224, 224, generator=g).to(dev).contiguous(memory_format=fmt)
        if case.mode == "infer":
            x = x.to(case.dtype)
            with torch.no_grad():
                t0 = time.perf_counter()
                ya = ours(x)
                _sync(dev)
                t1 = time.perf_counter()
                yb = ref(x)
                _sync(dev)
                hints = {"ours": t1 - t0, "torch": time.perf_counter() - t1}
                err = _rel_err(ya, yb)
            tol = {torch.float32: 1e-3}.get(case.dtype, 5e-2)
            if not err <= tol:
                raise AssertionError(f"output differs from the nn.Conv2d model: rel. error {err:.3g} > {tol:g}")
            row["max_rel_err"] = err

            def infer(m):
                def call(i):
                    with torch.no_grad():
                        return m(x)
                return call
            cands = [_Candidate("ours", infer(ours)), _Candidate("torch", infer(ref))]
        else:
            target = torch.randint(0, 1000, (case.batch,), generator=g).to(dev)
            amp = dev == "cuda"
            amp_dtype = case.dtype if case.dtype != torch.float32 else torch.float16

            def loss_of(m):
                with torch.autocast(dev, dtype=amp_dtype, enabled=amp):
                    return F.cross_entropy(m(x), target)
            torch.manual_seed(5)
            t0 = time.perf_counter()
            la = loss_of(ours)
            _sync(dev)
            t1 = time.perf_counter()
            torch.manual_seed(5)
            lb = loss_of(ref)
            _sync(dev)
            # a training step costs about 3 forwards
            hints = {"ours": 3 * (t1 - t0), "torch": 3 * (time.perf_counter() - t1)}
            err = abs(la.item() - lb.item()) / max(1.0, abs(lb.item()))
            tol = 1e-3 if not amp else 3e-2
            if not err <= tol:
                raise AssertionError(f"training loss differs from the nn.Conv2d model: {la.item()} vs {lb.item()}")
            row["max_rel_err"] = err

            def step(m):
                opt = torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9)
                scaler = torch.amp.GradScaler(dev, enabled=amp and amp_dtype == torch.float16)

                def call(i):
                    opt.zero_grad(set_to_none=True)
                    loss = loss_of(m)
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                return call
            cands = [_Candidate("ours", step(ours)), _Candidate("torch", step(ref))]
        ort_note = None
        if case.with_ort:
            try:
                import numpy as np  # noqa: F401

                with tempfile.TemporaryDirectory() as td:
                    sess, name = _ort_session(ref, x.contiguous(), settings.threads, td)
                xn = x.contiguous().cpu().numpy()
                with torch.no_grad():
                    ref_out = ref(x)
                e = _rel_err(torch.from_numpy(sess.run(None, {name: xn})[0]), ref_out)
                if not e <= 1e-3:
                    raise AssertionError(f"onnxruntime output differs from torch: rel. error {e:.3g}")
                cands.append(_Candidate("ort", lambda i: sess.run(None, {name: xn})))
            except ImportError as e:
                ort_note = f"onnxruntime not available ({e}); ORT rows skipped"
            except Exception as e:  # noqa: BLE001 - ORT is a comparison, not our op
                ort_note = f"onnxruntime row skipped: {type(e).__name__}: {str(e)[:200]}"
            if ort_note:
                row["ort_note"] = ort_note
    except Exception as e:  # noqa: BLE001
        row.update(status="FAILED", error=f"{type(e).__name__}: {e}")
        return row
    budget = max(settings.budget_s, 1.0 if not settings.quick else 0.3)
    try:
        # With ORT in the rotation each sample waits for the other runtime's threads to go idle.
        settle = 0.02 if len(cands) > 2 and dev == "cpu" else 0.0
        r = time_alternating(cands, settings, budget_s=budget, hints=hints, settle_s=settle)
    except Exception as e:  # noqa: BLE001
        row.update(status="FAILED", error=f"timing: {type(e).__name__}: {e}")
        return row
    med = r["median"]
    row.update(status="ok", ours_ms=med["ours"] * 1e3, torch_ms=med["torch"] * 1e3,
               speedup=ratio_median(r["samples"], "torch", "ours"), rounds=r["rounds"],
               calls_per_sample=r["numbers"], images_per_s=case.batch / med["ours"],
               torch_images_per_s=case.batch / med["torch"],
               samples_ms={k: [round(v * 1e3, 6) for v in vs] for k, vs in r["samples"].items()})
    if "ort" in med:
        row.update(ort_ms=med["ort"] * 1e3,
                   ours_over_ort=ratio_median(r["samples"], "ours", "ort"),
                   ort_speedup_vs_torch=ratio_median(r["samples"], "torch", "ort"))
    return row


# ==========================================================================
# Summary: groups and issue #4 targets
# ==========================================================================
def summarize_groups(layers: List[Dict[str, Any]], models: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Geomean speedup (and % of roofline) per group: op x layout x batch x direction (x dtype)."""
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for r in layers + models:
        if r.get("status") == "ok":
            groups.setdefault(r["group"], []).append(r)
    out = []
    for g, rows in groups.items():
        sp = [r["speedup"] for r in rows]
        out.append({"group": g, "n": len(rows), "geomean_speedup": geomean(sp), "min_speedup": min(sp),
                    "max_speedup": max(sp),
                    "geomean_pct_roofline": geomean(r.get("pct_roofline") for r in rows),
                    "torch_geomean_pct_roofline": geomean(r.get("torch_pct_roofline") for r in rows)})
    return out


def _target(name: str, op: str, value: Optional[float], goal: float, unit: str, n: int) -> Dict[str, Any]:
    return {"name": name, "target": f"{'<=' if op == 'le' else '>='} {goal:g}{unit}", "goal": goal, "op": op,
            "measured": value, "unit": unit, "n": n,
            "ok": None if value is None else (value <= goal if op == "le" else value >= goal)}


def evaluate_targets(layers: List[Dict[str, Any]], models: List[Dict[str, Any]], roof: Dict[str, Any]
                     ) -> List[Dict[str, Any]]:
    """The speed targets of issue #4, measured on this run's rows (``measured``
    is None when the run did not include the rows a target needs)."""
    ok = [r for r in layers if r.get("status") == "ok" and r["dtype"] in ("f32",)]
    if not ok:
        ok = [r for r in layers if r.get("status") == "ok"]

    def sel(**kw):
        return [r for r in ok if all((r[k] in v) if isinstance(v, tuple) else r[k] == v for k, v in kw.items())]

    T: List[Dict[str, Any]] = []
    for lay, goal in (("nchw", 3.0), ("cl", 1.5)):
        for b in (1, 32):
            rows = sel(op="dw", direction="fwd", layout=lay, batch=b)
            T.append(_target(f"depthwise fwd {lay} b{b}: geomean speedup", "ge",
                             geomean(r["speedup"] for r in rows), goal, "x", len(rows)))
    big = [r for r in sel(op="dw", direction="fwd") if r["bytes"] >= 8 * 2**20]
    T.append(_target("depthwise fwd, >= 8 MiB compulsory bytes: geomean % of copy bandwidth", "ge",
                     geomean(100 * r["GBps"] / roof["copy_GBps"] for r in big), 50, "%", len(big)))
    rows = sel(op="dw", direction="fwdbwd")
    T.append(_target("depthwise fwd+bwd: geomean speedup", "ge", geomean(r["speedup"] for r in rows), 4.0, "x",
                     len(rows)))
    rows = [r for r in rows if r["k"] >= 5]
    T.append(_target("depthwise fwd+bwd 5x5/7x7: geomean speedup", "ge", geomean(r["speedup"] for r in rows),
                     10.0, "x", len(rows)))
    rows = sel(op="pw", direction="fwd")
    T.append(_target("pointwise fwd: geomean speedup", "ge", geomean(r["speedup"] for r in rows), 1.0, "x",
                     len(rows)))
    T.append(_target("pointwise fwd: slowest shape's speedup", "ge",
                     min((r["speedup"] for r in rows), default=None), 0.85, "x", len(rows)))
    big = [r for r in rows if r["flops"] >= 2e8]
    peak = roof["gemm_GFLOPs"].get("f32")
    T.append(_target("pointwise fwd, >= 0.2 GFLOP: geomean % of sgemm rate", "ge",
                     geomean(100 * r["GFLOPs"] / peak for r in big) if peak else None, 80, "%", len(big)))
    rows = sel(op="pw", direction="bwd")
    T.append(_target("pointwise bwd: geomean speedup", "ge", geomean(r["speedup"] for r in rows), 1.0, "x",
                     len(rows)))
    rows = [r for r in ok if r.get("peak_mem_ours") is not None and r.get("peak_mem_torch")]
    T.append(_target("fwd+bwd peak memory: worst ours / nn.Conv2d", "le",
                     max((r["peak_mem_ours"] / r["peak_mem_torch"] for r in rows), default=None), 1.0, "x",
                     len(rows)))
    mok = [r for r in models if r.get("status") == "ok"]
    rows = [r for r in mok if r["model"] == "mobilenet_v2" and r["mode"] == "infer" and r["batch"] == 1
            and "ours_over_ort" in r]
    T.append(_target("mobilenet_v2 b1 inference (convert+fuse): time / ONNX Runtime's", "le",
                     rows[0]["ours_over_ort"] if rows else None, 1.3, "x", len(rows)))
    for m in MODEL_NAMES:
        rows = [r for r in mok if r["model"] == m and r["mode"] == "train" and r["batch"] >= 32]
        T.append(_target(f"{m} training step b{rows[0]['batch'] if rows else 32}: speedup (geomean of layouts)",
                         "ge", geomean(r["speedup"] for r in rows), 2.0, "x", len(rows)))
    return T


# ==========================================================================
# Rendering
# ==========================================================================
def _f(v: Optional[float], fmt: str = ".2f", none: str = "-") -> str:
    return none if v is None else format(v, fmt)


def _mem(v: Optional[int]) -> str:
    return "-" if v is None else f"{v / 2**20:.1f}"


def render_table(res: Dict[str, Any]) -> str:
    """The compact terminal table: one row per case, then the group geomeans and the targets."""
    lines = []
    L = res["layers"]
    if L:
        w = max(len("layer case"), max(len(r["id"]) for r in L))
        head = (f"{'layer case':<{w}} {'ours ms':>9} {'torch ms':>9} {'speedup':>8} {'GB/s':>7} {'GFLOP/s':>8} "
                f"{'%roof':>6} {'torch%':>6} {'mem MiB o/t':>13}  models")
        lines += [head, "-" * len(head)]
        for r in L:
            if r.get("status") != "ok":
                lines.append(f"{r['id']:<{w}} FAILED: {r.get('error', '')}")
                continue
            mem = (f"{_mem(r.get('peak_mem_ours'))}/{_mem(r.get('peak_mem_torch'))}"
                   if "peak_mem_ours" in r else "")
            lines.append(f"{r['id']:<{w}} {r['ours_ms']:>9.3f} {r['torch_ms']:>9.3f} {r['speedup']:>7.2f}x "
                         f"{r['GBps']:>7.1f} {r['GFLOPs']:>8.1f} {r['pct_roofline']:>5.0f}% "
                         f"{r['torch_pct_roofline']:>5.0f}% {mem:>13}  {','.join(r['models'])}")
        lines.append("")
    M = res["models"]
    if M:
        w = max(len("model case"), max(len(r["id"]) for r in M))
        head = (f"{'model case':<{w}} {'ours ms':>9} {'torch ms':>9} {'speedup':>8} {'img/s':>8} "
                f"{'ORT ms':>8} {'ours/ORT':>9} {'torch/ORT':>9}")
        lines += [head, "-" * len(head)]
        for r in M:
            if r.get("status") != "ok":
                lines.append(f"{r['id']:<{w}} FAILED: {r.get('error', '')}")
                continue
            lines.append(f"{r['id']:<{w}} {r['ours_ms']:>9.2f} {r['torch_ms']:>9.2f} {r['speedup']:>7.2f}x "
                         f"{r['images_per_s']:>8.1f} {_f(r.get('ort_ms')):>8} {_f(r.get('ours_over_ort')):>9} "
                         f"{_f(r.get('ort_speedup_vs_torch')):>9}")
            if r.get("ort_note"):
                lines.append(f"  note: {r['ort_note']}")
        lines.append("")
    G = res["groups"]
    if G:
        w = max(len("group"), max(len(g["group"]) for g in G))
        head = f"{'group':<{w}} {'n':>4} {'geomean':>8} {'min':>7} {'max':>7} {'%roof':>6} {'torch%':>6}"
        lines += [head, "-" * len(head)]
        for g in G:
            lines.append(f"{g['group']:<{w}} {g['n']:>4} {g['geomean_speedup']:>7.2f}x {g['min_speedup']:>6.2f}x "
                         f"{g['max_speedup']:>6.2f}x {_f(g['geomean_pct_roofline'], '.0f'):>5}% "
                         f"{_f(g['torch_geomean_pct_roofline'], '.0f'):>5}%")
        lines.append("")
    lines.append(render_targets(res["targets"], markdown=False))
    return "\n".join(lines)


def render_targets(targets: List[Dict[str, Any]], markdown: bool) -> str:
    def status(t):
        return "n/a" if t["ok"] is None else ("PASS" if t["ok"] else "MISS")

    def meas(t):
        return "not measured" if t["measured"] is None else f"{t['measured']:.2f}{t['unit']} (n={t['n']})"

    if markdown:
        lines = ["| target (issue #4) | goal | measured | |", "| --- | --- | --- | --- |"]
        lines += [f"| {t['name']} | {t['target']} | {meas(t)} | {status(t)} |" for t in targets]
        return "\n".join(lines)
    w = max(len(t["name"]) for t in targets)
    lines = [f"{'target (issue #4)':<{w}}  {'goal':>8}  {'measured':>18}", "-" * (w + 38)]
    lines += [f"{t['name']:<{w}}  {t['target']:>8}  {meas(t):>18}  {status(t)}" for t in targets]
    return "\n".join(lines)


def _md_header(res: Dict[str, Any]) -> List[str]:
    m, roof = res["machine"], res["roofline"]
    gemm = ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in roof["gemm_GFLOPs"].items())
    return [
        f"Command: `{res['command']}`  ",
        f"Machine: {m.get('cpu_model')} ({m.get('logical_cpus')} logical CPUs; AVX-512: "
        f"{'yes' if m.get('avx512') else 'no'}; torch CPU capability {m.get('torch_cpu_capability')}; "
        f"mobilenet_ext ISA {m.get('mobilenet_ext_cpu_isa')})"
        + (f", GPU {m['gpu']['name']}" if m.get("gpu") else "") + "  ",
        f"torch {res['versions']['torch']}, onnxruntime {res['versions'].get('onnxruntime')}, "
        f"threads {res['threads']}, load {res.get('loadavg_1min', {}).get('start')}, "
        f"commit {str(res['git'].get('commit'))[:12]}"
        f"{' (dirty)' if res['git'].get('dirty') else ''}, {res['created']}  ",
        f"Roofline: copy {roof['copy_GBps']:.1f} GB/s{_ladder_text(roof)}, sgemm {gemm}",
    ]


def render_markdown(res: Dict[str, Any]) -> str:
    """results.md: header, targets, group geomeans, models and every layer row."""
    out = [f"# mobilenet_ext benchmark: {res['label']}", ""] + _md_header(res) + [""]
    out += ["## Targets", "", render_targets(res["targets"], markdown=True), ""]
    out += ["## Geomean speedup per group", "", "| group | n | geomean | min | max | % roofline ours | torch |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for g in res["groups"]:
        out.append(f"| {g['group']} | {g['n']} | {g['geomean_speedup']:.2f}x | {g['min_speedup']:.2f}x | "
                   f"{g['max_speedup']:.2f}x | {_f(g['geomean_pct_roofline'], '.0f')}% | "
                   f"{_f(g['torch_geomean_pct_roofline'], '.0f')}% |")
    if res["models"]:
        out += ["", "## Models", "", "| case | ours ms | nn.Conv2d ms | speedup | img/s | ORT ms | ours/ORT | "
                "ORT speedup vs torch |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in res["models"]:
            if r.get("status") != "ok":
                out.append(f"| {r['id']} | FAILED: {r.get('error', '')} | | | | | | |")
                continue
            out.append(f"| {r['id']} | {r['ours_ms']:.2f} | {r['torch_ms']:.2f} | {r['speedup']:.2f}x | "
                       f"{r['images_per_s']:.1f} | {_f(r.get('ort_ms'))} | {_f(r.get('ours_over_ort'))} | "
                       f"{_f(r.get('ort_speedup_vs_torch'))} |")
    if res["layers"]:
        out += ["", "## Layers", "", "| case | ours ms | nn.Conv2d ms | speedup | GB/s | GFLOP/s | % roofline | "
                "torch % roofline | peak MiB ours/torch | models |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for r in res["layers"]:
            if r.get("status") != "ok":
                out.append(f"| {r['id']} | FAILED: {r.get('error', '')} | | | | | | | | |")
                continue
            mem = f"{_mem(r.get('peak_mem_ours'))}/{_mem(r.get('peak_mem_torch'))}" if "peak_mem_ours" in r else ""
            out.append(f"| {r['id']} | {r['ours_ms']:.3f} | {r['torch_ms']:.3f} | {r['speedup']:.2f}x | "
                       f"{r['GBps']:.1f} | {r['GFLOPs']:.1f} | {r['pct_roofline']:.0f}% | "
                       f"{r['torch_pct_roofline']:.0f}% | {mem} | {', '.join(r['models'])} |")
    return "\n".join(out) + "\n"


def render_readme(res: Dict[str, Any]) -> str:
    """The README headline: command, machine, group geomeans (forward and
    fwd+bwd of the main groups), models and targets, as markdown."""
    out = _md_header(res) + ["", "| group | n | geomean speedup | min | % roofline (ours / nn.Conv2d) |",
                             "| --- | ---: | ---: | ---: | ---: |"]
    for g in res["groups"]:
        if g["group"].startswith("model"):
            continue
        out.append(f"| {g['group']} | {g['n']} | {g['geomean_speedup']:.2f}x | {g['min_speedup']:.2f}x | "
                   f"{_f(g['geomean_pct_roofline'], '.0f')}% / {_f(g['torch_geomean_pct_roofline'], '.0f')}% |")
    if res["models"]:
        out += ["", "| model case | ours ms | nn.Conv2d ms | speedup | ORT ms |", "| --- | ---: | ---: | ---: | ---: |"]
        for r in res["models"]:
            if r.get("status") == "ok":
                out.append(f"| {r['id']} | {r['ours_ms']:.2f} | {r['torch_ms']:.2f} | {r['speedup']:.2f}x | "
                           f"{_f(r.get('ort_ms'))} |")
    out += ["", render_targets(res["targets"], markdown=True)]
    return "\n".join(out) + "\n"


README_BEGIN, README_END = "<!-- bench-table:begin -->", "<!-- bench-table:end -->"


def update_readme(readme: Path, table: str, source: Path) -> None:
    """Replace what lies between README's bench-table markers by ``table``."""
    text = readme.read_text()
    i, j = text.find(README_BEGIN), text.find(README_END)
    if i < 0 or j < i:
        raise ValueError(f"{readme} has no {README_BEGIN} ... {README_END} markers")
    note = f"<!-- rendered from {source} by: python -m mobilenet_ext bench --render-readme {source} --update-readme -->"
    readme.write_text(text[:i + len(README_BEGIN)] + "\n" + note + "\n" + table + text[j:])


def write_plots(res: Dict[str, Any], out_dir: Path) -> List[str]:
    """speedup.png (speedup per layer shape) and roofline.png (% of roofline
    per layer shape, ours vs nn.Conv2d) for each op x direction panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    rows = [r for r in res["layers"] if r.get("status") == "ok"]
    panels = sorted({(r["op"], r["direction"]) for r in rows},
                    key=lambda t: (t[0], DIRECTIONS.index(t[1])))
    written = []
    series = sorted({(r["layout"], r["batch"], r["dtype"]) for r in rows})
    markers = "os^vD<>ph*"
    for fname, key, tkey, ylabel, logy in (("speedup.png", "speedup", None, "speedup vs nn.Conv2d (x)", True),
                                           ("roofline.png", "pct_roofline", "torch_pct_roofline",
                                            "% of measured roofline", False)):
        n = max(1, len(panels))
        fig, axes = plt.subplots(n, 1, figsize=(max(8, 0.22 * max((len({r['shape'] for r in rows if (r['op'], r['direction']) == p}) for p in panels), default=10) + 3), 3.2 * n),
                                 squeeze=False)
        for ax, (op, d) in zip(axes[:, 0], panels):
            pr = [r for r in rows if r["op"] == op and r["direction"] == d]
            shapes = sorted({r["shape"] for r in pr}, key=lambda s: [r["shape"] for r in rows].index(s))
            xi = {s: i for i, s in enumerate(shapes)}
            for j, (lay, b, dt) in enumerate(series):
                sr = [r for r in pr if (r["layout"], r["batch"], r["dtype"]) == (lay, b, dt)]
                if not sr:
                    continue
                lbl = f"{lay} b{b}" + (f" {dt}" if len({s[2] for s in series}) > 1 else "")
                color = f"C{j % 10}"  # the same series keeps its colour and marker in every panel
                ax.plot([xi[r["shape"]] for r in sr], [r[key] for r in sr], markers[j % len(markers)],
                        color=color, label=f"ours {lbl}" if tkey else lbl, alpha=0.8)
                if tkey:
                    ax.plot([xi[r["shape"]] for r in sr], [r[tkey] for r in sr], markers[j % len(markers)],
                            mfc="none", color=color, label=f"nn.Conv2d {lbl}", alpha=0.8)
            if logy:
                ax.set_yscale("log")
                ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                ax.yaxis.set_major_formatter(FormatStrFormatter("%gx"))
                ax.yaxis.set_minor_formatter(NullFormatter())
                ax.axhline(1.0, color="k", lw=0.8)
            else:
                ax.axhline(100.0, color="k", lw=0.8)
            ax.set_xticks(range(len(shapes)))
            ax.set_xticklabels(shapes, rotation=60, ha="right", fontsize=6)
            ax.set_title(f"{op} {d}", fontsize=9)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.grid(True, axis="y", alpha=0.3)
            ax.legend(fontsize=6, ncol=4)
        if not panels:
            axes[0, 0].text(0.5, 0.5, "no layer cases in this run", ha="center")
        fig.suptitle(f"mobilenet_ext {res['label']}: {ylabel}", fontsize=10)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (3.2 * n)))
        path = out_dir / fname
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))
    return written


# ==========================================================================
# Driver
# ==========================================================================
def _estimate_case_s(case, settings: Settings, roof: Optional[Dict[str, Any]]) -> float:
    """Rough wall seconds one case will take (for the progress bar's ETA)."""
    if isinstance(case, ModelCase):
        peak = roof["gemm_GFLOPs"].get("f32", 50.0) if roof else 50.0
        # forward MACs at 224x224 (mx.profile); the models run at ~10% of the sgemm rate
        gmacs = {"mobilenet_v1": 0.569, "mobilenet_v2": 0.301, "mobilenet_v3_large": 0.217,
                 "mobilenet_v3_small": 0.056}[case.model]
        base = case.batch * gmacs * 2 * (3 if case.mode == "train" else 1) / (0.1 * peak) + 0.002
        rounds = settings.min_rounds
        budget = max(settings.budget_s, 1.0 if not settings.quick else 0.3)
        return max(budget, 2 * rounds * base) + 3 * base + (6.0 if case.with_ort else 0.0) + 0.3
    bw = roof["copy_GBps"] if roof else 10.0
    peak = roof["gemm_GFLOPs"].get("f32", 50.0) if roof else 50.0
    # assume nn.Conv2d reaches 1/4 of the roofline and we a little more
    t = 4 * max(case.bytes() / (bw * 1e9), case.flops() / (peak * 1e9))
    t = max(t, 2e-5)
    timing = max(settings.budget_s, 2 * settings.min_rounds * t)
    extra = 6 * t + (4 * t if case.direction == "fwdbwd" and settings.memory else 0)
    return timing + extra + 0.01


def _default_out(label: str) -> Path:
    return REPO_ROOT / "benchmarks" / "results" / label


def run(settings: Settings, regex: Optional[str] = None, suite: str = "all", label: str = "run",
        out_dir: Optional[Path] = None, command: str = "", plots: bool = True,
        print_fn: Callable[[str], None] = print) -> Dict[str, Any]:
    """Run the benchmark; writes results.json, results.md and the plots to
    ``out_dir`` when given and returns the results dictionary."""
    t_start = time.perf_counter()
    torch.set_num_threads(settings.threads)
    if settings.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    pat = re.compile(regex) if regex else None
    with_ort = settings.device == "cpu"
    lc = layer_cases(settings) if suite in ("all", "layers") else []
    mc = model_cases(settings, with_ort) if suite in ("all", "models") else []
    if pat:
        lc = [c for c in lc if pat.search(c.id)]
        mc = [c for c in mc if pat.search(c.id)]
    if not lc and not mc:
        raise ValueError(f"--filter {regex!r} matches no case (see --list)")
    print_fn(f"mobilenet_ext bench: {len(lc)} layer cases, {len(mc)} model cases, device {settings.device}, "
             f"threads {settings.threads}")
    load_start = _loadavg()
    cpus = os.cpu_count() or 1
    if settings.device == "cpu" and load_start is not None and load_start > 0.5 * cpus:
        print_fn(f"warning: this machine is busy (1-minute load {load_start:.1f} on {cpus} CPUs); with "
                 f"{settings.threads} thread(s) per side, OpenMP barrier waits can slow both sides by 10x or "
                 "more and the figures will be noisy: benchmark on a quiet machine (or --threads 1)")
    roof = measure_roofline(settings)
    gemm = ", ".join(f"{k} {v:.0f}" for k, v in roof["gemm_GFLOPs"].items())
    print_fn(f"roofline: copy {roof['copy_GBps']:.1f} GB/s{_ladder_text(roof)}, gemm GFLOP/s: {gemm}")
    all_cases = list(lc) + list(mc)
    est = [_estimate_case_s(c, settings, roof) for c in all_cases]
    print_fn(f"estimated time: {_fmt_dur(sum(est))} (ETA {(datetime.datetime.now() + datetime.timedelta(seconds=sum(est))).strftime('%H:%M:%S')})")
    layers, models = [], []
    bar = None
    if settings.progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=round(sum(est), 1), unit="s", dynamic_ncols=True, leave=False, mininterval=0.5,
                       bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} est.s [{elapsed}<{remaining}] {postfix}")
        except ImportError:
            bar = None
    try:
        for c, e in zip(all_cases, est):
            if bar is not None:
                bar.set_postfix_str(c.id[:48])
            t_case = time.perf_counter()
            if isinstance(c, LayerCase):
                layers.append(run_layer_case(c, settings, roof))
                row = layers[-1]
            else:
                models.append(run_model_case(c, settings))
                row = models[-1]
            row["wall_s"] = round(time.perf_counter() - t_case, 3)
            row["est_s"] = round(e, 3)
            if row.get("status") != "ok":
                msg = f"FAILED {row['id']}: {row.get('error')}"
                (bar.write if bar is not None else print_fn)(msg)
            if bar is not None:
                bar.update(round(e, 1))
    finally:
        if bar is not None:
            bar.close()
    res: Dict[str, Any] = {
        "schema": SCHEMA, "label": label, "command": command,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "device": settings.device, "threads": settings.threads,
        "dtypes": [DTYPE_SHORT[d] for d in settings.dtypes], "quick": settings.quick, "filter": regex,
        "suite": suite,
        "settings": {k: v for k, v in asdict(settings).items() if k not in ("dtypes",)},
        "machine": machine_info(settings), "versions": versions(), "git": _git_info(),
        "loadavg_1min": {"start": load_start, "end": _loadavg()},
        "roofline": roof, "methods": METHODS, "layers": layers, "models": models,
    }
    res["groups"] = summarize_groups(layers, models)
    res["targets"] = evaluate_targets(layers, models, roof)
    res["failures"] = sum(r.get("status") != "ok" for r in layers + models)
    res["elapsed_s"] = time.perf_counter() - t_start
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
        (out_dir / "results.md").write_text(render_markdown(res))
        if plots:
            write_plots(res, out_dir)
    return res


def _loadavg() -> Optional[float]:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _fmt_dur(s: float) -> str:
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("Rows: ours vs nn.Conv2d (F.conv2d) timed alternately in one process; 'speedup' is the "
                     "median of per-round t_torch/t_ours; '%roof' the share of the measured roofline "
                     "min(gemm rate, intensity x copy bandwidth).")
    parser.add_argument("--quick", action="store_true", help="a representative subset (under a minute)")
    parser.add_argument("--filter", metavar="REGEX", default=None,
                        help="only cases whose id matches REGEX (re.search), e.g. 'dw3x3.*b1 nchw fwd '")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--dtype", default=None,
                        help="comma-separated float32,float16,bfloat16 (CPU: float32 only; CUDA default: all three)")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads for torch, our ops and ONNX Runtime (default: torch's default)")
    parser.add_argument("--suite", choices=("all", "layers", "models"), default="all")
    parser.add_argument("--label", default=None, help="results name (default: <device>-<date>, or quick-...)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output folder (default benchmarks/results/<label>/)")
    parser.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                        help="timing time per case (default 0.4, --quick 0.12); slow cases take min-rounds")
    parser.add_argument("--min-rounds", type=int, default=None, help="alternating rounds at least (default 5, quick 3)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--no-plots", action="store_true", help="do not write the PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--list", action="store_true", help="list the cases (after --filter) and exit")
    parser.add_argument("--render-readme", metavar="RESULTS_JSON", default=None,
                        help="print README's headline table from a results.json and exit")
    parser.add_argument("--update-readme", metavar="README", nargs="?", const=str(REPO_ROOT / "README.md"),
                        default=None, help="with --render-readme: write the table between the "
                        "<!-- bench-table:begin/end --> markers of README (default: the repo's README.md)")


class ArgumentError(ValueError):
    """A bad command-line argument (the message names it)."""


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Validate the arguments; raises ArgumentError naming the bad one."""
    device = args.device
    if device not in ("cpu", "cuda"):
        raise ArgumentError(f"--device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ArgumentError("--device cuda: CUDA is not available here (torch.cuda.is_available() is False: "
                                "no GPU or a CPU-only torch)")
        from .. import _native

        if not _native.cuda_built():
            raise ArgumentError("--device cuda: mobilenet_ext was built without CUDA "
                                "(rebuild without MOBILENET_EXT_NO_CUDA=1)")
    if args.dtype is None:
        dtypes = [torch.float32] if device == "cpu" else [torch.float32, torch.float16, torch.bfloat16]
    else:
        names = [d.strip() for d in args.dtype.split(",") if d.strip()]
        bad = [d for d in names if d not in DTYPES]
        if bad or not names:
            raise ArgumentError(f"--dtype must be a comma-separated list of {', '.join(DTYPES)}, got {args.dtype!r}")
        dtypes = [DTYPES[d] for d in names]
        if device == "cpu" and dtypes != [torch.float32]:
            raise ArgumentError(f"--dtype {args.dtype}: only float32 is benchmarked on CPU")
    threads = args.threads if args.threads is not None else torch.get_num_threads()
    if threads < 1:
        raise ArgumentError(f"--threads must be >= 1, got {threads}")
    if args.filter is not None:
        try:
            re.compile(args.filter)
        except re.error as e:
            raise ArgumentError(f"--filter: invalid regular expression {args.filter!r}: {e}") from None
    if args.budget is not None and not args.budget > 0:
        raise ArgumentError(f"--budget must be > 0 seconds, got {args.budget}")
    if args.min_rounds is not None and args.min_rounds < 1:
        raise ArgumentError(f"--min-rounds must be >= 1, got {args.min_rounds}")
    s = Settings.for_mode(device, threads, dtypes, args.quick, budget_s=args.budget, min_rounds=args.min_rounds)
    s.max_rounds = max(s.max_rounds, s.min_rounds)
    s.progress = not args.no_progress
    s.memory = not args.no_memory
    return s


def main(args: argparse.Namespace) -> int:
    """Entry point of ``python -m mobilenet_ext bench``: 0 when every case
    validated, 1 when a case FAILED, 2 on bad arguments."""
    prog = "python -m mobilenet_ext bench"
    if args.render_readme:
        p = Path(args.render_readme)
        try:
            res = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            print(f"{prog}: error: --render-readme: cannot read {p}: {e}", file=sys.stderr)
            return 2
        if res.get("schema") != SCHEMA:
            print(f"{prog}: error: --render-readme: {p} is not a {SCHEMA} results file", file=sys.stderr)
            return 2
        table = render_readme(res)
        if args.update_readme:
            try:
                update_readme(Path(args.update_readme), table, Path(args.render_readme))
            except (OSError, ValueError) as e:
                print(f"{prog}: error: --update-readme: {e}", file=sys.stderr)
                return 2
            print(f"updated the benchmark table in {args.update_readme}")
            return 0
        print(table, end="")
        return 0
    if args.update_readme:
        print(f"{prog}: error: --update-readme needs --render-readme RESULTS_JSON", file=sys.stderr)
        return 2
    try:
        settings = settings_from_args(args)
    except ArgumentError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    if args.list:
        lc = layer_cases(settings) if args.suite in ("all", "layers") else []
        mc = model_cases(settings, settings.device == "cpu") if args.suite in ("all", "models") else []
        pat = re.compile(args.filter) if args.filter else None
        for c in list(lc) + list(mc):
            if pat is None or pat.search(c.id):
                print(c.id + (f"    [{', '.join(c.models)}]" if isinstance(c, LayerCase) else ""))
        return 0
    date = datetime.datetime.now().strftime("%Y%m%d-%H%M")
    label = args.label or f"{'quick-' if settings.quick else ''}{settings.device}-{date}"
    if not re.fullmatch(r"[A-Za-z0-9._+-]+", label):
        print(f"{prog}: error: --label may only contain letters, digits and . _ + -, got {label!r}", file=sys.stderr)
        return 2
    out_dir = Path(args.out) if args.out else _default_out(label)
    command = "python -m mobilenet_ext bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
        if len(sys.argv) > 1 and sys.argv[1] == "bench" else "python -m mobilenet_ext bench (called from Python)"
    try:
        res = run(settings, args.filter, args.suite, label, out_dir, command, plots=not args.no_plots)
    except ValueError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    print()
    print(render_table(res))
    print(f"\nwrote {out_dir}/results.json, results.md" + ("" if args.no_plots else ", speedup.png, roofline.png")
          + f" in {_fmt_dur(res['elapsed_s'])}")
    if res["failures"]:
        print(f"{res['failures']} case(s) FAILED validation against nn.Conv2d", file=sys.stderr)
        return 1
    return 0
