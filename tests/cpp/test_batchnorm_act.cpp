// Fused BatchNorm + activation kernels (cpu/batchnorm_act.h): the selected
// float32 family (AVX2 or NEON instantiation of generic/batchnorm_act.h) and
// the scalar reference (float and double) against a float64 computation
// here, on NCHW and NHWC, every activation, odd channel counts, plane and
// channel tails, several NHWC row chunks, sweep panels and NCHW blocks,
// outputs large enough for the streamed (non-temporal) stores, a large mean
// (cancellation), NaN; every kernel run once over all units and once unit by
// unit (bitwise equal: the result does not depend on the thread split).
#include <array>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <random>
#include <vector>

#include "cpu/batchnorm_act.h"
#include "cpu/cpu_kernels.h"
#include "tester.h"

namespace {

using mnx::Activation;
using mnx::Layout;
using mnx_test::Vec;
using mnx::cpu::BatchNormShape;
using mnx_test::Buffer;

int64_t idx(const BatchNormShape& s, int64_t n, int64_t c, int64_t i) {
  return s.layout == Layout::NCHW ? (n * s.C + c) * s.HW + i : (n * s.HW + i) * s.C + c;
}

double act_ref(double v, Activation a) { return mnx::cpu::apply_activation<double>(v, a); }

bool near(double got, double ref, double tol) {
  if (std::isnan(ref) || std::isnan(got)) return std::isnan(ref) && std::isnan(got);
  return std::fabs(got - ref) <= tol;
}

template <typename T>
struct Case {
  BatchNormShape s;
  Activation act;
  double mean_offset;
  bool nan;
};

// Runs one family on one case and compares with float64; returns failures.
template <typename T>
int run_case(const mnx::cpu::BatchNormActKernels<T>& k, const Case<T>& cs, uint32_t seed, const char* fam) {
  const BatchNormShape& s = cs.s;
  const int64_t total = s.N * s.C * s.HW, C = s.C, M = s.count();
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  Vec<T> x(total), dy(total);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t i = 0; i < s.HW; ++i) {
        x.d[idx(s, n, c, i)] = static_cast<T>(cs.mean_offset * (1 + 0.1 * c) + 2.5 * u(g) + 0.3 * c);
        dy.d[idx(s, n, c, i)] = static_cast<T>(u(g));
      }
  if (cs.nan) x.d[idx(s, s.N - 1, C / 2, s.HW / 2)] = NAN;
  int fails = 0;
  auto fail = [&](const char* what, double got, double ref) {
    if (fails < 3)
      std::fprintf(stderr, "FAIL %s %s N%lld C%lld HW%lld %s act%d: %.9g vs %.9g\n", fam, what, (long long)s.N,
                   (long long)C, (long long)s.HW, s.layout == Layout::NCHW ? "nchw" : "nhwc", (int)cs.act, got, ref);
    ++fails;
  };
  const double eps_t = sizeof(T) == 4 ? 1.2e-7 : 2.3e-16;
  // float64 statistics
  std::vector<double> mean(C, 0), var(C, 0);
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t i = 0; i < s.HW; ++i) mean[c] += x.d[idx(s, n, c, i)];
    mean[c] /= M;
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t i = 0; i < s.HW; ++i) {
        const double d = x.d[idx(s, n, c, i)] - mean[c];
        var[c] += d * d;
      }
    var[c] /= M;
  }
  // stats, all units at once and unit by unit
  const int64_t units = mnx::cpu::bn_reduce_units(s);
  std::vector<double> p1(mnx::cpu::bn_partial_size(s), -1.0), p2(p1.size(), -2.0);
  k.stats(s, x.p(), p1.data(), 0, units);
  for (int64_t b = units; b-- > 0;) k.stats(s, x.p(), p2.data(), b, b + 1);
  if (std::memcmp(p1.data(), p2.data(), p1.size() * sizeof(double)) != 0) fail("stats split", 0, 1);
  std::vector<double> dmean(C), bvar(C);
  mnx::cpu::bn_stats_finalize(s, p1.data(), dmean.data(), bvar.data());
  for (int64_t c = 0; c < C; ++c) {
    const double x0 = x.d[idx(s, 0, c, 0)];
    // shifted sums: error ~ eps * |x - x0| sums, independent of the mean
    const double spread = 4.0 + 0.3 * C;
    if (!near(x0 + dmean[c], mean[c], 64 * eps_t * (spread + std::fabs(mean[c])))) fail("mean", x0 + dmean[c], mean[c]);
    // (the float64 two-pass reference itself rounds x - mean at |mean|)
    if (!near(bvar[c], var[c], 64 * eps_t * spread * (spread + std::fabs(mean[c])))) fail("var", bvar[c], var[c]);
  }
  // apply with the training coefficients (as the glue computes them)
  const double eps = 1e-5;
  Vec<T> ctr(C), scale(C), shift(C), beta(C), smean(C);
  std::vector<double> gam(C), bet(C);
  for (int64_t c = 0; c < C; ++c) {
    gam[c] = 0.5 + 0.1 * (c % 7);
    bet[c] = -0.3 + 0.2 * (c % 5);
    const double inv = 1 / std::sqrt(bvar[c] + eps);
    ctr.d[c] = x.d[idx(s, 0, c, 0)];
    scale.d[c] = static_cast<T>(gam[c] * inv);
    shift.d[c] = static_cast<T>(bet[c] - dmean[c] * gam[c] * inv);
    beta.d[c] = static_cast<T>(bet[c]);
    smean.d[c] = static_cast<T>(x.d[idx(s, 0, c, 0)] + dmean[c]);
  }
  const int64_t eunits = mnx::cpu::bn_elementwise_units(s);
  Vec<T> y(total, T(-5)), y2(total, T(-6));
  k.apply(s, x.p(), ctr.p(), scale.p(), shift.p(), cs.act, y.p(), 0, eunits);
  for (int64_t b = 0; b < eunits; ++b) k.apply(s, x.p(), ctr.p(), scale.p(), shift.p(), cs.act, y2.p(), b, b + 1);
  if (!y.canaries() || std::memcmp(y.p(), y2.p(), total * sizeof(T)) != 0) fail("apply split/canary", 0, 1);
  for (int64_t c = 0; c < C; ++c) {
    const double inv = 1 / std::sqrt(var[c] + eps);
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t i = 0; i < s.HW; ++i) {
        const int64_t j = idx(s, n, c, i);
        const double z = (x.d[j] - mean[c]) * inv * gam[c] + bet[c];
        const double r = act_ref(z, cs.act);
        if (!near(y.d[j], r, 64 * eps_t * (1 + std::fabs(z) + std::fabs(mean[c]) * inv * gam[c])))
          fail("y", y.d[j], r);
      }
  }
  // backward pass 1
  std::vector<double> q1(p1.size(), -1.0), q2(p1.size(), -2.0);
  k.backward_reduce(s, dy.p(), x.p(), smean.p(), scale.p(), beta.p(), cs.act, q1.data(), 0, units);
  for (int64_t b = 0; b < units; ++b)
    k.backward_reduce(s, dy.p(), x.p(), smean.p(), scale.p(), beta.p(), cs.act, q2.data(), b, b + 1);
  if (std::memcmp(q1.data(), q2.data(), q1.size() * sizeof(double)) != 0) fail("reduce split", 0, 1);
  std::vector<double> sdz(C), sdzd(C);
  mnx::cpu::bn_sum_partials(s, q1.data(), sdz.data(), sdzd.data());
  Vec<T> A(C), B(C), K(C);
  std::vector<double> rdz(C, 0), rdzd(C, 0), rabs(C, 0);
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t i = 0; i < s.HW; ++i) {
        const int64_t j = idx(s, n, c, i);
        const double d = double(x.d[j]) - double(smean.d[c]);
        const double gz = mnx::cpu::bn_act_grad<double>(d * double(scale.d[c]) + double(beta.d[c]), dy.d[j], cs.act);
        rdz[c] += gz;
        rdzd[c] += gz * d;
        rabs[c] += std::fabs(gz) * (1 + (std::isnan(d) ? 0.0 : std::fabs(d)));
      }
    const double tol = 64 * eps_t * (rabs[c] + 1);
    if (!near(sdz[c], rdz[c], tol)) fail("sum dz", sdz[c], rdz[c]);
    if (!near(sdzd[c], rdzd[c], tol)) fail("sum dz*d", sdzd[c], rdzd[c]);
    const double inv = double(scale.d[c]) / gam[c], a = gam[c] * inv;
    A.d[c] = static_cast<T>(a);
    B.d[c] = static_cast<T>(-a * rdzd[c] * inv * inv / M);
    K.d[c] = static_cast<T>(-a * rdz[c] / M);
  }
  Vec<T> dx(total, T(-5)), dx2(total, T(-6));
  k.backward_dx(s, dy.p(), x.p(), smean.p(), scale.p(), beta.p(), A.p(), B.p(), K.p(), cs.act, dx.p(), 0, eunits);
  for (int64_t b = eunits; b-- > 0;)
    k.backward_dx(s, dy.p(), x.p(), smean.p(), scale.p(), beta.p(), A.p(), B.p(), K.p(), cs.act, dx2.p(), b, b + 1);
  if (!dx.canaries() || std::memcmp(dx.p(), dx2.p(), total * sizeof(T)) != 0) fail("dx split/canary", 0, 1);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t i = 0; i < s.HW; ++i) {
        const int64_t j = idx(s, n, c, i);
        const double d = double(x.d[j]) - double(smean.d[c]);
        const double gz = mnx::cpu::bn_act_grad<double>(d * double(scale.d[c]) + double(beta.d[c]), dy.d[j], cs.act);
        const double r = double(A.d[c]) * gz + double(B.d[c]) * d + double(K.d[c]);
        // gz's own rounding (Hardswish: dy * (z / 3 + 1/2) with z rounded)
        const double zz = std::fabs(d * double(scale.d[c])) + std::fabs(double(beta.d[c]));
        const double tol = 64 * eps_t * (std::fabs(A.d[c] * gz) + std::fabs(A.d[c] * dy.d[j]) * (1 + zz) +
                                         std::fabs(B.d[c] * d) + std::fabs(K.d[c]) + 1e-30);
        if (std::isnan(r)) {
          if (!std::isnan(dx.d[j])) fail("dx nan", dx.d[j], r);
          continue;
        }
        if (!near(dx.d[j], r, tol)) fail("dx", dx.d[j], r);
      }
  return fails;
}

}  // namespace

