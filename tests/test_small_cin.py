"""conv2d_small_cin_fused (the stem conv) and SmallCinConv2d: against
F.conv2d in float64, every layout, activation and awkward size; errors;
fake kernel / opcheck / torch.compile; fuse() puts it in torchvision's
MobileNet stems."""
from __future__ import annotations

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import mobilenet_ext as mx
from _helpers import make_layout, torchvision_eval_model

ext = torch.ops.mobilenet_ext
ACTS = {None: lambda y: y, "relu": F.relu, "relu6": F.relu6, "hardswish": F.hardswish}

# (N, C_in, H, W, C_out, k, stride, padding)
SHAPES = [
    (2, 3, 64, 48, 32, 3, 2, 1),   # MobileNet V2 stem
    (1, 3, 35, 29, 16, 3, 2, 1),   # V3 stem, odd sizes
    (3, 1, 9, 11, 5, 5, 1, 2),     # one input channel, channels not a whole vector
    (2, 4, 10, 7, 37, 7, 3, 3),    # 7x7, stride 3
    (1, 2, 3, 3, 9, 3, 1, 4),      # padding wider than the input
    (2, 3, 6, 13, 1, 1, 1, 0),     # 1x1, one output channel
    (0, 3, 8, 8, 8, 3, 2, 1),      # empty batch
]


