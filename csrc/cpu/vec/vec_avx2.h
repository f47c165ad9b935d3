// The AVX2/FMA member of the thin per-ISA vector layer (see vec.h): 8
// floats per register. Include only from translation units compiled with
// -mavx2 -mfma (csrc/cpu/avx2/).
#pragma once

#include <immintrin.h>

#include "vec.h"

namespace mnx {
namespace cpu {
namespace {  // internal linkage: see vec.h

struct VecAvx2 {
  using reg = __m256;
  static constexpr int width = 8;
  static constexpr int registers = 16;  // architectural vector registers
  static constexpr const char* name = "avx2";

  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static constexpr int stream_align = 32;
  static void stream(float* p, reg v) { _mm256_stream_ps(p, v); }
  static void stream_fence() { _mm_sfence(); }
  static reg set1(float v) { return _mm256_set1_ps(v); }
  static reg zero() { return _mm256_setzero_ps(); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static reg div(reg a, reg b) { return _mm256_div_ps(a, b); }
  // max/min that return b when either operand is NaN (x86 MAXPS/MINPS
  // return their second operand then): with a a constant, NaN in b survives.
  static reg max_b(reg a, reg b) { return _mm256_max_ps(a, b); }
  static reg min_b(reg a, reg b) { return _mm256_min_ps(a, b); }
  // lane-wise (a <= b ? x : y) / (a < b ? x : y); a NaN comparison is false
  static reg select_le(reg a, reg b, reg x, reg y) { return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_LE_OQ)); }
  static reg select_lt(reg a, reg b, reg x, reg y) { return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_LT_OQ)); }

  // The first n lanes (0 <= n <= width); the others read as 0 / are not written.
  static __m256i tail_mask(int n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
  }
  static reg load_n(const float* p, int n) { return _mm256_maskload_ps(p, tail_mask(n)); }
  static void store_n(float* p, reg v, int n) { _mm256_maskstore_ps(p, tail_mask(n), v); }
  // the 8 even floats of p[0, 16) / also the 8 odd ones (stride-2 columns)
  static reg load_even(const float* p) {
    reg e, o;
    load_even_odd(p, e, o);
    return e;
  }
  static void load_even_odd(const float* p, reg& even, reg& odd) {
    const reg a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
    const reg e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    const reg o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
    odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0)));
  }

  static float reduce_add(reg v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  // Register transpose (optional member of the vector layer: ISAs without
  // one say transpose_n = 0). transpose8: rows r[0..7] in place.
  // transpose: the 8x8 block at src (rows lds floats apart) to dst (rows ldd
  // floats apart): dst[j * ldd + i] = src[i * lds + j], i, j < 8.
  static constexpr int transpose_n = 8;
  static void transpose8(reg r[8]) {
    const reg t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const reg t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const reg t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const reg t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const reg s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const reg s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const reg s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const reg s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
  }
  static void transpose(const float* src, int64_t lds, float* dst, int64_t ldd) {
    reg r[8];
    for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * lds);
    transpose8(r);
    for (int j = 0; j < 8; ++j) _mm256_storeu_ps(dst + j * ldd, r[j]);
  }
};

}  // namespace
}  // namespace cpu
}  // namespace mnx
