// Fused BatchNorm + activation (training and eval), torch-free CPU kernels.
//
// Shape: x is [N, C, HW] (NCHW) or [N * HW, C] (NHWC); M = N * HW values per
// channel. The glue (csrc/glue/batchnorm_ops.cpp) splits the units of each
// kernel over threads; every result is independent of that split:
//
//  reductions (stats, backward_reduce) write per-unit partial sums in double
//    NCHW: unit = the planes of one image for a block of bn_nchw_block(s)
//          channels (depends on the shape only), read in address order;
//          each plane in blocks of kBnBlock values summed in float
//          registers, then added in double; partial[n][C][2]
//    NHWC: unit = one chunk of bn_chunk_rows(s) rows (depends on the shape
//          only), all channels; partial[u][C][2]
//    bn_*_finalize adds the partials in order (images, chunks) in double.
//  element-wise (apply, backward_dx): unit = one (n, c) plane (NCHW) or one
//    row (NHWC).
//
// Statistics are shifted sums: d = x - x0[c] with x0[c] the channel's first
// value (n = 0, hw = 0), S1 = sum d, S2 = sum d^2, so mean = x0 + S1 / M and
// var = (S2 - S1^2 / M) / M do not cancel catastrophically when |mean| >> std.
// The output is written in one pass as
//   y = act((x - ctr[c]) * scale[c] + shift[c])
// with ctr = the saved mean (rounded to T), scale = gamma * the saved invstd
// (training: shift = beta - (mean - ctr) * scale, the rounding of the mean
// folded back in; eval: mean = running_mean, shift = beta).
// Backward recomputes z = (x - mean) * scale + beta with the same saved mean
// and scale for the activation's mask (nothing but x is kept from the
// forward; the forward's z differs only by the mean's rounding times scale),
// then
//   pass 1 (backward_reduce): sum dz, sum dz * (x - mean), dz = dy * act'(z)
//   pass 2 (backward_dx):     dx = A * dz + B * (x - mean) + K
// with per-channel A, B, K from bn_backward_coefficients.
#pragma once

#include <cstdint>

#include "../kernels/params.h"

