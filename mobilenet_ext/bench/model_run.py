"""One model case: MobileNetV1/V2/V3-L/V3-S on our ops next to the nn.Conv2d
model, and other runtimes.

Ours is ``mx.fuse(mx.convert(model).eval())`` with the same weights as the
nn.Conv2d model for inference; for training a step (forward, cross-entropy,
backward, SGD) of the unfused converted model, with AMP on CUDA.  On CPU
the inference rows also time other runtimes on the nn.Conv2d model (the
case's ``competitors``), in the same alternating rounds:

* ``ort``: ONNX Runtime on the model exported with ``torch.onnx``
  (``intra_op_num_threads`` = threads, its workers' spin-waiting off);
* ``openvino``: OpenVINO's CPU plugin on the same ONNX file
  (``PERFORMANCE_HINT=LATENCY``, ``INFERENCE_NUM_THREADS`` = threads,
  ``INFERENCE_PRECISION_HINT=f32``: on CPUs with AMX / AVX512_BF16 it
  would otherwise infer in bfloat16; the compiled model's precision, thread
  count and the runtime precision of every node are read back and must be
  f32 / threads);
* ``inductor``: ``torch.compile`` (inductor, default mode) of the nn.Conv2d
  model, compiled with ``cpp.threads`` = threads and warmed up before timing
  (the compile time is reported, not timed).

Each is optional: a runtime that is not installed or fails (no C++
compiler for inductor, say) leaves its columns as ``<name>_note``
("n/a: openvino not installed", ...) instead of failing the row.  Each
runtime's output is checked against the nn.Conv2d model's, relative to
its largest magnitude (``COMPETITOR_TOL``).  With other runtimes in the
rotation there is a short pause before each sample, so no runtime's idle
threads compete with the one being timed.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from .common import DTYPE_SHORT, LAYOUTS, Settings
from .layer_run import rel_err
from .suite import ModelCase
from .timing import Candidate, ratio_median, sync, time_alternating

__all__ = ["run_model_case", "COMPETITOR_TOL", "COMPETITOR_PACKAGES", "OPENVINO_CONFIG"]

#: Largest accepted max|y - y_torch| / max|y_torch| of another runtime's
#: output. Relative to the output's scale, not to max(1, ...): the random
#: models' logits are ~1e-2, where an absolute 1e-3 would let a bfloat16
#: run pass (OpenVINO's default on AMX CPUs differed by ~1e-2 of the
#: scale, its f32 run by ~1e-6).
COMPETITOR_TOL = 1e-4
#: OpenVINO's compile_model settings (INFERENCE_NUM_THREADS = the run's threads is added).
OPENVINO_CONFIG = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
#: The package each runtime needs (what the "n/a: ... not installed" note names).
COMPETITOR_PACKAGES = {"ort": "onnxruntime", "openvino": "openvino", "inductor": "torch._inductor"}
#: Display names, for notes.
_DISPLAY = {"ort": "onnxruntime", "openvino": "openvino", "inductor": "torch.compile (inductor)"}


def _build_models(case: ModelCase, device: str) -> Tuple[torch.nn.Module, torch.nn.Module]:
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


def _one_line(e: BaseException, limit: int = 200) -> str:
    """``e``'s message on one line (whitespace runs as one space), at most ``limit`` characters."""
    return " ".join(str(e).split())[:limit]


