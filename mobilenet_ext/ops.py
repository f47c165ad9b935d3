"""Functional API of mobilenet_ext, fake kernels, autograd and FLOP formulas.

The ops live in the ``torch.ops.mobilenet_ext`` namespace (declared in
``csrc/ops.cpp``); this module registers their fake (meta) kernels so that
``torch.compile(fullgraph=True)`` and ``torch.export`` trace them, their
autograd formulas (whose backward runs our own backward ops), their FLOP
counts for ``torch.utils.flop_counter`` and their decompositions to
``aten.convolution`` (applied by ``torch.onnx.export`` only).
"""
from __future__ import annotations

import functools
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from . import _native  # noqa: F401  (loads the library)

__all__ = [
    "depthwise_conv2d",
    "pointwise_conv2d",
    "depthwise_conv2d_fused",
    "pointwise_conv2d_fused",
    "pointwise_conv2d_packed",
    "pointwise_pack_weight",
    "conv2d_small_cin_fused",
    "conv2d_small_cin",
    "linear_fused",
    "linear_packed",
    "inverted_residual_fused",
    "global_avg_pool2d",
    "gemm_panel",
    "ACTIVATIONS",
]

_ops = torch.ops.mobilenet_ext

IntOrPair = Union[int, Sequence[int]]

#: Activation codes understood by the fused inference ops.
ACTIVATIONS = {None: 0, "none": 0, "relu": 1, "relu6": 2, "hardswish": 3}


_BELOW_AUTOGRAD = getattr(torch._C, "_AutoDispatchBelowAutograd", None)
_PLAIN = (torch.Tensor, torch.nn.Parameter)


def _call(op, tensors: Sequence[Optional[Tensor]], *args):
    """``op(*args)``, skipping the (Python) autograd kernel when the call
    records nothing for autograd anyway: grad mode off or no input requiring
    grad, plain tensors, no tracing and no functorch transform. The result is
    the same; the call costs 5-12 us less as measured here (the autograd
    kernel registered with ``torch.library.register_autograd`` runs in
    Python)."""
    if (
        _BELOW_AUTOGRAD is not None
        and all(t is None or type(t) in _PLAIN for t in tensors)
        and (not torch.is_grad_enabled() or not any(t is not None and t.requires_grad for t in tensors))
        and not torch.compiler.is_compiling()
        and not torch._C._are_functorch_transforms_active()
    ):
        with _BELOW_AUTOGRAD():
            return op(*args)
    return op(*args)


def _pair(name: str, v: IntOrPair) -> List[int]:
    if isinstance(v, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")
    if isinstance(v, int):
        return [v, v]
    if isinstance(v, torch.SymInt):
        return [v, v]
    try:
        vals = list(v)
    except TypeError:
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}") from None
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or not all(isinstance(x, (int, torch.SymInt)) and not isinstance(x, bool) for x in vals):
        raise ValueError(f"{name} must be an int or a pair (h, w) of ints, got {v!r}")
    return vals


def _flag(name: str, v: bool) -> bool:
    if type(v) is not bool:
        raise TypeError(f"{name} must be a bool, got {v!r}")
    return v


def _activation_code(activation: Optional[str]) -> int:
    if isinstance(activation, int) and not isinstance(activation, bool):
        if activation in (0, 1, 2, 3):
            return activation
    elif activation in ACTIVATIONS:
        return ACTIVATIONS[activation]
    raise ValueError(
        f"activation must be one of None, 'relu', 'relu6', 'hardswish', got {activation!r}"
    )


# --------------------------------------------------------------------------
# Functional API
# --------------------------------------------------------------------------
def depthwise_conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
) -> Tensor:
    r"""Depthwise 2-D convolution, equal to ``F.conv2d(input, weight, bias,
    stride, padding, dilation, groups=C)``.

    Args:
        input: ``[N, C, H, W]``, NCHW-contiguous or channels_last (any other
            strides are accepted and copied).
        weight: ``[C * m, 1, kH, kW]``; ``m`` is the channel multiplier
            (output channel ``o`` reads input channel ``o // m``).
        bias: ``[C * m]`` or None.
        stride, padding, dilation: an int or an ``(h, w)`` pair.

    Returns:
        ``[N, C * m, H_out, W_out]`` in the input's memory format, with
        ``H_out = (H + 2 * padding_h - dilation_h * (kH - 1) - 1) // stride_h + 1``.
    """
    return _call(
        _ops.depthwise_conv2d, (input, weight, bias),
        input, weight, bias, _pair("stride", stride), _pair("padding", padding),
        _pair("dilation", dilation),
    )


def pointwise_conv2d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    r"""Pointwise (1x1, stride 1) convolution computed as a GEMM on the tensor
    as it lies in memory (no im2col, no layout copy); equal to
    ``F.conv2d(input, weight, bias)``.

    Args:
        input: ``[N, C_in, H, W]``, NCHW-contiguous or channels_last.
        weight: ``[C_out, C_in, 1, 1]``.
        bias: ``[C_out]`` or None.

    Returns:
        ``[N, C_out, H, W]`` in the input's memory format.
    """
    return _call(_ops.pointwise_conv2d, (input, weight, bias), input, weight, bias)


def depthwise_conv2d_fused(
    input: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    activation: Optional[str] = None,
) -> Tensor:
    """Inference form of :func:`depthwise_conv2d`: ``act(conv + bias)`` with
    the activation (None, 'relu', 'relu6', 'hardswish') applied as the
    output is written. Not differentiable."""
    return _call(
        _ops.depthwise_conv2d_fused, (input, weight, bias),
        input, weight, bias, _pair("stride", stride), _pair("padding", padding),
        _pair("dilation", dilation), _activation_code(activation),
    )


def pointwise_conv2d_fused(
    input: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    activation: Optional[str] = None,
    residual: Optional[Tensor] = None,
) -> Tensor:
    """Inference form of :func:`pointwise_conv2d`:
    ``act(conv + bias) + residual`` (residual ``[N, C_out, H, W]`` or None),
    computed in the GEMM's epilogue. Not differentiable."""
    return _call(
        _ops.pointwise_conv2d_fused, (input, weight, bias, residual),
        input, weight, bias, _activation_code(activation), residual,
    )


