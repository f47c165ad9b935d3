"""MobileNetV2 (Sandler et al. 2018) with torchvision's exact module tree."""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn

from ..nn import PointwiseConv2d
from ..ops import global_avg_pool2d
from ._layers import ConvBNAct, _make_divisible, check_backend, init_weights, make_conv

__all__ = ["MobileNetV2", "InvertedResidual", "mobilenet_v2"]


class InvertedResidual(nn.Module):
    """1x1 expand (omitted when expand_ratio == 1) -> 3x3 depthwise -> 1x1
    linear projection + BN; identity shortcut when stride 1 and in == out.

    After :func:`mobilenet_ext.fuse` has folded the projection's BatchNorm,
    :meth:`fuse_residual` makes the block pass the shortcut into the
    projecting PointwiseConv2d so the add runs in the GEMM epilogue."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: float, backend: str = "ext") -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2, got {stride}")
        hidden_dim = int(round(inp * expand_ratio))
        self.stride = stride
        self.use_res_connect = stride == 1 and inp == oup
        layers: List[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(inp, hidden_dim, kernel_size=1, activation_layer=nn.ReLU6, backend=backend))
        layers += [
            ConvBNAct(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim,
                      activation_layer=nn.ReLU6, backend=backend),
            make_conv(backend, hidden_dim, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup
        self._is_cn = stride > 1
        self.fused_residual = False

    def fuse_residual(self) -> bool:
        """Enable the fused shortcut if the block has one, its projection is
        a PointwiseConv2d and the BatchNorm after it has been folded away."""
        ok = (self.use_res_connect and isinstance(self.conv[-2], PointwiseConv2d)
              and isinstance(self.conv[-1], nn.Identity))
        self.fused_residual = ok
        return ok

    def forward(self, x: Tensor) -> Tensor:
        if self.fused_residual:
            y = x
            for m in list(self.conv)[:-2]:
                y = m(y)
            return self.conv[-2](y, residual=x)
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        inverted_residual_setting: Optional[Sequence[Sequence[int]]] = None,
        round_nearest: int = 8,
        dropout: float = 0.2,
        backend: str = "ext",
    ) -> None:
        super().__init__()
        check_backend(backend)
        self.backend = backend
        input_channel = 32
        last_channel = 1280
        if inverted_residual_setting is None:
            inverted_residual_setting = [
                # t, c, n, s
                [1, 16, 1, 1],
                [6, 24, 2, 2],
                [6, 32, 3, 2],
                [6, 64, 4, 2],
                [6, 96, 3, 1],
                [6, 160, 3, 2],
                [6, 320, 1, 1],
            ]
        if len(inverted_residual_setting) == 0 or len(inverted_residual_setting[0]) != 4:
            raise ValueError("inverted_residual_setting should be a non-empty list of [t, c, n, s]")
        input_channel = _make_divisible(input_channel * width_mult, round_nearest)
        self.last_channel = _make_divisible(last_channel * max(1.0, width_mult), round_nearest)
        features: List[nn.Module] = [
            ConvBNAct(3, input_channel, stride=2, activation_layer=nn.ReLU6, backend=backend)
        ]
        for t, c, n, s in inverted_residual_setting:
            output_channel = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(InvertedResidual(input_channel, output_channel, s if i == 0 else 1, t, backend))
                input_channel = output_channel
        features.append(ConvBNAct(input_channel, self.last_channel, kernel_size=1,
                                  activation_layer=nn.ReLU6, backend=backend))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        # ours: our channel-means kernel for CPU inference (PyTorch's pool otherwise)
        ours = getattr(self, "backend", "torch") == "ext"
        x = global_avg_pool2d(x) if ours else nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)


def mobilenet_v2(width_mult: float = 1.0, num_classes: int = 1000, dropout: float = 0.2,
                 backend: str = "ext", **kwargs) -> MobileNetV2:
    """MobileNetV2; same state_dict keys and parameters as
    ``torchvision.models.mobilenet_v2(width_mult=..., num_classes=...)``."""
    return MobileNetV2(num_classes=num_classes, width_mult=width_mult, dropout=dropout, backend=backend, **kwargs)
