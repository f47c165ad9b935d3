"""Drop-in layers, convert() and fuse() against nn.Conv2d."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as tnn

import mobilenet_ext as mx
from _helpers import assert_close


def test_depthwise_layer_matches_conv2d_layout_and_init():
    torch.manual_seed(0)
    ref = tnn.Conv2d(8, 16, 5, stride=2, padding=2, dilation=1, groups=8, bias=True)
    torch.manual_seed(0)
    ours = mx.nn.DepthwiseConv2d(8, 5, stride=2, padding=2, bias=True, channel_multiplier=2)
    # same parameter names, shapes and (seeded) initialisation
    assert ours.state_dict().keys() == ref.state_dict().keys()
    for k in ref.state_dict():
        assert torch.equal(ours.state_dict()[k], ref.state_dict()[k]), k
    x = torch.randn(2, 8, 13, 12)
    assert_close(ours(x), ref(x).double(), torch.float32, "layer")
    assert repr(ours) == "DepthwiseConv2d(8, 16, kernel_size=(5, 5), stride=(2, 2), padding=(2, 2), groups=8)"
    ours2 = mx.nn.DepthwiseConv2d(8, 3, bias=False)
    assert ours2.bias is None and "bias=False" in repr(ours2)


def test_pointwise_layer_matches_conv2d():
    torch.manual_seed(1)
    ref = tnn.Conv2d(12, 20, 1, bias=False)
    torch.manual_seed(1)
    ours = mx.nn.PointwiseConv2d(12, 20, bias=False)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    assert torch.equal(ours.weight, ref.weight)
    x = torch.randn(3, 12, 7, 9).contiguous(memory_format=torch.channels_last)
    y = ours(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert_close(y, ref(x).double(), torch.float32, "layer")
    assert repr(ours) == "PointwiseConv2d(12, 20, kernel_size=(1, 1), stride=(1, 1), bias=False)"


def test_from_conv_shares_parameters_and_state_dict_loads_both_ways():
    conv = tnn.Conv2d(6, 6, 3, padding="same", groups=6)
    dw = mx.nn.DepthwiseConv2d.from_conv(conv)
    assert dw.weight is conv.weight and dw.padding == (1, 1)
    fresh = mx.nn.DepthwiseConv2d(6, 3, padding=1)
    fresh.load_state_dict(conv.state_dict(), strict=True)
    conv2 = tnn.Conv2d(6, 6, 3, padding=1, groups=6)
    conv2.load_state_dict(fresh.state_dict(), strict=True)
    x = torch.randn(1, 6, 5, 5)
    assert_close(fresh(x), conv(x).double(), torch.float32)


def _small_net():
    return tnn.Sequential(
        tnn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False),
        tnn.BatchNorm2d(16),
        tnn.ReLU6(inplace=True),
        tnn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False),
        tnn.BatchNorm2d(16),
        tnn.Hardswish(),
        tnn.Conv2d(16, 32, 1, bias=False),
        tnn.BatchNorm2d(32),
        tnn.ReLU(),
        tnn.Conv2d(32, 64, 5, padding=2, groups=32),  # multiplier 2
        tnn.Conv2d(64, 10, 1),
        tnn.AdaptiveAvgPool2d(1),
        tnn.Flatten(),
    )


def test_convert_small_net_outputs_and_grads_equal():
    torch.manual_seed(0)
    net = _small_net()
    conv_net, counts = mx.convert(net, return_counts=True)
    assert counts == {"depthwise": 2, "pointwise": 2, "small_cin": 1, "batchnorm_act": 3, "batchnorm": 0,
                      "squeeze_excitation": 0}
    assert type(net[3]) is tnn.Conv2d  # not inplace
    assert isinstance(conv_net[3], mx.nn.DepthwiseConv2d)
    # the dense 3x3 stem (3 input channels): our forward, PyTorch's backward
    assert type(conv_net[0]) is mx.nn.SmallCinConv2d and conv_net[0].activation is None
    x = torch.randn(2, 3, 32, 32)
    y0, y1 = net(x), conv_net(x)
    assert_close(y1, y0.double(), torch.float32)
    y0.square().sum().backward()
    y1.square().sum().backward()
    for (n0, p0), (n1, p1) in zip(net.named_parameters(), conv_net.named_parameters()):
        assert n0 == n1
        assert_close(p1.grad, p0.grad.double(), torch.float32, n0)


def test_convert_inplace():
    net = _small_net()
    out = mx.convert(net, inplace=True)
    assert out is net and isinstance(net[6], mx.nn.PointwiseConv2d)


def test_fuse_equal_outputs():
    torch.manual_seed(0)
    net = _small_net()
    # non-trivial running statistics
    net.train()
    for _ in range(3):
        net(torch.randn(4, 3, 32, 32))
    net.eval()
    ext = mx.convert(net)
    fused = mx.fuse(ext)
    assert fused[3].activation == "hardswish" and fused[6].activation == "relu"
    assert isinstance(fused[4], tnn.Identity)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert_close(fused(x), net(x).double(), torch.float32, "fused")
        xc = x.contiguous(memory_format=torch.channels_last)
        assert_close(fused(xc), net(xc).double(), torch.float32, "fused channels_last")
    with pytest.raises(ValueError, match="eval mode"):
        mx.fuse(net.train())


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small"])
def test_convert_torchvision_models(name):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(num_classes=10)
    conv_model, counts = mx.convert(model, return_counts=True)
    n_dw = sum(1 for m in model.modules() if isinstance(m, tnn.Conv2d) and m.groups == m.in_channels and m.in_channels > 1)
    assert counts["depthwise"] == n_dw > 0 and counts["pointwise"] > 0
    x = torch.randn(2, 3, 64, 64)
    for train in (False, True):
        model.train(train)
        conv_model.train(train)
        torch.manual_seed(1)
        y0 = model(x)
        torch.manual_seed(1)
        y1 = conv_model(x)
        assert_close(y1, y0.double(), torch.float32, f"train={train}")
    y0.sum().backward()
    y1.sum().backward()
    for (n0, p0), (n1, p1) in zip(model.named_parameters(), conv_model.named_parameters()):
        assert n0 == n1
        scale = 1e-3 * (1 + p0.grad.abs().max().item())
        torch.testing.assert_close(p1.grad, p0.grad, rtol=0, atol=scale, msg=n0)


def test_fused_model_runs_fused_kernels_without_no_grad():
    """mx.fuse returns an inference model: a plain call in grad mode (no
    torch.no_grad) dispatches the fused ops, records no graph, and matches the
    unfused model."""
    import torchvision
    from torch.utils._python_dispatch import TorchDispatchMode

    class Log(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.add(func.name())
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    ref = mx.convert(torchvision.models.mobilenet_v2()).eval()
    fast = mx.fuse(ref)
    assert all(p.requires_grad for p in ref.parameters()), "fuse must not touch the model it copies"
    assert not any(p.requires_grad for p in fast.parameters())
    x = torch.randn(1, 3, 64, 64)
    with Log() as log:
        y = fast(x)
    assert y.grad_fn is None
    assert "mobilenet_ext::depthwise_conv2d_fused" in log.names
    # the pointwise layers of a fused model run on their packed weight (CPU
    # kernels with a register tile), else the fused op
    packed = mx.ops.gemm_panel(False) > 0
    assert ("mobilenet_ext::pointwise_conv2d_packed" if packed else "mobilenet_ext::pointwise_conv2d_fused") in log.names
    assert "mobilenet_ext::depthwise_conv2d" not in log.names
    with torch.no_grad():
        torch.testing.assert_close(y, ref(x), rtol=1e-4, atol=1e-4 * (1 + ref(x).abs().max().item()))
