"""The fused model's op-call replay (mobilenet_ext._plan.PlannedSequential):
bitwise the module tree's result, and recorded again (or not used) whenever
the replay would differ."""
from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn as tnn

import mobilenet_ext as mx
from mobilenet_ext._plan import PlannedSequential, _Plan, clear_plans
from _helpers import torchvision_eval_model


def _fused(name):
    return mx.fuse(mx.convert(torchvision_eval_model(name)).eval())


def _unplanned(model):
    m = copy.deepcopy(model)
    for s in m.modules():
        if isinstance(s, PlannedSequential):
            s.plan_enabled = False
    return m


def _nchw_f32(x):
    return x.dim() == 4 and x.dtype == torch.float32 and x.is_contiguous() and not x.is_contiguous(
        memory_format=torch.channels_last)


def _tree(model, x):
    """The module tree's result on ``x`` as the replay computes it
    (_plan.CHANNELS_LAST_INSIDE): each PlannedSequential runs a float32
    NCHW input in channels_last and gives a 4-D result back in NCHW."""
    m = _unplanned(model)
    for s in m.modules():
        if isinstance(s, PlannedSequential):
            def fwd(inp, s=s):
                if _nchw_f32(inp):
                    out = tnn.Sequential.forward(s, inp.contiguous(memory_format=torch.channels_last))
                    return out.contiguous() if out.dim() == 4 else out
                return tnn.Sequential.forward(s, inp)
            s.forward = fwd
    return m(x)


def _plan_of(model):
    return model.features.__dict__.get("_mnx_plan")


def _replays_bitwise(fs, x, calls=3):
    """``fs`` (a fused PlannedSequential) called ``calls`` times on ``x``
    (recorded, then replayed), each result bitwise the module tree's; the
    last one."""
    assert type(fs) is PlannedSequential
    with torch.no_grad():
        want = _tree(fs, x)
        for i in range(calls):
            got = fs(x)
            assert torch.equal(got, want), f"call {i}"
    return got


def _replayed(name, x, calls=3):
    """The fused model after ``calls`` calls on ``x`` (the third replays),
    and the last call's result."""
    fast = _fused(name)
    with torch.no_grad():
        for _ in range(calls):
            out = fast(x)
    return fast, out


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_replay_is_bitwise_the_module_tree(name, fmt):
    fast = _fused(name)
    assert type(fast.features) is PlannedSequential and type(fast.classifier) is PlannedSequential
    ref = _unplanned(fast)
    for batch in (1, 2):
        x = torch.randn(batch, 3, 96, 96).to(memory_format=fmt)
        with torch.no_grad():
            # an NCHW input is replayed in channels_last (CHANNELS_LAST_INSIDE):
            # bitwise the module tree on the channels_last input, equal to
            # rounding (squeeze-excitation means) to it on the NCHW one
            want = _tree(fast, x)
            torch.testing.assert_close(ref(x), want, rtol=1e-5, atol=1e-5)
            for i in range(3):
                got = fast(x)
                assert torch.equal(got, want), f"call {i}"
                feats = fast.features(x)
                assert feats.is_contiguous(memory_format=fmt)
        plan = _plan_of(fast)
        assert type(plan) is _Plan and plan.key[0] == tuple(x.shape)
        # an NCHW input is not reordered by a separate pass: the stem reads
        # it as it came and writes channels_last (_stem_reads_nchw)
        assert plan.convert_input is (fmt != torch.contiguous_format)
        stem = [s for s in plan.steps if s[0] is torch.ops.mobilenet_ext.conv2d_small_cin_fused.default]
        assert len(stem) == 1 and (fmt == torch.channels_last or stem[0][1][6] == (3, True))
    # grad mode with nothing requiring grad: replays too
    assert torch.equal(fast(x), want)


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_inference_mode(fmt):
    # under torch.inference_mode the first calls pack the pointwise weights:
    # those copies are normal tensors (a version counter the plan reads), so
    # the forward is recorded and replayed as under no_grad, bitwise
    x = torch.randn(2, 3, 64, 64).to(memory_format=fmt)
    fast = _fused("mobilenet_v3_small")
    with torch.no_grad():
        want = _tree(fast, x)
    with torch.inference_mode():
        for i in range(3):
            assert torch.equal(fast(x), want), f"call {i}"
    assert type(_plan_of(fast)) is _Plan
    # a model built under inference_mode (weights are inference tensors, no
    # version counter): runs unpacked and unplanned, equal to rounding
    with torch.inference_mode():
        ref = mx.convert(torchvision_eval_model("mobilenet_v3_small")).eval()
        built = mx.fuse(copy.deepcopy(ref))
        want = ref(x)
        for i in range(3):
            torch.testing.assert_close(built(x), want, rtol=1e-4, atol=1e-5)
    assert type(_plan_of(built)) is not _Plan


