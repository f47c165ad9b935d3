"""The other runtimes of the benchmark's model rows (issue #14): ONNX Runtime,
OpenVINO and torch.compile (inductor) next to ours, their columns in
results.json and the rendered tables, and "n/a: ..." instead of a failure
when one is missing.

Like tests/test_bench.py these never assert timings, only that the figures
are there, numeric and validated (or n/a with the reason)."""
from __future__ import annotations

import importlib.util
import json
import math
import shutil
import sys

import pytest
import torch

from mobilenet_ext import bench as bm
from mobilenet_ext.__main__ import main as cli
from mobilenet_ext.bench import model_run

ROW = "model mobilenet_v3_small infer b1 nchw f32"
FAST = ["--budget", "0.01", "--min-rounds", "2", "--no-progress", "--threads", "1", "--no-plots"]
HAVE_OPENVINO = importlib.util.find_spec("openvino") is not None
HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None
HAVE_CXX = any(shutil.which(c) for c in ("g++", "c++", "clang++"))


def _settings():
    return bm.Settings.for_mode("cpu", 1, [torch.float32], quick=True, budget_s=0.01, min_rounds=2)


def _numeric(row, key):
    v = row.get(key)
    return isinstance(v, float) and math.isfinite(v) and v > 0


def test_suite_rows_with_other_runtimes():
    """Every CPU inference row (b1 and b32, both layouts) times all three;
    training rows and CUDA none; --quick: ORT and OpenVINO, no inductor."""
    s = bm.Settings.for_mode("cpu", 1, [torch.float32], quick=False)
    cases = bm.model_cases(s, with_ort=True)
    infer = [c for c in cases if c.mode == "infer"]
    assert len(infer) == 16 and all(c.competitors == bm.COMPETITORS for c in infer)
    assert bm.COMPETITORS == ("ort", "openvino", "inductor")
    assert not any(c.competitors for c in cases if c.mode == "train")
    assert {(c.batch, c.layout) for c in infer} == {(1, "nchw"), (1, "cl"), (32, "nchw"), (32, "cl")}
    assert not any(c.competitors for c in bm.model_cases(s, with_ort=False))
    q = bm.model_cases(bm.Settings.for_mode("cpu", 1, [torch.float32], quick=True), with_ort=True)
    assert q[0].competitors == ("ort", "openvino") and q[0].with_ort
    gpu = bm.Settings.for_mode("cuda", 1, [torch.float32], quick=False)
    assert not any(c.competitors for c in bm.model_cases(gpu, with_ort=True))


