"""benchmarks/op_profile.py: the per-op profile of a fused model finds every
replayed op, with FLOPs that add up to the model's."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "op_profile.py"


def _load():
    spec = importlib.util.spec_from_file_location("op_profile", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ROOF = {"fma_peak_GFLOPs": {"f32": 100.0}, "gemm_GFLOPs": {"f32": 50.0}, "copy_GBps": 20.0,
        "copy_GBps_ladder": [[2**20, 80.0], [2**26, 30.0]]}


@pytest.mark.parametrize("layout", ["cl", "nchw"])
def test_profile_small_model(layout):
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    op = _load()
    text = op.profile_model("mobilenet_v3_small", 1, 1, layout, rounds=1, roof=ROOF, size=64)
    assert "## mobilenet_v3_small, batch 1, 64x64" in text and "outside the ops" in text
    for name in ("inverted_residual_fused", "squeeze_excitation_", "linear_packed", "conv2d_small_cin_fused"):
        assert f"| {name} |" in text
    # the per-op MFLOP column (2 decimals) adds up to the stock model's count
    rows = [r.split("|") for r in text.splitlines() if r.startswith("| ") and r.split("|")[1].strip().isdigit()]
    mflop = sum(float(r[7]) for r in rows)
    torch.manual_seed(0)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        torchvision.models.mobilenet_v3_small().eval()(torch.randn(1, 3, 64, 64))
    assert mflop == pytest.approx(fc.get_total_flops() / 1e6, abs=0.005 * len(rows))


def test_cli_rejects_bad_arguments(capsys):
    op = _load()
    with pytest.raises(SystemExit):
        op.main(["--batch", "0"])
    assert "--batch" in capsys.readouterr().err
