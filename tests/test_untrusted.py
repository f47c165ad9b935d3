"""Files a user did not make (issue #18): a checkpoint (`train --resume`,
`export --checkpoint`) or a CIFAR-10 folder (`train --data`) never runs code
on load; truncated, empty and wrong-type files are clear errors; fuzzed
files raise only the loaders' own error; a run SIGKILLed while saving always
leaves a loadable checkpoint (the previous or the new one) and `--resume`
continues it bit for bit."""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import pathlib
import pickle
import queue
import random
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mobilenet_ext import train as T
from mobilenet_ext.__main__ import main as cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread (the suite shares two cores with other jobs)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def parse(argv):
    p = argparse.ArgumentParser()
    T.add_arguments(p)
    return p.parse_args(argv)


SMALL = ["--model", "mobilenet_v3_small", "--width-mult", "0.5", "--batch-size", "32", "--lr", "0.1", "--threads", "1",
         "--no-progress", "--seed", "3"]


@pytest.fixture(scope="module")
def small_digits():
    """256 train / 64 test digits at 16x16: 8 steps per epoch."""
    d = T.load_digits(16)
    return dataclasses.replace(d, train_x=d.train_x[:256], train_y=d.train_y[:256],
                               test_x=d.test_x[:64], test_y=d.test_y[:64])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, small_digits):
    """A real checkpoint: 4-epoch schedule stopped after epoch 1 (resumable)."""
    out = tmp_path_factory.mktemp("run")
    T.train(parse(SMALL + ["--epochs", "4", "--max-steps", "8", "--out", str(out)]), dataset=small_digits,
            log=lambda *a: None)
    assert (out / "last.pt").is_file()
    return out


class Payload:
    """Unpickling this calls ``exec``, which writes ``marker``: what a
    crafted file does to a plain ``pickle.load`` / ``torch.load(weights_only=False)``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('code ran')",)


def test_payload_runs_code_under_plain_unpickling(tmp_path):
    """The payload is live: plain unpickling runs it (so the refusals below
    are not vacuous)."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps({"x": Payload(marker)}))
    assert marker.read_text() == "code ran"


def _copy_ckpt(run_dir, dst, edit=None):
    ck = torch.load(run_dir / "last.pt", weights_only=True)
    if edit is not None:
        edit(ck)
    torch.save(ck, dst)
    return dst


def _train_resume(capsys, path, *extra):
    rc = cli(["train", *SMALL, "--image-size", "16", "--epochs", "4", "--resume", str(path), *extra])
    return rc, capsys.readouterr()


def _export(capsys, path, tmp_path, *extra):
    rc = cli(["export", "--checkpoint", str(path), "--input-size", "32", "--out", str(tmp_path / "exp"),
              "--no-onnx", "--no-torch-export", *extra])
    return rc, capsys.readouterr()


# --------------------------------------------------------------------------
# Checkpoints that would run code
# --------------------------------------------------------------------------
def _evil_checkpoints(run_dir, tmp_path, marker):
    """A real checkpoint with the payload inside, the payload as the whole
    torch.save file, and the payload as a bare pickle (not torch's zip)."""
    inside = _copy_ckpt(run_dir, tmp_path / "inside.pt", lambda ck: ck["history"].append(Payload(marker)))
    whole = tmp_path / "whole.pt"
    torch.save(Payload(marker), whole)
    bare = tmp_path / "bare.pt"
    bare.write_bytes(pickle.dumps({"config": {}, "model_state": Payload(marker)}))
    return {"inside": (inside, "builtins.exec"), "whole": (whole, "builtins.exec"),
            "bare": (bare, "expected a complete zip archive")}


@pytest.mark.parametrize("command", ["train --resume", "export --checkpoint"])
def test_checkpoint_that_runs_code_is_refused(run_dir, tmp_path, capsys, command):
    marker = tmp_path / "ran"
    for kind, (path, needle) in _evil_checkpoints(run_dir, tmp_path, marker).items():
        if command == "train --resume":
            rc, io_ = _train_resume(capsys, path)
        else:
            rc, io_ = _export(capsys, path, tmp_path)
        assert rc == 2, (kind, io_.out, io_.err)
        assert str(path) in io_.err and needle in io_.err and "Traceback" not in io_.err, (kind, io_.err)
        if needle == "builtins.exec":
            assert "--trust-checkpoint" in io_.err and "runs any code" in io_.err
        assert not marker.exists(), f"{kind}: loading ran the payload"
        with pytest.raises(T.TrainError, match="builtins.exec|expected a complete zip archive"):
            T.load_checkpoint(str(path))
        assert not marker.exists()


