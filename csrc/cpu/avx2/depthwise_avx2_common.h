// Small AVX2 helpers shared by the depthwise kernels (only included by
// translation units compiled with -mavx2 -mfma). Everything is static inline
// so no AVX2 code can leak into other translation units.
#pragma once

#include <immintrin.h>

#include "avx2_kernels.h"

namespace mnx {
namespace cpu {
namespace avx2 {

static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

// 8 consecutive elements (S == 1) or the 8 even elements of p[0..15]
// (S == 2). For S == 2 the caller guarantees p[15] is readable.
template <int S>
static inline __m256 load_strided(const float* p) {
  if (S == 1) return _mm256_loadu_ps(p);
  const __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
  const __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
  return _mm256_castpd_ps(
      _mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
}

// NaN-propagating activations, matching apply_activation() bit for bit.
static inline __m256 activate(__m256 v, Activation act) {
  const __m256 zero = _mm256_setzero_ps(), six = _mm256_set1_ps(6.f);
  switch (act) {
    case Activation::ReLU:
      return _mm256_max_ps(zero, v);  // max returns the 2nd operand on NaN
    case Activation::ReLU6:
      return _mm256_min_ps(six, _mm256_max_ps(zero, v));
    case Activation::Hardswish: {
      const __m256 t = _mm256_min_ps(
          six, _mm256_max_ps(zero, _mm256_add_ps(v, _mm256_set1_ps(3.f))));
      return _mm256_div_ps(_mm256_mul_ps(v, t), six);
    }
    default:
      return v;
  }
}

// Lane mask for the first n (0..8) lanes.
static inline __m256i tail_mask(int64_t n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), idx);
}

static inline float hsum(__m256 v) {
  // fixed order: (0+4) (1+5) (2+6) (3+7), then pairs
  const __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  __m128 s = _mm_add_ps(lo, hi);
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

}  // namespace avx2
}  // namespace cpu
}  // namespace mnx
