// The selected depthwise kernel family (AVX2 on x86-64, NEON on AArch64)
// against the scalar reference computed in float64, over grids that reach
// every specialised path (layouts, kernel sizes 3/5/7 and others, strides,
// every padding 0..K-1, dilations, multipliers, widths around the vector
// widths 4 and 8 and their tails, small/odd sizes, channel tails, every
// activation, with and without bias).
//
// For every case and op (forward, grad_input, grad_weight, and the NHWC
// grad_weight row-chunk partials where the family has them):
//  - the result is within a float32 rounding bound of the float64 reference
//    (mnx_test::close_to_ref: element-wise, relative to the sum of |terms|);
//  - running the work units as one range, as random sub-ranges (what threads
//    do) and one unit at a time in reverse order gives bitwise identical
//    results;
//  - canaries past the end of every output are intact;
//  - for a subset, NaNs injected into x / grad_output propagate to exactly
//    the outputs the reference makes NaN (through every activation).
// On AArch64 the test also checks that the dispatched family is NEON and,
// via depthwise_neon_path(), that every vectorised NEON path (each row-ring
// kernel K x stride with each step shape, the general NCHW paths for both
// strides, NHWC) and the scalar fallback were exercised.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cpu/cpu_kernels.h"
#include "tester.h"
#if defined(__aarch64__)
#include "cpu/neon/neon_kernels.h"
#endif

using namespace mnx;
using mnx_test::Buffer;

namespace {

std::mt19937 rng(1234);
std::set<std::string> paths_seen;

// Calls fn(b, e) over [0, units) split at random points.
template <typename F>
void split_run(int64_t units, F fn) {
  int64_t b = 0;
  while (b < units) {
    const int64_t e = std::min<int64_t>(units, b + 1 + rng() % 5);
    fn(b, e);
    b = e;
  }
}

// Runs fn over [0, units) three ways (one call, random sub-ranges, single
// units in reverse order) into three fresh buffers of n floats; returns the
// first and checks the others are bitwise identical to it.
template <typename F>
bool run_splits(int64_t units, int64_t n, F fn, Buffer* out, const std::string& what) {
  Buffer a(n, -7.f), b(n, -7.f), c(n, -7.f);
  if (units > 0) fn(a.ptr(), 0, units);
  split_run(units, [&](int64_t b0, int64_t b1) { fn(b.ptr(), b0, b1); });
  for (int64_t u = units - 1; u >= 0; --u) fn(c.ptr(), u, u + 1);
  bool ok = mnx_test::bitwise_equal(a, b, (what + " (random split)").c_str());
  ok &= mnx_test::bitwise_equal(a, c, (what + " (unit by unit)").c_str());
  *out = a;
  return ok;
}

std::vector<double> to_double(const Buffer& b, bool absolute) {
  std::vector<double> d(b.n);
  for (int64_t i = 0; i < b.n; ++i) d[i] = absolute ? std::fabs(b.data[i]) : b.data[i];
  return d;
}

void record_paths(const DepthwiseShape& s) {
#if defined(__aarch64__)
  for (int op = 0; op < 3; ++op) {
    std::string p = cpu::depthwise_neon_path(s, op);
    if (p.rfind("nchw_rows", 0) == 0)  // step shape: 8x1, 4x2 or 2x4 vectors
      p += "/nvec" + std::to_string(std::min<int64_t>((s.OW + 3) / 4, 3));
    paths_seen.insert(p);
    if (s.SH != s.SW) paths_seen.insert(p + "/sh!=sw");
  }
#else
  (void)s;
#endif
}

bool run_case(const DepthwiseShape& s, Activation act, bool bias, bool nan = false) {
  const auto& k = cpu::depthwise_kernels_f32();
  const int64_t Co = s.C_out(), KK = s.KH * s.KW;
  Buffer x(s.N * s.C * s.H * s.W), w(Co * KK), b(Co);
  mnx_test::fill_random(x, rng());
  mnx_test::fill_random(w, rng());
  mnx_test::fill_random(b, rng());
  for (int64_t i = 0; i < x.n; ++i) x.data[i] *= 4.f;  // reach the activation kinks
  const int64_t ny = s.N * Co * s.OH * s.OW;
  Buffer gy(ny);
  mnx_test::fill_random(gy, rng());
  if (nan) {
    const float q = std::numeric_limits<float>::quiet_NaN();
    x.data[rng() % x.n] = q;
    gy.data[rng() % gy.n] = q;
    if (x.n > 8) x.data[x.n - 1] = q;
  }
  record_paths(s);
  const float* bp = bias ? b.ptr() : nullptr;
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "%s N%lld C%lld %lldx%lld k%lldx%lld s%lld,%lld p%lld,%lld d%lld,%lld m%lld act%d bias%d%s",
                s.layout == Layout::NCHW ? "NCHW" : "NHWC", (long long)s.N, (long long)s.C,
                (long long)s.H, (long long)s.W, (long long)s.KH, (long long)s.KW, (long long)s.SH,
                (long long)s.SW, (long long)s.PH, (long long)s.PW, (long long)s.DH, (long long)s.DW,
                (long long)s.mult, (int)act, (int)bias, nan ? " NaN" : "");
  const std::string name = buf;
  const auto xd = to_double(x, false), xa = to_double(x, true);
  const auto wd = to_double(w, false), wa = to_double(w, true);
  const auto bd = to_double(b, false), ba = to_double(b, true);
  const auto gd = to_double(gy, false), ga = to_double(gy, true);
  bool ok = true;

