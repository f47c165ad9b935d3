"""Fused BatchNorm + activation (mx.ops.batch_norm_act, mx.nn.BatchNormAct2d,
convert's BatchNorm fusion) against nn.BatchNorm2d + the activation in
float64."""
from __future__ import annotations

import copy
import zlib

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import mobilenet_ext as mx
from _helpers import assert_close, make_layout

ACTS = {None: tnn.Identity, "relu": tnn.ReLU, "relu6": tnn.ReLU6, "hardswish": tnn.Hardswish}


def _pair(C, activation, dtype, **bn_kwargs):
    """(ours in dtype, reference nn.BatchNorm2d + activation in float64) with
    the same random affine parameters and running statistics."""
    ref_bn = tnn.BatchNorm2d(C, **bn_kwargs).to(torch.float64)
    with torch.no_grad():
        if ref_bn.weight is not None:
            ref_bn.weight.uniform_(0.5, 1.5)
            ref_bn.bias.uniform_(-0.5, 0.5)
        if ref_bn.running_mean is not None:
            ref_bn.running_mean.uniform_(-1, 1)
            ref_bn.running_var.uniform_(0.5, 2)
    ours = mx.nn.BatchNormAct2d(C, activation=activation, **bn_kwargs).to(dtype)
    ours.load_state_dict(ref_bn.state_dict())
    return ours, tnn.Sequential(ref_bn, ACTS[activation]())


# where the activations' derivatives jump
KINKS = {tnn.Identity: (), tnn.ReLU: (0.0,), tnn.ReLU6: (0.0, 6.0), tnn.Hardswish: (-3.0, 3.0)}


def _away_from_kinks(ref, shape, dtype, mean, train):
    """A random input (float64 values representable in dtype) whose
    BatchNorm output z keeps a margin from every kink of the activation.

    At a kink the derivative jumps, and a z within rounding of it (float32:
    a few 1e-7 here) may fall on either side: the float64 reference and any
    float32 implementation can then pick different sides and disagree on that
    element's gradient, and through the channel's reductions on all of the
    channel's input gradients (seen once in ~200 seeds, z = 2.8e-9). Such
    draws are redrawn; the tolerance stays what it is."""
    bn = ref[0]
    kinks = KINKS[type(ref[1])]
    margin = 1e-5 if dtype == torch.float32 else 1e-12
    batch_stats = train or bn.running_mean is None
    for _ in range(100):
        x = (torch.randn(shape, dtype=torch.float64) * 2 + mean + torch.arange(shape[1]).view(1, -1, 1, 1) * 0.1)
        x = x.to(dtype).to(torch.float64)
        if not kinks or x.numel() == 0:
            return x
        z = F.batch_norm(x, None if batch_stats else bn.running_mean, None if batch_stats else bn.running_var,
                         bn.weight, bn.bias, batch_stats, 0.0, bn.eps)
        if all((z - k).abs().min().item() >= margin for k in kinks):
            return x
    raise AssertionError("no input away from the kinks in 100 draws")


def _check_steps(ours, ref, shape, dtype, layout, steps=3, mean=0.0, train=True):
    ours.train(train)
    ref.train(train)
    bn = ref[0]
    for step in range(steps):
        x = _away_from_kinks(ref, shape, dtype, mean, train)
        x = make_layout(x.to(dtype), layout).requires_grad_(True)
        x64 = x.detach().to(torch.float64).requires_grad_(True)
        y = ours(x)
        y64 = ref(x64)
        assert y.dtype == dtype and y.shape == x.shape
        if layout == "nhwc":
            assert y.is_contiguous(memory_format=torch.channels_last)
        assert_close(y, y64, dtype, f"output step {step}")
        g = torch.randn_like(y64)
        y.backward(g.to(dtype))
        y64.backward(g)
        assert_close(x.grad, x64.grad, dtype, f"grad input step {step}")
        if bn.weight is not None:
            assert_close(ours.weight.grad, bn.weight.grad, dtype, "grad weight")
            assert_close(ours.bias.grad, bn.bias.grad, dtype, "grad bias")
            ours.weight.grad = ours.bias.grad = bn.weight.grad = bn.bias.grad = None
        if bn.running_mean is not None:
            assert_close(ours.running_mean, bn.running_mean, dtype, "running_mean")
            assert_close(ours.running_var, bn.running_var, dtype, "running_var")
            assert ours.num_batches_tracked.item() == bn.num_batches_tracked.item()
        else:
            assert ours.running_mean is None and ours.running_var is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("activation", [None, "relu", "relu6", "hardswish"])
