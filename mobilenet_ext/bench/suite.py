"""The suite: which layer and model cases a run times.

Layer suite
    Every distinct depthwise and pointwise layer shape of MobileNetV1 (224x224),
    V2, V3-Large and V3-Small (found by running the models of
    :mod:`mobilenet_ext.models` with forward hooks, deduplicated, each shape
    remembering which models use it) plus the 7x7 depthwise layers of
    ConvNeXt-T; batch 1 and 32 on CPU (1, 32, 256 on CUDA); NCHW and
    channels_last; forward, backward (input and weight gradients of a saved
    graph) and forward+backward.  ``--quick`` takes the ``QUICK_SHAPES``
    subset with five combinations each.

Model suite
    MobileNetV1/V2/V3-L/V3-S: inference at batch 1 and 32, NCHW and
    channels_last, and a training step at batch 32 (256 on CUDA).  The CPU
    inference rows also time the other runtimes of ``COMPETITORS`` on the
    nn.Conv2d model: ONNX Runtime, OpenVINO and torch.compile (inductor)
    (see :mod:`.model_run`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .common import DIRECTIONS, DTYPE_SHORT, LAYOUTS, MODEL_NAMES, MODEL_SHORT, Settings

#: The other runtimes a CPU inference row times on the nn.Conv2d model, in
#: rotation order: ONNX Runtime, OpenVINO (CPU plugin, f32) and
#: torch.compile (inductor, default mode). Each is optional: a runtime that
#: is missing or fails leaves its columns "n/a: <why>".
COMPETITORS = ("ort", "openvino", "inductor")

#: ConvNeXt-T stages: (channels, feature map) of its 7x7 depthwise convs (bias, padding 3).
CONVNEXT_T_DW = ((96, 56), (192, 28), (384, 14), (768, 7))
#: Shapes of the --quick subset (names as LayerShape.name gives them).
QUICK_SHAPES = (
    "dw3x3/s1 144x56x56", "dw3x3/s2 96x112x112", "dw5x5/s1 120x28x28", "dw7x7/s1 384x14x14",
    "pw 24->144 56x56", "pw 512->512 14x14", "pw 320->1280 7x7",
)


@dataclass(frozen=True)
class LayerShape:
    """One depthwise (``kind="dw"``) or pointwise (``"pw"``) layer at batch 1."""

    kind: str
    cin: int
    cout: int
    h: int
    w: int
    k: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    bias: bool = False

    @property
    def oh(self) -> int:
        return (self.h + 2 * self.padding - self.dilation * (self.k - 1) - 1) // self.stride + 1

    @property
    def ow(self) -> int:
        return (self.w + 2 * self.padding - self.dilation * (self.k - 1) - 1) // self.stride + 1

    @property
    def group(self) -> str:
        """Op family for the geomean groups: ``dw``, ``pw`` or ``pw-se`` (the
        1x1 convs of squeeze-excitation on 1x1 maps: GEMVs, a separate regime)."""
        if self.kind == "pw" and self.h == 1 and self.w == 1:
            return "pw-se"
        return self.kind

    @property
    def name(self) -> str:
        if self.kind == "dw":
            s = f"dw{self.k}x{self.k}/s{self.stride} {self.cin}x{self.h}x{self.w}"
            if self.cout != self.cin:
                s += f" m{self.cout // self.cin}"
            if self.dilation != 1:
                s += f" d{self.dilation}"
            return s
        return f"pw {self.cin}->{self.cout} {self.h}x{self.w}"

    def macs(self, batch: int) -> int:
        """Multiply-adds of one forward at ``batch``."""
        if self.kind == "dw":
            return batch * self.cout * self.oh * self.ow * self.k * self.k
        return batch * self.h * self.w * self.cin * self.cout

    def numels(self, batch: int) -> Dict[str, int]:
        """Elements of input, output, weight and bias."""
        w = self.cout * self.k * self.k if self.kind == "dw" else self.cout * self.cin
        return {"x": batch * self.cin * self.h * self.w, "y": batch * self.cout * self.oh * self.ow,
                "w": w, "b": self.cout if self.bias else 0}


def _shape_of_module(m: torch.nn.Module, in_shape: Sequence[int]) -> Optional[LayerShape]:
    """The LayerShape of one of our depthwise / pointwise modules given its input shape (None for others)."""
    from ..nn import DepthwiseConv2d, PointwiseConv2d

    _, c, h, w = in_shape
    bias = getattr(m, "bias", None) is not None
    if isinstance(m, DepthwiseConv2d):
        kh, kw = m.kernel_size
        if kh != kw or m.stride[0] != m.stride[1] or m.padding[0] != m.padding[1] or m.dilation[0] != m.dilation[1]:
            raise ValueError(f"benchmark: non-square depthwise layer {m} is not supported")
        return LayerShape("dw", c, m.out_channels, h, w, kh, m.stride[0], m.padding[0], m.dilation[0], bias)
    if isinstance(m, PointwiseConv2d):
        return LayerShape("pw", c, m.out_channels, h, w, bias=bias)
    return None


def model_layer_shapes(name: str, resolution: int = 224) -> List[LayerShape]:
    """The depthwise and pointwise layers of ``mobilenet_ext.models.<name>``
    (backend="ext") at ``resolution``, in execution order, found with
    forward hooks on one batch-1 forward pass."""
    from .. import models
    from ..nn import DepthwiseConv2d, PointwiseConv2d

    model = getattr(models, name)(backend="ext").eval()
    for m in model.modules():
        if isinstance(m, models.SqueezeExcitation):
            m.use_op = False  # call fc1 / fc2 as modules (the fused model's SE does), so the hooks see them
    found: List[LayerShape] = []

    def hook(mod: torch.nn.Module, inputs: Tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        s = _shape_of_module(mod, inputs[0].shape)
        if s is not None:
            found.append(s)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (DepthwiseConv2d, PointwiseConv2d))]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, resolution, resolution))
    finally:
        for h in handles:
            h.remove()
    return found


@functools.lru_cache(maxsize=None)
def _layer_shapes_cached() -> Tuple[Tuple[LayerShape, Tuple[str, ...]], ...]:
    """:func:`_layer_shapes` once per process (it runs four models)."""
    return tuple((s, tuple(u)) for s, u in _layer_shapes())


def layer_shapes() -> List[Tuple[LayerShape, List[str]]]:
    """Every distinct layer shape of the suite with the models using it
    (``"V2 x3"`` = three layers of MobileNetV2), depthwise first, then by size."""
    return [(s, list(u)) for s, u in _layer_shapes_cached()]


def _layer_shapes() -> List[Tuple[LayerShape, List[str]]]:
    """Every distinct layer shape of the suite with the models using it
    (``"V2 x3"`` = three layers of MobileNetV2), depthwise first, then by size."""
    users: Dict[LayerShape, Dict[str, int]] = {}
    for name in MODEL_NAMES:
        for s in model_layer_shapes(name):
            users.setdefault(s, {}).setdefault(MODEL_SHORT[name], 0)
            users[s][MODEL_SHORT[name]] += 1
    for c, hw in CONVNEXT_T_DW:
        s = LayerShape("dw", c, c, hw, hw, 7, 1, 3, 1, True)
        users.setdefault(s, {})["ConvNeXt-T"] = 3 if c != 384 else 9  # blocks per stage: 3, 3, 9, 3
    out = []
    for s, u in users.items():
        out.append((s, [m if n == 1 else f"{m} x{n}" for m, n in u.items()]))
    order = {"dw": 0, "pw": 1, "pw-se": 2}
    out.sort(key=lambda t: (order[t[0].group], t[0].k, t[0].stride, -t[0].h, t[0].cin, t[0].cout, t[0].bias))
    return out


@dataclass
class LayerCase:
    """One layer row: a shape at a batch, layout (``nchw`` / ``cl``), direction and dtype."""

    shape: LayerShape
    models: List[str]
    batch: int
    layout: str
    direction: str
    dtype: torch.dtype

    @property
    def id(self) -> str:
        """The case id (what ``--filter`` matches), e.g. ``dw3x3/s2 96x112x112 b32 cl fwdbwd f32``."""
        return f"{self.shape.name} b{self.batch} {self.layout} {self.direction} {DTYPE_SHORT[self.dtype]}"

    @property
    def group(self) -> str:
        """The geomean group: op x layout x batch x direction x dtype."""
        return f"{self.shape.group} {self.layout} b{self.batch} {self.direction} {DTYPE_SHORT[self.dtype]}"

    def flops(self) -> int:
        """FLOPs (2 per multiply-add; backward = 2 forwards, fwd+bwd = 3)."""
        return 2 * self.shape.macs(self.batch) * {"fwd": 1, "bwd": 2, "fwdbwd": 3}[self.direction]

    def bytes(self) -> int:
        """Compulsory bytes: forward reads x, w (b) and writes y; backward
        reads dy, x, w and writes dx, dw; forward+backward is both."""
        n = self.shape.numels(self.batch)
        fwd = n["x"] + n["y"] + n["w"] + n["b"]
        bwd = n["y"] + 2 * n["x"] + 2 * n["w"]
        elems = {"fwd": fwd, "bwd": bwd, "fwdbwd": fwd + bwd}[self.direction]
        return elems * torch.tensor([], dtype=self.dtype).element_size()


@dataclass
class ModelCase:
    """One model row: inference or a training step of a MobileNet,
    optionally next to other runtimes (``competitors``, names of
    ``COMPETITORS``)."""

    model: str
    mode: str       # "infer" | "train"
    batch: int
    layout: str
    dtype: torch.dtype
    competitors: Tuple[str, ...] = ()

    @property
    def with_ort(self) -> bool:
        """Whether ONNX Runtime is timed in this row."""
        return "ort" in self.competitors

    @property
    def id(self) -> str:
        """The case id, e.g. ``model mobilenet_v2 infer b1 nchw f32``."""
        return f"model {self.model} {self.mode} b{self.batch} {self.layout} {DTYPE_SHORT[self.dtype]}"

    @property
    def group(self) -> str:
        """The geomean group: mode x layout x batch x dtype."""
        return f"model {self.mode} {self.layout} b{self.batch} {DTYPE_SHORT[self.dtype]}"


def layer_cases(settings: Settings) -> List[LayerCase]:
    """All layer cases of the run (before --filter)."""
    gpu = settings.device == "cuda"
    batches = (1, 32, 256) if gpu else (1, 32)
    cases: List[LayerCase] = []
    shapes = layer_shapes()
    if settings.quick:
        by_name = {s.name: (s, u) for s, u in shapes}
        missing = [n for n in QUICK_SHAPES if n not in by_name]
        if missing:
            raise RuntimeError(f"benchmark: quick shapes not found in the models: {missing}")
        for name in QUICK_SHAPES:
            s, u = by_name[name]
            combos = [(1, "nchw", "fwd"), (1, "cl", "fwd"), (1, "nchw", "fwdbwd"), (1, "cl", "bwd"),
                      (32 if not gpu else 256, "nchw", "fwd")]
            for b, lay, d in combos:
                cases.append(LayerCase(s, u, b, lay, d, settings.dtypes[0]))
        return cases
    for dtype in settings.dtypes:
        for s, u in shapes:
            for b in batches:
                for lay in LAYOUTS:
                    for d in DIRECTIONS:
                        cases.append(LayerCase(s, u, b, lay, d, dtype))
    return cases


def model_cases(settings: Settings, with_ort: bool) -> List[ModelCase]:
    """All model cases of the run (before --filter). ``with_ort``: time the
    other runtimes (``COMPETITORS``) in the CPU inference rows: all three at
    batch 1 and 32, NCHW and channels_last (``--quick``: ONNX Runtime and
    OpenVINO, no torch.compile, whose compilation alone takes longer than
    the rest of a quick run)."""
    gpu = settings.device == "cuda"
    dtype = settings.dtypes[0]
    comp = COMPETITORS if with_ort and not gpu else ()
    if settings.quick:
        return [ModelCase("mobilenet_v2", "infer", 1, "nchw", dtype, tuple(c for c in comp if c != "inductor")),
                ModelCase("mobilenet_v2", "train", 4 if not gpu else 64, "nchw", dtype)]
    cases: List[ModelCase] = []
    for m in MODEL_NAMES:
        for b in (1, 32):
            for lay in LAYOUTS:
                cases.append(ModelCase(m, "infer", b, lay, dtype, comp))
        for lay in LAYOUTS:
            cases.append(ModelCase(m, "train", 256 if gpu else 32, lay, dtype))
    return cases