  // forward
  Buffer y(0);
  ok &= run_splits(depthwise_forward_units(s), ny, [&](float* o, int64_t b0, int64_t b1) {
    k.forward(s, x.ptr(), w.ptr(), bp, o, act, b0, b1);
  }, &y, "forward " + name);
  std::vector<double> ref(ny), absref(ny);
  cpu::depthwise_forward_scalar<double>(s, xd.data(), wd.data(), bias ? bd.data() : nullptr,
                                        ref.data(), act, 0, depthwise_forward_units(s));
  cpu::depthwise_forward_scalar<double>(s, xa.data(), wa.data(), bias ? ba.data() : nullptr,
                                        absref.data(), Activation::None, 0,
                                        depthwise_forward_units(s));
  ok &= mnx_test::close_to_ref(y, ref, absref, KK + 1, ("forward " + name).c_str());

  // grad_input
  Buffer gx(0);
  ok &= run_splits(depthwise_grad_input_units(s), x.n, [&](float* o, int64_t b0, int64_t b1) {
    k.grad_input(s, gy.ptr(), w.ptr(), o, b0, b1);
  }, &gx, "grad_input " + name);
  ref.assign(x.n, 0.0);
  absref.assign(x.n, 0.0);
  cpu::depthwise_grad_input_scalar<double>(s, gd.data(), wd.data(), ref.data(), 0,
                                           depthwise_grad_input_units(s));
  cpu::depthwise_grad_input_scalar<double>(s, ga.data(), wa.data(), absref.data(), 0,
                                           depthwise_grad_input_units(s));
  ok &= mnx_test::close_to_ref(gx, ref, absref, KK * s.mult, ("grad_input " + name).c_str());

  // grad_weight
  Buffer gw(0);
  ok &= run_splits(depthwise_grad_weight_units(s), w.n, [&](float* o, int64_t b0, int64_t b1) {
    k.grad_weight(s, gy.ptr(), x.ptr(), o, b0, b1);
  }, &gw, "grad_weight " + name);
  ref.assign(w.n, 0.0);
  absref.assign(w.n, 0.0);
  cpu::depthwise_grad_weight_scalar<double>(s, gd.data(), xd.data(), ref.data(), 0,
                                            depthwise_grad_weight_units(s));
  cpu::depthwise_grad_weight_scalar<double>(s, ga.data(), xa.data(), absref.data(), 0,
                                            depthwise_grad_weight_units(s));
  const double gw_terms = double(s.N * s.OH * s.OW);
  ok &= mnx_test::close_to_ref(gw, ref, absref, gw_terms, ("grad_weight " + name).c_str());

  if (k.grad_weight_nhwc_partial && s.layout == Layout::NHWC && s.mult == 1) {
    // the one-pass partial-sum path, reduced in chunk order as the glue does
    const int64_t chunks = depthwise_grad_weight_row_chunks(s);
    Buffer partial(0);
    ok &= run_splits(chunks, chunks * KK * s.C, [&](float* o, int64_t b0, int64_t b1) {
      k.grad_weight_nhwc_partial(s, gy.ptr(), x.ptr(), o, b0, b1);
    }, &partial, "grad_weight partial " + name);
    Buffer gw2(w.n);
    for (int64_t i = 0; i < KK * s.C; ++i) {
      float acc = 0.f;
      for (int64_t u = 0; u < chunks; ++u) acc += partial.data[u * KK * s.C + i];
      gw2.data[(i % s.C) * KK + i / s.C] = acc;
    }
    ok &= mnx_test::close_to_ref(gw2, ref, absref, gw_terms + chunks,
                                 ("grad_weight partial " + name).c_str());
  }
  return ok;
}

