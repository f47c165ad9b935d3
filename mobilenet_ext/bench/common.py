"""Shared vocabulary of the benchmark: the results schema id, the models,
layouts, directions and dtypes it knows, how each figure is measured
(``METHODS``, copied into results.json) and :class:`Settings` (how long and
how often each case is timed)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, Optional, Tuple

import torch

#: results.json's ``schema``; ``--render-readme`` refuses other files.
SCHEMA = "mobilenet_ext.bench/1"
#: The MobileNets of :mod:`mobilenet_ext.models` in the suite, and their short names.
MODEL_NAMES = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")
MODEL_SHORT = {"mobilenet_v1": "V1", "mobilenet_v2": "V2", "mobilenet_v3_large": "V3-L",
               "mobilenet_v3_small": "V3-S"}
#: Layer case directions: forward, backward (input and weight gradients), both.
DIRECTIONS = ("fwd", "bwd", "fwdbwd")
#: Memory layouts: ``--filter`` and case ids spell channels_last ``cl``.
LAYOUTS = {"nchw": torch.contiguous_format, "cl": torch.channels_last}
#: ``--dtype`` names and the short names of case ids.
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DTYPE_SHORT = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}

#: How each figure is measured (copied into results.json).
METHODS: Dict[str, str] = {
    "timing": "ours and nn.Conv2d (F.conv2d) alternate in rounds (A B, B A, ...), same inputs and threads; "
              "CPU: each sample is torch.utils.benchmark.Timer(num_threads).timeit(n) with n calls lasting "
              ">= min_sample_s; CUDA: CUDA events around n calls after warm-up, rotating input copies "
              "larger than L2 together, TF32 off. Times are medians over rounds.",
    "speedup": "median over rounds of t_torch / t_ours measured in the same round",
    "bytes": "compulsory bytes: fwd = x + y + w (+ bias); bwd = dy + x + w read, dx + dw written; fwdbwd = both",
    "flops": "2 per multiply-add; bwd = 2 x forward (input and weight gradients), fwdbwd = 3 x forward",
    "pct_roofline": "achieved GFLOP/s / min(compute ceiling, flops/bytes x copy GB/s), both ceilings measured "
                    "at the start of the run; on the CPU the compute ceiling is the float32 FMA throughput of "
                    "mobilenet_ext's probe (one core's best of 5, times the threads; float64: half; CUDA: the "
                    "GEMM rate) and the copy "
                    "bandwidth is cache-aware: that of the smallest measured copy (1, 4, 16, 64 MiB read + write, "
                    "then the DRAM copy) at least as large as the case's compulsory bytes",
    "peak_mem": "fwd+bwd only: peak of bytes allocated during one step above what was live before it; CPU: "
                "running sum in time order of the allocation/free events torch.profiler(profile_memory=True) "
                "records for PyTorch's CPU allocator; CUDA: torch.cuda.max_memory_allocated - allocated before",
    "onnxruntime": "CPU inference model rows (batch 1 and 32, NCHW and channels_last; --quick: mobilenet_v2 b1 "
                   "NCHW): the nn.Conv2d model exported with torch.onnx, fed the input as NCHW, "
                   "intra_op_num_threads = threads, spin-waiting of its workers off; in rows with other runtimes "
                   "each sample is preceded by a 20 ms pause and one untimed call, so no runtime's idle "
                   "threads compete with the one being timed; ours/ort = median of per-round t_ours / t_ort",
    "openvino": "the same rows: OpenVINO's CPU plugin on the same ONNX file (openvino.convert_model of the "
                "nn.Conv2d model if the export failed), PERFORMANCE_HINT=LATENCY, INFERENCE_NUM_THREADS = "
                "threads, INFERENCE_PRECISION_HINT=f32 (its default is bf16 on CPUs with AMX/AVX512_BF16); "
                "the compiled model's precision and threads and every node's runtime precision are read back "
                "(openvino_config) and must be f32 / threads, else the column is n/a; ours/openvino likewise",
    "inductor": "the same rows except --quick: torch.compile (inductor, default mode) of the nn.Conv2d model, "
                "dynamo reset per row, compiled with cpp.threads = threads and called 3 times before timing "
                "(inductor_compile_s, not timed); ours/inductor likewise",
    "other_runtimes_validation": "each runtime's output vs the nn.Conv2d model's: max|y - y_torch| / "
                                 "max|y_torch| <= 1e-4 (<name>_rel_err), else its columns are n/a with the "
                                 "reason (<name>_note), as when its package is not installed",
    "validation": "before timing: max|ours - torch| / max(1, max|torch|) of the output (and input/weight "
                  "gradients for bwd, fwdbwd) within tolerance, else the row is FAILED and the run exits 1",
}


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
    def for_mode(cls, device: str, threads: int, dtypes: Iterable[torch.dtype], quick: bool,
                 **kw: Optional[Any]) -> "Settings":
        """The defaults of a full run, or of ``--quick``; keyword arguments
        that are not None override fields."""
        s = cls(device=device, threads=threads, dtypes=tuple(dtypes), quick=quick)
        if quick:
            s.budget_s, s.min_rounds, s.max_rounds, s.min_sample_s = 0.12, 3, 10, 0.002
        for k, v in kw.items():
            if v is not None:
                setattr(s, k, v)
        return s

