"""Loads the compiled extension ``mobilenet_ext._C`` and checks that it was
built against the torch that is imported now."""
from __future__ import annotations

import torch


def _built_torch_version() -> str:
    try:
        from . import _build_info

        return _build_info.TORCH_VERSION
    except ImportError:
        return "unknown"


def load():
    built = _built_torch_version()
    try:
        from . import _C  # noqa: F401  (registers the ops with the dispatcher)
    except ImportError as e:
        if built != "unknown" and built != torch.__version__:
            raise ImportError(
                f"mobilenet_ext._C was built against torch {built} but torch "
                f"{torch.__version__} is installed: rebuild it with "
                "`pip install --no-build-isolation -e .`"
            ) from e
        raise ImportError(
            "mobilenet_ext._C is not built or failed to load "
            f"({e}). Build it with `pip install --no-build-isolation -e .`"
        ) from e
    check_torch_version(_C.torch_version(), torch.__version__)
    return _C


def check_torch_version(compiled: str, installed: str) -> None:
    """Raise ImportError naming both versions when the extension was built
    against another torch than the one imported."""
    if compiled != installed:
        raise ImportError(
            f"mobilenet_ext._C was built against torch {compiled} but torch "
            f"{installed} is installed: rebuild it with "
            "`pip install --no-build-isolation -e .`"
        )


_C = load()


def cpu_isa() -> str:
    """Instruction set of the float32 CPU kernels in use: 'avx2',
    'avx2+avx512' (AVX2 family with its AVX-512F kernels on a CPU that has
    them, except AMD Zen 4, which splits 512-bit operations and runs the
    AVX2 kernels faster), 'neon' or 'scalar'. MOBILENET_EXT_ISA=avx2
    switches the AVX-512 kernels off, =avx512 on (where the CPU has them),
    =scalar forces the portable kernels."""
    return _C.cpu_isa()


def cuda_built() -> bool:
    """Whether the CUDA kernels were compiled into this build."""
    return bool(_C.cuda_built())


def cpu_cache_stats() -> dict:
    """Counters of the CPU output cache: the ops' outputs of at least 1 MiB
    are allocated from it, and a freed buffer is kept for the next output
    of about its size, so its pages are not faulted in again on every call
    (at batch 32 that fault time is as large as the convolutions').

    Returns a dict of ints: ``limit_bytes`` (most free bytes kept; 0 = off),
    ``in_use_bytes`` (handed out, not yet freed), ``cached_bytes`` (free,
    kept), ``peak_reserved_bytes`` (max of in use + cached so far), ``hits``,
    ``misses``, ``evictions``. The limit defaults to min(RAM / 8, 4 GiB);
    ``MOBILENET_EXT_CPU_CACHE_MB`` sets it at start-up,
    :func:`set_cpu_cache_limit` later."""
    return dict(_C.cpu_cache_stats())


def empty_cpu_cache() -> int:
    """Give the CPU output cache's free buffers back to the system (as
    ``torch.cuda.empty_cache`` does for CUDA). Buffers in use are not
    touched. Returns the number of bytes released."""
    return int(_C.cpu_cache_clear())


def set_cpu_cache_limit(limit_bytes: int) -> int:
    """Set the most bytes of free buffers the CPU output cache keeps
    (``0`` turns caching off: every output is then freed to the system when
    it dies); free buffers beyond the new limit are released, oldest first.
    Returns the previous limit. Raises ValueError for a negative limit."""
    if isinstance(limit_bytes, bool) or not isinstance(limit_bytes, int):
        raise TypeError(f"set_cpu_cache_limit: limit_bytes must be an int, got {type(limit_bytes).__name__}")
    if limit_bytes < 0:
        raise ValueError(f"set_cpu_cache_limit: limit_bytes must be >= 0, got {limit_bytes}")
    return int(_C.cpu_cache_set_limit(limit_bytes))