@pytest.mark.parametrize("shape", [(4, 7, 5, 6), (1, 19, 3, 11), (3, 40, 9, 9)])
def test_train_matches_batchnorm2d(dtype, layout, activation, shape):
    torch.manual_seed(zlib.crc32(repr((dtype, layout, activation, shape)).encode()) % 1000)  # the same in every run
    ours, ref = _pair(shape[1], activation, dtype)
    _check_steps(ours, ref, shape, dtype, layout)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("shape", [(2, 32, 128, 128), (2, 648, 17, 3)])
def test_train_matches_batchnorm2d_large(layout, shape):
    """Outputs of 4 MiB and more, C and H*W multiples of 16: written with
    non-temporal stores; 648 channels: two NHWC sweep panels of the
    reductions, the second with a channel tail (136 = 8 x 17) on AVX-512.
    No activation: with a million values some z always lies within rounding
    of a kink (see _away_from_kinks); the kernel tests (tests/cpp) run every
    activation at this size against a reference that shares the kernel's
    mask."""
    torch.manual_seed(zlib.crc32(repr((layout, shape)).encode()) % 1000)
    ours, ref = _pair(shape[1], None, torch.float32)
    _check_steps(ours, ref, shape, torch.float32, layout, steps=2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(momentum=None),  # cumulative moving average
        dict(momentum=0.3, eps=1e-3),
        dict(affine=False),
        dict(track_running_stats=False),
        dict(affine=False, track_running_stats=False, momentum=None),
    ],
    ids=["momentum_none", "momentum_eps", "no_affine", "no_running_stats", "neither"],
)
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_flags(dtype, kwargs, layout):
    torch.manual_seed(3)
    ours, ref = _pair(13, "relu6", dtype, **kwargs)
    _check_steps(ours, ref, (3, 13, 7, 5), dtype, layout, steps=4)
    # eval mode: running statistics (or batch statistics without them)
    _check_steps(ours, ref, (2, 13, 4, 3), dtype, layout, steps=2, train=False)


@pytest.mark.parametrize("activation", [None, "hardswish"])
@pytest.mark.parametrize("layout", ["nchw", "nhwc", "strided"])
def test_eval_mode(activation, layout):
    torch.manual_seed(4)
    ours, ref = _pair(9, activation, torch.float32)
    _check_steps(ours, ref, (2, 9, 6, 7), torch.float32, layout, steps=2, train=False)
    ours64, ref64 = _pair(9, activation, torch.float64)
    _check_steps(ours64, ref64, (2, 9, 6, 7), torch.float64, layout, steps=2, train=False)


def test_one_value_per_channel_in_training_is_an_error():
    bn = mx.nn.BatchNormAct2d(4, activation="relu")
    ref = tnn.BatchNorm2d(4)
    x = torch.randn(1, 4, 1, 1)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training") as e_ref:
        ref(x)
    with pytest.raises(type(e_ref.value), match=r"Expected more than 1 value per channel when training, got input size"):
        bn(x)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        torch.ops.mobilenet_ext.batch_norm_act(x, None, None, None, None, True, 1e-5, 1)
    # batch 1 with more than one pixel, and eval mode with one value, are fine
    bn(torch.randn(1, 4, 2, 1))
    bn.eval()
    ref.eval()
    assert_close(bn(x), torch.relu(ref(x)).double(), torch.float32)


