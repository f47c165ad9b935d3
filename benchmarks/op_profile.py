"""Where a fused model's inference goes, op by op, against the roofline
(issue #14: "the honest gap with a profile of where the remaining time goes").

    ./dev python benchmarks/op_profile.py [--model mobilenet_v3_small] [--batch 1]
        [--threads 1] [--layout cl] [--rounds 15] [--out FILE.md]

The model is ``mx.fuse(mx.convert(torchvision model).eval())`` (random
weights, seed 0), as in the suite's model rows. After a few calls its
PlannedSequential modules (the features, the classifier) have recorded the op
calls they replay; each of those ops is then timed on its own recorded
inputs: every call timed alone with perf_counter, the ops taken in turn
(op 1, op 2, ..., op 1, ...) for ``--rounds`` rounds, the median per op. The
whole model call is timed before, in 3 x ``--rounds`` rounds (median, and
the fastest round: this machine's neighbours move the median). Per op:

- time, and its share of the sum of the op times;
- GFLOP/s (2 per multiply-add, from the ops' FLOP formulas through
  torch.utils.flop_counter);
- GB/s over the compulsory bytes: every tensor the op reads once (a packed
  weight in place of its plain copy) plus its output, an in-place op's
  tensor twice;
- % of the roofline min(FMA peak, intensity x copy bandwidth), the
  bandwidth cache-aware (the copy of the smallest measured size that holds
  the op's bytes; mobilenet_ext.bench.roofline), and which bound applies.

"outside the ops" is the model call minus the sum of the op times: the
replay loop, the plan's validity check, the modules between the planned
ones (torchvision's pooling / flatten), Python. An op timed alone runs with
its inputs and weights hot in cache where the model call may find them
evicted, so the sum of the ops is a lower bound of the kernels' share.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import torch

import mobilenet_ext as mx
from mobilenet_ext import _plan
from mobilenet_ext.bench.common import Settings
from mobilenet_ext.bench.roofline import ladder_text, machine_info, measure_roofline, roofline_pct

MODELS = ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")


def fused_model(name: str) -> torch.nn.Module:
    """The suite's fused inference model: torchvision ``name``, seed 0."""
    import torchvision

    torch.manual_seed(0)
    return mx.fuse(mx.convert(getattr(torchvision.models, name)().eval()))


def _plans(model: torch.nn.Module) -> List[Tuple[str, Any]]:
    out = []
    for n, m in model.named_modules():
        p = m.__dict__.get("_mnx_plan")
        if type(p) is _plan._Plan:
            out.append((n, p))
    return out


class OpCall:
    """One recorded op call with its concrete arguments."""

    def __init__(self, where: str, index: int, overload: Any, func: Any, args: List[Any]) -> None:
        self.where, self.index, self.func, self.args = where, index, func, args
        schema = overload._schema
        self.name = schema.name.split("::")[-1]
        written = [i for i, a in enumerate(schema.arguments) if a.alias_info is not None and a.alias_info.is_write]
        self.inplace = bool(written)
        # the arguments an in-place op writes, restored before each timed
        # call (squeeze_excitation_ scales its input)
        self.saved = [(args[i], args[i].clone()) for i in written if isinstance(args[i], torch.Tensor)]
        names = [a.name for a in schema.arguments]
        skip = set()
        for i, n in enumerate(names):  # a packed weight is read instead of its plain copy
            if n.endswith("packed") and isinstance(args[i], torch.Tensor):
                skip.add(n[: -len("packed")] + "weight")
        self.read = [a for n, a in zip(names, args) if isinstance(a, torch.Tensor) and n not in skip]
        self.shape = tuple(args[0].shape) if isinstance(args[0], torch.Tensor) else ()

    def restore(self) -> None:
        with torch.no_grad():
            for a, s in self.saved:
                a.copy_(s)

    def __call__(self) -> Any:
        return self.func(*self.args)


