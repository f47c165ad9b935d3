// Per-(image, channel) reductions and scaling: the memory-bound passes of
// squeeze-excitation (csrc/glue/squeeze_excitation_ops.cpp), torch-free.
//
// Shape: x is [N, C, HW] (NCHW) or [N, HW, C] (NHWC). Two kernels:
//
//  sums:  sum_a[n, c] = sum over hw of a,  and, when b is given,
//         sum_ab[n, c] = sum over hw of a * b            (both in double)
//  scale: y = x * scale[n, c] (+ shift[n, c] when shift is given)
//
// Work units (the glue splits them over threads; every unit is computed by
// one thread in a fixed order, so results do not depend on the split):
//  sums:  NCHW one (n, c) plane; NHWC one (n, block of kChannelSumBlock
//         channels). Values are summed in float registers over at most
//         kChannelSumChunk values per lane, then added in double.
//  scale: NCHW one (n, c) plane; NHWC one (n, hw) row.
#pragma once

#include <cstdint>

#include "../kernels/params.h"

namespace mnx {
namespace cpu {

struct ChannelShape {
  int64_t N = 0, C = 0, HW = 0;
  Layout layout = Layout::NCHW;
};

constexpr int64_t kChannelSumBlock = 64;   // NHWC channels per sums unit
constexpr int64_t kChannelSumChunk = 256;  // values per lane added in float

inline int64_t channel_sum_units(const ChannelShape& s) {
  return s.layout == Layout::NCHW ? s.N * s.C : s.N * ((s.C + kChannelSumBlock - 1) / kChannelSumBlock);
}
inline int64_t channel_scale_units(const ChannelShape& s) {
  return s.layout == Layout::NCHW ? s.N * s.C : s.N * s.HW;
}

template <typename T>
struct ChannelKernels {
  // sum_a, sum_ab: [N * C]; b (and sum_ab) may be null
  void (*sums)(const ChannelShape& s, const T* a, const T* b, double* sum_a,
               double* sum_ab, int64_t begin, int64_t end);
  // y = x * scale[n, c] + shift[n, c]; scale, shift: [N * C]; shift may be
  // null; y may be x (in place)
  void (*scale)(const ChannelShape& s, const T* x, const T* scale,
                const T* shift, T* y, int64_t begin, int64_t end);
  const char* isa;
};

// Portable reference (any T; the float64 path and the tests' oracle): sums
// entirely in double.
template <typename T>
void channel_sums_scalar(const ChannelShape& s, const T* a, const T* b,
                         double* sum_a, double* sum_ab, int64_t begin,
                         int64_t end);
template <typename T>
void channel_scale_scalar(const ChannelShape& s, const T* x, const T* scale,
                          const T* shift, T* y, int64_t begin, int64_t end);

// Selected family (channel_scale_dispatch.cpp): the AVX2 or NEON
// instantiation of generic/channel_scale.h for float32 (MOBILENET_EXT_ISA=
// scalar forces the reference), the scalar reference for float64.
const ChannelKernels<float>& channel_kernels_f32();
const ChannelKernels<double>& channel_kernels_f64();
const ChannelKernels<float>& channel_kernels_scalar_f32();
#if defined(__x86_64__) || defined(_M_X64)
const ChannelKernels<float>& channel_kernels_avx2();  // avx2/channel_scale_avx2.cpp
#endif
#if defined(__aarch64__)
const ChannelKernels<float>& channel_kernels_neon();  // neon/channel_scale_neon.cpp
#endif

}  // namespace cpu
}  // namespace mnx