def test_empty_batch_and_compile():
    torch.manual_seed(12)
    ours, ref = _pair(8, "hardswish", torch.float32)
    e = torch.randn(0, 8, 5, 5, requires_grad=True)
    y = ours(e)
    ref(e.detach().double())
    assert y.shape == e.shape and torch.equal(ours.running_mean, ref[0].running_mean.float())
    assert ours.num_batches_tracked.item() == ref[0].num_batches_tracked.item() == 1
    y.sum().backward()
    _, m, inv = torch.ops.mobilenet_ext.batch_norm_act(e.detach(), None, None, None, None, True, 1e-5, 3)
    assert m.shape == (8,)
    # torch.compile(fullgraph=True) traces the op, its backward and the
    # running-statistics update
    compiled = torch.compile(ours, backend="aot_eager", fullgraph=True)
    for _ in range(2):
        x = torch.randn(4, 8, 5, 5, dtype=torch.float64)
        xo = x.float().requires_grad_(True)
        xr = x.clone().requires_grad_(True)
        yo, yr = compiled(xo), ref(xr)
        assert_close(yo, yr, torch.float32, "compiled")
        yo.sum().backward()
        yr.sum().backward()
        assert_close(xo.grad, xr.grad, torch.float32, "compiled grad")
        assert_close(ours.running_var, ref[0].running_var, torch.float32, "compiled running_var")
    assert ours.num_batches_tracked.item() == ref[0].num_batches_tracked.item() == 3


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_large_mean_no_cancellation(layout):
    # 8 * 56 * 56 = 25088 values per channel around 1e3 (float32) / 1e8
    # (float64): a one-pass sum of squares would lose the variance entirely.
    # BatchNorm is shift-invariant, so the float64 reference runs on x - mean
    # (exact here), where its own sums do not round at 1e8.
    torch.manual_seed(5)
    for dtype, mean in ((torch.float32, 1e3), (torch.float64, 1e8)):
        ours, ref = _pair(6, "relu", dtype)
        x = (torch.randn(8, 6, 56, 56, dtype=torch.float64) * 2 + mean).to(dtype)
        xc = (x.to(torch.float64) - mean).requires_grad_(True)
        x = make_layout(x, layout).requires_grad_(True)
        y, y64 = ours(x), ref(xc)
        assert_close(y, y64, dtype, f"output {dtype}")
        g = torch.randn_like(y64)
        y.backward(g.to(dtype))
        y64.backward(g)
        # the backward reads save_mean, rounded to dtype at |mean| (PyTorch's
        # save_mean is too): gradients are good to ~ulp(mean) / std relative
        # (float64 at 1e8: ~1e-8; float32 at 1e3: ~3e-5)
        for got, want, what in ((x.grad, xc.grad, "grad input"), (ours.weight.grad, ref[0].weight.grad, "grad weight"),
                                (ours.bias.grad, ref[0].bias.grad, "grad bias")):
            scale = 1 + want.abs().max().item()
            tol = (1e-7 if dtype == torch.float64 else 1e-4) * scale
            torch.testing.assert_close(got.double(), want, rtol=0, atol=tol, msg=what)
        assert_close(ours.running_var, ref[0].running_var, dtype, "running_var")
        assert_close(ours.running_mean, ref[0].running_mean + 0.1 * mean, dtype, "running_mean")
        _, m, invstd = torch.ops.mobilenet_ext.batch_norm_act(x.detach(), None, None, None, None, True, 1e-5, 0)
        var = invstd.double().pow(-2) - 1e-5
        ref_var = xc.detach().var((0, 2, 3), unbiased=False)
        torch.testing.assert_close(var, ref_var, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=0)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_inf_propagate(layout, bad):
    torch.manual_seed(6)
    ours, ref = _pair(5, "relu6", torch.float32)
    x = torch.randn(2, 5, 4, 4)
    x[1, 2, 3, 1] = bad
    x = make_layout(x, layout)
    y = ours(x.requires_grad_(True))
    y64 = ref(x.detach().double().requires_grad_(True))
    assert torch.equal(torch.isnan(y), torch.isnan(y64)) and torch.isnan(y[:, 2]).all()
    assert_close(y[:, [0, 1, 3, 4]], y64[:, [0, 1, 3, 4]], torch.float32)
    assert torch.isfinite(ours.running_mean[[0, 1, 3, 4]]).all() and not torch.isfinite(ours.running_mean[2])
    for got, want in ((ours.running_mean, ref[0].running_mean), (ours.running_var, ref[0].running_var)):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_thread_count_bitwise_determinism(layout):
    torch.manual_seed(7)
    x0 = make_layout(torch.randn(6, 24, 30, 30) * 3 + 5, layout)
    g = make_layout(torch.randn(6, 24, 30, 30), layout)
    results = []
    old = torch.get_num_threads()
    try:
        for threads in (1, 2, 4):
            torch.set_num_threads(threads)
            torch.manual_seed(8)
            bn = mx.nn.BatchNormAct2d(24, activation="hardswish")
            x = x0.clone().requires_grad_(True)
            y = bn(x)
            y.backward(g)
            results.append([y, x.grad, bn.weight.grad, bn.bias.grad, bn.running_mean, bn.running_var])
    finally:
        torch.set_num_threads(old)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("activation", [None, "relu", "relu6", "hardswish"])
