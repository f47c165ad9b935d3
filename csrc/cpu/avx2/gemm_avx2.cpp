// AVX2 + FMA strided GEMM (float32): BLIS-style packing + cache blocking
// (gemm_driver.h) around a 6x16 register-blocked micro-kernel (12 ymm
// accumulators, 2 B loads + 6 broadcasts per k). The epilogue (bias per row
// or column, activation, residual) is fused into the final store.
// No std:: templates here (ODR: this TU is compiled with -mavx2 -mfma).
#include <immintrin.h>

#include "../generic/gemm_driver.h"
#include "../vec/vec_avx2.h"
#include "avx2_kernels.h"

namespace mnx {
namespace cpu {
namespace {


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

// 6x16 micro-kernel, whole accumulation in inline asm (GCC spilled the
// intrinsics version's accumulators): ymm0..11 = C tile, ymm12/13 = B row,
// ymm14/15 = broadcasts of A. acc = (load_c ? C : 0) + A_panel * B_panel is
// stored to `out` (C itself, or a local tile when an epilogue follows).
// kDirect: A read in place (row stride a_rs, unit column stride); otherwise
// a packed panel a[k * 6 + r].
#define MNX_ROW(A_ADDR, BR, R0, R1)                     \
  "vbroadcastss " A_ADDR ", %%" BR "\n\t"               \
  "vfmadd231ps %%ymm12, %%" BR ", %%" R0 "\n\t"         \
  "vfmadd231ps %%ymm13, %%" BR ", %%" R1 "\n\t"
#define MNX_PROLOGUE                                                    \
  "test %[lc], %[lc]\n\t"                                               \
  "jz 2f\n\t"                                                           \
  "vmovups (%[c]), %%ymm0\n\t"                                          \
  "vmovups 32(%[c]), %%ymm1\n\t"                                        \
  "vmovups (%[c],%[ldc],1), %%ymm2\n\t"                                 \
  "vmovups 32(%[c],%[ldc],1), %%ymm3\n\t"                               \
  "vmovups (%[c],%[ldc],2), %%ymm4\n\t"                                 \
  "vmovups 32(%[c],%[ldc],2), %%ymm5\n\t"                               \
  "lea (%[c],%[ldc],2), %[c]\n\t"                                       \
  "vmovups (%[c],%[ldc],1), %%ymm6\n\t"                                 \
  "vmovups 32(%[c],%[ldc],1), %%ymm7\n\t"                               \
  "vmovups (%[c],%[ldc],2), %%ymm8\n\t"                                 \
  "vmovups 32(%[c],%[ldc],2), %%ymm9\n\t"                               \
  "lea (%[c],%[ldc],2), %[c]\n\t"                                       \
  "vmovups (%[c],%[ldc],1), %%ymm10\n\t"                                \
  "vmovups 32(%[c],%[ldc],1), %%ymm11\n\t"                              \
  "jmp 3f\n\t"                                                          \
  "2:\n\t"                                                              \
  "vxorps %%ymm0, %%ymm0, %%ymm0\n\t"                                   \
  "vxorps %%ymm1, %%ymm1, %%ymm1\n\t"                                   \
  "vxorps %%ymm2, %%ymm2, %%ymm2\n\t"                                   \
  "vxorps %%ymm3, %%ymm3, %%ymm3\n\t"                                   \
  "vxorps %%ymm4, %%ymm4, %%ymm4\n\t"                                   \
  "vxorps %%ymm5, %%ymm5, %%ymm5\n\t"                                   \
  "vxorps %%ymm6, %%ymm6, %%ymm6\n\t"                                   \
  "vxorps %%ymm7, %%ymm7, %%ymm7\n\t"                                   \
  "vxorps %%ymm8, %%ymm8, %%ymm8\n\t"                                   \
  "vxorps %%ymm9, %%ymm9, %%ymm9\n\t"                                   \
  "vxorps %%ymm10, %%ymm10, %%ymm10\n\t"                                \
  "vxorps %%ymm11, %%ymm11, %%ymm11\n\t"                                \
  "3:\n\t"                                                              \
  "test %[k], %[k]\n\t"                                                 \
  "jz 4f\n\t"                                                           \
  "1:\n\t"                                                              \
  "vmovaps (%[b]), %%ymm12\n\t"                                         \
  "vmovaps 32(%[b]), %%ymm13\n\t"
#define MNX_EPILOGUE                                                    \
  "add $64, %[b]\n\t"                                                   \
  "dec %[k]\n\t"                                                        \
  "jnz 1b\n\t"                                                          \
  "4:\n\t"                                                              \
  "vmovups %%ymm0, (%[o])\n\t"                                          \
  "vmovups %%ymm1, 32(%[o])\n\t"                                        \
  "vmovups %%ymm2, (%[o],%[ldo],1)\n\t"                                 \
  "vmovups %%ymm3, 32(%[o],%[ldo],1)\n\t"                               \
  "vmovups %%ymm4, (%[o],%[ldo],2)\n\t"                                 \
  "vmovups %%ymm5, 32(%[o],%[ldo],2)\n\t"                               \
  "lea (%[o],%[ldo],2), %[o]\n\t"                                       \
  "vmovups %%ymm6, (%[o],%[ldo],1)\n\t"                                 \
  "vmovups %%ymm7, 32(%[o],%[ldo],1)\n\t"                               \
  "vmovups %%ymm8, (%[o],%[ldo],2)\n\t"                                 \
  "vmovups %%ymm9, 32(%[o],%[ldo],2)\n\t"                               \
  "lea (%[o],%[ldo],2), %[o]\n\t"                                       \
  "vmovups %%ymm10, (%[o],%[ldo],1)\n\t"                                \
  "vmovups %%ymm11, 32(%[o],%[ldo],1)\n\t"
#define MNX_CLOBBERS                                                     \
  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", \
      "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc",  \
      "memory"

inline void ukr_core(int64_t kc, const float* a, int64_t a_rs, bool direct,
                     const float* b, float* c, int64_t ldc, bool load_c,
                     float* out, int64_t ldo) {
  int64_t k = kc;
  const int64_t lc = load_c ? 1 : 0;
  const int64_t ldcb = ldc * 4, ldob = ldo * 4;
  if (direct) {
    const int64_t rs = a_rs * 4;
    const float* a3 = a + 3 * a_rs;
    __asm__ volatile(
        MNX_PROLOGUE
        MNX_ROW("(%[a])", "ymm14", "ymm0", "ymm1")
        MNX_ROW("(%[a],%[rs],1)", "ymm15", "ymm2", "ymm3")
        MNX_ROW("(%[a],%[rs],2)", "ymm14", "ymm4", "ymm5")
        MNX_ROW("(%[a3])", "ymm15", "ymm6", "ymm7")
        MNX_ROW("(%[a3],%[rs],1)", "ymm14", "ymm8", "ymm9")
        MNX_ROW("(%[a3],%[rs],2)", "ymm15", "ymm10", "ymm11")
        "add $4, %[a]\n\t"
        "add $4, %[a3]\n\t"
        MNX_EPILOGUE
        : [a] "+r"(a), [a3] "+r"(a3), [b] "+r"(b), [k] "+r"(k), [c] "+r"(c),
          [o] "+r"(out)
        : [rs] "r"(rs), [ldc] "r"(ldcb), [ldo] "r"(ldob), [lc] "r"(lc)
        : MNX_CLOBBERS);
  } else {
    __asm__ volatile(
        MNX_PROLOGUE
        MNX_ROW("(%[a])", "ymm14", "ymm0", "ymm1")
        MNX_ROW("4(%[a])", "ymm15", "ymm2", "ymm3")
        MNX_ROW("8(%[a])", "ymm14", "ymm4", "ymm5")
        MNX_ROW("12(%[a])", "ymm15", "ymm6", "ymm7")
        MNX_ROW("16(%[a])", "ymm14", "ymm8", "ymm9")
        MNX_ROW("20(%[a])", "ymm15", "ymm10", "ymm11")
        "add $24, %[a]\n\t"
        MNX_EPILOGUE
        : [a] "+r"(a), [b] "+r"(b), [k] "+r"(k), [c] "+r"(c), [o] "+r"(out)
        : [ldc] "r"(ldcb), [ldo] "r"(ldob), [lc] "r"(lc)
        : MNX_CLOBBERS);
  }
}
#undef MNX_ROW
#undef MNX_PROLOGUE
#undef MNX_EPILOGUE
#undef MNX_CLOBBERS

inline void ukr_6x16(int64_t kc, const float* a, int64_t a_rs, bool direct,
                     const float* b, float* c, int64_t ldc, bool load_c,
                     const Epi* e, int64_t m, int64_t n, bool cold_a) {
  if (direct && cold_a) {
    // A read in place: the hardware prefetchers follow six strided rows
    // poorly when A streams from memory; on the first pass over this A block
    // (cold_a) prefetch the next six rows (the next call's panel).
    // Prefetches never fault.
    const float* nx = a + 6 * a_rs;
    for (int r = 0; r < 6; ++r, nx += a_rs)
      for (int64_t k = 0; k < kc; k += 16)
        _mm_prefetch(reinterpret_cast<const char*>(nx + k), _MM_HINT_T0);
  }
  if (!e) {
    ukr_core(kc, a, a_rs, direct, b, c, ldc, load_c, c, ldc);
    return;
  }
  alignas(32) float acc[6 * 16];
  ukr_core(kc, a, a_rs, direct, b, c, ldc, load_c, acc, 16);
  __m256 bc0 = _mm256_setzero_ps(), bc1 = _mm256_setzero_ps();
  if (e->bias && !e->per_row) {
    bc0 = _mm256_loadu_ps(e->bias + n);
    bc1 = _mm256_loadu_ps(e->bias + n + 8);
  }
  for (int r = 0; r < 6; ++r) {
    __m256 v0 = _mm256_load_ps(acc + r * 16), v1 = _mm256_load_ps(acc + r * 16 + 8);
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
    v0 = activate<VecAvx2>(v0, e->act);
    v1 = activate<VecAvx2>(v1, e->act);
    if (e->res) {
      const float* rp = e->res + (m + r) * e->ldr + n;
      v0 = _mm256_add_ps(v0, _mm256_loadu_ps(rp));
      v1 = _mm256_add_ps(v1, _mm256_loadu_ps(rp + 8));
    }
    _mm256_storeu_ps(c + r * ldc, v0);
    _mm256_storeu_ps(c + r * ldc + 8, v1);
  }
}

// Edge tiles (mr < 6 rows and/or nr < 16 columns): R x (8 * NV) register
// tile with intrinsics (low register pressure, no spills); the last vector
// column is loaded / stored with a lane mask, so C is accessed in place
// (masked lanes are never touched) and the epilogue stays vectorised.
inline __m256i lane_mask(int64_t cnt) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)cnt),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

template <int R, int NV, bool kDirect>
inline void ukr_edge_t(int64_t kc, const float* a, int64_t a_rs,
                       const float* b, float* c, int64_t ldc, bool load_c,
                       const Epi* e, int64_t m, int64_t n, int64_t nr) {
  const __m256i lm = lane_mask(nr - (NV - 1) * 8);
  __m256 acc[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      const float* cp = c + r * ldc + v * 8;
      acc[r][v] = !load_c ? _mm256_setzero_ps()
                  : v == NV - 1 ? _mm256_maskload_ps(cp, lm)
                                : _mm256_loadu_ps(cp);
    }
  for (int64_t k = 0; k < kc; ++k) {
    __m256 bv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) bv[v] = _mm256_load_ps(b + k * 16 + v * 8);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 av =
          _mm256_broadcast_ss(kDirect ? a + r * a_rs + k : a + k * 6 + r);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v)
        acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      const bool last_v = v == NV - 1;
      const __m256i mk = last_v ? lm : _mm256_set1_epi32(-1);
      __m256 x = acc[r][v];
      if (e) {
        if (e->bias)
          x = _mm256_add_ps(
              x, e->per_row ? _mm256_broadcast_ss(e->bias + m + r)
                            : _mm256_maskload_ps(e->bias + n + v * 8, mk));
        x = activate<VecAvx2>(x, e->act);
        if (e->res)
          x = _mm256_add_ps(x, _mm256_maskload_ps(
                                   e->res + (m + r) * e->ldr + n + v * 8, mk));
      }
      float* cp = c + r * ldc + v * 8;
      if (last_v)
        _mm256_maskstore_ps(cp, lm, x);
      else
        _mm256_storeu_ps(cp, x);
    }
}

