"""mobilenet_ext: fast depthwise and pointwise (1x1) convolutions for PyTorch.

    import mobilenet_ext as mx
    y = mx.ops.depthwise_conv2d(x, w, b, stride=1, padding=1)
    model = mx.convert(torchvision.models.mobilenet_v2())
"""
from ._native import cpu_isa, cuda_built
from . import ops
from . import nn
from .convert import convert
from .fuse import fuse
from .profile import profile

__version__ = "0.1.0"

__all__ = ["ops", "nn", "convert", "fuse", "profile", "cpu_isa", "cuda_built", "__version__"]