def test_new_checkpoints_need_no_allowlist(run_dir):
    """Everything in a checkpoint written now is a tensor, number, string,
    list or dict: torch's own weights-only loader reads it without extras."""
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(run_dir / "last.pt")) == []
    ck = torch.load(run_dir / "last.pt", weights_only=True)
    rng = ck["rng"][0]
    assert rng["numpy"]["key"].dtype == torch.int64 and rng["numpy"]["key"].shape == (624,)
    assert rng["python"]["internal"].dtype == torch.int64 and rng["python"]["internal"].shape == (625,)
    assert all(isinstance(v, (str, int, float, bool, type(None), list)) for v in ck["config"].values())


# --------------------------------------------------------------------------
# Checkpoints of the previous format, and the opt-in flag
# --------------------------------------------------------------------------
def _legacy(ck, np_state, py_state):
    """What the previous version wrote: numpy's get_state() tuple (with its
    uint32 array) and random.getstate() as they are."""
    ck["rng"] = [dict(ck["rng"][0], numpy=np_state, python=py_state)]


def test_previous_format_resumes_safely_with_its_rng_states(run_dir, tmp_path, small_digits):
    np_state = np.random.RandomState(1234).get_state()
    py_state = random.Random(99).getstate()
    legacy = _copy_ckpt(run_dir, tmp_path / "legacy.pt", lambda ck: _legacy(ck, np_state, py_state))
    assert set(torch.serialization.get_unsafe_globals_in_checkpoint(str(legacy))) >= {"numpy.ndarray",
                                                                                      "numpy.dtype"}
    with pytest.raises(pickle.UnpicklingError, match="numpy"):  # torch's plain weights-only loader refuses it ...
        torch.load(legacy, weights_only=True)
    ck = T.load_checkpoint(str(legacy))  # ... ours allows exactly numpy's array + dtype for it
    assert np.array_equal(ck["rng"][0]["numpy"][1], np_state[1])
    # resuming it restores numpy's and Python's generators and continues like the new format does
    a = T.train(parse(SMALL + ["--epochs", "4", "--max-steps", "16", "--resume", str(legacy)]), dataset=small_digits,
                log=lambda *a: None)
    assert np.array_equal(np.random.get_state()[1], np_state[1]) and np.random.get_state()[2] == np_state[2]
    assert random.getstate() == py_state
    b = T.train(parse(SMALL + ["--epochs", "4", "--max-steps", "16", "--resume", str(run_dir / "last.pt")]),
                dataset=small_digits, log=lambda *a: None)
    assert a.steps == b.steps == 16 and a.step_losses == b.step_losses


def test_previous_format_with_other_objects_needs_the_trust_flag(run_dir, tmp_path, small_digits, capsys):
    """The previous version pickled the config as given: train() called from
    Python with a pathlib.Path wrote a PosixPath (a PurePosixPath here, so
    the test runs anywhere), which the safe loader does not build.  Refused with the names and the way out; --trust-checkpoint
    loads it, and the resumed run's next checkpoint is in the safe format."""
    legacy = _copy_ckpt(run_dir, tmp_path / "legacy.pt", lambda ck: (
        _legacy(ck, np.random.get_state(), random.getstate()), ck["config"].update(out=pathlib.PurePosixPath("/x"))))
    rc, io_ = _train_resume(capsys, legacy)
    assert rc == 2 and "pathlib.PurePosixPath" in io_.err and "--trust-checkpoint" in io_.err, io_.err
    assert str(legacy) in io_.err
    rc, io_ = _export(capsys, legacy, tmp_path)
    assert rc == 2 and "pathlib.PurePosixPath" in io_.err and "--trust-checkpoint" in io_.err, io_.err
    # opted in: export builds the model from it, train resumes it
    rc, io_ = _export(capsys, legacy, tmp_path, "--trust-checkpoint")
    assert rc == 0 and "mobilenet_v3_small x0.5 (10 classes" in io_.out, io_.err
    out = tmp_path / "resumed"
    with pytest.raises(T.TrainError, match="pathlib.PurePosixPath"):
        T.train(parse(SMALL + ["--epochs", "4", "--max-steps", "16", "--out", str(out), "--resume", str(legacy)]),
                dataset=small_digits, log=lambda *a: None)
    r = T.train(parse(SMALL + ["--epochs", "4", "--max-steps", "16", "--out", str(out), "--resume", str(legacy),
                               "--trust-checkpoint"]), dataset=small_digits, log=lambda *a: None)
    assert r.steps == 16
    converted = T.load_checkpoint(str(out / "last.pt"))  # no flag needed any more
    assert converted["epoch"] == 2 and converted["config"]["out"] == str(out)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(out / "last.pt")) == []


