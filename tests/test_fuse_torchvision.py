"""fuse() on torchvision's MobileNets: the shortcut goes into the projection's
GEMM epilogue, squeeze-excitation scales the depthwise output in place; the
state_dict keys stay torchvision's and the outputs match the float64 model."""
from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn as tnn
import torchvision

import mobilenet_ext as mx
from mobilenet_ext import _torchvision_fused as tvf
from _helpers import make_layout


def _model(name):
    torch.manual_seed(0)
    m = getattr(torchvision.models, name)().eval()
    for mod in m.modules():
        if isinstance(mod, tnn.BatchNorm2d):
            mod.running_mean.uniform_(-0.3, 0.3)
            mod.running_var.uniform_(0.5, 1.5)
    return m


@pytest.mark.parametrize("name,blocks,se", [
    ("mobilenet_v2", 10, 0), ("mobilenet_v3_large", 10, 8), ("mobilenet_v3_small", 6, 9)])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_fused_blocks_match(name, blocks, se, layout):
    ref = _model(name)
    fused = mx.fuse(mx.convert(ref).eval())
    kinds = [type(m) for m in fused.modules()]
    n_blocks = sum(k in (tvf.FusedInvertedResidualV2, tvf.FusedInvertedResidualV3) for k in kinds)
    assert n_blocks == blocks and kinds.count(tvf.InplaceSqueezeExcitation) == se
    # the blocks keep torchvision's names (folding adds conv biases, drops BatchNorms)
    assert all(k in ref.state_dict() or k.endswith(".bias") for k in fused.state_dict())
    x = make_layout(torch.randn(2, 3, 96, 96), layout)
    with torch.no_grad():
        want = copy.deepcopy(ref).double()(x.double())
        got = fused(x)
        again = fused(x)  # in-place scaling leaves nothing behind between calls
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-4 * (1 + want.abs().max().item()))
    assert torch.equal(got, again)


def test_grad_mode_with_an_input_that_needs_grad():
    """A fused model called on an input that requires grad runs the plain
    ops (no in-place scaling of a tensor autograd saved)."""
    fused = mx.fuse(mx.convert(_model("mobilenet_v3_small")).eval())
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    y = fused(x)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with torch.no_grad():
        torch.testing.assert_close(fused(x.detach()), y.detach(), rtol=1e-4, atol=1e-5)


def test_pickle_and_deepcopy():
    fused = mx.fuse(mx.convert(_model("mobilenet_v3_small")).eval())
    buf = io.BytesIO()
    torch.save(fused, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(back(x), fused(x))
        assert torch.equal(copy.deepcopy(fused)(x), fused(x))


def test_our_models_scale_in_place_after_fuse():
    m = mx.models.mobilenet_v3_small().eval()
    f = mx.fuse(m)
    ses = [s for s in f.modules() if type(s).__name__ == "SqueezeExcitation"]
    assert ses and all(s.inplace_scale for s in ses)
    assert not any(getattr(s, "inplace_scale", False) for s in m.modules())  # fuse copies
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(f(x), m(x), rtol=1e-4, atol=1e-4)
