"""Replay of a fused model's op calls (:class:`PlannedSequential`).

At batch 1 a fused MobileNet spends a large share of its time in Python
between kernels: module calls, Identity modules left by the folding, the
layers' argument checks. Measured here (2 threads, Zen 5), replaying the
dispatched op calls of one forward took 0.73x (v3-S), 0.85x (v3-L) and
0.93x (v2) of the module tree's time.

:func:`mobilenet_ext.fuse` gives the outermost nn.Sequential holding its
layers (torchvision's ``features``) this class. Its first call for an input
of a given shape, dtype and layout runs the modules as usual while recording
the ops they dispatch (TorchDispatchMode); later calls replay that list:
each op with the same constant arguments (weights, packed weights, biases)
and the outputs of earlier ops in place of the recorded ones, each
intermediate freed after its last use. The result is bitwise the module
tree's (for a float32 NCHW input: the module tree's on the input in
channels_last, see CHANNELS_LAST_INSIDE).

Two rewrites of the recorded list make the replay faster than the modules
themselves: a float32 NCHW input is converted to channels_last once and the
whole forward replayed in channels_last (CHANNELS_LAST_INSIDE), and
expand 1x1 -> depthwise -> project 1x1 sequences run on one
inverted_residual_fused call each (_fuse_blocks).

The replay loop itself runs in C++ (torch.classes.mobilenet_ext.ReplayPlan,
csrc/glue/replay.cpp: the same calls through the dispatcher, arguments
converted once), which also checks that no tensor the ops read was updated
in place; the structural checks (every submodule, parameter and training
flag still in place) are one C loop over identities (_C._same_items).
In-process A/B against the Python loop and list comparisons, batch 1: v3-S
0.88-0.90x the time, v3-L 0.93-0.95x, v2 0.93-0.98x (1 and 2 threads).

A replay runs only when it is equivalent: a plain CPU tensor as input, no
autograd recording, not tracing / compiling / exporting, no functorch
transform, no global module hooks, and nothing in the subtree changed since
the recording: every submodule still in its place (same object under the
same name), no hooks on any of them, the same training flags, the same
parameter and buffer objects where the ops read them, and none of the
tensors the ops read updated in place (version counters). Otherwise the
modules run (and record again when the plan went stale). A forward that
reads a tensor's value back into Python through an op (``.item()``, a
comparison to a bool) is never replayed, nor one that writes to its input
or to a parameter or buffer (training-mode BatchNorm). A replay does not run
the modules' Python code: side effects there (counters, prints) happen on
the recorded call only. Changing a
submodule's plain attributes after the first call (a layer's ``stride`` or
``activation``) is not seen: call :func:`clear_plans` afterwards, or set
``plan_enabled = False``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.hooks import RemovableHandle

from ._native import _C
from .nn import _tracing

_same_items = _C._same_items

__all__ = ["PlannedSequential", "clear_plans"]

_IN, _CONST, _VAL = 0, 1, 2


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls: List[Tuple[Any, tuple, dict, Any]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.calls.append((func, args, kwargs, out))
        return out


def _mutates_args(func) -> List[int]:
    """Positions of the arguments ``func`` writes to (schema ``Tensor(a!)``)."""
    out = []
    for i, a in enumerate(func._schema.arguments):
        if a.alias_info is not None and a.alias_info.is_write:
            out.append(i)
    return out


class _Plan:
    """The recorded op calls of one forward, for one input key."""

    def __init__(self, key, steps, result, consts, edges, n_vals, root: nn.Module) -> None:
        self.key = key
        self.steps = steps  # [(func, args spec, kwargs spec, out spec, frees)]
        self.result = result  # spec of the returned tensor
        self.n_vals = n_vals
        self.root = root
        self.mods = [root] + [c for _, _, c in edges]
        self.tensors = [t for t, _, _, _ in consts]  # held: their ids stay theirs
        self.versions = [v for _, v, _, _ in consts]
        self.hook_id = _hook_counter()
        # The identity checks of valid() as one C loop over (dict, key,
        # object) triples (_C._same_items: no Python objects made; with cold
        # caches 41-49 us where list comparisons took 112-207 us on v3-S):
        # every submodule under its name, every parameter and buffer the ops
        # read in its owner's dict, every training flag in its module's
        # __dict__ (True / False are singletons). A module that keeps its
        # flag elsewhere is compared in Python (`odd`).
        owned = [(d, n) for _, _, d, n in consts if d is not None]
        flagged = [m for m in self.mods if type(m.__dict__.get("training")) is bool]
        self.odd = [(m, m.training) for m in self.mods if type(m.__dict__.get("training")) is not bool]
        self.same = ([p._modules for p, _, _ in edges] + [d for d, _ in owned] + [m.__dict__ for m in flagged],
                     [n for _, n, _ in edges] + [n for _, n in owned] + ["training"] * len(flagged),
                     [c for _, _, c in edges] + [d[n] for d, n in owned] + [m.__dict__["training"] for m in flagged])
        # the forward was recorded on the input converted to channels_last
        # (CHANNELS_LAST_INSIDE); the replay converts it too (unless the stem
        # reads it as given: _stem_reads_nchw), and a 4-D result back to NCHW
        self.to_cl = False
        self.convert_input = True

    def valid(self, root: nn.Module) -> bool:
        if root is not self.root:
            return False
        if not _same_items(*self.same) or any(m.training != f for m, f in self.odd):
            return False
        if self.__dict__.get("_cpp") is None:  # (the C++ plan checks these itself)
            if [t._version for t in self.tensors] != self.versions:
                return False
            if torch.is_grad_enabled() and any(t.requires_grad for t in self.tensors):
                return False
        if _hook_counter() != self.hook_id:
            # a hook was registered somewhere since: look for one in the subtree
            if _has_hooks(root):
                return False
            self.hook_id = _hook_counter()
        return True

    def _fast_steps(self):
        """Per step (call, argument template, patches, out index, frees):
        the template holds the constants and literals, patches put the
        input (-1) and earlier outputs (index) in their positions. None when
        a step needs the general path (keyword or list arguments, several
        outputs)."""
        fast = []
        for func, aspec, kspec, ospec, frees in self.steps:
            if kspec or not (ospec is None or type(ospec) is int) or any(type(a) is not tuple for a in aspec):
                return None
            tmpl, patches = [], []
            for pos, a in enumerate(aspec):
                if a[0] == _VAL:
                    patches.append((pos, a[1]))
                    tmpl.append(None)
                elif a[0] == _IN:
                    patches.append((pos, -1))
                    tmpl.append(None)
                else:
                    tmpl.append(a[1])
            fast.append((getattr(func, "_op", func), tmpl, tuple(patches), ospec, tuple(frees)))
        return fast

    def run(self, x: Tensor) -> Optional[Tensor]:
        """The replayed forward; None (nothing run) when the C++ plan finds a
        tensor it reads updated in place, or needing grad with grad mode on."""
        if self.to_cl:
            return _to_nchw(self._run(x.contiguous(memory_format=torch.channels_last) if self.convert_input else x))
        return self._run(x)

    def _cpp_plan(self):
        """The fast steps as a torch.classes.mobilenet_ext.ReplayPlan (the
        same calls, looped in C++: csrc/glue/replay.cpp), or None when a
        step or constant is not one it takes (then the Python loop runs)."""
        fast = self.__dict__.get("_fast", False)
        if fast is False:
            fast = self.__dict__["_fast"] = self._fast_steps()
        r = self.result
        if not CPP_REPLAY or fast is None or not (r[0] == _IN or (r[0] == _VAL and type(r[1]) is int)):
            return None
        try:
            plan = torch.classes.mobilenet_ext.ReplayPlan(self.n_vals, -1 if r[0] == _IN else r[1])
            for (func, aspec, _k, _o, _f), (call, tmpl, patches, out_i, frees) in zip(self.steps, fast):
                schema = func._schema
                args = []
                for k, arg in enumerate(schema.arguments):
                    if k < len(tmpl):
                        a = tmpl[k]
                    elif arg.has_default_value():  # a trailing argument the call left to its default
                        a = arg.default_value
                    else:
                        return None
                    a = _ivalue_arg(a, arg.type)
                    if a is _NO:
                        return None
                    args.append(a)
                if len(args) != len(schema.arguments):
                    return None
                plan.add_step(schema.name, schema.overload_name, args, [p for p, _ in patches],
                              [i for _, i in patches], -1 if out_i is None else out_i, list(frees))
            for t, v in zip(self.tensors, self.versions):
                plan.add_guard(t, v)
        except Exception:  # a type the conversion does not take: the Python loop
            return None
        return plan

    def _run(self, x: Tensor):
        cpp = self.__dict__.get("_cpp", False)
        if cpp is False:
            cpp = self.__dict__["_cpp"] = self._cpp_plan()
        if cpp is not None:
            return cpp.run(x)
        fast = self.__dict__.get("_fast", False)
        if fast is False:
            fast = self.__dict__["_fast"] = self._fast_steps()
        if fast is None:
            return self._run_general(x)
        vals: List[Optional[Tensor]] = [None] * self.n_vals + [x]  # vals[-1]: the input
        for call, tmpl, patches, out_i, frees in fast:
            args = tmpl.copy()
            for pos, i in patches:
                args[pos] = vals[i]
            out = call(*args)
            if out_i is not None:
                vals[out_i] = out
            for i in frees:
                vals[i] = None
        r = self.result
        return x if r[0] == _IN else vals[r[1]]

    def _run_general(self, x: Tensor):
        vals: List[Optional[Tensor]] = [None] * self.n_vals

        def get(spec):
            kind = spec[0]
            if kind == _VAL:
                return vals[spec[1]]
            if kind == _IN:
                return x
            if kind == _CONST:
                return spec[1]
            return spec[1]  # a literal

        for func, aspec, kspec, ospec, frees in self.steps:
            args = [get(a) if type(a) is tuple else [get(e) for e in a] for a in aspec]
            kwargs = {k: (get(v) if type(v) is tuple else [get(e) for e in v]) for k, v in kspec.items()}
            out = func(*args, **kwargs)
            if ospec is not None:
                if type(ospec) is int:
                    vals[ospec] = out
                else:
                    for i, o in zip(ospec, out):
                        if i is not None:
                            vals[i] = o
            for i in frees:
                vals[i] = None
        return get(self.result)


_NO = object()


def _ivalue_arg(a, typ):
    """``a`` as the C++ plan's argument for a schema argument of type
    ``typ``: Tensors, None, bools, ints (as floats where the schema says
    float), floats, strings and lists of ints; _NO for anything else."""
    if a is None or isinstance(a, (torch.Tensor, str)):
        return a
    kind = str(typ)
    if type(a) is bool:
        return a if kind in ("bool", "Optional[bool]") else _NO
    if type(a) is int:
        if kind in ("float", "Optional[float]"):
            return float(a)
        return a if kind in ("int", "SymInt", "Optional[int]", "Optional[SymInt]") else _NO
    if type(a) is float:
        return a if kind in ("float", "Optional[float]") else _NO
    if isinstance(a, (list, tuple)) and a and all(type(e) is int for e in a):
        return list(a) if kind in ("List[int]", "List[SymInt]", "Optional[List[int]]") else _NO
    return _NO


class _Unplannable:
    """Marks an input key whose forward could not be recorded as a plan."""

    def __init__(self, key) -> None:
        self.key = key

    def valid(self, root: nn.Module) -> bool:
        return True


class _Pending:
    """The first call with an input key runs the modules unrecorded (the
    layers pack their weights on first use); the second records."""

    def __init__(self, key) -> None:
        self.key = key

    def valid(self, root: nn.Module) -> bool:
        return True


def _input_key(x: Tensor):
    return (tuple(x.shape), x.stride(), x.dtype)


def _nchw_to_cl(root: nn.Module, x: Tensor) -> bool:
    """Whether ``root``'s forward on ``x`` runs on channels_last (see
    CHANNELS_LAST_INSIDE): a float32 NCHW-contiguous 4-D input whose layout
    is not also channels_last, unless the modules failed on channels_last
    before."""
    return (CHANNELS_LAST_INSIDE and x.dim() == 4 and x.dtype == torch.float32 and x.is_contiguous()
            and not x.is_contiguous(memory_format=torch.channels_last)
            and not root.__dict__.get("_mnx_no_cl", False))


def _to_nchw(out):
    """A 4-D result of a forward run on channels_last, back in NCHW."""
    return out.contiguous() if type(out) is torch.Tensor and out.dim() == 4 else out


def _stem_reads_nchw(plan: "_Plan") -> bool:
    """For a plan recorded on the input converted to channels_last: when the
    input's only reader is the stem conv (conv2d_small_cin_fused, the input
    its first argument), that call is given ``channels_last_output=True`` so
    that the replay passes the NCHW input as it came and the stem writes
    channels_last as before, bit for bit (the same FMAs in the same order;
    only the input strip is filled from NCHW rows). The reorder of the input
    was a separate pass: [32, 3, 224, 224] 5.8 ms of a 30 ms mobilenet_v3_small
    replay (torch.profiler, 2 threads, Xeon). True when rewritten."""
    if plan.result[0] == _IN:
        return False

    def reads_input(s) -> bool:
        if type(s) is tuple:
            return s[0] == _IN
        return any(reads_input(e) for e in s)

    readers = [j for j, (_f, aspec, kspec, _o, _fr) in enumerate(plan.steps)
               if any(reads_input(a) for a in list(aspec) + list(kspec.values()))]
    if len(readers) != 1:
        return False
    j = readers[0]
    func, aspec, kspec, ospec, frees = plan.steps[j]
    if (func is not torch.ops.mobilenet_ext.conv2d_small_cin_fused.default or kspec or len(aspec) not in (6, 7)
            or aspec[0] != (_IN,) or any(reads_input(a) for a in aspec[1:])):
        return False
    aspec = list(aspec[:6]) + [(3, True)]  # channels_last_output (a literal)
    plan.steps[j] = (func, aspec, kspec, ospec, frees)
    return True


def _record(root: "PlannedSequential", x: Tensor, key):
    if _nchw_to_cl(root, x):
        try:
            rec = _Recorder()
            xr = x.contiguous(memory_format=torch.channels_last)
            with rec:
                out = nn.Sequential.forward(root, xr)
            plan = _build(root, xr, key, rec.calls, out)
            if type(plan) is _Plan:
                plan.to_cl = True
                plan.convert_input = not _stem_reads_nchw(plan)
            return _to_nchw(out), plan
        except Exception:  # modules that need NCHW (a .view on the layout, say)
            root.__dict__["_mnx_no_cl"] = True
    rec = _Recorder()
    with rec:
        out = nn.Sequential.forward(root, x)
    return out, _build(root, x, key, rec.calls, out)


def _owners(root: nn.Module) -> Dict[int, Tuple[dict, str]]:
    """id(tensor) -> (the dict holding it, its key) for every parameter,
    buffer and packed weight in ``root``'s subtree."""
    own: Dict[int, Tuple[dict, str]] = {}
    for m in root.modules():
        for d in (m._parameters, m._buffers):
            for k, t in d.items():
                if t is not None:
                    own.setdefault(id(t), (d, k))
    return own