# --------------------------------------------------------------------------
# Truncated, empty, wrong-type checkpoints
# --------------------------------------------------------------------------
def _bad_checkpoints(run_dir, tmp_path):
    raw = (run_dir / "last.pt").read_bytes()
    files = {}

    def put(name, data, needle):
        p = tmp_path / name
        p.write_bytes(data)
        files[name] = (p, needle)

    put("empty.pt", b"", "is empty (0 bytes)")
    put("half.pt", raw[:len(raw) // 2], "expected a complete zip archive")
    put("no_tail.pt", raw[:-10], "expected a complete zip archive")
    put("text.pt", b"model weights, honest\n", "expected a complete zip archive")
    z = zipfile.ZipFile(io.BytesIO(raw))
    # one flipped byte inside a tensor record: the zip is intact, its CRC is not
    member = max(z.infolist(), key=lambda i: i.file_size)
    flipped = bytearray(raw)
    pos = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra) + member.file_size // 2
    flipped[pos] ^= 0xFF
    put("flipped.pt", bytes(flipped), "fails its CRC check")
    other = io.BytesIO()
    with zipfile.ZipFile(other, "w") as zo:
        zo.writestr("notes.txt", "hello")
    put("other_zip.pt", other.getvalue(), "not a torch.save file")
    deflated = io.BytesIO()
    with zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as zo:
        for i in z.infolist():
            zo.writestr(i.filename, z.read(i.filename))
    put("deflated.pt", deflated.getvalue(), "compressed members")

    def saved(name, obj, needle):
        b = io.BytesIO()
        torch.save(obj, b)
        put(name, b.getvalue(), needle)

    saved("tensor.pt", torch.zeros(3), "should hold a dict")
    saved("dict.pt", {"weights": torch.zeros(3)}, "expected keys 'model_state' and 'config'")
    good = torch.load(run_dir / "last.pt", weights_only=True)
    saved("cfg_list.pt", dict(good, config=[1, 2]), "'config' should be a dict")
    saved("width_str.pt", dict(good, config=dict(good["config"], width_mult="0.5")), "number 'width_mult'")
    saved("state_list.pt", dict(good, model_state=[torch.zeros(1)]), "'model_state' should be a non-empty dict")
    return files


@pytest.mark.parametrize("command", ["train --resume", "export --checkpoint"])
def test_truncated_empty_and_wrong_type_checkpoints_are_clear_errors(run_dir, tmp_path, capsys, command):
    for name, (path, needle) in _bad_checkpoints(run_dir, tmp_path).items():
        if command == "train --resume":
            rc, io_ = _train_resume(capsys, path)
            flag = "--resume"
        else:
            rc, io_ = _export(capsys, path, tmp_path)
            flag = "--checkpoint"
        assert rc == 2, (name, io_.out, io_.err)
        assert f"error: {flag}: checkpoint {str(path)!r}" in io_.err and needle in io_.err, (name, io_.err)
        assert "Traceback" not in io_.err


def test_export_loader_raises_export_error(run_dir, tmp_path):
    from mobilenet_ext import export as E

    p = tmp_path / "empty.pt"
    p.write_bytes(b"")
    with pytest.raises(E.ExportError, match=r"--checkpoint: checkpoint .*empty\.pt' is empty"):
        E._load_checkpoint(str(p))
    no_cls = _copy_ckpt(run_dir, tmp_path / "no_cls.pt", lambda ck: ck.update(
        model_state={k: v for k, v in ck["model_state"].items() if not k.startswith("classifier.")}))
    with pytest.raises(E.ExportError, match="no classifier weight"):
        E._load_checkpoint(str(no_cls))
    cfg, state = E._load_checkpoint(str(run_dir / "last.pt"))
    assert cfg["model"] == "mobilenet_v3_small" and "classifier.3.weight" in state


def _edit(ck, path, value):
    d = ck
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value


@pytest.mark.parametrize("path,value,needle", [
    (("epoch",), "1", "'epoch' should be an int >= 0"),
    (("optimizer", "param_groups", 0, "lr"), "fast", "optimizer param_groups[0]['lr'] should be a number"),
    (("optimizer", "param_groups"), [], "optimizer param_groups should be a list of 2"),
    (("optimizer", "state", 0, "momentum_buffer"), torch.zeros(2, 2), "optimizer state [0]['momentum_buffer']"),
    (("scheduler", "lr_lambdas"), [None, None], "'scheduler'['lr_lambdas'][0] should be a dict"),
    (("scheduler", "optimizer"), "x", "'scheduler' should be a dict with keys"),
    (("scaler",), {"scale": 1.0}, "--amp must match the original run"),
    (("history",), [{"epoch": 1}], "'history' should be a list of dicts"),
    (("model_state", "classifier.3.weight"), torch.zeros(3, 3), "does not fit this model"),
    (("rng", 0, "numpy", "key"), torch.zeros(5, dtype=torch.int64), "RNG state 'numpy' key should be an int64"),
    (("rng", 0, "python", "version"), "three", "RNG state is malformed"),
    (("rng", 0), [1, 2], "RNG state should be a dict"),
])
def test_resume_checks_every_part_of_the_checkpoint(run_dir, tmp_path, small_digits, path, value, needle):
    bad = _copy_ckpt(run_dir, tmp_path / "bad.pt", lambda ck: _edit(ck, path, value))
    with pytest.raises(T.TrainError) as e:
        T.train(parse(SMALL + ["--epochs", "4", "--resume", str(bad)]), dataset=small_digits, log=lambda *a: None)
    assert f"--resume: checkpoint {str(bad)!r}" in str(e.value) and needle in str(e.value), str(e.value)


# --------------------------------------------------------------------------
# CIFAR-10 batches
# --------------------------------------------------------------------------
def _batch(n=20, seed=0, name=b"training batch 1 of 5"):
    rng = np.random.default_rng(seed)
    return {b"batch_label": name, b"labels": [int(v) for v in rng.integers(0, 10, size=n)],
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            b"filenames": [b"image_%05d.png" % i for i in range(n)]}


def _py2_pickle(obj) -> bytes:
    """Protocol 2 as Python 2's cPickle and numpy 1.x wrote the CIFAR-10
    batches: byte strings as (SHORT_)BINSTRING, arrays as
    ``numpy.core.multiarray._reconstruct(ndarray, (0,), 'b')`` plus the
    state ``(1, shape, dtype('u1', 0, 1), False, raw)``."""
    out = bytearray(b"\x80\x02")

    def s(b):
        out.extend(b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b)

    def i(v):
        out.extend(b"K" + bytes([v]) if 0 <= v < 256 else b"M" + struct.pack("<H", v) if 0 <= v < 65536
                   else b"J" + struct.pack("<i", v))

    def enc(o):
        if isinstance(o, bytes):
            s(o)
        elif isinstance(o, bool):
            out.extend(b"\x88" if o else b"\x89")
        elif isinstance(o, int):
            i(o)
        elif o is None:
            out.extend(b"N")
        elif isinstance(o, list):
            out.extend(b"](")
            for x in o:
                enc(x)
            out.extend(b"e")
        elif isinstance(o, tuple):
            out.extend(b"(")
            for x in o:
                enc(x)
            out.extend(b"t")
        elif isinstance(o, dict):
            out.extend(b"}(")
            for k, v in o.items():
                enc(k)
                enc(v)
            out.extend(b"u")
        elif isinstance(o, np.ndarray):
            assert o.dtype == np.uint8
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            enc((0,))
            s(b"b")
            out.extend(b"\x87R(")  # TUPLE3, REDUCE; the state tuple follows
            i(1)
            enc(tuple(o.shape))
            out.extend(b"cnumpy\ndtype\n(")
            s(b"u1")
            i(0)
            i(1)
            out.extend(b"tR(")
            i(3)
            s(b"|")
            out.extend(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff")
            i(0)
            out.extend(b"tb\x89")  # dtype BUILD; is_fortran False
            s(o.tobytes())
            out.extend(b"tb")  # array BUILD
        else:
            raise TypeError(type(o))

    enc(obj)
    out.extend(b".")
    return bytes(out)


WRITERS = {
    "python2": _py2_pickle,
    "protocol2": lambda d: pickle.dumps(d, protocol=2),
    "default": lambda d: pickle.dumps(d),
    "protocol5": lambda d: pickle.dumps(d, protocol=5),
    # numpy 1.x's module name for _reconstruct, as in files pickled before numpy 2
    "protocol2_numpy1": lambda d: pickle.dumps(d, protocol=2).replace(b"cnumpy._core.multiarray\n",
                                                                      b"cnumpy.core.multiarray\n"),
}


def _write_cifar(root: Path, writer, n=20, files=None):
    root.mkdir(parents=True, exist_ok=True)
    batches = {}
    for k, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        d = _batch(n, seed=k, name=name.encode())
        batches[name] = d
        (root / name).write_bytes((files or {}).get(name) or writer(d))
    return batches


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_cifar_real_format_loads(tmp_path, fmt):
    d = _batch(30)
    raw = WRITERS[fmt](d)
    # the writers make what they claim: plain unpickling gives the batch back
    back = pickle.loads(raw, encoding="bytes")
    assert back[b"labels"] == d[b"labels"] and np.array_equal(back[b"data"], d[b"data"])
    assert (b"_codecs\nencode" in raw) == fmt.startswith("protocol2")  # Python 3's protocol-2 bytes
    assert (b"numpy.core.multiarray\n_reconstruct" in raw) == (fmt in ("python2", "protocol2_numpy1"))
    p = tmp_path / "data_batch_1"
    p.write_bytes(raw)
    x, y = T._read_cifar_batch(str(p))
    assert x.dtype == torch.uint8 and x.shape == (30, 3, 32, 32)
    assert np.array_equal(x.reshape(30, 3072).numpy(), d[b"data"]) and y.tolist() == d[b"labels"]
    # and a whole folder of them trains (one epoch, tiny batch)
    if fmt == "python2":
        batches = _write_cifar(tmp_path / "c", WRITERS[fmt], n=8)
        ds = T.load_cifar10(str(tmp_path / "c"))
        assert ds.train_x.shape == (40, 3, 32, 32)
        assert ds.test_y.tolist() == batches["test_batch"][b"labels"]


def _evil_batches(marker):
    d = _batch(4)
    return {
        "in_labels_p2": pickle.dumps({**d, b"labels": Payload(marker)}, protocol=2),
        "whole_default": pickle.dumps(Payload(marker)),
        "in_data_p5": pickle.dumps({**d, b"data": [Payload(marker)]}, protocol=5),
        # an os.system call as protocol-0 text
        "os_system_p0": pickle.dumps({**d, b"filenames": _System(marker)}, protocol=0),
    }


class _System:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"echo ran > '{self.marker}'",)


@pytest.mark.parametrize("kind", ["in_labels_p2", "whole_default", "in_data_p5", "os_system_p0"])
def test_cifar_batch_that_runs_code_is_refused(tmp_path, capsys, kind):
    marker = tmp_path / "ran"
    root = tmp_path / "cifar-10-batches-py"
    _write_cifar(root, WRITERS["default"], n=4, files={"data_batch_2": _evil_batches(marker)[kind]})
    rc = cli(["train", "--data", str(tmp_path), *SMALL, "--epochs", "1"])
    err = capsys.readouterr().err
    assert rc == 2, err
    bad = str(root / "data_batch_2")
    assert f"error: --data: {bad!r} refers to the Python global" in err, err
    # the global as the file names it (protocols 0-2 write Python 2's module names)
    names = {"in_labels_p2": ["__builtin__.exec"], "whole_default": ["builtins.exec"], "in_data_p5": ["builtins.exec"],
             "os_system_p0": ["posix.system", "nt.system"]}[kind]
    assert any(f"global {n}," in err for n in names), err
    assert "Traceback" not in err
    assert not marker.exists()


@pytest.mark.parametrize("content,needle", [
    (b"", "is empty"),
    (pickle.dumps(_batch(4), protocol=2)[:-200], "is not a CIFAR-10 python pickle"),
    (_py2_pickle(_batch(4))[:100], "is not a CIFAR-10 python pickle"),
    (b"\x80\x04garbage", "is not a CIFAR-10 python pickle"),
    (pickle.dumps([1, 2, 3]), "should hold a dict with b'data' and b'labels', got list"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}), "should have keys b'data' and b'labels'"),
    (pickle.dumps({**_batch(4), b"data": np.zeros((4, 3072), np.float32)}), "uint8 array [N, 3072], got float32"),
    (pickle.dumps({**_batch(4), b"data": [[0] * 3072] * 4}), "uint8 array [N, 3072], got list"),
    (pickle.dumps({**_batch(4), b"labels": ["cat"] * 4}), "b'labels' should be a list of ints"),
    (pickle.dumps({**_batch(4), b"labels": [1, 2, 3]}), "should be 4 ints in 0..9, got 3"),
    (pickle.dumps({**_batch(4), b"labels": [1, 2, 3, 10]}), "with range 1..10"),
    (pickle.dumps({**_batch(4), b"labels": np.zeros(4, np.float64)}), "got an array float64"),
    (pickle.dumps({**_batch(4), b"data": np.zeros((4, 3072), object)}), "numpy dtype object"),
    (pickle.dumps({**_batch(4), b"x": bytearray(b"ab")}, protocol=2), "the Python global __builtin__.bytearray"),
    (pickle.dumps({**_batch(4), b"x": {1, 2}}, protocol=2), "the Python global __builtin__.set"),
])
def test_cifar_truncated_empty_wrong_type_are_clear_errors(tmp_path, content, needle):
    p = tmp_path / "data_batch_1"
    p.write_bytes(content)
    with pytest.raises(T.TrainError) as e:
        T._read_cifar_batch(str(p))
    assert str(e.value).startswith(f"--data: {str(p)!r}") and needle in str(e.value), str(e.value)


