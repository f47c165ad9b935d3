"""fuse() on torchvision's MobileNets: the shortcut goes into the projection's
GEMM epilogue, squeeze-excitation scales the depthwise output in place; the
state_dict keys stay torchvision's and the outputs match the float64 model."""
from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn as tnn

import mobilenet_ext as mx
from mobilenet_ext import _torchvision_fused as tvf
from _helpers import make_layout, torchvision_eval_model


def _model(name):
    return torchvision_eval_model(name)


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


@pytest.mark.parametrize("rows", [1, 3, 33])
@pytest.mark.parametrize("act", [None, "relu", "hardswish"])
def test_packed_linear_matches_linear(rows, act):
    g = torch.Generator().manual_seed(rows)
    lin = tnn.Linear(37, 29)
    m = mx.nn.PackedLinear.from_linear(lin, act)
    assert m.state_dict().keys() == lin.state_dict().keys()
    x = torch.randn(rows, 37, generator=g)
    acts = {None: lambda t: t, "relu": torch.relu, "hardswish": torch.nn.functional.hardswish}

    def ref():
        return acts[act](torch.nn.functional.linear(x.double(), lin.weight.double(), lin.bias.double()))

    with torch.no_grad():
        y = m(x)
        assert "_packed_cache" in m.__dict__  # our GEMM on the packed weight
        r = ref()
        torch.testing.assert_close(y.double(), r, rtol=0, atol=1e-5 * (1 + r.abs().max().item()))
        assert torch.equal(y, mx.ops.linear_fused(x, lin.weight, lin.bias, act))  # packed == unpacked, bitwise
        lin.weight.mul_(2)  # an in-place update: repacked
        r = ref()
        torch.testing.assert_close(m(x).double(), r, rtol=0, atol=1e-5 * (1 + r.abs().max().item()))
        y64 = mx.ops.linear_fused(x.double(), lin.weight.double(), lin.bias.double(), act)
        torch.testing.assert_close(y64, r, rtol=0, atol=1e-12 * (1 + r.abs().max().item()))
    y = m(x.requires_grad_(True))  # autograd: F.linear
    y.sum().backward()
    assert x.grad is not None and lin.weight.grad is not None


def test_linear_ops_errors_and_opcheck():
    x, w, b = torch.randn(3, 8), torch.randn(5, 8), torch.randn(5)
    with pytest.raises(ValueError, match="input must be a 2-D tensor"):
        mx.ops.linear_fused(x[None], w, b)
    with pytest.raises(ValueError, match=r"weight must be \[out_features, 8\]"):
        mx.ops.linear_fused(x, w[:, :7], b)
    with pytest.raises(ValueError, match=r"bias must be \[5\]"):
        mx.ops.linear_fused(x, w, b[:4])
    with pytest.raises(ValueError, match="weight must have the input's dtype"):
        mx.ops.linear_fused(x, w.double(), b)
    with torch.no_grad():
        torch.library.opcheck(torch.ops.mobilenet_ext.linear_fused, (x, w, b, 3))
        p = mx.ops.pointwise_pack_weight(w[:, :, None, None], mx.ops.gemm_panel(True))
        torch.library.opcheck(torch.ops.mobilenet_ext.linear_packed, (x, w, p, None, 1))


def test_fuse_packs_the_classifier():
    fused = mx.fuse(mx.convert(_model("mobilenet_v3_small")).eval())
    cls = fused.classifier
    assert type(cls[0]) is mx.nn.PackedLinear and cls[0].activation == "hardswish" and type(cls[1]) is tnn.Identity
    assert type(cls[3]) is mx.nn.PackedLinear and cls[3].activation is None


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small"])
def test_convert_and_fuse_keep_training_flags(name):
    # the layers convert() and fuse() put in keep the mode of what they
    # replace: an eval model stays eval all through, a training one training
    m = torchvision_eval_model(name)
    conv = mx.convert(m)
    fused = mx.fuse(conv)
    assert not any(s.training for s in conv.modules())
    assert not any(s.training for s in fused.modules())
    assert all(s.training for s in mx.convert(m.train()).modules())
