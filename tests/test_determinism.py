"""Bitwise determinism of the CPU kernels.

What the kernels promise (csrc/kernels/params.h) and what is checked here:

* forward (plain and fused) and grad_input: every output element / unit is
  computed by one thread from a fixed sequence of operations, independent of
  how at::parallel_for splits the units;
* grad_weight: depthwise reduces each 8-channel block over (N, OH, OW) in a
  fixed order, pointwise reduces each GEMM tile over K in a fixed order; no
  cross-thread reduction whose order depends on scheduling;

so all of them must be **bitwise identical** (``torch.equal``, and the same
bytes, so also for -0.0/NaN payloads) across repeated calls and for
``torch.set_num_threads(1)``, ``(2)`` and ``(4)``, for NCHW and channels_last
input, float32 and float64. grad_bias is ``grad.sum`` (PyTorch's reduction) and
is only checked across repeated calls at a fixed thread count.

Shapes are chosen so that there are more work units than threads and so that
most channel counts are not multiples of the 8-channel block / GEMM
micro-tile (6x16 on AVX2), with
enough (N, OH, OW) / K terms that a different reduction order would change
the float32 bits with near certainty. They include the scratch-buffer paths:
the channels_last, multiplier-1 depthwise grad_weight (partial sums per row
chunk, summed in chunk order) and the split-K pointwise grad_weight (split
count chosen from the shape only, chunks summed in order).

Caveat: on this 2-core machine 4 threads oversubscribe, which is fine for
exercising different work splits (at::parallel_for still cuts the range in
4). The thread count is restored after every test.
"""
from __future__ import annotations

import pytest
import torch

import mobilenet_ext as mx

ops = mx.ops

DW_CASES = [
    # (N, C, H, W, m, kh, kw, stride, padding, dilation)
    (2, 19, 23, 17, 1, 3, 3, 1, 1, 1),
    (3, 8, 16, 16, 2, 5, 3, 2, (2, 1), 1),
    (1, 33, 31, 29, 1, 3, 3, 1, 2, 2),
    (4, 5, 12, 40, 3, 7, 1, (1, 3), (3, 0), 1),
]
PW_CASES = [
    # (N, Cin, Cout, H, W)
    (2, 37, 29, 13, 11),
    (3, 16, 64, 8, 9),
    (1, 520, 150, 5, 7),  # crosses KC=512 and MC=144
    (2, 24, 40, 33, 32),  # HW = 1056 > NC=1024
    (4, 8, 12, 32, 32),   # few weight tiles, N*H*W = 4096: grad_weight split-K over the batch (NCHW) / rows (NHWC)
    (1, 16, 6, 64, 48),   # split-K inside one image
]
THREADS = [1, 2, 4]
LAYOUTS = [torch.contiguous_format, torch.channels_last]


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _bits(t: torch.Tensor) -> bytes:
    return t.detach().contiguous().numpy().tobytes()


def _dw_run(case, mf, dtype):
    n, c, h, w, m, kh, kw, s, p, d = case
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype).contiguous(memory_format=mf).requires_grad_(True)
    wt = torch.randn(c * m, 1, kh, kw, generator=g, dtype=dtype, requires_grad=True)
    b = torch.randn(c * m, generator=g, dtype=dtype, requires_grad=True)
    y = ops.depthwise_conv2d(x, wt, b, s, p, d)
    gy = torch.randn(y.shape, generator=g, dtype=dtype).contiguous(memory_format=mf)
    y.backward(gy)
    with torch.no_grad():
        yf = ops.depthwise_conv2d_fused(x, wt, b, s, p, d, activation="hardswish")
    return {"forward": y, "fused": yf, "grad_input": x.grad, "grad_weight": wt.grad, "grad_bias": b.grad}


def _pw_run(case, mf, dtype):
    n, ci, co, h, w = case
    g = torch.Generator().manual_seed(4321)
    x = torch.randn(n, ci, h, w, generator=g, dtype=dtype).contiguous(memory_format=mf).requires_grad_(True)
    wt = torch.randn(co, ci, 1, 1, generator=g, dtype=dtype, requires_grad=True)
    b = torch.randn(co, generator=g, dtype=dtype, requires_grad=True)
    y = ops.pointwise_conv2d(x, wt, b)
    gy = torch.randn(y.shape, generator=g, dtype=dtype).contiguous(memory_format=mf)
    y.backward(gy)
    res = torch.randn(y.shape, generator=g, dtype=dtype).contiguous(memory_format=mf)
    with torch.no_grad():
        yf = ops.pointwise_conv2d_fused(x, wt, b, "relu6", res)
    return {"forward": y, "fused": yf, "grad_input": x.grad, "grad_weight": wt.grad, "grad_bias": b.grad}


