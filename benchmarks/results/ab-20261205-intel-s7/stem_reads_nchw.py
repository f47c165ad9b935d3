"""In-process A/B of the fused replay on an NCHW input: the input reordered
to channels_last by a separate pass (A) against the stem reading it as it
came (B, _plan._stem_reads_nchw), alternating, median of per-round ratios
B / A. Run from the repository root: python benchmarks/results/ab-20261205-intel-s7/stem_reads_nchw.py"""
import statistics
import time

import torch
import torchvision

import mobilenet_ext as mx

torch.set_num_threads(2)
torch.manual_seed(0)
for name in ["mobilenet_v3_small", "mobilenet_v2", "mobilenet_v3_large"]:
  for b in (1, 32):
    m = mx.fuse(mx.convert(getattr(torchvision.models, name)()).eval())
    x = torch.randn(b,3,224,224)
    with torch.no_grad():
        for _ in range(3): m(x)
        plan = m.features.__dict__["_mnx_plan"]
        reps = 20 if b == 1 else 3
        def t(conv):
            plan.convert_input = conv
            t0 = time.perf_counter()
            for _ in range(reps): m(x)
            return (time.perf_counter() - t0) / reps
        rat = []; ta=[]; tb=[]
        for r in range(15 if b == 1 else 7):
            a = t(True); bb = t(False); rat.append(bb / a); ta.append(a); tb.append(bb)
    print(f"{name} b{b}: convert {statistics.median(ta)*1e3:.2f} ms, stem reads NCHW {statistics.median(tb)*1e3:.2f} ms, ratio {statistics.median(rat):.3f}", flush=True)
