// The FMA throughput probe (cpu/generic/fma_peak.h), on every ISA this CPU
// runs: it reports the flops it did, and its accumulators hold what that
// many FMAs give (computed here in double), so the benchmark's compute
// ceiling counts real work.
#include <cmath>
#include <cstdio>

#include "cpu/cpu_kernels.h"
#include "tester.h"

namespace {

// sum over chains and lanes of x_iters, x_0 = 1e-3 c, x_{i+1} = x_i a + b
double expected(int chains, int width, int64_t iters) {
  const double a = 0.9999999f, b = 1e-7f;
  double total = 0;
  for (int c = 0; c < chains; ++c) {
    double x = static_cast<double>(1e-3f * static_cast<float>(c));
    for (int64_t i = 0; i < iters; ++i) x = x * a + b;
    total += width * x;
  }
  return total;
}

void check_probe(mnx_test::Counter& t, const char* isa, int64_t (*probe)(int64_t, float*), int chains,
                 int width) {
  for (int64_t iters : {1, 7, 1000}) {
    float sink = -1.f;
    const int64_t flops = probe(iters, &sink);
    const double want = expected(chains, width, iters);
    const bool ok = flops == iters * chains * width * 2 && std::fabs(sink - want) <= 2e-4 * std::fabs(want) + 1e-6;
    if (!ok)
      std::printf("%s iters %lld: flops %lld (want %lld), sum %.9g (want %.9g)\n", isa, (long long)iters,
                  (long long)flops, (long long)(iters * chains * width * 2), sink, want);
    t.check(ok);
  }
}

}  // namespace

int main() {
  mnx_test::Counter t;
  check_probe(t, "scalar", mnx::cpu::fma_peak_scalar_f32, 12, 1);
#if defined(__x86_64__)
  if (mnx::cpu::cpu_has_avx2_fma()) check_probe(t, "avx2", mnx::cpu::fma_peak_avx2_f32, 12, 8);
  if (mnx::cpu::cpu_has_avx512f()) check_probe(t, "avx512", mnx::cpu::fma_peak_avx512_f32, 24, 16);
#endif
#if defined(__aarch64__)
  check_probe(t, "neon", mnx::cpu::fma_peak_neon_f32, 24, 4);
#endif
  // the dispatched probe is one of them
  float sink = 0.f;
  t.check(mnx::cpu::fma_peak_f32(10, &sink) > 0 && mnx::cpu::fma_peak_isa() != nullptr);
  std::printf("fma probe isa: %s\n", mnx::cpu::fma_peak_isa());
  return t.finish("fma_peak");
}