class _InferenceConstant(Exception):
    pass


def _build(root: nn.Module, x: Tensor, key, calls, out) -> Any:
    if type(out) is not torch.Tensor:
        return _Unplannable(key)
    try:
        return _build_plan(root, x, key, calls, out)
    except _InferenceConstant:
        return _Unplannable(key)


def _build_plan(root: nn.Module, x: Tensor, key, calls, out) -> Any:
    produced: Dict[int, int] = {}  # id(tensor) -> value index
    keep = []  # keeps recorded tensors alive while ids are compared
    owners = _owners(root)
    consts: Dict[int, tuple] = {}
    steps = []
    n = 0

    def spec(a):
        if isinstance(a, torch.Tensor):
            if a is x:
                return (_IN,)
            i = produced.get(id(a))
            if i is not None:
                return (_VAL, i)
            if id(a) not in consts:
                if a.is_inference():
                    # a constant made under torch.inference_mode (a model
                    # built there): no version counter tells an in-place
                    # update, so the modules run as written
                    raise _InferenceConstant
                owner = owners.get(id(a))
                consts[id(a)] = (a, a._version, owner[0] if owner else None, owner[1] if owner else None)
            return (_CONST, a)
        return (3, a)

    for func, args, kwargs, res in calls:
        if not (res is None or isinstance(res, torch.Tensor) or (
                isinstance(res, (tuple, list)) and all(r is None or isinstance(r, torch.Tensor) for r in res))):
            # a number or bool read back into Python (.item(), a comparison): the modules may branch on it
            return _Unplannable(key)
        mut = _mutates_args(func)
        for i in mut:  # writing to the input or a constant would not replay
            a = args[i] if i < len(args) else None
            if not (isinstance(a, torch.Tensor) and id(a) in produced):
                return _Unplannable(key)
        aspec = []
        for a in args:
            if isinstance(a, (list, tuple)) and any(isinstance(e, torch.Tensor) for e in a):
                aspec.append([spec(e) for e in a])
            else:
                aspec.append(spec(a))
        kspec = {k: spec(v) for k, v in kwargs.items()}
        if isinstance(res, torch.Tensor):
            produced[id(res)] = n
            keep.append(res)
            ospec = n
            n += 1
        elif isinstance(res, (tuple, list)):
            ospec = []
            for r in res:
                if isinstance(r, torch.Tensor):
                    produced[id(r)] = n
                    keep.append(r)
                    ospec.append(n)
                    n += 1
                else:
                    ospec.append(None)
            ospec = tuple(ospec)
        else:
            ospec = None
        steps.append([func, aspec, kspec, ospec, []])
    if out is x:
        result = (_IN,)
    elif id(out) in produced:
        result = (_VAL, produced[id(out)])
    else:
        return _Unplannable(key)
    steps = _fuse_blocks(steps, keep, x, result)
    # free each value after its last read (the result is read at the end)
    last: Dict[int, int] = {}

    def reads(s):
        if type(s) is tuple:
            if s[0] == _VAL:
                yield s[1]
        else:
            for e in s:
                yield from reads(e)

    for j, (func, aspec, kspec, ospec, frees) in enumerate(steps):
        for s in list(aspec) + list(kspec.values()):
            for i in reads(s):
                last[i] = j
    for j, st in enumerate(steps):
        ospec = st[3]
        outs = [ospec] if type(ospec) is int else [o for o in (ospec or ()) if o is not None]
        for i in outs:  # never read: free at once
            last.setdefault(i, j)
    if result[0] == _VAL:
        last.pop(result[1], None)
    for i, j in last.items():
        steps[j][4].append(i)
    edges = [(parent, name, child) for parent in root.modules()
             for name, child in parent._modules.items() if child is not None]
    return _Plan(key, [tuple(s) for s in steps], result, list(consts.values()), edges, n, root)


