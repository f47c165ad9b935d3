"""The machine and its roofline.

Machine
    CPU model and ISA flags, core counts, our ISA, GPU; package versions; the
    git commit of the source tree the package was imported from.

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
"""
from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from .common import DTYPE_SHORT, Settings
from .timing import Candidate, time_alternating

__all__ = ["git_info", "machine_info", "versions", "CPU_COPY_LADDER", "measure_roofline", "ladder_text",
           "bandwidth_for", "roofline_pct"]

#: Where ``git`` runs for results.json's commit: the mobilenet_ext package's
#: own directory (the source tree being measured; nothing is written there).
_SOURCE_DIR = Path(__file__).resolve().parent.parent


def git_info() -> Dict[str, Any]:
    """Commit, branch and dirtiness of the checkout the package was imported
    from (all None outside a git checkout)."""

    def git(*a: str) -> Optional[str]:
        """stdout of a git command ("" when empty), None when git fails (no git, not a checkout)."""
        try:
            p = subprocess.run(["git", *a], cwd=_SOURCE_DIR, capture_output=True, text=True, timeout=10)
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
    """Versions of mobilenet_ext, torch, numpy and the optional packages (None when absent)."""
    import numpy

    from .. import __version__

    v: Dict[str, Optional[str]] = {"mobilenet_ext": __version__, "torch": torch.__version__,
                                   "numpy": numpy.__version__}
    for mod in ("torchvision", "onnxruntime", "onnx", "onnxscript", "openvino"):
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
    c = Candidate("copy", lambda i: b.copy_(a))
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
        g = Candidate("gemm", lambda i: torch.mm(A, B, out=C))
        r = time_alternating([g], settings, budget_s=rb)
        gemm[DTYPE_SHORT[dt]] = 2 * n**3 / min(r["samples"]["gemm"]) / 1e9
    out["gemm_GFLOPs"] = gemm
    out["gemm_n"] = n
    if dev == "cpu":
        # the compute ceiling: the CPU's float32 FMA throughput (our probe,
        # csrc/cpu/generic/fma_peak.h), not a library GEMM's rate, which a
        # good 1x1 kernel can beat. One core's best rate (best of several
        # tries: a busy machine only ever lowers it) times the threads: an
        # upper bound on what the run's threads can do
        from .. import _native

        secs = min(0.2, max(0.02, rb / 5))
        single, isa = max(_native._C.fma_peak_gflops(1, secs) for _ in range(5))
        peak = single * settings.threads
        out["fma_peak_GFLOPs"] = {"f32": peak, "f64": peak / 2}
        out["fma_peak_core_GFLOPs"] = single
        out["fma_peak_isa"] = isa
    out["method"] = ("best of alternating-timer samples: copy_ of a {} MiB tensor (2 x bytes){}, "
                     "torch.mm {}^3 (2n^3 FLOP){}").format(
                         nbytes // 2**20,
                         "; cache-aware: copies of " + ", ".join(f"{x // 2**20} MiB" for x in CPU_COPY_LADDER)
                         + " (read + write) held against cases with at most as many compulsory bytes"
                         if dev == "cpu" else "",
                         n, ", TF32 off" if dev == "cuda" else "")
    if dev == "cpu":
        out["method"] += ("; compute ceiling: float32 FMA throughput of the {} probe, best of 5 on one core, "
                          "times the threads (float64: half)").format(out["fma_peak_isa"])
    return out


def ladder_text(roof: Dict[str, Any]) -> str:
    """`` (cache-aware: 1 MiB .., 4 MiB .. GB/s)`` for a roofline with a copy ladder, else ""."""
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


def compute_ceiling(roof: Dict[str, Any], dtype: torch.dtype) -> float:
    """GFLOP/s ceiling for ``dtype``: the CPU's measured FMA peak when the
    run has one (CPU runs since 2026-12-02), else the GEMM rate (CUDA, and
    older results)."""
    table = roof.get("fma_peak_GFLOPs") or roof["gemm_GFLOPs"]
    return table.get(DTYPE_SHORT[dtype]) or table.get("f32") or roof["gemm_GFLOPs"]["f32"]


def roofline_pct(flops: float, nbytes: float, seconds: float, roof: Dict[str, Any], dtype: torch.dtype
                 ) -> Tuple[float, float, float, str]:
    """(GB/s, GFLOP/s, % of roofline, bound) of one run; the roofline is
    ``min(compute_ceiling, flops / bytes x bandwidth_for(bytes))``."""
    peak = compute_ceiling(roof, dtype)
    bw = bandwidth_for(roof, nbytes)
    gbps = nbytes / seconds / 1e9
    gflops = flops / seconds / 1e9
    attainable = min(peak, flops / nbytes * bw)
    return gbps, gflops, 100.0 * gflops / attainable, ("mem" if flops / nbytes * bw < peak else "flop")

