// Entry points of the CPU kernels (torch-free). Each instruction set lives in
// its own translation unit(s) under csrc/cpu/<isa>/ compiled with its own
// flags; dispatch.cpp picks one at run time from CPUID.
#pragma once

#include "../kernels/params.h"
#include "depthwise_path.h"

namespace mnx {
namespace cpu {

// One family of kernels for one scalar type. Every function processes the
// work units [begin, end) described in params.h; the caller splits units over
// threads.
template <typename T>
struct DepthwiseKernels {
  // y = act(conv(x, w) + bias); bias may be null.
  void (*forward)(const DepthwiseShape& s, const T* x, const T* w,
                  const T* bias, T* y, Activation act, int64_t begin,
                  int64_t end);
  // gx = conv_transpose(gy, w)
  void (*grad_input)(const DepthwiseShape& s, const T* gy, const T* w, T* gx,
                     int64_t begin, int64_t end);
  // gw[C_out, KH, KW] = sum over n, oh, ow of gy * x (overwrites gw)
  void (*grad_weight)(const DepthwiseShape& s, const T* gy, const T* x, T* gw,
                      int64_t begin, int64_t end);
  const char* isa;
  // Optional (null if absent): NHWC, multiplier-1 grad_weight as partial sums
  // over chunks of (n, oh) rows (see depthwise_grad_weight_row_chunks):
  // partial[u][KH*KW][C] for u in [begin, end); the glue adds the chunks in
  // order, so the result does not depend on the thread count.
  void (*grad_weight_nhwc_partial)(const DepthwiseShape& s, const T* gy,
                                   const T* x, T* partial, int64_t begin,
                                   int64_t end);
};

// A float32 depthwise family (one per ISA: the AVX2 family on x86-64, the
// NEON family on AArch64), written once in generic/depthwise_family.h: its
// entry points, its routing function and each of its named kernels, which
// tests run directly. The run_* functions run kernel p, which must be
// supported for (s, op): false (nothing written) when its per-thread scratch
// could not be had.
struct DepthwiseFamilyF32 {
  DepthwiseKernels<float> entry;  // run what path() answers, with fallbacks
  // whether kernel p of this family can run (s, op); scalar always
  bool (*supported)(DepthwisePath p, const DepthwiseShape& s, DepthwiseOp op);
  // the kernel for (s, op): MOBILENET_EXT_DEPTHWISE_PATH's when set and
  // supported, else the first supported one in the preference order, never
  // one in `skip` (a set of depthwise_path_bit()s); scalar when none is left
  DepthwisePath (*path)(const DepthwiseShape& s, DepthwiseOp op, uint32_t skip);
  bool (*run_forward)(DepthwisePath p, const DepthwiseShape& s, const float* x,
                      const float* w, const float* bias, float* y, Activation act,
                      int64_t begin, int64_t end);
  bool (*run_grad_input)(DepthwisePath p, const DepthwiseShape& s, const float* gy,
                         const float* w, float* gx, int64_t begin, int64_t end);
  bool (*run_grad_weight)(DepthwisePath p, const DepthwiseShape& s, const float* gy,
                          const float* x, float* gw, int64_t begin, int64_t end);
};

template <typename T>
struct GemmKernels {
  // See GemmArgs. bias / residual may be null. With sum_batch C is
  // overwritten by the sum over batches; otherwise each C_b is overwritten.
  void (*run)(const GemmArgs& g, const T* A, const T* B, T* C, const T* bias,
              const T* residual, int64_t begin, int64_t end);
  const char* isa;
  // The register tile: the panel widths (GemmArgs::a_panel / b_panel) that
  // the kernel reads in place; 0: it has none (packed operands are still
  // read correctly, element by element).
  int64_t mr = 0, nr = 0;
};

// Packs the row-major [rows, K] matrix W (row stride ld) into panels of R
// rows over the whole K: dst[(p * K + k) * R + r] = W[p * R + r][k], rows
// past the end zero; dst holds ceil(rows / R) * K * R floats. With R = a
// kernel's mr this is the packed A of GemmArgs::a_panel (A = W); with R =
// nr, the packed B (b_panel) of B = W^T.
void gemm_pack_panels(const float* W, int64_t rows, int64_t K, int64_t ld, int64_t R,
                      float* dst);

// --- scalar (portable C++, any T) -------------------------------------------
template <typename T>
void depthwise_forward_scalar(const DepthwiseShape& s, const T* x, const T* w,
                              const T* bias, T* y, Activation act,
                              int64_t begin, int64_t end);
template <typename T>
void depthwise_grad_input_scalar(const DepthwiseShape& s, const T* gy,
                                 const T* w, T* gx, int64_t begin,
                                 int64_t end);
template <typename T>
void depthwise_grad_weight_scalar(const DepthwiseShape& s, const T* gy,
                                  const T* x, T* gw, int64_t begin,
                                  int64_t end);
template <typename T>
void gemm_scalar(const GemmArgs& g, const T* A, const T* B, T* C,
                 const T* bias, const T* residual, int64_t begin, int64_t end);

// --- the ISA families (each defined in its own translation units, compiled
// with its flags; call only after dispatch.cpp has checked the CPU) ---------
#if defined(__x86_64__) || defined(_M_X64)
const DepthwiseFamilyF32& depthwise_family_avx2();  // avx2/depthwise_avx2.cpp
const GemmKernels<float>& gemm_kernels_avx2();      // avx2/gemm_avx2.cpp
const GemmKernels<float>& gemm_kernels_avx512();    // avx512/gemm_avx512.cpp
int64_t fma_peak_avx2_f32(int64_t iters, float* sink);
int64_t fma_peak_avx512_f32(int64_t iters, float* sink);
#endif
#if defined(__aarch64__)
const DepthwiseFamilyF32& depthwise_family_neon();  // neon/depthwise_neon.cpp
const GemmKernels<float>& gemm_kernels_neon();      // neon/gemm_neon.cpp
int64_t fma_peak_neon_f32(int64_t iters, float* sink);
#endif

// --- selection ----------------------------------------------------------------
// Best available kernels for this CPU (read once from CPUID). The variable
// MOBILENET_EXT_ISA, read once: "scalar" forces the portable kernels,
// "avx2" keeps the AVX2 family but switches off the AVX-512 kernels it
// calls, "avx512" switches them on where the CPU has AVX-512F even when
// cpu_avx512_split() keeps them off by default; any other value (e.g.
// "neon") changes nothing.
const DepthwiseKernels<float>& depthwise_kernels_f32();
const DepthwiseKernels<double>& depthwise_kernels_f64();
const GemmKernels<float>& gemm_kernels_f32();
const GemmKernels<double>& gemm_kernels_f64();
// The float32 kernels of the pointwise gradient GEMMs (grad_input,
// grad_weight) with N columns and a reduction of length K: gemm_kernels_f32(),
// except on the avx512 path a GEMM with 9-16 columns and K >= 32 runs the
// avx2 kernels, whose 16-wide tile it fills (half of the AVX-512 kernel's
// 32-wide tile would be padding). A/B at batch 32, 2 threads, Zen 5:
// channels_last 16 -> 16 weight gradient 0.62-0.69x the time, 16 -> 64 / 72
// / 96 input gradient 0.60-0.76x; with K = 16 (16 -> 16 input gradient)
// 0.96-1.40x, hence the K bound; 8 columns 1.02-1.05x (both tiles pad).
const GemmKernels<float>& gemm_kernels_f32_backward(int64_t N, int64_t K);

// Name of the ISA the float32 kernels use ("avx2", "neon" or "scalar").
const char* selected_isa();
// The depthwise kernel the selected float32 family runs for this shape and
// op (its routing function, see depthwise_path.h; scalar for the scalar
// family). float64 always runs DepthwisePath::scalar.
DepthwisePath depthwise_path_f32(const DepthwiseShape& s, DepthwiseOp op);

// The float32 pointwise GEMM, the one decision behind gemm_kernels_f32():
// avx512 (gemm_avx512.cpp) when the AVX2 family is selected and
// cpu_use_avx512(), else avx2 (gemm_avx2.cpp); neon (gemm_neon.cpp) on
// AArch64; scalar (gemm_scalar.cpp) otherwise. float64 is always scalar.
enum class GemmPath : int32_t { scalar = 0, avx2 = 1, avx512 = 2, neon = 3 };
GemmPath gemm_path();
const char* gemm_path_name(GemmPath p);  // "scalar", "avx2", "avx512", "neon"
bool cpu_has_avx2_fma();
bool cpu_has_avx512f();
// true on CPUs that run 512-bit vector operations as two 256-bit halves
// with the AVX2 FMA rate (AMD family 19h: Zen 4), where the AVX2 kernels
// measured faster: GEMM 5-17%, NHWC depthwise forward / grad_input
// 1.1-2x (1 thread, EPYC Zen 4, 2026-12-02)
bool cpu_avx512_split();
// true when the AVX-512 kernels run: the CPU has AVX-512F, and either
// MOBILENET_EXT_ISA=avx512 or (not cpu_avx512_split() and MOBILENET_EXT_ISA
// does not cap the ISA at avx2 or scalar)
bool cpu_use_avx512();
// true on AMD CPUs (without MOBILENET_EXT_ISA=avx512)
bool cpu_prefer_avx2_nhwc_depthwise();
// On those, the NHWC depthwise routing takes nhwc_kxk_avx2 before
// nhwc_kxk_avx512 where both run, except at 5x5 / 7x7, stride 1,
// C % 16 == 0: true for the shapes that go to nhwc_kxk_avx2 first.
bool cpu_nhwc_kxk_avx2_first(const DepthwiseShape& s);

// FMA throughput probe on the widest float32 vectors the kernels use
// (AVX-512 when cpu_use_avx512(), else the selected family): runs `iters`
// rounds on the calling thread and returns the flops done (result to
// *sink). fma_peak_isa() names the ISA it ran.
int64_t fma_peak_scalar_f32(int64_t iters, float* sink);
int64_t fma_peak_f32(int64_t iters, float* sink);
const char* fma_peak_isa();

}  // namespace cpu
}  // namespace mnx

// apply_activation(v, act) and the depthwise index helpers (src_index), one
// definition for the CPU and the CUDA kernels (torch-free, host/device).
#include "../kernels/activation.h"
#include "../kernels/depthwise_index.h"

namespace mnx {
namespace cpu {
using ::mnx::apply_activation;
}  // namespace cpu
}  // namespace mnx