@pytest.mark.skipif(not HAVE_OPENVINO, reason="openvino is not installed")
def test_model_row_has_openvino_and_inductor_columns(tmp_path, capsys):
    """One small model at batch 1 through the CLI: the OpenVINO and inductor
    columns (and ORT's) are numeric, validated, in f32 with the asked
    threads, and in results.json, results.md, the table and the targets."""
    out = tmp_path / "out"
    rc = cli(["bench", "--suite", "models", "--filter", "^" + ROW, "--out", str(out), "--label", "t", *FAST])
    text = capsys.readouterr().out
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    (row,) = res["models"]
    assert row["status"] == "ok" and row["id"] == ROW
    runtimes = ["openvino"] + (["ort"] if HAVE_ORT else [])
    if HAVE_CXX:
        runtimes.append("inductor")
    elif row.get("inductor_note"):
        assert row["inductor_note"].startswith("n/a: ")
    for name in runtimes:
        assert not row.get(f"{name}_note"), row.get(f"{name}_note")
        for key in (f"{name}_ms", f"ours_over_{name}", f"{name}_speedup_vs_torch"):
            assert _numeric(row, key), (key, row.get(key))
        assert row[f"{name}_rel_err"] <= model_run.COMPETITOR_TOL
        assert len(row["samples_ms"][name]) == row["rounds"] == len(row["samples_ms"]["ours"])
        # ours/X is the median of the per-round ratios
        assert row[f"ours_over_{name}"] == pytest.approx(
            bm.ratio_median(row["samples_ms"], "ours", name), rel=1e-4)
    cfg = row["openvino_config"]
    assert cfg["inference_precision"] == "f32" and cfg["threads"] == 1 and cfg["hint"] == "LATENCY"
    assert "f32" in cfg["runtime_precisions"]
    assert not {"bf16", "f16"} & set(cfg["runtime_precisions"])
    if "inductor" in runtimes:
        assert row["inductor_threads"] == 1 and row["inductor_compile_s"] > 0
    assert res["versions"]["openvino"]
    assert "openvino" in res["methods"] and "inductor" in res["methods"]
    # terminal table and results.md carry the columns
    assert "ours/OV" in text and "ours/ind" in text
    line = next(l for l in text.splitlines() if l.startswith(ROW))
    assert f"{row['ours_over_openvino']:.2f}" in line
    md = (out / "results.md").read_text()
    assert "| ours/OpenVINO |" in md and "| ours/inductor |" in md
    md_row = next(l for l in md.splitlines() if l.startswith(f"| {ROW} |"))
    assert f"| {row['ours_over_openvino']:.2f} |" in md_row
    # the issue #14 targets see the row
    t = {x["name"]: x for x in res["targets"]}
    ov = t["b1 inference nchw (convert+fuse): worst model's time / OpenVINO's (v2, v3-L, v3-S)"]
    assert ov["issue"] == 14 and ov["n"] == 1 and ov["measured"] == pytest.approx(row["ours_over_openvino"])
    assert t["b1 inference cl (convert+fuse): worst model's time / OpenVINO's (v2, v3-L, v3-S)"]["measured"] is None
    assert cli(["bench", "--render-readme", str(out / "results.json")]) == 0
    readme = capsys.readouterr().out
    assert "| ours/ORT | ours/OpenVINO | ours/inductor |" in readme


def _block_import(monkeypatch, name):
    """Make ``import name`` fail as if the package were not installed."""
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.filterwarnings("ignore:dynamo_pgo force disabled")
def test_missing_runtimes_say_na(monkeypatch):
    """openvino and onnxruntime not importable, torch.compile failing (no C++
    compiler): the row is still ok (ours vs torch timed) and each column is
    "n/a: <why>" in results.json and the rendered tables."""
    from torch._inductor import config as ind_config

    _block_import(monkeypatch, "openvino")
    _block_import(monkeypatch, "onnxruntime")
    case = bm.ModelCase("mobilenet_v3_small", "infer", 1, "nchw", torch.float32, bm.COMPETITORS)
    # no usable C++ compiler, and no cached kernels to fall back on
    with ind_config.patch({"force_disable_caches": True, "cpp.cxx": ("/nonexistent/bin/c++",)}):
        row = bm.run_model_case(case, _settings())
    assert row["status"] == "ok", row.get("error")
    assert row["speedup"] > 0 and set(row["samples_ms"]) == {"ours", "torch"}
    assert row["openvino_note"].startswith("n/a: openvino not installed")
    assert row["ort_note"].startswith("n/a: onnxruntime not installed")
    assert row["inductor_note"].startswith("n/a: torch.compile (inductor) failed")
    for name in bm.COMPETITORS:
        assert f"{name}_ms" not in row and f"ours_over_{name}" not in row
    res = {"models": [row], "layers": [], "groups": [],
           "targets": bm.evaluate_targets([], [row], {})}
    table = bm.render_table(res)
    line = next(l for l in table.splitlines() if l.startswith(case.id))
    assert line.split()[-7:] == ["n/a"] * 7  # ORT ms, ours/ORT, torch/ORT, OV ms, ours/OV, ind. ms, ours/ind
    assert "note: n/a: openvino not installed" in table
    md_row = next(l for l in bm.render_markdown(_with_header(res)).splitlines() if l.startswith(f"| {case.id} |"))
    assert "| n/a: openvino not installed" in md_row and "| n/a: onnxruntime not installed" in md_row
    readme = bm.render_readme(_with_header(res))
    assert "| n/a | n/a | n/a |" in readme and "openvino not installed" in readme
    # the targets that need those columns are not measured, not failed
    t14 = [t for t in res["targets"] if t["issue"] == 14]
    assert t14 and all(t["measured"] is None and t["ok"] is None for t in t14)


