// Channel sums and scaling kernels (cpu/channel_scale.h): the selected
// float32 family (AVX2 or NEON instantiation of generic/channel_scale.h) and
// the scalar reference (float and double) against a float64 computation
// here, on NCHW and NHWC, odd channel counts, plane and channel tails,
// several float chunks per lane, with and without the second operand / the
// shift, in place, NaN; every kernel run once over all units and once unit
// by unit in reverse (bitwise equal: the result does not depend on the
// thread split).
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/channel_scale.h"
#include "tester.h"

namespace {

using mnx::Layout;
using mnx_test::Vec;
using mnx::cpu::ChannelKernels;
using mnx::cpu::ChannelShape;

int64_t idx(const ChannelShape& s, int64_t n, int64_t c, int64_t i) {
  return s.layout == Layout::NCHW ? (n * s.C + c) * s.HW + i : (n * s.HW + i) * s.C + c;
}

bool near(double got, double ref, double tol) {
  if (std::isnan(ref) || std::isnan(got)) return std::isnan(ref) && std::isnan(got);
  return std::fabs(got - ref) <= tol;
}

template <typename T>
int run_case(const ChannelKernels<T>& k, const ChannelShape& s, bool with_b, bool with_shift, bool nan,
             uint32_t seed, const char* what) {
  int fails = 0;
  auto fail = [&](const char* part, double got, double ref) {
    if (fails++ < 3)
      std::fprintf(stderr, "FAIL %s %s N=%lld C=%lld HW=%lld %s b=%d shift=%d: got %.9g ref %.9g\n", what, part,
                   (long long)s.N, (long long)s.C, (long long)s.HW, s.layout == Layout::NCHW ? "NCHW" : "NHWC",
                   with_b, with_shift, got, ref);
  };
  const int64_t total = s.N * s.C * s.HW, nc = s.N * s.C;
  const double eps_t = std::is_same<T, float>::value ? std::ldexp(1.0, -24) : std::ldexp(1.0, -53);
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> d(-2.0, 3.0);
  Vec<T> a(total), b(total), sc(nc), sh(nc);
  for (int64_t i = 0; i < total; ++i) a.d[i] = static_cast<T>(d(g));
  for (int64_t i = 0; i < total; ++i) b.d[i] = static_cast<T>(d(g));
  for (int64_t i = 0; i < nc; ++i) sc.d[i] = static_cast<T>(d(g));
  for (int64_t i = 0; i < nc; ++i) sh.d[i] = static_cast<T>(d(g));
  if (nan && total > 0) a.d[idx(s, s.N - 1, s.C / 2, s.HW / 2)] = static_cast<T>(NAN);

  // ---- sums: all units at once, then unit by unit in reverse ----
  const int64_t units = mnx::cpu::channel_sum_units(s);
  std::vector<double> sa(nc + 1, -1), sab(nc + 1, -1), sa2(nc + 1, -2), sab2(nc + 1, -2);
  k.sums(s, a.p(), with_b ? b.p() : nullptr, sa.data(), with_b ? sab.data() : nullptr, 0, units);
  for (int64_t u = units; u-- > 0;)
    k.sums(s, a.p(), with_b ? b.p() : nullptr, sa2.data(), with_b ? sab2.data() : nullptr, u, u + 1);
  if (std::memcmp(sa.data(), sa2.data(), nc * sizeof(double)) != 0 ||
      (with_b && std::memcmp(sab.data(), sab2.data(), nc * sizeof(double)) != 0))
    fail("sums split", 0, 1);
  if (sa[nc] != -1 || sab[nc] != -1) fail("sums wrote past [N*C]", sa[nc], -1);
  if (!with_b && sab[0] != -1) fail("sums wrote sum_ab without b", sab[0], -1);
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t c = 0; c < s.C; ++c) {
      double ra = 0, rab = 0, abs_a = 0, abs_ab = 0;
      for (int64_t i = 0; i < s.HW; ++i) {
        const int64_t j = idx(s, n, c, i);
        ra += double(a.d[j]);
        rab += double(a.d[j]) * double(b.d[j]);
        abs_a += std::fabs(double(a.d[j]));
        abs_ab += std::fabs(double(a.d[j]) * double(b.d[j]));
      }
      // float lanes add up to kChannelSumChunk (or 2 * width * chunk) values
      // before the double: a generous random-walk bound
      const double terms = std::min<double>(s.HW, 2.0 * 16 * mnx::cpu::kChannelSumChunk);
      const double tol = 16 * eps_t * (4 + std::sqrt(terms));
      if (!near(sa[n * s.C + c], ra, tol * (abs_a + 1e-30))) fail("sum a", sa[n * s.C + c], ra);
      if (with_b && !near(sab[n * s.C + c], rab, tol * (abs_ab + 1e-30))) fail("sum a*b", sab[n * s.C + c], rab);
    }