def _ref(x, w, b, s, p, act):
    y = F.conv2d(x.double(), w.double(), None if b is None else b.double(), s, p)
    return ACTS[act](y)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("layout", ["nchw", "nhwc", "strided"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cl_out", [False, True], ids=["same_layout", "cl_out"])
def test_matches_conv2d(shape, layout, dtype, cl_out):
    n, ci, h, wd, co, k, s, p = shape
    g = torch.Generator().manual_seed(hash(shape) % 1000)
    if n == 0 and layout == "strided":
        pytest.skip("an empty tensor is contiguous in every layout")
    x = make_layout(torch.randn(n, ci, h, wd, generator=g, dtype=dtype), layout)
    w = torch.randn(co, ci, k, k, generator=g, dtype=dtype)
    b = torch.randn(co, generator=g, dtype=dtype)
    for act in ACTS:
        for bias in (b, None):
            y = mx.ops.conv2d_small_cin_fused(x, w, bias, s, p, act, channels_last_output=cl_out)
            r = _ref(x, w, bias, s, p, act)
            assert y.shape == r.shape and y.dtype == dtype
            # elementwise bound: float32 rounding of a sum of ci*k*k terms
            absr = F.conv2d(x.double().abs(), w.double().abs(), None if bias is None else bias.double().abs(), s, p)
            u = 2.0 ** -24 if dtype == torch.float32 else 2.0 ** -53
            tol = 16 * u * (4 + (ci * k * k) ** 0.5) * absr + 4 * u * r.abs() + 1e-300
            assert ((y.double() - r).abs() <= tol).all(), (act, bias is None, (y.double() - r).abs().max())
            if y.numel() and (cl_out or (layout == "nhwc" and ci > 1 and co > 1)):
                assert y.is_contiguous(memory_format=torch.channels_last)
            elif y.numel() and layout != "nhwc":
                assert y.is_contiguous()
            if cl_out:  # the same arithmetic in either output layout: the same bits
                assert torch.equal(y, mx.ops.conv2d_small_cin_fused(x, w, bias, s, p, act))


@pytest.mark.parametrize("shape", SHAPES[:5], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_channels_last_weight(shape, layout):
    # a model moved to channels_last has its stem weight channels_last: read
    # as it is (no copy), the same bits as the contiguous weight
    n, ci, h, wd, co, k, s, p = shape
    g = torch.Generator().manual_seed(7)
    x = make_layout(torch.randn(n, ci, h, wd, generator=g, dtype=torch.float64), layout)
    w = torch.randn(co, ci, k, k, generator=g, dtype=torch.float64)
    b = torch.randn(co, generator=g, dtype=torch.float64)
    wcl = w.contiguous(memory_format=torch.channels_last)
    assert ci == 1 or not wcl.is_contiguous()
    for dtype in (torch.float64, torch.float32):
        y = mx.ops.conv2d_small_cin_fused(x.to(dtype), wcl.to(dtype), b.to(dtype), s, p, "relu6")
        assert torch.equal(y, mx.ops.conv2d_small_cin_fused(x.to(dtype), w.to(dtype), b.to(dtype), s, p, "relu6"))
        torch.testing.assert_close(y.double(), F.relu6(F.conv2d(x, w, b, s, p)), rtol=1e-5, atol=1e-5)


def test_nan_propagates_and_threads_bitwise():
    x = torch.randn(2, 3, 40, 40)
    x[1, 2, 17, 5] = float("nan")
    w, b = torch.randn(32, 3, 3, 3), torch.randn(32)
    r = F.relu6(F.conv2d(x, w, b, 2, 1))
    old = torch.get_num_threads()
    try:
        outs = []
        for t in (1, 2):
            torch.set_num_threads(t)
            outs.append(mx.ops.conv2d_small_cin_fused(x, w, b, 2, 1, "relu6"))
    finally:
        torch.set_num_threads(old)
    assert torch.equal(outs[0].isnan(), r.isnan()) and outs[0].isnan().any()
    assert torch.equal(outs[0].nan_to_num(), outs[1].nan_to_num())


@pytest.mark.parametrize("call,err,match", [
    (lambda: mx.ops.conv2d_small_cin_fused(torch.randn(3, 8, 8), torch.randn(4, 3, 3, 3)), ValueError, "input must be a 4-D"),
    (lambda: mx.ops.conv2d_small_cin_fused(torch.randn(1, 3, 8, 8), torch.randn(4, 2, 3, 3)), ValueError, "weight must be a dense conv weight"),
    (lambda: mx.ops.conv2d_small_cin_fused(torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3).double()), ValueError, "weight must have the input's dtype"),
    (lambda: mx.ops.conv2d_small_cin_fused(torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3), torch.randn(5)), ValueError, r"bias must have shape \[4\]"),
    (lambda: mx.ops.conv2d_small_cin_fused(torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3), stride=0), ValueError, "stride must be >= 1"),
    (lambda: mx.ops.conv2d_small_cin_fused(torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3), padding=-1), ValueError, "padding must be >= 0"),
    (lambda: mx.ops.conv2d_small_cin_fused(torch.randn(1, 3, 2, 2), torch.randn(4, 3, 3, 3)), ValueError, "output size would be < 1"),
    (lambda: mx.ops.conv2d_small_cin_fused(torch.randn(1, 3, 8, 8).half(), torch.randn(4, 3, 3, 3).half()), ValueError, "float32 or float64"),
    (lambda: mx.ops.conv2d_small_cin_fused(torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3), activation="gelu"), ValueError, "activation"),
    (lambda: mx.ops.conv2d_small_cin_fused(torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3), channels_last_output=1), TypeError, "channels_last_output must be a bool, got 1"),
])
def test_errors(call, err, match):
    with pytest.raises(err, match=match):
        call()


def test_not_differentiable():
    x = torch.randn(1, 3, 8, 8, requires_grad=True)
    y = mx.ops.conv2d_small_cin_fused(x, torch.randn(4, 3, 3, 3), None, 1, 1, "relu")
    with pytest.raises(RuntimeError, match="inference only"):
        y.sum().backward()


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_opcheck_and_compile(layout):
    g = torch.Generator().manual_seed(3)
    x = make_layout(torch.randn(2, 3, 11, 9, generator=g), layout)
    w, b = torch.randn(8, 3, 3, 3, generator=g), torch.randn(8, generator=g)
    with torch.no_grad():
        torch.library.opcheck(ext.conv2d_small_cin_fused, (x, w, b, [2, 2], [1, 1], 3))
        torch.library.opcheck(ext.conv2d_small_cin_fused, (x, w, None, [1, 2], [0, 1], 0))
        torch.library.opcheck(ext.conv2d_small_cin_fused, (x, w, b, [2, 2], [1, 1], 2, True))
        f = torch.compile(lambda t: mx.ops.conv2d_small_cin_fused(t, w, b, 2, 1, "hardswish"), fullgraph=True)
        torch.testing.assert_close(f(x), mx.ops.conv2d_small_cin_fused(x, w, b, 2, 1, "hardswish"))


