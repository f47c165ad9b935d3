"""Squeeze-excitation on one op (mx.ops.squeeze_excitation, convert's and
the models' SE modules) against torchvision.ops.SqueezeExcitation in
float64: outputs and every gradient, both layouts, every activation and
gate, odd channel counts, batch 1, 1x1 and odd maps."""
from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn as tnn
from torchvision.ops.misc import SqueezeExcitation as TvSE

import mobilenet_ext as mx
from _helpers import assert_close, make_layout

ACTS = {None: tnn.Identity, "relu": tnn.ReLU, "relu6": tnn.ReLU6, "hardswish": tnn.Hardswish}
GATES = {"hardsigmoid": tnn.Hardsigmoid, "sigmoid": tnn.Sigmoid}


def _reference(C, S, activation, gate, bias=True, seed=0):
    torch.manual_seed(seed)
    ref = TvSE(C, S, activation=ACTS[activation], scale_activation=GATES[gate]).to(torch.float64)
    with torch.no_grad():  # gate inputs spread over the whole hardsigmoid range
        ref.fc1.weight.normal_(0, 1.0)
        ref.fc2.weight.normal_(0, 2.0)
    if not bias:
        ref.fc1.bias = None
        ref.fc2.bias = None
    return ref


def _params(ref, dtype):
    ps = [ref.fc1.weight, ref.fc1.bias, ref.fc2.weight, ref.fc2.bias]
    return [None if p is None else p.detach().to(dtype).requires_grad_(True) for p in ps]


CASES = [(d, layout) for d, layout in itertools.product(
    [(1, 1, 1, 1, 1), (2, 7, 3, 5, 9), (3, 20, 8, 14, 14), (2, 72, 24, 28, 28), (1, 130, 33, 7, 7),
     (2, 16, 8, 1, 1)],
    ["nchw", "nhwc", "strided"],
) if layout != "strided" or d[3] * d[4] > 1]  # a 1x1 map's strided view is contiguous


@pytest.mark.parametrize("dims,layout", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_torchvision(dims, layout, dtype):
    N, C, S, H, W = dims
    for i, (activation, gate) in enumerate(itertools.product(ACTS, GATES)):
        bias = i % 3 != 2
        ref = _reference(C, S, activation, gate, bias, seed=i)
        x64 = torch.randn(N, C, H, W, dtype=torch.float64) * 2 + 0.5
        x = make_layout(x64.to(dtype), layout).requires_grad_(True)
        x64.requires_grad_(True)
        params = _params(ref, dtype)
        y = mx.ops.squeeze_excitation(x, *params, activation=activation, gate=gate)
        y64 = ref(x64)
        assert y.dtype == dtype and y.shape == x.shape
        if layout == "nhwc" and min(H, W) > 1:
            assert y.is_contiguous(memory_format=torch.channels_last)
        what = f"{dims} {layout} {activation} {gate} bias={bias}"
        assert_close(y, y64, dtype, f"output {what}")
        g = torch.randn_like(y64)
        grads = torch.autograd.grad(y, [x] + [p for p in params if p is not None], g.to(dtype))
        refs = torch.autograd.grad(y64, [x64] + [p for p in ref.parameters()], g)
        for name, a, b in zip(["input", "weight1", "bias1", "weight2", "bias2"] if bias else
                              ["input", "weight1", "weight2"], grads, refs):
            assert_close(a, b, dtype, f"grad {name} {what}")


@pytest.mark.parametrize("activation", list(ACTS))
@pytest.mark.parametrize("gate", list(GATES))
def test_gradcheck(activation, gate):
    torch.manual_seed(1)
    x = torch.randn(2, 6, 3, 5, dtype=torch.float64, requires_grad=True)
    w1 = torch.randn(3, 6, 1, 1, dtype=torch.float64, requires_grad=True)
    b1 = torch.randn(3, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    b2 = torch.randn(6, dtype=torch.float64, requires_grad=True)
    fn = lambda *a: mx.ops.squeeze_excitation(*a, activation=activation, gate=gate)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w1, b1, w2, b2))
    assert torch.autograd.gradcheck(fn, (x.detach().to(memory_format=torch.channels_last).requires_grad_(), w1,
                                         b1, w2, b2))


def test_large_mean_and_nan():
    ref = _reference(9, 4, "relu", "hardsigmoid")
    x = torch.randn(2, 9, 40, 40, dtype=torch.float64) + 1e4
    y = mx.ops.squeeze_excitation(x.float(), *_params(ref, torch.float32))
    assert_close(y, ref(x), torch.float32, "large mean")
    x[1, 3, 5, 7] = float("nan")
    y = mx.ops.squeeze_excitation(x, *_params(ref, torch.float64))
    yr = ref(x)
    assert torch.equal(y.isnan(), yr.isnan())
    assert y[1].isnan().any() and not y[0].isnan().any()


