// Minimal test helpers for the kernel unit tests (no framework needed).
// Buffers carry canaries past their end so a write out of bounds is caught
// even without sanitizers.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

namespace mnx_test {

constexpr int kCanary = 64;
constexpr float kCanaryValue = 1234.5f;

// A float buffer of n elements followed by kCanary canary floats.
struct Buffer {
  std::vector<float> data;
  int64_t n;
  explicit Buffer(int64_t n_, float fill = 0.f)
      : data(n_ + kCanary, kCanaryValue), n(n_) {
    for (int64_t i = 0; i < n; ++i) data[i] = fill;
  }
  float* ptr() { return data.data(); }
  const float* ptr() const { return data.data(); }
  bool canaries_ok() const {
    for (int i = 0; i < kCanary; ++i)
      if (data[n + i] != kCanaryValue) return false;
    return true;
  }
};

inline void fill_random(Buffer& b, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  for (int64_t i = 0; i < b.n; ++i) b.data[i] = d(g);
}

// Relative-to-scale max error; returns true when within tol.
inline bool close(const Buffer& got, const Buffer& ref, double tol,
                  const char* what) {
  double maxerr = 0, scale = 1e-6;
  for (int64_t i = 0; i < ref.n; ++i) {
    scale = std::max(scale, (double)std::fabs(ref.data[i]));
    double e = std::fabs((double)got.data[i] - (double)ref.data[i]);
    if (!(e <= maxerr)) maxerr = std::isnan(e) ? INFINITY : std::max(maxerr, e);
  }
  const bool ok = maxerr <= tol * scale && got.canaries_ok();
  if (!ok)
    std::fprintf(stderr, "FAIL %s: max err %.3g (scale %.3g)%s\n", what,
                 maxerr, scale, got.canaries_ok() ? "" : " CANARY OVERWRITTEN");
  return ok;
}

struct Counter {
  int passed = 0, failed = 0;
  void check(bool ok) { ok ? ++passed : ++failed; }
  int finish(const char* name) {
    std::printf("%s: %d passed, %d failed\n", name, passed, failed);
    return failed ? 1 : 0;
  }
};

}  // namespace mnx_test
