"""A fused model against OpenVINO at batch 1, timed two ways: each alone in
a tight loop, and in alternation (ours, OpenVINO, ours, ...), as the suite's
model rows alternate their candidates.

    ./dev python benchmarks/warm_vs_alternating.py [--model mobilenet_v3_small]
        [--threads 2] [--layout cl] [--calls 300]

On a 2-core machine the two differ: after a call, a runtime's worker threads
keep spinning for a while (our OpenMP pool, OpenVINO's TBB workers), and the
next call shares the cores with them and finds the caches filled by the
other runtime. The suite's ratio (median over rounds of t_ours / t_OpenVINO)
includes both effects, and its rounds also run nn.Conv2d, ONNX Runtime and
inductor between the two. This script reports:

- each runtime alone, in a tight loop (median ms, two passes);
- the two alternating call by call (median ms each, and the median of the
  per-pair ratios t_ours / t_OpenVINO).

The model is ``mx.fuse(mx.convert(torchvision model).eval())`` (random
weights, seed 0); OpenVINO runs the stock model's ONNX export with the
suite's settings (float32, latency hint, ``--threads`` threads).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Callable, List

import torch

import mobilenet_ext as mx
from mobilenet_ext.bench.model_run import _onnx_export, _openvino_model


def _tight(f: Callable[[], object], calls: int) -> float:
    for _ in range(30):
        f()
    ts: List[float] = []
    for _ in range(calls):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mobilenet_v3_small",
                    choices=["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layout", choices=["cl", "nchw"], default="cl")
    ap.add_argument("--calls", type=int, default=300, help="timed calls per loop (default 300)")
    a = ap.parse_args()

    import torchvision

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    ref = getattr(torchvision.models, a.model)().eval()
    ours_model = mx.fuse(mx.convert(getattr(torchvision.models, a.model)().eval()))
    x = torch.randn(1, 3, 224, 224)
    if a.layout == "cl":
        x = x.contiguous(memory_format=torch.channels_last)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.onnx")
        _onnx_export(ref, x.contiguous(), path)
        compiled, _ = _openvino_model(ref, x, a.threads, path)
    request = compiled.create_infer_request()
    xn = x.contiguous().numpy()

    def ours() -> object:
        return ours_model(x)

    def openvino() -> object:
        return request.infer({0: xn})

    print(f"{a.model}, batch 1, {a.layout}, {a.threads} threads, torch {torch.__version__}")
    with torch.no_grad():
        for p in range(2):
            print(f"tight loop, pass {p + 1}: ours {_tight(ours, a.calls):.3f} ms, "
                  f"OpenVINO {_tight(openvino, a.calls):.3f} ms")
        to: List[float] = []
        tv: List[float] = []
        for _ in range(30):
            ours()
            openvino()
        for _ in range(a.calls):
            t = time.perf_counter()
            ours()
            to.append(time.perf_counter() - t)
            t = time.perf_counter()
            openvino()
            tv.append(time.perf_counter() - t)
    ratio = statistics.median([o / v for o, v in zip(to, tv)])
    print(f"alternating: ours {statistics.median(to) * 1e3:.3f} ms, OpenVINO {statistics.median(tv) * 1e3:.3f} ms, "
          f"ours / OpenVINO {ratio:.2f}")


if __name__ == "__main__":
    main()
