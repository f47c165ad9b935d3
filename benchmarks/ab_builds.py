"""Whole-model A/B between two builds of mobilenet_ext, process by process.

    python benchmarks/ab_builds.py --a DIR_A --b DIR_B \\
        [--case mobilenet_v2:cl:train ...] [--rounds 3] [--threads 2] [--steps 5]

DIR_A and DIR_B each hold a built copy of the package (``DIR/mobilenet_ext/``
with its ``_C`` extension), e.g. ``cp -r mobilenet_ext /tmp/before/`` before a
change and ``cp -r mobilenet_ext /tmp/after/`` after it. Every measurement is
a fresh Python process with ``PYTHONPATH=DIR`` (the working directory alone
is not enough: a script's own folder comes first on ``sys.path`` and an
editable install would load the checkout's build for both sides); the two
builds alternate (A B, A B, ...) for each case, ``--rounds`` times, and the
script prints each pair and the median of the per-round ratios B / A (below
1: B is faster). The process checks which package it imported.

A case is ``MODEL:LAYOUT:WHAT``: MODEL a torchvision MobileNet
(mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small), LAYOUT ``cl`` or
``nchw``, WHAT ``train`` (a training step at batch 32 of ``mx.convert(model)``:
forward, cross-entropy, backward, SGD step; median of ``--steps`` steps after
two warm-up steps) or ``inferN`` (``mx.fuse(mx.convert(model).eval())`` at
batch N under inference_mode, median of 7 calls after 3 warm-up calls).
Random weights and inputs, seed 0, 224x224.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from typing import List

_CHILD = r"""
import os, sys, time, torch, torchvision
import mobilenet_ext as mx
want = os.path.realpath(sys.argv[1])
got = os.path.realpath(os.path.dirname(os.path.dirname(mx.__file__)))
if got != want:
    raise SystemExit(f"imported mobilenet_ext from {got}, not {want}")
model, layout, what, threads, steps = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
torch.set_num_threads(threads)
torch.manual_seed(0)
net = getattr(torchvision.models, model)(num_classes=1000)
cl = layout == "cl"
if what == "train":
    m = mx.convert(net).train()
    x = torch.randn(32, 3, 224, 224)
    y = torch.randint(0, 1000, (32,))
    if cl:
        m = m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    def run():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    warm, n = 2, steps
    ctx = torch.enable_grad()
else:
    batch = int(what[len("infer"):])
    m = mx.fuse(mx.convert(net).eval())
    x = torch.randn(batch, 3, 224, 224)
    if cl:
        m = m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    def run():
        m(x)
    warm, n = 3, 7
    ctx = torch.inference_mode()
with ctx:
    for _ in range(warm):
        run()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        run()
        ts.append(time.perf_counter() - t)
print(sorted(ts)[n // 2] * 1e3)
"""


def _measure(build: str, case: str, threads: int, steps: int) -> float:
    model, layout, what = case.split(":")
    env = dict(os.environ, PYTHONPATH=build)
    out = subprocess.run([sys.executable, "-c", _CHILD, build, model, layout, what, str(threads), str(steps)],
                         env=env, cwd=build, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{case} with {build} failed:\n{out.stderr}")
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="folder holding the A build's mobilenet_ext/")
    ap.add_argument("--b", required=True, help="folder holding the B build's mobilenet_ext/")
    ap.add_argument("--case", action="append", help="MODEL:LAYOUT:train|inferN (repeatable; "
                    "default mobilenet_v2:cl:train)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per process (default 5)")
    a = ap.parse_args()
    cases = a.case or ["mobilenet_v2:cl:train"]
    for d in (a.a, a.b):
        if not os.path.isdir(os.path.join(d, "mobilenet_ext")):
            ap.error(f"{d} holds no mobilenet_ext/ package folder")
    for c in cases:
        parts = c.split(":")
        if (len(parts) != 3 or parts[1] not in ("cl", "nchw")
                or not (parts[2] == "train" or (parts[2].startswith("infer") and parts[2][5:].isdigit()))):
            ap.error(f"--case must be MODEL:cl|nchw:train|inferN, got {c!r}")
    ratios: dict = {c: [] for c in cases}
    for r in range(a.rounds):
        for c in cases:
            ta = _measure(a.a, c, a.threads, a.steps)
            tb = _measure(a.b, c, a.threads, a.steps)
            ratios[c].append(tb / ta)
            print(f"round {r + 1} {c}: A {ta:.1f} ms, B {tb:.1f} ms, B/A {tb / ta:.3f}", flush=True)
    for c in cases:
        v: List[float] = ratios[c]
        print(f"{c}: median B/A {statistics.median(v):.3f} (rounds: {', '.join(f'{x:.3f}' for x in v)})")


if __name__ == "__main__":
    main()