def test_recorded_again_when_something_changes():
    x = torch.randn(1, 3, 64, 64)
    fast, _ = _replayed("mobilenet_v3_small", x)
    with torch.no_grad():
        plan = _plan_of(fast)
        assert type(plan) is _Plan
        # a weight updated in place
        fast.features[2].block[0][0].weight.mul_(1.5)
        assert torch.equal(fast(x), _tree(fast, x))
        assert _plan_of(fast) is not plan
        # a module replaced (same class: the plan must not run the old one)
        fast.features[4] = copy.deepcopy(fast.features[4])
        fast.features[4].block[0][0].weight.mul_(0.5)
        assert torch.equal(fast(x), _tree(fast, x))
        # a parameter object replaced
        conv = fast.features[5].block[0][0]
        conv.weight = tnn.Parameter(conv.weight * 2, requires_grad=False)
        assert torch.equal(fast(x), _tree(fast, x))
        # an Identity replaced by an activation
        fast.features[0][1] = tnn.ReLU()
        assert torch.equal(fast(x), _tree(fast, x))
        # a hook: runs (the modules run while it is registered)
        seen = []
        h = fast.features[3].register_forward_hook(lambda m, i, o: seen.append(o.shape))
        fast(x)
        fast(x)
        assert len(seen) == 2
        h.remove()
        assert torch.equal(fast(x), _tree(fast, x))
        fast(x)
        kept = _plan_of(fast)
        # a hook made elsewhere (a tensor hook) leaves the plan as it is
        torch.zeros(1, requires_grad=True).register_hook(lambda g: g)
        fast(x)
        assert _plan_of(fast) is kept
        # another input shape
        y = torch.randn(2, 3, 80, 72)
        assert torch.equal(fast(y), _tree(fast, y))
        # a plain attribute changed: seen after clear_plans
        fast(x)
        fast.features[1].block[1].use_op = False
        clear_plans(fast)
        assert torch.equal(fast(x), _tree(fast, x))


def test_not_used_when_autograd_or_tracing_records():
    fast = _fused("mobilenet_v3_small")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        fast(x)
        fast(x)
    plan = _plan_of(fast)
    calls = []
    orig = _Plan.run
    _Plan.run = lambda self, inp: calls.append(1) or orig(self, inp)
    try:
        with torch.no_grad():
            fast(x)
        assert len(calls) == 2  # features and classifier
        traced = torch.jit.trace(fast, x, check_trace=False)
        x.requires_grad_(True)
        fast(x)  # autograd records: the modules run
        x.requires_grad_(False)
        assert len(calls) == 2
        with torch.no_grad():
            # the trace holds the unpacked ops (other rounding)
            torch.testing.assert_close(traced(x), fast(x), rtol=1e-4, atol=1e-5)
        exported = torch.export.export(fast, (x,))
        assert any("mobilenet_ext" in str(n.target) for n in exported.graph.nodes)
        assert _plan_of(fast) is plan
    finally:
        _Plan.run = orig


def test_copy_and_pickle_drop_the_plan():
    fast = _fused("mobilenet_v2")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        fast(x)
        fast(x)
    assert type(_plan_of(fast)) is _Plan
    for other in (copy.deepcopy(fast), pickle.loads(pickle.dumps(fast))):
        assert _plan_of(other) is None
        with torch.no_grad():
            assert torch.equal(other(x), fast(x))
            other(x)
            assert torch.equal(other(x), fast(x))