namespace mnx {
namespace cpu {

struct BatchNormShape {
  int64_t N = 0, C = 0, HW = 0;
  Layout layout = Layout::NCHW;
  int64_t count() const { return N * HW; }  // values per channel
};

// values per float-register block inside a NCHW plane (then added in double)
constexpr int64_t kBnBlock = 2048;

// NHWC rows per reduction chunk: at least 64, at most ~512 chunks.
inline int64_t bn_chunk_rows(const BatchNormShape& s) {
  const int64_t rows = s.N * s.HW, by_count = (rows + 511) / 512;
  return by_count > 64 ? by_count : 64;
}
// NCHW channels per reduction unit: planes of about kBnUnitValues values
// in all. A unit used to be one channel, its N planes read one after the
// other at a stride of C planes; on 14x14 and 7x7 maps (784 and 196 bytes
// per plane) those short runs read at 17-21 GB/s, against 25-33 GB/s for
// the NHWC sweep (training step, Intel Xeon, 2 threads). Whole training
// steps at batch 32, NCHW, 2 threads, Intel Xeon (AVX-512), process-
// alternating (benchmarks/ab_builds.py, 3 rounds), new / old time:
// mobilenet_v2 0.939, mobilenet_v3_large 0.941, mobilenet_v3_small 0.943.
constexpr int64_t kBnUnitValues = 16384;
inline int64_t bn_nchw_block(const BatchNormShape& s) {
  const int64_t b = s.HW > 0 ? (kBnUnitValues + s.HW - 1) / s.HW : 1;
  return b < 1 ? 1 : (b > s.C ? (s.C > 0 ? s.C : 1) : b);
}
inline int64_t bn_reduce_units(const BatchNormShape& s) {
  if (s.layout == Layout::NCHW) return s.N * ((s.C + bn_nchw_block(s) - 1) / bn_nchw_block(s));
  const int64_t cr = bn_chunk_rows(s);
  return (s.N * s.HW + cr - 1) / cr;
}
// doubles in the partial buffer of a reduction
inline int64_t bn_partial_size(const BatchNormShape& s) {
  return s.layout == Layout::NCHW ? 2 * s.C * s.N : 2 * s.C * bn_reduce_units(s);
}
// NCHW: unit u covers image n and channels [c0, c1)
inline void bn_nchw_unit(const BatchNormShape& s, int64_t u, int64_t& n, int64_t& c0, int64_t& c1) {
  const int64_t b = bn_nchw_block(s), nb = (s.C + b - 1) / b;
  n = u / nb;
  c0 = (u % nb) * b;
  c1 = c0 + b < s.C ? c0 + b : s.C;
}
inline int64_t bn_elementwise_units(const BatchNormShape& s) {
  return s.layout == Layout::NCHW ? s.N * s.C : s.N * s.HW;
}

template <typename T>
struct BatchNormActKernels {
  // shifted sums of x (see above) for units [begin, end)
  void (*stats)(const BatchNormShape& s, const T* x, double* partial,
                int64_t begin, int64_t end);
  // y = act((x - ctr) * scale + shift)
  void (*apply)(const BatchNormShape& s, const T* x, const T* ctr,
                const T* scale, const T* shift, Activation act, T* y,
                int64_t begin, int64_t end);
  // partial sums of dz and dz * (x - mean), z = (x - mean) * scale + beta
  void (*backward_reduce)(const BatchNormShape& s, const T* dy, const T* x,
                          const T* mean, const T* scale, const T* beta,
                          Activation act, double* partial, int64_t begin,
                          int64_t end);
  // dx = A * dz + B * (x - mean) + K
  void (*backward_dx)(const BatchNormShape& s, const T* dy, const T* x,
                      const T* mean, const T* scale, const T* beta,
                      const T* A, const T* B, const T* K, Activation act,
                      T* dx, int64_t begin, int64_t end);
  const char* isa;
};

// Portable reference (any T; the float64 path and the oracle of the tests).
template <typename T>
void bn_stats_scalar(const BatchNormShape& s, const T* x, double* partial,
                     int64_t begin, int64_t end);
template <typename T>
void bn_apply_scalar(const BatchNormShape& s, const T* x, const T* ctr,
                     const T* scale, const T* shift, Activation act, T* y,
                     int64_t begin, int64_t end);
template <typename T>
void bn_backward_reduce_scalar(const BatchNormShape& s, const T* dy,
                               const T* x, const T* mean, const T* scale,
                               const T* beta, Activation act, double* partial,
                               int64_t begin, int64_t end);
template <typename T>
void bn_backward_dx_scalar(const BatchNormShape& s, const T* dy, const T* x,
                           const T* mean, const T* scale, const T* beta,
                           const T* A, const T* B, const T* K, Activation act,
                           T* dx, int64_t begin, int64_t end);

// Selected family (batchnorm_act_dispatch.cpp): the AVX2 or NEON
// instantiation of generic/batchnorm_act.h for float32 (same rules as
// cpu_kernels.h's selection: MOBILENET_EXT_ISA=scalar forces the reference),
// the scalar reference for float64.
const BatchNormActKernels<float>& batchnorm_act_kernels_f32();
const BatchNormActKernels<double>& batchnorm_act_kernels_f64();
const BatchNormActKernels<float>& batchnorm_act_kernels_scalar_f32();
// The ISA families (generic/batchnorm_act.h instantiated in the ISA's own
// translation unit); call only after dispatch.cpp has checked the CPU.
#if defined(__x86_64__) || defined(_M_X64)
const BatchNormActKernels<float>& batchnorm_act_kernels_avx2();  // avx2/batchnorm_act_avx2.cpp
#endif
#if defined(__aarch64__)
const BatchNormActKernels<float>& batchnorm_act_kernels_neon();  // neon/batchnorm_act_neon.cpp
#endif

// Sums the partial buffer of a reduction in unit order: sum0[c], sum1[c].
void bn_sum_partials(const BatchNormShape& s, const double* partial,
                     double* sum0, double* sum1);

// Training statistics from the stats partial sums: dmean = mean - x0[c]
// (x0: the channel's first value, the shift), biased var (>= 0, NaN kept).
void bn_stats_finalize(const BatchNormShape& s, const double* partial,
                       double* dmean, double* var);

// d/dz of act at z, matching PyTorch's backward formulas (NaN z passes dy).
template <typename T>
inline T bn_act_grad(T z, T dy, Activation act) {
  switch (act) {
    case Activation::ReLU:
      return z <= T(0) ? T(0) : dy;
    case Activation::ReLU6:
      return (z <= T(0) || z >= T(6)) ? T(0) : dy;
    case Activation::Hardswish:
      if (z < T(-3)) return T(0);
      if (z <= T(3)) return dy * (z / T(3) + T(0.5));
      return dy;
    default:
      return dy;
  }
}

}  // namespace cpu
}  // namespace mnx
