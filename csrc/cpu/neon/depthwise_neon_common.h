// Small NEON helpers shared by the depthwise kernels (AArch64, float32,
// vectors of 4). Everything is static inline; the header is only included by
// the NEON translation units.
#pragma once

#include <arm_neon.h>

#include <cstring>

#include "../vec/vec_neon.h"
#include "neon_kernels.h"

namespace mnx {
namespace cpu {
namespace neon {

static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

// 4 consecutive elements (S == 1) or the 4 even elements of p[0..7] (S == 2).
// For S == 2 the caller guarantees p[7] is readable.
template <int S>
static inline float32x4_t load_strided(const float* p) {
  if (S == 1) return vld1q_f32(p);
  return vld2q_f32(p).val[0];
}


// Fixed-order horizontal sum: (v0 + v1) + (v2 + v3).
static inline float hsum(float32x4_t v) {
  const float32x2_t p = vpadd_f32(vget_low_f32(v), vget_high_f32(v));
  return vget_lane_f32(p, 0) + vget_lane_f32(p, 1);
}

// First n (0..4) lanes from p, the others 0 (never reads past p[n-1]).
static inline float32x4_t load_partial(const float* p, int64_t n) {
  float t[4] = {0.f, 0.f, 0.f, 0.f};
  for (int64_t i = 0; i < n; ++i) t[i] = p[i];
  return vld1q_f32(t);
}

// Stores the first n (0..4) lanes of v to p.
static inline void store_partial(float* p, int64_t n, float32x4_t v) {
  float t[4];
  vst1q_f32(t, v);
  for (int64_t i = 0; i < n; ++i) p[i] = t[i];
}

// acc + x * w[lane] with a run-time lane (constant-folded once unrolled).
static inline float32x4_t fma_lane(float32x4_t acc, float32x4_t x,
                                   float32x4_t w, int lane) {
  switch (lane) {
    case 0:
      return vfmaq_laneq_f32(acc, x, w, 0);
    case 1:
      return vfmaq_laneq_f32(acc, x, w, 1);
    case 2:
      return vfmaq_laneq_f32(acc, x, w, 2);
    default:
      return vfmaq_laneq_f32(acc, x, w, 3);
  }
}

}  // namespace neon
}  // namespace cpu
}  // namespace mnx
