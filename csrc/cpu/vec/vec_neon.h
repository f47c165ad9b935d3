// The AArch64 NEON member of the thin per-ISA vector layer (see vec.h): 4
// floats per register; tails through a small stack buffer (NEON has no
// masked loads). Include only from csrc/cpu/neon/.
#pragma once

#include <arm_neon.h>

#include <cstring>

#include "vec.h"

namespace mnx {
namespace cpu {
namespace {  // internal linkage: see vec.h

struct VecNeon {
  using reg = float32x4_t;
  static constexpr int width = 4;
  static constexpr int registers = 32;  // architectural vector registers
  static constexpr const char* name = "neon";

  static reg load(const float* p) { return vld1q_f32(p); }
  static void store(float* p, reg v) { vst1q_f32(p, v); }
  static constexpr int stream_align = 16;
  static void stream(float* p, reg v) { vst1q_f32(p, v); }
  static void stream_fence() {}
  static reg set1(float v) { return vdupq_n_f32(v); }
  static reg zero() { return vdupq_n_f32(0.f); }
  static reg fma(reg a, reg b, reg c) { return vfmaq_f32(c, a, b); }
  static reg add(reg a, reg b) { return vaddq_f32(a, b); }
  static reg sub(reg a, reg b) { return vsubq_f32(a, b); }
  static reg mul(reg a, reg b) { return vmulq_f32(a, b); }
  static reg div(reg a, reg b) { return vdivq_f32(a, b); }
  // FMAX/FMIN return NaN when either operand is NaN; max(+0, -0) = +0
  static reg max_b(reg a, reg b) { return vmaxq_f32(a, b); }
  static reg min_b(reg a, reg b) { return vminq_f32(a, b); }
  static reg select_le(reg a, reg b, reg x, reg y) { return vbslq_f32(vcleq_f32(a, b), x, y); }
  static reg select_lt(reg a, reg b, reg x, reg y) { return vbslq_f32(vcltq_f32(a, b), x, y); }

  static reg load_n(const float* p, int n) {
    float t[4] = {0.f, 0.f, 0.f, 0.f};
    std::memcpy(t, p, sizeof(float) * n);
    return vld1q_f32(t);
  }
  static void store_n(float* p, reg v, int n) {
    float t[4];
    vst1q_f32(t, v);
    std::memcpy(p, t, sizeof(float) * n);
  }

  static float reduce_add(reg v) { return vaddvq_f32(v); }
  // the 4 even floats of p[0, 8) / also the 4 odd ones (stride-2 columns)
  static reg load_even(const float* p) { return vld2q_f32(p).val[0]; }
  static void load_even_odd(const float* p, reg& even, reg& odd) {
    const float32x4x2_t eo = vld2q_f32(p);
    even = eo.val[0];
    odd = eo.val[1];
  }

  // no register transpose (see vec_avx2.h): generic code copies element-wise
  static constexpr int transpose_n = 0;
};

}  // namespace
}  // namespace cpu
}  // namespace mnx
