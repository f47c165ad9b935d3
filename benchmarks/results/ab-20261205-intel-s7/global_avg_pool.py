"""In-process A/B of the fused models' average pool: PyTorch's
adaptive_avg_pool2d (A) against global_avg_pool2d on our channel-means
kernel (B), alternating forwards, median of per-round ratios B / A, batch 1,
2 threads. v3: the avgpool module swapped; v2: the model's class
(torchvision's MobileNetV2 / FusedMobileNetV2). Run from the repository
root: python benchmarks/results/ab-20261205-intel-s7/global_avg_pool.py"""
import statistics
import time

import torch
import torchvision
from torchvision.models.mobilenetv2 import MobileNetV2

import mobilenet_ext as mx
from mobilenet_ext._torchvision_fused import FusedMobileNetV2

torch.set_num_threads(2)
torch.manual_seed(0)
for name in ("mobilenet_v3_small", "mobilenet_v3_large", "mobilenet_v2"):
    for cl in (True, False):
        m = mx.fuse(mx.convert(getattr(torchvision.models, name)()).eval())
        x = torch.randn(1, 3, 224, 224)
        if cl:
            m = m.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)

        def use(ours: bool) -> None:
            if name == "mobilenet_v2":
                m.__class__ = FusedMobileNetV2 if ours else MobileNetV2
            else:
                m.avgpool = mx.nn.GlobalAvgPool2d() if ours else torch.nn.AdaptiveAvgPool2d(1)

        res = {True: [], False: []}
        with torch.no_grad():
            for _ in range(5):
                m(x)
            for r in range(15):
                for ours in (False, True):
                    use(ours)
                    m(x)
                    t = time.perf_counter()
                    for _ in range(20):
                        m(x)
                    res[ours].append((time.perf_counter() - t) / 20 * 1e3)
        ratio = statistics.median(b / a for a, b in zip(res[False], res[True]))
        print(f"{name} b1 {'cl' if cl else 'nchw'}: PyTorch's pool {statistics.median(res[False]):.3f} ms, "
              f"ours {statistics.median(res[True]):.3f} ms, ratio {ratio:.3f}", flush=True)
