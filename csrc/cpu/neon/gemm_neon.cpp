// NEON strided GEMM (float32, AArch64): the same BLIS-style packing + cache
// blocking driver as AVX2 (../generic/gemm_driver.h) around
// an 8x8 register-blocked micro-kernel (16 q accumulators; per k: 2 A + 2 B
// vector loads, 16 FMAs by lane). A is always packed. The epilogue (bias,
// activation, residual) is fused into the final store.
#include <arm_neon.h>

#include "../generic/gemm_driver.h"
#include "../vec/vec_neon.h"
#include "neon_kernels.h"

namespace mnx {
namespace cpu {
namespace {


struct KernNeon {
  static constexpr int64_t MR = 8, NR = 8;
  static constexpr bool kDirectA = false;

  static void ukr(int64_t kc, const float* a, int64_t /*a_rs*/,
                  bool /*direct*/, const float* b, float* c, int64_t ldc,
                  bool load_c, const Epi* e, int64_t m, int64_t n,
                  bool /*cold_a*/ = false) {
    float32x4_t acc[8][2];
    for (int r = 0; r < 8; ++r) {
      if (load_c) {
        acc[r][0] = vld1q_f32(c + r * ldc);
        acc[r][1] = vld1q_f32(c + r * ldc + 4);
      } else {
        acc[r][0] = acc[r][1] = vdupq_n_f32(0.f);
      }
    }
    for (int64_t k = 0; k < kc; ++k) {
      const float32x4_t b0 = vld1q_f32(b + k * 8);
      const float32x4_t b1 = vld1q_f32(b + k * 8 + 4);
      const float32x4_t a0 = vld1q_f32(a + k * 8);
      const float32x4_t a1 = vld1q_f32(a + k * 8 + 4);
#define MNX_ROW(r, av, lane)                                  \
  acc[r][0] = vfmaq_laneq_f32(acc[r][0], b0, av, lane);       \
  acc[r][1] = vfmaq_laneq_f32(acc[r][1], b1, av, lane);
      MNX_ROW(0, a0, 0) MNX_ROW(1, a0, 1) MNX_ROW(2, a0, 2) MNX_ROW(3, a0, 3)
      MNX_ROW(4, a1, 0) MNX_ROW(5, a1, 1) MNX_ROW(6, a1, 2) MNX_ROW(7, a1, 3)
#undef MNX_ROW
    }
    if (!e) {
      for (int r = 0; r < 8; ++r) {
        vst1q_f32(c + r * ldc, acc[r][0]);
        vst1q_f32(c + r * ldc + 4, acc[r][1]);
      }
      return;
    }
    float32x4_t bc0 = vdupq_n_f32(0.f), bc1 = vdupq_n_f32(0.f);
    if (e->bias && !e->per_row) {
      bc0 = vld1q_f32(e->bias + n);
      bc1 = vld1q_f32(e->bias + n + 4);
    }
    for (int r = 0; r < 8; ++r) {
      float32x4_t v0 = acc[r][0], v1 = acc[r][1];
      if (e->bias) {
        if (e->per_row) {
          const float32x4_t bv = vdupq_n_f32(e->bias[m + r]);
          v0 = vaddq_f32(v0, bv);
          v1 = vaddq_f32(v1, bv);
        } else {
          v0 = vaddq_f32(v0, bc0);
          v1 = vaddq_f32(v1, bc1);
        }
      }
      v0 = activate<VecNeon>(v0, e->act);
      v1 = activate<VecNeon>(v1, e->act);
      if (e->res) {
        const float* rp = e->res + (m + r) * e->ldr + n;
        v0 = vaddq_f32(v0, vld1q_f32(rp));
        v1 = vaddq_f32(v1, vld1q_f32(rp + 4));
      }
      vst1q_f32(c + r * ldc, v0);
      vst1q_f32(c + r * ldc + 4, v1);
    }
  }

  // Partial tile: full 8x8 kernel into a local tile, then the valid part
  // is copied to C with the scalar epilogue.
  static void ukr_edge(int64_t kc, const float* a, int64_t a_rs, bool direct,
                       const float* b, float* c, int64_t ldc, bool load_c,
                       const Epi* e, int64_t m, int64_t n, int64_t mr,
                       int64_t nr) {
    float tmp[MR * NR];
    if (load_c)
      for (int64_t r = 0; r < mr; ++r)
        for (int64_t j = 0; j < nr; ++j) tmp[r * NR + j] = c[r * ldc + j];
    ukr(kc, a, a_rs, direct, b, tmp, NR, load_c, nullptr, 0, 0);
    for (int64_t r = 0; r < mr; ++r)
      for (int64_t j = 0; j < nr; ++j) {
        const float v = tmp[r * NR + j];
        c[r * ldc + j] = e ? epi_scalar<VecNeon>(v, *e, m + r, n + j) : v;
      }
  }

  static bool pack_b_fast(const float* Bb, int64_t b_rs, int64_t b_cs,
                          int64_t k0, int64_t kc, int64_t n, int64_t nr,
                          float* dst) {
    if (nr != 8 || b_cs != 1) return false;
    const float* src = Bb + k0 * b_rs + n;
    for (int64_t k = 0; k < kc; ++k, src += b_rs) {
      vst1q_f32(dst + k * 8, vld1q_f32(src));
      vst1q_f32(dst + k * 8 + 4, vld1q_f32(src + 4));
    }
    return true;
  }
};

}  // namespace

void gemm_neon_f32(const GemmArgs& g, const float* A, const float* B, float* C,
                   const float* bias, const float* residual, int64_t begin,
                   int64_t end) {
  gemm_blocked<KernNeon>(g, A, B, C, bias, residual, begin, end);
}

}  // namespace cpu
}  // namespace mnx