# --------------------------------------------------------------------------
# Fuzz: both loaders raise only their own error
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _tiny_checkpoint() -> bytes:
    g = torch.Generator().manual_seed(0)
    ck = {"config": {"model": "mobilenet_v3_small", "width_mult": 0.5, "epochs": 2, "out": "x"},
          "model_state": {"features.0.weight": torch.randn(4, 3, 3, 3, generator=g),
                          "classifier.3.weight": torch.randn(10, 4, generator=g),
                          "features.0.num_batches_tracked": torch.tensor(3)},
          "epoch": 1, "step": 8, "history": [{"epoch": 1, "lr": 0.1}], "rng": [T._rng_state()]}
    b = io.BytesIO()
    torch.save(ck, b)
    return b.getvalue()


TINY_CKPT = _tiny_checkpoint()
TINY_PKL = zipfile.ZipFile(io.BytesIO(TINY_CKPT)).read("archive/data.pkl")


def _rezip(data_pkl: bytes) -> bytes:
    """TINY_CKPT with data.pkl replaced, CRCs recomputed: the zip checks pass
    and the bytes reach torch's weights-only unpickler."""
    src = zipfile.ZipFile(io.BytesIO(TINY_CKPT))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for i in src.infolist():
            z.writestr(i.filename, data_pkl if i.filename.endswith("/data.pkl") else src.read(i.filename))
    return out.getvalue()


