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

// First n (0..4) lanes from p, the others 0 (never reads past p[n-1]).
static inline float32x4_t load_partial(const float* p, int64_t n) {
  float t[4] = {0.f, 0.f, 0.f, 0.f};
  for (int64_t i = 0; i < n; ++i) t[i] = p[i];
  return vld1q_f32(t);
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