def test_module_falls_back_with_grad_and_keeps_state_dict():
    conv = tnn.Conv2d(3, 16, 3, stride=2, padding=1)
    m = mx.nn.SmallCinConv2d.from_conv(conv, "hardswish")
    assert set(m.state_dict()) == set(conv.state_dict())
    x = torch.randn(2, 3, 15, 17, requires_grad=True)
    y = m(x)  # autograd: F.conv2d + activation
    y.sum().backward()
    assert x.grad is not None
    with torch.no_grad():
        torch.testing.assert_close(m(x), F.hardswish(conv(x)), rtol=1e-5, atol=1e-5)
    assert "activation='hardswish'" in repr(m)
    with pytest.raises(ValueError, match="groups=1"):
        mx.nn.SmallCinConv2d.from_conv(tnn.Conv2d(3, 3, 3, groups=3))
    with pytest.raises(ValueError, match="at most 4 input channels"):
        mx.nn.SmallCinConv2d.from_conv(tnn.Conv2d(8, 3, 3))


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small"])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_fuse_uses_it_for_the_stem(name, layout):
    ref = torchvision_eval_model(name)
    fused = mx.fuse(mx.convert(ref).eval())
    stem = fused.features[0]
    assert type(stem[0]) is mx.nn.SmallCinConv2d
    assert stem[0].activation == ("relu6" if name == "mobilenet_v2" else "hardswish")
    assert all(type(m) is tnn.Identity for m in list(stem)[1:])
    x = make_layout(torch.randn(2, 3, 96, 96), layout)
    with torch.no_grad():
        want = ref.double()(x.double())
        got = fused(x)
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-4 * (1 + want.abs().max().item()))


def test_fuse_keeps_a_wide_dense_conv():
    seq = tnn.Sequential(tnn.Conv2d(8, 8, 3, padding=1), tnn.BatchNorm2d(8), tnn.ReLU()).eval()
    fused = mx.fuse(seq)
    assert type(fused[0]) is tnn.Conv2d and type(fused[2]) is tnn.ReLU


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("shape", SHAPES[:5], ids=str)
def test_differentiable_op_against_conv2d_float64(shape, layout):
    # conv2d_small_cin: the kernel's forward, PyTorch's backward; every gradient
    # against F.conv2d's in float64, and gradcheck
    n, ci, h, w_, co, k, s, p = shape
    g = torch.Generator().manual_seed(sum(shape))
    x = make_layout(torch.randn(n, ci, h, w_, generator=g, dtype=torch.float64), layout).requires_grad_()
    w = torch.randn(co, ci, k, k, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(co, generator=g, dtype=torch.float64, requires_grad=True)
    y = mx.ops.conv2d_small_cin(x, w, b, s, p)
    y0 = F.conv2d(x, w, b, s, p)
    with torch.no_grad():  # the same output, in the same layout, as the inference op
        y_inf = mx.ops.conv2d_small_cin_fused(x, w, b, s, p)
    assert y.stride() == y_inf.stride() and torch.equal(y, y_inf)
    torch.testing.assert_close(y, y0, rtol=1e-12, atol=1e-12)
    gy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    got = torch.autograd.grad(y, (x, w, b), gy)
    want = torch.autograd.grad(y0, (x, w, b), gy)
    for a, e, name in zip(got, want, ("input", "weight", "bias")):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12, msg=name)
    if shape == SHAPES[1]:
        xs = x.detach()[:, :, :9, :8].clone().requires_grad_()
        assert torch.autograd.gradcheck(lambda *t: mx.ops.conv2d_small_cin(*t, s, p), (xs, w, b))
        assert torch.autograd.gradcheck(lambda t: mx.ops.conv2d_small_cin(t, w, None, s, p), (xs,))