def _check(run, case, mf, dtype):
    torch.set_num_threads(THREADS[0])
    ref = {k: _bits(v) for k, v in run(case, mf, dtype).items()}
    # repeated at the same thread count: everything including grad_bias
    again = {k: _bits(v) for k, v in run(case, mf, dtype).items()}
    diff = [k for k in ref if ref[k] != again[k]]
    assert not diff, f"not bitwise reproducible across runs (1 thread): {diff}"
    for nt in THREADS[1:]:
        torch.set_num_threads(nt)
        for rep in range(2):
            out = {k: _bits(v) for k, v in run(case, mf, dtype).items()}
            diff = [k for k in ref if k != "grad_bias" and ref[k] != out[k]]
            assert not diff, f"{diff} differ bitwise between 1 and {nt} threads (run {rep})"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("mf", LAYOUTS, ids=["nchw", "nhwc"])
@pytest.mark.parametrize("case", DW_CASES, ids=lambda c: "x".join(map(str, c[:4])))
def test_depthwise_bitwise_deterministic(case, mf, dtype, restore_threads):
    """Depthwise forward, fused forward, grad_input and grad_weight are
    bitwise identical across runs and for 1, 2 and 4 threads."""
    _check(_dw_run, case, mf, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("mf", LAYOUTS, ids=["nchw", "nhwc"])
@pytest.mark.parametrize("case", PW_CASES, ids=lambda c: "x".join(map(str, c)))
def test_pointwise_bitwise_deterministic(case, mf, dtype, restore_threads):
    """Pointwise forward, fused forward (+residual), grad_input and
    grad_weight are bitwise identical across runs and for 1, 2 and 4
    threads."""
    _check(_pw_run, case, mf, dtype)



@pytest.mark.parametrize("rows,k,cols", [(15, 40, 200), (49, 96, 330), (32, 600, 1000), (9, 64, 65)])
def test_gemms_split_by_columns(rows, k, cols, restore_threads):
    """GEMMs with fewer rows than columns run split by columns over the
    threads (csrc/glue/cpu_ops.cpp, column_parts): the channels_last 1x1 at
    batch 1 on a small map (rows = pixels), the linear layers (rows =
    batch); plain, fused (bias, activation, residual) and packed. Against
    float64 and bitwise across 1-4 threads (the last part narrower than the
    others where cols is not a whole number of 64-column tiles)."""
    g = torch.Generator().manual_seed(rows * 1000 + cols)
    h, w_ = (rows, 1) if rows % 7 else (7, rows // 7)
    x = torch.randn(1, k, h, w_, generator=g).contiguous(memory_format=torch.channels_last)
    wt = torch.randn(cols, k, 1, 1, generator=g)
    b = torch.randn(cols, generator=g)
    res = torch.randn(1, cols, h, w_, generator=g).contiguous(memory_format=torch.channels_last)
    xl = torch.randn(rows, k, generator=g)
    pk_pw = ops.pointwise_pack_weight(wt, ops.gemm_panel(True))
    runs = {
        "pw": lambda: ops.pointwise_conv2d(x, wt, b),
        "pw_fused": lambda: ops.pointwise_conv2d_fused(x, wt, b, "relu6", res),
        "pw_packed": lambda: torch.ops.mobilenet_ext.pointwise_conv2d_packed(x, wt, pk_pw, b, 2, res),
        "linear": lambda: ops.linear_fused(xl, wt[:, :, 0, 0], b, "hardswish"),
        "linear_packed": lambda: ops.linear_packed(xl, wt[:, :, 0, 0], pk_pw, b, "hardswish"),
    }
    pw_ref = torch.nn.functional.conv2d(x.double(), wt.double(), b.double())
    lin_ref = torch.nn.functional.hardswish(xl.double() @ wt[:, :, 0, 0].double().t() + b.double())
    refs = {"pw": pw_ref, "pw_fused": torch.nn.functional.relu6(pw_ref) + res.double(),
            "pw_packed": torch.nn.functional.relu6(pw_ref) + res.double(), "linear": lin_ref,
            "linear_packed": lin_ref}
    with torch.no_grad():
        for name, f in runs.items():
            outs = []
            for t in (1, 2, 3, 4):
                torch.set_num_threads(t)
                outs.append(f())
            torch.testing.assert_close(outs[0].double(), refs[name], rtol=1e-5, atol=1e-5 * k ** 0.5)
            for t, o in zip((2, 3, 4), outs[1:]):
                assert torch.equal(o, outs[0]), (name, t)
