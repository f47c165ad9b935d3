"""MobileNetV3 Large / Small (Howard et al. 2019) with torchvision's exact
module tree (BatchNorm eps=1e-3, momentum=0.01)."""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..nn import PointwiseConv2d
from ._layers import ConvBNAct, SqueezeExcitation, _make_divisible, check_backend, init_weights

__all__ = ["BlockConfig", "InvertedResidualV3", "MobileNetV3", "mobilenet_v3_large", "mobilenet_v3_small"]

_BN = dict(bn_eps=0.001, bn_momentum=0.01)


class BlockConfig:
    """One bneck row of the paper's Tables 1/2, widths scaled by width_mult."""

    def __init__(self, input_channels: int, kernel: int, expanded_channels: int, out_channels: int,
                 use_se: bool, activation: str, stride: int, dilation: int, width_mult: float) -> None:
        self.input_channels = self.adjust_channels(input_channels, width_mult)
        self.kernel = kernel
        self.expanded_channels = self.adjust_channels(expanded_channels, width_mult)
        self.out_channels = self.adjust_channels(out_channels, width_mult)
        self.use_se = use_se
        self.use_hs = activation == "HS"
        self.stride = stride
        self.dilation = dilation

    @staticmethod
    def adjust_channels(channels: int, width_mult: float) -> int:
        return _make_divisible(channels * width_mult, 8)


