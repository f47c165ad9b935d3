"""Replace the depthwise and pointwise nn.Conv2d layers of any model by
mobilenet_ext layers, and fuse each BatchNorm2d with the activation after it."""
from __future__ import annotations

import copy
import logging
from typing import Dict, Tuple, Union

from torch import nn

from .models._layers import SqueezeExcitation, se_op_args
from .nn import (ACTIVATION_MODULES, BatchNormAct2d, DepthwiseConv2d, PointwiseConv2d, SmallCinConv2d,
                 is_depthwise_conv, is_small_cin_conv,
                 is_pointwise_conv)

__all__ = ["convert"]

log = logging.getLogger("mobilenet_ext")


def _use_se_op(m: nn.Module) -> bool:
    """Make a squeeze-excitation module of a supported form run on the op;
    whether it was one."""
    if type(m) is SqueezeExcitation:
        if se_op_args(m) is None:
            return False
        m.use_op = True
        return True
    if type(m).__name__ == "SqueezeExcitation" and type(m).__module__ == "torchvision.ops.misc":
        from ._torchvision_fused import TorchvisionSqueezeExcitation

        if se_op_args(m) is None:
            return False
        m.__class__ = TorchvisionSqueezeExcitation
        return True
    return False


def convert(
    model: nn.Module, inplace: bool = False, verbose: bool = False, return_counts: bool = False,
    fuse_batchnorm: bool = True,
) -> Union[nn.Module, Tuple[nn.Module, Dict[str, int]]]:
    """Return ``model`` with every depthwise nn.Conv2d (groups == in_channels,
    out_channels a multiple of it, zero padding) replaced by
    :class:`~mobilenet_ext.nn.DepthwiseConv2d` and every pointwise one (1x1,
    stride 1, groups 1, no padding) by :class:`~mobilenet_ext.nn.PointwiseConv2d`;
    a dense nn.Conv2d with at most 4 input channels (the stem; see
    :func:`~mobilenet_ext.nn.is_small_cin_conv`) becomes a
    :class:`~mobilenet_ext.nn.SmallCinConv2d` (our forward kernel, PyTorch's
    backward).

    With ``fuse_batchnorm`` (the default), inside every nn.Sequential each
    nn.BatchNorm2d directly followed by an nn.ReLU, nn.ReLU6 or nn.Hardswish
    becomes a :class:`~mobilenet_ext.nn.BatchNormAct2d` with that activation
    (one fused op, training and eval) and the activation module becomes
    nn.Identity; every other nn.BatchNorm2d (e.g. after a projecting 1x1
    conv) becomes a BatchNormAct2d without an activation, which runs the same
    op (BatchNorm2d's exact semantics; PyTorch's own CPU BatchNorm was most of
    a MobileNetV3 training step's BatchNorm time). :func:`mobilenet_ext.fuse`
    folds a BatchNormAct2d like a BatchNorm2d.

    Each squeeze-excitation module with torchvision's form
    (``torchvision.ops.SqueezeExcitation`` or
    :class:`mobilenet_ext.models.SqueezeExcitation`: average pool, two 1x1
    convs, ReLU / ReLU6 / Hardswish, Hardsigmoid / Sigmoid gate) runs as one
    :func:`~mobilenet_ext.ops.squeeze_excitation` op on the CPU, forward and
    backward (torchvision's module gets a subclass with the same
    parameters; the tree is unchanged).

    Each new layer (and each nn.Identity put in an activation's place) has
    the training flag of the module it replaces.

    Weights are kept (the new layers hold the same parameters and buffers,
    so ``state_dict`` keys are unchanged); every other module is untouched.

    Args:
        model: any nn.Module.
        inplace: modify ``model`` itself instead of a deep copy.
        verbose: print how many layers of each kind were replaced (always
            logged at INFO level on the ``mobilenet_ext`` logger).
        return_counts: also return ``{"depthwise": n, "pointwise": m,
            "small_cin": s, "batchnorm_act": k, "batchnorm": b,
            "squeeze_excitation": j}`` (``small_cin``: dense convs with few
            input channels; ``batchnorm``: BatchNorm2d without an activation
            after it).
        fuse_batchnorm: BatchNorm2d (+ activation) on the fused op (see
            above); False leaves them as they are.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    counts = {"depthwise": 0, "pointwise": 0, "small_cin": 0, "batchnorm_act": 0, "batchnorm": 0,
              "squeeze_excitation": 0}

    def visit(parent: nn.Module) -> None:
        children = list(parent.named_children())
        absorbed = set()
        for i, (name, child) in enumerate(children):
            if name in absorbed:
                continue
            nxt = children[i + 1] if i + 1 < len(children) else None
            if fuse_batchnorm and type(child) is nn.BatchNorm2d:
                # the activation right after it in an nn.Sequential, if any
                act = (ACTIVATION_MODULES.get(type(nxt[1]))
                       if isinstance(parent, nn.Sequential) and nxt is not None else None)
                setattr(parent, name, BatchNormAct2d.from_bn(child, act))
                if act is not None:
                    setattr(parent, nxt[0], nn.Identity().train(nxt[1].training))
                    absorbed.add(nxt[0])
                counts["batchnorm_act" if act is not None else "batchnorm"] += 1
            elif type(child) is nn.Conv2d and is_pointwise_conv(child):
                setattr(parent, name, PointwiseConv2d.from_conv(child).train(child.training))
                counts["pointwise"] += 1
            elif type(child) is nn.Conv2d and is_depthwise_conv(child):
                setattr(parent, name, DepthwiseConv2d.from_conv(child).train(child.training))
                counts["depthwise"] += 1
            elif type(child) is nn.Conv2d and is_small_cin_conv(child):
                setattr(parent, name, SmallCinConv2d.from_conv(child).train(child.training))
                counts["small_cin"] += 1
            else:
                if _use_se_op(child):
                    counts["squeeze_excitation"] += 1
                visit(child)

    if type(model) is nn.Conv2d:
        raise TypeError("convert: pass a model containing convolutions; to convert a single "
                        "nn.Conv2d use DepthwiseConv2d.from_conv or PointwiseConv2d.from_conv")
    visit(model)
    msg = (f"mobilenet_ext.convert: replaced {counts['depthwise']} depthwise and {counts['pointwise']} pointwise "
           f"nn.Conv2d, {counts['small_cin']} few-input-channel nn.Conv2d (the stem), fused {counts['batchnorm_act']} BatchNorm2d + activation, "
           f"{counts['batchnorm']} BatchNorm2d alone on the same op, "
           f"{counts['squeeze_excitation']} squeeze-excitation on one op")
    log.info(msg)
    if verbose:
        print(msg)
    return (model, counts) if return_counts else model
