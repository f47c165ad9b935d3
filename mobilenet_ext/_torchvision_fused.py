"""Inference forms of torchvision's MobileNet blocks, which :func:`mobilenet_ext.fuse`
gives a fused model's blocks (by setting their class; parameters, buffers and
state_dict keys stay torchvision's). Imported only when fuse() meets one.

- the inverted-residual blocks of mobilenet_v2 and mobilenet_v3 with a
  shortcut pass it into the projecting PointwiseConv2d, whose GEMM epilogue
  adds it, instead of a separate add over the whole output (v2's ``x +
  conv(x)`` also allocated a fresh output: at batch 32 NCHW ~9 ms of a
  ~100 ms inference, mostly page faults, measured on 2 threads);
- squeeze-excitation inside such a block scales its input in place (the
  depthwise output, which nothing else reads) instead of allocating
  ``scale * input``: [32, 72, 56, 56] 8.5 ms (NCHW) / 57 ms (channels_last)
  out of place against 0.7-1.0 ms in place.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.mobilenetv2 import InvertedResidual as _V2Block
from torchvision.models.mobilenetv2 import MobileNetV2 as _MobileNetV2
from torchvision.models.mobilenetv3 import InvertedResidual as _V3Block
from torchvision.ops.misc import SqueezeExcitation as _TvSE

from .models._layers import se_forward
from .nn import PointwiseConv2d
from .ops import global_avg_pool2d

__all__ = ["FusedInvertedResidualV2", "FusedInvertedResidualV3", "TorchvisionSqueezeExcitation",
           "InplaceSqueezeExcitation", "FusedMobileNetV2", "fuse_torchvision_blocks"]


def _only_identities(mods) -> bool:
    return all(type(m) is nn.Identity for m in mods)


class FusedInvertedResidualV2(_V2Block):
    """torchvision's mobilenet_v2 block with the shortcut added in the
    projection's epilogue (``conv[-2]`` a PointwiseConv2d, ``conv[-1]`` the
    folded BatchNorm's Identity)."""

    def forward(self, x: Tensor) -> Tensor:
        y = x
        for m in list(self.conv)[:-2]:
            y = m(y)
        return self.conv[-2](y, residual=x)


class FusedInvertedResidualV3(_V3Block):
    """torchvision's mobilenet_v3 block with the shortcut added in the
    projection's epilogue (``block[-1]`` = [PointwiseConv2d, Identity...])."""

    def forward(self, input: Tensor) -> Tensor:
        y = input
        for m in list(self.block)[:-1]:
            y = m(y)
        return self.block[-1][0](y, residual=input)


class TorchvisionSqueezeExcitation(_TvSE):
    """torchvision's SqueezeExcitation run as one
    :func:`mobilenet_ext.ops.squeeze_excitation` op on the CPU where its
    form allows (:func:`mobilenet_ext.models._layers.se_op_args`; else as
    torchvision). :func:`mobilenet_ext.convert` gives torchvision's SE
    modules this class (parameters and state_dict keys unchanged)."""

    inplace_scale = False
    use_op = True

    def forward(self, input: Tensor) -> Tensor:
        return se_forward(self, input, self._scale, self.inplace_scale, self.use_op)


class InplaceSqueezeExcitation(TorchvisionSqueezeExcitation):
    """The same, scaling its input in place when no autograd records the
    call. Only for an input nothing else reads (fuse() uses it inside the
    inverted-residual blocks, where the input is the depthwise output)."""

    inplace_scale = True


class FusedMobileNetV2(_MobileNetV2):
    """torchvision's mobilenet_v2 with its average pool (a functional call
    in its forward) on :func:`mobilenet_ext.ops.global_avg_pool2d`."""

    def _forward_impl(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = global_avg_pool2d(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def fuse_torchvision_blocks(model: nn.Module) -> int:
    """Give ``model``'s (already BatchNorm-folded) torchvision MobileNet
    blocks their fused forms; returns how many modules changed class."""
    changed = 0
    for m in model.modules():
        t = type(m)
        if t is _MobileNetV2:
            m.__class__ = FusedMobileNetV2
            changed += 1
        elif t is _V2Block and m.use_res_connect and len(m.conv) >= 3 \
                and type(m.conv[-2]) is PointwiseConv2d and type(m.conv[-1]) is nn.Identity:
            m.__class__ = FusedInvertedResidualV2
            changed += 1
        elif t is _V3Block:
            proj = m.block[-1]
            if (m.use_res_connect and isinstance(proj, nn.Sequential) and len(proj) >= 1
                    and type(proj[0]) is PointwiseConv2d and _only_identities(list(proj)[1:])):
                m.__class__ = FusedInvertedResidualV3
                changed += 1
            for i, sub in enumerate(list(m.block)):
                # SE right after the depthwise layer: its input is read by nothing else
                if type(sub) in (_TvSE, TorchvisionSqueezeExcitation) and i >= 1:
                    sub.__class__ = InplaceSqueezeExcitation
                    changed += 1
    return changed