@pytest.mark.parametrize("training", [True, False])
def test_gradcheck(layout, activation, training):
    torch.manual_seed(9)
    x = make_layout(torch.randn(3, 5, 4, 3, dtype=torch.float64) * 2, layout).requires_grad_(True)
    w = torch.rand(5, dtype=torch.float64).add_(0.5).requires_grad_(True)
    b = torch.randn(5, dtype=torch.float64).requires_grad_(True)
    rm, rv = torch.randn(5, dtype=torch.float64), torch.rand(5, dtype=torch.float64) + 0.5

    def f(x, w, b):
        return mx.ops.batch_norm_act(x, rm.clone(), rv.clone(), w, b, training, 0.1, 1e-5, activation)

    assert torch.autograd.gradcheck(f, (x, w, b))


def test_opcheck():
    torch.manual_seed(10)
    ops = torch.ops.mobilenet_ext
    for layout in ("nchw", "nhwc"):
        for dtype in (torch.float32, torch.float64):
            x = make_layout(torch.randn(2, 6, 5, 4, dtype=dtype), layout).requires_grad_(True)
            w = torch.rand(6, dtype=dtype).add_(0.5).requires_grad_(True)
            b = torch.randn(6, dtype=dtype).requires_grad_(True)
            rm, rv = torch.randn(6, dtype=dtype), torch.rand(6, dtype=dtype) + 0.5
            for args in ((x, w, b, None, None, True, 1e-5, 2), (x, w, b, rm, rv, False, 1e-3, 3),
                         (x, None, None, None, None, True, 1e-5, 1)):
                torch.library.opcheck(ops.batch_norm_act.default, args)
            y, m, inv = ops.batch_norm_act(x.detach(), w.detach(), b.detach(), None, None, True, 1e-5, 3)
            g = torch.randn_like(y)
            torch.library.opcheck(ops.batch_norm_act_backward.default,
                                  (g, x.detach(), w.detach(), b.detach(), m, inv, True, 3))


def test_module_state_dict_and_repr():
    bn = tnn.BatchNorm2d(8)
    ours = mx.nn.BatchNormAct2d(8, activation="relu6")
    assert ours.state_dict().keys() == bn.state_dict().keys()
    ours.load_state_dict(bn.state_dict(), strict=True)
    bn.load_state_dict(ours.state_dict(), strict=True)
    assert "activation='relu6'" in repr(ours)
    shared = mx.nn.BatchNormAct2d.from_bn(bn, "relu")
    assert shared.weight is bn.weight and shared.running_var is bn.running_var
    assert shared.num_batches_tracked is bn.num_batches_tracked
    with pytest.raises(ValueError, match="activation"):
        mx.nn.BatchNormAct2d(8, activation="gelu")


