"""``python -m mobilenet_ext check``: run every op in every layout against
nn.Conv2d (F.conv2d in float64) and print a table of max errors."""
from __future__ import annotations

import argparse
import platform
import sys
from typing import List

import torch
import torch.nn.functional as F

from . import _native, ops

#: (name, N, C, H, W, kernel, stride, padding, dilation, multiplier)
DEPTHWISE_CASES = [
    ("dw3x3 s1", 2, 32, 28, 28, 3, 1, 1, 1, 1),
    ("dw3x3 s2", 2, 24, 29, 30, 3, 2, 1, 1, 1),
    ("dw5x5 s1", 2, 40, 14, 14, 5, 1, 2, 1, 1),
    ("dw5x5 s2", 2, 72, 15, 15, 5, 2, 2, 1, 1),
    ("dw7x7 s1", 1, 96, 14, 14, 7, 1, 3, 1, 1),
    ("dw3x3 d2 m2", 2, 8, 13, 11, 3, 1, 2, 2, 2),
]
#: (name, N, C_in, C_out, H, W)
POINTWISE_CASES = [
    ("pw 32->64", 2, 32, 64, 28, 28),
    ("pw 144->24", 2, 144, 24, 14, 14),
    ("pw 17->5", 3, 17, 5, 7, 9),
]
LAYOUTS = {"NCHW": torch.contiguous_format, "channels_last": torch.channels_last}


def _err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item() / (1.0 + b.abs().max().item())


def run_checks(device: str = "cpu", dtypes=None, tol: float = 1e-4) -> List[dict]:
    """Compare forward, grad_input, grad_weight and grad_bias of every case
    with F.conv2d in float64. Returns one row per (case, layout, dtype) with
    the max error relative to the output scale."""
    dtypes = dtypes or ([torch.float32, torch.float64] if device == "cpu" else [torch.float32, torch.float16, torch.bfloat16])
    tols = {torch.float32: tol, torch.float64: 1e-10, torch.float16: 1e-2, torch.bfloat16: 6e-2}
    rows = []
    g = torch.Generator().manual_seed(0)
    cases = [("depthwise",) + c for c in DEPTHWISE_CASES] + [("pointwise",) + c for c in POINTWISE_CASES]
    for case in cases:
        for lname, fmt in LAYOUTS.items():
            for dtype in dtypes:
                if case[0] == "depthwise":
                    _, name, N, C, H, W, k, s, p, d, m = case
                    x = torch.randn(N, C, H, W, generator=g)
                    w = torch.randn(C * m, 1, k, k, generator=g)
                    b = torch.randn(C * m, generator=g)
                    fn = lambda x, w, b: ops.depthwise_conv2d(x, w, b, s, p, d)  # noqa: E731
                    ref = lambda x, w, b: F.conv2d(x, w, b, s, p, d, groups=C)  # noqa: E731
                else:
                    _, name, N, C, Co, H, W = case
                    x = torch.randn(N, C, H, W, generator=g)
                    w = torch.randn(Co, C, 1, 1, generator=g) / C**0.5
                    b = torch.randn(Co, generator=g)
                    fn, ref = ops.pointwise_conv2d, F.conv2d
                xs = [t.to(device=device, dtype=dtype) for t in (x, w, b)]
                xs[0] = xs[0].contiguous(memory_format=fmt)
                xs = [t.requires_grad_(True) for t in xs]
                y = fn(*xs)
                gy = torch.randn(y.shape, generator=g).to(device=device, dtype=dtype)
                grads = torch.autograd.grad(y, xs, gy)
                r = [t.detach().double().requires_grad_(True) for t in xs]
                yr = ref(*r)
                rgrads = torch.autograd.grad(yr, r, gy.double())
                errs = {
                    "forward": _err(y, yr),
                    "grad_input": _err(grads[0], rgrads[0]),
                    "grad_weight": _err(grads[1], rgrads[1]),
                    "grad_bias": _err(grads[2], rgrads[2]),
                }
                same_format = y.is_contiguous(memory_format=fmt)
                rows.append(
                    dict(op=case[0], case=name, layout=lname, dtype=str(dtype).replace("torch.", ""),
                         **errs, format_kept=same_format,
                         ok=all(e <= tols[dtype] for e in errs.values()) and same_format)
                )
    return rows


def format_table(rows: List[dict]) -> str:
    cols = ["op", "case", "layout", "dtype", "forward", "grad_input", "grad_weight", "grad_bias", "ok"]
    cells = [[str(r[c]) if not isinstance(r[c], float) else f"{r[c]:.1e}" for c in cols] for r in rows]
    for c in cells:
        c[-1] = "ok" if c[-1] == "True" else "FAIL"
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    out = [line(cols), line(["-" * w for w in widths])] + [line(c) for c in cells]
    return "\n".join(out)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device to check (default: cpu)")


def main(args: argparse.Namespace) -> int:
    if args.device == "cuda" and not torch.cuda.is_available():
        print("check: --device cuda requested but no CUDA GPU is available", file=sys.stderr)
        return 2
    print(f"mobilenet_ext check: torch {torch.__version__}, CPU kernels: {_native.cpu_isa()}, "
          f"CUDA built: {_native.cuda_built()}, threads: {torch.get_num_threads()}, {platform.machine()}")
    print("max |ours - F.conv2d(float64)| / (1 + max|ref|), per op, layout and dtype\n")
    rows = run_checks(args.device)
    print(format_table(rows))
    bad = [r for r in rows if not r["ok"]]
    print(f"\n{len(rows) - len(bad)}/{len(rows)} checks within tolerance "
          "(float32 1e-4, float64 1e-10, float16 1e-2, bfloat16 6e-2); output memory format kept in every case"
          if not bad else f"\n{len(bad)} of {len(rows)} checks FAILED")
    return 1 if bad else 0
