"""The pointwise weight packed once for inference (ops.pointwise_pack_weight,
ops.pointwise_conv2d_packed, PointwiseConv2d's cache): against F.conv2d in
float64, bitwise against the unpacked op, its errors, and when the module
repacks."""
from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F

import mobilenet_ext as mx
from mobilenet_ext import ops
from _helpers import assert_close, make_layout

ACTS = {None: lambda t: t, "relu": F.relu, "relu6": F.relu6, "hardswish": F.hardswish}

# (N, C_in, C_out, H, W): odd channel counts, tails of every tile, 1x1 maps
# (the NHWC GEMM form in both layouts), one output channel, long K
SHAPES = [
    (1, 16, 96, 28, 28),
    (2, 13, 37, 5, 7),
    (3, 7, 1, 2, 3),
    (4, 24, 5, 1, 1),
    (1, 600, 70, 3, 3),
    (2, 33, 130, 9, 4),
    (1, 1, 1, 1, 1),
]


def _ref(x, w, b, act, r):
    y = F.conv2d(x.double(), w.double(), None if b is None else b.double())
    y = ACTS[act](y)
    return y if r is None else y + r.double()


def _panels():
    return sorted({ops.gemm_panel(False), ops.gemm_panel(True), 1, 5} - {0})


@pytest.mark.parametrize("layout", ["nchw", "nhwc", "strided"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_packed_matches_conv2d_and_unpacked(shape, layout):
    N, Ci, Co, H, W = shape
    if layout == "strided" and N * Ci * H * W == 1:
        pytest.skip("a single element is contiguous in every view")
    g = torch.Generator().manual_seed(sum(shape))
    x = make_layout(torch.randn(N, Ci, H, W, generator=g), layout)
    w = torch.randn(Co, Ci, 1, 1, generator=g)
    b = torch.randn(Co, generator=g)
    r = make_layout(torch.randn(N, Co, H, W, generator=g), layout)
    nhwc = H * W == 1 or layout == "nhwc"
    for panel in _panels():
        pk = ops.pointwise_pack_weight(w, panel)
        assert pk.shape == ((Co + panel - 1) // panel, Ci, panel)
        for act in ACTS:
            for bb, rr in ((b, r), (None, None), (b, None)):
                y = ops.pointwise_conv2d_packed(x, w, pk, bb, act, rr)
                assert_close(y, _ref(x, w, bb, act, rr), torch.float32, f"{shape} {layout} panel {panel} {act}")
                y0 = ops.pointwise_conv2d_fused(x, w, bb, act, rr)
                assert y.stride() == y0.stride()
                if panel == ops.gemm_panel(nhwc):
                    # the kernel's own panel: the same FMA order as unpacked
                    assert torch.equal(y, y0), f"{shape} {layout} {act}: not bitwise the unpacked op's"


def test_pack_weight_layout():
    w = torch.arange(5 * 3, dtype=torch.float32).reshape(5, 3, 1, 1)
    pk = ops.pointwise_pack_weight(w, 2)
    # panel p, k, r -> w[p * 2 + r, k]; the row past C_out is zero
    assert pk.shape == (3, 3, 2)
    for p in range(3):
        for k in range(3):
            for r in range(2):
                row = p * 2 + r
                assert pk[p, k, r].item() == (w[row, k, 0, 0].item() if row < 5 else 0.0)


def test_packed_errors_name_the_argument():
    x = torch.randn(1, 8, 4, 4)
    w = torch.randn(6, 8, 1, 1)
    pk = ops.pointwise_pack_weight(w, 4)
    with pytest.raises(ValueError, match=r"packed must be pointwise_pack_weight\(weight, panel\).*C_in = 8"):
        ops.pointwise_conv2d_packed(x, w, pk[:, :5], None)
    with pytest.raises(ValueError, match=r"packed must be .*got shape \[1, 8, 4\]"):
        ops.pointwise_conv2d_packed(x, w, pk[:1], None)
    with pytest.raises(ValueError, match="packed must be a float32 CPU tensor"):
        ops.pointwise_conv2d_packed(x, w, pk.double(), None)
    with pytest.raises(ValueError, match="input must be float32"):
        ops.pointwise_conv2d_packed(x.double(), w.double(), pk, None)
    with pytest.raises(ValueError, match="weight has 8 input channels but input has 3"):
        ops.pointwise_conv2d_packed(torch.randn(1, 3, 4, 4), w, pk, None)
    with pytest.raises(ValueError, match=r"panel must be in \[1, 256\], got 0"):
        ops.pointwise_pack_weight(w, 0)
    with pytest.raises(ValueError, match="weight must be float32"):
        ops.pointwise_pack_weight(w.double(), 4)
    with pytest.raises(ValueError, match=r"weight must be a 1x1 weight"):
        ops.pointwise_pack_weight(torch.randn(6, 8, 3, 3), 4)
    with pytest.raises(TypeError, match="panel must be an int"):
        ops.pointwise_pack_weight(w, 4.0)


def _layer(act="relu6"):
    torch.manual_seed(0)
    m = mx.nn.PointwiseConv2d(24, 40, activation=act).eval()
    m.pack_weight = True
    return m


@pytest.mark.skipif(ops.gemm_panel(False) == 0, reason="the portable GEMM has no packed kernel")
def test_module_packs_once_and_repacks_when_the_weight_changes():
    m = _layer()
    x = torch.randn(2, 24, 6, 6)
    xc = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y = m(x)
        pk = m._packed_cache[False][2]
        assert torch.equal(m(x), y) and m._packed_cache[False][2] is pk  # reused
        assert torch.equal(y, ops.pointwise_conv2d_fused(x, m.weight, m.bias, "relu6"))
        yc = m(xc)  # the other layout has its own panels
        assert set(m._packed_cache) == {False, True}
        assert_close(yc, y, torch.float32)
        m.weight.mul_(2)  # in place: the version changes
        y2 = m(x)
        assert m._packed_cache[False][2] is not pk
        assert torch.equal(y2, ops.pointwise_conv2d_fused(x, m.weight, m.bias, "relu6"))
        m.load_state_dict({"weight": torch.randn(40, 24, 1, 1), "bias": torch.randn(40)})
        assert torch.equal(m(x), ops.pointwise_conv2d_fused(x, m.weight, m.bias, "relu6"))
        m.weight = torch.nn.Parameter(torch.randn(40, 24, 1, 1))  # another tensor
        assert torch.equal(m(x), ops.pointwise_conv2d_fused(x, m.weight, m.bias, "relu6"))


def test_module_uses_the_plain_ops_where_it_should():
    m = _layer(None)
    x = torch.randn(1, 24, 5, 5)
    # autograd recording: the differentiable op, nothing packed
    y = m(x)
    y.sum().backward()
    assert m.weight.grad is not None and "_packed_cache" not in m.__dict__
    # float64: the plain op
    with torch.no_grad():
        m64 = copy.deepcopy(m).double()
        assert_close(m64(x.double()), F.conv2d(x.double(), m64.weight, m64.bias), torch.float64)
    assert "_packed_cache" not in m64.__dict__
    # tracing records the plain op
    with torch.no_grad():
        traced = torch.jit.trace(m, x)
    assert "pointwise_conv2d_packed" not in str(traced.graph)
    assert_close(traced(x), F.conv2d(x.double(), m.weight.double(), m.bias.double()), torch.float32)


def test_packing_is_off_unless_asked_and_on_after_fuse():
    m = mx.nn.PointwiseConv2d(8, 8).eval()
    with torch.no_grad():
        m(torch.randn(1, 8, 3, 3))
    assert "_packed_cache" not in m.__dict__
    seq = mx.fuse(torch.nn.Sequential(m, torch.nn.BatchNorm2d(8), torch.nn.ReLU()).eval())
    assert seq[0].pack_weight and not m.pack_weight
    seq(torch.randn(1, 8, 3, 3))
    assert ("_packed_cache" in seq[0].__dict__) == (ops.gemm_panel(False) > 0)
    seq[0].clear_packed()
    assert "_packed_cache" not in seq[0].__dict__


def test_module_cache_is_not_state_and_survives_copies():
    m = _layer()
    x = torch.randn(1, 24, 4, 4)
    with torch.no_grad():
        y = m(x)
    assert set(m.state_dict()) == {"weight", "bias"}
    m2 = pickle.loads(pickle.dumps(m))
    assert "_packed_cache" not in m2.__dict__
    m3 = copy.deepcopy(m)
    with torch.no_grad():
        assert torch.equal(m2(x), y) and torch.equal(m3(x), y)


def test_fused_model_bitwise_with_and_without_packing(monkeypatch):
    import torchvision

    torch.manual_seed(0)
    model = mx.fuse(mx.convert(torchvision.models.mobilenet_v3_small()).eval())
    x = torch.randn(2, 3, 96, 96)
    for fmt in (torch.contiguous_format, torch.channels_last):
        xx = x.contiguous(memory_format=fmt)
        with torch.no_grad():
            packed = model(xx)
            monkeypatch.setattr(mx.nn.PointwiseConv2d, "_packed_weight", lambda self, i, r: None)
            plain = model(xx)
            monkeypatch.undo()
        assert torch.equal(packed, plain)
