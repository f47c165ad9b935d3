"""`python -m mobilenet_ext train`: data, recipe pieces, loss going down,
ext == torch backend losses, bit-exact resume, clear errors, DDP on 2 CPU
processes."""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

from mobilenet_ext import train as T
from mobilenet_ext.nn import DepthwiseConv2d, PointwiseConv2d

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


@pytest.fixture(scope="module")
def small_digits():
    """256 train / 64 test digits at 16x16: a few steps per epoch."""
    d = T.load_digits(16)
    return dataclasses.replace(d, train_x=d.train_x[:256], train_y=d.train_y[:256],
                               test_x=d.test_x[:64], test_y=d.test_y[:64])


SMALL = ["--model", "mobilenet_v3_small", "--width-mult", "0.5", "--batch-size", "32", "--lr", "0.1", "--threads", "1",
         "--no-progress", "--seed", "3"]


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------
def test_digits_dataset_is_sklearn_digits_upsampled():
    from sklearn.datasets import load_digits

    d = T.load_digits(32)
    assert d.train_x.shape == (1437, 3, 32, 32) and d.test_x.shape == (360, 3, 32, 32)
    assert d.train_x.dtype == torch.float32 and d.num_classes == 10
    ref = load_digits()
    # Every image is an upsampled sklearn image with its label: find it by its 8x8 average-pooled form.
    imgs = torch.from_numpy(ref.images).float() / 16.0
    both_x = torch.cat([d.train_x, d.test_x])[:, 0:1]
    both_y = torch.cat([d.train_y, d.test_y])
    assert torch.equal(torch.cat([d.train_x, d.test_x])[:, 1:2], both_x)  # 3 identical channels
    assert torch.equal(torch.cat([d.train_x, d.test_x])[:, 2:3], both_x)
    # the split holds every sklearn image exactly once (as a multiset: the set has a few duplicates),
    # bilinearly upsampled, with its label
    want = F.interpolate(imgs[:, None], size=(32, 32), mode="bilinear", align_corners=False)

    def keys(x, y):
        return sorted((hashlib.sha1(xi.numpy().tobytes()).hexdigest(), int(yi)) for xi, yi in zip(x, y))

    assert keys(both_x, both_y) == keys(want, torch.from_numpy(ref.target))
    # fixed split, independent of anything global
    torch.manual_seed(123)
    assert torch.equal(T.load_digits(32).test_y, d.test_y)


def _write_cifar(root: Path, n: int = 12, bad: str = "") -> np.ndarray:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    first = None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        if bad == "missing" and name == "data_batch_3":
            continue
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        if bad == "shape" and name == "data_batch_2":
            data = data[:, :100]
        if first is None:
            first = (data, labels)
        with open(root / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels,
                         b"filenames": [b"x.png"] * n}, f)
    if bad == "garbage":
        (root / "test_batch").write_bytes(b"not a pickle")
    return first


def test_cifar10_loader_layout(tmp_path):
    data, labels = _write_cifar(tmp_path / "cifar-10-batches-py")
    d = T.load_cifar10(str(tmp_path))
    assert d.train_x.shape == (60, 3, 32, 32) and d.test_x.shape == (12, 3, 32, 32)
    assert d.train_x.dtype == torch.uint8
    # CIFAR rows are 1024 red, 1024 green, 1024 blue values, each row-major 32x32
    for c, i, j in [(0, 0, 0), (1, 5, 7), (2, 31, 30), (0, 17, 3)]:
        assert d.train_x[4, c, i, j].item() == data[4, c * 1024 + i * 32 + j]
    assert d.train_y[:12].tolist() == labels
    # the files directly in DIR work too
    assert torch.equal(T.load_cifar10(str(tmp_path / "cifar-10-batches-py")).test_x, d.test_x)
    # normalisation uses CIFAR-10's channel statistics on [0, 1] pixels
    x = d.normalize(d.train_x[:1])
    want = (data[0, 1024 + 33] / 255.0 - T.CIFAR10_MEAN[1]) / T.CIFAR10_STD[1]
    assert x[0, 1, 1, 1].item() == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("bad,needle", [("missing", "data_batch_3"), ("shape", "[N, 3072]"),
                                        ("garbage", "not a CIFAR-10 python pickle")])