DepthwiseShape make_shape(Layout layout, int64_t N, int64_t C, int64_t mult, int64_t H,
                          int64_t W, int64_t KH, int64_t KW, int64_t SH, int64_t SW,
                          int64_t PH, int64_t PW, int64_t DH, int64_t DW) {
  DepthwiseShape s;
  s.layout = layout;
  s.N = N; s.C = C; s.mult = mult; s.H = H; s.W = W;
  s.KH = KH; s.KW = KW; s.SH = SH; s.SW = SW;
  s.PH = PH; s.PW = PW; s.DH = DH; s.DW = DW;
  s.OH = conv_out_size(H, KH, SH, PH, DH);
  s.OW = conv_out_size(W, KW, SW, PW, DW);
  return s;
}

}  // namespace

int main() {
  mnx_test::Counter t;
  const auto& k = cpu::depthwise_kernels_f32();
  std::printf("isa: %s\n", cpu::selected_isa());
#if defined(__aarch64__)
  // the kernels under test must be the NEON ones, not scalar vs scalar
  t.check(std::string(k.isa) == "neon" && k.forward == cpu::depthwise_forward_neon_f32 &&
          k.grad_input == cpu::depthwise_grad_input_neon_f32 &&
          k.grad_weight == cpu::depthwise_grad_weight_neon_f32 &&
          k.grad_weight_nhwc_partial == cpu::depthwise_grad_weight_nhwc_partial_neon);
#else
  (void)k;
#endif

  // 1. Broad grid: all kernel shapes, strides 1..3, dilations, odd sizes.
  {
    const int64_t sizes[][2] = {{1, 1}, {7, 7}, {8, 9}, {16, 17}, {23, 30}, {3, 40}, {12, 5}};
    // {3, 9}: kernel width > 7 within 49 taps (the generic vector grad_weight)
    const int64_t kernels[][2] = {{1, 1}, {3, 3}, {5, 5}, {7, 7}, {3, 5}, {2, 4}, {9, 9}, {3, 9}};
    const int64_t channels[] = {1, 3, 8, 17, 40};
    int i = 0;
    for (int layout = 0; layout < 2; ++layout)
      for (auto& kk : kernels)
        for (int64_t stride : {1, 2, 3})
          for (int64_t dil : {1, 2})
            for (auto& hw : sizes) {
              const int64_t SH = (i % 3 == 2) ? 1 : stride;  // some cases with SH != SW
              const int64_t DW = (i % 4 == 3) ? 1 : dil;
              const int64_t PH = (i % 3) * kk[0] / 2, PW = (i % 2) ? kk[1] / 2 : kk[1] - 1;
              const DepthwiseShape s = make_shape(
                  layout ? Layout::NHWC : Layout::NCHW, 1 + i % 2, channels[i % 5],
                  (i % 6 == 5) ? 2 : 1, hw[0], hw[1], kk[0], kk[1], SH, stride, PH, PW,
                  dil, DW);
              ++i;
              if (s.OH < 1 || s.OW < 1) continue;
              t.check(run_case(s, static_cast<Activation>(i % 4), i % 3 != 0));
            }
  }

  // 2. The specialised K x K paths: K in 3/5/7, stride 1/2, every padding
  //    0..K-1 (PH and PW independently cycled), widths giving 1..~40 output
  //    columns (vector bodies, 1..3-column tails, each step shape), small and
  //    odd heights, channel counts with 16/4-channel bodies and tails,
  //    multipliers 1..3, dilation 2 for some, every activation.
  {
    const int64_t widths[] = {1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 13, 16, 17, 19, 24, 33, 40};
    const int64_t heights[] = {1, 2, 3, 5, 8, 11};
    const int64_t channels[] = {1, 3, 4, 5, 8, 9, 16, 17, 20, 33};
    int i = 0;
    for (int layout = 0; layout < 2; ++layout)
      for (int64_t K : {3, 5, 7})
        for (int64_t S : {1, 2})
          for (int64_t W : widths)
            for (int64_t P = 0; P < K; ++P) {
              ++i;
              const int64_t dil = (i % 5 == 4) ? 2 : 1;
              const int64_t H = heights[i % 6] + (K - 1) / 2;
              const int64_t mult = (i % 7 == 3) ? 2 : (i % 11 == 6) ? 3 : 1;
              const DepthwiseShape s = make_shape(
                  layout ? Layout::NHWC : Layout::NCHW, 1 + i % 2, channels[i % 10], mult,
                  H, W, K, K, S, S, (P + i) % K, P, dil, dil);
              if (s.OH < 1 || s.OW < 1) continue;
              const Activation act = static_cast<Activation>(i % 4);
              t.check(run_case(s, act, i % 3 != 1));
              if (i % 4 == 1) t.check(run_case(s, act, true, /*nan=*/true));
            }
  }

  // 3. Large MobileNet-like planes: long vector runs, both strides.
  for (int layout = 0; layout < 2; ++layout)
    for (int64_t K : {3, 5, 7})
      for (int64_t S : {1, 2})
        for (int64_t W : {29, 70}) {
          const DepthwiseShape s = make_shape(layout ? Layout::NHWC : Layout::NCHW, 2, 24, 1,
                                              28, W, K, K, S, S, K / 2, K / 2, 1, 1);
          t.check(run_case(s, Activation::ReLU6, true));
          t.check(run_case(s, Activation::Hardswish, false, /*nan=*/true));
        }
  // Very wide rows (more than 64 vectors of 8 outputs). These 3x3 stride
  // 1/2 multiplier-1 shapes go to the AVX2 c8 kernels, so they no longer
  // reach the AVX2 per-tap grad_weight's on-the-fly border masks (past its
  // 64-vector table); no case in this file does.
  for (int64_t S : {1, 2})
    t.check(run_case(make_shape(Layout::NCHW, 1, 3, 1, 5, 1100, 3, 3, S, S, 1, 1, 1, 1),
                     Activation::None, true, /*nan=*/true));

  // 4. Padding >= K (whole output rows/columns of bias only) on the K x K
  //    paths, and rectangular / mixed-stride shapes next to them.
  {
    int i = 0;
    for (int layout = 0; layout < 2; ++layout)
      for (int64_t K : {3, 5, 7})
        for (int64_t S : {1, 2})
          for (int64_t W : {5, 9}) {
            ++i;
            const Layout L = layout ? Layout::NHWC : Layout::NCHW;
            t.check(run_case(make_shape(L, 1, 5, 1, 4, W, K, K, S, S, K, K + 1, 1, 1),
                             static_cast<Activation>(i % 4), true));
            t.check(run_case(make_shape(L, 2, 3, 1, 9, W + 4, K, K, S, 3 - S, K / 2, 1, 1, 1),
                             static_cast<Activation>((i + 1) % 4), i % 2 == 0));
          }
  }

#if defined(__aarch64__)
  // 5. Every NEON path was exercised.
  std::vector<std::string> want = {"nchw_fwd_s1", "nchw_fwd_s2", "nchw_gi_s1", "nchw_gi_s2",
                                   "nchw_gw_s1",  "nchw_gw_s2",  "nhwc_m1",    "nhwc_mult", "scalar",
                                   "nchw_small_fwd", "nchw_small_gi", "nchw_small_gw",
                                   "nchw_fwd_s1/sh!=sw", "nchw_fwd_s2/sh!=sw",
                                   "nchw_gi_s1/sh!=sw", "nchw_gi_s2/sh!=sw",
                                   "nchw_gw_s1/sh!=sw", "nchw_gw_s2/sh!=sw"};
  for (int K : {3, 5, 7})
    for (int S : {1, 2})
      for (int nv : {1, 2, 3})
        want.push_back("nchw_rows_k" + std::to_string(K) + "s" + std::to_string(S) +
                       "/nvec" + std::to_string(nv));
  for (const auto& p : want) {
    const bool seen = paths_seen.count(p) > 0;
    if (!seen) std::fprintf(stderr, "FAIL NEON path never exercised: %s\n", p.c_str());
    t.check(seen);
  }
  std::printf("NEON paths exercised: %zu\n", paths_seen.size());
#endif
  return t.finish("test_depthwise");
}
