// Run-time selection of the CPU kernel family (CPUID on x86-64; NEON is
// always present on AArch64). Never compiled with -march=native.
#include "cpu_kernels.h"

#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#define MNX_X86 1
#include "avx2/avx2_kernels.h"
#include "avx512/avx512_gemm.h"
#endif
#if defined(__aarch64__)
#define MNX_ARM 1
#include "neon/neon_kernels.h"
#endif

namespace mnx {
namespace cpu {

bool cpu_has_avx2_fma() {
#if MNX_X86 && (defined(__GNUC__) || defined(__clang__))
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return has;
#else
  return false;
#endif
}

bool cpu_has_avx512f() {
#if MNX_X86 && (defined(__GNUC__) || defined(__clang__))
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
           __builtin_cpu_supports("fma");
  }();
  return has;
#else
  return false;
#endif
}

// AVX-512 kernels run inside the AVX2 family when the CPU has AVX-512F,
// unless MOBILENET_EXT_ISA is "avx2" or "scalar".
bool cpu_use_avx512() {
  static const bool use = [] {
    const char* env = std::getenv("MOBILENET_EXT_ISA");
    const bool capped = env && (std::strcmp(env, "avx2") == 0 || std::strcmp(env, "scalar") == 0);
    return !capped && cpu_has_avx512f();
  }();
  return use;
}

namespace {

enum class Isa { Scalar, Avx2, Neon };

Isa pick_isa() {
  const char* env = std::getenv("MOBILENET_EXT_ISA");
  const bool force_scalar = env && std::strcmp(env, "scalar") == 0;
  if (force_scalar) return Isa::Scalar;
#if MNX_X86
  if (cpu_has_avx2_fma()) return Isa::Avx2;
#endif
#if MNX_ARM
  return Isa::Neon;
#endif
  return Isa::Scalar;
}

Isa selected() {
  static const Isa isa = pick_isa();
  return isa;
}

const DepthwiseKernels<float> kDepthwiseScalarF32 = {
    depthwise_forward_scalar<float>, depthwise_grad_input_scalar<float>,
    depthwise_grad_weight_scalar<float>, "scalar"};
const DepthwiseKernels<double> kDepthwiseScalarF64 = {
    depthwise_forward_scalar<double>, depthwise_grad_input_scalar<double>,
    depthwise_grad_weight_scalar<double>, "scalar"};
const GemmKernels<float> kGemmScalarF32 = {gemm_scalar<float>, "scalar"};
const GemmKernels<double> kGemmScalarF64 = {gemm_scalar<double>, "scalar"};

#if MNX_X86
const DepthwiseKernels<float> kDepthwiseAvx2F32 = {
    depthwise_forward_avx2_f32, depthwise_grad_input_avx2_f32,
    depthwise_grad_weight_avx2_f32, "avx2",
    depthwise_grad_weight_nhwc_partial_avx2};
const GemmKernels<float> kGemmAvx2F32 = {gemm_avx2_f32, "avx2"};
const GemmKernels<float> kGemmAvx512F32 = {gemm_avx512_f32, "avx512"};
#endif
#if MNX_ARM
const DepthwiseKernels<float> kDepthwiseNeonF32 = {
    depthwise_forward_neon_f32, depthwise_grad_input_neon_f32,
    depthwise_grad_weight_neon_f32, "neon",
    depthwise_grad_weight_nhwc_partial_neon};
const GemmKernels<float> kGemmNeonF32 = {gemm_neon_f32, "neon"};
#endif

}  // namespace

const DepthwiseKernels<float>& depthwise_kernels_f32() {
  switch (selected()) {
#if MNX_X86
    case Isa::Avx2:
      return kDepthwiseAvx2F32;
#endif
#if MNX_ARM
    case Isa::Neon:
      return kDepthwiseNeonF32;
#endif
    default:
      return kDepthwiseScalarF32;
  }
}

GemmPath gemm_path() {
  switch (selected()) {
#if MNX_X86
    case Isa::Avx2:
      return cpu_use_avx512() ? GemmPath::avx512 : GemmPath::avx2;
#endif
#if MNX_ARM
    case Isa::Neon:
      return GemmPath::neon;
#endif
    default:
      return GemmPath::scalar;
  }
}

const char* gemm_path_name(GemmPath p) {
  switch (p) {
    case GemmPath::scalar:
      return "scalar";
    case GemmPath::avx2:
      return "avx2";
    case GemmPath::avx512:
      return "avx512";
    case GemmPath::neon:
      return "neon";
  }
  return "?";
}

const GemmKernels<float>& gemm_kernels_f32() {
  switch (gemm_path()) {
#if MNX_X86
    case GemmPath::avx512:
      return kGemmAvx512F32;
    case GemmPath::avx2:
      return kGemmAvx2F32;
#endif
#if MNX_ARM
    case GemmPath::neon:
      return kGemmNeonF32;
#endif
    default:
      return kGemmScalarF32;
  }
}

// --- depthwise kernel names (depthwise_path.h) --------------------------------
namespace {
const char* const kDepthwisePathNames[kDepthwisePathCount] = {
    "scalar",        "nchw_c8_kxk",     "nchw_kxk_rows", "nchw_small_planes",
    "nchw_direct",   "nhwc_kxk_avx2",   "nhwc_kxk_avx512", "nhwc_direct"};
}  // namespace

const char* depthwise_path_name(DepthwisePath p) {
  const int i = static_cast<int>(p);
  return i >= 0 && i < kDepthwisePathCount ? kDepthwisePathNames[i] : "?";
}

bool depthwise_path_from_name(const char* name, DepthwisePath* p) {
  for (int i = 0; name && i < kDepthwisePathCount; ++i)
    if (std::strcmp(name, kDepthwisePathNames[i]) == 0) {
      *p = static_cast<DepthwisePath>(i);
      return true;
    }
  return false;
}

bool depthwise_path_forced(DepthwisePath* p) {
  struct Forced {
    bool set;
    DepthwisePath path;
  };
  static const Forced forced = [] {
    Forced f{false, DepthwisePath::scalar};
    f.set = depthwise_path_from_name(std::getenv("MOBILENET_EXT_DEPTHWISE_PATH"), &f.path);
    return f;
  }();
  if (forced.set) *p = forced.path;
  return forced.set;
}

DepthwisePath depthwise_path_f32(const DepthwiseShape& s, DepthwiseOp op) {
  switch (selected()) {
#if MNX_X86
    case Isa::Avx2:
      return depthwise_path_avx2(s, op);
#endif
#if MNX_ARM
    case Isa::Neon:
      return depthwise_path_neon(s, op);
#endif
    default:
      return DepthwisePath::scalar;
  }
}

const DepthwiseKernels<double>& depthwise_kernels_f64() {
  return kDepthwiseScalarF64;
}
const GemmKernels<double>& gemm_kernels_f64() { return kGemmScalarF64; }

const char* selected_isa() { return depthwise_kernels_f32().isa; }

int64_t fma_peak_f32(int64_t iters, float* sink) {
  switch (selected()) {
#if MNX_X86
    case Isa::Avx2:
      return cpu_use_avx512() ? fma_peak_avx512_f32(iters, sink) : fma_peak_avx2_f32(iters, sink);
#endif
#if MNX_ARM
    case Isa::Neon:
      return fma_peak_neon_f32(iters, sink);
#endif
    default:
      return fma_peak_scalar_f32(iters, sink);
  }
}

const char* fma_peak_isa() {
  switch (selected()) {
#if MNX_X86
    case Isa::Avx2:
      return cpu_use_avx512() ? "avx512" : "avx2";
#endif
#if MNX_ARM
    case Isa::Neon:
      return "neon";
#endif
    default:
      return "scalar";
  }
}

}  // namespace cpu
}  // namespace mnx
