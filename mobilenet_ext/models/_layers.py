"""Building blocks shared by the MobileNet definitions.

Every block keeps torchvision's child names so state_dict keys match:
``ConvBNAct`` is a Sequential of ``0`` conv, ``1`` BatchNorm2d and, when it
has one, ``2`` activation (like torchvision's Conv2dNormActivation).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn

from .. import ops
from ..nn import DepthwiseConv2d, PointwiseConv2d, _tracing

BACKENDS = ("ext", "torch")


def _make_divisible(v: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` (at least
    ``min_value``, default ``divisor``), never going more than 10% below ``v``."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def make_conv(
    backend: str,
    in_channels: int,
    out_channels: int,
    kernel_size: int = 1,
    stride: int = 1,
    groups: int = 1,
    dilation: int = 1,
    bias: bool = False,
) -> nn.Module:
    """A convolution with 'same'-style padding ``(k - 1) // 2 * dilation``.

    backend="ext": a depthwise conv (groups == in_channels, out a multiple)
    becomes DepthwiseConv2d, a 1x1 stride-1 ungrouped conv PointwiseConv2d;
    anything else (the 3x3 stem) stays nn.Conv2d.  backend="torch": nn.Conv2d.
    Parameter names and shapes are those of nn.Conv2d either way."""
    padding = (kernel_size - 1) // 2 * dilation
    if backend == "ext":
        if groups == in_channels and groups > 1 and out_channels % in_channels == 0:
            return DepthwiseConv2d(
                in_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                bias=bias, channel_multiplier=out_channels // in_channels,
            )
        if kernel_size == 1 and stride == 1 and groups == 1:
            return PointwiseConv2d(in_channels, out_channels, bias=bias)
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                     dilation=dilation, groups=groups, bias=bias)


class ConvBNAct(nn.Sequential):
    """conv (no bias) -> BatchNorm2d -> optional activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
        activation_layer: Optional[Callable[..., nn.Module]] = nn.ReLU,
        backend: str = "ext",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        layers = [
            make_conv(backend, in_channels, out_channels, kernel_size, stride, groups, dilation, bias=False),
            nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum),
        ]
        if activation_layer is not None:
            layers.append(activation_layer(inplace=True))
        super().__init__(*layers)
        self.out_channels = out_channels


_SE_ACTIVATIONS = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hardswish", nn.Identity: None}
_SE_GATES = {nn.Hardsigmoid: "hardsigmoid", nn.Sigmoid: "sigmoid"}


def _is_fc_conv(m: nn.Module) -> bool:
    """A 1x1 conv (nn.Conv2d or PointwiseConv2d) usable as an SE layer."""
    if isinstance(m, PointwiseConv2d):
        return True
    return (type(m) is nn.Conv2d and m.kernel_size == (1, 1) and m.stride == (1, 1) and m.groups == 1
            and m.dilation == (1, 1) and m.padding in ((0, 0), "valid"))


_SE_DTYPES = (torch.float32, torch.float64)
_se_inplace = torch.ops.mobilenet_ext.squeeze_excitation_.default


def se_op_args(m: nn.Module) -> Optional[tuple]:
    """(activation, gate) of :func:`mobilenet_ext.ops.squeeze_excitation`
    for an SE module with torchvision's layout (``avgpool`` an
    AdaptiveAvgPool2d(1), ``fc1`` / ``fc2`` 1x1 convs, ``activation`` ReLU /
    ReLU6 / Hardswish, ``scale_activation`` Hardsigmoid / Sigmoid); None when
    ``m`` has another form (it then runs as it is)."""
    pool, fc1, fc2 = getattr(m, "avgpool", None), getattr(m, "fc1", None), getattr(m, "fc2", None)
    act, gate = getattr(m, "activation", None), getattr(m, "scale_activation", None)
    if not (isinstance(pool, nn.AdaptiveAvgPool2d) and pool.output_size in (1, (1, 1))):
        return None
    if not (fc1 is not None and fc2 is not None and _is_fc_conv(fc1) and _is_fc_conv(fc2)):
        return None
    if type(act) not in _SE_ACTIVATIONS or type(gate) not in _SE_GATES:
        return None
    return _SE_ACTIVATIONS[type(act)], _SE_GATES[type(gate)]


