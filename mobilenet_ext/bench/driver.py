"""The run: select the cases, measure the roofline, run every case under a
progress bar with an ETA, summarise and write results.json, results.md and
the plots to the folder it is given."""
from __future__ import annotations

import datetime
import json
import os
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import torch

from .common import DTYPE_SHORT, METHODS, SCHEMA, Settings
from .layer_run import run_layer_case
from .model_run import run_model_case
from .plots import write_plots
from .render import render_markdown
from .roofline import git_info, ladder_text, machine_info, measure_roofline, versions
from .suite import LayerCase, ModelCase, layer_cases, model_cases
from .targets import evaluate_targets, summarize_groups

__all__ = ["run", "fmt_dur"]


def _estimate_case_s(case: Union[LayerCase, ModelCase], settings: Settings, roof: Optional[Dict[str, Any]]) -> float:
    """Rough wall seconds one case will take (for the progress bar's ETA)."""
    if isinstance(case, ModelCase):
        peak = roof["gemm_GFLOPs"].get("f32", 50.0) if roof else 50.0
        # forward MACs at 224x224 (mx.profile); the models run at ~10% of the sgemm rate
        gmacs = {"mobilenet_v1": 0.569, "mobilenet_v2": 0.301, "mobilenet_v3_large": 0.217,
                 "mobilenet_v3_small": 0.056}[case.model]
        base = case.batch * gmacs * 2 * (3 if case.mode == "train" else 1) / (0.1 * peak) + 0.002
        rounds = settings.min_rounds
        budget = max(settings.budget_s, 1.0 if not settings.quick else 0.3)
        n = 2 + len(case.competitors)
        # setup of the other runtimes: ONNX export + session, OpenVINO compile, inductor's compilation
        setup = {"ort": 6.0, "openvino": 2.0, "inductor": 30.0}
        extra = sum(setup.get(c, 5.0) + 2 * base for c in case.competitors)
        settle = 2 * rounds * n * 0.02 if case.competitors else 0.0
        return max(budget, n * rounds * base) + 3 * base + extra + settle + 0.3
    bw = roof["copy_GBps"] if roof else 10.0
    peak = roof["gemm_GFLOPs"].get("f32", 50.0) if roof else 50.0
    # assume nn.Conv2d reaches 1/4 of the roofline and we a little more
    t = 4 * max(case.bytes() / (bw * 1e9), case.flops() / (peak * 1e9))
    t = max(t, 2e-5)
    timing = max(settings.budget_s, 2 * settings.min_rounds * t)
    extra = 6 * t + (4 * t if case.direction == "fwdbwd" and settings.memory else 0)
    return timing + extra + 0.01


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
    fma = (f", FMA peak {roof['fma_peak_GFLOPs']['f32']:.0f} ({roof['fma_peak_isa']})"
           if roof.get("fma_peak_GFLOPs") else "")
    print_fn(f"roofline: copy {roof['copy_GBps']:.1f} GB/s{ladder_text(roof)}, gemm GFLOP/s: {gemm}{fma}")
    all_cases = list(lc) + list(mc)
    est = [_estimate_case_s(c, settings, roof) for c in all_cases]
    print_fn(f"estimated time: {fmt_dur(sum(est))} (ETA {(datetime.datetime.now() + datetime.timedelta(seconds=sum(est))).strftime('%H:%M:%S')})")
    layers: List[Dict[str, Any]] = []
    models: List[Dict[str, Any]] = []
    bar: Any = None
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
                # never past the estimated total: tqdm sets `total` to None
                # once n passes it, and the bar format's {total:.0f} then
                # raised at the end of every run that outlasted its estimate
                bar.update(min(round(e, 1), max(0.0, bar.total - bar.n)))
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
        "machine": machine_info(settings), "versions": versions(), "git": git_info(),
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


def fmt_dur(s: float) -> str:
    """Seconds as ``42s`` or ``3m05s``."""
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"

