// NEON strided GEMM (float32, AArch64): the same BLIS-style packing + cache
// blocking driver as AVX2 (../generic/gemm_driver.h) around an 8x8
// register-blocked micro-kernel (16 q accumulators; per k: 2 A + 2 B vector
// loads, 16 FMAs by lane). A is always packed. Everything else is the
// generic GEMM kernels (../generic/gemm_kernels.h) on VecNeon: the epilogue
// (bias, activation, residual) applied to the register tile before the
// store, edge tiles (R x 4 or R x 8, the last vector's tail through
// VecNeon::load_n / store_n), B packing (row copy; no register transpose).
#include <arm_neon.h>

#include "../generic/gemm_driver.h"
#include "../generic/gemm_kernels.h"
#include "../vec/vec_neon.h"

namespace mnx {
namespace cpu {
namespace {

// The 8x8 micro-kernel: by-lane FMAs on a packed A panel.
void ukr_8x8(int64_t kc, const float* a, int64_t /*a_rs*/, bool /*direct*/, const float* b,
             float* c, int64_t ldc, bool load_c, const Epi* e, int64_t m, int64_t n,
             bool /*cold_a*/) {
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
  gemm_store_tile<VecNeon, 8, 2, false>(acc, c, ldc, e, m, n, 4);
}

// Edge tiles and B packing: the generic kernels.
using KernNeon = GemmKernel<VecNeon, 8, 8, false, ukr_8x8>;

}  // namespace

const GemmKernels<float>& gemm_kernels_neon() { return gemm_table<KernNeon>("neon"); }

}  // namespace cpu
}  // namespace mnx
