"""``python -m mobilenet_ext train``: train a MobileNet on our ops.

Recipe (the MobileNet papers' advice, torchvision's reference scripts for
the details): SGD with Nesterov momentum or RMSprop (alpha 0.9, momentum
0.9, eps 0.0316 ~ TensorFlow's 1e-3 inside the square root), a per-step
linear warm-up followed by a cosine decay to zero, label smoothing, weight
decay only on the dense conv / linear weights (none on depthwise weights,
BatchNorm parameters or biases), AMP on CUDA.

Data:

* default: scikit-learn's 8x8 handwritten digits (1797 images shipped with
  the package, nothing downloaded), upsampled bilinearly to ``--image-size``
  (32) and repeated to 3 channels, with a fixed 1437 / 360 train / test
  split (independent of ``--seed``); augmentation: random translation by up
  to 2 pixels.
* ``--data DIR``: CIFAR-10 in its standard python format
  (``DIR/cifar-10-batches-py/{data_batch_1..5,test_batch}`` or those files in
  ``DIR`` itself); augmentation: random crop with 4 pixels of padding and
  horizontal flip.

Reproducibility: shuffling and augmentation are drawn from generators seeded
by (seed, epoch, rank), and the checkpoint written after every epoch holds
the model, optimizer, scheduler, AMP scaler and every rank's RNG states, so
``--resume`` continues exactly where the run stopped (bit for bit on the ext
backend, whose kernels are deterministic).

Files from elsewhere: checkpoints hold only tensors, numbers, strings, lists
and dicts and are read with ``torch.load(weights_only=True)`` after a check of
the zip container (:func:`load_checkpoint`; ``--trust-checkpoint`` opts in to
full unpickling for a file the user trusts); CIFAR-10 batches are read by a
restricted unpickler that resolves only numpy's array and dtype
reconstruction.  Checkpoints are replaced atomically (temporary file,
fsync, rename, fsync of the folder).

Multi-process: launched by ``torchrun`` (``WORLD_SIZE`` > 1) it initialises
a process group (gloo on CPU, NCCL on CUDA), shards every epoch with a
DistributedSampler and wraps the model in DistributedDataParallel;
``--batch-size`` is per process.  At the end the ranks compare a SHA-256
of their parameters and buffers (written to ``--out`` as
``state_digest_rank{R}.txt``) and fail if they differ.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import io
import math
import os
import pickle
import random
import sys
import time
import warnings
import zipfile
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "TrainError", "Dataset", "load_digits", "load_cifar10", "build_model", "param_groups",
    "make_optimizer", "WarmupCosine", "EpochResult", "TrainResult", "train", "state_digest",
    "add_arguments", "main", "load_checkpoint",
]

MODELS = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CHECKPOINT_NAME = "last.pt"


class TrainError(ValueError):
    """A bad argument or input (missing / malformed data, unusable option):
    reported by the CLI as one line, without a traceback."""


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------
@dataclass
class Dataset:
    """Images kept in memory as ``[N, 3, H, W]`` (uint8 for CIFAR-10, float32
    for digits) with int64 labels; normalised per batch."""

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    num_classes: int
    pad: int  # random-translation / crop padding in pixels
    flip: bool  # random horizontal flip

    def normalize(self, x: Tensor) -> Tensor:
        x = x.float()
        if self.train_x.dtype == torch.uint8:
            x = x / 255.0
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std


def load_digits(image_size: int = 32) -> Dataset:
    """scikit-learn's 8x8 digits (shipped with the package: no download),
    scaled to [0, 1], upsampled bilinearly to ``image_size`` and repeated to
    3 channels.  Fixed split: a permutation from seed 0, first 1437 images
    train, last 360 test."""
    if not isinstance(image_size, int) or image_size < 8:
        raise TrainError(f"--image-size must be an int >= 8, got {image_size!r}")
    try:
        from sklearn.datasets import load_digits as _sk_digits
    except ImportError as e:
        raise TrainError(
            "the default dataset (8x8 digits) needs scikit-learn: pip install scikit-learn "
            f"(or pass --data DIR with CIFAR-10); import failed with: {e}"
        ) from None
    d = _sk_digits()
    x = torch.from_numpy(d.images).float().div_(16.0).unsqueeze(1)  # [1797, 1, 8, 8] in [0, 1]
    if image_size != 8:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = x.clamp_(0.0, 1.0).expand(-1, 3, -1, -1).contiguous()
    y = torch.from_numpy(d.target).long()
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    n_train = 1437
    tr, te = perm[:n_train], perm[n_train:]
    m = x[tr].mean().item()
    s = x[tr].std().item()
    return Dataset("digits", x[tr], y[tr], x[te], y[te], (m, m, m), (s, s, s), 10,
                   pad=max(1, image_size // 16), flip=False)


class _RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualname = f"{module}.{name}"


class _Callable:
    """Base of what :class:`_CifarUnpickler` hands out for an allowed global:
    instances without attributes (``__slots__ = ()``), so a pickle's BUILD
    opcode cannot set state on them; the behaviour is in the class."""

    __slots__ = ()


class _Reconstruct(_Callable):
    """``numpy.core.multiarray._reconstruct`` as numpy's ``ndarray.__reduce__``
    calls it: ``(ndarray, (0,), b'b')``, an empty array that the pickle's
    BUILD then fills through ``ndarray.__setstate__`` (numpy checks the data
    length against the shape)."""

    __slots__ = ()

    def __call__(self, subtype: Any, shape: Any, dtype: Any) -> Any:
        import numpy as np

        if subtype is not _NDARRAY or shape != (0,) or dtype not in (b"b", "b"):
            raise pickle.UnpicklingError("numpy array reconstruction with unexpected arguments "
                                         "(numpy writes (numpy.ndarray, (0,), b'b'))")
        return np.ndarray((0,), np.int8)


# numpy writes numpy.ndarray only as _reconstruct's first argument: a token, not callable, stands for it
_NDARRAY = _Callable()


class _Dtype(_Callable):
    """``numpy.dtype`` for a type code (numpy pickles a dtype as
    ``dtype('u1', False, True)`` plus BUILD state; in the original Python 2
    files the code is a byte string, ``dtype(b'u1', 0, 1)``); booleans,
    integers and floats only."""

    __slots__ = ()

    def __call__(self, spec: Any, align: Any = False, copy: Any = True) -> Any:
        import numpy as np

        if type(spec) is bytes:
            spec = spec.decode("ascii")
        if type(spec) is not str or len(spec) > 8:
            raise pickle.UnpicklingError(f"numpy dtype from {type(spec).__name__} (expected a short type code)")
        dt = np.dtype(spec, align=bool(align), copy=bool(copy))
        if dt.kind not in "biuf":
            raise pickle.UnpicklingError(f"numpy dtype {dt} (only booleans, integers and floats)")
        return dt


class _FromBuffer(_Callable):
    """``numpy.core.numeric._frombuffer``: how numpy pickles an array with
    protocol 5 (the default from Python 3.14 on)."""

    __slots__ = ()

    def __call__(self, buf: Any, dtype: Any, shape: Any, order: Any) -> Any:
        import numpy as np

        if not isinstance(buf, (bytes, bytearray)) or not isinstance(dtype, np.dtype) or dtype.kind not in "biuf" \
                or type(shape) is not tuple or not all(type(s) is int and s >= 0 for s in shape) \
                or order not in ("C", "F"):
            raise pickle.UnpicklingError("numpy array from a buffer with unexpected arguments")
        return np.frombuffer(bytes(buf), dtype=dtype).reshape(shape, order=order).copy()


class _EmptyBytes(_Callable):
    """``bytes()``: how Python 3 writes an empty bytes object with pickle
    protocols 0-2 (no arguments accepted)."""

    __slots__ = ()

    def __call__(self) -> bytes:
        return b""


class _Latin1(_Callable):
    """``_codecs.encode(text, 'latin1')``: how Python 3 writes a bytes object
    with pickle protocols 0-2."""

    __slots__ = ()

    def __call__(self, text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
        if type(text) is not str or encoding not in ("latin1", "latin-1") or errors != "strict":
            raise pickle.UnpicklingError("_codecs.encode other than (str, 'latin1'), protocol 2's bytes encoding")
        return text.encode("latin1")


_CIFAR_GLOBALS: Dict[Tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _Reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _Reconstruct(),
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Dtype(),
    ("numpy.core.numeric", "_frombuffer"): _FromBuffer(),
    ("numpy._core.numeric", "_frombuffer"): _FromBuffer(),
    ("_codecs", "encode"): _Latin1(),
    ("__builtin__", "bytes"): _EmptyBytes(),
    ("builtins", "bytes"): _EmptyBytes(),
}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR-10 python batch and nothing else: of the globals a
    pickle may name, only numpy array / dtype reconstruction and protocol 2's
    bytes encoding (``_codecs.encode``, ``bytes()``) resolve (each to a wrapper that checks its arguments);
    every other global is refused before anything is called."""

    def find_class(self, module: str, name: str) -> Any:
        fn = _CIFAR_GLOBALS.get((module, name))
        if fn is None:
            raise _RefusedGlobal(module, name)
        return fn

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids (a CIFAR-10 batch has none)")