def conv2d_small_cin_fused(
    input: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    activation: Optional[str] = None,
    channels_last_output: bool = False,
) -> Tensor:
    """``act(F.conv2d(input, weight, bias, stride, padding))`` for a dense
    convolution (groups 1, dilation 1) with few input channels: a network's
    stem, e.g. MobileNet's 3 -> 32 channels 3x3 stride 2. The output is
    written once, in the input's layout (``channels_last_output=True``:
    channels_last from either layout, the reorder of an NCHW image batch
    done as the kernel reads it), without the reorders and temporary
    buffers of PyTorch's (oneDNN's) path. CPU only (float32, float64), for
    inference: not differentiable.

    Shapes: input ``[N, C_in, H, W]`` (NCHW or channels_last), weight
    ``[C_out, C_in, kH, kW]``, bias ``[C_out]`` or None; output ``[N, C_out,
    OH, OW]`` with ``OH = (H + 2 * padding - kH) // stride + 1``.
    ``activation``: None, 'relu', 'relu6' or 'hardswish'. Any ``C_in`` is
    computed correctly; the kernel is meant for few (its input strip per
    output row holds ``C_in * kH`` rows)."""
    return _call(
        _ops.conv2d_small_cin_fused, (input, weight, bias),
        input, weight, bias, _pair("stride", stride), _pair("padding", padding), _activation_code(activation),
        _flag("channels_last_output", channels_last_output),
    )


def linear_fused(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                 activation: Optional[str] = None) -> Tensor:
    """``act(F.linear(input, weight, bias))`` on our 1x1 GEMM (a network's
    classifier): input ``[N, in_features]``, weight ``[out_features,
    in_features]``, bias ``[out_features]`` or None; output ``[N,
    out_features]``. CPU float32 / float64, for inference: not
    differentiable."""
    return _call(_ops.linear_fused, (input, weight, bias), input, weight, bias, _activation_code(activation))


def linear_packed(input: Tensor, weight: Tensor, packed: Tensor, bias: Optional[Tensor] = None,
                  activation: Optional[str] = None) -> Tensor:
    """:func:`linear_fused` reading ``packed =
    pointwise_pack_weight(weight[:, :, None, None], gemm_panel(True))``
    (made once) instead of packing the weight per call: the same output
    bits. CPU float32."""
    return _call(_ops.linear_packed, (input, weight, packed, bias), input, weight, packed, bias,
                 _activation_code(activation))


def global_avg_pool2d(input: Tensor) -> Tensor:
    """``F.adaptive_avg_pool2d(input, 1)``: input ``[N, C, H, W]`` (NCHW or
    channels_last), output ``[N, C, 1, 1]``, each channel's mean. On the
    CPU in float32 / float64 for inference (nothing to record for
    autograd) it runs our channel-means kernel (the squeeze-excitation one,
    ``squeeze_excitation_means``: partial sums per vector lane added in
    float64, equal to PyTorch's to rounding; a traced or exported graph
    holds it, lowered to ReduceMean for ONNX); otherwise PyTorch's. After
    our kernels at batch 1 PyTorch's pool took 20-60 us of a 1.4-3.3 ms
    MobileNet (mean, sum and div_ calls, 2 threads, Intel Xeon): the fused
    models 0.98-0.99x the time with this one (in-process A/B, channels_last,
    batch 1; NCHW 0.99-1.00x)."""
    if (input.device.type == "cpu" and input.dim() == 4
            and input.dtype in (torch.float32, torch.float64) and input.shape[2] * input.shape[3] > 0
            and not (torch.is_grad_enabled() and input.requires_grad)):
        return _ops.squeeze_excitation_means(input).view(input.shape[0], input.shape[1], 1, 1)
    return torch.nn.functional.adaptive_avg_pool2d(input, 1)


def inverted_residual_fused(
    input: Tensor,
    dw_weight: Tensor,
    dw_bias: Optional[Tensor] = None,
    stride: int = 1,
    padding: int = 1,
    dw_activation: Optional[str] = None,
    expand: Optional[Tuple[Tensor, Tensor, Optional[Tensor], Optional[str]]] = None,
    project: Optional[Tuple[Tensor, Tensor, Optional[Tensor], Optional[str]]] = None,
    residual: bool = False,
) -> Tensor:
    """A MobileNet block in one pass, channels_last, for inference (CPU
    float32, not differentiable)::

        e = act_e(pointwise(input, W_e) + b_e)        # expand, if given
        d = act_d(depthwise(e, dw_weight) + dw_bias)  # KxK, stride, padding
        y = act_p(pointwise(d, W_p) + b_p) + input    # project if given; + input if residual

    computed in bands of output rows so the expanded and depthwise tensors
    are never written whole; the result is bitwise that of
    :func:`pointwise_conv2d_packed`, :func:`depthwise_conv2d_fused` and
    :func:`pointwise_conv2d_packed` in that order. ``mx.fuse``'s replay uses
    it for the blocks of a fused model by itself.

    Shapes: input ``[N, C_in, H, W]`` channels_last-contiguous;
    ``expand = (W_e [C_exp, C_in, 1, 1], pointwise_pack_weight(W_e,
    gemm_panel(True)), b_e [C_exp] or None, activation)``; dw_weight
    ``[C_exp, 1, K, K]`` (C_exp = C_in without expand), dw_bias ``[C_exp]``
    or None; ``project = (W_p [C_out, C_exp, 1, 1], its packed form, b_p,
    activation)``; output ``[N, C_out, OH, OW]`` channels_last with ``OH =
    (H + 2 * padding - K) // stride + 1`` (C_out = C_exp without project).
    ``residual`` needs a project layer and an output of the input's shape.
    Activations: None, 'relu', 'relu6' or 'hardswish'."""
    e = expand if expand is not None else (None, None, None, None)
    p = project if project is not None else (None, None, None, None)
    return _ops.inverted_residual_fused(
        input, e[0], e[1], e[2], _activation_code(e[3]), dw_weight, dw_bias, int(stride), int(padding),
        _activation_code(dw_activation), p[0], p[1], p[2], _activation_code(p[3]), bool(residual))


