"""``python -m mobilenet_ext export``: ONNX and torch.export of a MobileNet
built on our ops, each checked numerically against the PyTorch model.

* ONNX: ``torch.onnx.export(dynamo=True)`` with a custom translation table
  (:func:`onnx_translation_table`) that writes every ``mobilenet_ext`` op as
  standard ONNX: ``Conv`` (``group`` = input channels for depthwise), and
  for the fused inference ops the epilogue as ``Relu`` / ``Clip(0, 6)`` /
  ``HardSwish`` and ``Add`` (residual).  The file needs no custom operator
  library: ONNX Runtime (CPUExecutionProvider) runs it and its output is
  compared with the PyTorch model's.
* torch.export: ``torch.export.export`` of the same model (our ops stay as
  ``torch.ops.mobilenet_ext.*`` nodes, so loading the ``.pt2`` needs
  ``import mobilenet_ext``), saved, loaded back and run: outputs must equal
  the eager model's.

The batch dimension is dynamic in both (``--static-batch`` fixes it), and
the checks run two batch sizes.
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from . import ops as _ops_module  # noqa: F401  (registers our ops and their fake kernels)

__all__ = [
    "ExportError", "onnx_translation_table", "export_onnx", "run_onnx", "export_program",
    "load_program", "ExportReport", "export_model", "add_arguments", "main",
]

MODELS = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")
_ONNX_ACTIVATION_MIN_OPSET = 14  # HardSwish


class ExportError(RuntimeError):
    """Export or numerical check failed, or a needed package is missing; the
    CLI prints it as one line."""


def _require(module: str, what: str):
    try:
        return __import__(module)
    except ImportError as e:
        raise ExportError(f"{what} needs the '{module}' package (pip install {module}); import failed: {e}") from None


# --------------------------------------------------------------------------
# ONNX translation of our ops
# --------------------------------------------------------------------------
def onnx_translation_table(opset: int = 18) -> Dict[Callable, Callable]:
    """``{torch.ops.mobilenet_ext.<op>.default: onnxscript function}`` for
    ``torch.onnx.export(..., dynamo=True, custom_translation_table=...)``:
    every op becomes a standard ``Conv`` (plus ``Relu`` / ``Clip`` /
    ``HardSwish`` / ``Add`` for the fused epilogues) of the given opset."""
    if not isinstance(opset, int) or opset < _ONNX_ACTIVATION_MIN_OPSET:
        raise ExportError(f"--opset must be an int >= {_ONNX_ACTIVATION_MIN_OPSET} (HardSwish), got {opset!r}")
    onnxscript = _require("onnxscript", "ONNX export")
    try:
        op = getattr(onnxscript, f"opset{opset}")
    except AttributeError:
        raise ExportError(f"--opset {opset} is not available in the installed onnxscript") from None

    def conv(x, weight, bias, group: int, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
        kh, kw = int(weight.shape[2]), int(weight.shape[3])
        args = [x, weight] if bias is None else [x, weight, bias]
        return op.Conv(*args, group=group, kernel_shape=[kh, kw], strides=[int(s) for s in stride],
                       pads=[int(padding[0]), int(padding[1]), int(padding[0]), int(padding[1])],
                       dilations=[int(d) for d in dilation])

    def act(y, code: int):
        code = int(code)
        if code == 0:
            return y
        if code == 1:
            return op.Relu(y)
        if code == 2:
            lo = op.CastLike(op.Constant(value_float=0.0), y)
            hi = op.CastLike(op.Constant(value_float=6.0), y)
            return op.Clip(y, lo, hi)
        if code == 3:
            return op.HardSwish(y)
        raise ExportError(f"unknown fused activation code {code} (expected 0..3)")

    def channels(x) -> int:
        c = x.shape[1]
        if not isinstance(c, int):
            raise ExportError(f"depthwise conv: the input's channel dimension must be static for ONNX Conv's "
                              f"group attribute, got {c!r}")
        return c

    def depthwise(input, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
        return conv(input, weight, bias, channels(input), stride, padding, dilation)

    def depthwise_fused(input, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), activation=0):
        return act(conv(input, weight, bias, channels(input), stride, padding, dilation), activation)

    def pointwise(input, weight, bias=None):
        return conv(input, weight, bias, 1)

    def pointwise_fused(input, weight, bias=None, activation=0, residual=None):
        y = act(conv(input, weight, bias, 1), activation)
        return y if residual is None else op.Add(y, residual)

    ext = torch.ops.mobilenet_ext
    return {
        ext.depthwise_conv2d.default: depthwise,
        ext.depthwise_conv2d_fused.default: depthwise_fused,
        ext.pointwise_conv2d.default: pointwise,
        ext.pointwise_conv2d_fused.default: pointwise_fused,
    }


def _batch_dynamic_shapes(example: Tensor, dynamic_batch: bool):
    if not dynamic_batch:
        return None
    return ({0: torch.export.Dim("batch", min=1, max=1024)},)


def export_onnx(model: nn.Module, example: Tensor, path: str, opset: int = 18, dynamic_batch: bool = True,
                verbose: bool = False):
    """Export ``model`` (eval mode) to the ONNX file ``path`` (weights
    inside the file) and return the ``onnx.ModelProto``; raises
    :class:`ExportError` if a ``mobilenet_ext`` op survived as a
    custom-domain node."""
    _require("onnx", "ONNX export")
    table = onnx_translation_table(opset)
    import contextlib
    import io

    sink = io.StringIO()
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(sink)
    with quiet:
        prog = torch.onnx.export(model, (example,), dynamo=True, custom_translation_table=table,
                                 opset_version=opset, input_names=["input"], output_names=["logits"],
                                 dynamic_shapes=_batch_dynamic_shapes(example, dynamic_batch))
    proto = prog.model_proto
    custom = sorted({f"{n.domain}::{n.op_type}" for n in proto.graph.node if n.domain not in ("", "ai.onnx")})
    if custom:
        raise ExportError(f"ONNX graph still has non-standard nodes {custom}; expected only ai.onnx operators")
    prog.save(path, external_data=False)
    return proto


def run_onnx(path: str, x: Tensor) -> Tensor:
    """Run the ONNX file with ONNX Runtime's CPUExecutionProvider."""
    ort = _require("onnxruntime", "checking the ONNX file")
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return torch.from_numpy(sess.run(None, {name: x.detach().cpu().numpy()})[0])