def _read_cifar_batch(path: str) -> Tuple[Tensor, Tensor]:
    """One CIFAR-10 batch file (a pickled dict: b'data' uint8 [N, 3072],
    b'labels' N ints in 0..9, b'batch_label', b'filenames'), read with
    :class:`_CifarUnpickler`; raises :class:`TrainError` naming the file for
    anything else."""
    if not os.path.isfile(path):
        raise TrainError(f"--data: CIFAR-10 file {path!r} is missing (expected the python version, "
                         "cifar-10-batches-py with data_batch_1..5 and test_batch)")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise TrainError(f"--data: cannot read {path!r}: {e}") from None
    if not raw:
        raise TrainError(f"--data: {path!r} is empty (expected a CIFAR-10 python pickle)")
    try:
        d = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except _RefusedGlobal as e:
        raise TrainError(f"--data: {path!r} refers to the Python global {e.qualname}, which a CIFAR-10 batch never "
                         "contains; refusing to load it (expected a dict of bytes keys, lists, ints and numpy "
                         "arrays)") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure is malformed input
        raise TrainError(f"--data: {path!r} is not a CIFAR-10 python pickle ({type(e).__name__}: {e})") from None
    try:
        return _cifar_arrays(d, path)
    except TrainError:
        raise
    except Exception as e:  # noqa: BLE001 - e.g. odd keys whose comparison fails
        raise TrainError(f"--data: {path!r} is not a CIFAR-10 batch ({type(e).__name__}: {e})") from None


def _cifar_arrays(d: Any, path: str) -> Tuple[Tensor, Tensor]:
    import numpy as np

    if not isinstance(d, dict):
        raise TrainError(f"--data: {path!r} should hold a dict with b'data' and b'labels', got {type(d).__name__}")
    data = d.get(b"data", d.get("data"))
    labels = d.get(b"labels", d.get("labels"))
    if data is None or labels is None:
        keys = sorted(repr(k) for k in d)
        raise TrainError(f"--data: {path!r} should have keys b'data' and b'labels', got {keys}")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = (f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray) else type(data).__name__)
        raise TrainError(f"--data: {path!r}: b'data' should be a uint8 array [N, 3072], got {got}")
    if isinstance(labels, np.ndarray):
        ok = labels.ndim == 1 and labels.dtype.kind in "iu"
        label_list = labels.tolist() if ok else []
    else:
        ok = isinstance(labels, list) and all(type(v) is int for v in labels)
        label_list = labels if ok else []
    if not ok:
        got = (f"an array {labels.dtype} {list(labels.shape)}" if isinstance(labels, np.ndarray)
               else f"a {type(labels).__name__}" + (" with non-int items" if isinstance(labels, list) else ""))
        raise TrainError(f"--data: {path!r}: b'labels' should be a list of ints, got {got}")
    if len(label_list) != data.shape[0] or any(v < 0 or v > 9 for v in label_list):
        raise TrainError(f"--data: {path!r}: b'labels' should be {data.shape[0]} ints in 0..9, "
                         f"got {len(label_list)}"
                         + (f" with range {min(label_list)}..{max(label_list)}" if label_list else ""))
    x = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return x, torch.tensor(label_list, dtype=torch.int64)


def load_cifar10(root: str) -> Dataset:
    """CIFAR-10 in its standard python pickle format from ``root`` (or
    ``root/cifar-10-batches-py``); raises :class:`TrainError` naming the
    file when something is missing or malformed."""
    if not os.path.isdir(root):
        raise TrainError(f"--data: expected a directory holding CIFAR-10 (cifar-10-batches-py), got {root!r}, "
                         "which is not a directory")
    sub = os.path.join(root, "cifar-10-batches-py")
    base = sub if os.path.isdir(sub) else root
    parts = [_read_cifar_batch(os.path.join(base, f"data_batch_{i}")) for i in range(1, 6)]
    test_x, test_y = _read_cifar_batch(os.path.join(base, "test_batch"))
    train_x = torch.cat([p[0] for p in parts])
    train_y = torch.cat([p[1] for p in parts])
    return Dataset("cifar10", train_x, train_y, test_x, test_y, CIFAR10_MEAN, CIFAR10_STD, 10, pad=4, flip=True)


