// Run-time selection of the CPU kernel family (CPUID on x86-64; NEON is
// always present on AArch64). Never compiled with -march=native.
#include "cpu_kernels.h"

#include <cstdlib>
#include <cstring>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

#if defined(__x86_64__) || defined(_M_X64)
#define MNX_X86 1
#endif
#if defined(__aarch64__)
#define MNX_ARM 1
#endif

namespace mnx {
namespace cpu {

namespace {

// What CPUID says of this x86-64 CPU, read once (all false elsewhere).
struct X86Features {
  bool avx2_fma = false;
  bool avx512f = false;  // with AVX2 and FMA
  bool avx512_split = false;  // AMD family 19h (Zen 4): 512-bit ops as two halves
  bool amd = false;           // vendor AuthenticAMD
};

const X86Features& x86_features() {
  static const X86Features f = [] {
    X86Features r;
#if MNX_X86 && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    r.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    r.avx512f = r.avx2_fma && __builtin_cpu_supports("avx512f");
    unsigned a = 0, b = 0, c = 0, d = 0;
    // vendor "AuthenticAMD" in EBX, EDX, ECX; family from leaf 1
    if (__get_cpuid(0, &a, &b, &c, &d) && b == 0x68747541u && d == 0x69746e65u &&
        c == 0x444d4163u && __get_cpuid(1, &a, &b, &c, &d)) {
      const unsigned base = (a >> 8) & 0xfu;
      const unsigned family = base == 0xfu ? base + ((a >> 20) & 0xffu) : base;
      r.avx512_split = family == 0x19u;  // Zen 3 / Zen 4 (only Zen 4 has AVX-512)
      r.amd = true;
    }
#endif
    return r;
  }();
  return f;
}

}  // namespace

bool cpu_has_avx2_fma() { return x86_features().avx2_fma; }
bool cpu_has_avx512f() { return x86_features().avx512f; }
bool cpu_avx512_split() { return x86_features().avx512_split; }

// AVX-512 kernels run inside the AVX2 family when the CPU has AVX-512F and
// does not split 512-bit operations (cpu_avx512_split), unless
// MOBILENET_EXT_ISA is "avx2" or "scalar"; MOBILENET_EXT_ISA=avx512 runs
// them on any CPU with AVX-512F (tests).
bool cpu_use_avx512() {
  static const bool use = [] {
    const char* env = std::getenv("MOBILENET_EXT_ISA");
    const bool capped = env && (std::strcmp(env, "avx2") == 0 || std::strcmp(env, "scalar") == 0);
    const bool forced = env && std::strcmp(env, "avx512") == 0;
    return !capped && cpu_has_avx512f() && (forced || !cpu_avx512_split());
  }();
  return use;
}

// On AMD CPUs with AVX-512 the channels_last depthwise kernels prefer
// nhwc_kxk_avx2 where it runs (unless MOBILENET_EXT_ISA=avx512 asks for the
// AVX-512 kernels), except at 5x5 / 7x7, stride 1, C % 16 == 0
// (cpu_nhwc_kxk_avx2_first). Zen 5 (EPYC family 1Ah), 2 threads, the
// suite's channels_last rows, 3 alternating runs each side
// (benchmarks/results/dw-cl-20261203-zen5/): with the 5x5 / 7x7 borders in
// pixel groups, nhwc_kxk_avx512 at stride 1 took 0.57-0.83x the time of the
// AVX2 kernel before it on those rows; at 3x3 it lost (up to 0.73x the
// speed on 14x14 maps), and rows whose pixels are not whole 64-byte lines
// (C % 16 == 8: half of the AVX-512 loads straddle two lines) lost up to
// 0.56x. (Before 2026-12-03, with borders pixel by pixel, its stride-1
// forward was 1.3-2.3x slower at batch 32, 1 thread.) The GEMM's AVX-512
// kernel is 1.5-1.9x faster there and stays.
bool cpu_prefer_avx2_nhwc_depthwise() {
  static const bool prefer = [] {
    const char* env = std::getenv("MOBILENET_EXT_ISA");
    const bool forced = env && std::strcmp(env, "avx512") == 0;
    return x86_features().amd && !forced;
  }();
  return prefer;
}

bool cpu_nhwc_kxk_avx2_first(const DepthwiseShape& s) {
  return cpu_prefer_avx2_nhwc_depthwise() && (s.SH != 1 || s.KH == 3 || s.C % 16 != 0);
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

// The scalar family (any T): the portable kernels of scalar/.
template <typename T>
const DepthwiseKernels<T> kDepthwiseScalar = {depthwise_forward_scalar<T>,
                                              depthwise_grad_input_scalar<T>,
                                              depthwise_grad_weight_scalar<T>, "scalar",
                                              nullptr};
template <typename T>
const GemmKernels<T> kGemmScalar = {gemm_scalar<T>, "scalar"};

// The selected float32 depthwise family, or null for the scalar kernels.
const DepthwiseFamilyF32* selected_depthwise_family() {
  switch (selected()) {
#if MNX_X86
    case Isa::Avx2:
      return &depthwise_family_avx2();
#endif
#if MNX_ARM
    case Isa::Neon:
      return &depthwise_family_neon();
#endif
    default:
      return nullptr;
  }
}

}  // namespace

const DepthwiseKernels<float>& depthwise_kernels_f32() {
  static const DepthwiseFamilyF32* const family = selected_depthwise_family();
  return family ? family->entry : kDepthwiseScalar<float>;
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
      return gemm_kernels_avx512();
    case GemmPath::avx2:
      return gemm_kernels_avx2();
#endif
#if MNX_ARM
    case GemmPath::neon:
      return gemm_kernels_neon();
#endif
    default:
      return kGemmScalar<float>;
  }
}

const GemmKernels<float>& gemm_kernels_f32_backward(int64_t N, int64_t K) {
#if MNX_X86
  if (gemm_path() == GemmPath::avx512 && N > 8 && N <= 16 && K >= 32) return gemm_kernels_avx2();
#endif
  (void)N;
  (void)K;
  return gemm_kernels_f32();
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
  const DepthwiseFamilyF32* family = selected_depthwise_family();
  return family ? family->path(s, op, 0) : DepthwisePath::scalar;
}

const DepthwiseKernels<double>& depthwise_kernels_f64() { return kDepthwiseScalar<double>; }
const GemmKernels<double>& gemm_kernels_f64() { return kGemmScalar<double>; }

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