def test_differentiable_op_opcheck_compile_and_module():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 11, 9, generator=g)
    w = torch.randn(8, 3, 3, 3, generator=g, requires_grad=True)
    b = torch.randn(8, generator=g, requires_grad=True)
    torch.library.opcheck(ext.conv2d_small_cin, (x, w, b, [2, 2], [1, 1]))
    torch.library.opcheck(ext.conv2d_small_cin, (x.requires_grad_(), w, None, [1, 2], [0, 1]))
    f = torch.compile(lambda t: mx.ops.conv2d_small_cin(t, w, b, 2, 1), fullgraph=True)
    torch.testing.assert_close(f(x), F.conv2d(x, w, b, 2, 1), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="weight must be a dense conv weight"):
        mx.ops.conv2d_small_cin(x, torch.randn(4, 2, 3, 3, requires_grad=True))
    # the module in training without an activation runs the op; convert() puts it in the stem
    conv = tnn.Conv2d(3, 16, 3, stride=2, padding=1)
    net = mx.convert(tnn.Sequential(conv, tnn.BatchNorm2d(16), tnn.ReLU()))
    assert type(net[0]) is mx.nn.SmallCinConv2d and net[0].activation is None
    xx = torch.randn(2, 3, 15, 17)
    y = net[0](xx)
    assert "conv2d_small_cin" in y.grad_fn.name()
    y.sum().backward()
    w0 = net[0].weight.detach().clone().requires_grad_()
    F.conv2d(xx, w0, net[0].bias.detach(), 2, 1).sum().backward()
    torch.testing.assert_close(net[0].weight.grad, w0.grad, rtol=1e-5, atol=1e-4)


def _gw_ref(gy, x, w, s, p):
    """float64 weight / bias gradients of F.conv2d, and the same sums over |terms|."""
    def grads(gy_, x_):
        return torch.ops.aten.convolution_backward(gy_, x_, w.double(), [w.shape[0]], [s, s], [p, p], [1, 1],
                                                   False, [0, 0], 1, [False, True, True])[1:]
    return grads(gy.double(), x.double()), grads(gy.double().abs(), x.double().abs())


@pytest.mark.parametrize("layout", ["nchw", "nhwc", "strided"])
@pytest.mark.parametrize("shape", [s for s in SHAPES if s[0] > 0] + [(3, 3, 40, 36, 32, 3, 2, 1)],
                         ids=lambda s: "x".join(map(str, s)))
def test_backward_weight_float32_against_float64(shape, layout):
    # the vector kernel (float32) against F.conv2d's weight and bias gradients
    # in float64, within the rounding bound of an N*OH*OW-term sum
    n, ci, h, w_, co, k, s, p = shape
    g = torch.Generator().manual_seed(7 + sum(shape))
    x = make_layout(torch.randn(n, ci, h, w_, generator=g), layout)
    w = torch.randn(co, ci, k, k, generator=g)
    oh, ow = (h + 2 * p - k) // s + 1, (w_ + 2 * p - k) // s + 1
    gy = make_layout(torch.randn(n, co, oh, ow, generator=g), layout)
    gw, gb = ext.conv2d_small_cin_backward_weight(gy, x, w, [s, s], [p, p])
    assert gw.shape == w.shape and gw.is_contiguous() and gb.shape == (co,)
    (rw, rb), (aw, ab) = _gw_ref(gy, x, w, s, p)
    u = 2.0 ** -24
    terms = n * oh * ow
    for got, ref, absr in ((gw, rw, aw), (gb, rb, ab)):
        tol = 16 * u * (4 + terms ** 0.5) * absr + 4 * u * ref.abs()
        assert ((got.double() - ref).abs() <= tol).all(), (got.double() - ref).abs().max()