def test_cifar10_malformed_is_a_clear_error(tmp_path, bad, needle):
    _write_cifar(tmp_path, bad=bad)
    with pytest.raises(T.TrainError, match="--data") as e:
        T.load_cifar10(str(tmp_path))
    assert needle in str(e.value)


def test_cli_errors(tmp_path, capsys):
    from mobilenet_ext.__main__ import main

    assert main(["train", "--data", str(tmp_path / "nope"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--data" in err and "not a directory" in err and "Traceback" not in err
    assert main(["train", "--amp", "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--amp" in err and "CUDA" in err and "cpu" in err
    assert main(["train", "--epochs", "0"]) == 2
    assert "--epochs must be a positive int, got 0" in capsys.readouterr().err
    assert main(["train", "--resume", "--no-progress"]) == 2
    assert "--out" in capsys.readouterr().err


# --------------------------------------------------------------------------
# Recipe pieces
# --------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["ext", "torch"])
@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small"])
def test_weight_decay_groups(name, backend):
    model = T.build_model(name, 0.5, 10, backend)
    groups = T.param_groups(model, 4e-5)
    decay = {id(p) for p in groups[0]["params"]}
    no_decay = {id(p) for p in groups[1]["params"]}
    assert groups[0]["weight_decay"] == 4e-5 and groups[1]["weight_decay"] == 0.0
    assert not decay & no_decay and len(decay) + len(no_decay) == len(list(model.parameters()))
    n_dw = 0
    for m in model.modules():
        if isinstance(m, (tnn.BatchNorm2d,)):
            assert id(m.weight) in no_decay and id(m.bias) in no_decay
        elif isinstance(m, DepthwiseConv2d) or (isinstance(m, tnn.Conv2d) and m.groups == m.in_channels > 1):
            n_dw += 1
            assert id(m.weight) in no_decay
        elif isinstance(m, (tnn.Conv2d, PointwiseConv2d, tnn.Linear)):
            assert id(m.weight) in decay
            if m.bias is not None:
                assert id(m.bias) in no_decay
    assert n_dw >= 10


def test_warmup_cosine_schedule():
    f = T.WarmupCosine(warmup_steps=4, total_steps=14)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0
    assert f(9) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(14) == pytest.approx(0.0, abs=1e-12) and f(20) == pytest.approx(0.0, abs=1e-12)
    vals = [f(s) for s in range(4, 15)]
    assert all(a > b for a, b in zip(vals, vals[1:]))


def test_build_model_bn_momentum_and_bad_values():
    m = T.build_model("mobilenet_v3_small", 0.5, 10, "ext", bn_momentum=0.2)
    assert {x.momentum for x in m.modules() if isinstance(x, tnn.BatchNorm2d)} == {0.2}
    with pytest.raises(T.TrainError, match="--bn-momentum must be in"):
        T.build_model("mobilenet_v3_small", 0.5, 10, "ext", bn_momentum=1.5)
    with pytest.raises(T.TrainError, match="--width-mult must be > 0, got 0"):
        T.build_model("mobilenet_v3_small", 0.0, 10, "ext")


# --------------------------------------------------------------------------
# Training behaviour
# --------------------------------------------------------------------------
def _steps(model, batches, lr=0.05, momentum=0.9):
    """Plain SGD steps (dropout reseeded per step, so both backends draw the
    same masks); returns the per-step losses."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    model.train()
    losses = []
    for i, (x, y) in enumerate(batches):
        torch.manual_seed(100 + i)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _batches(d, n, bs=32):
    return [(d.normalize(d.train_x[i * bs:(i + 1) * bs]), d.train_y[i * bs:(i + 1) * bs]) for i in range(n)]


def test_few_steps_reduce_loss(small_digits):
    torch.manual_seed(0)
    model = T.build_model("mobilenet_v3_small", 0.5, 10, "ext", bn_momentum=0.1)
    x, y = _batches(small_digits, 1, bs=64)[0]
    losses = _steps(model, [(x, y)] * 12, lr=0.05)
    assert losses[0] == pytest.approx(math.log(10), rel=0.05)  # ~uniform prediction at init
    assert all(b < a for a, b in zip(losses, losses[1:])), losses  # every step lowers the loss
    assert losses[-1] < 0.9 * losses[0], losses


def test_backends_equal_losses_same_init(small_digits):
    torch.manual_seed(0)
    ext = T.build_model("mobilenet_v3_small", 0.5, 10, "ext", bn_momentum=0.1)
    ref = T.build_model("mobilenet_v3_small", 0.5, 10, "torch", bn_momentum=0.1)
    ref.load_state_dict(ext.state_dict())
    assert any(isinstance(m, DepthwiseConv2d) for m in ext.modules())
    assert not any(isinstance(m, (DepthwiseConv2d, PointwiseConv2d)) for m in ref.modules())
    batches = _batches(small_digits, 6)
    le = _steps(ext, batches)
    lt = _steps(ref, batches)
    assert le[-1] < le[0]
    # The first steps agree to float32 rounding; the trajectories drift apart only slowly.
    for i, (a, b) in enumerate(zip(le, lt)):
        assert a == pytest.approx(b, rel=1e-5 if i < 3 else 1e-4), (i, le, lt)


def test_cli_same_seed_same_init_both_backends():
    torch.manual_seed(5)
    a = T.build_model("mobilenet_v2", 0.5, 10, "ext")
    torch.manual_seed(5)
    b = T.build_model("mobilenet_v2", 0.5, 10, "torch")
    sb = b.state_dict()
    assert all(torch.equal(v, sb[k]) for k, v in a.state_dict().items())


def test_train_cli_path_backends_agree(small_digits):
    """The training loop itself (augmentation, label smoothing, warm-up,
    dropout) gives the same first losses on both backends."""
    r_ext = T.train(parse(SMALL + ["--epochs", "2", "--max-steps", "4"]), dataset=small_digits, log=lambda *a: None)
    r_tch = T.train(parse(SMALL + ["--epochs", "2", "--max-steps", "4", "--backend", "torch"]),
                    dataset=small_digits, log=lambda *a: None)
    assert r_ext.steps == r_tch.steps == 4 and len(r_ext.step_losses) == 4
    assert r_ext.step_losses == pytest.approx(r_tch.step_losses, rel=1e-4)


def test_resume_is_bit_exact(small_digits, tmp_path):
    lines = []
    straight = T.train(parse(SMALL + ["--epochs", "4", "--out", str(tmp_path / "a")]), dataset=small_digits,
                       log=lines.append)
    assert len(straight.history) == 4 and straight.steps == 32
    # the recipe learns: the training loss falls epoch over epoch
    tl = [h.train_loss for h in straight.history]
    assert all(b < a for a, b in zip(tl, tl[1:])), tl
    assert any(l.startswith("epoch   4/4  train loss") and "test loss" in l and "acc" in l for l in lines)
    # two epochs, stop, resume for two more
    half = parse(SMALL + ["--epochs", "4", "--out", str(tmp_path / "b"), "--max-steps", "16"])
    first = T.train(half, dataset=small_digits, log=lambda *a: None)
    assert first.steps == 16 and len(first.history) == 2
    ck = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert ck["epoch"] == 2 and ck["step"] == 16
    assert {"model_state", "optimizer", "scheduler", "scaler", "rng", "config"} <= set(ck)
    second = T.train(parse(SMALL + ["--epochs", "4", "--out", str(tmp_path / "b"), "--resume"]),
                     dataset=small_digits, log=lambda *a: None)
    assert second.steps == 32 and len(second.step_losses) == 16
    assert second.step_losses == straight.step_losses[16:]  # bitwise-equal losses
    sa, sb = straight.model.state_dict(), second.model.state_dict()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert [vars(h)["test_acc"] for h in second.history] == [vars(h)["test_acc"] for h in straight.history]
    hist = json.loads((tmp_path / "b" / "history.json").read_text())
    assert [h["epoch"] for h in hist["history"]] == [1, 2, 3, 4]
    # resuming with another schedule or model is refused with a clear message
    with pytest.raises(T.TrainError, match="schedule of 4 epochs x 8 steps, this run has 6 epochs x 8 steps"):
        T.train(parse(SMALL + ["--epochs", "6", "--out", str(tmp_path / "b"), "--resume"]),
                dataset=small_digits, log=lambda *a: None)
    with pytest.raises(T.TrainError, match="model='mobilenet_v3_small', this run has model='mobilenet_v2'"):
        T.train(parse(SMALL[2:] + ["--model", "mobilenet_v2", "--epochs", "4", "--out", str(tmp_path / "b"),
                                   "--resume"]), dataset=small_digits, log=lambda *a: None)


def test_cli_runs_on_cifar_folder(tmp_path, capsys):
    from mobilenet_ext.__main__ import main

    _write_cifar(tmp_path / "cifar-10-batches-py", n=40)
    rc = main(["train", "--data", str(tmp_path), "--model", "mobilenet_v3_small", "--width-mult", "0.5",
               "--batch-size", "50", "--epochs", "1", "--threads", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "on cifar10 (200 train / 40 test" in out
    assert "epoch   1/1  train loss" in out and "final test accuracy" in out


# --------------------------------------------------------------------------
# DDP: 2 CPU processes with gloo
# --------------------------------------------------------------------------
def test_ddp_two_cpu_processes_stay_in_sync(tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mobilenet_ext", "train", "--model", "mobilenet_v3_small", "--width-mult", "0.5",
           "--image-size", "16", "--batch-size", "16", "--epochs", "1", "--max-steps", "3", "--threads", "1",
           "--no-progress", "--seed", "1", "--device", "cpu", "--out", str(out), "--dump-rank-state"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=str(REPO))
    if p.returncode != 0 and "terminate called without an active exception" in p.stderr \
            and "all 2 ranks in sync" in p.stdout:
        # Seen once in ~10 runs (2026-12-02, torch 2.14.1): a rank aborted in
        # process teardown *after* training finished in sync and the process
        # group was destroyed ("terminate called without an active exception":
        # a joinable std::thread destroyed at exit, none of which are ours).
        # One fresh run, which must exit cleanly; the failure is reported.
        print("DDP run aborted at exit after finishing; running it once more:\n" + p.stderr[-2000:])
        shutil.rmtree(out, ignore_errors=True)
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=str(REPO))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    assert "2 process(es) x batch 16" in p.stdout and "all 2 ranks in sync" in p.stdout
    s0 = torch.load(out / "rank0_state.pt", weights_only=False)
    s1 = torch.load(out / "rank1_state.pt", weights_only=False)
    assert s0["steps"] == s1["steps"] == 3
    # each rank trained on its own shard: different losses ...
    assert s0["step_losses"] != s1["step_losses"]
    # ... yet bitwise-identical parameters and BatchNorm buffers
    for k, v in s0["model_state"].items():
        assert torch.equal(v, s1["model_state"][k]), k
    # and they moved away from the (shared) initialisation
    torch.manual_seed(1)
    init = T.build_model("mobilenet_v3_small", 0.5, 10, "ext", bn_momentum=0.1).state_dict()
    changed = [k for k, v in init.items() if v.dtype.is_floating_point and not torch.equal(v, s0["model_state"][k])]
    assert len(changed) > 0.9 * sum(1 for v in init.values() if v.dtype.is_floating_point)
    assert (out / "state_digest_rank0.txt").read_text() == (out / "state_digest_rank1.txt").read_text()
