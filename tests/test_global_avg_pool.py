"""global_avg_pool2d / GlobalAvgPool2d (the average pool before a MobileNet
classifier, on the channel-means kernel): against PyTorch's pool in float64,
its fallbacks, and fuse() putting it in."""
from __future__ import annotations

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import mobilenet_ext as mx
from _helpers import torchvision_eval_model

SHAPES = [(1, 576, 7, 7), (2, 37, 5, 3), (3, 8, 1, 1), (1, 1280, 7, 7), (0, 4, 3, 3), (2, 5, 13, 11)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last], ids=["nchw", "cl"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_adaptive_avg_pool(shape, fmt, dtype):
    g = torch.Generator().manual_seed(sum(shape))
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 1).to(dtype).contiguous(memory_format=fmt)
    with torch.no_grad():
        y = mx.ops.global_avg_pool2d(x)
    ref = F.adaptive_avg_pool2d(x.double(), 1)
    assert y.shape == ref.shape and y.dtype == dtype
    # partial sums of a chunk per lane in the input's precision, added in
    # float64: the recursive-summation bound over H*W terms, plus the final rounding
    u = 2.0 ** -24 if dtype == torch.float32 else 2.0 ** -53
    hw = shape[2] * shape[3]
    tol = hw * u * F.adaptive_avg_pool2d(x.double().abs(), 1) + 2 * u * ref.abs() + 1e-300
    assert ((y.double() - ref).abs() <= tol).all()
    assert torch.equal(mx.nn.GlobalAvgPool2d()(x.detach()), y)


def test_nan_inf_and_fallbacks():
    x = torch.randn(2, 6, 4, 4)
    x[0, 1, 2, 3] = float("nan")
    x[1, 2, 0, 0] = float("inf")
    with torch.no_grad():
        y = mx.ops.global_avg_pool2d(x)
    assert y[0, 1].isnan().all() and y[1, 2].isinf().all() and y.isfinite().sum() == 10
    # autograd recording: PyTorch's pool (differentiable)
    xd = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(mx.ops.global_avg_pool2d, (xd,))
    # other dtypes, empty maps, other ranks: PyTorch's pool, its results and errors
    xh = torch.randn(1, 3, 4, 4).bfloat16()
    torch.testing.assert_close(mx.ops.global_avg_pool2d(xh), F.adaptive_avg_pool2d(xh, 1))
    e = torch.randn(1, 3, 0, 4)
    torch.testing.assert_close(mx.ops.global_avg_pool2d(e), F.adaptive_avg_pool2d(e, 1), equal_nan=True)
    torch.testing.assert_close(mx.ops.global_avg_pool2d(x[0]), F.adaptive_avg_pool2d(x[0], 1), equal_nan=True)
    with pytest.raises((RuntimeError, IndexError)):  # what PyTorch's pool raises
        mx.ops.global_avg_pool2d(torch.randn(2))


def test_fuse_puts_it_in():
    v3 = mx.fuse(mx.convert(torchvision_eval_model("mobilenet_v3_small")).eval())
    assert type(v3.avgpool) is mx.nn.GlobalAvgPool2d and isinstance(v3.avgpool, tnn.AdaptiveAvgPool2d)
    from mobilenet_ext._torchvision_fused import FusedMobileNetV2

    tv = torchvision_eval_model("mobilenet_v2")
    v2 = mx.fuse(mx.convert(tv).eval())
    assert type(v2) is FusedMobileNetV2
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = tv(x)
        for _ in range(3):
            torch.testing.assert_close(v2(x), want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
    plain = mx.models.mobilenet_v2(width_mult=0.5, num_classes=10).eval()
    ref = mx.models.mobilenet_v2(width_mult=0.5, num_classes=10, backend="torch").eval()
    ref.load_state_dict(plain.state_dict())
    ours = mx.fuse(plain)
    with torch.no_grad():
        want = ref(x)
        torch.testing.assert_close(ours(x), want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
