"""opcheck, torch.compile(fullgraph=True) and torch.export."""
from __future__ import annotations

import pytest
import torch
import torch.nn as tnn

import mobilenet_ext as mx
from _helpers import assert_close, make_layout

ext = torch.ops.mobilenet_ext


def _dw_samples():
    g = torch.Generator().manual_seed(0)
    for layout, (k, s, p, d, m) in [("nchw", (3, 1, 1, 1, 1)), ("nhwc", (5, 2, 2, 1, 1)), ("nchw", (3, 2, 0, 2, 2))]:
        x = make_layout(torch.randn(2, 4, 9, 8, generator=g), layout).requires_grad_(True)
        w = torch.randn(4 * m, 1, k, k, generator=g, requires_grad=True)
        b = torch.randn(4 * m, generator=g, requires_grad=True)
        yield x, w, b, [s, s], [p, p], [d, d]


@pytest.mark.parametrize("i", range(3))
def test_opcheck_depthwise(i):
    x, w, b, s, p, d = list(_dw_samples())[i]
    torch.library.opcheck(ext.depthwise_conv2d, (x, w, b, s, p, d))
    torch.library.opcheck(ext.depthwise_conv2d, (x, w, None, s, p, d))
    with torch.no_grad():
        torch.library.opcheck(ext.depthwise_conv2d_fused, (x.detach(), w.detach(), b.detach(), s, p, d, 2))
        y = ext.depthwise_conv2d(x, w, b, s, p, d)
        gy = torch.randn_like(y)
        torch.library.opcheck(ext.depthwise_conv2d_backward_input, (gy, x.detach(), w.detach(), s, p, d))
        torch.library.opcheck(ext.depthwise_conv2d_backward_weight, (gy, x.detach(), w.detach(), s, p, d))


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_opcheck_pointwise(layout):
    g = torch.Generator().manual_seed(1)
    x = make_layout(torch.randn(2, 6, 5, 7, generator=g), layout).requires_grad_(True)
    w = torch.randn(9, 6, 1, 1, generator=g, requires_grad=True)
    b = torch.randn(9, generator=g, requires_grad=True)
    torch.library.opcheck(ext.pointwise_conv2d, (x, w, b))
    torch.library.opcheck(ext.pointwise_conv2d, (x, w, None))
    with torch.no_grad():
        r = make_layout(torch.randn(2, 9, 5, 7, generator=g), layout)
        torch.library.opcheck(ext.pointwise_conv2d_fused, (x.detach(), w.detach(), b.detach(), 3, r))
        gy = torch.randn(2, 9, 5, 7, generator=g)
        torch.library.opcheck(ext.pointwise_conv2d_backward_input, (gy, x.detach(), w.detach()))
        torch.library.opcheck(ext.pointwise_conv2d_backward_weight, (gy, x.detach(), w.detach()))


def _block():
    return tnn.Sequential(
        mx.nn.PointwiseConv2d(8, 24),
        tnn.ReLU6(),
        mx.nn.DepthwiseConv2d(24, 3, stride=2, padding=1),
        tnn.ReLU6(),
        mx.nn.PointwiseConv2d(24, 12),
    )


@pytest.mark.parametrize("channels_last", [False, True])
def test_compile_fullgraph_forward_backward(channels_last):
    torch.manual_seed(0)
    model = _block()
    x = torch.randn(2, 8, 16, 16)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    y_ref = model(x1)
    y = compiled(x2)
    assert_close(y, y_ref.double(), torch.float32)
    y_ref.sum().backward()
    y.sum().backward()
    assert_close(x2.grad, x1.grad.double(), torch.float32)


def test_compile_inductor_inference():
    torch.manual_seed(0)
    model = _block().eval()
    x = torch.randn(1, 8, 12, 12)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        assert_close(compiled(x), model(x).double(), torch.float32)


def test_torch_export_roundtrip():
    torch.manual_seed(0)
    model = _block().eval()
    x = torch.randn(1, 8, 12, 12)
    ep = torch.export.export(model, (x,))
    names = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert any("mobilenet_ext.depthwise_conv2d" in n for n in names), names
    assert_close(ep.module()(x), model(x).double(), torch.float32)


def test_flop_counter_counts_our_ops():
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(2, 8, 16, 16, requires_grad=True)
    model = _block()
    with FlopCounterMode(display=False) as fc:
        model(x).sum().backward()
    total = fc.get_total_flops()
    # forward MACs: pw 2*16*16*8*24 + dw 2*8*8*24*9 + pw 2*8*8*24*12
    fwd = 2 * (2 * 16 * 16 * 8 * 24 + 2 * 8 * 8 * 24 * 9 + 2 * 8 * 8 * 24 * 12)
    # backward: grad_weight for all three, grad_input for all but the first op
    # (x's grad is needed, so all three get grad_input too)
    assert total == 3 * fwd, (total, fwd)
