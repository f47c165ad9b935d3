// FMA throughput probe, written once over the vector layer (vec.h): the
// compute ceiling of the benchmark's roofline (python -m mobilenet_ext bench)
// is this probe's rate on all threads, not a library GEMM's.
//
// Independent accumulator chains hide the FMA latency: 3/4 of the ISA's
// registers (12 on AVX2, 24 on AVX-512 and NEON) cover latency x pipes on
// current cores (4 cycles x 2 pipes = 8 in flight) and leave room for the
// two operands, so nothing spills.
#pragma once

#include <cstdint>

#include "../vec/vec.h"

namespace mnx {
namespace cpu {
namespace {  // internal linkage: see vec.h

// Runs iters rounds of FMAs and returns the floating-point operations done
// (2 per lane per FMA); the result is written to *sink so it is not elided.
template <class V>
int64_t fma_peak_run(int64_t iters, float* sink) {
  using R = typename V::reg;
  constexpr int kChains = V::registers * 3 / 4;
  R acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = V::set1(1e-3f * static_cast<float>(c));
  const R a = V::set1(0.9999999f), b = V::set1(1e-7f);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 32
    for (int c = 0; c < kChains; ++c) acc[c] = V::fma(acc[c], a, b);
  }
  R s = acc[0];
  for (int c = 1; c < kChains; ++c) s = V::add(s, acc[c]);
  *sink = V::reduce_add(s);
  return iters * kChains * V::width * 2;
}

}  // namespace
}  // namespace cpu
}  // namespace mnx