  // ---- scale: out of place, unit split, in place ----
  const int64_t eunits = mnx::cpu::channel_scale_units(s);
  Vec<T> y(total, T(-5)), y2(total, T(-6)), yin = a;
  const T* shp = with_shift ? sh.p() : nullptr;
  k.scale(s, a.p(), sc.p(), shp, y.p(), 0, eunits);
  for (int64_t u = eunits; u-- > 0;) k.scale(s, a.p(), sc.p(), shp, y2.p(), u, u + 1);
  k.scale(s, yin.p(), sc.p(), shp, yin.p(), 0, eunits);
  if (!y.canaries() || !yin.canaries() || std::memcmp(y.p(), y2.p(), total * sizeof(T)) != 0 ||
      std::memcmp(y.p(), yin.p(), total * sizeof(T)) != 0)
    fail("scale split/in place/canary", 0, 1);
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t i = 0; i < s.HW; ++i) {
        const int64_t j = idx(s, n, c, i);
        const double k0 = sc.d[n * s.C + c], t = with_shift ? double(sh.d[n * s.C + c]) : 0.0;
        const double r = double(a.d[j]) * k0 + t;
        const double tol = 2 * eps_t * (std::fabs(double(a.d[j]) * k0) + std::fabs(t));
        if (!near(y.d[j], r, tol)) fail("scale", y.d[j], r);
      }
  return fails;
}

}  // namespace

int main() {
  mnx_test::Counter t;
  std::vector<ChannelShape> shapes;
  for (Layout l : {Layout::NCHW, Layout::NHWC})
    for (auto dims : std::vector<std::array<int64_t, 3>>{{1, 1, 1},   {2, 3, 5},    {3, 7, 17},   {2, 13, 9},
                                                         {1, 5, 2500}, {2, 37, 33}, {3, 45, 49}, {2, 70, 300},
                                                         {2, 130, 49}, {1, 9, 17000}, {2, 0, 4}}) {
      ChannelShape s;
      s.N = dims[0];
      s.C = dims[1];
      s.HW = dims[2];
      s.layout = l;
      shapes.push_back(s);
    }
  const auto& fam = mnx::cpu::channel_kernels_f32();
  const auto& ref32 = mnx::cpu::channel_kernels_scalar_f32();
  const auto& ref64 = mnx::cpu::channel_kernels_f64();
  std::printf("channel_scale float32 family: %s\n", fam.isa);
  uint32_t seed = 1;
  for (const auto& s : shapes)
    for (int variant = 0; variant < 4; ++variant) {
      const bool with_b = variant & 1, with_shift = variant & 2;
      ++seed;
      t.check(run_case<float>(fam, s, with_b, with_shift, false, seed, fam.isa) == 0);
      t.check(run_case<float>(ref32, s, with_b, with_shift, false, seed, "scalar f32") == 0);
      t.check(run_case<double>(ref64, s, with_b, with_shift, false, seed, "scalar f64") == 0);
      t.check(run_case<float>(fam, s, with_b, with_shift, true, seed, fam.isa) == 0);
    }
  return t.finish("channel_scale");
}
