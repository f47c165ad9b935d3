"""Build script for mobilenet_ext._C.

    pip install --no-build-isolation -e .

Environment:
    FORCE_CUDA=1              build the CUDA kernels even without a visible GPU
    MOBILENET_EXT_NO_CUDA=1   never build them
    TORCH_CUDA_ARCH_LIST      e.g. "8.0;9.0" (honoured by torch's cpp_extension);
                              unset: the visible GPUs' architectures, or
                              DEFAULT_CUDA_ARCH_LIST when none is visible

Without either variable the CUDA kernels are built when nvcc is found, torch
is a CUDA build and a GPU is visible; nvcc without a visible GPU builds the
CPU kernels only and says so (one line, also kept in
mobilenet_ext/_build_info.py as BUILD_NOTE).
    MAX_JOBS                  parallel compile jobs (honoured by ninja)
    CUDA_HOME                 defaults to /usr/local/cuda when nvcc is there

The torch-free CPU kernels are compiled as static libraries, one per
instruction set, each with its own flags (never -march=native); the glue that
includes torch headers is compiled with plain flags and links them.
"""
import glob
import os
import platform
import shutil
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))

# torch's cpp_extension reads CUDA_HOME at import time; its guess on some
# machines (/usr/local) has no lib64 and fails at link time.
if "CUDA_HOME" not in os.environ and os.path.exists("/usr/local/cuda/bin/nvcc"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

import torch  # noqa: E402
from setuptools import find_packages, setup  # noqa: E402
from torch.utils.cpp_extension import (  # noqa: E402
    CUDA_HOME,
    BuildExtension,
    CppExtension,
    CUDAExtension,
)


# Architectures compiled for when FORCE_CUDA=1, no GPU is visible and
# TORCH_CUDA_ARCH_LIST is unset (torch's cpp_extension would otherwise find an
# empty list and fail): A100 (sm_80) and H100/H200 (sm_90).
DEFAULT_CUDA_ARCH_LIST = "8.0;9.0"


def gpu_visible() -> bool:
    try:
        return bool(torch.cuda.is_available()) and torch.cuda.device_count() > 0
    except Exception:  # a broken driver counts as no GPU
        return False


def want_cuda():
    """(build the CUDA kernels?, one line saying why)"""
    if os.environ.get("MOBILENET_EXT_NO_CUDA", "0") == "1":
        return False, "CUDA kernels not built: MOBILENET_EXT_NO_CUDA=1"
    nvcc = bool(CUDA_HOME) and os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc"))
    if os.environ.get("FORCE_CUDA", "0") == "1":
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not gpu_visible():
            os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCH_LIST
            return True, (f"CUDA kernels built (FORCE_CUDA=1) for the default architectures "
                          f"{DEFAULT_CUDA_ARCH_LIST} (no GPU visible, TORCH_CUDA_ARCH_LIST unset)")
        return True, f"CUDA kernels built (FORCE_CUDA=1, TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST') or 'the visible GPUs'})"
    if not torch.version.cuda:
        return False, f"CUDA kernels not built: torch {torch.__version__} is a CPU-only build"
    if not nvcc:
        return False, "CUDA kernels not built: nvcc not found (set CUDA_HOME)"
    if not gpu_visible():
        return False, (f"CUDA kernels not built: nvcc found ({CUDA_HOME}) but no GPU is visible; "
                       "FORCE_CUDA=1 builds them anyway")
    return True, "CUDA kernels built for the visible GPU(s)"


def nvidia_wheel_includes():
    """Headers (cuBLAS, cuSPARSE, ...) that torch's CUDA headers include and
    that ship in the nvidia-* wheels rather than in the CUDA toolkit."""
    out = []
    for p in sys.path:
        out += glob.glob(os.path.join(p, "nvidia", "cu*", "include"))
        out += glob.glob(os.path.join(p, "nvidia", "*", "include"))
    return sorted(set(d for d in out if os.path.isdir(d)))


machine = platform.machine().lower()
is_x86 = machine in ("x86_64", "amd64")
is_arm64 = machine in ("aarch64", "arm64")

common_cflags = ["-O3", "-std=c++17", "-DNDEBUG", "-fno-math-errno"]
# build_clib only compares .cpp timestamps: list the headers so that a header
# change rebuilds the kernel libraries
kernel_headers = sorted(glob.glob("csrc/kernels/*.h") + glob.glob("csrc/cpu/*.h") + glob.glob("csrc/cpu/*/*.h"))
kernel_libs = [
    (
        "mnx_cpu_kernels",
        {
            "sources": ["csrc/cpu/dispatch.cpp", "csrc/cpu/batchnorm_act_dispatch.cpp",
                        "csrc/cpu/conv2d_small_cin_dispatch.cpp", "csrc/cpu/channel_scale_dispatch.cpp",
                        "csrc/cpu/inverted_residual.cpp"]
            + sorted(glob.glob("csrc/cpu/scalar/*.cpp")),
            "cflags": common_cflags,
            "obj_deps": {"": kernel_headers},
        },
    )
]
if is_x86:
    kernel_libs.append(
        (
            "mnx_cpu_avx2",
            {
                "sources": sorted(glob.glob("csrc/cpu/avx2/*.cpp")),
                "cflags": common_cflags + ["-mavx2", "-mfma", "-DMNX_HAVE_AVX512=1"],
                "obj_deps": {"": kernel_headers},
            },
        )
    )
    # AVX-512F kernels, linked after the AVX2 family that calls them; they
    # only run when dispatch.cpp finds AVX-512F (cpu_use_avx512()).
    kernel_libs.append(
        (
            "mnx_cpu_avx512",
            {
                "sources": sorted(glob.glob("csrc/cpu/avx512/*.cpp")),
                "cflags": common_cflags + ["-mavx512f", "-mavx2", "-mfma"],
                "obj_deps": {"": kernel_headers},
            },
        )
    )
elif is_arm64:
    kernel_libs.append(
        (
            "mnx_cpu_neon",
            {"sources": sorted(glob.glob("csrc/cpu/neon/*.cpp")), "cflags": common_cflags,
             "obj_deps": {"": kernel_headers}},
        )
    )

with_cuda, build_note = want_cuda()
print(f"[mobilenet_ext] {build_note}", file=sys.stderr)
torch_version = torch.__version__
define_macros = [("MNX_TORCH_VERSION", f'"{torch_version}"')]
# torch picks the C++ standard its headers need. -fopenmp: at::parallel_for
# is implemented in torch's headers with OpenMP pragmas; without the flag it
# silently runs every op on one thread. libgomp is the one torch loads.
cxx_flags = ["-O3", "-fopenmp"]
link_flags = ["-fopenmp"]
sources = ["csrc/ops.cpp", "csrc/glue/common.cpp", "csrc/glue/cpu_ops.cpp", "csrc/glue/cpu_output_cache.cpp",
           "csrc/glue/batchnorm_ops.cpp", "csrc/glue/squeeze_excitation_ops.cpp",
           "csrc/glue/inverted_residual_ops.cpp", "csrc/glue/replay.cpp"]

if with_cuda:
    define_macros.append(("MNX_WITH_CUDA", None))
    sources += ["csrc/glue/cuda_ops.cpp"] + sorted(glob.glob("csrc/cuda/*.cu"))
    ext = CUDAExtension(
        "mobilenet_ext._C",
        sources,
        define_macros=define_macros,
        include_dirs=nvidia_wheel_includes(),
        extra_link_args=link_flags,
        extra_compile_args={
            "cxx": cxx_flags,
            "nvcc": ["-O3", "-lineinfo", "--expt-relaxed-constexpr"],
        },
    )
else:
    ext = CppExtension(
        "mobilenet_ext._C",
        sources,
        define_macros=define_macros,
        extra_link_args=link_flags,
        extra_compile_args={"cxx": cxx_flags},
    )

# Recorded so that importing against another torch gives a clear error.
with open(os.path.join(ROOT, "mobilenet_ext", "_build_info.py"), "w") as f:
    f.write(
        "# Written by setup.py at build time.\n"
        f"TORCH_VERSION = {torch_version!r}\n"
        f"WITH_CUDA = {with_cuda!r}\n"
        f"BUILD_NOTE = {build_note!r}\n"
    )

class BuildExt(BuildExtension):
    """Builds the per-ISA kernel libraries (build_clib) before the extension
    that links them, also for a plain `setup.py build_ext`."""

    def run(self):
        if self.distribution.has_c_libraries():
            self.run_command("build_clib")
        super().run()


setup(
    name="mobilenet_ext",
    version="0.1.0",
    packages=find_packages(include=["mobilenet_ext", "mobilenet_ext.*"]),
    libraries=kernel_libs,
    ext_modules=[ext],
    cmdclass={"build_ext": BuildExt.with_options(use_ninja=shutil.which("ninja") is not None)},
    zip_safe=False,
)