int main() {
  mnx_test::Counter t;
  std::vector<BatchNormShape> shapes;
  for (Layout l : {Layout::NCHW, Layout::NHWC}) {
    for (auto dims : std::vector<std::array<int64_t, 3>>{
             {1, 1, 2}, {2, 3, 5}, {3, 7, 17}, {2, 13, 9}, {1, 5, 2500}, {2, 37, 33}, {3, 45, 49}, {4, 70, 300},
             // more than one NHWC sweep panel (512 channels), with a channel tail
             {2, 601, 7},
             // outputs of 4 MiB: non-temporal stores (C and HW multiples of 16)
             {2, 64, 8192}}) {
      BatchNormShape s;
      s.N = dims[0];
      s.C = dims[1];
      s.HW = dims[2];
      s.layout = l;
      shapes.push_back(s);
    }
  }
  const auto& fam = mnx::cpu::batchnorm_act_kernels_f32();
  const auto& ref32 = mnx::cpu::batchnorm_act_kernels_scalar_f32();
  const auto& ref64 = mnx::cpu::batchnorm_act_kernels_f64();
  std::printf("batchnorm_act float32 family: %s\n", fam.isa);
  uint32_t seed = 1;
  for (const auto& s : shapes)
    for (Activation a : {Activation::None, Activation::ReLU, Activation::ReLU6, Activation::Hardswish}) {
      ++seed;
      t.check(run_case<float>(fam, {s, a, 0.0, false}, seed, fam.isa) == 0);
      t.check(run_case<float>(ref32, {s, a, 0.0, false}, seed, "scalar f32") == 0);
      t.check(run_case<double>(ref64, {s, a, 0.0, false}, seed, "scalar f64") == 0);
    }
  // large mean: shifted sums keep the variance (a naive sum of squares in
  // float would lose it entirely at mean 1e4, in double at 1e9)
  for (const auto& s : shapes) {
    t.check(run_case<float>(fam, {s, Activation::ReLU6, 1e4, false}, 99, fam.isa) == 0);
    t.check(run_case<double>(ref64, {s, Activation::Hardswish, 1e9, false}, 98, "scalar f64") == 0);
  }
  // NaN in one channel propagates to its statistics and outputs
  for (const auto& s : shapes)
    if (s.N * s.HW > 1) {
      t.check(run_case<float>(fam, {s, Activation::ReLU, 0.0, true}, 7, fam.isa) == 0);
      t.check(run_case<float>(ref32, {s, Activation::ReLU6, 0.0, true}, 7, "scalar f32") == 0);
    }
  // bn_act_grad matches PyTorch's backward formulas at the edges
  using mnx::cpu::bn_act_grad;
  t.check(bn_act_grad<float>(0.f, 1.f, Activation::ReLU) == 0.f && bn_act_grad<float>(1e-30f, 1.f, Activation::ReLU) == 1.f);
  t.check(bn_act_grad<float>(6.f, 1.f, Activation::ReLU6) == 0.f && bn_act_grad<float>(5.f, 2.f, Activation::ReLU6) == 2.f);
  t.check(bn_act_grad<float>(-3.f, 1.f, Activation::Hardswish) == -0.5f && bn_act_grad<float>(4.f, 2.f, Activation::Hardswish) == 2.f);
  t.check(bn_act_grad<float>(-4.f, 1.f, Activation::Hardswish) == 0.f && bn_act_grad<float>(NAN, 1.f, Activation::ReLU) == 1.f);
  return t.finish("batchnorm_act");
}