def _augment(ds: Dataset, x: Tensor, gen: torch.Generator) -> Tensor:
    """Random translation (zero padding ``ds.pad``, random crop back) and,
    for CIFAR-10, random horizontal flips; draws from ``gen`` only."""
    n, _, h, w = x.shape
    p = ds.pad
    offs = torch.randint(0, 2 * p + 1, (n, 2), generator=gen)
    flips = torch.rand(n, generator=gen) < 0.5 if ds.flip else None
    padded = F.pad(x, (p, p, p, p))
    out = torch.empty_like(x)
    for i in range(n):
        dy, dx = int(offs[i, 0]), int(offs[i, 1])
        img = padded[i, :, dy:dy + h, dx:dx + w]
        if flips is not None and bool(flips[i]):
            img = img.flip(-1)
        out[i] = img
    return out


def _epoch_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7919 + rank * 104_729) % (2**63))


# --------------------------------------------------------------------------
# Model, parameter groups, optimizer, schedule
# --------------------------------------------------------------------------
def build_model(name: str, width_mult: float, num_classes: int, backend: str,
                dropout: Optional[float] = None, bn_momentum: Optional[float] = None) -> nn.Module:
    """A model from :mod:`mobilenet_ext.models`; ``bn_momentum`` (PyTorch's
    convention: weight of the new batch statistics) replaces every
    BatchNorm's momentum when given."""
    from . import models

    if name not in MODELS:
        raise TrainError(f"--model must be one of {', '.join(MODELS)}, got {name!r}")
    if not width_mult > 0:
        raise TrainError(f"--width-mult must be > 0, got {width_mult!r}")
    kw: Dict[str, Any] = {}
    if dropout is not None:
        kw["dropout"] = dropout
    model = getattr(models, name)(width_mult=width_mult, num_classes=num_classes, backend=backend, **kw)
    if bn_momentum is not None:
        if not 0.0 < bn_momentum <= 1.0:
            raise TrainError(f"--bn-momentum must be in (0, 1], got {bn_momentum!r}")
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = bn_momentum
    return model


def _is_depthwise(m: nn.Module) -> bool:
    from .nn import DepthwiseConv2d

    if isinstance(m, DepthwiseConv2d):
        return True
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels


def param_groups(model: nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    """Two optimizer groups: weight decay on the weights of dense
    convolutions (incl. 1x1) and linear layers; none on depthwise weights,
    normalisation parameters and biases (the papers' advice: depthwise
    filters have few parameters and regularising them hurts)."""
    decay, no_decay = [], []
    seen = set()
    for m in model.modules():
        for pname, p in m.named_parameters(recurse=False):
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            if pname == "weight" and p.dim() > 1 and not _is_depthwise(m):
                decay.append(p)
            else:
                no_decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]


def make_optimizer(model: nn.Module, optimizer: str, lr: float, weight_decay: float,
                   momentum: float = 0.9) -> torch.optim.Optimizer:
    """SGD (Nesterov momentum) or RMSprop (alpha 0.9, eps 0.0316, momentum)."""
    groups = param_groups(model, weight_decay)
    if optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    if optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=0.9, eps=0.0316, momentum=momentum)
    raise TrainError(f"--optimizer must be 'sgd' or 'rmsprop', got {optimizer!r}")


class WarmupCosine:
    """LR factor per optimizer step: linear warm-up ``(s + 1) / warmup`` for
    the first ``warmup`` steps, then a cosine from 1 to 0 over the rest."""

    def __init__(self, warmup_steps: int, total_steps: int) -> None:
        self.warmup_steps = int(warmup_steps)
        self.total_steps = max(int(total_steps), 1)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        t = min(max(step - self.warmup_steps, 0) / span, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * t))


def default_lr(optimizer: str, global_batch: int) -> float:
    """0.2 per 256 images for SGD, 0.016 per 256 for RMSprop (torchvision's
    MobileNetV3 recipe: 0.064 at batch 1024)."""
    return (0.2 if optimizer == "sgd" else 0.016) * global_batch / 256


# --------------------------------------------------------------------------
# Distributed helpers
# --------------------------------------------------------------------------
@dataclass
class _Dist:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise TrainError(f"environment variable {name} must be an int, got {v!r}") from None


def _init_distributed(device: torch.device) -> _Dist:
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    local = _env_int("LOCAL_RANK", 0)
    created = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        created = True
    return _Dist(dist.get_world_size(), dist.get_rank(), local, created)


def _all_reduce_sum(values: Sequence[float], dist_info: _Dist, device: torch.device) -> List[float]:
    if not dist_info.enabled:
        return list(values)
    import torch.distributed as dist

    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _average_buffers(model: nn.Module, dist_info: _Dist) -> None:
    """Average the floating-point buffers (BatchNorm running statistics)
    over the ranks.  DDP keeps parameters in sync through the gradient
    all-reduce and broadcasts rank 0's buffers before each forward, but the
    last forward of an epoch leaves every rank with statistics updated on its
    own shard; averaging makes evaluation and checkpoints identical on all
    ranks and uses every shard's statistics."""
    if not dist_info.enabled:
        return
    import torch.distributed as dist

    with torch.no_grad():
        for b in model.buffers():
            if b.dtype.is_floating_point:
                dist.all_reduce(b)
                b.div_(dist_info.world_size)


def state_digest(model: nn.Module) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of every parameter and
    buffer (float data as stored, so equal digests mean bitwise-equal state)."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------
@dataclass
class EpochResult:
    epoch: int  # 1-based
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    lr: float
    seconds: float
    steps: int


@dataclass
class TrainResult:
    model: nn.Module
    history: List[EpochResult] = field(default_factory=list)
    step_losses: List[float] = field(default_factory=list)  # this rank's per-step training loss (this run)
    steps: int = 0  # optimizer steps since the start of training (resumed runs included)
    digest: str = ""


def _rng_state() -> Dict[str, Any]:
    """This process's RNG states as tensors, strings and numbers only (what
    ``torch.load(weights_only=True)`` reads back without any allowlist)."""
    import numpy as np

    kind, key, pos, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": {"bit_generator": str(kind), "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }


