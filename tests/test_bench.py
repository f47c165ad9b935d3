"""The benchmark CLI (``python -m mobilenet_ext bench``) on tiny subsets.

These tests check what the benchmark writes and how it fails; they never
assert timings (speed targets live in the benchmark's own output)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

import mobilenet_ext as mx
from mobilenet_ext import bench as bm
from mobilenet_ext.__main__ import main as cli

# Two cheap cases: a depthwise fwd+bwd (with peak memory) and a pointwise forward.
TINY = r"^(dw3x3/s1 144x56x56 b1 cl fwdbwd|pw 320->1280 7x7 b1 nchw fwd) "
FAST = ["--budget", "0.01", "--min-rounds", "2", "--no-progress", "--threads", "1"]


def _run(tmp_path, *extra):
    out = tmp_path / "out"
    rc = cli(["bench", "--suite", "layers", "--filter", TINY, "--out", str(out), "--label", "t", *FAST, *extra])
    return rc, out


def test_layer_shapes_dedup_and_models():
    shapes = bm.layer_shapes()
    keys = [s for s, _ in shapes]
    assert len(keys) == len(set(keys)), "shapes must be deduplicated"
    names = {s.name: users for s, users in shapes}
    for q in bm.QUICK_SHAPES:
        assert q in names
    # every model contributes, ConvNeXt-T's 7x7 layers are there
    users = " ".join(u for _, us in shapes for u in us)
    for m in ("V1", "V2", "V3-L", "V3-S", "ConvNeXt-T"):
        assert m in users
    assert any(s.kind == "dw" and s.k == 5 for s in keys)
    assert {s.group for s in keys} == {"dw", "pw", "pw-se"}
    # MobileNetV1's 13 depthwise layers are all found (some shapes shared)
    v1 = bm.model_layer_shapes("mobilenet_v1")
    assert sum(s.kind == "dw" for s in v1) == 13 and sum(s.kind == "pw" for s in v1) == 13


def test_full_suite_covers_everything():
    s = bm.Settings.for_mode("cpu", 1, [torch.float32], quick=False)
    cases = bm.layer_cases(s)
    shapes = bm.layer_shapes()
    assert len(cases) == len(shapes) * 2 * 2 * 3  # batches x layouts x directions
    assert {c.batch for c in cases} == {1, 32}
    models = bm.model_cases(s, with_ort=True)
    assert {c.model for c in models} == set(bm.MODEL_NAMES)
    # the CPU inference rows (4 models x 2 batches x 2 layouts) time ONNX Runtime, OpenVINO and inductor
    assert sum(c.with_ort for c in models) == 16 and all(c.competitors for c in models if c.mode == "infer")
    assert {c.mode for c in models} == {"infer", "train"}


def test_list_and_filter(capsys):
    assert cli(["bench", "--list", "--filter", r"^dw7x7/s1 768x7x7 b32 nchw"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(l.startswith("dw7x7/s1 768x7x7 b32 nchw") for l in lines)
    assert "ConvNeXt-T" in lines[0]


def test_tiny_run_writes_json_md_plots(tmp_path, capsys):
    rc, out = _run(tmp_path)
    text = capsys.readouterr().out
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["schema"] == bm.SCHEMA and res["label"] == "t" and res["threads"] == 1
    for k in ("machine", "versions", "git", "roofline", "groups", "targets", "command", "created"):
        assert k in res
    assert res["machine"]["mobilenet_ext_cpu_isa"] == mx.cpu_isa()
    assert res["git"]["commit"] is None or (len(res["git"]["commit"]) == 40 and res["git"]["dirty"] in (True, False))
    assert "avx512" in res["machine"] and "cpu_model" in res["machine"]
    assert res["roofline"]["copy_GBps"] > 0 and res["roofline"]["gemm_GFLOPs"]["f32"] > 0
    assert res["failures"] == 0
    ids = [r["id"] for r in res["layers"]]
    assert ids == ["dw3x3/s1 144x56x56 b1 cl fwdbwd f32", "pw 320->1280 7x7 b1 nchw fwd f32"]
    for r in res["layers"]:
        assert r["status"] == "ok"
        for k in ("ours_ms", "torch_ms", "speedup", "GBps", "GFLOPs", "pct_roofline", "rounds", "models",
                  "samples_ms", "max_rel_err", "bytes", "flops"):
            assert k in r, k
        assert r["rounds"] >= 2 and len(r["samples_ms"]["ours"]) == r["rounds"]
    dw = res["layers"][0]
    assert dw["peak_mem_ours"] is not None and dw["peak_mem_torch"] is not None
    assert "V2" in " ".join(dw["models"])
    # table: one row per case with a speedup column, geomean per group, targets
    assert "speedup" in text and "dw3x3/s1 144x56x56 b1 cl fwdbwd f32" in text
    assert re.search(r"dw cl b1 fwdbwd f32\s+1\s+\d+\.\d+x", text)
    assert re.search(r"^target +issue +goal", text, re.M) and "#4" in text
    md = (out / "results.md").read_text()
    assert "| pw 320->1280 7x7 b1 nchw fwd f32 |" in md and "## Targets" in md
    for png in ("speedup.png", "roofline.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_render_readme(tmp_path, capsys):
    rc, out = _run(tmp_path, "--no-plots", "--no-memory")
    assert rc == 0
    capsys.readouterr()
    assert cli(["bench", "--render-readme", str(out / "results.json")]) == 0
    md = capsys.readouterr().out
    assert "| group |" in md and "Command: `" in md and "| target | issue |" in md


def test_validation_failure_marks_failed_and_exits_1(tmp_path, monkeypatch, capsys):
    real = mx.ops.depthwise_conv2d
    monkeypatch.setattr(mx.ops, "depthwise_conv2d", lambda *a, **k: real(*a, **k) * 1.01)
    rc, out = _run(tmp_path, "--no-plots")
    captured = capsys.readouterr()
    assert rc == 1
    res = json.loads((out / "results.json").read_text())
    dw, pw = res["layers"]
    assert dw["status"] == "FAILED" and "differs from F.conv2d" in dw["error"]
    assert pw["status"] == "ok"
    assert res["failures"] == 1
    assert "FAILED" in captured.out and "FAILED validation" in captured.err


def test_model_case_runs(monkeypatch):
    s = bm.Settings.for_mode("cpu", 1, [torch.float32], quick=True, budget_s=0.01, min_rounds=2)
    row = bm.run_model_case(bm.ModelCase("mobilenet_v3_small", "infer", 1, "cl", torch.float32), s)
    assert row["status"] == "ok", row.get("error")
    assert row["speedup"] > 0 and row["max_rel_err"] < 1e-3 and "ort_ms" not in row


@pytest.mark.parametrize("argv, needle", [
    (["--threads", "0"], "--threads must be >= 1"),
    (["--dtype", "float16"], "--dtype float16: only float32"),
    (["--dtype", "float8"], "--dtype must be"),
    (["--filter", "("], "--filter: invalid regular expression"),
    (["--device", "tpu"], "--device must be"),
    (["--budget", "0"], "--budget must be > 0"),
    (["--label", "a/b"], "--label may only contain"),
    (["--filter", "no-such-case", "--no-progress"], "matches no case"),
])
def test_argument_errors(argv, needle, capsys, tmp_path):
    rc = cli(["bench", "--out", str(tmp_path / "o"), *argv])
    assert rc == 2
    assert needle in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_unavailable_is_clear(capsys):
    assert cli(["bench", "--device", "cuda"]) == 2
    assert "--device cuda: CUDA is not available" in capsys.readouterr().err


def test_render_readme_bad_file(tmp_path, capsys):
    p = tmp_path / "x.json"
    p.write_text("{}")
    assert cli(["bench", "--render-readme", str(p)]) == 2
    assert "not a" in capsys.readouterr().err


def test_alternation_order_and_ratio():
    """Rounds alternate A B, B A, ...; the speedup is the median of per-round ratios."""
    calls = []
    s = bm.Settings.for_mode("cpu", 1, [torch.float32], quick=True, budget_s=1e-4, min_rounds=4)
    s.min_sample_s = 0.0
    a = bm.Candidate("ours", lambda i: calls.append("A"))
    b = bm.Candidate("torch", lambda i: calls.append("B"))
    r = bm.time_alternating([a, b], s)
    assert r["rounds"] == 4 and len(r["samples"]["ours"]) == 4 and len(r["samples"]["torch"]) == 4
    timed = "".join(calls[2:])  # after one calibration call each
    per_call = r["numbers"]
    blocks = []
    i = 0
    while i < len(timed):  # collapse each measurement (warm-up + timed calls) into one letter
        j = i
        while j < len(timed) and timed[j] == timed[i]:
            j += 1
        blocks.append(timed[i])
        i = j
    assert "".join(blocks) == "ABABA"  # A B | B A | A B | B A
    assert per_call["ours"] >= 1
    assert bm.ratio_median({"t": [2.0, 4.0, 9.0], "o": [1.0, 1.0, 1.0]}, "t", "o") == 4.0
    assert bm.geomean([1.0, 4.0]) == pytest.approx(2.0)


def test_update_readme_between_markers(tmp_path, capsys):
    rc, out = _run(tmp_path, "--no-plots", "--no-memory")
    assert rc == 0
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nbefore\n<!-- bench-table:begin -->\nold table\n<!-- bench-table:end -->\nafter\n")
    assert cli(["bench", "--render-readme", str(out / "results.json"), "--update-readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and "| group |" in text
    assert text.startswith("# x\n\nbefore\n<!-- bench-table:begin -->") and text.endswith("<!-- bench-table:end -->\nafter\n")
    readme.write_text("no markers")
    assert cli(["bench", "--render-readme", str(out / "results.json"), "--update-readme", str(readme)]) == 2
    assert "markers" in capsys.readouterr().err


def test_outputs_go_under_the_working_directory_never_the_package(tmp_path, monkeypatch, capsys):
    """Results and --update-readme's default follow the working directory, not
    where the package is installed (site-packages for a non-editable install)."""
    from mobilenet_ext.bench import cli as bench_cli

    pkg = Path(mx.__file__).resolve().parent
    for cwd in (tmp_path, tmp_path / "a" / "b"):
        for out in (None, "rel/out"):
            p = bench_cli.resolve_out_dir(out, "lbl", cwd=cwd)
            assert p.is_absolute() and p.is_relative_to(cwd) and not p.resolve().is_relative_to(pkg), p
    assert bench_cli.resolve_out_dir(None, "lbl", cwd=tmp_path) == tmp_path / "benchmarks" / "results" / "lbl"
    assert bench_cli.resolve_out_dir(tmp_path / "abs", "lbl", cwd=pkg) == tmp_path / "abs"
    # a run without --out writes below the working directory, and nothing into the package
    label = f"t-cwd-{os.getpid()}"
    beside_pkg = pkg.parent / "benchmarks" / "results" / label
    assert not beside_pkg.exists()
    monkeypatch.chdir(tmp_path)
    rc = cli(["bench", "--suite", "layers", "--filter", TINY, "--label", label, *FAST, "--no-plots", "--no-memory"])
    assert rc == 0
    assert "wrote " + str(tmp_path / "benchmarks" / "results" / label) in capsys.readouterr().out
    res = tmp_path / "benchmarks" / "results" / label / "results.json"
    assert json.loads(res.read_text())["label"] == label
    assert not beside_pkg.exists()
    assert not [p for p in pkg.rglob("*") if label in p.name or p.name in ("results.json", "results.md")]
    # a working directory inside the package is refused
    monkeypatch.chdir(pkg)
    assert cli(["bench", "--label", label, *FAST]) == 2
    assert "inside the mobilenet_ext package" in capsys.readouterr().err
    # --update-readme without a path: README.md of the working directory, a clear error when there is none
    monkeypatch.chdir(tmp_path)
    assert cli(["bench", "--render-readme", str(res), "--update-readme"]) == 2
    err = capsys.readouterr().err
    assert "no README.md in the current directory" in err and str(tmp_path) in err
    (tmp_path / "README.md").write_text("x\n<!-- bench-table:begin -->\nold\n<!-- bench-table:end -->\n")
    assert cli(["bench", "--render-readme", str(res), "--update-readme"]) == 0
    text = (tmp_path / "README.md").read_text()
    assert "old" not in text and "| group |" in text


def test_model_train_case_reports_peak_memory():
    from mobilenet_ext.bench.targets import TARGETS, evaluate_target

    s = bm.Settings.for_mode("cpu", 1, [torch.float32], quick=True, budget_s=0.01, min_rounds=2)
    row = bm.run_model_case(bm.ModelCase("mobilenet_v3_small", "train", 2, "nchw", torch.float32), s)
    assert row["status"] == "ok", row.get("error")
    assert row["peak_mem_ours"] > 0 and row["peak_mem_torch"] > 0
    # #15's memory target reads them (on batch-32 rows)
    t = next(t for t in TARGETS if t.name.startswith("training step b32: worst peak memory"))
    r32 = dict(row, batch=32)
    got = evaluate_target(t, {"layers": [], "models": [r32]}, {})
    assert got["n"] == 1 and abs(got["measured"] - row["peak_mem_ours"] / row["peak_mem_torch"]) < 1e-9
