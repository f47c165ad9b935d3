// AVX2 + FMA strided GEMM (float32): BLIS-style packing + cache blocking
// (gemm_driver.h) around a 6x16 register-blocked micro-kernel (12 ymm
// accumulators, 2 B loads + 6 broadcasts per k). The epilogue (bias per row
// or column, activation, residual) is fused into the final store.
// No std:: templates here (ODR: this TU is compiled with -mavx2 -mfma).
#include <immintrin.h>

#include "avx2_kernels.h"
#include "gemm_driver.h"

namespace mnx {
namespace cpu {
namespace {

inline __m256 act_avx2(__m256 v, Activation act) {
  const __m256 zero = _mm256_setzero_ps();
  const __m256 six = _mm256_set1_ps(6.f);
  __m256 r;
  switch (act) {
    case Activation::None:
      return v;
    case Activation::ReLU:
      r = _mm256_max_ps(v, zero);  // +0 for v <= 0 (as the scalar path)
      break;
    case Activation::ReLU6:
      r = _mm256_min_ps(_mm256_max_ps(v, zero), six);
      break;
    case Activation::Hardswish: {
      __m256 t = _mm256_add_ps(v, _mm256_set1_ps(3.f));
      t = _mm256_min_ps(_mm256_max_ps(t, zero), six);
      r = _mm256_div_ps(_mm256_mul_ps(v, t), six);
      break;
    }
    default:
      return v;
  }
  // NaN propagates (max/min return the second operand on NaN)
  return _mm256_blendv_ps(r, v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
}

inline void tr8x8(__m256& r0, __m256& r1, __m256& r2, __m256& r3, __m256& r4,
                  __m256& r5, __m256& r6, __m256& r7) {
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r0 = _mm256_permute2f128_ps(s0, s4, 0x20);
  r1 = _mm256_permute2f128_ps(s1, s5, 0x20);
  r2 = _mm256_permute2f128_ps(s2, s6, 0x20);
  r3 = _mm256_permute2f128_ps(s3, s7, 0x20);
  r4 = _mm256_permute2f128_ps(s0, s4, 0x31);
  r5 = _mm256_permute2f128_ps(s1, s5, 0x31);
  r6 = _mm256_permute2f128_ps(s2, s6, 0x31);
  r7 = _mm256_permute2f128_ps(s3, s7, 0x31);
}

template <bool kDirect>
inline void ukr_6x16(int64_t kc, const float* a, int64_t a_rs, const float* b,
                     float* c, int64_t ldc, bool load_c, const Epi* e,
                     int64_t m, int64_t n) {
  __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
  if (load_c) {
    c00 = _mm256_loadu_ps(c + 0 * ldc); c01 = _mm256_loadu_ps(c + 0 * ldc + 8);
    c10 = _mm256_loadu_ps(c + 1 * ldc); c11 = _mm256_loadu_ps(c + 1 * ldc + 8);
    c20 = _mm256_loadu_ps(c + 2 * ldc); c21 = _mm256_loadu_ps(c + 2 * ldc + 8);
    c30 = _mm256_loadu_ps(c + 3 * ldc); c31 = _mm256_loadu_ps(c + 3 * ldc + 8);
    c40 = _mm256_loadu_ps(c + 4 * ldc); c41 = _mm256_loadu_ps(c + 4 * ldc + 8);
    c50 = _mm256_loadu_ps(c + 5 * ldc); c51 = _mm256_loadu_ps(c + 5 * ldc + 8);
  } else {
    c00 = c01 = c10 = c11 = c20 = c21 = _mm256_setzero_ps();
    c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
  }
  const float* a0 = a;
  const float* a1 = a + (kDirect ? a_rs : 1);
  const float* a2 = a + (kDirect ? 2 * a_rs : 2);
  const float* a3 = a + (kDirect ? 3 * a_rs : 3);
  const float* a4 = a + (kDirect ? 4 * a_rs : 4);
  const float* a5 = a + (kDirect ? 5 * a_rs : 5);
  constexpr int64_t as = kDirect ? 1 : 6;
#define MNX_STEP(kk)                                                   \
  {                                                                    \
    const __m256 b0 = _mm256_load_ps(b + (kk) * 16);                   \
    const __m256 b1 = _mm256_load_ps(b + (kk) * 16 + 8);               \
    __m256 av = _mm256_broadcast_ss(a0 + (kk) * as);                   \
    c00 = _mm256_fmadd_ps(av, b0, c00); c01 = _mm256_fmadd_ps(av, b1, c01); \
    av = _mm256_broadcast_ss(a1 + (kk) * as);                          \
    c10 = _mm256_fmadd_ps(av, b0, c10); c11 = _mm256_fmadd_ps(av, b1, c11); \
    av = _mm256_broadcast_ss(a2 + (kk) * as);                          \
    c20 = _mm256_fmadd_ps(av, b0, c20); c21 = _mm256_fmadd_ps(av, b1, c21); \
    av = _mm256_broadcast_ss(a3 + (kk) * as);                          \
    c30 = _mm256_fmadd_ps(av, b0, c30); c31 = _mm256_fmadd_ps(av, b1, c31); \
    av = _mm256_broadcast_ss(a4 + (kk) * as);                          \
    c40 = _mm256_fmadd_ps(av, b0, c40); c41 = _mm256_fmadd_ps(av, b1, c41); \
    av = _mm256_broadcast_ss(a5 + (kk) * as);                          \
    c50 = _mm256_fmadd_ps(av, b0, c50); c51 = _mm256_fmadd_ps(av, b1, c51); \
  }
  int64_t k = 0;
  for (; k + 4 <= kc; k += 4) {
    MNX_STEP(0) MNX_STEP(1) MNX_STEP(2) MNX_STEP(3)
    b += 64;
    a0 += 4 * as; a1 += 4 * as; a2 += 4 * as;
    a3 += 4 * as; a4 += 4 * as; a5 += 4 * as;
  }
  for (; k < kc; ++k) {
    MNX_STEP(0)
    b += 16;
    a0 += as; a1 += as; a2 += as; a3 += as; a4 += as; a5 += as;
  }
#undef MNX_STEP

  if (!e) {
    _mm256_storeu_ps(c + 0 * ldc, c00); _mm256_storeu_ps(c + 0 * ldc + 8, c01);
    _mm256_storeu_ps(c + 1 * ldc, c10); _mm256_storeu_ps(c + 1 * ldc + 8, c11);
    _mm256_storeu_ps(c + 2 * ldc, c20); _mm256_storeu_ps(c + 2 * ldc + 8, c21);
    _mm256_storeu_ps(c + 3 * ldc, c30); _mm256_storeu_ps(c + 3 * ldc + 8, c31);
    _mm256_storeu_ps(c + 4 * ldc, c40); _mm256_storeu_ps(c + 4 * ldc + 8, c41);
    _mm256_storeu_ps(c + 5 * ldc, c50); _mm256_storeu_ps(c + 5 * ldc + 8, c51);
    return;
  }
  __m256 bc0 = _mm256_setzero_ps(), bc1 = _mm256_setzero_ps();
  if (e->bias && !e->per_row) {
    bc0 = _mm256_loadu_ps(e->bias + n);
    bc1 = _mm256_loadu_ps(e->bias + n + 8);
  }
  const __m256 acc[6][2] = {{c00, c01}, {c10, c11}, {c20, c21},
                            {c30, c31}, {c40, c41}, {c50, c51}};
  for (int r = 0; r < 6; ++r) {
    __m256 v0 = acc[r][0], v1 = acc[r][1];
    if (e->bias) {
      if (e->per_row) {
        const __m256 bv = _mm256_broadcast_ss(e->bias + m + r);
        v0 = _mm256_add_ps(v0, bv);
        v1 = _mm256_add_ps(v1, bv);
      } else {
        v0 = _mm256_add_ps(v0, bc0);
        v1 = _mm256_add_ps(v1, bc1);
      }
    }
    v0 = act_avx2(v0, e->act);
    v1 = act_avx2(v1, e->act);
    if (e->res) {
      const float* rp = e->res + (m + r) * e->ldr + n;
      v0 = _mm256_add_ps(v0, _mm256_loadu_ps(rp));
      v1 = _mm256_add_ps(v1, _mm256_loadu_ps(rp + 8));
    }
    _mm256_storeu_ps(c + r * ldc, v0);
    _mm256_storeu_ps(c + r * ldc + 8, v1);
  }
}

struct KernAvx2 {
  static constexpr int64_t MR = 6, NR = 16;
  static constexpr bool kDirectA = true;

  static void ukr(int64_t kc, const float* a, int64_t a_rs, bool direct,
                  const float* b, float* c, int64_t ldc, bool load_c,
                  const Epi* e, int64_t m, int64_t n) {
    if (direct)
      ukr_6x16<true>(kc, a, a_rs, b, c, ldc, load_c, e, m, n);
    else
      ukr_6x16<false>(kc, a, a_rs, b, c, ldc, load_c, e, m, n);
  }

  // Full 16-wide panels with contiguous rows (copy) or contiguous columns
  // (8x8 register transposes); everything else goes to the generic packer.
  static bool pack_b_fast(const float* Bb, int64_t b_rs, int64_t b_cs,
                          int64_t k0, int64_t kc, int64_t n, int64_t nr,
                          float* dst) {
    if (nr != 16) return false;
    if (b_cs == 1) {
      const float* src = Bb + k0 * b_rs + n;
      for (int64_t k = 0; k < kc; ++k, src += b_rs) {
        _mm256_store_ps(dst + k * 16, _mm256_loadu_ps(src));
        _mm256_store_ps(dst + k * 16 + 8, _mm256_loadu_ps(src + 8));
      }
      return true;
    }
    if (b_rs == 1) {
      for (int h = 0; h < 2; ++h) {
        const float* s = Bb + (n + h * 8) * b_cs + k0;
        int64_t k = 0;
        for (; k + 8 <= kc; k += 8) {
          __m256 r0 = _mm256_loadu_ps(s + 0 * b_cs + k);
          __m256 r1 = _mm256_loadu_ps(s + 1 * b_cs + k);
          __m256 r2 = _mm256_loadu_ps(s + 2 * b_cs + k);
          __m256 r3 = _mm256_loadu_ps(s + 3 * b_cs + k);
          __m256 r4 = _mm256_loadu_ps(s + 4 * b_cs + k);
          __m256 r5 = _mm256_loadu_ps(s + 5 * b_cs + k);
          __m256 r6 = _mm256_loadu_ps(s + 6 * b_cs + k);
          __m256 r7 = _mm256_loadu_ps(s + 7 * b_cs + k);
          tr8x8(r0, r1, r2, r3, r4, r5, r6, r7);
          float* d = dst + k * 16 + h * 8;
          _mm256_store_ps(d + 0 * 16, r0);
          _mm256_store_ps(d + 1 * 16, r1);
          _mm256_store_ps(d + 2 * 16, r2);
          _mm256_store_ps(d + 3 * 16, r3);
          _mm256_store_ps(d + 4 * 16, r4);
          _mm256_store_ps(d + 5 * 16, r5);
          _mm256_store_ps(d + 6 * 16, r6);
          _mm256_store_ps(d + 7 * 16, r7);
        }
        for (; k < kc; ++k)
          for (int j = 0; j < 8; ++j) dst[k * 16 + h * 8 + j] = s[j * b_cs + k];
      }
      return true;
    }
    return false;
  }
};

}  // namespace

void gemm_avx2_f32(const GemmArgs& g, const float* A, const float* B, float* C,
                   const float* bias, const float* residual, int64_t begin,
                   int64_t end) {
  gemm_blocked<KernAvx2>(g, A, B, C, bias, residual, begin, end);
}

}  // namespace cpu
}  // namespace mnx
