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