@st.composite
def mutated(draw, base: bytes):
    """``base`` with a few bytes overwritten, a slice deleted or random bytes
    inserted, or truncated."""
    b = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "delete", "insert", "truncate"]))
        if not b:
            break
        pos = draw(st.integers(0, len(b) - 1))
        if op == "set":
            b[pos] = draw(st.integers(0, 255))
        elif op == "delete":
            del b[pos:pos + draw(st.integers(1, 16))]
        elif op == "insert":
            b[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            del b[pos:]
    return bytes(b)


def _load_ckpt_bytes(fuzz_dir, raw):
    p = fuzz_dir / "f.pt"
    p.write_bytes(raw)
    try:
        ck = T.load_checkpoint(str(p))
    except T.TrainError as e:
        assert str(e).startswith(f"--resume: checkpoint {str(p)!r}"), str(e)
        return None
    assert isinstance(ck["model_state"], dict) and isinstance(ck["config"], dict)
    return ck


@given(raw=st.one_of(st.binary(max_size=2048), st.binary(max_size=512).map(lambda b: b"PK\x03\x04" + b)))
def test_fuzz_checkpoint_loader_random_bytes(fuzz_dir, raw):
    _load_ckpt_bytes(fuzz_dir, raw)


@given(raw=mutated(TINY_CKPT))
def test_fuzz_checkpoint_loader_mutated_file(fuzz_dir, raw):
    _load_ckpt_bytes(fuzz_dir, raw)


@given(pkl=st.one_of(mutated(TINY_PKL), st.binary(max_size=512).map(lambda b: b"\x80\x02" + b)))
def test_fuzz_checkpoint_loader_mutated_pickle_in_valid_zip(fuzz_dir, pkl):
    _load_ckpt_bytes(fuzz_dir, _rezip(pkl))


CIFAR_BASES = [WRITERS["python2"](_batch(3)), WRITERS["protocol2"](_batch(3)), WRITERS["default"](_batch(3)),
               WRITERS["protocol5"](_batch(3))]


def _read_cifar_bytes(fuzz_dir, raw):
    p = fuzz_dir / "data_batch_1"
    p.write_bytes(raw)
    try:
        x, y = T._read_cifar_batch(str(p))
    except T.TrainError as e:
        assert str(e).startswith(f"--data: {str(p)!r}"), str(e)
        return
    assert x.dtype == torch.uint8 and x.shape[1:] == (3, 32, 32) and y.shape == (x.shape[0],)
    assert y.dtype == torch.int64 and (y.numel() == 0 or 0 <= y.min() <= y.max() <= 9)


@given(raw=st.one_of(st.binary(max_size=2048), st.binary(max_size=512).map(lambda b: b"\x80\x02" + b)))
def test_fuzz_cifar_loader_random_bytes(fuzz_dir, raw):
    _read_cifar_bytes(fuzz_dir, raw)


@given(raw=st.sampled_from(CIFAR_BASES).flatmap(mutated))
def test_fuzz_cifar_loader_mutated_batches(fuzz_dir, raw):
    _read_cifar_bytes(fuzz_dir, raw)


# --------------------------------------------------------------------------
# Atomic checkpoint writes
# --------------------------------------------------------------------------
@pytest.mark.skipif(os.name == "nt", reason="no directory fsync on Windows")
def test_write_is_tmp_fsync_replace_fsync_dir(tmp_path, monkeypatch):
    """The order that makes the replacement crash-safe: the temporary file
    is complete and on disk before the rename, the rename is on disk after
    the folder's fsync."""
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st_ = os.fstat(fd)
        kind = "dir" if stat.S_ISDIR(st_.st_mode) else "file"
        events.append(("fsync", kind, st_.st_size if kind == "file" else None))
        real_fsync(fd)

    def replace(a, b):
        events.append(("replace", os.path.basename(a), os.path.basename(b), target.read_bytes()))
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    T._write_atomic(str(target), b"new contents")
    assert events == [("fsync", "file", len(b"new contents")), ("replace", "last.pt.tmp", "last.pt", b"old"),
                      ("fsync", "dir", None)]
    assert target.read_bytes() == b"new contents" and not (tmp_path / "last.pt.tmp").exists()


SLOW = 0.8  # seconds a test-slowed save of last.pt takes; it is replaced ~0.75 * SLOW after it starts
KILLS = 5
KILL_ARGS = ["--model", "mobilenet_v3_small", "--width-mult", "0.5", "--image-size", "8", "--batch-size", "256",
             "--epochs", "6", "--threads", "1", "--no-progress", "--seed", "4", "--device", "cpu"]


def _on_disk(out: Path):
    """Epoch of the checkpoint in ``out`` (None if there is none), after
    checking that it loads cleanly and fits the model."""
    if not (out / "last.pt").exists():
        return None
    ck = T.load_checkpoint(str(out / "last.pt"))
    T.build_model("mobilenet_v3_small", 0.5, 10, "ext").load_state_dict(ck["model_state"])
    if (out / "history.json").exists():  # replaced atomically after last.pt: it parses, and is never ahead
        hist = json.loads((out / "history.json").read_text())
        assert 1 <= hist["history"][-1]["epoch"] <= ck["epoch"]
    return ck["epoch"]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_while_saving_keeps_a_complete_checkpoint_and_resume_continues(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **{T._SLOW_SAVE_ENV: str(SLOW)},
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    base = [sys.executable, "-m", "mobilenet_ext", "train", *KILL_ARGS, "--out", str(out)]
    rng = random.Random(18)
    outcomes = []
    for k in range(KILLS):
        before = _on_disk(out)
        cmd = base + ([] if before is None else ["--resume"])
        with open(tmp_path / f"stdout{k}.txt", "w") as so:
            p = subprocess.Popen(cmd, stdout=so, stderr=subprocess.PIPE, text=True, env=env, cwd=str(REPO))
            lines: queue.Queue = queue.Queue()
            reader = threading.Thread(target=lambda: [lines.put(ln) for ln in p.stderr] + [lines.put(None)],
                                      daemon=True)
            reader.start()
            err = []
            try:
                while True:  # wait until the save of last.pt begins
                    ln = lines.get(timeout=300)
                    assert ln is not None, f"run {k} ended before saving: " + "".join(err)
                    err.append(ln)
                    if ln.strip() == f"[{T._SLOW_SAVE_ENV}] writing {out / 'last.pt'}":
                        break
                # a random moment in one of three phases, in turn: while the temporary file is being written,
                # after it is complete but before the rename, after the rename (history.json being written)
                lo, hi = [(0.05, 0.3), (1.0, 1.5), (0.55, 0.7)][k % 3]
                delay = rng.uniform(lo * SLOW, hi * SLOW)
                time.sleep(delay)
                p.send_signal(signal.SIGKILL)
            finally:
                p.kill()
                p.wait(timeout=60)
                reader.join(timeout=60)
        assert p.returncode == -signal.SIGKILL
        after = _on_disk(out)  # loads cleanly: the previous checkpoint or the new one
        new = 1 if before is None else before + 1
        assert after in (before, new), (k, before, after)
        outcomes.append("new" if after == new else "previous")
        tmp = out / "last.pt.tmp"
        if tmp.exists():  # what a kill left half-written: never in place of last.pt, and not a checkpoint
            try:
                T.load_checkpoint(str(tmp))
                outcomes[-1] += ", complete last.pt.tmp"
            except T.TrainError:
                outcomes[-1] += ", torn last.pt.tmp"
        print(f"kill {k}: {delay:.2f} s after the save began: {outcomes[-1]} (epoch {after})")
    # kills landed on both sides of the rename, and at least one tore the file being written
    assert {o.split(",")[0] for o in outcomes} == {"previous", "new"}, outcomes
    assert any(o.endswith("torn last.pt.tmp") for o in outcomes), outcomes
    # --resume continues to the end ...
    env.pop(T._SLOW_SAVE_ENV)
    r = subprocess.run(base + ["--resume"], env=env, cwd=str(REPO), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert f"resumed from {out / 'last.pt'} after epoch {after}" in r.stdout
    final = T.load_checkpoint(str(out / "last.pt"))
    assert final["epoch"] == 6 and [h["epoch"] for h in final["history"]] == [1, 2, 3, 4, 5, 6]
    assert [h["epoch"] for h in json.loads((out / "history.json").read_text())["history"]] == [1, 2, 3, 4, 5, 6]
    # ... and ends bit for bit where an uninterrupted run ends
    straight = T.train(parse(KILL_ARGS), log=lambda *a: None)
    model = T.build_model("mobilenet_v3_small", 0.5, 10, "ext")
    model.load_state_dict(final["model_state"])
    assert T.state_digest(model) == straight.digest
