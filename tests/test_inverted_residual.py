"""inverted_residual_fused: a channels_last MobileNet block in bands of rows.

Checked against the three separate ops (bitwise: the op runs the same
kernels on bands) and against F.conv2d in float64 with a rounding bound, on
the block configurations of V2 / V3 and awkward ones (channel counts not a
multiple of 8, stride 2, 5x5 / 7x7, tiny maps, batch > 1), for 1 and 2
threads; its errors; and its use by the fused-model replay.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

import mobilenet_ext as mx
from mobilenet_ext._plan import PlannedSequential

from _helpers import assert_close

ops = torch.ops.mobilenet_ext
ACT = {0: lambda t: t, 1: F.relu, 2: F.relu6, 3: F.hardswish}

# (N, Cin, H, W, Cexp or None (no expand), K, stride, Cout or None (no project), residual)
CASES = [
    (1, 24, 56, 56, 144, 3, 1, 24, True),     # v2 block 3
    (1, 16, 112, 112, 96, 3, 2, 24, False),   # v2 block 2
    (1, 32, 112, 112, None, 3, 1, 16, False), # v2 block 1 (no expand)
    (2, 40, 28, 28, 240, 5, 1, 40, True),     # v3-large 5x5
    (1, 96, 14, 14, 576, 5, 2, None, False),  # expand + depthwise only (SE follows in v3)
    (3, 7, 9, 11, 13, 3, 2, 5, False),        # odd everything
    (1, 8, 5, 3, 20, 7, 1, 8, True),          # 7x7 wider than the map
    (1, 5, 1, 1, 6, 3, 1, 5, True),           # 1x1 map
    (2, 12, 6, 6, 72, 3, 2, 20, False),       # 3x3 output: a few rows per thread
    (1, 160, 7, 7, 960, 3, 1, 160, True),     # v2 7x7 block
]


def _block(case, acts, seed=0):
    N, Cin, H, W, Cexp, K, S, Cout, res = case
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, Cin, H, W, generator=g).contiguous(memory_format=torch.channels_last)
    panel = mx.ops.gemm_panel(True)
    p = {"x": x, "K": K, "S": S, "P": K // 2, "res": res, "acts": acts}
    C = Cexp or Cin

    def pointwise(co, ci):  # weight, its packed form, bias (None without the layer)
        if not co:
            return None, None, None
        w = torch.randn(co, ci, 1, 1, generator=g) / ci ** 0.5
        return w, mx.ops.pointwise_pack_weight(w, panel), torch.randn(co, generator=g)

    p["ew"], p["ep"], p["eb"] = pointwise(Cexp, Cin)
    p["dw"] = torch.randn(C, 1, K, K, generator=g) / K
    p["db"] = torch.randn(C, generator=g)
    p["pw"], p["pp"], p["pb"] = pointwise(Cout, C)
    return p


def _fused(p):
    a = p["acts"]
    return ops.inverted_residual_fused(p["x"], p["ew"], p["ep"], p["eb"], a[0], p["dw"], p["db"], p["S"],
                                       p["P"], a[1], p["pw"], p["pp"], p["pb"], a[2], p["res"])


def _separate(p):
    a, x = p["acts"], p["x"]
    r = x
    if p["ew"] is not None:
        r = ops.pointwise_conv2d_packed(r, p["ew"], p["ep"], p["eb"], a[0], None)
    r = ops.depthwise_conv2d_fused(r, p["dw"], p["db"], [p["S"]] * 2, [p["P"]] * 2, [1, 1], a[1])
    if p["pw"] is not None:
        r = ops.pointwise_conv2d_packed(r, p["pw"], p["pp"], p["pb"], a[2], x if p["res"] else None)
    return r


def _reference64(p):
    a = p["acts"]
    d = lambda t: None if t is None else t.double()
    x = p["x"].double()
    r = x
    if p["ew"] is not None:
        r = ACT[a[0]](F.conv2d(r, d(p["ew"]), d(p["eb"])))
    r = ACT[a[1]](F.conv2d(r, d(p["dw"]), d(p["db"]), p["S"], p["P"], 1, r.shape[1]))
    if p["pw"] is not None:
        r = ACT[a[2]](F.conv2d(r, d(p["pw"]), d(p["pb"])))
        if p["res"]:
            r = r + x
    return r


@pytest.fixture
def threads():
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
@pytest.mark.parametrize("acts", [(2, 2, 0), (3, 3, 0), (1, 0, 1)], ids=["relu6", "hardswish", "relu-none-relu"])
def test_matches_separate_ops_and_float64(case, acts, threads):
    p = _block(case, acts)
    ref64 = _reference64(p)
    outs = []
    for n in (1, 2):
        torch.set_num_threads(n)
        y = _fused(p)
        assert y.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(y, _separate(p)), f"{n} thread(s): not bitwise the separate ops"
        assert_close(y, ref64, torch.float32, "float64 F.conv2d reference")
        outs.append(y)
    assert torch.equal(outs[0], outs[1]), "thread count changed the bits"


def test_nan_propagates():
    p = _block(CASES[0], (0, 0, 0))
    p["x"][0, 3, 20, 20] = float("nan")
    y = _fused(p)
    assert torch.isnan(y).any() and torch.equal(torch.isnan(y), torch.isnan(_separate(p)))


def test_errors():
    p = _block(CASES[0], (2, 2, 0))
    a = (2, 2, 0)
    nchw = p["x"].contiguous()
    with pytest.raises(ValueError, match="channels_last"):
        ops.inverted_residual_fused(nchw, p["ew"], p["ep"], p["eb"], 2, p["dw"], p["db"], 1, 1, 2,
                                    p["pw"], p["pp"], p["pb"], 0, True)
    with pytest.raises(ValueError, match="dw_weight"):
        ops.inverted_residual_fused(p["x"], p["ew"], p["ep"], p["eb"], 2, p["dw"][:5], p["db"], 1, 1, 2,
                                    p["pw"], p["pp"], p["pb"], 0, True)
    with pytest.raises(ValueError, match="residual"):
        ops.inverted_residual_fused(p["x"], p["ew"], p["ep"], p["eb"], 2, p["dw"], p["db"], 2, 1, 2,
                                    p["pw"], p["pp"], p["pb"], 0, True)
    with pytest.raises(ValueError, match="together"):
        ops.inverted_residual_fused(p["x"], p["ew"], None, p["eb"], 2, p["dw"], p["db"], 1, 1, 2,
                                    p["pw"], p["pp"], p["pb"], 0, True)
    with pytest.raises(ValueError, match="packed"):
        ops.inverted_residual_fused(p["x"], p["ew"], p["ep"][:, :3], p["eb"], 2, p["dw"], p["db"], 1, 1, 2,
                                    p["pw"], p["pp"], p["pb"], 0, True)
    with pytest.raises(ValueError, match="float32"):
        ops.inverted_residual_fused(p["x"].double(), p["ew"], p["ep"], p["eb"], 2, p["dw"], p["db"], 1, 1,
                                    2, p["pw"], p["pp"], p["pb"], 0, True)
    with pytest.raises(ValueError, match="padding"):
        ops.inverted_residual_fused(p["x"], p["ew"], p["ep"], p["eb"], 2, p["dw"], p["db"], 1, 3, 2,
                                    p["pw"], p["pp"], p["pb"], 0, True)
    with pytest.raises(ValueError, match="activation"):
        ops.inverted_residual_fused(p["x"], p["ew"], p["ep"], p["eb"], 9, p["dw"], p["db"], 1, 1, 2,
                                    p["pw"], p["pp"], p["pb"], 0, True)
    del a


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"])
def test_fused_models_replay_blocks_on_the_op(name):
    torch.manual_seed(0)
    fast = mx.fuse(mx.convert(getattr(torchvision.models, name)().eval()).eval())
    x = torch.randn(1, 3, 128, 128).to(memory_format=torch.channels_last)
    with torch.no_grad():
        ys = [fast(x) for _ in range(3)]
        plan = fast.features.__dict__["_mnx_plan"]
        n = sum(1 for st in plan.steps if st[0] is ops.inverted_residual_fused.default)
        assert n > 0
        for m in fast.modules():
            if isinstance(m, PlannedSequential):
                m.plan_enabled = False
        want = fast(x)
    assert all(torch.equal(y, want) for y in ys)


def test_opcheck():
    p = _block(CASES[5], (2, 2, 0))
    a = p["acts"]
    args = (p["x"], p["ew"], p["ep"], p["eb"], a[0], p["dw"], p["db"], p["S"], p["P"], a[1], p["pw"], p["pp"],
            p["pb"], a[2], p["res"])
    torch.library.opcheck(ops.inverted_residual_fused.default, args,
                          test_utils=("test_schema", "test_faketensor"))


def test_functional_wrapper():
    p = _block(CASES[0], (2, 2, 0))
    y = mx.ops.inverted_residual_fused(p["x"], p["dw"], p["db"], stride=1, padding=1, dw_activation="relu6",
                                       expand=(p["ew"], p["ep"], p["eb"], "relu6"),
                                       project=(p["pw"], p["pp"], p["pb"], None), residual=True)
    assert torch.equal(y, _separate(p))
    q = _block(CASES[4], (3, 3, 0))
    y = mx.ops.inverted_residual_fused(q["x"], q["dw"], q["db"], stride=2, padding=2, dw_activation="hardswish",
                                       expand=(q["ew"], q["ep"], q["eb"], "hardswish"))
    assert torch.equal(y, _separate(q))
    with pytest.raises(ValueError, match="activation"):
        mx.ops.inverted_residual_fused(q["x"], q["dw"], q["db"], dw_activation="gelu")
