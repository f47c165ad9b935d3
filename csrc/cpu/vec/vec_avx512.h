// The AVX-512F member of the thin per-ISA vector layer (see vec.h): 16
// floats per register, masked tails. Include only from translation units
// compiled with -mavx512f -mavx2 -mfma (csrc/cpu/avx512/).
#pragma once

#include <immintrin.h>

#include "vec.h"
#include "vec_avx2.h"  // its 8x8 transpose (see transpose below)

namespace mnx {
namespace cpu {
namespace {  // internal linkage: see vec.h

struct VecAvx512 {
  using reg = __m512;
  static constexpr int width = 16;
  static constexpr int registers = 32;  // architectural vector registers
  static constexpr const char* name = "avx512";

  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static constexpr int stream_align = 64;
  static void stream(float* p, reg v) { _mm512_stream_ps(p, v); }
  static void stream_fence() { _mm_sfence(); }
  static reg set1(float v) { return _mm512_set1_ps(v); }
  static reg zero() { return _mm512_setzero_ps(); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg div(reg a, reg b) { return _mm512_div_ps(a, b); }
  static reg max_b(reg a, reg b) { return _mm512_max_ps(a, b); }  // b on NaN
  static reg min_b(reg a, reg b) { return _mm512_min_ps(a, b); }
  static reg select_le(reg a, reg b, reg x, reg y) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_LE_OQ), y, x); }
  static reg select_lt(reg a, reg b, reg x, reg y) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_LT_OQ), y, x); }

  static __mmask16 tail_mask(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static reg load_n(const float* p, int n) { return _mm512_maskz_loadu_ps(tail_mask(n), p); }
  static void store_n(float* p, reg v, int n) { _mm512_mask_storeu_ps(p, tail_mask(n), v); }

  static float reduce_add(reg v) { return _mm512_reduce_add_ps(v); }
  // the 16 even floats of p[0, 32) / also the 16 odd ones
  static reg load_even(const float* p) {
    reg e, o;
    load_even_odd(p, e, o);
    return e;
  }
  static void load_even_odd(const float* p, reg& even, reg& odd) {
    const reg a = _mm512_loadu_ps(p), b = _mm512_loadu_ps(p + 16);
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    even = _mm512_permutex2var_ps(a, ie, b);
    odd = _mm512_permutex2var_ps(a, _mm512_add_epi32(ie, _mm512_set1_epi32(1)), b);
  }

  // Register transpose (see vec_avx2.h): the AVX2 member's 8x8 block
  // transpose on ymm registers (AVX-512 TUs are compiled with -mavx2 too).
  static constexpr int transpose_n = VecAvx2::transpose_n;
  static void transpose(const float* src, int64_t lds, float* dst, int64_t ldd) {
    VecAvx2::transpose(src, lds, dst, ldd);
  }
};

}  // namespace
}  // namespace cpu
}  // namespace mnx