def record_calls(model: torch.nn.Module, x: torch.Tensor) -> List[OpCall]:
    """Every op the model's plans replay, in order, with its concrete
    arguments (the plans' own loop, every intermediate kept)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    calls: List[OpCall] = []
    plans = _plans(model)
    if not plans:
        raise RuntimeError("the model has no recorded plan (is it mx.fuse()d, in eval mode?)")
    where = {id(p): n for n, p in plans}

    # run the model once more, capturing each plan's input
    inputs: Dict[int, torch.Tensor] = {}
    for n, p in plans:
        orig = p._run

        def grab(t, _p=p, _orig=orig):
            inputs[id(_p)] = t
            return _orig(t)
        p._run = grab  # instance attribute shadows the method for this call
    try:
        with torch.no_grad():
            model(x)
    finally:
        for _, p in plans:
            p.__dict__.pop("_run", None)
    for n, p in plans:
        if id(p) not in inputs:
            continue
        fast = p._fast_steps()
        if fast is None:
            raise RuntimeError(f"plan of {n or 'the model'} has steps the fast replay does not take")
        vals: List[Optional[torch.Tensor]] = [None] * p.n_vals + [inputs[id(p)]]
        with torch.no_grad():
            for i, ((call, tmpl, patches, out_i, _frees), step) in enumerate(zip(fast, p.steps)):
                args = list(tmpl)
                for pos, j in patches:
                    args[pos] = vals[j]
                c = OpCall(where[id(p)] or "model", i, step[0], call, args)
                c.restore()
                out = call(*args)
                c.restore()
                calls.append(c)
                if out_i is not None:
                    vals[out_i] = out
    return calls


def op_flops(c: OpCall) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    c.restore()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        c()
    c.restore()
    return int(fc.get_total_flops())


def op_bytes(c: OpCall) -> int:
    seen, total = set(), 0
    for t in c.read:
        key = (t.data_ptr(), t.numel())
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
    with torch.no_grad():
        out = c()
    c.restore()
    if c.inplace:
        total += c.args[0].numel() * c.args[0].element_size()
    elif isinstance(out, torch.Tensor):
        total += out.numel() * out.element_size()
    return total


def describe(c: OpCall) -> str:
    a = c.args
    if c.name == "inverted_residual_fused":
        ci = a[0].shape[1]
        e = a[1].shape[0] if a[1] is not None else ci
        co = a[10].shape[0] if a[10] is not None else e
        k = a[5].shape[-1]
        return f"{ci}->{e}->{co} dw{k}x{k}/s{a[7]} {a[0].shape[2]}x{a[0].shape[3]}" + (" +res" if a[14] else "")
    if c.name in ("pointwise_conv2d_packed", "pointwise_conv2d_fused"):
        return f"{a[1].shape[1]}->{a[1].shape[0]} {a[0].shape[2]}x{a[0].shape[3]}"
    if c.name in ("linear_packed", "linear_fused"):
        return f"{a[1].shape[1]}->{a[1].shape[0]}"
    if c.name.startswith("squeeze_excitation"):
        return f"{a[0].shape[1]}->{a[1].shape[0]}->{a[0].shape[1]} {a[0].shape[2]}x{a[0].shape[3]}"
    if c.name.startswith("depthwise_conv2d"):
        return f"{a[1].shape[0]} ch {a[1].shape[-2]}x{a[1].shape[-1]}/s{a[3][0]} {a[0].shape[2]}x{a[0].shape[3]}"
    if c.name.startswith("conv2d_small_cin"):
        w = a[1].shape
        return f"{w[1]}->{w[0]} {w[2]}x{w[3]}/s{a[3][0]} {a[0].shape[2]}x{a[0].shape[3]}"
    return "x".join(str(s) for s in c.shape)


def time_model(model: torch.nn.Module, x: torch.Tensor, rounds: int, min_s: float = 0.01) -> Tuple[float, float]:
    """(median, fastest) seconds per model call over rounds of about min_s."""
    with torch.no_grad():
        t0 = time.perf_counter()
        model(x)
        reps = max(3, min(100, int(min_s / max(time.perf_counter() - t0, 1e-7))))
        samples = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(reps):
                model(x)
            samples.append((time.perf_counter() - t0) / reps)
    return statistics.median(samples), min(samples)


def time_ops(calls: List[OpCall], rounds: int, min_s: float = 0.002) -> List[float]:
    """Median seconds per call of every op, the ops taken in turn each round."""
    reps = []
    with torch.no_grad():
        for c in calls:  # calls per measurement: about min_s of work
            c.restore()
            t0 = time.perf_counter()
            c()
            reps.append(max(3, min(200, int(min_s / max(time.perf_counter() - t0, 1e-7)))))
            c.restore()
        samples: List[List[float]] = [[] for _ in calls]
        for _ in range(rounds):
            for i, c in enumerate(calls):
                spent = 0.0
                for _ in range(reps[i]):
                    c.restore()
                    t0 = time.perf_counter()
                    c()
                    spent += time.perf_counter() - t0
                samples[i].append(spent / reps[i])
                c.restore()
    return [statistics.median(s) for s in samples]


def profile_model(name: str, batch: int, threads: int, layout: str, rounds: int,
                  roof: Optional[Dict[str, Any]] = None, size: int = 224) -> str:
    """The markdown profile of one model (see the module docstring)."""
    torch.set_num_threads(threads)
    settings = Settings.for_mode("cpu", threads, [torch.float32], quick=True, progress=False)
    if roof is None:
        roof = measure_roofline(settings)
    model = fused_model(name)
    x = torch.randn(batch, 3, size, size)
    if layout == "cl":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        for _ in range(3):
            model(x)
    # the model first: the recorded calls below keep every intermediate
    # alive, so the model's own outputs would come from fresh memory
    model_t, model_best = time_model(model, x, 3 * rounds)
    calls = record_calls(model, x)
    op_t = time_ops(calls, rounds)
    total = sum(op_t)
    rows, by_op = [], {}
    for i, (c, t) in enumerate(zip(calls, op_t)):
        fl, nb = op_flops(c), op_bytes(c)
        gbps, gflops, pct, bound = roofline_pct(max(fl, 1), nb, t, roof, torch.float32)
        rows.append(f"| {i} | {c.where} | {c.name} | {describe(c)} | {t * 1e6:.1f} | {100 * t / total:.1f} | "
                    f"{fl / 1e6:.2f} | {gflops:.1f} | {nb / 2**10:.0f} | {gbps:.1f} | {pct:.0f}% ({bound}) |")
        agg = by_op.setdefault(c.name, [0, 0.0, 0, 0])
        agg[0] += 1
        agg[1] += t
        agg[2] += fl
        agg[3] += nb
    mi = machine_info(settings)
    fl_total = sum(a[2] for a in by_op.values())
    lines = [
        f"## {name}, batch {batch}, {size}x{size}, {layout}, {threads} thread{'s' if threads > 1 else ''}",
        "",
        f"Machine: {mi.get('cpu_model')} ({mi.get('logical_cpus')} logical CPUs; mobilenet_ext ISA "
        f"{mi.get('mobilenet_ext_cpu_isa')}); torch {torch.__version__}. Roofline: FMA peak "
        f"{roof['fma_peak_GFLOPs']['f32']:.0f} GFLOP/s ({threads} thread{'s' if threads > 1 else ''}), sgemm "
        f"{roof['gemm_GFLOPs']['f32']:.0f} GFLOP/s, copy {roof['copy_GBps']:.1f} GB/s{ladder_text(roof)}.",
        "",
        f"Model call: **{model_t * 1e3:.3f} ms** (median of {3 * rounds} rounds; fastest round "
        f"{model_best * 1e3:.3f} ms); the {len(calls)} ops timed alone sum "
        f"to {total * 1e3:.3f} ms ({100 * total / model_t:.0f}%); outside the ops "
        f"{(model_t - total) * 1e3:.3f} ms. {fl_total / 1e9:.3f} GFLOP: "
        f"{fl_total / model_t / 1e9:.1f} GFLOP/s over the model call.",
        "",
        "| op | calls | us | % of ops | GFLOP/s | GB/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, (cnt, t, fl, nb) in sorted(by_op.items(), key=lambda kv: -kv[1][1]):
        lines.append(f"| {n} | {cnt} | {t * 1e6:.1f} | {100 * t / total:.1f} | {fl / t / 1e9:.1f} | {nb / t / 1e9:.1f} |")
    lines += ["", "| # | plan | op | shape | us | % | MFLOP | GFLOP/s | KiB | GB/s | % roofline (bound) |",
              "| ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"] + rows + [""]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", choices=MODELS,
                   help="model (repeatable; default: all three)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--layout", choices=("cl", "nchw"), default="cl", help="the input's layout (default cl)")
    p.add_argument("--rounds", type=int, default=15, help="alternating rounds (default 15)")
    p.add_argument("--size", type=int, default=224, help="input height and width (default 224)")
    p.add_argument("--out", default=None, help="also write the markdown here")
    a = p.parse_args(argv)
    if min(a.batch, a.threads, a.rounds) < 1 or a.size < 32:
        p.error(f"--batch, --threads and --rounds must be >= 1 and --size >= 32, got {a.batch}, {a.threads}, "
                f"{a.rounds}, {a.size}")
    torch.set_num_threads(a.threads)
    roof = measure_roofline(Settings.for_mode("cpu", a.threads, [torch.float32], quick=True, progress=False))
    parts = []
    for name in a.model or MODELS:
        print(f"profiling {name} ...", file=sys.stderr)
        parts.append(profile_model(name, a.batch, a.threads, a.layout, a.rounds, roof, a.size))
    text = f"Command: `python benchmarks/op_profile.py {' '.join(argv if argv is not None else sys.argv[1:])}`\n\n" + \
        "\n".join(parts)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