def test_convert_fuses_batchnorm_activation_and_fuse_folds_it():
    torch.manual_seed(11)
    net = tnn.Sequential(
        tnn.Conv2d(3, 8, 3, padding=1, bias=False), tnn.BatchNorm2d(8), tnn.ReLU6(inplace=True),
        tnn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), tnn.BatchNorm2d(8), tnn.Hardswish(),
        tnn.Conv2d(8, 16, 1, bias=False), tnn.BatchNorm2d(16),
        tnn.Conv2d(16, 16, 1, bias=False), tnn.BatchNorm2d(16), tnn.ReLU(),
    )
    conv, counts = mx.convert(net, return_counts=True)
    assert counts == {"depthwise": 1, "pointwise": 2, "small_cin": 1, "batchnorm_act": 3, "batchnorm": 1,
                      "squeeze_excitation": 0}
    assert type(conv[1]) is mx.nn.BatchNormAct2d and conv[1].activation == "relu6"
    # the BatchNorm2d with no activation after it runs on the same op, without one
    assert type(conv[2]) is tnn.Identity and type(conv[7]) is mx.nn.BatchNormAct2d and conv[7].activation is None
    assert conv[7].training and conv[7].num_features == 16
    assert conv.state_dict().keys() == net.state_dict().keys()
    plain, counts2 = mx.convert(net, return_counts=True, fuse_batchnorm=False)
    assert counts2["batchnorm_act"] == counts2["batchnorm"] == 0
    assert type(plain[1]) is tnn.BatchNorm2d and type(plain[2]) is tnn.ReLU6 and type(plain[7]) is tnn.BatchNorm2d
    x = torch.randn(2, 3, 10, 10)
    for _ in range(2):
        assert_close(conv(x), net(x).double(), torch.float32)
    net.eval()
    conv.eval()
    fused = mx.fuse(conv)
    # the 3-channel stem runs on SmallCinConv2d with its activation
    assert type(fused[0]) is mx.nn.SmallCinConv2d and fused[0].activation == "relu6"
    assert type(fused[1]) is tnn.Identity and type(fused[2]) is tnn.Identity
    assert fused[3].activation == "hardswish" and fused[8].activation == "relu"
    assert not any(isinstance(m, tnn.BatchNorm2d) for m in fused.modules())
    with torch.no_grad():
        assert_close(fused(x), net(x).double(), torch.float32, "fused")


def test_converted_torchvision_mobilenet_v2_train_outputs_and_grads():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(num_classes=10)
    conv_model, counts = mx.convert(model, return_counts=True)
    n_bn_act = sum(1 for m in conv_model.modules() if isinstance(m, mx.nn.BatchNormAct2d) and m.activation)
    assert counts["batchnorm_act"] == n_bn_act == 35
    # the 17 projections' BatchNorm2d (no activation after them) run on the op too
    assert counts["batchnorm"] == 17
    assert not any(type(m) is tnn.BatchNorm2d for m in conv_model.modules())
    # torchvision weights load strictly into the converted model
    conv_model.load_state_dict(model.state_dict(), strict=True)
    for layout in ("nchw", "nhwc"):
        x = make_layout(torch.randn(2, 3, 64, 64), layout)
        model.zero_grad()
        conv_model.zero_grad()
        torch.manual_seed(1)  # dropout
        y0 = model(x)
        torch.manual_seed(1)
        y1 = conv_model(x)
        assert_close(y1, y0.double(), torch.float32, f"train {layout}")
        for (n0, b0), (n1, b1) in zip(model.named_buffers(), conv_model.named_buffers()):
            assert n0 == n1
            torch.testing.assert_close(b1, b0, rtol=1e-4, atol=1e-5, msg=n0)
    # Gradients in float64: through 52 training-mode BatchNorms, the float32
    # gradient of the stem weight is ill-conditioned (float32 nn.Conv2d model
    # against the same model in float64: up to 3% of its largest element,
    # depending on the input), so float32 models agree only as far as their
    # stems' forward rounding does (bitwise when both stems were oneDNN's).
    model64 = copy.deepcopy(model).double().train()
    conv64 = mx.convert(model64).train()
    for layout in ("nchw", "nhwc"):
        x = make_layout(torch.randn(2, 3, 64, 64, dtype=torch.float64), layout)
        torch.manual_seed(1)  # dropout
        y0 = model64(x)
        torch.manual_seed(1)
        y1 = conv64(x)
        torch.testing.assert_close(y1, y0, rtol=1e-9, atol=1e-9, msg=f"train float64 {layout}")
        y0.sum().backward()
        y1.sum().backward()
        for (n0, p0), (n1, p1) in zip(model64.named_parameters(), conv64.named_parameters()):
            assert n0 == n1
            scale = 1e-9 * (1 + p0.grad.abs().max().item())
            torch.testing.assert_close(p1.grad, p0.grad, rtol=0, atol=scale, msg=n0)
            p0.grad = p1.grad = None
    model.eval()
    conv_model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert_close(conv_model(x), model(x).double(), torch.float32, "eval")
        assert_close(mx.fuse(conv_model)(x), model(x).double(), torch.float32, "fused")
