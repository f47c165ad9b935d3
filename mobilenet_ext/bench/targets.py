"""The summary of a run: geomean speedup per group, and the speed targets of issue #4."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from .common import MODEL_NAMES
from .timing import geomean


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