def export_program(model: nn.Module, example: Tensor, path: str, dynamic_batch: bool = True):
    """``torch.export.export`` of ``model`` saved to ``path`` (.pt2)."""
    ep = torch.export.export(model, (example,), dynamic_shapes=_batch_dynamic_shapes(example, dynamic_batch))
    torch.export.save(ep, path)
    return ep


def load_program(path: str):
    """Load a .pt2 written by :func:`export_program` (our ops are registered
    by importing mobilenet_ext, which this module does)."""
    return torch.export.load(path)


def onnx_node_counts(proto) -> Dict[str, int]:
    return dict(sorted(collections.Counter(n.op_type for n in proto.graph.node).items()))


def program_op_counts(ep) -> Dict[str, int]:
    """Calls per operator in an ExportedProgram's graph (e.g.
    ``mobilenet_ext.depthwise_conv2d_fused.default``)."""
    c: collections.Counter = collections.Counter()
    for node in ep.graph.nodes:
        if node.op == "call_function":
            c[str(node.target)] += 1
    return dict(sorted(c.items()))


# --------------------------------------------------------------------------
# Whole export with checks
# --------------------------------------------------------------------------
@dataclass
class ExportReport:
    onnx_path: Optional[str] = None
    pt2_path: Optional[str] = None
    onnx_nodes: Dict[str, int] = field(default_factory=dict)
    program_ops: Dict[str, int] = field(default_factory=dict)
    onnx_max_err: Dict[int, float] = field(default_factory=dict)  # batch size -> max |onnx - torch| / max |torch|
    pt2_max_err: Dict[int, float] = field(default_factory=dict)   # batch size -> max |pt2 - eager|
    passed: bool = True
    messages: List[str] = field(default_factory=list)


