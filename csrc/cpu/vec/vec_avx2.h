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

  // The first n lanes (0 <= n <= width); the others read as 0 / are not written.
  static __m256i tail_mask(int n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
  }
  static reg load_n(const float* p, int n) { return _mm256_maskload_ps(p, tail_mask(n)); }
  static void store_n(float* p, reg v, int n) { _mm256_maskstore_ps(p, tail_mask(n), v); }

  static float reduce_add(reg v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};

}  // namespace
}  // namespace cpu
}  // namespace mnx
