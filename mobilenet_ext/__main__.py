"""Command line: python -m mobilenet_ext check|bench|flops|train|export

Each subcommand lives in its own module exposing
``add_arguments(parser)`` and ``main(args) -> int``; it is imported only when
used.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "check": ("mobilenet_ext.check", "compare every op and layout with nn.Conv2d and print max errors"),
    "bench": ("mobilenet_ext.bench", "benchmark layers and models against nn.Conv2d (tables, JSON, plots)"),
    "flops": ("mobilenet_ext.flops", "MACs/params of the MobileNets next to the papers' tables"),
    "train": ("mobilenet_ext.train", "train a MobileNet on our ops (digits by default, CIFAR-10 from --data)"),
    "export": ("mobilenet_ext.export", "export a model to ONNX and torch.export and check it numerically"),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mobilenet_ext", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    argv = sys.argv[1:] if argv is None else argv
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    for name, (mod, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == chosen:
            importlib.import_module(mod).add_arguments(p)
    args = parser.parse_args(argv)
    return int(importlib.import_module(COMMANDS[args.command][0]).main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
