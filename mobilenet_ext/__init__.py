"""mobilenet_ext: fast depthwise and pointwise (1x1) convolutions for PyTorch.

    import mobilenet_ext as mx
    y = mx.ops.depthwise_conv2d(x, w, b, stride=1, padding=1)
    model = mx.convert(torchvision.models.mobilenet_v2())
    fast = mx.fuse(model.eval())
    mx.models.mobilenet_v2(), mx.profile(model, (1, 3, 224, 224))

Submodules: ``ops`` (functional API), ``nn`` (layers), ``models``, ``flops``
(``profile`` and the ``flops`` command); ``check``, ``benchmark``, ``train``
and ``export`` (the other commands of ``python -m mobilenet_ext``) are
imported on use. ``convert``, ``fuse`` and ``profile`` are functions; their
implementations live in private modules so that no function hides a module
of the same name.
"""
from ._native import cpu_cache_stats, cpu_isa, cuda_built, empty_cpu_cache, set_cpu_cache_limit
from . import ops
from . import nn
from . import models
from . import flops
from ._convert import convert
from ._fuse import fold_batchnorm, fuse
from ._plan import clear_plans
from .flops import profile

__version__ = "0.1.0"

__all__ = ["ops", "nn", "models", "flops", "convert", "fuse", "fold_batchnorm", "clear_plans", "profile", "cpu_isa", "cuda_built",
           "cpu_cache_stats", "empty_cpu_cache", "set_cpu_cache_limit", "__version__"]
