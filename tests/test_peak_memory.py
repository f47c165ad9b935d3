"""Peak memory of a forward + backward step: ours <= nn.Conv2d's (F.conv2d's)
on shapes where scratch or the output cache used to add to it (the weight
gradient's per-chunk partial sums, reused buffers larger than the request).
Measured as the suite does (bytes allocated above what was live before,
from torch.profiler's memory events); deterministic, not a timing."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mobilenet_ext import ops
from mobilenet_ext.bench.layer_run import _peak_bytes

CASES = [  # kind, cin, cout, h, batch
    ("dw", 960, 960, 7, 16),
    ("dw", 128, 128, 56, 1),
    ("dw", 32, 32, 112, 1),
    ("pw", 128, 128, 56, 1),
    ("pw", 40, 240, 28, 4),
]


@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("kind,cin,cout,h,n", CASES, ids=lambda v: str(v))
def test_fwd_bwd_peak_at_most_nn_conv2d(kind, cin, cout, h, n, layout):
    torch.manual_seed(0)
    x = torch.randn(n, cin, h, h)
    if layout == "cl":
        x = x.contiguous(memory_format=torch.channels_last)
    if kind == "dw":
        w = torch.randn(cout, 1, 3, 3)
        ours = lambda x, w: ops.depthwise_conv2d(x, w, None, 1, 1, 1)  # noqa: E731
        ref = lambda x, w: F.conv2d(x, w, None, 1, 1, 1, cin)  # noqa: E731
    else:
        w = torch.randn(cout, cin, 1, 1)
        ours = lambda x, w: ops.pointwise_conv2d(x, w, None)  # noqa: E731
        ref = lambda x, w: F.conv2d(x, w)  # noqa: E731
    x.requires_grad_(True)
    w.requires_grad_(True)
    gy = torch.randn_like(ref(x, w))
    peaks = {}
    for name, fn in (("ours", ours), ("torch", ref)):
        step = lambda: torch.autograd.grad(fn(x, w), (x, w), gy)  # noqa: E731
        for _ in range(3):  # warm: the output cache holds this step's buffers
            step()
        peaks[name] = _peak_bytes(step, "cpu")
    assert peaks["ours"] is not None and peaks["torch"] is not None
    assert peaks["ours"] <= peaks["torch"], peaks