def _set_rng_state(s: Any, where: str) -> None:
    """Restore what :func:`_rng_state` returned; also takes the states of
    checkpoints written before it (numpy's state tuple with its uint32
    array, Python's ``random.getstate()`` tuple).  Raises
    :class:`TrainError` naming ``where`` when the state is malformed."""
    import numpy as np

    def int_tensor(t: Any, n: int, what: str) -> List[int]:
        if not isinstance(t, Tensor) or t.dtype != torch.int64 or t.shape != (n,):
            raise TrainError(f"{where}: RNG state {what} should be an int64 tensor [{n}], got "
                             + (f"{t.dtype} {list(t.shape)}" if isinstance(t, Tensor) else type(t).__name__))
        return t.tolist()

    try:
        if not isinstance(s, dict):
            raise TrainError(f"{where}: RNG state should be a dict, got {type(s).__name__}")
        t = s.get("torch")
        if not isinstance(t, Tensor) or t.dtype != torch.uint8 or t.dim() != 1:
            raise TrainError(f"{where}: RNG state 'torch' should be a uint8 tensor, got {type(t).__name__}")
        cuda = s.get("cuda")
        if cuda is not None and not (isinstance(cuda, (list, tuple)) and
                                     all(isinstance(c, Tensor) and c.dtype == torch.uint8 for c in cuda)):
            raise TrainError(f"{where}: RNG state 'cuda' should be a list of uint8 tensors or None")
        n = s.get("numpy")
        if isinstance(n, dict):
            key = int_tensor(n.get("key"), 624, "'numpy' key")
            np_state = (str(n.get("bit_generator")), np.array(key, dtype=np.uint32), int(n.get("pos")),
                        int(n.get("has_gauss")), float(n.get("cached_gaussian")))
        elif isinstance(n, tuple) and len(n) == 5:  # earlier checkpoints: np.random.get_state() itself
            np_state = n
        else:
            raise TrainError(f"{where}: RNG state 'numpy' is malformed ({type(n).__name__})")
        py = s.get("python")
        if isinstance(py, dict):
            gauss = py.get("gauss_next")
            py_state = (int(py.get("version")), tuple(int_tensor(py.get("internal"), 625, "'python' internal")),
                        None if gauss is None else float(gauss))
        elif isinstance(py, tuple) and len(py) == 3:  # earlier checkpoints: random.getstate() itself
            py_state = py
        else:
            raise TrainError(f"{where}: RNG state 'python' is malformed ({type(py).__name__})")
        # Every setter validates its argument; all are checked before any state changes.
        check_np = np.random.RandomState()
        check_np.set_state(np_state)
        random.Random().setstate(py_state)
    except TrainError:
        raise
    except Exception as e:  # noqa: BLE001 - a malformed state in a file
        raise TrainError(f"{where}: RNG state is malformed ({type(e).__name__}: {e})") from None
    torch.set_rng_state(t)
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(cuda))
    np.random.set_state(np_state)
    random.setstate(py_state)


# --------------------------------------------------------------------------
# Checkpoint files
# --------------------------------------------------------------------------
TRUST_FLAG = "--trust-checkpoint"
_SLOW_SAVE_ENV = "MOBILENET_EXT_TEST_SLOW_SAVE"


