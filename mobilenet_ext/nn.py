"""Drop-in layers for depthwise and pointwise nn.Conv2d.

Parameter names, shapes, initialisation and state_dict keys are those of the
nn.Conv2d each replaces, so weights move between the two unchanged.
"""
from __future__ import annotations

import math
import weakref
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import ops

__all__ = ["DepthwiseConv2d", "PointwiseConv2d"]

_ACTS = {
    None: None,
    "relu": F.relu,
    "relu6": F.relu6,
    "hardswish": F.hardswish,
}


def _pair(name: str, v) -> Tuple[int, int]:
    p = ops._pair(name, v)
    return (int(p[0]), int(p[1]))


def _check_activation(activation: Optional[str]) -> Optional[str]:
    if activation not in _ACTS:
        raise ValueError(f"activation must be one of None, 'relu', 'relu6', 'hardswish', got {activation!r}")
    return activation


def _use_fused(x: Tensor, *params: Optional[Tensor]) -> bool:
    if not torch.is_grad_enabled():
        return True
    return not (x.requires_grad or any(p is not None and p.requires_grad for p in params))


def _tracing() -> bool:
    """Whether this call is being traced, scripted, compiled or exported
    (the graph should hold the plain ops, not a packed weight)."""
    # torch.jit.trace and the TorchScript-based ONNX exporter set the tracing
    # state (a C call: torch.onnx.is_in_onnx_export() costs ~1 us a call,
    # which every layer of a batch-1 network paid); dynamo, torch.export and
    # the dynamo ONNX exporter are seen by is_compiling / is_exporting
    if torch._C._get_tracing_state() is not None or torch.compiler.is_compiling():
        return True
    if torch.jit.is_scripting():
        return True
    exporting = getattr(torch.compiler, "is_exporting", None)
    return bool(exporting is not None and exporting())


def _sharing(cls, src: nn.Module):
    """A ``cls`` instance that shares ``src``'s attributes, parameters,
    buffers and submodules (a subclass of ``type(src)`` taking its place:
    same state_dict keys)."""
    m = cls.__new__(cls)
    nn.Module.__init__(m)
    for k, v in src.__dict__.items():
        if k not in ("_parameters", "_buffers", "_modules"):
            m.__dict__[k] = v
    m._parameters = dict(src._parameters)
    m._buffers = dict(src._buffers)
    m._modules = dict(src._modules)
    return m


class _PackedWeight:
    """Mixin for a module whose ``weight`` ([out, in, 1, 1] or [out, in])
    the GEMM reads packed: one copy per layout, made on first use and
    remade when the weight changes (another tensor, or an in-place update,
    which bumps its version)."""

    def _packed_for(self, nhwc: bool) -> Optional[Tensor]:
        """The weight packed in the panel the kernel reads in place for this
        layout (:func:`mobilenet_ext.ops.pointwise_pack_weight`), or None
        when the kernel has none."""
        w = self.weight
        if w.is_inference():  # made under torch.inference_mode: no version to tell an update
            return None
        # the panel is fixed per process and layout; the weight's identity
        # (weakref), storage and version tell a changed weight (its shape
        # cannot change without a new tensor or a version bump)
        key = (w.data_ptr(), w._version)
        cache = self.__dict__.setdefault("_packed_cache", {})
        hit = cache.get(nhwc)  # (weakref to the weight, key, packed)
        if hit is None or hit[1] != key or hit[0]() is not w:
            panel = ops.gemm_panel(nhwc)
            if panel <= 0:
                return None
            w4 = w.detach() if w.dim() == 4 else w.detach()[:, :, None, None]
            # a normal tensor even when the first call runs under
            # torch.inference_mode (inference tensors have no version
            # counter, which the recorded plans read for every constant)
            with torch.inference_mode(False):
                packed = ops.pointwise_pack_weight(w4, panel)
            hit = (weakref.ref(w), key, packed)
            cache[nhwc] = hit
        return hit[2]

    def clear_packed(self) -> None:
        """Drop the packed copies of the weight (needed after a write
        through ``weight.data``, which does not bump the version)."""
        self.__dict__.pop("_packed_cache", None)

    def __getstate__(self):
        state = super().__getstate__().copy()
        state.pop("_packed_cache", None)  # derived from the weight; remade on use
        return state


class _ActivationAfter:
    """Mixin for a torch layer subclass with an ``activation`` applied to its
    output (None, 'relu', 'relu6', 'hardswish'), shown in its repr."""

    def _activate(self, y: Tensor) -> Tensor:
        return y if self.activation is None else _ACTS[self.activation](y)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.activation is not None:
            s += f", activation={self.activation!r}"
        return s


