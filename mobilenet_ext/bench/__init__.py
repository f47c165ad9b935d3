"""``python -m mobilenet_ext bench``: our depthwise / pointwise ops and the
MobileNets built on them, side by side with nn.Conv2d, against the roofline.

Modules
    :mod:`.common`     results schema, models, layouts, dtypes, ``METHODS``, :class:`Settings`
    :mod:`.suite`      layer shapes found in the models, the layer and model cases of a run
    :mod:`.timing`     the alternating A/B timer, per-round ratio medians, geomean
    :mod:`.roofline`   machine info, versions, copy bandwidth ladder and gemm rate
    :mod:`.layer_run`  validate and time one layer case (peak memory included)
    :mod:`.model_run`  validate and time one model case (ONNX Runtime, OpenVINO, torch.compile too)
    :mod:`.targets`    group geomeans and the issue #4 / #14 targets, a table of data
    :mod:`.render`     terminal table, results.md, README's table between its markers
    :mod:`.plots`      speedup.png and roofline.png
    :mod:`.driver`     :func:`run`: one run, written to the folder it is given
    :mod:`.cli`        ``add_arguments`` and ``main`` of the command

How each figure is measured: ``METHODS`` (copied into results.json) and
benchmarks/README.md.
"""
from __future__ import annotations

from .cli import add_arguments, main
from .common import MODEL_NAMES, SCHEMA, Settings
from .driver import run
from .layer_run import run_layer_case
from .model_run import run_model_case
from .render import render_markdown, render_readme, render_table, update_readme
from .roofline import machine_info, measure_roofline
from .suite import (COMPETITORS, QUICK_SHAPES, LayerCase, LayerShape, ModelCase, layer_cases, layer_shapes,
                    model_cases, model_layer_shapes)
from .targets import TARGETS, Target, evaluate_targets, summarize_groups
from .timing import Candidate, geomean, ratio_median, time_alternating

__all__ = [
    "LayerShape", "LayerCase", "ModelCase", "layer_shapes", "model_layer_shapes", "layer_cases", "model_cases",
    "QUICK_SHAPES", "COMPETITORS", "MODEL_NAMES", "SCHEMA", "Settings", "Candidate", "time_alternating", "ratio_median",
    "geomean", "machine_info", "measure_roofline", "run_layer_case", "run_model_case", "summarize_groups",
    "Target", "TARGETS", "evaluate_targets", "run", "render_table", "render_markdown", "render_readme", "update_readme",
    "add_arguments", "main",
]
