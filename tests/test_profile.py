"""MACs/params profiler against the MobileNet papers and torch's flop counter."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import mobilenet_ext as mx
from mobilenet_ext import models as M
from mobilenet_ext.flops import PUBLISHED, V1_PAPER, main, add_arguments, profile


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: the suite shares two cores with other jobs, where
    OpenMP spinning makes small multi-threaded convolutions ~100x slower."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("width,res,paper_macs,paper_params", V1_PAPER)
def test_v1_paper_tables_6_and_7(width, res, paper_macs, paper_params):
    r = profile(M.mobilenet_v1(width_mult=width), (1, 3, res, res))
    assert abs(r.macs / 1e6 - paper_macs) / paper_macs < 0.015
    # the paper prints params to 0.1M: equal after the same rounding, with or without BatchNorm
    assert round(r.layer_params / 1e6, 1) == paper_params
    assert round(r.params / 1e6, 1) == paper_params


def test_v1_exact_counts_and_1x1_share():
    r = profile(M.mobilenet_v1())
    assert r.macs == 568_740_352 and r.layer_params == 4_210_088 and r.params == 4_231_976
    assert abs(100 * r.share("conv1x1") - 95.0) <= 1.5
    assert abs(100 * r.share("conv1x1") - 94.86) < 0.01  # paper Table 2
    assert abs(100 * r.share("depthwise") - 3.06) < 0.01
    assert abs(sum(l.share for l in r.layers) - 1.0) < 1e-9
    assert len(r.layers) == 1 + 26 + 1


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"])
def test_ext_layers_counted_like_conv2d(name):
    a = profile(getattr(M, name)(backend="ext"))
    b = profile(getattr(M, name)(backend="torch"))
    assert (a.macs, a.params, a.layer_params) == (b.macs, b.params, b.layer_params)
    assert [(l.name, l.kind, l.output_shape, l.macs, l.params) for l in a.layers] == \
           [(l.name, l.kind, l.output_shape, l.macs, l.params) for l in b.layers]
    assert {l.type for l in a.layers} >= {"DepthwiseConv2d", "PointwiseConv2d", "Conv2d", "Linear"}


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small"])
def test_matches_torchvision_model_and_published(name):
    ours = profile(getattr(M, name)())
    tv = profile(getattr(torchvision.models, name)())
    assert (ours.macs, ours.params) == (tv.macs, tv.params)
    p_macs, p_params = PUBLISHED[name]
    assert abs(ours.macs / 1e6 - p_macs) / p_macs < 0.015
    meta = getattr(torchvision.models, {"mobilenet_v2": "MobileNet_V2_Weights",
                                        "mobilenet_v3_small": "MobileNet_V3_Small_Weights"}[name]).IMAGENET1K_V1.meta
    assert round(ours.macs / 1e9, 3) == meta["_ops"] and ours.params == meta["num_params"]


def test_agrees_with_torch_flop_counter():
    # V1 has only convs and an FC: FLOPs = 2 * MACs, our ops via their registered formulas
    for backend in ("ext", "torch"):
        m = M.mobilenet_v1(width_mult=0.5, backend=backend).eval()
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            m(torch.zeros(2, 3, 96, 96))
        assert fc.get_total_flops() == 2 * profile(m, (2, 3, 96, 96)).macs


def test_batch_grouped_conv_and_mode_kept():
    m = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, padding=1, groups=4), torch.nn.Flatten(), torch.nn.Linear(16 * 25, 7))
    m.train()
    r = profile(m, (3, 8, 5, 5))
    assert m.training
    assert r.layers[0].macs == 3 * 16 * 25 * 2 * 9 and r.layers[0].kind == "conv"
    assert r.layers[1].macs == 3 * 7 * 400 and r.layers[1].output_shape == (3, 7)
    assert r.params == sum(p.numel() for p in m.parameters())
    s = str(r)
    assert "Conv2d" in s and "Linear" in s and "share" in s
    assert mx.profile is profile


def test_cli_single_model_with_layers(capsys):
    import argparse
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert main(p.parse_args(["--model", "mobilenet_v1", "--width", "0.25", "--resolution", "128", "--layers"])) == 0
    out = capsys.readouterr().out
    assert "features.1.pw.0" in out and "PointwiseConv2d" in out and "MACs in 1x1 convs" in out


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small"])
def test_flop_counter_sees_fused_model_ops(name):
    # the fused model runs other ops (inverted_residual_fused, the packed
    # pointwise and linear, squeeze_excitation_ in place): the same FLOPs as
    # the stock model, on the recording call and on the replays, both layouts
    torch.manual_seed(0)
    m = getattr(torchvision.models, name)().eval()
    x = torch.randn(1, 3, 64, 64)

    def count(mod, inp):
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            mod(inp)
        return fc.get_total_flops()

    ref = count(m, x)
    fused = mx.fuse(mx.convert(m).eval())
    for inp in (x, x.contiguous(memory_format=torch.channels_last)):
        for _ in range(2):
            assert count(fused, inp) == ref