class _ViewFlatten(tnn.Module):
    def forward(self, x):
        return x.view(x.shape[0], -1)  # assumes NCHW strides: fails on channels_last


def test_modules_that_need_nchw_run_nchw():
    seq = tnn.Sequential(tnn.Conv2d(8, 8, 3, padding=1, groups=8), tnn.ReLU(), tnn.Conv2d(8, 16, 1),
                         _ViewFlatten(), tnn.Linear(16 * 25, 4)).eval()
    fs = mx.fuse(mx.convert(seq).eval())
    z = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        want = _unplanned(fs)(z)
        for _ in range(3):
            assert torch.equal(fs(z), want)
    assert fs.__dict__.get("_mnx_no_cl") is True


def test_mx_models_and_plain_sequential():
    m = mx.models.mobilenet_v2(width_mult=0.5).eval()
    fast = mx.fuse(m)
    assert any(type(s) is PlannedSequential for s in fast.modules())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want = _tree(fast, x)
        for _ in range(3):
            assert torch.equal(fast(x), want)
    seq = tnn.Sequential(tnn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), tnn.BatchNorm2d(8), tnn.ReLU(),
                         tnn.Conv2d(8, 16, 1), tnn.Flatten(), tnn.Linear(16 * 25, 4)).eval()
    fs = mx.fuse(mx.convert(seq).eval())
    _replays_bitwise(fs, torch.randn(2, 8, 5, 5))
    assert fs.__dict__["_mnx_plan"].convert_input  # no stem: the input reordered first