class InvertedResidualV3(nn.Module):
    """[1x1 expand] -> kxk depthwise -> [SE] -> 1x1 projection + BN, with the
    shortcut added when stride 1 and in == out.  See
    :meth:`mobilenet_ext.models.mobilenet_v2.InvertedResidual.fuse_residual`."""

    def __init__(self, cnf: BlockConfig, backend: str = "ext") -> None:
        super().__init__()
        if not 1 <= cnf.stride <= 2:
            raise ValueError("illegal stride value")
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
        act = nn.Hardswish if cnf.use_hs else nn.ReLU
        layers: List[nn.Module] = []
        if cnf.expanded_channels != cnf.input_channels:
            layers.append(ConvBNAct(cnf.input_channels, cnf.expanded_channels, kernel_size=1,
                                    activation_layer=act, backend=backend, **_BN))
        stride = 1 if cnf.dilation > 1 else cnf.stride
        layers.append(ConvBNAct(cnf.expanded_channels, cnf.expanded_channels, kernel_size=cnf.kernel,
                                stride=stride, dilation=cnf.dilation, groups=cnf.expanded_channels,
                                activation_layer=act, backend=backend, **_BN))
        if cnf.use_se:
            squeeze = _make_divisible(cnf.expanded_channels // 4, 8)
            layers.append(SqueezeExcitation(cnf.expanded_channels, squeeze,
                                            scale_activation=nn.Hardsigmoid, backend=backend))
        layers.append(ConvBNAct(cnf.expanded_channels, cnf.out_channels, kernel_size=1,
                                activation_layer=None, backend=backend, **_BN))
        self.block = nn.Sequential(*layers)
        self.out_channels = cnf.out_channels
        self._is_cn = cnf.stride > 1
        self.fused_residual = False

    def fuse_residual(self) -> bool:
        proj = self.block[-1]
        ok = (self.use_res_connect and isinstance(proj[0], PointwiseConv2d)
              and isinstance(proj[1], nn.Identity) and len(proj) == 2)
        self.fused_residual = ok
        return ok

    def forward(self, input: Tensor) -> Tensor:
        if self.fused_residual:
            y = input
            for m in list(self.block)[:-1]:
                y = m(y)
            return self.block[-1][0](y, residual=input)
        result = self.block(input)
        if self.use_res_connect:
            result = result + input
        return result


class MobileNetV3(nn.Module):
    def __init__(self, inverted_residual_setting: Sequence[BlockConfig], last_channel: int,
                 num_classes: int = 1000, dropout: float = 0.2, backend: str = "ext") -> None:
        super().__init__()
        check_backend(backend)
        if not inverted_residual_setting:
            raise ValueError("The inverted_residual_setting should not be empty")
        first_out = inverted_residual_setting[0].input_channels
        layers: List[nn.Module] = [
            ConvBNAct(3, first_out, kernel_size=3, stride=2, activation_layer=nn.Hardswish, backend=backend, **_BN)
        ]
        for cnf in inverted_residual_setting:
            layers.append(InvertedResidualV3(cnf, backend))
        last_in = inverted_residual_setting[-1].out_channels
        last_out = 6 * last_in
        layers.append(ConvBNAct(last_in, last_out, kernel_size=1, activation_layer=nn.Hardswish,
                                backend=backend, **_BN))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(last_out, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def _conf(arch: str, width_mult: float = 1.0, reduced_tail: bool = False,
          dilated: bool = False) -> Tuple[List[BlockConfig], int]:
    r = 2 if reduced_tail else 1
    d = 2 if dilated else 1
    rows = {
        # in, k, exp, out, SE, act, s, dilation
        "mobilenet_v3_large": [
            (16, 3, 16, 16, False, "RE", 1, 1),
            (16, 3, 64, 24, False, "RE", 2, 1),
            (24, 3, 72, 24, False, "RE", 1, 1),
            (24, 5, 72, 40, True, "RE", 2, 1),
            (40, 5, 120, 40, True, "RE", 1, 1),
            (40, 5, 120, 40, True, "RE", 1, 1),
            (40, 3, 240, 80, False, "HS", 2, 1),
            (80, 3, 200, 80, False, "HS", 1, 1),
            (80, 3, 184, 80, False, "HS", 1, 1),
            (80, 3, 184, 80, False, "HS", 1, 1),
            (80, 3, 480, 112, True, "HS", 1, 1),
            (112, 3, 672, 112, True, "HS", 1, 1),
            (112, 5, 672, 160 // r, True, "HS", 2, d),
            (160 // r, 5, 960 // r, 160 // r, True, "HS", 1, d),
            (160 // r, 5, 960 // r, 160 // r, True, "HS", 1, d),
        ],
        "mobilenet_v3_small": [
            (16, 3, 16, 16, True, "RE", 2, 1),
            (16, 3, 72, 24, False, "RE", 2, 1),
            (24, 3, 88, 24, False, "RE", 1, 1),
            (24, 5, 96, 40, True, "HS", 2, 1),
            (40, 5, 240, 40, True, "HS", 1, 1),
            (40, 5, 240, 40, True, "HS", 1, 1),
            (40, 5, 120, 48, True, "HS", 1, 1),
            (48, 5, 144, 48, True, "HS", 1, 1),
            (48, 5, 288, 96 // r, True, "HS", 2, d),
            (96 // r, 5, 576 // r, 96 // r, True, "HS", 1, d),
            (96 // r, 5, 576 // r, 96 // r, True, "HS", 1, d),
        ],
    }[arch]
    last = {"mobilenet_v3_large": 1280 // r, "mobilenet_v3_small": 1024 // r}[arch]
    return [BlockConfig(*row, width_mult=width_mult) for row in rows], BlockConfig.adjust_channels(last, width_mult)


def mobilenet_v3_large(width_mult: float = 1.0, num_classes: int = 1000, dropout: float = 0.2,
                       backend: str = "ext", reduced_tail: bool = False, dilated: bool = False) -> MobileNetV3:
    """MobileNetV3-Large; same state_dict as torchvision.models.mobilenet_v3_large."""
    setting, last = _conf("mobilenet_v3_large", width_mult, reduced_tail, dilated)
    return MobileNetV3(setting, last, num_classes=num_classes, dropout=dropout, backend=backend)


def mobilenet_v3_small(width_mult: float = 1.0, num_classes: int = 1000, dropout: float = 0.2,
                       backend: str = "ext", reduced_tail: bool = False, dilated: bool = False) -> MobileNetV3:
    """MobileNetV3-Small; same state_dict as torchvision.models.mobilenet_v3_small."""
    setting, last = _conf("mobilenet_v3_small", width_mult, reduced_tail, dilated)
    return MobileNetV3(setting, last, num_classes=num_classes, dropout=dropout, backend=backend)
