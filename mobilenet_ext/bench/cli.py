"""``python -m mobilenet_ext bench``: ``add_arguments`` and ``main``.

Outputs go to ``--out`` or, by default, ``benchmarks/results/<label>/``
under the current working directory (``./dev bench`` runs from the
repository root); ``--update-readme`` rewrites ``README.md`` of the current
working directory unless given a path.  Nothing is ever written inside the
installed package.
"""
from __future__ import annotations

import argparse
import datetime
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Optional, Union

import torch

from .common import DTYPES, SCHEMA, Settings
from .driver import fmt_dur, run
from .render import render_readme, render_table, update_readme
from .suite import LayerCase, layer_cases, model_cases

__all__ = ["add_arguments", "main", "ArgumentError", "settings_from_args", "resolve_out_dir", "DEFAULT_RESULTS_DIR",
           "DEFAULT_README"]

#: Where runs go without ``--out`` (``<this>/<label>/``), relative to the working directory.
DEFAULT_RESULTS_DIR = Path("benchmarks") / "results"
#: The README ``--update-readme`` rewrites when given no path, relative to the working directory.
DEFAULT_README = "README.md"
#: The installed package: nothing is written under it.
_PACKAGE_DIR = Path(__file__).resolve().parent.parent

PathLike = Union[str, Path]


def resolve_out_dir(out: Optional[PathLike], label: str, cwd: Optional[PathLike] = None) -> Path:
    """The absolute folder a run writes to: ``out``, else
    ``benchmarks/results/<label>``; a relative path is taken from ``cwd``
    (default: the current working directory), never from where the package
    is installed."""
    base = Path.cwd() if cwd is None else Path(cwd)
    p = Path(out) if out else DEFAULT_RESULTS_DIR / label
    return p if p.is_absolute() else base / p


def _inside_package(path: Path) -> bool:
    """Whether ``path`` lies in the mobilenet_ext package's directory."""
    return path.resolve().is_relative_to(_PACKAGE_DIR)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m mobilenet_ext bench``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("Rows: ours vs nn.Conv2d (F.conv2d) timed alternately in one process; 'speedup' is the "
                     "median of per-round t_torch/t_ours; '%roof' the share of the measured roofline "
                     "min(gemm rate, intensity x copy bandwidth).")
    parser.add_argument("--quick", action="store_true", help="a representative subset (under a minute)")
    parser.add_argument("--filter", metavar="REGEX", default=None,
                        help="only cases whose id matches REGEX (re.search), e.g. 'dw3x3.*b1 nchw fwd '")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--dtype", default=None,
                        help="comma-separated float32,float16,bfloat16 (CPU: float32 only; CUDA default: all three)")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads for torch, our ops, ONNX Runtime, OpenVINO and torch.compile "
                        "(default: torch's default)")
    parser.add_argument("--suite", choices=("all", "layers", "models"), default="all")
    parser.add_argument("--label", default=None, help="results name (default: <device>-<date>, or quick-...)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output folder (default benchmarks/results/<label>/ in the current directory)")
    parser.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                        help="timing time per case (default 0.4, --quick 0.12); slow cases take min-rounds")
    parser.add_argument("--min-rounds", type=int, default=None, help="alternating rounds at least (default 5, quick 3)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--no-plots", action="store_true", help="do not write the PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--list", action="store_true", help="list the cases (after --filter) and exit")
    parser.add_argument("--render-readme", metavar="RESULTS_JSON", default=None,
                        help="print README's headline table from a results.json and exit")
    parser.add_argument("--update-readme", metavar="README", nargs="?", const=DEFAULT_README,
                        default=None, help="with --render-readme: write the table between the "
                        "<!-- bench-table:begin/end --> markers of README (default: README.md in the current "
                        "directory)")