def pointwise_pack_weight(weight: Tensor, panel: int) -> Tensor:
    """The 1x1 ``weight`` ``[C_out, C_in, 1, 1]`` (float32, CPU) packed
    once for :func:`pointwise_conv2d_packed`: shape ``[ceil(C_out / panel),
    C_in, panel]``, panels of ``panel`` output channels, zero-padded.
    :func:`gemm_panel` gives the panel the GEMM kernel reads in place."""
    if isinstance(panel, bool) or not isinstance(panel, int):
        raise TypeError(f"panel must be an int, got {panel!r}")
    return _ops.pointwise_pack_weight(weight, panel)


@functools.lru_cache(maxsize=None)
def _gemm_tile() -> Tuple[int, int]:
    from ._native import _C
    mr, nr = _C.gemm_tile()  # fixed for the process (CPUID, MOBILENET_EXT_ISA read once)
    return int(mr), int(nr)


def gemm_panel(channels_last: bool) -> int:
    """The panel width of :func:`pointwise_pack_weight` that this CPU's
    float32 GEMM kernel reads without repacking: its register tile's rows
    (NCHW, the weight is the GEMM's left operand) or columns (``channels_last``
    or 1x1 maps: the right operand); 0 for the portable kernel."""
    mr, nr = _gemm_tile()
    return nr if channels_last else mr


def pointwise_conv2d_packed(
    input: Tensor,
    weight: Tensor,
    packed: Tensor,
    bias: Optional[Tensor] = None,
    activation: Optional[str] = None,
    residual: Optional[Tensor] = None,
) -> Tensor:
    """:func:`pointwise_conv2d_fused` (float32, CPU) with the weight packed
    beforehand by ``pointwise_pack_weight(weight, panel)``: the GEMM reads
    ``packed`` in place instead of packing ``weight`` on every call. The
    result is bitwise that of :func:`pointwise_conv2d_fused`; ``weight`` is
    used for its shape only. Not differentiable."""
    return _call(
        _ops.pointwise_conv2d_packed, (input, weight, packed, bias, residual),
        input, weight, packed, bias, _activation_code(activation), residual,
    )


# --------------------------------------------------------------------------
# Fake kernels: shapes and strides exactly as the real kernels produce them.
# --------------------------------------------------------------------------
def _memory_format(t: Tensor) -> torch.memory_format:
    # Mirrors mnx::glue::layout_of in csrc/glue/common.cpp.
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _out_size(i, k, s, p, d):
    return (i + 2 * p - d * (k - 1) - 1) // s + 1


