"""Inference fusion: fold BatchNorm into the preceding mobilenet_ext conv and
move the following activation into the kernel's epilogue."""
from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn

from .models._layers import SqueezeExcitation
from .nn import (_ACT_MODULE_OF, BatchNormAct2d, DepthwiseConv2d, GlobalAvgPool2d, PackedLinear, PointwiseConv2d,
                 SmallCinConv2d, is_small_cin_conv)

__all__ = ["fuse", "fold_batchnorm"]

_ACT_MODULES = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hardswish"}


def _act_name(m: nn.Module) -> Optional[str]:
    return _ACT_MODULES.get(type(m))


@torch.no_grad()
def fold_batchnorm(conv: nn.Module, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode BatchNorm2d (or the BatchNorm of a BatchNormAct2d,
    whose activation is not moved) into ``conv`` (DepthwiseConv2d,
    PointwiseConv2d or a plain nn.Conv2d) in place: ``w' = w * g / sqrt(v + eps)``,
    ``b' = (b - mean) * g / sqrt(v + eps) + beta``."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("fold_batchnorm: bn must track running statistics")
    if bn.num_features != conv.out_channels:
        raise ValueError(f"fold_batchnorm: bn has {bn.num_features} features, conv has {conv.out_channels} outputs")
    w = conv.weight
    scale = torch.rsqrt(bn.running_var.to(torch.float64) + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.to(torch.float64)
    bias = conv.bias.to(torch.float64) if conv.bias is not None else torch.zeros_like(scale)
    new_bias = (bias - bn.running_mean.to(torch.float64)) * scale
    if bn.bias is not None:
        new_bias = new_bias + bn.bias.to(torch.float64)
    conv.weight = nn.Parameter((w.to(torch.float64) * scale.view(-1, 1, 1, 1)).to(w.dtype))
    conv.bias = nn.Parameter(new_bias.to(w.dtype))


def _eval(m: nn.Module) -> nn.Module:
    """A module fuse() puts into the (eval-mode) model, in eval mode too."""
    return m.train(False)


def fuse(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Return an inference copy of ``model`` (which must be in eval mode)
    where, inside every nn.Sequential, each mobilenet_ext conv followed by a
    BatchNorm2d has the BatchNorm folded into its weight and bias, and a
    ReLU / ReLU6 / Hardswish right after it moved into the conv's kernel.
    A plain nn.Conv2d followed by a BatchNorm2d (e.g. the stem) gets the
    BatchNorm folded too. With at most 4 input channels (groups 1, dilation
    1, zero padding) it becomes a :class:`mobilenet_ext.nn.SmallCinConv2d`
    (same parameters) that also applies the activation after the BatchNorm;
    otherwise it stays nn.Conv2d and its activation a separate (in-place)
    module.
    The folded BatchNorm and the moved activation become nn.Identity.

    Run :func:`mobilenet_ext.convert` first so the convolutions are ours.
    The fused model gives the same outputs (to float32 rounding). Its
    parameters are set to ``requires_grad=False`` (with ``inplace=True``,
    those of ``model`` itself): it is for inference, and so it runs the fused
    kernels whether or not the caller is in ``torch.no_grad()``.

    An nn.Linear inside an nn.Sequential (the classifier) becomes a
    :class:`mobilenet_ext.nn.PackedLinear` (same parameters) that takes the
    ReLU / ReLU6 / Hardswish right after it into its kernel and runs our
    GEMM on a packed weight.

    Its PointwiseConv2d layers get ``pack_weight = True``: on the CPU they
    pack their weight for the GEMM kernel once, on first use, instead of on
    every call (see :class:`mobilenet_ext.nn.PointwiseConv2d`).

    Afterwards every submodule with a ``fuse_residual()`` method (the
    inverted-residual blocks of :mod:`mobilenet_ext.models`) is asked to
    pass its shortcut into the projecting PointwiseConv2d, whose GEMM
    epilogue then does the residual add; a block only does so when its
    projection BatchNorm has been folded. torchvision's mobilenet_v2 /
    mobilenet_v3 blocks get the same (their class becomes one of
    :mod:`mobilenet_ext._torchvision_fused`; state_dict keys unchanged), and
    squeeze-excitation inside a block scales the depthwise output in place
    instead of allocating a new tensor. Each ``nn.AdaptiveAvgPool2d(1)``
    becomes a :class:`mobilenet_ext.nn.GlobalAvgPool2d` (our channel-means
    kernel on the CPU), and torchvision's mobilenet_v2, which pools in its
    forward, its subclass with that pool.

    Last, the outermost nn.Sequential containers (torchvision's
    ``features`` and ``classifier``) become
    :class:`mobilenet_ext._plan.PlannedSequential`: from the second call
    with an input of the same shape, dtype and layout they replay the op
    calls recorded then, without the Python of the module tree (batch 1, 2
    threads: 1.07-1.23x the module tree's speed), bitwise the same result.
    Replaced modules or parameters, in-place weight updates, hooks, autograd
    recording and tracing are detected (the modules run, and record again);
    after changing a submodule's plain attributes call
    :func:`mobilenet_ext.clear_plans`.
    """
    if model.training:
        raise ValueError("fuse: model must be in eval mode (call model.eval() first); "
                         "folding BatchNorm into a conv is only valid for inference")
    if not inplace:
        model = copy.deepcopy(model)
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = [n for n, _ in seq.named_children()]
        i = 0
        while i < len(names):
            conv = seq._modules[names[i]]
            if (
                isinstance(conv, (DepthwiseConv2d, PointwiseConv2d))
                and conv.activation is None
                and i + 1 < len(names)
                and type(seq._modules[names[i + 1]]) in (nn.BatchNorm2d, BatchNormAct2d)
            ):
                bn = seq._modules[names[i + 1]]
                fold_batchnorm(conv, bn)
                seq._modules[names[i + 1]] = _eval(nn.Identity())
                if type(bn) is BatchNormAct2d:
                    # convert() fused the activation into the BatchNorm (its
                    # module after it is an nn.Identity): into the kernel now
                    conv.activation = bn.activation
                    i += 2
                    continue
                if i + 2 < len(names):
                    act = _act_name(seq._modules[names[i + 2]])
                    if act is not None:
                        conv.activation = act
                        seq._modules[names[i + 2]] = _eval(nn.Identity())
                        i += 1
                i += 2
            elif type(conv) is nn.Linear:
                # a classifier layer: our GEMM on a packed weight, with the
                # activation right after it in its epilogue
                act = _act_name(seq._modules[names[i + 1]]) if i + 1 < len(names) else None
                seq._modules[names[i]] = _eval(PackedLinear.from_linear(conv, act))
                if act is not None:
                    seq._modules[names[i + 1]] = _eval(nn.Identity())
                i += 2 if act is not None else 1
            elif (
                (type(conv) is nn.Conv2d or (type(conv) is SmallCinConv2d and conv.activation is None))
                and i + 1 < len(names)
                and type(seq._modules[names[i + 1]]) in (nn.BatchNorm2d, BatchNormAct2d)
            ):
                # a dense conv (e.g. the 3x3 stem): its BatchNorm is folded
                # into its weight and bias; with few input channels it
                # becomes a SmallCinConv2d that applies the activation too
                # (the activation of a BatchNormAct2d or the module after
                # the BatchNorm); otherwise it stays nn.Conv2d with the
                # activation as its own module, made in place (its fresh
                # output feeds only the activation: out of place, a batch-32
                # stem allocated and faulted in another 51 MB)
                bn = seq._modules[names[i + 1]]
                fold_batchnorm(conv, bn)
                act = getattr(bn, "activation", None) if type(bn) is BatchNormAct2d else None
                act_after = i + 2 < len(names) and act is None and _act_name(seq._modules[names[i + 2]]) is not None
                if is_small_cin_conv(conv):
                    if act_after:
                        act = _act_name(seq._modules[names[i + 2]])
                        seq._modules[names[i + 2]] = _eval(nn.Identity())
                    seq._modules[names[i]] = _eval(SmallCinConv2d.from_conv(conv, act))
                    seq._modules[names[i + 1]] = _eval(nn.Identity())
                else:
                    seq._modules[names[i + 1]] = _eval(_ACT_MODULE_OF[act](inplace=True) if act is not None
                                                       else nn.Identity())
                i += 2
            else:
                i += 1
    for m in list(model.modules()):
        # nn.AdaptiveAvgPool2d(1): on our channel-means kernel (GlobalAvgPool2d)
        for name, child in m._modules.items():
            if type(child) is nn.AdaptiveAvgPool2d and child.output_size in (1, (1, 1)):
                m._modules[name] = _eval(GlobalAvgPool2d())
    for m in model.modules():
        fuse_residual = getattr(m, "fuse_residual", None)
        if callable(fuse_residual):
            fuse_residual()
        if isinstance(m, SqueezeExcitation):
            m.inplace_scale = True  # inside a block: its input is the depthwise output alone
    if any(type(m).__module__.startswith("torchvision.models.mobilenetv") for m in model.modules()):
        from ._torchvision_fused import fuse_torchvision_blocks

        fuse_torchvision_blocks(model)
    # An inference model: its parameters need no gradient (the fused ops have
    # no backward). Without this a plain ``fast(x)`` in grad mode would see
    # parameters requiring grad and take the unfused ops plus a separate
    # activation, through the Python autograd kernel.
    for p in model.parameters():
        p.requires_grad_(False)
    for m in model.modules():
        if isinstance(m, PointwiseConv2d):
            m.pack_weight = True
    _plan_sequentials(model)
    return model


def _plan_sequentials(model: nn.Module) -> None:
    """Give the outermost nn.Sequential containers of ``model`` the class
    :class:`mobilenet_ext._plan.PlannedSequential` (op-call replay)."""
    from ._plan import PlannedSequential

    def visit(m: nn.Module) -> None:
        if type(m) is nn.Sequential:
            m.__class__ = PlannedSequential
            return
        for c in m.children():
            visit(c)

    visit(model)
