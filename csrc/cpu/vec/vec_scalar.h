// The portable member of the vector layer (see vec.h): one float per
// "register", plain C++. Lets a generic kernel run where no SIMD family is
// compiled; the scalar reference kernels (csrc/cpu/scalar/*.cpp) stay
// independent of it, as the oracle the tests compare against.
#pragma once

#include "vec.h"

namespace mnx {
namespace cpu {
namespace {  // internal linkage: see vec.h

struct VecScalar {
  using reg = float;
  static constexpr int width = 1;
  static constexpr int registers = 16;
  static constexpr const char* name = "scalar";

  static reg load(const float* p) { return *p; }
  static void store(float* p, reg v) { *p = v; }
  static constexpr int stream_align = 4;
  static void stream(float* p, reg v) { *p = v; }
  static void stream_fence() {}
  static reg set1(float v) { return v; }
  static reg zero() { return 0.f; }
  static reg fma(reg a, reg b, reg c) { return a * b + c; }
  static reg add(reg a, reg b) { return a + b; }
  static reg sub(reg a, reg b) { return a - b; }
  static reg mul(reg a, reg b) { return a * b; }
  static reg div(reg a, reg b) { return a / b; }
  static reg max_b(reg a, reg b) { return (b != b || b > a) ? b : a; }
  static reg min_b(reg a, reg b) { return (b != b || b < a) ? b : a; }
  static reg select_le(reg a, reg b, reg x, reg y) { return a <= b ? x : y; }
  static reg select_lt(reg a, reg b, reg x, reg y) { return a < b ? x : y; }
  static reg load_n(const float* p, int n) { return n > 0 ? *p : 0.f; }
  static void store_n(float* p, reg v, int n) {
    if (n > 0) *p = v;
  }
  static float reduce_add(reg v) { return v; }
  static reg load_even(const float* p) { return p[0]; }
  static void load_even_odd(const float* p, reg& even, reg& odd) {
    even = p[0];
    odd = p[1];
  }

  // no register transpose (see vec_avx2.h): generic code copies element-wise
  static constexpr int transpose_n = 0;
};

}  // namespace
}  // namespace cpu
}  // namespace mnx
