"""MobileNet V1/V2/V3 definitions: torchvision parity, backends, fusion, compile."""
from __future__ import annotations

import pytest
import torch
import torch.nn as tnn
import torchvision

import mobilenet_ext as mx
from mobilenet_ext import models as M
from mobilenet_ext.nn import DepthwiseConv2d, PointwiseConv2d

TV = ["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"]
ALL = ["mobilenet_v1"] + TV


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: the suite shares two cores with other jobs, where
    OpenMP spinning makes small multi-threaded convolutions ~100x slower."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def close(a, b, what, rtol=1e-4, floor=0.0):
    """|a - b| <= rtol * max|b| + floor (floor: for gradients that are ~0 up to
    rounding, e.g. a BatchNorm bias feeding a train-mode BatchNorm)."""
    scale = b.detach().abs().max().item() + 1e-12
    torch.testing.assert_close(a.detach().double(), b.detach().double(), rtol=0, atol=rtol * scale + floor,
                               msg=lambda m: f"{what}: {m}")


def randomize_bn(model):
    """Non-trivial BatchNorm statistics and affine parameters (deterministic)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, tnn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(c, generator=g) * 0.4 - 0.2)
    return model


def close_grads(ours, ref, what):
    ref_params = dict(ref.named_parameters())
    gmax = max(p.grad.abs().max().item() for p in ref.parameters())
    for k, p in ours.named_parameters():
        close(p.grad, ref_params[k].grad, f"{what} grad {k}", rtol=1e-3, floor=1e-5 * gmax)


def nparams(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name,count", [("mobilenet_v2", 3_504_872), ("mobilenet_v3_large", 5_483_032),
                                        ("mobilenet_v3_small", 2_542_856), ("mobilenet_v1", 4_231_976)])
@pytest.mark.parametrize("backend", ["ext", "torch"])
def test_parameter_counts(name, count, backend):
    assert nparams(getattr(M, name)(backend=backend)) == count


@pytest.mark.parametrize("name,width", [("mobilenet_v2", 0.5), ("mobilenet_v3_large", 0.75), ("mobilenet_v3_small", 1.25)])
def test_width_and_classes_match_torchvision(name, width):
    ours = getattr(M, name)(width_mult=width, num_classes=10)
    ref = getattr(torchvision.models, name)(width_mult=width, num_classes=10)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in ref.state_dict().items()]


def test_ext_backend_uses_our_layers():
    m = M.mobilenet_v2()
    types = {type(x) for x in m.modules()}
    assert DepthwiseConv2d in types and PointwiseConv2d in types
    convs = [x for x in m.modules() if type(x) is tnn.Conv2d]
    assert len(convs) == 1 and convs[0].kernel_size == (3, 3)  # only the stem
    assert not any(isinstance(x, (DepthwiseConv2d, PointwiseConv2d)) for x in M.mobilenet_v2(backend="torch").modules())
    with pytest.raises(ValueError):
        M.mobilenet_v2(backend="cuda")


@pytest.mark.parametrize("name", TV)
def test_torchvision_state_dict_and_outputs(name):
    torch.manual_seed(0)
    ref = randomize_bn(getattr(torchvision.models, name)())
    ours = getattr(M, name)()
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = torch.randn(2, 3, 64, 64)
    ours.eval(), ref.eval()
    with torch.no_grad():
        close(ours(x), ref(x), f"{name} eval")
    # train mode: batch statistics, dropout with the same RNG stream, running-stat updates, gradients
    ours.train(), ref.train()
    torch.manual_seed(123)
    yo = ours(x)
    torch.manual_seed(123)
    yr = ref(x)
    close(yo, yr, f"{name} train")
    yo.square().sum().backward()
    yr.square().sum().backward()
    close_grads(ours, ref, name)
    ref_sd = ref.state_dict()
    for k, v in ours.state_dict().items():
        if "running" in k:
            close(v, ref_sd[k], f"{name} {k}")


@pytest.mark.parametrize("name", ALL)
def test_backends_equal_outputs_and_gradients(name):
    torch.manual_seed(0)
    ref = randomize_bn(getattr(M, name)(width_mult=0.5, backend="torch", dropout=0.0))
    ours = getattr(M, name)(width_mult=0.5, backend="ext", dropout=0.0)
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    xo, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    yo, yr = ours(xo), ref(xr)
    close(yo, yr, name)
    g = torch.randn_like(yr)
    yo.backward(g)
    yr.backward(g)
    close(xo.grad, xr.grad, f"{name} input grad", rtol=1e-3)
    close_grads(ours, ref, name)
    ours.eval(), ref.eval()
    with torch.no_grad():
        close(ours(x), ref(x), f"{name} eval")


@pytest.mark.parametrize("name", ALL)
def test_fuse_equal_outputs_with_residual_in_epilogue(name):
    torch.manual_seed(0)
    m = randomize_bn(getattr(M, name)(width_mult=0.75)).eval()
    keys = list(m.state_dict())
    f = mx.fuse(m)
    assert list(m.state_dict()) == keys  # fuse works on a copy
    # every BatchNorm is folded, the stem's into its dense nn.Conv2d
    assert [n for n, x in f.named_modules() if isinstance(x, tnn.BatchNorm2d)] == []
    assert f.features[0][0].bias is not None and isinstance(f.features[0][1], tnn.Identity)
    blocks = [b for b in f.modules() if hasattr(b, "fuse_residual")]
    fused = [b for b in blocks if b.fused_residual]
    if name == "mobilenet_v1":
        assert not blocks
    else:
        assert fused and all(b.fused_residual == b.use_res_connect for b in blocks)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        close(f(x), m(x), f"{name} fused")
        close(f(x.contiguous(memory_format=torch.channels_last)), m(x), f"{name} fused channels_last")


def test_residual_passed_into_pointwise_epilogue(monkeypatch):
    m = mx.fuse(randomize_bn(M.mobilenet_v2(width_mult=0.5)).eval())
    calls = []
    orig = mx.ops.pointwise_conv2d_fused

    def spy(x, w, b, act, residual=None, *a, **k):
        calls.append(residual is not None)
        return orig(x, w, b, act, residual, *a, **k)

    monkeypatch.setattr(mx.ops, "pointwise_conv2d_fused", spy)
    orig_packed = mx.ops.pointwise_conv2d_packed  # the fused model's packed weights

    def spy_packed(x, w, packed, b, act, residual=None):
        calls.append(residual is not None)
        return orig_packed(x, w, packed, b, act, residual)

    monkeypatch.setattr(mx.ops, "pointwise_conv2d_packed", spy_packed)
    with torch.no_grad():
        m(torch.randn(1, 3, 32, 32))
    n_res = sum(b.fused_residual for b in m.modules() if hasattr(b, "fused_residual"))
    assert n_res == 10 and sum(calls) == n_res


def test_fuse_residual_needs_folded_bn():
    m = M.mobilenet_v2().eval()
    blocks = [b for b in m.modules() if hasattr(b, "fuse_residual")]
    assert not any(b.fuse_residual() for b in blocks)  # BN not folded yet
    t = M.mobilenet_v2(backend="torch").eval()
    assert not any(b.fused_residual for b in mx.fuse(t).modules() if hasattr(b, "fused_residual"))


@pytest.mark.parametrize("name", ALL)
def test_channels_last_input(name):
    torch.manual_seed(0)
    m = randomize_bn(getattr(M, name)(width_mult=0.5)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        close(m(x.contiguous(memory_format=torch.channels_last)), m(x), name)
        m_cl = m.to(memory_format=torch.channels_last)
        close(m_cl(x.contiguous(memory_format=torch.channels_last)), m(x), name + " model channels_last")


def test_torch_compile_fullgraph_v3_small():
    torch.manual_seed(0)
    m = randomize_bn(M.mobilenet_v3_small(width_mult=0.5, num_classes=10)).eval()
    x = torch.randn(2, 3, 64, 64)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        close(compiled(x), m(x), "compiled")
        f = mx.fuse(m)
        close(torch.compile(f, fullgraph=True, backend="aot_eager")(x), m(x), "compiled fused")


def test_make_divisible_and_v1_widths():
    d = M._make_divisible
    assert d(32 * 0.75) == 24 and d(16 * 0.5) == 8 and d(960 // 4) == 240 and d(10) == 16 and d(1280 * 1.0) == 1280
    assert d(72 // 4) == 24  # never more than 10% below: 18 -> 16 is < 0.9*18
    widths = {a: [x.out_channels for x in M.mobilenet_v1(width_mult=a).features] for a in (1.0, 0.75, 0.25)}
    assert widths[1.0] == [32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
    assert widths[0.75][:3] == [24, 48, 96] and widths[0.75][-1] == 768
    assert widths[0.25][:3] == [8, 16, 32] and widths[0.25][-1] == 256