def _scaled_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| in float32 (see ``COMPETITOR_TOL``)."""
    a, b = a.float(), b.float()
    inf = float("inf")
    return torch.linalg.vector_norm(a - b, inf).item() / max(torch.linalg.vector_norm(b, inf).item(), 1e-30)


def _onnx_export(model: torch.nn.Module, x: torch.Tensor, path: str) -> None:
    """Export ``model`` with torch.onnx to ``path`` (the TorchScript exporter
    first: it takes seconds where the dynamo exporter takes tens of seconds
    on a small machine; the dynamo one as fallback)."""
    errors = []
    for dynamo in (False, True):
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (x,), path, dynamo=dynamo, input_names=["input"],
                                  output_names=["output"], opset_version=18)
            return
        except Exception as e:  # noqa: BLE001 - try the other exporter
            errors.append(f"dynamo={dynamo}: {type(e).__name__}: {e}")
    raise RuntimeError("torch.onnx.export failed: " + "; ".join(errors))


def _ort_session(path: str, threads: int) -> Tuple[Any, str]:
    """An onnxruntime session of the ONNX file ``path`` and its input's name."""
    import onnxruntime as ort

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


def _openvino_model(model: torch.nn.Module, x: torch.Tensor, threads: int,
                    onnx_path: Optional[str]) -> Tuple[Any, Dict[str, Any]]:
    """An OpenVINO CPU model compiled for latency with ``threads`` threads
    in float32, from the ONNX file (the graph ONNX Runtime runs) or, when
    the export failed, from ``model`` via ``openvino.convert_model``.

    Returns the compiled model and what was read back from it: the
    inference precision, thread count, streams, hint and the set of runtime
    precisions of its nodes. Raises when it would not run in f32 with
    ``threads`` threads (the column then says why)."""
    import openvino as ov

    core = ov.Core()
    if onnx_path is not None:
        src = "onnx"
        m = core.read_model(onnx_path)
    else:
        src = "convert_model"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = ov.convert_model(model, example_input=(x,))
    cfg = dict(OPENVINO_CONFIG, INFERENCE_NUM_THREADS=threads)
    cm = core.compile_model(m, "CPU", cfg)
    prec = cm.get_property("INFERENCE_PRECISION_HINT")
    got_threads = int(cm.get_property("INFERENCE_NUM_THREADS"))
    runtime_precs = set()
    for op in cm.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "runtimePrecision" in info:
            runtime_precs.add(info["runtimePrecision"].astype(str))
    info = {"source": src, "inference_precision": str(prec.get_type_name() if hasattr(prec, "get_type_name")
                                                          else prec),
            "threads": got_threads, "streams": int(cm.get_property("NUM_STREAMS")),
            "hint": str(cm.get_property("PERFORMANCE_HINT")), "runtime_precisions": sorted(runtime_precs)}
    try:
        info["cpu_pinning"] = bool(cm.get_property("ENABLE_CPU_PINNING"))
    except Exception:  # noqa: BLE001 - a property older plugins may not have
        info["cpu_pinning"] = None
    low = sorted(runtime_precs & {"bf16", "f16"})
    if prec != ov.Type.f32 or low:
        raise RuntimeError(f"OpenVINO would not run in f32 on this CPU (inference precision {prec}, "
                           f"nodes in {', '.join(low) or '-'})")
    if got_threads != threads:
        raise RuntimeError(f"OpenVINO runs {got_threads} threads, not the {threads} asked for")
    return cm, info


def _inductor_model(model: torch.nn.Module, x: torch.Tensor, threads: int) -> Tuple[Callable[[], Any], float]:
    """``torch.compile(model)`` (inductor, default mode), compiled with
    ``threads`` threads (inductor bakes the OpenMP thread count of its C++
    kernels in at compile time: ``cpp.threads``) and warmed up: returns the
    call and the seconds the compilation and warm-up took."""
    from torch import _dynamo
    from torch._inductor import config as ind_config
    from torch.utils.benchmark.utils import common

    # cpp_extension warns about CUDA_HOME on CPU-only machines.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    # A fresh cache for each case: the same forward code compiled for several
    # cases would otherwise hit dynamo's recompile limit and run eagerly.
    _dynamo.reset()
    compiled = torch.compile(model)
    t0 = time.perf_counter()
    with ind_config.patch({"cpp.threads": threads}), common.set_torch_threads(threads), torch.no_grad():
        for _ in range(3):  # the first call compiles; then warm-up
            compiled(x)
    return (lambda: compiled(x)), time.perf_counter() - t0