template <int NV, bool kDirect>
inline void ukr_edge_rows(int64_t mr, int64_t kc, const float* a, int64_t a_rs,
                          const float* b, float* c, int64_t ldc, bool load_c,
                          const Epi* e, int64_t m, int64_t n, int64_t nr) {
  switch (mr) {
#define MNX_CASE(R)                                                        \
  case R:                                                                  \
    ukr_edge_t<R, NV, kDirect>(kc, a, a_rs, b, c, ldc, load_c, e, m, n, nr); \
    break;
    MNX_CASE(1) MNX_CASE(2) MNX_CASE(3) MNX_CASE(4) MNX_CASE(5)
    default:
      ukr_edge_t<6, NV, kDirect>(kc, a, a_rs, b, c, ldc, load_c, e, m, n, nr);
      break;
#undef MNX_CASE
  }
}

struct KernAvx2 {
  static constexpr int64_t MR = 6, NR = 16;
  static constexpr bool kDirectA = true;

  static void ukr(int64_t kc, const float* a, int64_t a_rs, bool direct,
                  const float* b, float* c, int64_t ldc, bool load_c,
                  const Epi* e, int64_t m, int64_t n, bool cold_a) {
    ukr_6x16(kc, a, a_rs, direct, b, c, ldc, load_c, e, m, n, cold_a);
  }

  // Partial tile (mr <= 6, nr <= 16) in place in C, epilogue fused.
  static void ukr_edge(int64_t kc, const float* a, int64_t a_rs, bool direct,
                       const float* b, float* c, int64_t ldc, bool load_c,
                       const Epi* e, int64_t m, int64_t n, int64_t mr,
                       int64_t nr) {
    if (nr > 8) {
      if (direct) ukr_edge_rows<2, true>(mr, kc, a, a_rs, b, c, ldc, load_c, e, m, n, nr);
      else ukr_edge_rows<2, false>(mr, kc, a, a_rs, b, c, ldc, load_c, e, m, n, nr);
    } else {
      if (direct) ukr_edge_rows<1, true>(mr, kc, a, a_rs, b, c, ldc, load_c, e, m, n, nr);
      else ukr_edge_rows<1, false>(mr, kc, a, a_rs, b, c, ldc, load_c, e, m, n, nr);
    }
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