# --- MobileNet blocks on one op ----------------------------------------------
# A recorded expand 1x1 -> depthwise -> project 1x1 (+ residual) sequence on
# channels_last float32 tensors, each intermediate read only by the next
# op, is replayed as one inverted_residual_fused call (csrc/cpu/
# inverted_residual.h: the block in bands of output rows, so the expanded
# and depthwise tensors stay in cache); expand -> depthwise and depthwise ->
# project pairs likewise. Bitwise the same result (the same kernels on the
# bands). Only where the expanded tensor is large enough for the bands to
# pay (BLOCK_FUSION_MIN_BYTES per image, measured: see the commit).
BLOCK_FUSION_MIN_BYTES = 1 << 16

# A float32 NCHW input is converted to channels_last once at the start of
# the forward (first call, recording and replays alike) and a 4-D result
# back to NCHW at the end: the channels_last ops are the faster ones here,
# and only they run the blocks on one op. The result is bitwise the module
# tree's on the channels_last input (made NCHW-contiguous), and equal to
# rounding to its result on the NCHW input: the convolutions compute every
# element with the same arithmetic in either layout, the squeeze-excitation
# means (in double) sum in another order (tests/test_plan.py checks both).
# Modules that fail on channels_last (a .view that assumes NCHW strides)
# make the container run NCHW from then on.
CHANNELS_LAST_INSIDE = True

