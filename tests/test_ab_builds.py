"""benchmarks/ab_builds.py: two copies of the built package, each measured in
its own process (the one it names), alternating."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mobilenet_ext as mx

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "ab_builds.py"
PKG = Path(mx.__file__).resolve().parent


def test_two_builds_alternate(tmp_path):
    if not any(PKG.glob("_C*")):
        pytest.skip("the package is not built in place")
    for side in ("a", "b"):
        shutil.copytree(PKG, tmp_path / side / "mobilenet_ext", ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, str(SCRIPT), "--a", str(tmp_path / "a"), "--b", str(tmp_path / "b"),
                          "--case", "mobilenet_v3_small:cl:infer1", "--rounds", "2", "--threads", "1"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert sum(line.startswith("round ") for line in lines) == 2
    assert lines[-1].startswith("mobilenet_v3_small:cl:infer1: median B/A ")


@pytest.mark.parametrize("args, message", [
    (["--case", "mobilenet_v2:cl:step"], "--case must be"),
    (["--case", "mobilenet_v2:nhwc:train"], "--case must be"),
])
def test_bad_case_is_an_error(tmp_path, args, message):
    for side in ("a", "b"):
        (tmp_path / side / "mobilenet_ext").mkdir(parents=True)
    out = subprocess.run([sys.executable, str(SCRIPT), "--a", str(tmp_path / "a"), "--b", str(tmp_path / "b"), *args],
                         capture_output=True, text=True)
    assert out.returncode == 2 and message in out.stderr


def test_folder_without_the_package_is_an_error(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--a", str(tmp_path), "--b", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "holds no mobilenet_ext/" in out.stderr
