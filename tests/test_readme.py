"""README is the front door: every Python code block in it runs as written,
the `./dev flops` block is what the command prints, and the Quickstart block
is the one CI runs (.ci/run reads it through tools/quickstart.py)."""
from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
sys.path.insert(0, str(ROOT / "tools"))
import quickstart  # noqa: E402


def _blocks(lang: str):
    return re.findall(r"^```" + lang + r"\n(.*?)^```$", README, re.M | re.S)


PY_BLOCKS = _blocks("python")


def test_readme_has_python_blocks():
    assert PY_BLOCKS, "README has no ```python block"


@pytest.mark.parametrize("i", range(len(PY_BLOCKS)))
def test_python_block_runs_as_written(i, tmp_path):
    # a fresh interpreter: the block must import what it uses itself
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-c", PY_BLOCKS[i]], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, f"README python block {i} failed:\n{PY_BLOCKS[i]}\n--- stderr ---\n{p.stderr[-3000:]}"


def test_flops_block_is_what_the_command_prints():
    from mobilenet_ext import flops

    m = re.search(r"`\./dev flops`.*?^```\n(.*?)^```$", README, re.M | re.S)
    assert m, "README has no block after the `./dev flops` paragraph"
    import argparse

    parser = argparse.ArgumentParser()
    flops.add_arguments(parser)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert flops.main(parser.parse_args([])) == 0
    assert m.group(1) == out.getvalue()


def test_quickstart_commands_are_read_from_readme():
    cmds = quickstart.commands(README)
    assert cmds == ["./dev bench --quick", "./dev test"]
    # the dev script knows each command it is given
    dev = (ROOT / "dev").read_text()
    for c in cmds:
        assert c.startswith("./dev ") and re.search(r"^\s+(\w+\|)*" + c.split()[1] + r"[|)]", dev, re.M), c