class _StemTwice(tnn.Module):
    """A stem conv whose input is also read by another op."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = tnn.Sequential(tnn.Conv2d(3, 8, 3, 2, 1), tnn.ReLU6())

    def forward(self, x):
        return self.stem(x) + x.mean()


@pytest.mark.parametrize("twice", [False, True])
def test_stem_reads_the_nchw_input(twice):
    # a stem on an NCHW input writes channels_last itself, unless the input
    # has other readers (then it is reordered once first, as before)
    body = _StemTwice() if twice else tnn.Sequential(tnn.Conv2d(3, 8, 3, 2, 1), tnn.ReLU6())
    seq = tnn.Sequential(body, tnn.Conv2d(8, 8, 3, padding=1, groups=8), tnn.Hardswish(), tnn.Conv2d(8, 12, 1)).eval()
    fs = mx.fuse(mx.convert(seq).eval())
    assert _replays_bitwise(fs, torch.randn(2, 3, 17, 23)).is_contiguous()
    assert fs.__dict__["_mnx_plan"].convert_input is twice


class _Branchy(tnn.Module):
    def forward(self, x):
        return x * 2 if x.sum() > 0 else x * 3  # reads a value back into Python


def test_data_dependent_and_mutating_forwards_are_not_replayed():
    from mobilenet_ext._plan import _Unplannable

    seq = tnn.Sequential(tnn.Conv2d(4, 4, 1), _Branchy()).eval()
    fs = mx.fuse(mx.convert(seq).eval())
    x = torch.ones(1, 4, 3, 3)
    with torch.no_grad():
        for _ in range(3):
            fs(x)
        assert type(fs.__dict__["_mnx_plan"]) is _Unplannable
        for sign in (1, -1, 1, -1):
            z = x * sign * 100
            assert torch.equal(fs(z), _tree(fs, z))
    # training-mode BatchNorm updates its buffers in place: not replayed
    bn = PlannedSequential(tnn.Conv2d(4, 4, 1), tnn.BatchNorm2d(4)).train()
    for p in bn.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        for _ in range(3):
            bn(torch.randn(2, 4, 3, 3))
    assert type(bn.__dict__["_mnx_plan"]) is _Unplannable
    assert bn[1].num_batches_tracked.item() == 3


class _Cat(tnn.Module):
    def forward(self, x):
        return torch.cat([x, x * 2], dim=1)  # a tensor-list argument: the general replay path


def test_general_and_fast_replay_paths_agree():
    seq = tnn.Sequential(tnn.Conv2d(4, 4, 1), _Cat(), tnn.Conv2d(8, 8, 3, padding=1, groups=8)).eval()
    fs = mx.fuse(mx.convert(seq).eval())
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        want = _tree(fs, x)
        for _ in range(3):
            assert torch.equal(fs(x), want)
        plan = fs.__dict__["_mnx_plan"]
        assert type(plan) is _Plan and plan.__dict__["_fast"] is None  # the list argument
    y = torch.randn(1, 3, 64, 64)
    fast, _ = _replayed("mobilenet_v3_small", y)
    with torch.no_grad():
        plan = _plan_of(fast)
        assert plan.__dict__["_fast"] is not None
        assert torch.equal(plan.run(y), plan._run_general(y.contiguous(memory_format=torch.channels_last)).contiguous())


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small"])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_cpp_and_python_replay_loops_agree(name, fmt, monkeypatch):
    import mobilenet_ext._plan as P

    x = torch.randn(2, 3, 80, 64).to(memory_format=fmt)
    fast, got = _replayed(name, x)
    with torch.no_grad():
        plans = [s.__dict__["_mnx_plan"] for s in fast.modules() if isinstance(s, PlannedSequential)]
        assert len(plans) == 2
        for p in plans:  # the C++ loop ran
            assert isinstance(p.__dict__.get("_cpp"), torch.ScriptObject)
            assert p.__dict__["_cpp"].num_steps() == len(p.steps)
        monkeypatch.setattr(P, "CPP_REPLAY", False)
        clear_plans(fast)
        for _ in range(3):
            want = fast(x)
        for s in fast.modules():
            if isinstance(s, PlannedSequential):
                assert s.__dict__["_mnx_plan"].__dict__.get("_cpp", "unset") is None
    assert torch.equal(got, want)
    assert torch.equal(got, _tree(fast, x))


def test_validity_checks_training_flags_guards_and_bad_plans():
    from mobilenet_ext._native import _C

    x = torch.randn(1, 3, 64, 64)
    fast, _ = _replayed("mobilenet_v3_small", x)
    plan = _plan_of(fast)
    assert plan.same is not None and not plan.odd and plan.valid(fast.features)
    # one submodule's training flag flipped (not the root's)
    sub = fast.features[3].block[1]
    flags = [m.training for m in sub.modules()]
    sub.train(not sub.training)
    assert not plan.valid(fast.features)
    for m, f in zip(sub.modules(), flags):
        m.training = f
    assert plan.valid(fast.features)
    # the C++ plan's guards: a weight that needs grad with grad mode on, a
    # weight updated in place
    xc = x.contiguous(memory_format=torch.channels_last)
    w = fast.features[2].block[0][0].weight
    w.requires_grad_(True)
    assert plan.run(xc) is None
    with torch.no_grad():
        assert plan.run(xc) is not None
        w.requires_grad_(False)
        w.add_(0.0)
        assert plan.run(xc) is None
    # the pieces reject what they cannot take
    with pytest.raises(ValueError, match="same length"):
        _C._same_items([{}], [], [])
    with pytest.raises(TypeError, match="not a dict"):
        _C._same_items([1], ["a"], [None])
    assert _C._same_items([{"a": x}], ["a"], [x]) and not _C._same_items([{"a": x}], ["b"], [x])
    rp = torch.classes.mobilenet_ext.ReplayPlan(2, 1)
    with pytest.raises(RuntimeError, match="takes 2 arguments"):
        rp.add_step("aten::mul", "Tensor", [None], [0], [-1], 0, [])
    with pytest.raises(RuntimeError, match="bad output slot"):
        rp.add_step("aten::mul", "Tensor", [None, x], [0], [-1], 5, [])
    with pytest.raises(RuntimeError, match="bad patch"):
        rp.add_step("aten::mul", "Tensor", [None, x], [3], [-1], 0, [])
    with pytest.raises(RuntimeError, match="bad slots"):
        torch.classes.mobilenet_ext.ReplayPlan(1, 4)
    rp.add_step("aten::mul", "Tensor", [None, x], [0], [-1], 0, [])
    rp.add_step("aten::add", "Tensor", [None, x, 1], [0], [0], 1, [0])
    assert torch.equal(rp.run(x), x * x + x)