# Replays run their op calls in a C++ loop (csrc/glue/replay.cpp) when every
# step and constant converts; False: the Python loop (the same calls).
CPP_REPLAY = True


def _fuse_blocks(steps, keep, x, result):
    if BLOCK_FUSION_MIN_BYTES is None:
        return steps
    ops = torch.ops.mobilenet_ext
    pw_op, dw_op = ops.pointwise_conv2d_packed.default, ops.depthwise_conv2d_fused.default
    reads: Dict[int, int] = {}

    def count(sp):
        if type(sp) is tuple:
            if sp[0] == _VAL:
                reads[sp[1]] = reads.get(sp[1], 0) + 1
        else:
            for e in sp:
                count(e)

    for st in steps:
        for sp in list(st[1]) + list(st[2].values()):
            count(sp)
    if result[0] == _VAL:
        reads[result[1]] = reads.get(result[1], 0) + 1

    def tensor(sp):
        if sp[0] == _IN:
            return x
        if sp[0] == _VAL:
            return keep[sp[1]]
        return None

    def nhwc_f32(t):
        return (isinstance(t, torch.Tensor) and t.dim() == 4 and t.dtype == torch.float32
                and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous())

    def is_pw(st):
        return (st[0] is pw_op and not st[2] and type(st[3]) is int and len(st[1]) == 6
                and nhwc_f32(tensor(st[1][0])))

    def is_dw(st):
        if not (st[0] is dw_op and not st[2] and type(st[3]) is int and len(st[1]) == 7):
            return False
        a = st[1]
        w = a[1][1] if a[1][0] == _CONST else None
        stride, pad, dil = a[3][1], a[4][1], a[5][1]
        return (nhwc_f32(tensor(a[0])) and isinstance(w, torch.Tensor) and w.dim() == 4
                and w.shape[1] == 1 and w.shape[2] == w.shape[3] and list(dil) == [1, 1]
                and stride[0] == stride[1] and pad[0] == pad[1] and pad[0] < w.shape[2]
                and w.shape[0] == tensor(a[0]).shape[1])

    def only_read_by_next(st):
        return st[3] != (result[1] if result[0] == _VAL else None) and reads.get(st[3], 0) == 1

    def same(a, b):  # two argument specs name the same value (no tensor ==)
        if type(a) is not tuple or type(b) is not tuple or a[0] != b[0]:
            return False
        return a[0] == _IN or a[1] is b[1] or (a[0] == _VAL and a[1] == b[1])

    out = []
    j = 0
    none = (3, None)
    while j < len(steps):
        st = steps[j]
        e = st if is_pw(st) and same(st[1][5], none) else None
        jd = j + 1 if e is not None else j
        d = steps[jd] if jd < len(steps) and is_dw(steps[jd]) else None
        if d is not None and e is not None and not (same(d[1][0], (_VAL, e[3])) and only_read_by_next(e)):
            e, jd, d = None, j, (st if is_dw(st) else None)
        if d is None:
            out.append(st)
            j += 1
            continue
        p = steps[jd + 1] if jd + 1 < len(steps) else None
        if not (p is not None and is_pw(p) and same(p[1][0], (_VAL, d[3])) and only_read_by_next(d)):
            p = None
        block_in = e[1][0] if e is not None else d[1][0]
        if p is not None and not same(p[1][5], none) and not same(p[1][5], block_in):
            p = None  # a residual other than the block's input
        t = tensor(d[1][0])
        big = t.shape[1] * t.shape[2] * t.shape[3] * 4 >= BLOCK_FUSION_MIN_BYTES
        if (e is None and p is None) or not big:
            out.append(st)
            j += 1
            continue
        a = d[1]
        args = [block_in]
        args += [e[1][1], e[1][2], e[1][3], e[1][4]] if e is not None else [none, none, none, (3, 0)]
        args += [a[1], a[2], (3, a[3][1][0]), (3, a[4][1][0]), a[6]]
        if p is not None:
            args += [p[1][1], p[1][2], p[1][3], p[1][4], (3, not same(p[1][5], none))]
        else:
            args += [none, none, none, (3, 0), (3, False)]
        last = p if p is not None else d
        out.append([ops.inverted_residual_fused.default, args, {}, last[3], []])
        j = (jd + 2) if p is not None else (jd + 1)
    return out


