"""Bad input raises a clear Python exception naming the argument, what was
expected and what came; never a crash."""
from __future__ import annotations

import pytest
import torch

import mobilenet_ext as mx

ops = mx.ops

x = torch.randn(2, 4, 8, 8)
w = torch.randn(4, 1, 3, 3)
wp = torch.randn(6, 4, 1, 1)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: ops.depthwise_conv2d(torch.randn(4, 8, 8), w), ValueError, r"input must be a 4-D tensor.*3-D"),
        (lambda: ops.depthwise_conv2d(torch.randn(1, 2, 4, 8, 8), w), ValueError, r"input must be a 4-D tensor.*5-D"),
        (lambda: ops.depthwise_conv2d(x.to(torch.int32), w.to(torch.int32)), ValueError, r"input must be float32 or float64.*Int"),
        (lambda: ops.depthwise_conv2d(x.half(), w.half()), ValueError, r"input must be float32 or float64 on CPU.*Half"),
        (lambda: ops.depthwise_conv2d(x, w.double()), ValueError, r"weight must have the input's dtype.*Double"),
        (lambda: ops.depthwise_conv2d(x, w, torch.randn(4, dtype=torch.float64)), ValueError, r"bias must have the input's dtype"),
        (lambda: ops.depthwise_conv2d(x, torch.randn(4, 2, 3, 3)), ValueError, r"weight must be a depthwise weight.*\[4, 2, 3, 3\]"),
        (lambda: ops.depthwise_conv2d(x, torch.randn(6, 1, 3, 3)), ValueError, r"weight must be a depthwise weight.*C = 4"),
        (lambda: ops.depthwise_conv2d(x, torch.randn(4, 3, 3)), ValueError, r"weight must be a depthwise weight"),
        (lambda: ops.depthwise_conv2d(x, w, torch.randn(5)), ValueError, r"bias must have shape \[4\].*\[5\]"),
        (lambda: ops.depthwise_conv2d(x, w, torch.randn(4, 1)), ValueError, r"bias must have shape \[4\]"),
        (lambda: ops.depthwise_conv2d(x, w, stride=0), ValueError, r"stride must be >= 1.*\[0, 0\]"),
        (lambda: ops.depthwise_conv2d(x, w, stride=(1, -1)), ValueError, r"stride must be >= 1"),
        (lambda: ops.depthwise_conv2d(x, w, dilation=0), ValueError, r"dilation must be >= 1"),
        (lambda: ops.depthwise_conv2d(x, w, padding=-1), ValueError, r"padding must be >= 0"),
        (lambda: ops.depthwise_conv2d(x, w, stride=(1, 2, 3)), ValueError, r"stride must be an int or a pair"),
        (lambda: ops.depthwise_conv2d(x, w, stride="2"), ValueError, r"stride must be an int or a pair"),
        (lambda: ops.depthwise_conv2d(x, w, stride=1.5), TypeError, r"stride must be an int or a pair"),
        (lambda: ops.depthwise_conv2d(torch.randn(1, 4, 2, 2), w), ValueError, r"output size would be < 1"),
        (lambda: ops.depthwise_conv2d(torch.randn(1, 4, 8, 8), torch.randn(4, 1, 3, 3), dilation=5), ValueError, r"output size would be < 1"),
        (lambda: ops.depthwise_conv2d(torch.randn(1, 0, 8, 8), torch.randn(0, 1, 3, 3)), ValueError, r"at least one channel"),
        (lambda: ops.depthwise_conv2d(x, torch.randn(4, 1, 0, 3)), ValueError, r"kernel size must be >= 1"),
        (lambda: ops.depthwise_conv2d_fused(x, w, activation="gelu"), ValueError, r"activation must be one of"),
        (lambda: torch.ops.mobilenet_ext.depthwise_conv2d_fused(x, w, None, [1, 1], [0, 0], [1, 1], 9), ValueError, r"activation must be 0"),
        (lambda: ops.pointwise_conv2d(torch.randn(4, 8, 8), wp), ValueError, r"input must be a 4-D tensor"),
        (lambda: ops.pointwise_conv2d(x, torch.randn(6, 4, 3, 3)), ValueError, r"weight must be a 1x1 weight.*\[6, 4, 3, 3\]"),
        (lambda: ops.pointwise_conv2d(x, torch.randn(6, 5, 1, 1)), ValueError, r"weight has 5 input channels but input has 4"),
        (lambda: ops.pointwise_conv2d(x, wp, torch.randn(7)), ValueError, r"bias must have shape \[6\].*\[7\]"),
        (lambda: ops.pointwise_conv2d(x, wp.double()), ValueError, r"weight must have the input's dtype"),
        (lambda: ops.pointwise_conv2d(x.long(), wp.long()), ValueError, r"input must be float32 or float64.*Long"),
        (lambda: ops.pointwise_conv2d(torch.randn(1, 4, 0, 3), wp), ValueError, r"output size would be < 1"),
        (lambda: ops.pointwise_conv2d_fused(x, wp, None, None, torch.randn(2, 6, 8, 7)), ValueError, r"residual must have the output's shape"),
        (lambda: torch.ops.mobilenet_ext.depthwise_conv2d_backward_input(torch.randn(2, 4, 5, 5), x, w, [1, 1], [1, 1], [1, 1]), ValueError, r"grad_output must have the output's shape"),
        (lambda: torch.ops.mobilenet_ext.pointwise_conv2d_backward_weight(torch.randn(2, 5, 8, 8), x, wp), ValueError, r"grad_output must have the output's shape"),
    ],
)
def test_bad_input_raises(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU for a mixed-device input")
def test_mixed_devices_raise():
    with pytest.raises(ValueError, match=r"depthwise_conv2d: weight must be on the input's device cpu, got cuda"):
        ops.depthwise_conv2d(x, w.cuda())
    with pytest.raises(ValueError, match=r"pointwise_conv2d: weight must be on the input's device cuda(:0)?, got cpu"):
        ops.pointwise_conv2d(x.cuda(), wp)


def test_meta_device_mismatch_raises():
    # a weight on another device than the input is rejected even without a GPU
    with pytest.raises(ValueError, match=r"depthwise_conv2d: weight must be on the input's device cpu, got meta"):
        ops.depthwise_conv2d(x, w.to("meta"))
    with pytest.raises(ValueError, match=r"pointwise_conv2d: bias must be on the input's device cpu, got meta"):
        ops.pointwise_conv2d(x, wp, torch.randn(6, device="meta"))


def test_layer_constructor_errors():
    with pytest.raises(ValueError, match="channels must be a positive int"):
        mx.nn.DepthwiseConv2d(0, 3)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        mx.nn.DepthwiseConv2d(4, 3, stride=0)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        mx.nn.DepthwiseConv2d(4, 3, padding=-1)
    with pytest.raises(ValueError, match="channel_multiplier"):
        mx.nn.DepthwiseConv2d(4, 3, channel_multiplier=0)
    with pytest.raises(ValueError, match="out_channels must be a positive int"):
        mx.nn.PointwiseConv2d(4, 0)
    with pytest.raises(ValueError, match="activation must be one of"):
        mx.nn.PointwiseConv2d(4, 4, activation="gelu")
    with pytest.raises(ValueError, match="not a depthwise"):
        mx.nn.DepthwiseConv2d.from_conv(torch.nn.Conv2d(4, 8, 3))
    with pytest.raises(ValueError, match="not a pointwise"):
        mx.nn.PointwiseConv2d.from_conv(torch.nn.Conv2d(4, 8, 1, stride=2))
    with pytest.raises(TypeError, match="must be an nn.Conv2d"):
        mx.nn.PointwiseConv2d.from_conv(torch.nn.Linear(4, 4))
    with pytest.raises(TypeError, match="must be an nn.Module"):
        mx.convert("model")


def test_torch_version_mismatch_is_a_clear_import_error():
    from mobilenet_ext import _native

    assert _native._C.torch_version() == torch.__version__
    with pytest.raises(ImportError, match=r"built against torch 2\.0\.0 but torch 2\.14\.1.* is installed"):
        _native.check_torch_version("2.0.0", "2.14.1+cu130")


def test_fma_peak_probe_arguments():
    from mobilenet_ext import _native

    with pytest.raises(ValueError, match=r"fma_peak_gflops: threads must be in \[1, 4096\], got 0"):
        _native._C.fma_peak_gflops(0, 0.01)
    with pytest.raises(ValueError, match=r"fma_peak_gflops: seconds must be in \(0, 10\], got -1"):
        _native._C.fma_peak_gflops(1, -1.0)
    gflops, isa = _native._C.fma_peak_gflops(1, 0.005)
    assert gflops > 0 and isa in ("avx512", "avx2", "neon", "scalar")