def _with_header(res):
    """``res`` with the run metadata the markdown renderers print."""
    roof = {"copy_GBps": 10.0, "gemm_GFLOPs": {"f32": 100.0}}
    return dict(res, label="t", command="x", created="now", threads=1, machine={}, git={},
                versions={"torch": torch.__version__}, roofline=roof)


def test_competitor_output_is_checked_relative_to_its_scale(monkeypatch):
    """A runtime whose output is off by 1% of the logits' scale (what a
    bfloat16 run gives) is n/a, even though the logits are ~1e-2 and an
    absolute 1e-3 would pass it."""
    real = model_run._inductor_model

    def off_by_one_percent(model, x, threads):
        call, s = real(model, x, threads)
        return (lambda: call() * 1.01), s

    if not HAVE_CXX:
        pytest.skip("needs a C++ compiler for torch.compile")
    monkeypatch.setattr(model_run, "_inductor_model", off_by_one_percent)
    case = bm.ModelCase("mobilenet_v3_small", "infer", 1, "nchw", torch.float32, ("inductor",))
    row = bm.run_model_case(case, _settings())
    assert row["status"] == "ok", row.get("error")
    assert "output differs from torch's" in row["inductor_note"] and "inductor_ms" not in row
    assert row["inductor_note"].startswith("n/a: ")


def _openvino_has_bf16():
    if not HAVE_OPENVINO:
        return False
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.mark.skipif(not _openvino_has_bf16(),
                    reason="needs openvino on a CPU with bfloat16 inference (AMX, AVX512_BF16)")
def test_openvino_not_in_f32_is_na(monkeypatch):
    """Without INFERENCE_PRECISION_HINT=f32 OpenVINO infers in bfloat16 on
    such a CPU: the precision read back from the compiled model catches it."""
    monkeypatch.setattr(model_run, "OPENVINO_CONFIG", {"PERFORMANCE_HINT": "LATENCY"})
    case = bm.ModelCase("mobilenet_v3_small", "infer", 1, "nchw", torch.float32, ("openvino",))
    row = bm.run_model_case(case, _settings())
    assert row["status"] == "ok", row.get("error")
    assert row["openvino_note"].startswith("n/a: openvino failed: RuntimeError: OpenVINO would not run in f32")
    assert "openvino_ms" not in row


def test_issue14_targets_take_the_worst_model():
    def row(model, batch, layout, **kw):
        return dict(status="ok", model=model, mode="infer", batch=batch, layout=layout, speedup=1.0, **kw)

    rows = [row("mobilenet_v2", 1, "nchw", ours_over_ort=0.8, ours_over_openvino=0.9),
            row("mobilenet_v3_small", 1, "nchw", ours_over_ort=1.2, ours_over_openvino=0.7),
            row("mobilenet_v1", 1, "nchw", ours_over_ort=0.5, openvino_note="n/a: openvino not installed"),
            row("mobilenet_v2", 32, "cl", ours_over_ort=0.95),
            row("mobilenet_v2", 1, "cl", ort_note="n/a: onnxruntime not installed")]
    t = {x["name"]: x for x in bm.evaluate_targets([], rows, {})}
    # the issue's three models only: mobilenet_v1's row is left out
    ort = t["b1 inference nchw (convert+fuse): worst model's time / ONNX Runtime's (v2, v3-L, v3-S)"]
    assert ort["measured"] == 1.2 and ort["n"] == 2 and ort["ok"] is False and ort["target"] == "<= 1x"
    ov = t["b1 inference nchw (convert+fuse): worst model's time / OpenVINO's (v2, v3-L, v3-S)"]
    assert ov["measured"] == 0.9 and ov["n"] == 2 and ov["ok"] is True
    assert t["b32 inference cl (convert+fuse): worst model's time / ONNX Runtime's (v2, v3-L, v3-S)"]["measured"] == 0.95
    assert t["b1 inference cl (convert+fuse): worst model's time / ONNX Runtime's (v2, v3-L, v3-S)"]["measured"] is None
    # issue #4's mobilenet_v2 target stays on its NCHW row
    assert t["mobilenet_v2 b1 inference (convert+fuse): time / ONNX Runtime's"]["measured"] == 0.8