def _rel_err(a: Tensor, b: Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    if a.shape != b.shape:
        raise ExportError(f"output shape {tuple(a.shape)} differs from the PyTorch model's {tuple(b.shape)}")
    return (a - b).abs().max().item() / max(b.abs().max().item(), 1e-12)


def _prepare(model: nn.Module) -> nn.Module:
    """Eval mode and no parameter gradients, so mobilenet_ext layers with an
    activation/residual (after mx.fuse) take their fused inference ops."""
    model = model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def export_model(model: nn.Module, out_dir: str, input_size: int = 224, batch_size: int = 1, opset: int = 18,
                 dynamic_batch: bool = True, onnx: bool = True, program: bool = True, rtol: float = 1e-4,
                 name: str = "model", seed: int = 0, log=print) -> ExportReport:
    """Export ``model`` to ``out_dir/{name}.onnx`` and ``out_dir/{name}.pt2``
    and check both against the eager model on random inputs of
    ``batch_size`` (and ``batch_size + 2`` when the batch is dynamic).
    ONNX passes when ``max|onnx - torch| <= rtol * max|torch|``; the .pt2
    program must match the eager model to the same tolerance (it runs the
    very same kernels, so in practice exactly)."""
    if not isinstance(input_size, int) or input_size < 8:
        raise ExportError(f"--input-size must be an int >= 8, got {input_size!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ExportError(f"--batch-size must be a positive int, got {batch_size!r}")
    model = _prepare(model)
    os.makedirs(out_dir, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    sizes = [batch_size] + ([batch_size + 2] if dynamic_batch else [])
    inputs = {b: torch.randn(b, 3, input_size, input_size, generator=g) for b in sizes}
    # torch.export specialises a size-1 dimension, so a dynamic batch is traced with at least 2
    trace_batch = max(batch_size, 2) if dynamic_batch else batch_size
    example = inputs.get(trace_batch)
    if example is None:
        example = torch.randn(trace_batch, 3, input_size, input_size, generator=g)
    with torch.no_grad():
        refs = {b: model(x) for b, x in inputs.items()}
    rep = ExportReport()

    if program:
        rep.pt2_path = os.path.join(out_dir, f"{name}.pt2")
        ep = export_program(model, example, rep.pt2_path, dynamic_batch)
        rep.program_ops = program_op_counts(ep)
        loaded = load_program(rep.pt2_path).module()
        with torch.no_grad():
            for b, x in inputs.items():
                rep.pt2_max_err[b] = _rel_err(loaded(x), refs[b])
        ours = {k: v for k, v in rep.program_ops.items() if k.startswith("mobilenet_ext.")}
        log(f"torch.export: {rep.pt2_path} ({os.path.getsize(rep.pt2_path) / 1e6:.2f} MB); our ops in the graph: "
            + (", ".join(f"{k.split('.')[1]} x{v}" for k, v in ours.items()) or "none"))
        for b, e in rep.pt2_max_err.items():
            ok = e <= rtol
            rep.passed &= ok
            log(f"  saved+loaded program vs eager, batch {b}: max rel err {e:.2e} {'OK' if ok else 'FAIL'}")

    if onnx:
        rep.onnx_path = os.path.join(out_dir, f"{name}.onnx")
        proto = export_onnx(model, example, rep.onnx_path, opset, dynamic_batch)
        rep.onnx_nodes = onnx_node_counts(proto)
        log(f"ONNX (opset {opset}): {rep.onnx_path} ({os.path.getsize(rep.onnx_path) / 1e6:.2f} MB); nodes: "
            + ", ".join(f"{k} x{v}" for k, v in rep.onnx_nodes.items()))
        for b, x in inputs.items():
            e = _rel_err(run_onnx(rep.onnx_path, x), refs[b])
            rep.onnx_max_err[b] = e
            ok = e <= rtol
            rep.passed &= ok
            log(f"  onnxruntime (CPUExecutionProvider) vs PyTorch, batch {b}: max rel err {e:.2e} "
                f"{'OK' if ok else 'FAIL'} (tolerance {rtol:g})")
    return rep


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------
def _load_checkpoint(path: str, trust: bool = False) -> Tuple[dict, dict]:
    """(config, model_state) of a 'train' checkpoint, loaded safely by
    :func:`mobilenet_ext.train.load_checkpoint` (``torch.load`` with
    ``weights_only=True``; ``trust``, the CLI's ``--trust-checkpoint``, opts in
    to full unpickling).  Raises :class:`ExportError` naming the file."""
    from .train import TrainError, load_checkpoint

    try:
        ck = load_checkpoint(path, trust=trust, what="--checkpoint")
    except TrainError as e:
        raise ExportError(str(e)) from None
    state = ck["model_state"]
    if not any(k.startswith("classifier.") and k.endswith(".weight") and state[k].dim() >= 1 for k in state):
        raise ExportError(f"--checkpoint: {path!r} has no classifier weight in 'model_state' (expected a "
                          "'classifier.N.weight' tensor of a MobileNet)")
    return ck["config"], state


def build(args: argparse.Namespace) -> Tuple[nn.Module, str]:
    """The model to export (and a short description)."""
    import mobilenet_ext as mx
    from . import models

    name, width, classes = args.model, args.width_mult, args.num_classes
    state = None
    if args.checkpoint:
        cfg, state = _load_checkpoint(args.checkpoint, getattr(args, "trust_checkpoint", False))
        name, width = cfg["model"], cfg["width_mult"]
        classes = int(state["classifier.3.weight"].shape[0] if "classifier.3.weight" in state
                      else state[[k for k in state if k.startswith("classifier.") and k.endswith(".weight")][-1]].shape[0])
    if name not in MODELS:
        raise ExportError(f"--model must be one of {', '.join(MODELS)}, got {name!r}")
    if not width > 0:
        raise ExportError(f"--width-mult must be > 0, got {width!r}")
    torch.manual_seed(args.seed)
    model = getattr(models, name)(width_mult=width, num_classes=classes, backend=args.backend)
    if state is not None:
        model.load_state_dict(state)
    model.eval()
    desc = f"{name} x{width} ({classes} classes, {args.backend} backend"
    if args.checkpoint:
        desc += f", weights from {args.checkpoint}"
    if not args.no_fuse and args.backend == "ext":
        model = mx.fuse(model)
        desc += ", fused: BN folded, activations and residual adds in the kernels"
    return model, desc + ")"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=MODELS, default="mobilenet_v3_small")
    parser.add_argument("--width-mult", type=float, default=1.0)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--backend", choices=("ext", "torch"), default="ext")
    parser.add_argument("--checkpoint", metavar="CKPT", default=None,
                        help="weights (and model, width) from a 'train' checkpoint (DIR/last.pt), loaded with "
                             "torch.load(weights_only=True)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="load a --checkpoint that the safe loader refuses with full unpickling, which runs any "
                             "code in the file: only for files you made or trust")
    parser.add_argument("--no-fuse", action="store_true",
                        help="export the unfused model (default: mx.fuse, so the fused ops are exported)")
    parser.add_argument("--out", metavar="DIR", default="export", help="output directory (default: export)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 14, default 18)")
    parser.add_argument("--input-size", type=int, default=224, help="input height and width (default 224)")
    parser.add_argument("--batch-size", type=int, default=1, help="example batch (default 1)")
    parser.add_argument("--static-batch", action="store_true", help="fixed batch dimension (default: dynamic)")
    parser.add_argument("--rtol", type=float, default=1e-4,
                        help="pass when max|exported - torch| <= rtol * max|torch| (default 1e-4)")
    parser.add_argument("--seed", type=int, default=0, help="init seed (without --checkpoint) and test inputs")
    parser.add_argument("--no-onnx", action="store_true", help="skip ONNX")
    parser.add_argument("--no-torch-export", action="store_true", help="skip torch.export")


def main(args: argparse.Namespace) -> int:
    try:
        model, desc = build(args)
        print(f"exporting {desc}, input [{args.batch_size}, 3, {args.input_size}, {args.input_size}]"
              f"{'' if args.static_batch else ' (dynamic batch)'}")
        name = args.model if not args.checkpoint else os.path.splitext(os.path.basename(args.checkpoint))[0]
        rep = export_model(model, args.out, args.input_size, args.batch_size, args.opset, not args.static_batch,
                           onnx=not args.no_onnx, program=not args.no_torch_export, rtol=args.rtol, name=name,
                           seed=args.seed)
    except ExportError as e:
        print(f"python -m mobilenet_ext export: error: {e}", file=sys.stderr)
        return 2
    print("all checks passed" if rep.passed else "CHECK FAILED: an exported model differs from PyTorch")
    return 0 if rep.passed else 1
