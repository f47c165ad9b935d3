"""One model case: MobileNetV1/V2/V3-L/V3-S on our ops next to the nn.Conv2d
model, and ONNX Runtime.

Ours is ``mx.fuse(mx.convert(model).eval())`` with the same weights as the
nn.Conv2d model for inference; for training a step (forward, cross-entropy,
backward, SGD) of the unfused converted model, with AMP on CUDA.  On CPU
the batch-1 NCHW inference rows also time ONNX Runtime's inference of the
nn.Conv2d model (exported with ``torch.onnx``; its workers' spin-waiting
off, a short pause before each sample so no runtime's idle threads compete
with the one being timed).
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
import warnings
from typing import Any, Callable, Dict, Tuple

import torch
import torch.nn.functional as F

from .common import DTYPE_SHORT, LAYOUTS, Settings
from .layer_run import rel_err
from .suite import ModelCase
from .timing import Candidate, ratio_median, sync, time_alternating

__all__ = ["run_model_case"]


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


def _ort_session(model: torch.nn.Module, x: torch.Tensor, threads: int, tmpdir: str) -> Tuple[Any, str]:
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
        ort_note = None
        if case.with_ort:
            try:
                import numpy as np  # noqa: F401

                with tempfile.TemporaryDirectory() as td:
                    sess, name = _ort_session(ref, x.contiguous(), settings.threads, td)
                xn = x.contiguous().cpu().numpy()
                with torch.no_grad():
                    ref_out = ref(x)
                e = rel_err(torch.from_numpy(sess.run(None, {name: xn})[0]), ref_out)
                if not e <= 1e-3:
                    raise AssertionError(f"onnxruntime output differs from torch: rel. error {e:.3g}")
                cands.append(Candidate("ort", lambda i: sess.run(None, {name: xn})))
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

