"""Forward + backward time of mx.nn.BatchNormAct2d vs nn.BatchNorm2d +
nn.ReLU6 (issue #15), and one training step of a converted torchvision
mobilenet_v2 with and without the BatchNorm fusion.

    ./dev python benchmarks/bn_act_bench.py [--threads 2] [--reps 15] [--model-reps 5]

A/B runs alternate (A, B, A, B, ...) and medians are reported."""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn

import mobilenet_ext as mx


def _fwd_bwd(m, x, g):
    x.grad = None
    y = m(x)
    y.backward(g)


def _alternate(fns, reps):
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def layer(reps):
    torch.manual_seed(0)
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(32, 144, 56, 56).contiguous(memory_format=fmt).requires_grad_(True)
        g = torch.randn_like(x)
        ref = nn.Sequential(nn.BatchNorm2d(144), nn.ReLU6()).train()
        ours = mx.nn.BatchNormAct2d(144, activation="relu6").train()
        fns = {"torch BN+ReLU6": lambda: _fwd_bwd(ref, x, g), "mx BatchNormAct2d": lambda: _fwd_bwd(ours, x, g)}
        for f in fns.values():  # warm-up
            f()
        r = _alternate(fns, reps)
        name = "NCHW" if fmt == torch.contiguous_format else "channels_last"
        a, b = r["torch BN+ReLU6"], r["mx BatchNormAct2d"]
        print(f"[32,144,56,56] {name:13s} fwd+bwd median: torch BN+ReLU6 {a:7.2f} ms, "
              f"BatchNormAct2d {b:7.2f} ms, speed-up {a / b:.2f}x")


def model(reps):
    import torchvision

    torch.manual_seed(0)
    base = torchvision.models.mobilenet_v2()
    fused = mx.convert(base)
    plain = mx.convert(base, fuse_batchnorm=False)
    x = torch.randn(32, 3, 224, 224)
    target = torch.randint(0, 1000, (32,))
    opts = {n: torch.optim.SGD(m.parameters(), lr=1e-3) for n, m in (("plain", plain), ("fused", fused))}
    models = {"plain": plain.train(), "fused": fused.train()}

    def step(name):
        m, opt = models[name], opts[name]
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(m(x), target)
        loss.backward()
        opt.step()

    fns = {"convert(fuse_batchnorm=False)": lambda: step("plain"), "convert()": lambda: step("fused")}
    for f in fns.values():
        f()
    r = _alternate(fns, reps)
    a, b = r["convert(fuse_batchnorm=False)"], r["convert()"]
    print(f"mobilenet_v2 batch 32 train step median: convert(fuse_batchnorm=False) {a:7.1f} ms, "
          f"convert() {b:7.1f} ms, speed-up {a / b:.2f}x")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--model-reps", type=int, default=5)
    p.add_argument("--skip-model", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"threads {torch.get_num_threads()}, isa {mx.cpu_isa()}, torch {torch.__version__}")
    layer(a.reps)
    if not a.skip_model:
        model(a.model_reps)


if __name__ == "__main__":
    main()