def test_deterministic_across_threads():
    ref = _reference(40, 8, "relu", "hardsigmoid")
    x = torch.randn(4, 40, 30, 30).to(memory_format=torch.channels_last).requires_grad_(True)
    params = _params(ref, torch.float32)
    g = torch.randn_like(x)
    outs = []
    old = torch.get_num_threads()
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            for layout in ("nchw", "nhwc"):
                xi = make_layout(x.detach(), layout).requires_grad_(True)
                y = mx.ops.squeeze_excitation(xi, *params)
                outs.append((layout, [y] + list(torch.autograd.grad(y, [xi] + params, g))))
    finally:
        torch.set_num_threads(old)
    for (la, a), (lb, b) in zip(outs[:2], outs[2:]):
        assert la == lb
        for u, v in zip(a, b):
            assert torch.equal(u, v)


def test_opcheck():
    ref = _reference(10, 4, "hardswish", "sigmoid")
    x = torch.randn(2, 10, 5, 6)
    p = _params(ref, torch.float32)
    ops = torch.ops.mobilenet_ext
    for xi in (x, x.to(memory_format=torch.channels_last)):
        torch.library.opcheck(ops.squeeze_excitation.default, (xi, *p, 3, 1))
        pd = [t.detach() for t in p]
        means = ops.squeeze_excitation_means(xi)
        torch.testing.assert_close(means, xi.mean((2, 3)), rtol=1e-5, atol=1e-6)
        torch.library.opcheck(ops.squeeze_excitation_means.default, (xi,))
        y = ops.squeeze_excitation(xi, *pd, 3, 1)
        torch.library.opcheck(ops.squeeze_excitation_backward.default, (torch.randn_like(xi), y, means, *pd, 3, 1))
    with pytest.raises(ValueError, match="means must have shape"):
        ops.squeeze_excitation_backward(torch.randn_like(x), x, torch.zeros(2, 3), *pd, 3, 1)
    with pytest.raises(ValueError, match="4-D"):
        ops.squeeze_excitation_means(torch.zeros(2, 3))


def test_backward_keeps_the_output_not_the_input():
    # autograd keeps the output (the next layer keeps it anyway) and the
    # [N, C] means: the input is not among the saved tensors
    ref = _reference(16, 8, "hardswish", "hardsigmoid")
    p = [t.detach().requires_grad_(True) for t in _params(ref, torch.float32)]
    x = torch.randn(2, 16, 7, 7, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = mx.ops.squeeze_excitation(x * 1.0, *p, activation="hardswish", gate="hardsigmoid")
    ptrs = {t.untyped_storage().data_ptr() for t in saved}
    assert y.untyped_storage().data_ptr() in ptrs
    assert all(t.numel() < x.numel() or t.untyped_storage().data_ptr() == y.untyped_storage().data_ptr()
               for t in saved)
    # a gate saturated at 0 for some channels (hardsigmoid below -3): their
    # scale is 0, the output there is 0, the gradients stay finite and right
    with torch.no_grad():
        p[3][:8] = -10.0  # bias2: channels 0-7 gated off
    x64 = x.detach().double().requires_grad_(True)
    p64 = [t.detach().double().requires_grad_(True) for t in p]
    y64 = mx.ops.squeeze_excitation(x64, *p64, activation="hardswish", gate="hardsigmoid")
    assert (y64[:, :8] == 0).all()
    g = torch.randn_like(y64)
    got = torch.autograd.grad(y64, [x64] + p64, g)
    r = _reference(16, 8, "hardswish", "hardsigmoid").double()
    with torch.no_grad():
        for dst, src in zip((r.fc1.weight, r.fc1.bias, r.fc2.weight, r.fc2.bias), p64):
            dst.copy_(src.reshape(dst.shape))
    xr = x64.detach().clone().requires_grad_(True)
    want = torch.autograd.grad(r(xr), [xr] + list(r.parameters()), g)
    for a, b in zip(got, want):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b.reshape(a.shape), rtol=1e-10, atol=1e-12)


def test_errors():
    ref = _reference(10, 4, "relu", "hardsigmoid")
    w1, b1, w2, b2 = _params(ref, torch.float32)
    x = torch.randn(2, 10, 5, 5)
    se = mx.ops.squeeze_excitation
    with pytest.raises(ValueError, match="gate must be one of"):
        se(x, w1, b1, w2, b2, gate="tanh")
    with pytest.raises(ValueError, match="activation"):
        se(x, w1, b1, w2, b2, activation="gelu")
    with pytest.raises(ValueError, match=r"input must be a 4-D tensor"):
        se(x[0], w1, b1, w2, b2)
    with pytest.raises(ValueError, match=r"weight2 must have shape \[10, 4\]"):
        se(x, w1, b1, w2[:, :3], b2)
    with pytest.raises(ValueError, match=r"weight1 must have shape \[4, 11\] or \[4, 11, 1, 1\], got \[4, 10, 1, 1\]"):
        se(torch.randn(2, 11, 5, 5), w1, b1, w2, b2)
    with pytest.raises(ValueError, match=r"bias2 must have shape \[10\]"):
        se(x, w1, b1, w2, b2[:5])
    with pytest.raises(ValueError, match="weight1 must have the input's dtype"):
        se(x, w1.double(), b1, w2, b2)
    with pytest.raises(ValueError, match="non-empty spatial size"):
        se(torch.randn(2, 10, 0, 5), w1, b1, w2, b2)
    with pytest.raises(ValueError, match="float32 or float64"):
        se(x.half(), w1.half(), b1.half(), w2.half(), b2.half())
    assert se(torch.randn(0, 10, 5, 5), w1, b1, w2, b2).shape == (0, 10, 5, 5)