def _add_competitors(case: ModelCase, settings: Settings, ref: torch.nn.Module, x: torch.Tensor,
                     row: Dict[str, Any], cands: List[Candidate], hints: Dict[str, float]) -> None:
    """Validate the other runtimes of ``case`` and append their candidates;
    a runtime that is missing or fails gets ``row[<name>_note]`` instead."""
    import numpy as np

    threads = settings.threads
    with torch.no_grad():
        ref_out = ref(x)
    xc = x.contiguous()  # the ONNX graph's input is NCHW
    xn = xc.cpu().numpy()
    onnx_path: Optional[str] = None
    export_error: Optional[str] = None
    with tempfile.TemporaryDirectory() as td:
        if "ort" in case.competitors or "openvino" in case.competitors:
            try:
                path = os.path.join(td, "model.onnx")
                _onnx_export(ref, xc, path)
                onnx_path = path
            except Exception as e:  # noqa: BLE001 - the runtimes' columns say so
                export_error = f"{type(e).__name__}: {_one_line(e)}"
        for name in case.competitors:
            call: Optional[Callable[[], Any]] = None
            out: Any = None
            try:
                if name == "ort":
                    import onnxruntime  # noqa: F401

                    if onnx_path is None:
                        raise RuntimeError(f"torch.onnx.export failed: {export_error}")
                    sess, iname = _ort_session(onnx_path, threads)
                    call = (lambda s=sess, n=iname: s.run(None, {n: xn}))  # noqa: E731
                    out = call()[0]
                elif name == "openvino":
                    import openvino  # noqa: F401

                    cm, info = _openvino_model(ref, xc, threads, onnx_path)
                    row["openvino_config"] = info
                    req = cm.create_infer_request()
                    call = (lambda r=req: r.infer(xn, share_inputs=True))  # noqa: E731
                    out = call()[0]
                elif name == "inductor":
                    from torch import _inductor  # noqa: F401

                    call, compile_s = _inductor_model(ref, x, threads)
                    row["inductor_compile_s"] = round(compile_s, 2)
                    row["inductor_threads"] = threads
                    with torch.no_grad():
                        out = call()
                else:
                    raise ValueError(f"unknown runtime {name!r}")
                y = out if isinstance(out, torch.Tensor) else torch.from_numpy(np.asarray(out))
                err = _scaled_err(y.reshape(ref_out.shape), ref_out)
                if not err <= COMPETITOR_TOL:
                    raise AssertionError(f"output differs from torch's: max|diff| / max|torch| = {err:.3g} "
                                         f"> {COMPETITOR_TOL:g}")
                row[f"{name}_rel_err"] = err
                t0 = time.perf_counter()
                with torch.no_grad():
                    call()
                hints[name] = time.perf_counter() - t0
            except ImportError as e:
                row[f"{name}_note"] = f"n/a: {COMPETITOR_PACKAGES[name]} not installed ({_one_line(e)})"
                continue
            except Exception as e:  # noqa: BLE001 - another runtime is a comparison, not our op
                row[f"{name}_note"] = f"n/a: {_DISPLAY[name]} failed: {type(e).__name__}: {_one_line(e)}"
                continue

            def timed(i: int, c: Callable[[], Any] = call) -> Any:
                with torch.no_grad():
                    return c()
            cands.append(Candidate(name, timed))


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
                sync(dev)
                t1 = time.perf_counter()
                yb = ref(x)
                sync(dev)
                hints = {"ours": t1 - t0, "torch": time.perf_counter() - t1}
                err = rel_err(ya, yb)
            tol = {torch.float32: 1e-3}.get(case.dtype, 5e-2)
            if not err <= tol:
                raise AssertionError(f"output differs from the nn.Conv2d model: rel. error {err:.3g} > {tol:g}")
            row["max_rel_err"] = err

            def infer(m: torch.nn.Module) -> Callable[[int], torch.Tensor]:
                def call(i: int) -> torch.Tensor:
                    with torch.no_grad():
                        return m(x)
                return call
            cands = [Candidate("ours", infer(ours)), Candidate("torch", infer(ref))]
        else:
            target = torch.randint(0, 1000, (case.batch,), generator=g).to(dev)
            amp = dev == "cuda"
            amp_dtype = case.dtype if case.dtype != torch.float32 else torch.float16

            def loss_of(m: torch.nn.Module) -> torch.Tensor:
                with torch.autocast(dev, dtype=amp_dtype, enabled=amp):
                    return F.cross_entropy(m(x), target)
            torch.manual_seed(5)
            t0 = time.perf_counter()
            la = loss_of(ours)
            sync(dev)
            t1 = time.perf_counter()
            torch.manual_seed(5)
            lb = loss_of(ref)
            sync(dev)
            # a training step costs about 3 forwards
            hints = {"ours": 3 * (t1 - t0), "torch": 3 * (time.perf_counter() - t1)}
            err = abs(la.item() - lb.item()) / max(1.0, abs(lb.item()))
            tol = 1e-3 if not amp else 3e-2
            if not err <= tol:
                raise AssertionError(f"training loss differs from the nn.Conv2d model: {la.item()} vs {lb.item()}")
            row["max_rel_err"] = err

            def step(m: torch.nn.Module) -> Callable[[int], None]:
                opt = torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9)
                scaler = torch.amp.GradScaler(dev, enabled=amp and amp_dtype == torch.float16)

                def call(i: int) -> None:
                    opt.zero_grad(set_to_none=True)
                    loss = loss_of(m)
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                return call
            cands = [Candidate("ours", step(ours)), Candidate("torch", step(ref))]
        if case.competitors and case.mode == "infer" and dev == "cpu":
            _add_competitors(case, settings, ref, x, row, cands, hints)
    except Exception as e:  # noqa: BLE001
        row.update(status="FAILED", error=f"{type(e).__name__}: {e}")
        return row
    budget = max(settings.budget_s, 1.0 if not settings.quick else 0.3)
    try:
        # With other runtimes in the rotation each sample waits for the others' threads to go idle.
        settle = 0.02 if len(cands) > 2 and dev == "cpu" else 0.0
        r = time_alternating(cands, settings, budget_s=budget, hints=hints, settle_s=settle)
    except Exception as e:  # noqa: BLE001
        row.update(status="FAILED", error=f"timing: {type(e).__name__}: {e}")
        return row
    if case.mode == "train" and settings.memory:
        # one more step each: peak bytes allocated above what was live before (as the layer rows)
        from .layer_run import _peak_bytes

        row["peak_mem_ours"] = _peak_bytes(lambda: cands[0].call(0), dev)
        row["peak_mem_torch"] = _peak_bytes(lambda: cands[1].call(0), dev)
    med = r["median"]
    row.update(status="ok", ours_ms=med["ours"] * 1e3, torch_ms=med["torch"] * 1e3,
               speedup=ratio_median(r["samples"], "torch", "ours"), rounds=r["rounds"],
               calls_per_sample=r["numbers"], images_per_s=case.batch / med["ours"],
               torch_images_per_s=case.batch / med["torch"],
               samples_ms={k: [round(v * 1e3, 6) for v in vs] for k, vs in r["samples"].items()})
    for name in case.competitors:
        if name in med:
            row[f"{name}_ms"] = med[name] * 1e3
            row[f"ours_over_{name}"] = ratio_median(r["samples"], "ours", name)
            row[f"{name}_speedup_vs_torch"] = ratio_median(r["samples"], "torch", name)
    if "inductor" in med:
        from torch import _dynamo

        _dynamo.reset()  # drop the compiled model and its guards
    return row