def _check_fake(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def _check_fake_same(op: str, input: Tensor, **others: Optional[Tensor]) -> None:
    for name, t in others.items():
        if t is None:
            continue
        _check_fake(t.device == input.device, f"{op}: {name} must be on the input's device {input.device}, got {t.device}")
        _check_fake(t.dtype == input.dtype, f"{op}: {name} must have the input's dtype {input.dtype}, got {t.dtype}")


def _dw_fake_out(input, weight, bias, stride, padding, dilation):
    _check_fake_same("depthwise_conv2d", input, weight=weight, bias=bias)
    _check_fake(input.dim() == 4, f"depthwise_conv2d: input must be a 4-D tensor [N, C, H, W], got shape {tuple(input.shape)}")
    _check_fake(weight.dim() == 4 and weight.shape[1] == 1, f"depthwise_conv2d: weight must be [C*m, 1, kh, kw], got shape {tuple(weight.shape)}")
    n, c, h, w = input.shape
    oh = _out_size(h, weight.shape[2], stride[0], padding[0], dilation[0])
    ow = _out_size(w, weight.shape[3], stride[1], padding[1], dilation[1])
    return input.new_empty((n, weight.shape[0], oh, ow)).contiguous(memory_format=_memory_format(input))


@torch.library.register_fake("mobilenet_ext::depthwise_conv2d")
def _(input, weight, bias, stride, padding, dilation):
    return _dw_fake_out(input, weight, bias, stride, padding, dilation)


@torch.library.register_fake("mobilenet_ext::depthwise_conv2d_fused")
def _(input, weight, bias, stride, padding, dilation, activation):
    return _dw_fake_out(input, weight, bias, stride, padding, dilation)


@torch.library.register_fake("mobilenet_ext::depthwise_conv2d_backward_input")
def _(grad_output, input, weight, stride, padding, dilation):
    _check_fake_same("depthwise_conv2d_backward_input", input, grad_output=grad_output, weight=weight)
    return torch.empty_like(input, memory_format=_memory_format(input))


@torch.library.register_fake("mobilenet_ext::depthwise_conv2d_backward_weight")
def _(grad_output, input, weight, stride, padding, dilation):
    _check_fake_same("depthwise_conv2d_backward_weight", input, grad_output=grad_output, weight=weight)
    return torch.empty_like(weight, memory_format=torch.contiguous_format)


def _pw_fake_out(input, weight, bias=None, residual=None):
    _check_fake_same("pointwise_conv2d", input, weight=weight, bias=bias, residual=residual)
    _check_fake(input.dim() == 4, f"pointwise_conv2d: input must be a 4-D tensor [N, C, H, W], got shape {tuple(input.shape)}")
    n, _, h, w = input.shape
    return input.new_empty((n, weight.shape[0], h, w)).contiguous(memory_format=_memory_format(input))


@torch.library.register_fake("mobilenet_ext::pointwise_conv2d")
def _(input, weight, bias):
    return _pw_fake_out(input, weight, bias)


@torch.library.register_fake("mobilenet_ext::pointwise_conv2d_fused")
def _(input, weight, bias, activation, residual):
    return _pw_fake_out(input, weight, bias, residual)


@torch.library.register_fake("mobilenet_ext::pointwise_conv2d_packed")
def _(input, weight, packed, bias, activation, residual):
    return _pw_fake_out(input, weight, bias, residual)


@torch.library.register_fake("mobilenet_ext::inverted_residual_fused")
def _(input, expand_weight, expand_packed, expand_bias, expand_activation, dw_weight, dw_bias, stride,
      padding, dw_activation, project_weight, project_packed, project_bias, project_activation, residual):
    op = "inverted_residual_fused"
    _check_fake(input.dim() == 4, f"{op}: input must be 4-D [N, C, H, W], got shape {tuple(input.shape)}")
    _check_fake_same(op, input, expand_weight=expand_weight, dw_weight=dw_weight, project_weight=project_weight)
    k = dw_weight.shape[2]
    oh = _out_size(input.shape[2], k, stride, padding, 1)
    ow = _out_size(input.shape[3], k, stride, padding, 1)
    cout = project_weight.shape[0] if project_weight is not None else dw_weight.shape[0]
    return input.new_empty((input.shape[0], cout, oh, ow)).contiguous(memory_format=torch.channels_last)


@torch.library.register_fake("mobilenet_ext::conv2d_small_cin_fused")
def _(input, weight, bias, stride, padding, activation, channels_last_output=False):
    _check_fake(input.dim() == 4 and weight.dim() == 4 and weight.shape[1] == input.shape[1],
                f"conv2d_small_cin_fused: weight must be [C_out, {input.shape[1] if input.dim() == 4 else '?'}, "
                f"kh, kw] for input {tuple(input.shape)}, got {tuple(weight.shape)}")
    _check_fake_same("conv2d_small_cin_fused", input, weight=weight, bias=bias)
    oh = _out_size(input.shape[2], weight.shape[2], stride[0], padding[0], 1)
    ow = _out_size(input.shape[3], weight.shape[3], stride[1], padding[1], 1)
    return input.new_empty((input.shape[0], weight.shape[0], oh, ow)).contiguous(
        memory_format=torch.channels_last if channels_last_output else _memory_format(input))


def _linear_fake(op, input, weight, bias):
    _check_fake(input.dim() == 2 and weight.dim() == 2 and weight.shape[1] == input.shape[1],
                f"{op}: input must be [N, in_features] and weight [out_features, in_features], "
                f"got {tuple(input.shape)} and {tuple(weight.shape)}")
    _check_fake_same(op, input, weight=weight, bias=bias)
    return input.new_empty((input.shape[0], weight.shape[0]))


@torch.library.register_fake("mobilenet_ext::linear_fused")
def _(input, weight, bias, activation):
    return _linear_fake("linear_fused", input, weight, bias)


@torch.library.register_fake("mobilenet_ext::linear_packed")
def _(input, weight, packed, bias, activation):
    return _linear_fake("linear_packed", input, weight, bias)


@torch.library.register_fake("mobilenet_ext::pointwise_pack_weight")
def _(weight, panel):
    _check_fake(weight.dim() == 4, f"pointwise_pack_weight: weight must be [C_out, C_in, 1, 1], got shape {tuple(weight.shape)}")
    return weight.new_empty(((weight.shape[0] + panel - 1) // panel, weight.shape[1], panel))


@torch.library.register_fake("mobilenet_ext::pointwise_conv2d_backward_input")
def _(grad_output, input, weight):
    _check_fake_same("pointwise_conv2d_backward_input", input, grad_output=grad_output, weight=weight)
    return torch.empty_like(input, memory_format=_memory_format(input))


@torch.library.register_fake("mobilenet_ext::pointwise_conv2d_backward_weight")
def _(grad_output, input, weight):
    _check_fake_same("pointwise_conv2d_backward_weight", input, grad_output=grad_output, weight=weight)
    return torch.empty_like(weight, memory_format=torch.contiguous_format)


@torch.library.register_fake("mobilenet_ext::conv2d_small_cin_backward_weight")
def _(grad_output, input, weight, stride, padding):
    _check_fake_same("conv2d_small_cin_backward_weight", input, grad_output=grad_output, weight=weight)
    return (torch.empty_like(weight, memory_format=torch.contiguous_format),
            weight.new_empty((weight.shape[0],)))


# --------------------------------------------------------------------------
# Autograd: the backward runs our own backward ops.
# --------------------------------------------------------------------------
def _dw_setup_context(ctx, inputs, output):
    input, weight, bias, stride, padding, dilation = inputs
    ctx.save_for_backward(input, weight)
    ctx.conv_args = (stride, padding, dilation)
    ctx.has_bias = bias is not None


def _dw_backward(ctx, grad):
    input, weight = ctx.saved_tensors
    stride, padding, dilation = ctx.conv_args
    gi = gw = gb = None
    # The weight gradient first: its scratch (per-chunk partial sums, GEMM
    # buffers) is freed before grad_input, as large as the input, is allocated,
    # so the backward's peak memory is grad_input's, as nn.Conv2d's is.
    if ctx.needs_input_grad[1]:
        gw = _ops.depthwise_conv2d_backward_weight(grad, input, weight, stride, padding, dilation)
    if ctx.needs_input_grad[0]:
        gi = _ops.depthwise_conv2d_backward_input(grad, input, weight, stride, padding, dilation)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        gb = grad.sum((0, 2, 3))
    return gi, gw, gb, None, None, None


torch.library.register_autograd(
    "mobilenet_ext::depthwise_conv2d", _dw_backward, setup_context=_dw_setup_context
)


def _pw_setup_context(ctx, inputs, output):
    input, weight, bias = inputs
    ctx.save_for_backward(input, weight)
    ctx.has_bias = bias is not None


def _pw_backward(ctx, grad):
    input, weight = ctx.saved_tensors
    gi = gw = gb = None
    if ctx.needs_input_grad[1]:  # first: see _dw_backward
        gw = _ops.pointwise_conv2d_backward_weight(grad, input, weight)
    if ctx.needs_input_grad[0]:
        gi = _ops.pointwise_conv2d_backward_input(grad, input, weight)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        gb = grad.sum((0, 2, 3))
    return gi, gw, gb


torch.library.register_autograd(
    "mobilenet_ext::pointwise_conv2d", _pw_backward, setup_context=_pw_setup_context
)


def _no_grad_setup(ctx, inputs, output):
    pass


def _fused_backward(ctx, grad):
    raise RuntimeError(
        "mobilenet_ext: the fused ops are for inference only and have no "
        "backward; use depthwise_conv2d / pointwise_conv2d (or an unfused "
        "model) for training"
    )


for _name in ("depthwise_conv2d_fused", "pointwise_conv2d_fused", "conv2d_small_cin_fused", "linear_fused",
              "linear_packed"):
    torch.library.register_autograd(f"mobilenet_ext::{_name}", _fused_backward, setup_context=_no_grad_setup)


# --------------------------------------------------------------------------
# The stem conv for training: conv2d_small_cin_fused's kernel forward (no
# activation); backward: our weight and bias gradients
# (conv2d_small_cin_backward_weight), PyTorch's input gradient. A Python-defined op of the
# library, so it has a schema, a fake kernel and autograd like the others.
# --------------------------------------------------------------------------
@torch.library.custom_op(
    "mobilenet_ext::conv2d_small_cin", mutates_args=(),
    schema="(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[2] padding) -> Tensor")
def _conv2d_small_cin_op(input, weight, bias, stride, padding):
    return _ops.conv2d_small_cin_fused(input, weight, bias, stride, padding, 0)


@_conv2d_small_cin_op.register_fake
def _(input, weight, bias, stride, padding):
    # the inference op's fake: same checks, same output
    return _ops.conv2d_small_cin_fused(input, weight, bias, stride, padding, 0)


def _sc_setup_context(ctx, inputs, output):
    input, weight, bias, stride, padding = inputs
    ctx.save_for_backward(input, weight)
    ctx.conv_args = (list(stride), list(padding), None if bias is None else [bias.shape[0]])


def _sc_backward(ctx, grad):
    input, weight = ctx.saved_tensors
    stride, padding, bias_sizes = ctx.conv_args
    need_b = bias_sizes is not None and ctx.needs_input_grad[2]
    gi = gw = gb = None
    if ctx.needs_input_grad[1] or need_b:
        # our kernel (conv2d_small_cin_backward_weight): the weight and bias
        # gradients; the input's, rarely wanted at a network's first layer,
        # from PyTorch
        gw, gb = _ops.conv2d_small_cin_backward_weight(grad, input, weight, stride, padding)
        gw = gw if ctx.needs_input_grad[1] else None
        gb = gb if need_b else None
    if ctx.needs_input_grad[0]:
        gi = torch.ops.aten.convolution_backward(grad, input, weight, bias_sizes, stride, padding, [1, 1],
                                                 False, [0, 0], 1, [True, False, False])[0]
    return gi, gw, gb, None, None


_conv2d_small_cin_op.register_autograd(_sc_backward, setup_context=_sc_setup_context)


def conv2d_small_cin(
    input: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
) -> Tensor:
    """``F.conv2d(input, weight, bias, stride, padding)`` (groups 1, dilation
    1) for few input channels, differentiable: the forward is
    :func:`conv2d_small_cin_fused`'s kernel without an activation (its output
    written once, in the input's layout); the backward's weight and bias
    gradients our kernel (``conv2d_small_cin_backward_weight``: per output
    row, register tiles of taps x output channels summed over the row's
    pixels, the rows' sums added in a fixed chunk order, so the same bits
    for any thread count), the input gradient (rarely wanted at a network's
    first layer) PyTorch's convolution backward. What :class:`mobilenet_ext.nn.SmallCinConv2d` runs when a
    gradient is needed (a converted model's stem in training): at batch 32 on
    2 threads here, forward + backward of a 3 -> 16 / 32 channel 3x3
    stride-2 stem took 0.26-0.80x nn.Conv2d's time.

    Shapes and errors as :func:`conv2d_small_cin_fused` (CPU, float32 /
    float64)."""
    return _conv2d_small_cin_op(input, weight, bias, _pair("stride", stride), _pair("padding", padding))


# --------------------------------------------------------------------------
# FLOP formulas (2 FLOPs per multiply-add), for torch.utils.flop_counter.
# --------------------------------------------------------------------------
def depthwise_macs(input_shape: Sequence[int], weight_shape: Sequence[int], out_shape: Sequence[int]) -> int:
    """Multiply-adds of a depthwise forward: N * C_out * OH * OW * kH * kW."""
    n, _, _, _ = input_shape
    co, _, kh, kw = weight_shape
    return int(n * co * out_shape[2] * out_shape[3] * kh * kw)


def pointwise_macs(input_shape: Sequence[int], weight_shape: Sequence[int]) -> int:
    """Multiply-adds of a pointwise forward: N * H * W * C_in * C_out."""
    n, ci, h, w = input_shape
    return int(n * h * w * ci * weight_shape[0])


def _register_flops():
    from torch.utils.flop_counter import register_flop_formula

    @register_flop_formula(_ops.depthwise_conv2d)
    def _dw_flop(input_shape, weight_shape, bias_shape, stride, padding, dilation, *, out_shape, **kw):
        return 2 * depthwise_macs(input_shape, weight_shape, out_shape)

    @register_flop_formula(_ops.depthwise_conv2d_fused)
    def _dwf_flop(input_shape, weight_shape, bias_shape, stride, padding, dilation, act, *, out_shape, **kw):
        return 2 * depthwise_macs(input_shape, weight_shape, out_shape)

    @register_flop_formula([_ops.depthwise_conv2d_backward_input, _ops.depthwise_conv2d_backward_weight])
    def _dw_bwd_flop(grad_shape, input_shape, weight_shape, stride, padding, dilation, *, out_shape, **kw):
        return 2 * depthwise_macs(input_shape, weight_shape, grad_shape)

    @register_flop_formula(_ops.pointwise_conv2d)
    def _pw_flop(input_shape, weight_shape, bias_shape, *, out_shape, **kw):
        return 2 * pointwise_macs(input_shape, weight_shape)

    @register_flop_formula([_ops.pointwise_conv2d_fused, _ops.pointwise_conv2d_packed])
    def _pwf_flop(input_shape, weight_shape, *args, out_shape, **kw):
        return 2 * pointwise_macs(input_shape, weight_shape)

    @register_flop_formula(_ops.inverted_residual_fused)
    def _irf_flop(input_shape, expand_weight_shape, expand_packed_shape, expand_bias_shape, expand_act,
                  dw_weight_shape, dw_bias_shape, stride, padding, dw_act, project_weight_shape, *args,
                  out_shape, **kw):
        # expand 1x1 (when present) + depthwise + project 1x1 (when present)
        n, ci, h, w = input_shape
        e = expand_weight_shape[0] if expand_weight_shape is not None else ci
        ho, wo = out_shape[2], out_shape[3]
        macs = e * ho * wo * dw_weight_shape[2] * dw_weight_shape[3]
        if expand_weight_shape is not None:
            macs += h * w * ci * e
        if project_weight_shape is not None:
            macs += ho * wo * e * project_weight_shape[0]
        return 2 * int(n * macs)

    @register_flop_formula([_ops.conv2d_small_cin_fused, _ops.conv2d_small_cin])
    def _scf_flop(input_shape, weight_shape, *args, out_shape, **kw):
        co, ci, kh, kw_ = weight_shape
        return 2 * int(out_shape[0] * co * out_shape[2] * out_shape[3] * ci * kh * kw_)

    @register_flop_formula([_ops.linear_fused, _ops.linear_packed])
    def _lin_flop(input_shape, weight_shape, *args, out_shape, **kw):
        return 2 * int(input_shape[0] * weight_shape[0] * weight_shape[1])

    @register_flop_formula([_ops.pointwise_conv2d_backward_input, _ops.pointwise_conv2d_backward_weight])
    def _pw_bwd_flop(grad_shape, input_shape, weight_shape, *, out_shape, **kw):
        return 2 * pointwise_macs(input_shape, weight_shape)


_register_flops()


# --------------------------------------------------------------------------
# Decompositions to aten.convolution, for exporters that lower to standard
# operators. torch.onnx.export (the dynamo exporter, torch's default) applies
# the entries of torch._decomp's global table to every op it has no ONNX
# translation for, so a plain ``torch.onnx.export(model, (x,), f)`` of a
# converted or fused model writes standard ``Conv`` (+ Relu / Clip /
# HardSwish / Add) nodes. Nothing else applies this table by default:
# eager calls, torch.compile (inductor) and torch.export keep our ops
# (tests/test_onnx_export.py checks both sides).
# --------------------------------------------------------------------------
def _register_decompositions() -> None:
    from torch._decomp import register_decomposition

    aten = torch.ops.aten

    def act(y: Tensor, code: int) -> Tensor:
        if code == 1:
            return aten.relu.default(y)
        if code == 2:
            return aten.hardtanh.default(y, 0.0, 6.0)
        if code == 3:
            return aten.hardswish.default(y)
        return y

    def conv(input, weight, bias, stride, padding, dilation, groups):
        return aten.convolution.default(input, weight, bias, stride, padding, dilation, False, [0, 0], groups)

    @register_decomposition(_ops.depthwise_conv2d.default)
    def _dw(input, weight, bias, stride, padding, dilation):
        return conv(input, weight, bias, stride, padding, dilation, input.shape[1])

    @register_decomposition(_ops.depthwise_conv2d_fused.default)
    def _dwf(input, weight, bias, stride, padding, dilation, activation):
        return act(conv(input, weight, bias, stride, padding, dilation, input.shape[1]), activation)

    @register_decomposition(_ops.conv2d_small_cin_fused.default)
    def _scf(input, weight, bias, stride, padding, activation, channels_last_output=False):
        y = act(conv(input, weight, bias, stride, padding, [1, 1], 1), activation)
        return y.contiguous(memory_format=torch.channels_last) if channels_last_output else y

    @register_decomposition(_ops.conv2d_small_cin.default)
    def _sc(input, weight, bias, stride, padding):
        return _scf(input, weight, bias, stride, padding, 0)

    @register_decomposition(_ops.linear_fused.default)
    def _lin(input, weight, bias, activation):
        return act(aten.linear.default(input, weight, bias), activation)

    @register_decomposition(_ops.linear_packed.default)
    def _linp(input, weight, packed, bias, activation):
        return act(aten.linear.default(input, weight, bias), activation)

    @register_decomposition(_ops.pointwise_conv2d.default)
    def _pw(input, weight, bias):
        return conv(input, weight, bias, [1, 1], [0, 0], [1, 1], 1)

    @register_decomposition(_ops.pointwise_conv2d_fused.default)
    def _pwf(input, weight, bias, activation, residual):
        y = act(conv(input, weight, bias, [1, 1], [0, 0], [1, 1], 1), activation)
        return y if residual is None else aten.add.Tensor(y, residual)


_register_decompositions()


# --------------------------------------------------------------------------
# Fused BatchNorm + activation (training and eval; csrc/glue/batchnorm_ops.cpp)
# --------------------------------------------------------------------------
_BN_ACT_FNS = {
    0: lambda y: y,
    1: torch.nn.functional.relu,
    2: torch.nn.functional.relu6,
    3: torch.nn.functional.hardswish,
}


def batch_norm_act(
    input: Tensor,
    running_mean: Optional[Tensor],
    running_var: Optional[Tensor],
    weight: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    activation: Optional[str] = None,
) -> Tensor:
    r"""``act(F.batch_norm(input, running_mean, running_var, weight, bias,
    training, momentum, eps))`` in one op on the CPU: batch statistics
    (shifted sums, no cancellation for a large mean) and the normalise +
    affine + activation in one write; the backward recomputes the
    activation's mask from ``input`` (no pre-activation tensor is kept).

    Same semantics as ``F.batch_norm``: in training the output uses the
    biased batch variance and ``running_mean`` / ``running_var`` (when given)
    are updated in place with ``momentum`` and the unbiased variance (done
    here, in float64, from the op's save_mean / save_invstd); otherwise the
    running statistics normalise. ``momentum`` is a number (the module
    resolves ``momentum=None`` to the cumulative factor). ``input``:
    ``[N, C, H, W]`` float32 / float64, NCHW or channels_last (the output
    keeps the layout). CUDA tensors fall back to ``F.batch_norm`` + the
    activation (there is no CUDA kernel).
    """
    code = _activation_code(activation)
    if input.dim() == 4 and training:
        size_prods = input.shape[0] * input.shape[2] * input.shape[3]
        if size_prods == 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {input.size()}")
    if input.device.type != "cpu" or input.numel() == 0:
        # no CUDA kernel; an empty batch leaves the running statistics as
        # F.batch_norm does
        y = torch.nn.functional.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)
        return _BN_ACT_FNS[code](y)
    y, save_mean, save_invstd = _call(
        _ops.batch_norm_act, (input, weight, bias),
        input, weight, bias, None if training else running_mean, None if training else running_var,
        bool(training), float(eps), code,
    )
    if training and (running_mean is not None or running_var is not None):
        with torch.no_grad():
            m = float(momentum)
            if running_mean is not None:
                new = save_mean.to(torch.float64) * m + running_mean.to(torch.float64) * (1.0 - m)
                running_mean.copy_(new)
            if running_var is not None:
                n = input.numel() // input.shape[1]
                # biased variance back from invstd = 1 / sqrt(var + eps), in float64
                var = (save_invstd.to(torch.float64).pow(-2) - eps).clamp_min(0.0)
                new = var * (n / max(n - 1, 1)) * m + running_var.to(torch.float64) * (1.0 - m)
                running_var.copy_(new)
    return y


@torch.library.register_fake("mobilenet_ext::batch_norm_act")
def _(input, weight, bias, running_mean, running_var, training, eps, activation):
    _check_fake_same("batch_norm_act", input, weight=weight, bias=bias, running_mean=running_mean,
                     running_var=running_var)
    _check_fake(input.dim() == 4, f"batch_norm_act: input must be a 4-D tensor [N, C, H, W], got shape {tuple(input.shape)}")
    c = input.shape[1]
    return (torch.empty_like(input, memory_format=_memory_format(input)), input.new_empty((c,)),
            input.new_empty((c,)))


@torch.library.register_fake("mobilenet_ext::batch_norm_act_backward")
def _(grad_output, input, weight, bias, save_mean, save_invstd, training, activation):
    _check_fake_same("batch_norm_act_backward", input, grad_output=grad_output, weight=weight, bias=bias,
                     save_mean=save_mean, save_invstd=save_invstd)
    _check_fake(input.dim() == 4, f"batch_norm_act_backward: input must be a 4-D tensor [N, C, H, W], got shape {tuple(input.shape)}")
    c = input.shape[1]
    return (torch.empty_like(input, memory_format=_memory_format(input)), input.new_empty((c,)),
            input.new_empty((c,)))


def _bn_setup_context(ctx, inputs, output):
    input, weight, bias, running_mean, running_var, training, eps, activation = inputs
    _, save_mean, save_invstd = output
    ctx.save_for_backward(input, weight, bias, save_mean, save_invstd)
    ctx.bn_args = (bool(training), int(activation))
    ctx.mark_non_differentiable(save_mean, save_invstd)


def _bn_backward(ctx, grad, _grad_mean, _grad_invstd):
    input, weight, bias, save_mean, save_invstd = ctx.saved_tensors
    training, activation = ctx.bn_args
    gi, gw, gb = _ops.batch_norm_act_backward(grad, input, weight, bias, save_mean, save_invstd, training, activation)
    return (
        gi if ctx.needs_input_grad[0] else None,
        gw if weight is not None and ctx.needs_input_grad[1] else None,
        gb if bias is not None and ctx.needs_input_grad[2] else None,
        None, None, None, None, None,
    )


torch.library.register_autograd("mobilenet_ext::batch_norm_act", _bn_backward, setup_context=_bn_setup_context)


def _register_bn_decomposition() -> None:
    # for torch.onnx.export only, like the conv decompositions above
    from torch._decomp import register_decomposition

    aten = torch.ops.aten

    @register_decomposition(_ops.batch_norm_act.default)
    def _bn(input, weight, bias, running_mean, running_var, training, eps, activation):
        if training:
            mean = aten.mean.dim(input, [0, 2, 3])
            var = aten.var.correction(input, [0, 2, 3], correction=0)
            invstd = aten.rsqrt.default(aten.add.Tensor(var, eps))
            scale = invstd if weight is None else aten.mul.Tensor(invstd, weight)
            y = aten.mul.Tensor(aten.sub.Tensor(input, aten.view.default(mean, [1, -1, 1, 1])),
                                aten.view.default(scale, [1, -1, 1, 1]))
            if bias is not None:
                y = aten.add.Tensor(y, aten.view.default(bias, [1, -1, 1, 1]))
        else:
            # what nn.BatchNorm2d exports as (the ONNX optimizer folds it into the conv)
            y = aten._native_batch_norm_legit_no_training.default(input, weight, bias, running_mean, running_var,
                                                                  0.0, eps)[0]
            mean = running_mean
            invstd = aten.rsqrt.default(aten.add.Tensor(running_var, eps))
        if activation == 1:
            y = aten.relu.default(y)
        elif activation == 2:
            y = aten.hardtanh.default(y, 0.0, 6.0)
        elif activation == 3:
            y = aten.hardswish.default(y)
        return y, mean, invstd


_register_bn_decomposition()
__all__.append("batch_norm_act")


# --------------------------------------------------------------------------
# Squeeze-excitation (training and eval; csrc/glue/squeeze_excitation_ops.cpp)
# --------------------------------------------------------------------------
#: Gate codes of squeeze_excitation.
SE_GATES = {"hardsigmoid": 0, "sigmoid": 1}


def squeeze_excitation(
    input: Tensor,
    weight1: Tensor,
    bias1: Optional[Tensor],
    weight2: Tensor,
    bias2: Optional[Tensor],
    activation: Optional[str] = "relu",
    gate: str = "hardsigmoid",
) -> Tensor:
    r"""Squeeze-excitation in one op on the CPU:
    ``input * gate(fc2(act(fc1(input.mean((2, 3), keepdim=True)))))``, as
    ``torchvision.ops.SqueezeExcitation``.

    Shapes: ``input`` ``[N, C, H, W]`` (float32 / float64, NCHW or
    channels_last; the output keeps the layout), ``weight1`` ``[S, C]`` or
    ``[S, C, 1, 1]``, ``bias1`` ``[S]`` or None, ``weight2`` ``[C, S]`` or
    ``[C, S, 1, 1]``, ``bias2`` ``[C]`` or None. ``activation``: None /
    "relu" / "relu6" / "hardswish"; ``gate``: "hardsigmoid" or "sigmoid".

    Two passes over ``input`` forward (channel means, then the scaling) and
    two backward (``sum(grad * input)`` with the means, then ``grad_input =
    grad * scale + d(mean) / (H * W)`` in one write); the small layers run on
    ``[N, C]``. CUDA tensors run the same formula in PyTorch ops.
    """
    code, gate_code = _se_codes("squeeze_excitation", activation, gate)
    if input.device.type != "cpu":
        return _se_reference(input, weight1, bias1, weight2, bias2, code, gate_code)
    return _call(_ops.squeeze_excitation, (input, weight1, bias1, weight2, bias2),
                 input, weight1, bias1, weight2, bias2, code, gate_code)


def _se_codes(op: str, activation: Optional[str], gate: str) -> Tuple[int, int]:
    if gate not in SE_GATES:
        raise ValueError(f"{op}: gate must be one of {sorted(SE_GATES)}, got {gate!r}")
    return _activation_code(activation), SE_GATES[gate]


def squeeze_excitation_(
    input: Tensor,
    weight1: Tensor,
    bias1: Optional[Tensor],
    weight2: Tensor,
    bias2: Optional[Tensor],
    activation: Optional[str] = "relu",
    gate: str = "hardsigmoid",
) -> Tensor:
    """:func:`squeeze_excitation` in place (``input`` is scaled and
    returned), for inference: no autograd. CPU only."""
    code, gate_code = _se_codes("squeeze_excitation_", activation, gate)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (input, weight1, bias1, weight2,
                                                                                  bias2)):
        raise RuntimeError("squeeze_excitation_: in place and without autograd; use squeeze_excitation when "
                           "gradients are needed")
    _ops.squeeze_excitation_(input, weight1, bias1, weight2, bias2, code, gate_code)
    return input


def _se_reference(input, weight1, bias1, weight2, bias2, activation: int, gate: int) -> Tensor:
    """squeeze_excitation in PyTorch ops (CUDA, and the ONNX decomposition)."""
    # as torchvision's module: mean with keepdim, 1x1 convs (the same graph in an ONNX export)
    f = torch.nn.functional
    p = input.mean((2, 3), keepdim=True)
    h = _BN_ACT_FNS[activation](f.conv2d(p, weight1.reshape(weight1.shape[0], -1, 1, 1), bias1))
    z = f.conv2d(h, weight2.reshape(weight2.shape[0], -1, 1, 1), bias2)
    s = torch.sigmoid(z) if gate == 1 else f.hardsigmoid(z)
    return input * s


def _se_fake_check(op, input, weight1, bias1, weight2, bias2):
    _check_fake_same(op, input, weight1=weight1, bias1=bias1, weight2=weight2, bias2=bias2)
    _check_fake(input.dim() == 4, f"{op}: input must be a 4-D tensor [N, C, H, W], got shape {tuple(input.shape)}")


@torch.library.register_fake("mobilenet_ext::squeeze_excitation")
def _(input, weight1, bias1, weight2, bias2, activation, gate):
    _se_fake_check("squeeze_excitation", input, weight1, bias1, weight2, bias2)
    return torch.empty_like(input, memory_format=_memory_format(input))


@torch.library.register_fake("mobilenet_ext::squeeze_excitation_")
def _(input, weight1, bias1, weight2, bias2, activation, gate):
    _se_fake_check("squeeze_excitation_", input, weight1, bias1, weight2, bias2)
    return None


@torch.library.register_fake("mobilenet_ext::squeeze_excitation_backward")
def _(grad_output, output, means, weight1, bias1, weight2, bias2, activation, gate):
    _se_fake_check("squeeze_excitation_backward", output, weight1, bias1, weight2, bias2)
    _check_fake(tuple(means.shape) == tuple(output.shape[:2]),
                f"squeeze_excitation_backward: means must have shape [N, C] = {list(output.shape[:2])}, "
                f"got {list(means.shape)}")
    return (torch.empty_like(output, memory_format=_memory_format(output)), torch.empty_like(weight1),
            output.new_empty((weight1.shape[0],)), torch.empty_like(weight2), output.new_empty((weight2.shape[0],)))


@torch.library.register_fake("mobilenet_ext::squeeze_excitation_means")
def _(input):
    _check_fake(input.dim() == 4, f"squeeze_excitation_means: input must be a 4-D tensor [N, C, H, W], got shape "
                                  f"{tuple(input.shape)}")
    return input.new_empty(tuple(input.shape[:2]))


def _se_setup_context(ctx, inputs, output):
    # keeps the output (the next layer keeps it too) and the [N, C] means,
    # not the input: the input is freed after the forward (see
    # csrc/glue/squeeze_excitation_ops.cpp). An in-place change of the
    # output before the backward is reported by autograd.
    input, weight1, bias1, weight2, bias2, activation, gate = inputs
    ctx.save_for_backward(output, _ops.squeeze_excitation_means(input), weight1, bias1, weight2, bias2)
    ctx.se_args = (int(activation), int(gate))


def _se_backward(ctx, grad):
    output, means, weight1, bias1, weight2, bias2 = ctx.saved_tensors
    gi, gw1, gb1, gw2, gb2 = _ops.squeeze_excitation_backward(grad, output, means, weight1, bias1, weight2, bias2,
                                                              *ctx.se_args)
    need = ctx.needs_input_grad
    return (
        gi if need[0] else None,
        gw1 if need[1] else None,
        gb1 if bias1 is not None and need[2] else None,
        gw2 if need[3] else None,
        gb2 if bias2 is not None and need[4] else None,
        None, None,
    )


torch.library.register_autograd("mobilenet_ext::squeeze_excitation", _se_backward, setup_context=_se_setup_context)


def _register_se_decomposition() -> None:
    # for torch.onnx.export only, like the conv decompositions above
    from torch._decomp import register_decomposition

    @register_decomposition(_ops.squeeze_excitation.default)
    def _se(input, weight1, bias1, weight2, bias2, activation, gate):
        return _se_reference(input, weight1, bias1, weight2, bias2, activation, gate)

    @register_decomposition(_ops.squeeze_excitation_means.default)
    def _se_means(input):  # global_avg_pool2d's op
        return torch.ops.aten.mean.dim(input, [2, 3])


_register_se_decomposition()


def _register_se_flops() -> None:
    # the two small layers, as torch's counter counts them for the module
    # (1x1 convs / mm); the pooling and scaling are not counted there either
    from torch.utils.flop_counter import register_flop_formula

    @register_flop_formula([_ops.squeeze_excitation, _ops.squeeze_excitation_])
    def _se_flop(input_shape, weight1_shape, *args, out_shape, **kw):
        return 2 * 2 * int(input_shape[0] * weight1_shape[0] * weight1_shape[1])

    @register_flop_formula(_ops.squeeze_excitation_backward)
    def _se_bwd_flop(grad_shape, input_shape, means_shape, weight1_shape, *args, out_shape, **kw):
        return 2 * 2 * 2 * int(input_shape[0] * weight1_shape[0] * weight1_shape[1])


_register_se_flops()
__all__ += ["squeeze_excitation", "squeeze_excitation_", "SE_GATES"]
