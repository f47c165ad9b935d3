"""The summary of a run: geomean speedup per group, and the speed targets of
issues #4 and #14 as data.

Each target is one :class:`Target` row of ``TARGETS``: which rows it looks
at (``rows`` and the ``where`` conditions), which figure of each row
(``value``, optionally divided by ``per`` and scaled), the statistic over
those rows, the comparison and the goal.  :func:`evaluate_targets` evaluates
every row of the table the same way; a target whose rows are not in the run
is reported ``measured: None`` ("not measured").  Changing a goal, or adding
a target, is an edit of the table, not of code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from .common import MODEL_NAMES
from .timing import geomean

__all__ = ["Target", "TARGETS", "evaluate_target", "evaluate_targets", "summarize_groups"]

Row = Dict[str, Any]

# ==========================================================================
# Groups
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


# ==========================================================================
# Targets
# ==========================================================================
#: A condition on a row: (column, operator, operand). Operators: ``==``,
#: ``>=``, ``in`` (operand a tuple), ``has`` (the column is in the row),
#: ``not-none`` and ``nonzero`` (``row.get(column)`` is not None / is truthy).
Condition = Tuple[str, str, Any]

_CONDITIONS: Dict[str, Callable[[Row, str, Any], bool]] = {
    "==": lambda r, k, v: r[k] == v,
    ">=": lambda r, k, v: r[k] >= v,
    "in": lambda r, k, v: r[k] in v,
    "has": lambda r, k, v: k in r,
    "not-none": lambda r, k, v: r.get(k) is not None,
    "nonzero": lambda r, k, v: bool(r.get(k)),
}

#: Statistic over the selected values; ``None`` when there are none.
_STATISTICS: Dict[str, Callable[[List[float]], Optional[float]]] = {
    "geomean": geomean,
    "min": lambda xs: min(xs, default=None),
    "max": lambda xs: max(xs, default=None),
    "first": lambda xs: xs[0] if xs else None,
}

_COMPARISONS: Dict[str, Tuple[str, Callable[[float, float], bool]]] = {
    "ge": (">=", lambda measured, goal: measured >= goal),
    "le": ("<=", lambda measured, goal: measured <= goal),
}


@dataclass(frozen=True)
class Target:
    """One speed target.

    ``rows``: ``"layers"`` (the run's validated float32 layer rows; all
    validated rows when it has no float32 ones) or ``"models"`` (the
    validated model rows). ``where``: conditions every selected row meets.
    ``value``: the row's column; divided by ``per`` when given, a column of
    the row or ``"roofline.<key>[.<key>]"`` of the run's roofline (a missing
    or zero roofline figure leaves the target unmeasured); times ``scale``.
    ``statistic``: geomean, min, max or first over the selected rows.
    ``comparison``: ``"ge"`` (measured >= goal) or ``"le"``. ``name`` may
    hold ``{column}`` fields, filled from the first selected row (from
    ``name_defaults`` when none is selected). ``issue``: the issue that set
    the target.
    """

    name: str
    rows: str
    where: Tuple[Condition, ...]
    value: str
    statistic: str
    comparison: str
    goal: float
    unit: str
    per: Optional[str] = None
    scale: float = 1
    name_defaults: Mapping[str, Any] = field(default_factory=dict)
    issue: int = 4


def _dw(*more: Condition) -> Tuple[Condition, ...]:
    return (("op", "==", "dw"),) + more


def _pw(*more: Condition) -> Tuple[Condition, ...]:
    return (("op", "==", "pw"),) + more


#: Display names of the other runtimes of the model rows (``ours_over_<key>``).
_RUNTIMES = {"ort": "ONNX Runtime", "openvino": "OpenVINO", "inductor": "torch.compile (inductor)"}

#: The models whose rows #14's and #15's targets name (mobilenet_v1's rows
#: are reported beside them, outside those targets).
ISSUE_MODELS = ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")

#: The targets of issues #4, #14 and #15, in report order.
TARGETS: Tuple[Target, ...] = (
    *(Target(f"depthwise fwd {lay} b{b}: geomean speedup", "layers",
             _dw(("direction", "==", "fwd"), ("layout", "==", lay), ("batch", "==", b)),
             "speedup", "geomean", "ge", goal, "x")
      for lay, goal in (("nchw", 3.0), ("cl", 1.5)) for b in (1, 32)),
    Target("depthwise fwd, >= 8 MiB compulsory bytes: geomean % of copy bandwidth", "layers",
           _dw(("direction", "==", "fwd"), ("bytes", ">=", 8 * 2**20)),
           "GBps", "geomean", "ge", 50, "%", per="roofline.copy_GBps", scale=100),
    Target("depthwise fwd+bwd: geomean speedup", "layers", _dw(("direction", "==", "fwdbwd")),
           "speedup", "geomean", "ge", 4.0, "x"),
    Target("depthwise fwd+bwd 5x5/7x7: geomean speedup", "layers", _dw(("direction", "==", "fwdbwd"), ("k", ">=", 5)),
           "speedup", "geomean", "ge", 10.0, "x"),
    Target("pointwise fwd: geomean speedup", "layers", _pw(("direction", "==", "fwd")),
           "speedup", "geomean", "ge", 1.0, "x"),
    Target("pointwise fwd: slowest shape's speedup", "layers", _pw(("direction", "==", "fwd")),
           "speedup", "min", "ge", 0.85, "x"),
    Target("pointwise fwd, >= 0.2 GFLOP: geomean % of sgemm rate", "layers",
           _pw(("direction", "==", "fwd"), ("flops", ">=", 2e8)),
           "GFLOPs", "geomean", "ge", 80, "%", per="roofline.gemm_GFLOPs.f32", scale=100),
    Target("pointwise bwd: geomean speedup", "layers", _pw(("direction", "==", "bwd")),
           "speedup", "geomean", "ge", 1.0, "x"),
    Target("fwd+bwd peak memory: worst ours / nn.Conv2d", "layers",
           (("peak_mem_ours", "not-none", None), ("peak_mem_torch", "nonzero", None)),
           "peak_mem_ours", "max", "le", 1.0, "x", per="peak_mem_torch"),
    Target("mobilenet_v2 b1 inference (convert+fuse): time / ONNX Runtime's", "models",
           (("model", "==", "mobilenet_v2"), ("mode", "==", "infer"), ("batch", "==", 1), ("layout", "==", "nchw"),
            ("ours_over_ort", "has", None)),
           "ours_over_ort", "first", "le", 1.3, "x"),
    *(Target(f"{m} training step b{{batch}}: speedup (geomean of layouts)", "models",
             (("model", "==", m), ("mode", "==", "train"), ("batch", ">=", 32)),
             "speedup", "geomean", "ge", 2.0, "x", name_defaults={"batch": 32})
      for m in MODEL_NAMES),
    # issue #15: the training step of its three models at batch 32 (the
    # worst one's speedup per layout) and its peak memory
    *(Target(f"training step b32 {lay}: worst model's speedup (v2, v3-L, v3-S)", "models",
             (("mode", "==", "train"), ("batch", "==", 32), ("layout", "==", lay), ("model", "in", ISSUE_MODELS)),
             "speedup", "min", "ge", goal, "x", issue=15)
      for lay, goal in (("nchw", 2.5), ("cl", 1.8))),
    Target("training step b32: worst peak memory ours / stock (v2, v3-L, v3-S)", "models",
           (("mode", "==", "train"), ("batch", "==", 32), ("model", "in", ISSUE_MODELS),
            ("peak_mem_ours", "not-none", None), ("peak_mem_torch", "nonzero", None)),
           "peak_mem_ours", "max", "le", 0.85, "x", per="peak_mem_torch", issue=15),
    # issue #14: whole-model inference (convert+fuse) against other runtimes,
    # its three models (the worst one's ratio), each input layout
    *(Target(f"b{b} inference {lay} (convert+fuse): worst model's time / {_RUNTIMES[rt]}'s (v2, v3-L, v3-S)",
             "models",
             (("mode", "==", "infer"), ("batch", "==", b), ("layout", "==", lay), ("model", "in", ISSUE_MODELS),
              (f"ours_over_{rt}", "not-none", None)),
             f"ours_over_{rt}", "max", "le", 1.0, "x", issue=14)
      for b, rt in ((1, "ort"), (1, "openvino"), (32, "ort")) for lay in ("nchw", "cl")),
)


def _roofline_figure(roof: Mapping[str, Any], path: str) -> Optional[float]:
    """``roof["a"]["b"]`` for ``path == "a.b"`` (None where a key is missing)."""
    v: Any = roof
    for k in path.split("."):
        if not isinstance(v, Mapping) or k not in v:
            return None
        v = v[k]
    return v


def evaluate_target(t: Target, rows: Mapping[str, List[Row]], roof: Mapping[str, Any]) -> Dict[str, Any]:
    """One target on ``rows`` (``{"layers": [...], "models": [...]}``): its
    results.json entry (name, target, goal, op, measured, unit, n, ok)."""
    sel = [r for r in rows[t.rows] if all(_CONDITIONS[op](r, k, v) for k, op, v in t.where)]
    values: Optional[Iterable[float]]
    if t.per is not None and t.per.startswith("roofline."):
        den = _roofline_figure(roof, t.per[len("roofline."):])
        values = [t.scale * r[t.value] / den for r in sel] if den else None
    elif t.per is not None:
        values = [t.scale * r[t.value] / r[t.per] for r in sel]
    else:
        values = [r[t.value] * t.scale if t.scale != 1 else r[t.value] for r in sel]
    measured = None if values is None else _STATISTICS[t.statistic](list(values))
    name = t.name
    if t.name_defaults:
        name = name.format(**{k: sel[0][k] if sel else d for k, d in t.name_defaults.items()})
    sign, holds = _COMPARISONS[t.comparison]
    return {"name": name, "issue": t.issue, "target": f"{sign} {t.goal:g}{t.unit}", "goal": t.goal,
            "op": t.comparison, "measured": measured, "unit": t.unit, "n": len(sel),
            "ok": None if measured is None else holds(measured, t.goal)}


def evaluate_targets(layers: List[Dict[str, Any]], models: List[Dict[str, Any]], roof: Dict[str, Any],
                     targets: Iterable[Target] = TARGETS) -> List[Dict[str, Any]]:
    """The speed targets (by default those of issues #4 and #14), measured on this
    run's rows (``measured`` is None when the run did not include the rows a
    target needs)."""
    ok = [r for r in layers if r.get("status") == "ok" and r["dtype"] in ("f32",)]
    if not ok:
        ok = [r for r in layers if r.get("status") == "ok"]
    rows = {"layers": ok, "models": [r for r in models if r.get("status") == "ok"]}
    return [evaluate_target(t, rows, roof) for t in targets]