def _numpy_rng_globals() -> List[Any]:
    """The numpy names a checkpoint written before plain-tensor RNG states
    needs (``np.random.get_state()``: a uint32 array): array reconstruction
    under numpy 1's and 2's module names, ndarray, dtype and the uint32
    dtype class.  Nothing else is added to torch's weights-only allowlist."""
    import numpy as np

    try:
        reconstruct = np._core.multiarray._reconstruct
    except AttributeError:  # numpy 1.x
        reconstruct = np.core.multiarray._reconstruct
    return [(reconstruct, "numpy.core.multiarray._reconstruct"),
            (reconstruct, "numpy._core.multiarray._reconstruct"),
            np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def _check_zip(raw: bytes, path: str, what: str) -> None:
    """The container torch.save writes: a zip archive of stored (not
    compressed) members under one folder with a data.pkl, every CRC right.
    Checked in Python before torch's reader sees the bytes."""
    head = f"{what}: checkpoint {path!r}"
    if not zipfile.is_zipfile(io.BytesIO(raw)):
        raise TrainError(f"{head} is not one written by 'python -m mobilenet_ext train': expected a complete zip "
                         f"archive as torch.save writes, got {len(raw)} bytes starting {raw[:16]!r} (a truncated "
                         "or different file)")
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            infos = z.infolist()
            tops = {i.filename.split("/", 1)[0] for i in infos}
            if len(tops) != 1 or f"{next(iter(tops))}/data.pkl" not in {i.filename for i in infos}:
                raise TrainError(f"{head} is a zip archive but not a torch.save file (expected one folder with a "
                                 f"data.pkl, got {sorted(i.filename for i in infos)[:8]})")
            packed = [i.filename for i in infos if i.compress_type != zipfile.ZIP_STORED]
            if packed:
                raise TrainError(f"{head} has compressed members {packed[:4]}; torch.save stores them uncompressed")
            bad = z.testzip()
    except TrainError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure to read the archive is a damaged file
        raise TrainError(f"{head} is a damaged zip archive ({type(e).__name__}: {e})") from None
    if bad is not None:
        raise TrainError(f"{head} is damaged: member {bad!r} fails its CRC check")


def _short(e: BaseException) -> str:
    """The informative last line of an exception (torch's weights-only
    error spans several lines of advice)."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[-1] if lines else ''}"


def load_checkpoint(path: str, trust: bool = False, what: str = "--resume") -> Dict[str, Any]:
    """Load a checkpoint written by :func:`train` from a file that may come
    from anyone.

    The file must be a complete torch.save zip archive (CRCs checked); it is
    read with ``torch.load(weights_only=True)``, which builds tensors, dicts,
    lists, strings and numbers and never calls anything the file names.
    Checkpoints written before the RNG states became plain tensors also hold
    numpy's RNG state: for those, exactly numpy's array reconstruction,
    ``ndarray``, ``dtype`` and the uint32 dtype are allowed as well.  A file
    naming any other Python global is refused, with the names, unless
    ``trust`` (the CLI's ``--trust-checkpoint``): then it is fully
    unpickled, which can run code from the file.

    Returns the checkpoint dict (tensors on the CPU) after checking that it
    has a ``config`` dict with ``model`` and ``width_mult`` and a
    ``model_state`` of tensors; anything wrong raises :class:`TrainError`
    starting with ``what`` and naming the file."""
    if not os.path.isfile(path):
        raise TrainError(f"{what}: checkpoint {path!r} does not exist")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise TrainError(f"{what}: cannot read checkpoint {path!r}: {e}") from None
    if not raw:
        raise TrainError(f"{what}: checkpoint {path!r} is empty (0 bytes)")
    _check_zip(raw, path, what)
    if trust:
        try:
            ck = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001 - any failure is a bad file
            raise TrainError(f"{what}: checkpoint {path!r} could not be loaded ({_short(e)})") from None
    else:
        with torch.serialization.safe_globals(_numpy_rng_globals()):
            try:
                refused = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(raw)))
            except Exception as e:  # noqa: BLE001
                raise TrainError(f"{what}: checkpoint {path!r} is not a readable torch.save file ({_short(e)})") \
                    from None
            if refused:
                raise TrainError(
                    f"{what}: checkpoint {path!r} refers to Python objects the safe loader does not build: "
                    f"{', '.join(refused)}.  A checkpoint written by 'python -m mobilenet_ext train' holds only "
                    "tensors, numbers, strings, lists and dicts (older ones also numpy's RNG state, which loads "
                    f"safely).  If you made this file yourself or trust where it came from, pass {TRUST_FLAG} to "
                    "load it with full unpickling, which runs any code the file contains; 'train --resume "
                    f"{TRUST_FLAG}' then writes its next checkpoint in the safe format")
            try:
                with warnings.catch_warnings():  # a crafted pickle protocol number: the error below says enough
                    warnings.filterwarnings("ignore", message="Detected pickle protocol")
                    ck = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
            except Exception as e:  # noqa: BLE001 - any failure is a bad file
                raise TrainError(f"{what}: checkpoint {path!r} could not be loaded safely ({_short(e)}); "
                                 f"pass {TRUST_FLAG} only if you trust the file") from None
    try:
        _check_checkpoint(ck, path, what)
    except TrainError:
        raise
    except Exception as e:  # noqa: BLE001 - e.g. odd keys in a crafted file
        raise TrainError(f"{what}: checkpoint {path!r} is malformed ({_short(e)})") from None
    return ck


def _check_checkpoint(ck: Any, path: str, what: str) -> None:
    head = f"{what}: checkpoint {path!r}"
    if not isinstance(ck, dict):
        raise TrainError(f"{head} should hold a dict (written by 'python -m mobilenet_ext train'), "
                         f"got {type(ck).__name__}")
    missing = [k for k in ("config", "model_state") if k not in ck]
    if missing:
        raise TrainError(f"{head} is not a checkpoint written by 'python -m mobilenet_ext train' (expected keys "
                         f"'model_state' and 'config', missing {missing}; it has {sorted(map(repr, ck))[:10]})")
    cfg, state = ck["config"], ck["model_state"]
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), str) \
            or type(cfg.get("width_mult")) not in (int, float):
        raise TrainError(f"{head}: 'config' should be a dict with a str 'model' and a number 'width_mult', got "
                         + (f"model={cfg.get('model')!r}, width_mult={cfg.get('width_mult')!r}"
                            if isinstance(cfg, dict) else type(cfg).__name__))
    if not isinstance(state, dict) or not state or \
            not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise TrainError(f"{head}: 'model_state' should be a non-empty dict of parameter names to tensors, got "
                         + (f"{len(state)} entries" if isinstance(state, dict) else type(state).__name__))


def _int_field(ck: Dict[str, Any], key: str, head: str) -> int:
    v = ck.get(key)
    if type(v) is not int or v < 0:
        raise TrainError(f"{head}: '{key}' should be an int >= 0, got {v!r}")
    return v


def _plain(v: Any) -> Any:
    """A config value as a plain type (what the safe loader reads back):
    paths become strings."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    return str(v)


def _slow_save_seconds() -> float:
    v = os.environ.get(_SLOW_SAVE_ENV, "")
    if not v:
        return 0.0
    try:
        s = float(v)
    except ValueError:
        raise TrainError(f"environment variable {_SLOW_SAVE_ENV} (test-only) must be a number of seconds, "
                         f"got {v!r}") from None
    return max(s, 0.0)


def _fsync_dir(folder: str) -> None:
    if os.name == "nt":  # a directory cannot be opened for fsync on Windows; os.replace is already atomic there
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: str, payload: bytes) -> None:
    """Replace ``path`` by ``payload`` so that a crash at any moment leaves
    either the previous file or the complete new one: write ``path.tmp`` in
    the same folder, flush and fsync it, ``os.replace`` it over ``path``,
    fsync the folder (so the rename itself is on disk).

    Test-only hook: with ``MOBILENET_EXT_TEST_SLOW_SAVE=SECONDS`` in the
    environment the write is stretched over about that long (eight chunks
    with pauses, a pause before and one after the rename) and a line
    ``[MOBILENET_EXT_TEST_SLOW_SAVE] writing PATH`` goes to stderr first, so
    tests/test_untrusted.py can SIGKILL a run in the middle of a save."""
    slow = _slow_save_seconds()
    folder = os.path.dirname(os.path.abspath(path))
    tmp = path + ".tmp"
    if slow:
        print(f"[{_SLOW_SAVE_ENV}] writing {path}", file=sys.stderr, flush=True)
    with open(tmp, "wb") as f:
        if slow:
            n = 8
            step = -(-len(payload) // n)
            for i in range(n):
                f.write(payload[i * step:(i + 1) * step])
                f.flush()
                time.sleep(slow / 16)
        else:
            f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    if slow:
        time.sleep(slow / 4)
    os.replace(tmp, path)
    _fsync_dir(folder)
    if slow:
        time.sleep(slow / 4)


def _save_atomic(obj: Any, path: str) -> None:
    """``torch.save(obj, path)`` through :func:`_write_atomic`."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    _write_atomic(path, buf.getvalue())


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise TrainError(f"--device must be 'auto', 'cpu' or 'cuda[:N]', got {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainError(f"--device {name!r} asks for CUDA, but torch.cuda.is_available() is False")
    if dev.type not in ("cpu", "cuda"):
        raise TrainError(f"--device must be 'auto', 'cpu' or 'cuda[:N]', got {name!r}")
    return dev


def _evaluate(model: nn.Module, ds: Dataset, device: torch.device, dist_info: _Dist, batch: int,
              channels_last: bool, amp: bool) -> Tuple[float, float]:
    """Mean loss (no label smoothing) and accuracy on the test split; each
    rank takes every world_size-th image and the sums are all-reduced."""
    model.eval()
    idx = torch.arange(dist_info.rank, len(ds.test_y), dist_info.world_size)
    loss_sum = correct = 0.0
    with torch.no_grad():
        for s in range(0, len(idx), batch):
            b = idx[s:s + batch]
            x = ds.normalize(ds.test_x[b]).to(device)
            y = ds.test_y[b].to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device, amp):
                out = model(x)
            loss_sum += F.cross_entropy(out.float(), y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
    loss_sum, correct, n = _all_reduce_sum([loss_sum, correct, float(len(idx))], dist_info, device)
    model.train()
    return loss_sum / n, correct / n


def _autocast(device: torch.device, amp: bool):
    if amp:
        return torch.autocast(device_type=device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def _checkpoint_path(args: argparse.Namespace) -> Optional[str]:
    if args.resume not in (None, "auto"):
        return args.resume
    if args.out is None:
        return None
    return os.path.join(args.out, CHECKPOINT_NAME)


def _check_args(args: argparse.Namespace) -> None:
    def positive(name: str, v: Any, allow_none: bool = False) -> None:
        if v is None and allow_none:
            return
        if not isinstance(v, int) or v < 1:
            raise TrainError(f"--{name} must be a positive int, got {v!r}")

    positive("epochs", args.epochs)
    positive("batch-size", args.batch_size)
    positive("max-steps", args.max_steps, allow_none=True)
    positive("threads", args.threads, allow_none=True)
    if args.lr is not None and not args.lr > 0:
        raise TrainError(f"--lr must be > 0, got {args.lr!r}")
    if not 0.0 <= args.label_smoothing < 1.0:
        raise TrainError(f"--label-smoothing must be in [0, 1), got {args.label_smoothing!r}")
    if not args.weight_decay >= 0:
        raise TrainError(f"--weight-decay must be >= 0, got {args.weight_decay!r}")
    if not args.warmup_epochs >= 0:
        raise TrainError(f"--warmup-epochs must be >= 0, got {args.warmup_epochs!r}")
    if args.resume is not None and args.resume == "auto" and args.out is None:
        raise TrainError("--resume without a path needs --out DIR (it resumes from DIR/last.pt)")


def train(args: argparse.Namespace, dataset: Optional[Dataset] = None, log=print) -> TrainResult:
    """Run the training described by ``args`` (the namespace
    :func:`add_arguments` defines); ``dataset`` overrides ``--data``.
    Returns the trained model (unwrapped), per-epoch results and this
    rank's per-step losses."""
    _check_args(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = _resolve_device(args.device)
    if args.amp and device.type != "cuda":
        raise TrainError(f"--amp (float16 autocast + GradScaler) needs a CUDA device, got device {device}; "
                         "drop --amp to train in float32 on the CPU")
    dist_info = _init_distributed(device)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
        torch.cuda.set_device(device)
    if not dist_info.is_main:
        log = lambda *a, **k: None  # noqa: E731 - only rank 0 prints
    try:
        return _train(args, dataset, device, dist_info, log)
    finally:
        if dist_info.initialized_here:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(args: argparse.Namespace, ds: Optional[Dataset], device: torch.device, dist_info: _Dist,
           log) -> TrainResult:
    from torch.utils.data import DistributedSampler

    if ds is None:
        ds = load_cifar10(args.data) if args.data else load_digits(args.image_size)

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    import numpy as np

    np.random.seed(args.seed % 2**32)
    model = build_model(args.model, args.width_mult, ds.num_classes, args.backend,
                        dropout=args.dropout, bn_momentum=args.bn_momentum).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    # Per-rank stream for dropout; the model above was initialised identically on every rank.
    torch.manual_seed(args.seed + 7 * dist_info.rank)

    n_train = len(ds.train_y)
    sampler = DistributedSampler(range(n_train), num_replicas=dist_info.world_size, rank=dist_info.rank,
                                 shuffle=True, seed=args.seed, drop_last=True)
    steps_per_epoch = len(sampler) // args.batch_size
    if steps_per_epoch < 1:
        raise TrainError(f"--batch-size {args.batch_size} is larger than the {len(sampler)} training images "
                         f"each of the {dist_info.world_size} process(es) gets")
    global_batch = args.batch_size * dist_info.world_size
    lr = args.lr if args.lr is not None else default_lr(args.optimizer, global_batch)
    optimizer = make_optimizer(model, args.optimizer, lr, args.weight_decay, args.momentum)
    total_steps = args.epochs * steps_per_epoch
    warmup_steps = int(round(args.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps))
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp)
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)

    start_epoch = 0
    step = 0
    history: List[EpochResult] = []
    ckpt_path = _checkpoint_path(args)
    if args.resume is not None:
        if ckpt_path is None:
            raise TrainError("--resume without a path needs --out DIR (it resumes from DIR/last.pt)")
        ckpt = load_checkpoint(ckpt_path, trust=bool(getattr(args, "trust_checkpoint", False)), what="--resume")
        head = f"--resume: checkpoint {ckpt_path!r}"
        for key in ("model", "width_mult", "dataset"):
            want = getattr(args, key, None) if key != "dataset" else ds.name
            if ckpt["config"].get(key) != want:
                raise TrainError(f"{head} was trained with {key}={ckpt['config'].get(key)!r}, this run has "
                                 f"{key}={want!r}")
        saved_spe = ckpt.get("steps_per_epoch")
        if ckpt["config"].get("epochs") != args.epochs or saved_spe != steps_per_epoch:
            raise TrainError(
                f"{head} follows a schedule of {ckpt['config'].get('epochs')} epochs x "
                f"{saved_spe} steps, this run has {args.epochs} epochs x {steps_per_epoch} steps (--epochs, "
                "--batch-size and the number of processes must match the original run)")
        start_epoch, step, history = _restore(ckpt, head, model, optimizer, scheduler, scaler)
        rngs = ckpt.get("rng") or []
        if not isinstance(rngs, list):
            raise TrainError(f"{head}: 'rng' should be a list of per-process RNG states, got {type(rngs).__name__}")
        if len(rngs) == dist_info.world_size:
            _set_rng_state(rngs[dist_info.rank], head)
        else:
            log(f"warning: checkpoint has RNG states of {len(rngs)} process(es), this run has "
                f"{dist_info.world_size}; dropout masks will differ from an uninterrupted run")
        log(f"resumed from {ckpt_path} after epoch {start_epoch} (step {step})")

    train_model: nn.Module = model
    if dist_info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    n_params = sum(p.numel() for p in model.parameters())
    log(f"{args.model} x{args.width_mult} ({args.backend} backend, {n_params / 1e6:.3f}M params) on {ds.name} "
        f"({n_train} train / {len(ds.test_y)} test, {tuple(ds.train_x.shape[1:])}), device {device}, "
        f"{dist_info.world_size} process(es) x batch {args.batch_size}, {args.optimizer} lr {lr:g}, "
        f"{torch.get_num_threads()} thread(s)")

    result = TrainResult(model=model, history=history, steps=step)
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional: plain per-epoch lines without it
        tqdm = None

    for epoch in range(start_epoch, args.epochs):
        if args.max_steps is not None and step >= args.max_steps:
            break
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        order = torch.tensor(list(iter(sampler)), dtype=torch.long)
        gen = _epoch_generator(args.seed, epoch, dist_info.rank)
        train_model.train()
        loss_sum = correct = seen = 0.0
        batches: Iterator[int] = iter(range(steps_per_epoch))
        bar = None
        if tqdm is not None and dist_info.is_main and not args.no_progress:
            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{args.epochs}", leave=False,
                       dynamic_ncols=True, file=sys.stderr)
        for i in batches:
            if args.max_steps is not None and step >= args.max_steps:
                break
            b = order[i * args.batch_size:(i + 1) * args.batch_size]
            x = ds.normalize(_augment(ds, ds.train_x[b], gen)).to(device, non_blocking=True)
            y = ds.train_y[b].to(device, non_blocking=True)
            if args.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device, args.amp):
                out = train_model(x)
                loss = criterion(out.float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            lv = loss.item()
            if not math.isfinite(lv):
                raise FloatingPointError(f"training loss became {lv} at step {step} (epoch {epoch + 1}); "
                                         "try a lower --lr")
            result.step_losses.append(lv)
            loss_sum += lv * len(b)
            correct += (out.detach().argmax(1) == y).sum().item()
            seen += len(b)
            if bar is not None:
                bar.set_postfix(loss=f"{lv:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.3g}")
                bar.update(1)
        if bar is not None:
            bar.close()
        loss_sum, correct, seen = _all_reduce_sum([loss_sum, correct, seen], dist_info, device)
        _average_buffers(model, dist_info)
        epoch_complete = seen == steps_per_epoch * args.batch_size * dist_info.world_size
        test_loss, test_acc = _evaluate(model, ds, device, dist_info, max(args.batch_size, 256),
                                        args.channels_last, args.amp)
        er = EpochResult(epoch + 1, loss_sum / max(seen, 1), correct / max(seen, 1), test_loss, test_acc,
                         optimizer.param_groups[0]["lr"], time.perf_counter() - t0, int(seen // args.batch_size))
        history.append(er)
        log(f"epoch {er.epoch:>3}/{args.epochs}  train loss {er.train_loss:.4f} acc {100 * er.train_acc:6.2f}%  "
            f"test loss {er.test_loss:.4f} acc {100 * er.test_acc:6.2f}%  lr {er.lr:.4g}  "
            f"{er.seconds:.1f}s" + ("" if epoch_complete else f"  (stopped by --max-steps after step {step})"))
        if epoch_complete:
            _save_checkpoint(args, ds, model, optimizer, scheduler, scaler, epoch + 1, step, history,
                             dist_info, log, steps_per_epoch)

    result.steps = step
    result.digest = state_digest(model)
    if args.dump_rank_state and args.out is not None:
        os.makedirs(args.out, exist_ok=True)
        _save_atomic({"model_state": model.state_dict(), "steps": step, "step_losses": result.step_losses,
                      "rank": dist_info.rank, "world_size": dist_info.world_size},
                     os.path.join(args.out, f"rank{dist_info.rank}_state.pt"))
    _check_in_sync(args, result.digest, dist_info, log)
    return result


def _check_like(saved: Any, fresh: Any, where: str) -> None:
    """Raise :class:`TrainError` unless ``saved`` (from a checkpoint) has the
    structure of ``fresh`` (this run's own state): the same dict keys and
    list lengths, tensors of the same shape and dtype, values of the same
    kind (any number for a number)."""
    def bad(what: str) -> TrainError:
        return TrainError(f"{where} should be {what}, got "
                          + (f"{saved.dtype} {list(saved.shape)}" if isinstance(saved, Tensor) else
                             f"keys {sorted(map(repr, saved))[:8]}" if isinstance(saved, dict) else
                             f"{type(saved).__name__} of length {len(saved)}" if isinstance(saved, (list, tuple))
                             else f"{type(saved).__name__} {saved!r}"[:200]))

    if isinstance(fresh, dict):
        if not isinstance(saved, dict) or set(saved) != set(fresh):
            raise bad(f"a dict with keys {sorted(map(repr, fresh))}")
        for k, v in fresh.items():
            _check_like(saved[k], v, f"{where}[{k!r}]")
    elif isinstance(fresh, (list, tuple)):
        if not isinstance(saved, (list, tuple)) or len(saved) != len(fresh):
            raise bad(f"a list of {len(fresh)}")
        for i, (a, b) in enumerate(zip(saved, fresh)):
            _check_like(a, b, f"{where}[{i}]")
    elif isinstance(fresh, Tensor):
        if not isinstance(saved, Tensor) or saved.shape != fresh.shape or saved.dtype != fresh.dtype:
            raise bad(f"a {fresh.dtype} tensor {list(fresh.shape)}")
    elif type(fresh) in (int, float):
        if type(saved) not in (int, float):
            raise bad("a number")
    elif type(saved) is not type(fresh):
        raise bad(f"a {type(fresh).__name__}")


def _restore(ckpt: Dict[str, Any], head: str, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
             scaler: Any) -> Tuple[int, int, List[EpochResult]]:
    """Check every part of a loaded checkpoint against this run's own
    objects, then load them; returns (epoch, step, history).  Anything that
    does not fit raises :class:`TrainError` (``head`` names the file)."""
    epoch, step = _int_field(ckpt, "epoch", head), _int_field(ckpt, "step", head)
    opt = ckpt.get("optimizer")
    fresh_opt = optimizer.state_dict()
    if not isinstance(opt, dict) or set(opt) != {"state", "param_groups"}:
        raise TrainError(f"{head}: 'optimizer' should be an optimizer state_dict (keys 'state', 'param_groups')")
    _check_like(opt["param_groups"], fresh_opt["param_groups"], f"{head}: optimizer param_groups")
    params = [p for g in optimizer.param_groups for p in g["params"]]
    state = opt["state"]
    if not isinstance(state, dict):
        raise TrainError(f"{head}: optimizer 'state' should be a dict, got {type(state).__name__}")
    for idx, s in state.items():
        if type(idx) is not int or not 0 <= idx < len(params) or not isinstance(s, dict):
            raise TrainError(f"{head}: optimizer state entry {idx!r} should be a parameter index below "
                             f"{len(params)} with a dict")
        for name, v in s.items():
            ok = isinstance(name, str) and (
                (isinstance(v, Tensor) and (v.dim() == 0 or v.shape == params[idx].shape)) or type(v) in (int, float))
            if not ok:
                raise TrainError(f"{head}: optimizer state [{idx}][{name!r}] should be a tensor shaped like the "
                                 f"parameter {list(params[idx].shape)} or a number")
    _check_like(ckpt.get("scheduler"), scheduler.state_dict(), f"{head}: 'scheduler'")
    try:
        _check_like(ckpt.get("scaler"), scaler.state_dict(), f"{head}: 'scaler'")
    except TrainError as e:
        raise TrainError(f"{e} (--amp must match the original run)") from None
    hist = ckpt.get("history", [])
    names = {f.name for f in dataclasses.fields(EpochResult)}
    if not isinstance(hist, list) or not all(isinstance(h, dict) and set(h) == names and
                                             all(type(v) in (int, float) for v in h.values()) for h in hist):
        raise TrainError(f"{head}: 'history' should be a list of dicts with the numbers {sorted(names)}")
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as e:
        raise TrainError(f"{head} does not fit this model ({_short(e)})") from None
    try:
        optimizer.load_state_dict(opt)
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
    except Exception as e:  # noqa: BLE001 - after the checks above, only a damaged file gets here
        raise TrainError(f"{head}: optimizer / scheduler / scaler state could not be loaded ({_short(e)})") from None
    return epoch, step, [EpochResult(**h) for h in hist]


def _save_checkpoint(args, ds, model, optimizer, scheduler, scaler, epoch, step, history, dist_info, log,
                     steps_per_epoch: int) -> None:
    if args.out is None:
        return
    rngs = [_rng_state()]
    if dist_info.enabled:
        import torch.distributed as dist

        rngs = [None] * dist_info.world_size
        dist.all_gather_object(rngs, _rng_state())
    if not dist_info.is_main:
        return
    os.makedirs(args.out, exist_ok=True)
    config = {k: _plain(v) for k, v in vars(args).items() if k != "func"}
    config["dataset"] = ds.name
    ckpt = {
        "config": config,
        "model_state": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
        "step": step,
        "steps_per_epoch": steps_per_epoch,
        "history": [vars(h) for h in history],
        "rng": rngs,
    }
    # Both files are replaced atomically: a run killed at any moment leaves the previous complete last.pt or
    # the new one (never a truncated file), and a history.json that parses.
    _save_atomic(ckpt, os.path.join(args.out, CHECKPOINT_NAME))
    _write_atomic(os.path.join(args.out, "history.json"),
                  json.dumps({"config": config, "history": [vars(h) for h in history]}, indent=1).encode())


def _check_in_sync(args, digest: str, dist_info: _Dist, log) -> None:
    if args.out is not None and dist_info.enabled:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, f"state_digest_rank{dist_info.rank}.txt"), "w") as f:
            f.write(digest + "\n")
    if not dist_info.enabled:
        return
    import torch.distributed as dist

    digests: List[Optional[str]] = [None] * dist_info.world_size
    dist.all_gather_object(digests, digest)
    if len(set(digests)) != 1:
        raise RuntimeError(f"DDP ranks out of sync: parameter/buffer digests differ across ranks: {digests}")
    log(f"all {dist_info.world_size} ranks in sync (state sha256 {digest[:16]}...)")


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=MODELS, default="mobilenet_v3_small")
    parser.add_argument("--width-mult", type=float, default=1.0, help="width multiplier alpha (default 1.0)")
    parser.add_argument("--backend", choices=("ext", "torch"), default="ext",
                        help="ext: our depthwise/1x1 ops; torch: nn.Conv2d (same init for the same seed)")
    parser.add_argument("--data", metavar="DIR", default=None,
                        help="CIFAR-10 in its python format (DIR or DIR/cifar-10-batches-py); "
                             "default: scikit-learn's 8x8 digits, upsampled (no download)")
    parser.add_argument("--image-size", type=int, default=32, help="digits: upsampled size (default 32)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64, help="per process (default 64)")
    parser.add_argument("--optimizer", choices=("sgd", "rmsprop"), default="sgd")
    parser.add_argument("--lr", type=float, default=None,
                        help="peak learning rate (default: sgd 0.2, rmsprop 0.016 per 256 images of global batch)")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up length (default 1)")
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=4e-5,
                        help="on dense conv/linear weights only; never on depthwise weights, BatchNorm, biases "
                             "(default 4e-5, the papers' value)")
    parser.add_argument("--bn-momentum", type=float, default=0.1,
                        help="BatchNorm running-stat momentum, PyTorch convention (default 0.1; the V3 models' "
                             "own 0.01 suits ImageNet-length runs, not a few hundred steps)")
    parser.add_argument("--dropout", type=float, default=None, help="classifier dropout (default: the model's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    parser.add_argument("--amp", action="store_true", help="float16 autocast + GradScaler (CUDA only)")
    parser.add_argument("--channels-last", action="store_true", help="model and inputs in channels_last")
    parser.add_argument("--out", "--checkpoint", dest="out", metavar="DIR", default=None,
                        help="write DIR/last.pt (after every epoch) and DIR/history.json")
    parser.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                        help="resume from CKPT (default: --out DIR/last.pt); loaded with torch.load(weights_only=True)")
    parser.add_argument(TRUST_FLAG, dest="trust_checkpoint", action="store_true",
                        help="load a --resume checkpoint that the safe loader refuses (it names Python objects "
                             "other than tensors, numbers, strings, lists, dicts) with full unpickling, which runs "
                             "any code in the file: only for files you made or trust")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop after this many optimizer steps in total (the schedule still spans --epochs)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    parser.add_argument("--dump-rank-state", action="store_true",
                        help="debugging DDP: every rank writes its final state_dict, step count and per-step "
                             "losses to --out DIR/rank{R}_state.pt")


def main(args: argparse.Namespace) -> int:
    try:
        result = train(args)
    except TrainError as e:
        print(f"python -m mobilenet_ext train: error: {e}", file=sys.stderr)
        return 2
    if result.history and _env_int("RANK", 0) == 0:
        best = max(h.test_acc for h in result.history)
        last = result.history[-1]
        print(f"final test accuracy {100 * last.test_acc:.2f}% (best {100 * best:.2f}%) after "
              f"{last.epoch} epoch(s), {result.steps} steps")
    return 0
