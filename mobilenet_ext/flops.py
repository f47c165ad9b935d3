"""MACs / parameter profiler and ``python -m mobilenet_ext flops``.

``profile(model, input_size)`` runs one forward pass with hooks on every
nn.Conv2d (grouped included), nn.Linear, DepthwiseConv2d and PointwiseConv2d
and counts multiply-accumulates the way the MobileNet papers count
mult-adds: convolutions and fully connected layers only (no BatchNorm,
activations, pooling, SE multiplications or residual adds), for the whole
input batch.  Parameters are all the model's parameters (BatchNorm
included) unless stated; ``layer_params`` counts only the profiled layers.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from . import ops
from .nn import DepthwiseConv2d, PointwiseConv2d

__all__ = ["profile", "ProfileResult", "LayerStat", "layer_macs", "add_arguments", "main"]

_COUNTED = (nn.Conv2d, nn.Linear, DepthwiseConv2d, PointwiseConv2d)


@dataclass
class LayerStat:
    name: str
    type: str
    kind: str  # "conv1x1", "depthwise", "conv" (other / grouped), "linear"
    output_shape: Tuple[int, ...]
    macs: int
    params: int
    share: float = 0.0  # of total MACs


@dataclass
class ProfileResult:
    input_size: Tuple[int, ...]
    macs: int
    params: int
    layer_params: int
    layers: List[LayerStat] = field(default_factory=list)

    def macs_by_kind(self) -> dict:
        out: dict = {}
        for layer in self.layers:
            out[layer.kind] = out.get(layer.kind, 0) + layer.macs
        return out

    def share(self, kind: str) -> float:
        """Fraction of total MACs spent in layers of ``kind``."""
        return self.macs_by_kind().get(kind, 0) / self.macs if self.macs else 0.0

    def table(self) -> str:
        w = max([len("layer")] + [len(l.name) for l in self.layers])
        tw = max([len("type")] + [len(l.type) for l in self.layers])
        head = f"{'layer':<{w}}  {'type':<{tw}}  {'output shape':<20} {'MACs':>13} {'params':>11} {'share':>7}"
        lines = [head, "-" * len(head)]
        for l in self.layers:
            shape = "x".join(str(s) for s in l.output_shape)
            lines.append(f"{l.name:<{w}}  {l.type:<{tw}}  {shape:<20} {l.macs:>13,} {l.params:>11,} {100 * l.share:>6.2f}%")
        lines.append("-" * len(head))
        lines.append(f"{'total':<{w}}  {'':<{tw}}  {'':<20} {self.macs:>13,} {self.layer_params:>11,} {100.0:>6.2f}%")
        lines.append(f"all parameters (BatchNorm included): {self.params:,}")
        return "\n".join(lines)

    def summary(self) -> str:
        return (f"input {tuple(self.input_size)}: {self.macs / 1e6:.1f}M MACs, "
                f"{self.params / 1e6:.3f}M params ({len(self.layers)} layers)")

    def __str__(self) -> str:
        return self.summary() + "\n" + self.table()


def layer_macs(module: nn.Module, input_shape: Sequence[int], output_shape: Sequence[int]) -> Tuple[int, str]:
    """(MACs, kind) of one forward of a counted layer."""
    if isinstance(module, DepthwiseConv2d):
        return ops.depthwise_macs(input_shape, module.weight.shape, output_shape), "depthwise"
    if isinstance(module, PointwiseConv2d):
        return ops.pointwise_macs(input_shape, module.weight.shape), "conv1x1"
    if isinstance(module, nn.Conv2d):
        n, co, oh, ow = output_shape
        ci_g, kh, kw = module.weight.shape[1:]
        macs = int(n * co * oh * ow * ci_g * kh * kw)
        if module.groups == 1 and kh == kw == 1:
            kind = "conv1x1"
        elif module.groups > 1 and module.groups == module.in_channels and ci_g == 1:
            kind = "depthwise"
        else:
            kind = "conv"
        return macs, kind
    if isinstance(module, nn.Linear):
        out_numel = 1
        for s in output_shape:
            out_numel *= int(s)
        return int(out_numel * module.in_features), "linear"
    raise TypeError(f"not a counted layer: {type(module).__name__}")


@torch.no_grad()
def profile(model: nn.Module, input_size: Sequence[int] = (1, 3, 224, 224),
            input: Optional[torch.Tensor] = None) -> ProfileResult:
    """Count MACs and parameters of ``model`` for one forward of ``input``
    (default: zeros of ``input_size`` on the model's device and dtype).
    The model's train/eval mode is kept; it is run in eval mode so that
    BatchNorm statistics are not updated."""
    if input is None:
        p = next(iter(model.parameters()), None)
        input = torch.zeros(tuple(input_size), device=p.device if p is not None else "cpu",
                            dtype=p.dtype if p is not None else torch.float32)
    records: List[LayerStat] = []
    handles = []

    def hook(name):
        def fn(mod, args, out):
            macs, kind = layer_macs(mod, args[0].shape, out.shape)
            params = sum(q.numel() for q in mod.parameters(recurse=False))
            records.append(LayerStat(name, type(mod).__name__, kind, tuple(out.shape), macs, params))
        return fn

    se_op = []  # squeeze-excitation on one op: run its 1x1 layers as modules, so the hooks count them
    for name, mod in model.named_modules():
        if isinstance(mod, _COUNTED):
            handles.append(mod.register_forward_hook(hook(name)))
        if getattr(mod, "use_op", False) is True and hasattr(mod, "fc1"):
            se_op.append(mod)
    was_training = model.training
    model.eval()
    try:
        for mod in se_op:
            mod.use_op = False
        model(input)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
        for mod in se_op:
            mod.use_op = True
    total = sum(r.macs for r in records)
    for r in records:
        r.share = r.macs / total if total else 0.0
    seen = {}
    for r in records:  # a module called twice counts its MACs twice, its params once
        seen[r.name] = r.params
    return ProfileResult(tuple(input.shape), total, sum(q.numel() for q in model.parameters()),
                         sum(seen.values()), records)


# --------------------------------------------------------------------------- CLI

# MobileNetV1 paper (Howard et al. 2017): Table 6 (width at 224) and Table 7
# (resolution at width 1.0); their shared 1.0-224 row is listed once.
# (width, resolution, million mult-adds, million params)
V1_PAPER = [
    (1.0, 224, 569, 4.2), (0.75, 224, 325, 2.6), (0.5, 224, 149, 1.3), (0.25, 224, 41, 0.5),
    (1.0, 192, 418, 4.2), (1.0, 160, 290, 4.2), (1.0, 128, 186, 4.2),
]
V1_PAPER_1X1_SHARE = 0.9486  # Table 2: 1x1 conv share of mult-adds
# Published totals at 224x224, width 1.0 (million MACs, million params):
# MobileNetV2 paper (Sandler et al. 2018, Table 4): 300M, 3.4M;
# MobileNetV3 paper (Howard et al. 2019, Table 3): Large 219M, 5.4M; Small 56M, 2.5M.
PUBLISHED = {
    "mobilenet_v2": (300, 3.4),
    "mobilenet_v3_large": (219, 5.4),
    "mobilenet_v3_small": (56, 2.5),
}
MODELS = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")


def _pct(ours: float, ref: float) -> str:
    return f"{100 * (ours - ref) / ref:+.1f}%"


def _torchvision_meta() -> dict:
    """{name: (GMACs, params)} from torchvision's ImageNet weight metadata
    (its ``_ops`` field counts multiply-adds), or {} without torchvision."""
    try:
        from torchvision import models as tvm
        weights = {"mobilenet_v2": tvm.MobileNet_V2_Weights.IMAGENET1K_V1,
                   "mobilenet_v3_large": tvm.MobileNet_V3_Large_Weights.IMAGENET1K_V1,
                   "mobilenet_v3_small": tvm.MobileNet_V3_Small_Weights.IMAGENET1K_V1}
        return {k: (w.meta.get("_ops"), w.meta.get("num_params")) for k, w in weights.items()}
    except Exception:  # torchvision missing or its metadata changed
        return {}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=MODELS + ("all",), default="all",
                        help="profile one model (default: the paper comparison tables for all)")
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier (with --model)")
    parser.add_argument("--resolution", type=int, default=224, help="input height/width (with --model)")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--backend", choices=("ext", "torch"), default="ext")
    parser.add_argument("--layers", action="store_true", help="print the per-layer table (of MobileNetV1 1.0-224 without --model)")


def _build(name: str, width: float, num_classes: int, backend: str) -> nn.Module:
    from . import models
    return getattr(models, name)(width_mult=width, num_classes=num_classes, backend=backend)


def main(args: argparse.Namespace) -> int:
    if args.model != "all":
        m = _build(args.model, args.width, args.num_classes, args.backend)
        r = profile(m, (1, 3, args.resolution, args.resolution))
        print(f"{args.model} width {args.width} at {args.resolution}x{args.resolution} ({args.backend} backend)")
        print(r.table() if args.layers else r.summary())
        print(f"MACs in 1x1 convs: {100 * r.share('conv1x1'):.2f}%, depthwise: {100 * r.share('depthwise'):.2f}%, "
              f"other convs: {100 * r.share('conv'):.2f}%, fully connected: {100 * r.share('linear'):.2f}%")
        return 0

    print("MobileNetV1 (Howard et al. 2017, Tables 6 and 7); MACs = mult-adds of convs + FC, "
          "params = conv + FC weights (BatchNorm excluded; 'with BN' adds it)")
    hdr = f"{'width':>5} {'res':>4} | {'MACs (M)':>9} {'paper':>6} {'diff':>7} | {'params (M)':>10} {'paper':>6} {'diff':>7} | {'with BN':>8}"
    print(hdr)
    print("-" * len(hdr))
    base = None
    for width, res, p_macs, p_params in V1_PAPER:
        r = profile(_build("mobilenet_v1", width, args.num_classes, args.backend), (1, 3, res, res))
        if width == 1.0 and res == 224:
            base = r
        print(f"{width:>5} {res:>4} | {r.macs / 1e6:>9.1f} {p_macs:>6} {_pct(r.macs / 1e6, p_macs):>7} | "
              f"{r.layer_params / 1e6:>10.3f} {p_params:>6} {_pct(r.layer_params / 1e6, p_params):>7} | "
              f"{r.params / 1e6:>8.3f}")
    print("(the paper prints params to 0.1M; every row rounds to the paper's value, so the params 'diff' "
          "of the small models is mostly the paper's rounding)")
    print(f"MobileNetV1 1.0-224 MACs in 1x1 convs: {100 * base.share('conv1x1'):.2f}% (paper Table 2: "
          f"{100 * V1_PAPER_1X1_SHARE:.2f}%); depthwise {100 * base.share('depthwise'):.2f}% (paper 3.06%), "
          f"3x3 stem {100 * base.share('conv'):.2f}% (paper prints 1.19%, evidently 1.91% transposed: "
          f"its four rows then sum to 100.01%), FC {100 * base.share('linear'):.2f}% (paper 0.18%)")
    print()
    print("V2 / V3 at 224x224, width 1.0; params = all parameters (as torchvision and the papers count); "
          "torchvision = its weights' metadata (_ops in G, num_params)")
    hdr = (f"{'model':<20} | {'MACs (M)':>9} {'paper':>6} {'diff':>7} {'tv':>6} | "
           f"{'params (M)':>10} {'paper':>6} {'diff':>7} {'tv':>6} | 1x1 share")
    print(hdr)
    print("-" * len(hdr))
    tv = _torchvision_meta()
    for name, (p_macs, p_params) in PUBLISHED.items():
        r = profile(_build(name, 1.0, args.num_classes, args.backend), (1, 3, 224, 224))
        t_ops, t_params = tv.get(name, (None, None))
        t_ops = f"{1000 * t_ops:.0f}" if t_ops is not None else "-"
        t_params = f"{t_params / 1e6:.3f}" if t_params is not None else "-"
        print(f"{name:<20} | {r.macs / 1e6:>9.1f} {p_macs:>6} {_pct(r.macs / 1e6, p_macs):>7} {t_ops:>6} | "
              f"{r.params / 1e6:>10.3f} {p_params:>6} {_pct(r.params / 1e6, p_params):>7} {t_params:>6} | "
              f"{100 * r.share('conv1x1'):.1f}%")
    print("(paper: V2 Sandler et al. 2018 Table 4; V3 Howard et al. 2019 Table 3.  The papers' params are "
          "rounded to 0.1M; torchvision's V2 has 3.50M, above the paper's 3.4M.)")
    if args.layers:
        print()
        print("MobileNetV1 1.0-224 per layer")
        print(base.table())
    return 0
