// Small AVX2 helpers shared by the depthwise kernels (only included by
// translation units compiled with -mavx2 -mfma). Everything is static inline
// so no AVX2 code can leak into other translation units.
#pragma once

#include <immintrin.h>

#include "../vec/vec_avx2.h"
#include "avx2_kernels.h"

namespace mnx {
namespace cpu {
namespace avx2 {

static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

// Lane mask for the first n (0..8) lanes.
static inline __m256i tail_mask(int64_t n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), idx);
}

// grad_input of a stride-1 depthwise convolution with square K x K taps and
// padding P <= K-1 is the forward over grad_output with the taps flipped and
// padding K-1-P: the shape of that forward (input OH x OW, output H x W).
static inline DepthwiseShape flipped_forward_shape(const DepthwiseShape& s) {
  DepthwiseShape t = s;
  t.H = s.OH;
  t.W = s.OW;
  t.PH = s.KH - 1 - s.PH;
  t.PW = s.KW - 1 - s.PW;
  t.OH = s.H;
  t.OW = s.W;
  return t;
}

// The input row read by dilated row a (= oh * S - PH + kh) of a correlation
// over rows zero-dilated by D (0..last the dilated extent), or -1 when it is
// padding or an inserted zero row (that tap row is skipped).
static inline int64_t dilated_row(int64_t a, int64_t last, int64_t D) {
  return (a < 0 || a > last || a % D != 0) ? -1 : a / D;
}

}  // namespace avx2
}  // namespace cpu
}  // namespace mnx