class ArgumentError(ValueError):
    """A bad command-line argument (the message names it)."""


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Validate the arguments; raises ArgumentError naming the bad one."""
    device = args.device
    if device not in ("cpu", "cuda"):
        raise ArgumentError(f"--device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ArgumentError("--device cuda: CUDA is not available here (torch.cuda.is_available() is False: "
                                "no GPU or a CPU-only torch)")
        from .. import _native

        if not _native.cuda_built():
            raise ArgumentError("--device cuda: mobilenet_ext was built without CUDA "
                                "(rebuild without MOBILENET_EXT_NO_CUDA=1)")
    if args.dtype is None:
        dtypes = [torch.float32] if device == "cpu" else [torch.float32, torch.float16, torch.bfloat16]
    else:
        names = [d.strip() for d in args.dtype.split(",") if d.strip()]
        bad = [d for d in names if d not in DTYPES]
        if bad or not names:
            raise ArgumentError(f"--dtype must be a comma-separated list of {', '.join(DTYPES)}, got {args.dtype!r}")
        dtypes = [DTYPES[d] for d in names]
        if device == "cpu" and dtypes != [torch.float32]:
            raise ArgumentError(f"--dtype {args.dtype}: only float32 is benchmarked on CPU")
    threads = args.threads if args.threads is not None else torch.get_num_threads()
    if threads < 1:
        raise ArgumentError(f"--threads must be >= 1, got {threads}")
    if args.filter is not None:
        try:
            re.compile(args.filter)
        except re.error as e:
            raise ArgumentError(f"--filter: invalid regular expression {args.filter!r}: {e}") from None
    if args.budget is not None and not args.budget > 0:
        raise ArgumentError(f"--budget must be > 0 seconds, got {args.budget}")
    if args.min_rounds is not None and args.min_rounds < 1:
        raise ArgumentError(f"--min-rounds must be >= 1, got {args.min_rounds}")
    s = Settings.for_mode(device, threads, dtypes, args.quick, budget_s=args.budget, min_rounds=args.min_rounds)
    s.max_rounds = max(s.max_rounds, s.min_rounds)
    s.progress = not args.no_progress
    s.memory = not args.no_memory
    return s


def main(args: argparse.Namespace) -> int:
    """Entry point of ``python -m mobilenet_ext bench``: 0 when every case
    validated, 1 when a case FAILED, 2 on bad arguments."""
    prog = "python -m mobilenet_ext bench"
    if args.render_readme:
        p = Path(args.render_readme)
        try:
            res = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            print(f"{prog}: error: --render-readme: cannot read {p}: {e}", file=sys.stderr)
            return 2
        if res.get("schema") != SCHEMA:
            print(f"{prog}: error: --render-readme: {p} is not a {SCHEMA} results file", file=sys.stderr)
            return 2
        table = render_readme(res)
        if args.update_readme:
            readme = Path(args.update_readme)
            if not readme.is_file():
                where = (f"no {DEFAULT_README} in the current directory ({Path.cwd()}): run from the repository "
                         "root or give the README's path" if args.update_readme == DEFAULT_README
                         else f"{readme} is not a file")
                print(f"{prog}: error: --update-readme: {where}", file=sys.stderr)
                return 2
            try:
                update_readme(readme, table, Path(args.render_readme))
            except (OSError, ValueError) as e:
                print(f"{prog}: error: --update-readme: {e}", file=sys.stderr)
                return 2
            print(f"updated the benchmark table in {args.update_readme}")
            return 0
        print(table, end="")
        return 0
    if args.update_readme:
        print(f"{prog}: error: --update-readme needs --render-readme RESULTS_JSON", file=sys.stderr)
        return 2
    try:
        settings = settings_from_args(args)
    except ArgumentError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    if args.list:
        lc = layer_cases(settings) if args.suite in ("all", "layers") else []
        mc = model_cases(settings, settings.device == "cpu") if args.suite in ("all", "models") else []
        pat = re.compile(args.filter) if args.filter else None
        for c in list(lc) + list(mc):
            if pat is None or pat.search(c.id):
                print(c.id + (f"    [{', '.join(c.models)}]" if isinstance(c, LayerCase) else ""))
        return 0
    date = datetime.datetime.now().strftime("%Y%m%d-%H%M")
    label = args.label or f"{'quick-' if settings.quick else ''}{settings.device}-{date}"
    if not re.fullmatch(r"[A-Za-z0-9._+-]+", label):
        print(f"{prog}: error: --label may only contain letters, digits and . _ + -, got {label!r}", file=sys.stderr)
        return 2
    out_dir = resolve_out_dir(args.out, label)
    if _inside_package(out_dir):
        print(f"{prog}: error: {out_dir} is inside the mobilenet_ext package ({_PACKAGE_DIR}); results are "
              "not written there: give --out or run from another directory", file=sys.stderr)
        return 2
    command = "python -m mobilenet_ext bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
        if len(sys.argv) > 1 and sys.argv[1] == "bench" else "python -m mobilenet_ext bench (called from Python)"
    try:
        res = run(settings, args.filter, args.suite, label, out_dir, command, plots=not args.no_plots)
    except ValueError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    print()
    print(render_table(res))
    print(f"\nwrote {out_dir}/results.json, results.md" + ("" if args.no_plots else ", speedup.png, roofline.png")
          + f" in {fmt_dur(res['elapsed_s'])}")
    if res["failures"]:
        print(f"{res['failures']} case(s) FAILED validation against nn.Conv2d", file=sys.stderr)
        return 1
    return 0
