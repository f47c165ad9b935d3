// AVX-512F strided GEMM (float32): the BLIS-style driver of the AVX2 family
// (csrc/cpu/generic/gemm_driver.h: packing, cache blocking, work units, the
// deterministic per-element FMA chain) around a 12x32 register-blocked
// micro-kernel: 24 zmm accumulators (12 rows x 2 vectors of 16 columns), per
// k two aligned B loads and 12 broadcasts of A feeding 24 FMAs, i.e. 768
// flops per 14 loads (the AVX2 6x16 kernel: 192 per 8). 12 x 32 divides the
// driver's 24 x 64 work-unit tile, so units and their split over threads
// are the same as for every other family. The epilogue (bias per row or
// column, activation, residual) is applied in registers before the store.
// Edge tiles use the same code with R < 12 rows and lane masks on the
// columns (masked lanes of C are never read or written).
// No std:: templates here (ODR: this TU is compiled with -mavx512f).
#include <immintrin.h>

#include "../generic/gemm_driver.h"
#include "../vec/vec_avx512.h"
#include "avx512_gemm.h"

namespace mnx {
namespace cpu {
namespace {


inline __mmask16 cols_mask(int64_t cnt) {
  return cnt >= 16 ? __mmask16(0xFFFF) : cnt <= 0 ? __mmask16(0) : __mmask16((1u << cnt) - 1);
}

// R x 32 tile (R <= 12) of C at c: acc = (load_c ? C : 0) + A_panel * B_panel
// in k order, then the epilogue when e is set. Columns [0, nr) are live.
// kDirect: A read in place (row r at a + r * a_rs, unit column stride);
// otherwise a packed panel a[k * 12 + r].
template <int R, bool kDirect>
inline void tile(int64_t kc, const float* a, int64_t a_rs, const float* b,
                 float* c, int64_t ldc, bool load_c, const Epi* e, int64_t m,
                 int64_t n, int64_t nr) {
  const __mmask16 m0 = cols_mask(nr), m1 = cols_mask(nr - 16);
  __m512 acc[R][2];
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    if (load_c) {
      acc[r][0] = _mm512_maskz_loadu_ps(m0, c + r * ldc);
      acc[r][1] = _mm512_maskz_loadu_ps(m1, c + r * ldc + 16);
    } else {
      acc[r][0] = _mm512_setzero_ps();
      acc[r][1] = _mm512_setzero_ps();
    }
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_load_ps(b + k * 32), b1 = _mm512_load_ps(b + k * 32 + 16);
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(kDirect ? a[r * a_rs + k] : a[k * 12 + r]);
      acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
    }
  }
  __m512 bc0 = _mm512_setzero_ps(), bc1 = _mm512_setzero_ps();
  if (e && e->bias && !e->per_row) {
    bc0 = _mm512_maskz_loadu_ps(m0, e->bias + n);
    bc1 = _mm512_maskz_loadu_ps(m1, e->bias + n + 16);
  }
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    __m512 v0 = acc[r][0], v1 = acc[r][1];
    if (e) {
      if (e->bias) {
        if (e->per_row) {
          const __m512 bv = _mm512_set1_ps(e->bias[m + r]);
          v0 = _mm512_add_ps(v0, bv);
          v1 = _mm512_add_ps(v1, bv);
        } else {
          v0 = _mm512_add_ps(v0, bc0);
          v1 = _mm512_add_ps(v1, bc1);
        }
      }
      v0 = activate<VecAvx512>(v0, e->act);
      v1 = activate<VecAvx512>(v1, e->act);
      if (e->res) {
        const float* rp = e->res + (m + r) * e->ldr + n;
        v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, rp));
        v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, rp + 16));
      }
    }
    _mm512_mask_storeu_ps(c + r * ldc, m0, v0);
    _mm512_mask_storeu_ps(c + r * ldc + 16, m1, v1);
  }
}

template <bool kDirect>
inline void tile_rows(int64_t mr, int64_t kc, const float* a, int64_t a_rs,
                      const float* b, float* c, int64_t ldc, bool load_c,
                      const Epi* e, int64_t m, int64_t n, int64_t nr) {
  switch (mr) {
#define MNX_CASE(R)                                                         \
  case R:                                                                   \
    tile<R, kDirect>(kc, a, a_rs, b, c, ldc, load_c, e, m, n, nr);          \
    break;
    MNX_CASE(1) MNX_CASE(2) MNX_CASE(3) MNX_CASE(4) MNX_CASE(5) MNX_CASE(6)
    MNX_CASE(7) MNX_CASE(8) MNX_CASE(9) MNX_CASE(10) MNX_CASE(11)
    default:
      tile<12, kDirect>(kc, a, a_rs, b, c, ldc, load_c, e, m, n, nr);
      break;
#undef MNX_CASE
  }
}