def test_backward_weight_float64_and_nan():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 17, 13, generator=g, dtype=torch.float64)
    w = torch.randn(16, 3, 3, 3, generator=g, dtype=torch.float64)
    gy = torch.randn(2, 16, 9, 7, generator=g, dtype=torch.float64)
    gw, gb = ext.conv2d_small_cin_backward_weight(gy, x, w, [2, 2], [1, 1])
    (rw, rb), _ = _gw_ref(gy, x, w, 2, 1)
    torch.testing.assert_close(gw, rw, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gb, rb, rtol=1e-12, atol=1e-12)
    # a NaN in grad_output reaches every gradient of its channel, no other
    for dtype in (torch.float32, torch.float64):
        gn = gy.to(dtype).clone()
        gn[1, 5, 4, 3] = float("nan")
        gw, gb = ext.conv2d_small_cin_backward_weight(gn, x.to(dtype), w.to(dtype), [2, 2], [1, 1])
        nan_ch = torch.zeros(16, dtype=torch.bool)
        nan_ch[5] = True
        assert gw.isnan().flatten(1).all(1).equal(nan_ch) and gw.isnan().flatten(1).any(1).equal(nan_ch)
        assert gb.isnan().equal(nan_ch)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_backward_weight_same_bits_for_any_thread_count(layout):
    g = torch.Generator().manual_seed(5)
    x = make_layout(torch.randn(4, 3, 64, 60, generator=g), layout)
    w = torch.randn(32, 3, 3, 3, generator=g)
    gy = make_layout(torch.randn(4, 32, 32, 30, generator=g), layout)
    old = torch.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            outs.append(ext.conv2d_small_cin_backward_weight(gy, x, w, [2, 2], [1, 1]))
    finally:
        torch.set_num_threads(old)
    for gw, gb in outs[1:]:
        assert torch.equal(gw, outs[0][0]) and torch.equal(gb, outs[0][1])


def test_backward_weight_errors_and_opcheck():
    x = torch.randn(2, 3, 11, 9)
    w = torch.randn(8, 3, 3, 3)
    gy = torch.randn(2, 8, 6, 5)
    op = ext.conv2d_small_cin_backward_weight
    with pytest.raises(ValueError, match=r"grad_output must have the output's shape \[2, 8, 6, 5\]"):
        op(torch.randn(2, 8, 6, 4), x, w, [2, 2], [1, 1])
    with pytest.raises(ValueError, match="grad_output must have the input's dtype"):
        op(gy.double(), x, w, [2, 2], [1, 1])
    with pytest.raises(ValueError, match="weight must be a dense conv weight"):
        op(gy, x, torch.randn(8, 2, 3, 3), [2, 2], [1, 1])
    with pytest.raises(ValueError, match="stride must be >= 1"):
        op(gy, x, w, [0, 2], [1, 1])
    torch.library.opcheck(op, (gy, x, w, [2, 2], [1, 1]))
    torch.library.opcheck(op, (gy.contiguous(memory_format=torch.channels_last),
                               x.contiguous(memory_format=torch.channels_last), w, [2, 2], [1, 1]))


@pytest.mark.parametrize("wants", [(True, False, False), (False, True, False), (False, False, True), (True, True, True)],
                         ids=["input", "weight", "bias", "all"])
def test_differentiable_op_each_gradient_alone(wants):
    # the backward asks our kernel for the weight / bias gradients and
    # PyTorch for the input's, each only when wanted
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 3, 15, 13, generator=g, dtype=torch.float64).requires_grad_(wants[0])
    w = torch.randn(16, 3, 3, 3, generator=g, dtype=torch.float64).requires_grad_(wants[1])
    b = torch.randn(16, generator=g, dtype=torch.float64).requires_grad_(wants[2])
    y = mx.ops.conv2d_small_cin(x, w, b, 2, 1)
    gy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    inputs = [t for t, want in zip((x, w, b), wants) if want]
    got = torch.autograd.grad(y, inputs, gy)
    want = torch.autograd.grad(F.conv2d(x, w, b, 2, 1), inputs, gy)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)
