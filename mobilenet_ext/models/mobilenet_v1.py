"""MobileNetV1 (Howard et al. 2017, Table 1) with the width multiplier alpha.

Stem: 3x3 conv, stride 2, 32 channels; 13 depthwise-separable blocks
(3x3 depthwise + BN + ReLU, 1x1 pointwise + BN + ReLU); global average pool;
dropout; fully connected.  No conv bias (BatchNorm follows every conv).
Channels are ``int(c * alpha)`` (0.75 -> 24, 48, ...; 0.25 -> 8, 16, ...).
The paper's Table 1 lists the 13th depthwise conv as stride 2, but its
input is already 7x7 and its output is listed as 7x7, so it is stride 1
(as in every released implementation).
"""
from __future__ import annotations

from typing import List

import torch
from torch import Tensor, nn

from ._layers import ConvBNAct, check_backend, init_weights

__all__ = ["MobileNetV1", "DepthwiseSeparable", "mobilenet_v1", "V1_BLOCKS"]

# (pointwise output channels, depthwise stride) for the 13 blocks of Table 1
V1_BLOCKS = [
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
]


class DepthwiseSeparable(nn.Sequential):
    """``dw``: 3x3 depthwise + BN + ReLU, ``pw``: 1x1 + BN + ReLU."""

    def __init__(self, inp: int, oup: int, stride: int, backend: str = "ext") -> None:
        super().__init__()
        self.dw = ConvBNAct(inp, inp, 3, stride=stride, groups=inp, activation_layer=nn.ReLU, backend=backend)
        self.pw = ConvBNAct(inp, oup, 1, activation_layer=nn.ReLU, backend=backend)
        self.out_channels = oup


class MobileNetV1(nn.Module):
    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000, dropout: float = 0.001,
                 backend: str = "ext") -> None:
        super().__init__()
        check_backend(backend)
        if width_mult <= 0:
            raise ValueError("width_mult must be positive")

        def ch(c: int) -> int:
            return max(1, int(c * width_mult))

        c = ch(32)
        layers: List[nn.Module] = [ConvBNAct(3, c, 3, stride=2, activation_layer=nn.ReLU, backend=backend)]
        for out, s in V1_BLOCKS:
            layers.append(DepthwiseSeparable(c, ch(out), s, backend))
            c = ch(out)
        self.features = nn.Sequential(*layers)
        self.last_channel = c
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(c, num_classes))
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def mobilenet_v1(width_mult: float = 1.0, num_classes: int = 1000, dropout: float = 0.001,
                 backend: str = "ext") -> MobileNetV1:
    """MobileNetV1 (4.2M parameters, 569M mult-adds at 224x224, width 1.0).
    dropout=0.001 is the reference TF-slim keep probability 0.999."""
    return MobileNetV1(width_mult=width_mult, num_classes=num_classes, dropout=dropout, backend=backend)
