// The thin per-ISA vector layer under the CPU micro-kernels.
//
// Each instruction set has one traits struct (vec_avx2.h: VecAvx2,
// vec_avx512.h: VecAvx512, vec_neon.h: VecNeon) with the same static
// members:
//
//   reg                       the register type; width: floats per register;
//                             registers: how many the ISA has
//   load / store              unaligned full-width access
//   stream(p, v)              full-width non-temporal store (p aligned to
//                             stream_align bytes; a plain store on NEON and
//                             scalar); stream_fence() orders a thread's
//                             streamed stores before it signals completion
//   load_n / store_n (p, n)   the first n lanes (0 <= n <= width); other
//                             lanes read as 0 and are not written
//   set1, zero, fma(a, b, c) = a * b + c, add, sub, mul, div
//   max_b / min_b (a, b)      max / min that return b when either is NaN
//   select_le / select_lt (a, b, x, y)  lane-wise a <= b (a < b) ? x : y;
//                             false (y) when a or b is NaN
//   reduce_add                horizontal sum
//   load_even(p)              the width even floats of p[0, 2 * width)
//   load_even_odd(p, e, o)    p[0, 2 * width) split into even / odd floats
//   transpose_n, transpose    register transpose of a transpose_n square
//                             block (0: the ISA has none; vec_avx2.h)
//
// A kernel written once as a template over V (csrc/cpu/generic/) is
// instantiated per ISA in that ISA's own translation unit, compiled with its
// own flags; the TU exports plain (non-template) entry points. Everything in
// these headers has internal linkage (an anonymous namespace), so no inline
// code compiled with wider instructions (an AVX-512 TU's copy) can be picked
// by the linker for another ISA's caller. This header itself is ISA-neutral:
// the activation epilogue, written once for every ISA.
#pragma once

#include <cstdint>

#include "../../kernels/params.h"

namespace mnx {
namespace cpu {
namespace {  // internal linkage: see vec.h

// act(v), NaN-propagating, matching apply_activation() in cpu_kernels.h up
// to the sign of a zero (ReLU(-0) may give -0 on x86): ReLU max(0, v),
// ReLU6 min(6, max(0, v)), Hardswish v * min(6, max(0, v + 3)) / 6.
template <class V>
inline typename V::reg activate(typename V::reg v, Activation act) {
  using R = typename V::reg;
  const R zero = V::zero(), six = V::set1(6.f);
  switch (act) {
    case Activation::ReLU:
      return V::max_b(zero, v);
    case Activation::ReLU6:
      return V::min_b(six, V::max_b(zero, v));
    case Activation::Hardswish: {
      const R t = V::min_b(six, V::max_b(zero, V::add(v, V::set1(3.f))));
      return V::div(V::mul(v, t), six);
    }
    default:
      return v;
  }
}

// Whether a kernel writes its output (at `out`, `floats` long, rows of
// `inner` floats) with V::stream: every whole-vector store aligned (inner a
// multiple of the width, out aligned) and the output at least
// kStreamMinBytes, past the caches' share of one op, so the next op reads it
// from memory anyway; each line is then not read from memory before it is
// written. Used by BatchNorm + activation (y, dx) and the channels_last
// depthwise grad_input; figures where they call it.
constexpr int64_t kStreamMinBytes = int64_t(4) << 20;
template <class V>
inline bool stream_output(const float* out, int64_t inner, int64_t floats) {
  return inner % V::width == 0 && reinterpret_cast<uintptr_t>(out) % V::stream_align == 0 &&
         floats * static_cast<int64_t>(sizeof(float)) >= kStreamMinBytes;
}

// The same for one float, in the ISA's translation unit (a template on V
// so that each ISA gets its own copy; see above).
template <class V>
inline float activate_one(float v, Activation act) {
  switch (act) {
    case Activation::ReLU:
      return v > 0.f ? v : (v != v ? v : 0.f);
    case Activation::ReLU6: {
      if (v != v) return v;
      const float r = v > 0.f ? v : 0.f;
      return r < 6.f ? r : 6.f;
    }
    case Activation::Hardswish: {
      if (v != v) return v;
      float t = v + 3.f;
      t = t > 0.f ? t : 0.f;
      t = t < 6.f ? t : 6.f;
      return v * t / 6.f;
    }
    default:
      return v;
  }
}

}  // namespace
}  // namespace cpu
}  // namespace mnx