def se_forward(m: nn.Module, input: Tensor, scale_fn: Callable[[Tensor], Tensor], inplace: bool,
               use_op: bool = True) -> Tensor:
    """The forward of an SE module ``m`` (torchvision's layout, see
    :func:`se_op_args`): in place when ``inplace`` and no autograd records
    (one :func:`mobilenet_ext.ops.squeeze_excitation_` call, or ``mul_``
    when the op does not apply); else, on the CPU when ``use_op`` and ``m`` has the
    supported form, one :func:`mobilenet_ext.ops.squeeze_excitation` call
    (forward and backward in two passes over the activation each); else
    ``scale_fn(input) * input`` as torchvision."""
    fc1, fc2 = m.fc1, m.fc2
    w1, b1, w2, b2 = fc1.weight, fc1.bias, fc2.weight, fc2.bias
    recording = torch.is_grad_enabled() and (input.requires_grad or any(
        p is not None and p.requires_grad for p in (w1, b1, w2, b2)))
    args = None
    if use_op and input.device.type == "cpu" and input.dim() == 4 and input.dtype in _SE_DTYPES:
        # se_op_args once per set of submodules (~3 us a call at batch 1)
        key = tuple(map(id, m._modules.values()))
        cached = m.__dict__.get("_se_op_args_cache")
        if cached is None or cached[0] != key:
            cached = (key, se_op_args(m))
            m.__dict__["_se_op_args_cache"] = cached
        args = cached[1]
    if args is not None:
        if inplace and not recording and not _tracing():
            # one op call instead of ~6 module calls (batch 1: 20-40 us of Python a block)
            _se_inplace(input, w1, b1, w2, b2, ops.ACTIVATIONS[args[0]], ops.SE_GATES[args[1]])
            return input
        # also what a trace / export records: the same kernels as the in-place op (same bits)
        return ops.squeeze_excitation(input, w1, b1, w2, b2, *args)
    if inplace and not recording:
        return input.mul_(scale_fn(input))
    return scale_fn(input) * input


class SqueezeExcitation(nn.Module):
    """SE block (same names as torchvision.ops.SqueezeExcitation):
    ``x * scale_activation(fc2(activation(fc1(avgpool(x)))))``.
    ``inplace_scale`` (set by :func:`mobilenet_ext.fuse`, whose blocks feed
    it the depthwise output alone): scale the input in place when no
    autograd records the call, instead of allocating the product.
    ``use_op`` (True with the "ext" backend; set by
    :func:`mobilenet_ext.convert`): otherwise run it as one
    :func:`mobilenet_ext.ops.squeeze_excitation` op on the CPU."""

    inplace_scale: bool = False

    def __init__(
        self,
        input_channels: int,
        squeeze_channels: int,
        activation: Callable[..., nn.Module] = nn.ReLU,
        scale_activation: Callable[..., nn.Module] = nn.Hardsigmoid,
        backend: str = "ext",
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = make_conv(backend, input_channels, squeeze_channels, 1, bias=True)
        self.fc2 = make_conv(backend, squeeze_channels, input_channels, 1, bias=True)
        self.activation = activation()
        self.scale_activation = scale_activation()
        self.use_op = backend == "ext"

    def _scale(self, input: Tensor) -> Tensor:
        scale = self.avgpool(input)
        scale = self.activation(self.fc1(scale))
        return self.scale_activation(self.fc2(scale))

    def forward(self, input: Tensor) -> Tensor:
        return se_forward(self, input, self._scale, self.inplace_scale, self.use_op)


def init_weights(model: nn.Module) -> None:
    """torchvision's MobileNet initialisation: kaiming-normal (fan_out) convs,
    unit/zero norms, N(0, 0.01) linears, zero biases."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, DepthwiseConv2d, PointwiseConv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
