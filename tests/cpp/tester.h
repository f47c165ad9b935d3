// Minimal test helpers for the kernel unit tests (no framework needed).
// Buffers carry canaries past their end so a write out of bounds is caught
// even without sanitizers.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <vector>

namespace mnx_test {

constexpr int kCanary = 64;
constexpr float kCanaryValue = 1234.5f;

// 64-byte aligned storage (what torch's CPU allocator gives): outputs large
// enough for the kernels' non-temporal stores take that path here too.
template <class T>
struct Align64 {
  using value_type = T;
  Align64() = default;
  template <class U>
  Align64(const Align64<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  template <class U>
  bool operator==(const Align64<U>&) const { return true; }
  template <class U>
  bool operator!=(const Align64<U>&) const { return false; }
};

// A float buffer of n elements (64-byte aligned) followed by kCanary canary
// floats.
struct Buffer {
  std::vector<float, Align64<float>> data;
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

// A float or double buffer of n elements followed by 64 canaries (777).
template <typename T>
struct Vec {
  std::vector<T, Align64<T>> d;  // 64-byte aligned, as Buffer
  int64_t n;
  explicit Vec(int64_t n_, T fill = 0) : d(n_ + 64, T(777)), n(n_) {
    for (int64_t i = 0; i < n; ++i) d[i] = fill;
  }
  T* p() { return d.data(); }
  bool canaries() const {
    for (int i = 0; i < 64; ++i)
      if (d[n + i] != T(777)) return false;
    return true;
  }
};

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

// Element-wise check of a float32 result against a float64 reference:
//   |got[i] - ref[i]| <= 16 * u * (4 + sqrt(terms)) * absref[i] + 4 * u * |ref[i]|
// where absref[i] is the same reduction over absolute values (sum |terms|),
// u = 2^-24 and `terms` the reduction length. Float32 rounding behaves like
// a random walk (~u * sqrt(terms) * sum|terms|), so this leaves >= 16x margin
// while a single missing or extra term of typical size is still caught for
// reductions of up to a few thousand terms. The 4u|ref| part covers the
// activation epilogue (Hardswish's multiply and divide). A NaN in the
// reference must be a NaN in the result and vice versa. Canaries are checked.
inline bool close_to_ref(const Buffer& got, const std::vector<double>& ref,
                         const std::vector<double>& absref, double terms,
                         const char* what) {
  const double u = std::ldexp(1.0, -24);
  const double k = 16 * u * (4 + std::sqrt(terms));
  int64_t bad = -1;
  double worst = 0;
  for (int64_t i = 0; i < got.n; ++i) {
    const double g = got.data[i], r = ref[i];
    if (std::isnan(r) || std::isnan(g)) {
      if (std::isnan(r) != std::isnan(g)) { bad = i; break; }
      continue;
    }
    const double e = std::fabs(g - r), tol = k * absref[i] + 4 * u * std::fabs(r);
    if (!(e <= tol) && (bad < 0 || e - tol > worst)) {
      bad = i;
      worst = e - tol;
    }
  }
  const bool ok = bad < 0 && got.canaries_ok();
  if (!ok) {
    if (bad >= 0)
      std::fprintf(stderr, "FAIL %s: at %lld got %.9g ref %.9g (absref %.3g, %g terms)\n",
                   what, (long long)bad, (double)got.data[bad], ref[bad],
                   absref[bad], terms);
    else
      std::fprintf(stderr, "FAIL %s: CANARY OVERWRITTEN\n", what);
  }
  return ok;
}

// Bitwise equality of two results (NaN payloads included) and their canaries.
inline bool bitwise_equal(const Buffer& a, const Buffer& b, const char* what) {
  const bool ok = a.n == b.n && a.canaries_ok() && b.canaries_ok() &&
                  std::memcmp(a.data.data(), b.data.data(), sizeof(float) * a.n) == 0;
  if (!ok) std::fprintf(stderr, "FAIL %s: results differ between unit splits\n", what);
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