inline void tr8x8(__m256& r0, __m256& r1, __m256& r2, __m256& r3, __m256& r4,
                  __m256& r5, __m256& r6, __m256& r7) {
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r0 = _mm256_permute2f128_ps(s0, s4, 0x20);
  r1 = _mm256_permute2f128_ps(s1, s5, 0x20);
  r2 = _mm256_permute2f128_ps(s2, s6, 0x20);
  r3 = _mm256_permute2f128_ps(s3, s7, 0x20);
  r4 = _mm256_permute2f128_ps(s0, s4, 0x31);
  r5 = _mm256_permute2f128_ps(s1, s5, 0x31);
  r6 = _mm256_permute2f128_ps(s2, s6, 0x31);
  r7 = _mm256_permute2f128_ps(s3, s7, 0x31);
}

struct KernAvx512 {
  static constexpr int64_t MR = 12, NR = 32;
  static constexpr bool kDirectA = true;

  static void ukr(int64_t kc, const float* a, int64_t a_rs, bool direct,
                  const float* b, float* c, int64_t ldc, bool load_c,
                  const Epi* e, int64_t m, int64_t n, bool cold_a) {
    if (direct && cold_a) {
      // A read in place: prefetch the next 12 rows (the next call's panel)
      // on the first pass over this A block. Prefetches never fault.
      const float* nx = a + 12 * a_rs;
      for (int r = 0; r < 12; ++r, nx += a_rs)
        for (int64_t k = 0; k < kc; k += 16)
          _mm_prefetch(reinterpret_cast<const char*>(nx + k), _MM_HINT_T0);
    }
    if (direct)
      tile<12, true>(kc, a, a_rs, b, c, ldc, load_c, e, m, n, 32);
    else
      tile<12, false>(kc, a, a_rs, b, c, ldc, load_c, e, m, n, 32);
  }

  static void ukr_edge(int64_t kc, const float* a, int64_t a_rs, bool direct,
                       const float* b, float* c, int64_t ldc, bool load_c,
                       const Epi* e, int64_t m, int64_t n, int64_t mr,
                       int64_t nr) {
    if (direct)
      tile_rows<true>(mr, kc, a, a_rs, b, c, ldc, load_c, e, m, n, nr);
    else
      tile_rows<false>(mr, kc, a, a_rs, b, c, ldc, load_c, e, m, n, nr);
  }

  // Full 32-wide panels with contiguous rows (copy) or contiguous columns
  // (8x8 register transposes); everything else goes to the generic packer.
  static bool pack_b_fast(const float* Bb, int64_t b_rs, int64_t b_cs,
                          int64_t k0, int64_t kc, int64_t n, int64_t nr,
                          float* dst) {
    if (nr != 32) return false;
    if (b_cs == 1) {
      const float* src = Bb + k0 * b_rs + n;
      for (int64_t k = 0; k < kc; ++k, src += b_rs) {
        _mm512_store_ps(dst + k * 32, _mm512_loadu_ps(src));
        _mm512_store_ps(dst + k * 32 + 16, _mm512_loadu_ps(src + 16));
      }
      return true;
    }
    if (b_rs == 1) {
      for (int h = 0; h < 4; ++h) {
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
          float* d = dst + k * 32 + h * 8;
          _mm256_storeu_ps(d + 0 * 32, r0);
          _mm256_storeu_ps(d + 1 * 32, r1);
          _mm256_storeu_ps(d + 2 * 32, r2);
          _mm256_storeu_ps(d + 3 * 32, r3);
          _mm256_storeu_ps(d + 4 * 32, r4);
          _mm256_storeu_ps(d + 5 * 32, r5);
          _mm256_storeu_ps(d + 6 * 32, r6);
          _mm256_storeu_ps(d + 7 * 32, r7);
        }
        for (; k < kc; ++k)
          for (int j = 0; j < 8; ++j) dst[k * 32 + h * 8 + j] = s[j * b_cs + k];
      }
      return true;
    }
    return false;
  }
};

}  // namespace

void gemm_avx512_f32(const GemmArgs& g, const float* A, const float* B, float* C,
                     const float* bias, const float* residual, int64_t begin,
                     int64_t end) {
  gemm_blocked<KernAvx512, 256>(g, A, B, C, bias, residual, begin, end);
}

}  // namespace cpu
}  // namespace mnx