def test_convert_torchvision_v3_trains_like_stock():
    import torchvision

    torch.manual_seed(0)
    stock = torchvision.models.mobilenet_v3_small(num_classes=10).to(torch.float64)
    conv, counts = mx.convert(stock, return_counts=True)
    assert counts["squeeze_excitation"] == 9
    ses = [m for m in conv.modules() if type(m).__name__ == "TorchvisionSqueezeExcitation"]
    assert len(ses) == 9
    assert list(conv.state_dict()) == list(stock.state_dict())
    x = torch.randn(3, 3, 64, 64, dtype=torch.float64)
    for fmt in (torch.contiguous_format, torch.channels_last):
        a, b = copy.deepcopy(stock).train(), copy.deepcopy(conv).train()
        xa = x.to(memory_format=fmt)
        torch.manual_seed(1)  # the classifier's dropout draws the same mask
        ya = a(xa)
        torch.manual_seed(1)
        yb = b(xa)
        assert_close(yb, ya, torch.float64, "logits")
        ya.square().sum().backward()
        yb.square().sum().backward()
        for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
            assert_close(pb.grad, pa.grad, torch.float64, f"grad {n}")
    # the fused inference model scales in place inside its blocks, and agrees
    fast = mx.fuse(mx.convert(stock).eval())
    assert sum(type(m).__name__ == "InplaceSqueezeExcitation" for m in fast.modules()) == 9
    with torch.no_grad():
        assert_close(fast(x), stock.eval()(x), torch.float64, "fused logits")


def test_models_se_uses_op():
    from mobilenet_ext.models import SqueezeExcitation

    for backend, expect in (("ext", True), ("torch", False)):
        m = SqueezeExcitation(16, 8, backend=backend).to(torch.float64)
        assert m.use_op is expect
        ref = TvSE(16, 8, scale_activation=tnn.Hardsigmoid).to(torch.float64)
        ref.load_state_dict(m.state_dict())
        x = torch.randn(2, 16, 9, 9, dtype=torch.float64, requires_grad=True)
        assert_close(m(x), ref(x), torch.float64, backend)
    m = SqueezeExcitation(16, 8, backend="torch")
    conv, counts = mx.convert(tnn.Sequential(m), return_counts=True)
    assert counts["squeeze_excitation"] == 1 and conv[0].use_op
    # a form the op does not cover stays as it is
    odd = TvSE(16, 8, activation=tnn.GELU)
    _, counts = mx.convert(tnn.Sequential(odd), return_counts=True)
    assert counts["squeeze_excitation"] == 0


@pytest.mark.parametrize("layout", ["nchw", "nhwc", "strided"])
def test_inplace_matches_out_of_place(layout):
    ref = _reference(20, 8, "hardswish", "sigmoid")
    p = [t.detach() for t in _params(ref, torch.float32)]
    x = make_layout(torch.randn(3, 20, 9, 11), layout)
    want = mx.ops.squeeze_excitation(x, *p, activation="hardswish", gate="sigmoid")
    y = x.clone() if layout == "strided" else x.clone(memory_format=torch.preserve_format)
    if layout == "strided":
        y = make_layout(y, "strided")
    ptr = y.data_ptr()
    out = mx.ops.squeeze_excitation_(y, *p, activation="hardswish", gate="sigmoid")
    assert out is y and y.data_ptr() == ptr
    assert torch.equal(y, want)
    x.requires_grad_(True)
    with pytest.raises(RuntimeError, match="without autograd"):
        mx.ops.squeeze_excitation_(x, *p)
    with torch.no_grad():  # no recording: allowed
        mx.ops.squeeze_excitation_(x, *p)


def test_fused_model_calls_the_inplace_op():
    import torchvision

    torch.manual_seed(0)
    stock = torchvision.models.mobilenet_v3_small().eval()
    fast = mx.fuse(mx.convert(stock).eval())
    x = torch.randn(2, 3, 96, 96)
    with torch.profiler.profile() as prof, torch.no_grad():
        y = fast(x)
    names = [e.name for e in prof.events()]
    assert names.count("mobilenet_ext::squeeze_excitation_") == 9
    with torch.no_grad():
        assert_close(y, stock(x), torch.float32, "fused logits")