def _hook_counter() -> int:
    """Grows with every hook handle made anywhere (module and tensor hooks):
    unchanged means no module of the plan can have gained a hook."""
    return RemovableHandle.next_id


def _has_hooks(root: nn.Module) -> bool:
    return any(m._forward_hooks or m._forward_pre_hooks for m in root.modules())


def _global_hooks() -> bool:
    from torch.nn.modules import module as _m

    return bool(_m._global_forward_hooks or _m._global_forward_pre_hooks
                or getattr(_m, "_global_forward_hooks_always_called", None))


class PlannedSequential(nn.Sequential):
    """An nn.Sequential that replays the op calls recorded on its first call
    for each input shape (see the module docstring: when a replay runs,
    and what makes it record again). Same children, parameters and
    state_dict as the nn.Sequential it replaces."""

    plan_enabled: bool = True

    def forward(self, input: Tensor) -> Tensor:  # type: ignore[override]
        if not (
            self.plan_enabled
            and type(input) is torch.Tensor
            and input.is_cpu
            and not (torch.is_grad_enabled() and input.requires_grad)
            and not _tracing()
            and not torch._C._are_functorch_transforms_active()
            and not _global_hooks()
        ):
            return super().forward(input)
        key = _input_key(input)
        plan = self.__dict__.get("_mnx_plan")
        if plan is not None and plan.key == key and plan.valid(self):
            if type(plan) is _Plan:
                out = plan.run(input)
                if out is not None:
                    return out
                # stale (a tensor the ops read was updated in place) or
                # needing grad now: as an invalid plan, below
            elif type(plan) is _Unplannable:
                return super().forward(input)
        elif plan is None or plan.key != key:
            self.__dict__["_mnx_plan"] = _Pending(key)
            if _nchw_to_cl(self, input):  # as the recording and the replays will
                try:
                    return _to_nchw(super().forward(input.contiguous(memory_format=torch.channels_last)))
                except Exception:  # modules that need NCHW: run them as given from now on
                    self.__dict__["_mnx_no_cl"] = True
            return super().forward(input)
        if (torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())) or _has_hooks(self):
            return super().forward(input)  # keep the stale plan: recorded again once this passes
        out, plan = _record(self, input, key)
        self.__dict__["_mnx_plan"] = plan
        return out

    def __getstate__(self):
        state = super().__getstate__().copy()
        state.pop("_mnx_plan", None)  # recorded again on use
        return state


def clear_plans(model: nn.Module) -> None:
    """Forget the recorded plans in ``model`` (recorded again on the next
    call); needed after changing a submodule's plain attributes in place."""
    for m in model.modules():
        m.__dict__.pop("_mnx_plan", None)
