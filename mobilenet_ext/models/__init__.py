"""MobileNet V1/V2/V3 on mobilenet_ext layers (backend="ext") or nn.Conv2d
(backend="torch").  V2/V3 have torchvision's module tree and state_dict keys,
so torchvision checkpoints load with strict=True."""
from ._layers import ConvBNAct, SqueezeExcitation, _make_divisible, make_conv
from .mobilenet_v1 import MobileNetV1, mobilenet_v1
from .mobilenet_v2 import MobileNetV2, mobilenet_v2
from .mobilenet_v3 import MobileNetV3, mobilenet_v3_large, mobilenet_v3_small

__all__ = [
    "MobileNetV1", "MobileNetV2", "MobileNetV3",
    "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
    "ConvBNAct", "SqueezeExcitation", "make_conv", "_make_divisible",
]