class DepthwiseConv2d(nn.Module):
    r"""Depthwise convolution, a drop-in for
    ``nn.Conv2d(channels, channels * channel_multiplier, kernel_size, stride,
    padding, dilation, groups=channels, bias=bias)``.

    Shapes:
        input ``[N, channels, H, W]`` (NCHW or channels_last) →
        output ``[N, channels * channel_multiplier, H_out, W_out]`` in the
        input's memory format.

    Attributes:
        weight: ``[channels * channel_multiplier, 1, kH, kW]``
        bias: ``[channels * channel_multiplier]`` or None
        activation: None, 'relu', 'relu6' or 'hardswish', applied after the
            bias (set by :func:`mobilenet_ext.fuse`; fused into the kernel when
            no gradient is needed).
    """

    def __init__(
        self,
        channels: int,
        kernel_size: Union[int, Tuple[int, int]],
        stride: Union[int, Tuple[int, int]] = 1,
        padding: Union[int, Tuple[int, int]] = 0,
        dilation: Union[int, Tuple[int, int]] = 1,
        bias: bool = True,
        channel_multiplier: int = 1,
        activation: Optional[str] = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        if not isinstance(channel_multiplier, int) or channel_multiplier < 1:
            raise ValueError(f"channel_multiplier must be a positive int, got {channel_multiplier!r}")
        self.in_channels = channels
        self.out_channels = channels * channel_multiplier
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.stride = _pair("stride", stride)
        self.padding = _pair("padding", padding)
        self.dilation = _pair("dilation", dilation)
        if min(self.kernel_size) < 1:
            raise ValueError(f"kernel_size must be >= 1, got {kernel_size!r}")
        if min(self.stride) < 1:
            raise ValueError(f"stride must be >= 1, got {stride!r}")
        if min(self.padding) < 0:
            raise ValueError(f"padding must be >= 0, got {padding!r}")
        if min(self.dilation) < 1:
            raise ValueError(f"dilation must be >= 1, got {dilation!r}")
        self.groups = channels
        self.activation = _check_activation(activation)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty((self.out_channels, 1, *self.kernel_size), **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(self.out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    @property
    def channel_multiplier(self) -> int:
        return self.out_channels // self.in_channels

    def reset_parameters(self) -> None:
        # Same as nn.Conv2d.reset_parameters.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.kernel_size[0] * self.kernel_size[1]
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "DepthwiseConv2d":
        """A DepthwiseConv2d with ``conv``'s configuration sharing its
        parameters (depthwise: groups == in_channels, zero padding)."""
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
        padding = _resolve_padding(conv)
        if not is_depthwise_conv(conv) or padding is None:
            raise ValueError(f"conv is not a depthwise convolution this layer can replace: {conv}")
        m = cls.__new__(cls)
        nn.Module.__init__(m)
        m.in_channels = conv.in_channels
        m.out_channels = conv.out_channels
        m.kernel_size = tuple(conv.kernel_size)
        m.stride = tuple(conv.stride)
        m.padding = padding
        m.dilation = tuple(conv.dilation)
        m.groups = conv.in_channels
        m.activation = None
        m.weight = conv.weight
        m.bias = conv.bias
        return m

    def forward(self, input: Tensor) -> Tensor:
        if self.activation is not None and _use_fused(input, self.weight, self.bias):
            return ops.depthwise_conv2d_fused(
                input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.activation
            )
        y = ops.depthwise_conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation)
        if self.activation is not None:
            y = _ACTS[self.activation](y)
        return y

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.activation is not None:
            s += f", activation={self.activation!r}"
        return s


class PointwiseConv2d(_PackedWeight, nn.Module):
    r"""Pointwise (1x1) convolution computed as a GEMM, a drop-in for
    ``nn.Conv2d(in_channels, out_channels, 1, bias=bias)``.

    Shapes:
        input ``[N, in_channels, H, W]`` (NCHW or channels_last) →
        output ``[N, out_channels, H, W]`` in the input's memory format.
        ``forward(input, residual=None)``: an optional residual
        ``[N, out_channels, H, W]`` is added after the activation.

    Attributes:
        weight: ``[out_channels, in_channels, 1, 1]``
        bias: ``[out_channels]`` or None
        activation: None, 'relu', 'relu6' or 'hardswish' (see DepthwiseConv2d)
        pack_weight: False by default; :func:`mobilenet_ext.fuse` sets it.
            When True, calls that record no autograd (float32, CPU) run on a
            copy of the weight packed once for the GEMM kernel
            (:func:`mobilenet_ext.ops.pointwise_conv2d_packed`, bitwise the
            same output): one copy per layout, as large as the weight, made
            on first use and remade when the weight changes (another tensor,
            or an in-place update such as ``load_state_dict`` or an optimizer
            step). A write through ``weight.data`` is not seen: call
            :meth:`clear_packed` after one.
    """

    pack_weight: bool = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bias: bool = True,
        activation: Optional[str] = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = (1, 1)
        self.stride = (1, 1)
        self.padding = (0, 0)
        self.groups = 1
        self.activation = _check_activation(activation)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty((out_channels, in_channels, 1, 1), **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_channels)
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "PointwiseConv2d":
        """A PointwiseConv2d sharing ``conv``'s parameters (1x1, stride 1,
        groups 1, no padding)."""
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
        if not is_pointwise_conv(conv):
            raise ValueError(f"conv is not a pointwise convolution this layer can replace: {conv}")
        m = cls.__new__(cls)
        nn.Module.__init__(m)
        m.in_channels = conv.in_channels
        m.out_channels = conv.out_channels
        m.kernel_size = (1, 1)
        m.stride = (1, 1)
        m.padding = (0, 0)
        m.groups = 1
        m.activation = None
        m.weight = conv.weight
        m.bias = conv.bias
        return m

    def _packed_weight(self, input: Tensor, residual: Optional[Tensor]) -> Optional[Tensor]:
        """The weight packed for this CPU's GEMM kernel and ``input``'s
        layout (:func:`mobilenet_ext.ops.pointwise_pack_weight`), made on the
        first inference call and kept until the weight changes (another
        tensor, or an in-place update, which bumps its version); None where
        the plain op runs instead: autograd recording, not float32 on the
        CPU, tracing / compiling / exporting, or no packed kernel."""
        if not self.pack_weight:
            return None
        w, b = self.weight, self.bias
        f32 = torch.float32
        if (
            type(input) is not torch.Tensor  # fake, functional and other subclass tensors
            or input.dtype != f32 or w.dtype != f32 or not input.is_cpu or not w.is_cpu
            or (b is not None and (b.dtype != f32 or not b.is_cpu))
            or (residual is not None and (residual.dtype != f32 or not residual.is_cpu))
            or input.dim() != 4 or w.dim() != 4 or input.shape[1] != w.shape[1]
            or w.shape[2] != 1 or w.shape[3] != 1
            or not _use_fused(input, w, b, residual)
            or _tracing()
        ):
            return None
        shape = input.shape
        nhwc = shape[2] * shape[3] == 1 or (
            not input.is_contiguous() and input.is_contiguous(memory_format=torch.channels_last))
        return self._packed_for(nhwc)

    def forward(self, input: Tensor, residual: Optional[Tensor] = None) -> Tensor:
        packed = self._packed_weight(input, residual)
        if packed is not None:
            return ops.pointwise_conv2d_packed(input, self.weight, packed, self.bias, self.activation, residual)
        if (self.activation is not None or residual is not None) and _use_fused(
            input, self.weight, self.bias, residual
        ):
            return ops.pointwise_conv2d_fused(input, self.weight, self.bias, self.activation, residual)
        y = ops.pointwise_conv2d(input, self.weight, self.bias)
        if self.activation is not None:
            y = _ACTS[self.activation](y)
        if residual is not None:
            y = y + residual
        return y

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size=(1, 1), stride=(1, 1)"
        if self.bias is None:
            s += ", bias=False"
        if self.activation is not None:
            s += f", activation={self.activation!r}"
        return s


def _resolve_padding(conv: nn.Conv2d) -> Optional[Tuple[int, int]]:
    """conv's padding as an (h, w) pair of ints, or None when it cannot be
    expressed as symmetric zero padding."""
    if conv.padding_mode != "zeros":
        return None
    p = conv.padding
    if isinstance(p, str):
        if p == "valid":
            return (0, 0)
        out = []
        for k, d in zip(conv.kernel_size, conv.dilation):
            total = d * (k - 1)
            if total % 2:
                return None  # 'same' with asymmetric padding
            out.append(total // 2)
        return (out[0], out[1])
    return (int(p[0]), int(p[1]))


def is_depthwise_conv(conv: nn.Module) -> bool:
    """True for an nn.Conv2d with groups == in_channels, out_channels a
    multiple of in_channels and zero (symmetric) padding."""
    return (
        isinstance(conv, nn.Conv2d)
        and conv.groups == conv.in_channels
        and conv.out_channels % conv.in_channels == 0
        and _resolve_padding(conv) is not None
    )


def is_pointwise_conv(conv: nn.Module) -> bool:
    """True for an nn.Conv2d that is 1x1, stride 1, groups 1, no padding."""
    return (
        isinstance(conv, nn.Conv2d)
        and tuple(conv.kernel_size) == (1, 1)
        and tuple(conv.stride) == (1, 1)
        and conv.groups == 1
        and _resolve_padding(conv) == (0, 0)
    )


class PackedLinear(_PackedWeight, _ActivationAfter, nn.Linear):
    """An ``nn.Linear`` (same parameters and state_dict) for inference with
    an optional activation, which :func:`mobilenet_ext.fuse` puts in place
    of a network's classifier layers. On the CPU (float32 / float64, 2-D
    input) when no autograd records the call it runs
    :func:`mobilenet_ext.ops.linear_fused` (our 1x1 GEMM, bias and
    activation in its epilogue), in float32 on a copy of the weight packed
    once (:func:`~mobilenet_ext.ops.linear_packed`: made on first use,
    remade when the weight changes, not while tracing; the same bits);
    otherwise (autograd, other devices or dtypes) ``F.linear`` + activation.
    ONNX export writes a standard Gemm (+ activation).

    Shapes: input ``[N, in_features]``, output ``[N, out_features]``.
    Measured (2 threads, AMD EPYC Zen 5, 1 row): 1280 -> 1000 38-45 us
    against 67-92 us for F.linear with the weight in cache, 210-245 us
    against 370-473 us after a 32 MB pass evicted it.
    """

    @classmethod
    def from_linear(cls, linear: nn.Linear, activation: Optional[str] = None) -> "PackedLinear":
        """A PackedLinear sharing ``linear``'s parameters."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"PackedLinear.from_linear: expected an nn.Linear, got {type(linear).__name__}")
        m = _sharing(cls, linear)
        m.activation = _check_activation(activation)
        return m

    def forward(self, input: Tensor) -> Tensor:
        w, b = self.weight, self.bias
        dt = input.dtype
        if (input.dim() == 2 and input.device.type == "cpu" and dt in (torch.float32, torch.float64)
                and w.dtype == dt and (b is None or b.dtype == dt) and _use_fused(input, w, b)):
            packed = (None if type(input) is not torch.Tensor or dt != torch.float32 or _tracing()
                      else self._packed_for(True))
            if packed is not None:
                return ops.linear_packed(input, w, packed, b, self.activation)
            return ops.linear_fused(input, w, b, self.activation)
        y = F.linear(input, w, b)
        return self._activate(y)


__all__ += ["PackedLinear"]


#: most input channels for which fuse() runs a dense conv on SmallCinConv2d
SMALL_CIN_MAX = 4


def is_small_cin_conv(conv: nn.Module) -> bool:
    """True for an nn.Conv2d with groups 1, dilation 1, zero (symmetric)
    padding and at most SMALL_CIN_MAX input channels: a network's stem,
    which :class:`SmallCinConv2d` runs."""
    return (
        isinstance(conv, nn.Conv2d)
        and conv.groups == 1
        and tuple(conv.dilation) == (1, 1)
        and conv.in_channels <= SMALL_CIN_MAX
        and _resolve_padding(conv) is not None
    )


class SmallCinConv2d(_ActivationAfter, nn.Conv2d):
    """An ``nn.Conv2d`` (groups 1, dilation 1, zero padding) with few input
    channels, e.g. a network's stem, plus an optional activation, for
    inference and training: on the CPU (float32 / float64, no gradient
    needed) it runs :func:`mobilenet_ext.ops.conv2d_small_cin_fused`, which
    writes ``act(conv + bias)`` once in the input's layout; with autograd and
    no activation, :func:`mobilenet_ext.ops.conv2d_small_cin` (the same
    forward; our weight and bias gradients, PyTorch's input gradient); otherwise (CUDA, other dtypes, autograd
    with an activation) ``F.conv2d`` and the activation. Parameters and
    state_dict keys are nn.Conv2d's. :func:`mobilenet_ext.convert` puts it
    (without an activation) in place of every nn.Conv2d that
    :func:`is_small_cin_conv` accepts; :func:`mobilenet_ext.fuse` in place
    of such a conv followed by a BatchNorm, with the activation.

    Shapes: input ``[N, C_in, H, W]``, output ``[N, C_out, OH, OW]`` as
    nn.Conv2d. Measured (2 threads, batch 32, 3 -> 32 channels 3x3 stride 2
    + ReLU6, AMD EPYC Zen 5): NCHW 8.9 ms against 187 ms for nn.Conv2d +
    ReLU6 (oneDNN reorders its input and output and faults in new buffers
    on every call), channels_last 6.2 ms against 20 ms.
    """

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, activation: Optional[str] = None) -> "SmallCinConv2d":
        """A SmallCinConv2d sharing ``conv``'s parameters (``conv`` must
        satisfy :func:`is_small_cin_conv`)."""
        if not is_small_cin_conv(conv):
            raise ValueError(f"SmallCinConv2d.from_conv: conv must be an nn.Conv2d with groups=1, dilation=1, "
                             f"zero padding and at most {SMALL_CIN_MAX} input channels, got {conv}")
        m = _sharing(cls, conv)
        m.padding = _resolve_padding(conv)
        m.activation = _check_activation(activation)
        return m

    def forward(self, input: Tensor) -> Tensor:
        if (input.device.type == "cpu" and input.dtype in (torch.float32, torch.float64)
                and input.dtype == self.weight.dtype):
            if _use_fused(input, self.weight, self.bias):
                return ops.conv2d_small_cin_fused(input, self.weight, self.bias, self.stride, self.padding,
                                                  self.activation)
            if self.activation is None:
                # training (a converted model's stem): our forward and weight gradient
                return ops.conv2d_small_cin(input, self.weight, self.bias, self.stride, self.padding)
        y = F.conv2d(input, self.weight, self.bias, self.stride, self.padding)
        return self._activate(y)


__all__ += ["SmallCinConv2d", "is_small_cin_conv"]


class GlobalAvgPool2d(nn.AdaptiveAvgPool2d):
    """``nn.AdaptiveAvgPool2d(1)`` on :func:`mobilenet_ext.ops.global_avg_pool2d`
    (our channel-means kernel for CPU inference, PyTorch's pool otherwise):
    input ``[N, C, H, W]``, output ``[N, C, 1, 1]``. :func:`mobilenet_ext.fuse`
    puts it in place of a model's ``nn.AdaptiveAvgPool2d(1)``."""

    def __init__(self) -> None:
        super().__init__(1)

    def forward(self, input: Tensor) -> Tensor:
        return ops.global_avg_pool2d(input)


__all__ += ["GlobalAvgPool2d"]


# --------------------------------------------------------------------------
# BatchNorm2d + activation
# --------------------------------------------------------------------------
#: activation modules that BatchNormAct2d absorbs (exact types), by name
ACTIVATION_MODULES = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hardswish"}
_ACT_MODULE_OF = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish}


class BatchNormAct2d(nn.BatchNorm2d):
    r"""``act(BatchNorm2d(x))`` for ``act`` in None, 'relu', 'relu6',
    'hardswish', computed by one fused op (:func:`mobilenet_ext.ops.batch_norm_act`)
    in training and in eval. A subclass of nn.BatchNorm2d with the same
    parameters, buffers and state_dict keys (weight, bias, running_mean,
    running_var, num_batches_tracked), the same constructor arguments plus
    ``activation``, and BatchNorm2d's exact semantics (momentum, including
    None for the cumulative average, affine=False, track_running_stats=False).
    On CUDA it runs F.batch_norm + the activation."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1, affine: bool = True,
                 track_running_stats: bool = True, activation: Optional[str] = None, device=None,
                 dtype=None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        self.activation = _check_activation(activation)

    @classmethod
    def from_bn(cls, bn: nn.BatchNorm2d, activation: Optional[str] = None) -> "BatchNormAct2d":
        """A BatchNormAct2d sharing ``bn``'s parameters and buffers (and its
        training flag)."""
        if not isinstance(bn, nn.BatchNorm2d):
            raise TypeError(f"from_bn: expected an nn.BatchNorm2d, got {type(bn).__name__}")
        m = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats, activation,
                device="meta")
        for name in ("weight", "bias"):
            m._parameters[name] = bn._parameters.get(name)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            m._buffers[name] = bn._buffers.get(name)
        m.train(bn.training)
        return m

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        # as nn.BatchNorm2d.forward
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        bn_training = self.training or (self.running_mean is None and self.running_var is None)
        use_running = not self.training or self.track_running_stats
        return ops.batch_norm_act(
            input,
            self.running_mean if use_running else None,
            self.running_var if use_running else None,
            self.weight, self.bias, bn_training, factor, self.eps, self.activation,
        )

    def extra_repr(self) -> str:
        return super().extra_repr() + f", activation={self.activation!r}"


__all__.append("BatchNormAct2d")
