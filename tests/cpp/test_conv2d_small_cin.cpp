// Small-Cin dense convolution kernels (cpu/conv2d_small_cin.h): the selected
// float32 family (AVX2 or NEON instantiation of generic/conv2d_small_cin.h)
// and the scalar reference (float and double) against a float64 convolution
// computed here with an elementwise rounding bound, on NCHW and NHWC, every
// activation, with and without bias, odd sizes, channel counts that are not
// whole vectors (1 to 37 output channels), pixel-tile tails, strides 1-3,
// kernels 1x1 to 7x5, padding wider than the input; each kernel run once over
// all rows and once row by row (bitwise equal: the result does not depend on
// the thread split); NaN propagates. The weight gradient likewise: the
// family and the scalar reference (float and double) against float64 sums
// with a rounding bound, the weight and bias gradients, all rows at once and
// as two ranges added (the glue's chunks), bitwise equal without the bias
// output, NaN in grad_output propagating to its channel only.
#include <cmath>
#include <cstdio>
#include <random>
#include <utility>
#include <vector>

#include "cpu/conv2d_small_cin.h"
#include "cpu/cpu_kernels.h"
#include "tester.h"

namespace {

using mnx::Activation;
using mnx::Layout;
using mnx::SmallCinConvShape;
using mnx_test::Buffer;

int64_t xidx(const SmallCinConvShape& s, int64_t n, int64_t c, int64_t h, int64_t w) {
  return s.layout == Layout::NCHW ? ((n * s.Cin + c) * s.H + h) * s.W + w : ((n * s.H + h) * s.W + w) * s.Cin + c;
}
int64_t yidx(const SmallCinConvShape& s, int64_t n, int64_t c, int64_t h, int64_t w) {
  return s.out_layout == Layout::NCHW ? ((n * s.Cout + c) * s.OH + h) * s.OW + w
                                      : ((n * s.OH + h) * s.OW + w) * s.Cout + c;
}

// The weight [Cout][Cin][KH][KW] in the shape's w_layout
template <class Vec>
Vec weight_in_layout(const SmallCinConvShape& s, const Vec& w) {
  Vec out(w);
  for (int64_t co = 0; co < s.Cout; ++co)
    for (int64_t ci = 0; ci < s.Cin; ++ci)
      for (int64_t kh = 0; kh < s.KH; ++kh)
        for (int64_t kw = 0; kw < s.KW; ++kw)
          out[s.w_index(co, ci, kh, kw)] = w[((co * s.Cin + ci) * s.KH + kh) * s.KW + kw];
  return out;
}

// float64 reference: ref = act(sum + bias), absref = sum |terms| + |bias|
void reference(const SmallCinConvShape& s, const std::vector<double>& x, const std::vector<double>& w,
               const double* bias, Activation act, std::vector<double>& ref, std::vector<double>& absref) {
  ref.assign(s.N * s.Cout * s.OH * s.OW, 0);
  absref.assign(ref.size(), 0);
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t co = 0; co < s.Cout; ++co)
      for (int64_t oh = 0; oh < s.OH; ++oh)
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          double acc = bias ? bias[co] : 0, aacc = bias ? std::fabs(bias[co]) : 0;
          for (int64_t ci = 0; ci < s.Cin; ++ci)
            for (int64_t kh = 0; kh < s.KH; ++kh)
              for (int64_t kw = 0; kw < s.KW; ++kw) {
                const int64_t ih = oh * s.SH - s.PH + kh, iw = ow * s.SW - s.PW + kw;
                if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
                const double t = x[xidx(s, n, ci, ih, iw)] * w[((co * s.Cin + ci) * s.KH + kh) * s.KW + kw];
                acc += t;
                aacc += std::fabs(t);
              }
          const int64_t i = yidx(s, n, co, oh, ow);
          ref[i] = mnx::apply_activation<double>(acc, act);
          absref[i] = aacc;
        }
}

// Runs the float32 family `k` on shape s (all rows, then row by row) and
// compares with float64; returns true when both runs pass.
bool run_f32(const mnx::cpu::SmallCinConvKernels<float>& k, const SmallCinConvShape& s, Activation act,
             bool with_bias, bool nan, uint32_t seed, const char* name) {
  Buffer x(s.N * s.Cin * s.H * s.W), w(s.Cout * s.Cin * s.KH * s.KW), b(s.Cout);
  mnx_test::fill_random(x, seed);
  mnx_test::fill_random(w, seed + 1);
  mnx_test::fill_random(b, seed + 2);
  if (nan) x.data[x.n / 2] = NAN;
  std::vector<double> xd(x.data.begin(), x.data.begin() + x.n), wd(w.data.begin(), w.data.begin() + w.n);
  std::vector<double> bd(b.data.begin(), b.data.begin() + b.n);
  std::vector<double> ref, absref;
  reference(s, xd, wd, with_bias ? bd.data() : nullptr, act, ref, absref);
  const int64_t ny = s.N * s.Cout * s.OH * s.OW;
  Buffer y1(ny, -7.f), y2(ny, -7.f);
  Buffer wl(w.n);
  wl.data = weight_in_layout(s, w.data);
  bool ok = k.forward(s, x.ptr(), wl.ptr(), with_bias ? b.ptr() : nullptr, y1.ptr(), act, 0, s.units());
  for (int64_t u = 0; u < s.units(); ++u)
    ok = k.forward(s, x.ptr(), wl.ptr(), with_bias ? b.ptr() : nullptr, y2.ptr(), act, u, u + 1) && ok;
  char what[256];
  std::snprintf(what, sizeof what,
                "%s N%lld Cin%lld %lldx%lld Cout%lld k%lldx%lld s%lldx%lld p%lldx%lld %s->%s act%d%s%s%s", name,
                (long long)s.N, (long long)s.Cin, (long long)s.H, (long long)s.W, (long long)s.Cout,
                (long long)s.KH, (long long)s.KW, (long long)s.SH, (long long)s.SW, (long long)s.PH,
                (long long)s.PW, s.layout == Layout::NCHW ? "nchw" : "nhwc",
                s.out_layout == Layout::NCHW ? "nchw" : "nhwc", (int)act, with_bias ? "" : " nobias",
                s.w_layout == Layout::NHWC ? " w_nhwc" : "", nan ? " nan" : "");
  const double terms = static_cast<double>(s.Cin * s.KH * s.KW + 1);
  ok = mnx_test::close_to_ref(y1, ref, absref, terms, what) && ok;
  ok = mnx_test::bitwise_equal(y1, y2, what) && ok;
  return ok;
}

bool run_f64(const SmallCinConvShape& s, Activation act, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> d(-1, 1);
  std::vector<double> x(s.N * s.Cin * s.H * s.W), w(s.Cout * s.Cin * s.KH * s.KW), b(s.Cout);
  for (auto& v : x) v = d(g);
  for (auto& v : w) v = d(g);
  for (auto& v : b) v = d(g);
  std::vector<double> ref, absref;
  reference(s, x, w, b.data(), act, ref, absref);
  std::vector<double> y(ref.size() + 8, 777.0);
  const std::vector<double> wl = weight_in_layout(s, w);
  mnx::cpu::conv2d_small_cin_kernels_f64().forward(s, x.data(), wl.data(), b.data(), y.data(), act, 0, s.units());
  for (size_t i = 0; i < ref.size(); ++i)
    if (!(std::fabs(y[i] - ref[i]) <= 1e-13 * (1 + absref[i]))) {
      std::fprintf(stderr, "FAIL scalar f64 at %zu: %.17g vs %.17g\n", i, y[i], ref[i]);
      return false;
    }
  for (size_t i = ref.size(); i < y.size(); ++i)
    if (y[i] != 777.0) {
      std::fprintf(stderr, "FAIL scalar f64: canary overwritten\n");
      return false;
    }
  return true;
}

// float64 weight / bias gradient of shape s: gw[co][tap], gb[co], with
// sums of |terms| for the bound
void reference_gw(const SmallCinConvShape& s, const std::vector<double>& x, const std::vector<double>& gy,
                  std::vector<double>& gw, std::vector<double>& agw, std::vector<double>& gb,
                  std::vector<double>& agb) {
  const int64_t taps = s.Cin * s.KH * s.KW;
  gw.assign(s.Cout * taps, 0);
  agw.assign(gw.size(), 0);
  gb.assign(s.Cout, 0);
  agb.assign(s.Cout, 0);
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t co = 0; co < s.Cout; ++co)
      for (int64_t oh = 0; oh < s.OH; ++oh)
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          const double g = gy[yidx(s, n, co, oh, ow)];
          gb[co] += g;
          agb[co] += std::fabs(g);
          for (int64_t ci = 0; ci < s.Cin; ++ci)
            for (int64_t kh = 0; kh < s.KH; ++kh)
              for (int64_t kw = 0; kw < s.KW; ++kw) {
                // padding taps add g * 0: a NaN in grad_output reaches every
                // tap of its channel, as in the kernels (and F.conv2d's
                // backward)
                const int64_t ih = oh * s.SH - s.PH + kh, iw = ow * s.SW - s.PW + kw;
                const bool in = ih >= 0 && ih < s.H && iw >= 0 && iw < s.W;
                const double t = g * (in ? x[xidx(s, n, ci, ih, iw)] : 0.0);
                const int64_t i = co * taps + (ci * s.KH + kh) * s.KW + kw;
                gw[i] += t;
                agw[i] += std::fabs(t);
              }
        }
}

// The float32 weight gradient of family k on shape s (nan: one grad_output
// value NaN, which reaches the gradients of its channel only)
bool run_gw_f32(const mnx::cpu::SmallCinConvKernels<float>& k, const SmallCinConvShape& s, bool nan,
                uint32_t seed, const char* name) {
  const int64_t taps = s.Cin * s.KH * s.KW, ny = s.N * s.Cout * s.OH * s.OW, units = s.units();
  Buffer x(s.N * s.Cin * s.H * s.W), gy(ny);
  mnx_test::fill_random(x, seed);
  mnx_test::fill_random(gy, seed + 1);
  if (nan) gy.data[ny / 2] = NAN;
  std::vector<double> xd(x.data.begin(), x.data.begin() + x.n), gd(gy.data.begin(), gy.data.begin() + gy.n);
  std::vector<double> rgw, agw, rgb, agb;
  reference_gw(s, xd, gd, rgw, agw, rgb, agb);
  Buffer gw(s.Cout * taps, -7.f), gb(s.Cout, -7.f), gw2(s.Cout * taps, -7.f), gw_a(s.Cout * taps, -7.f),
      gw_b(s.Cout * taps, -7.f), gb_a(s.Cout, -7.f), gb_b(s.Cout, -7.f);
  bool ok = k.grad_weight(s, x.ptr(), gy.ptr(), gw.ptr(), gb.ptr(), 0, units);
  ok = k.grad_weight(s, x.ptr(), gy.ptr(), gw2.ptr(), nullptr, 0, units) && ok;
  ok = k.grad_weight(s, x.ptr(), gy.ptr(), gw_a.ptr(), gb_a.ptr(), 0, units / 2) && ok;
  ok = k.grad_weight(s, x.ptr(), gy.ptr(), gw_b.ptr(), gb_b.ptr(), units / 2, units) && ok;
  for (int64_t i = 0; i < gw_a.n; ++i) gw_a.data[i] += gw_b.data[i];
  for (int64_t i = 0; i < gb_a.n; ++i) gb_a.data[i] += gb_b.data[i];
  char what[256];
  std::snprintf(what, sizeof what, "%s grad_weight N%lld Cin%lld %lldx%lld Cout%lld k%lldx%lld s%lldx%lld p%lldx%lld %s%s",
                name, (long long)s.N, (long long)s.Cin, (long long)s.H, (long long)s.W, (long long)s.Cout,
                (long long)s.KH, (long long)s.KW, (long long)s.SH, (long long)s.SW, (long long)s.PH,
                (long long)s.PW, s.layout == Layout::NCHW ? "nchw" : "nhwc", nan ? " nan" : "");
  const double terms = static_cast<double>(s.N * s.OH * s.OW);
  ok = mnx_test::close_to_ref(gw, rgw, agw, terms, what) && ok;
  ok = mnx_test::close_to_ref(gb, rgb, agb, terms, what) && ok;
  ok = mnx_test::close_to_ref(gw_a, rgw, agw, terms, what) && ok;
  ok = mnx_test::close_to_ref(gb_a, rgb, agb, terms, what) && ok;
  ok = mnx_test::bitwise_equal(gw, gw2, what) && ok;
  return ok;
}

bool run_gw_f64(const SmallCinConvShape& s, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> d(-1, 1);
  const int64_t taps = s.Cin * s.KH * s.KW;
  std::vector<double> x(s.N * s.Cin * s.H * s.W), gy(s.N * s.Cout * s.OH * s.OW);
  for (auto& v : x) v = d(g);
  for (auto& v : gy) v = d(g);
  std::vector<double> rgw, agw, rgb, agb;
  reference_gw(s, x, gy, rgw, agw, rgb, agb);
  std::vector<double> gw(s.Cout * taps + 8, 777.0), gb(s.Cout + 8, 777.0);
  mnx::cpu::conv2d_small_cin_kernels_f64().grad_weight(s, x.data(), gy.data(), gw.data(), gb.data(), 0, s.units());
  for (size_t i = 0; i < gw.size(); ++i)
    if (i < rgw.size() ? !(std::fabs(gw[i] - rgw[i]) <= 1e-13 * (1 + agw[i])) : gw[i] != 777.0) {
      std::fprintf(stderr, "FAIL scalar f64 grad_weight at %zu: %.17g\n", i, gw[i]);
      return false;
    }
  for (size_t i = 0; i < gb.size(); ++i)
    if (i < rgb.size() ? !(std::fabs(gb[i] - rgb[i]) <= 1e-13 * (1 + agb[i])) : gb[i] != 777.0) {
      std::fprintf(stderr, "FAIL scalar f64 grad_bias at %zu: %.17g\n", i, gb[i]);
      return false;
    }
  return true;
}

SmallCinConvShape shape(int64_t N, int64_t Cin, int64_t H, int64_t W, int64_t Cout, int64_t KH, int64_t KW,
                        int64_t S, int64_t P, Layout l, Layout out) {
  SmallCinConvShape s;
  s.N = N;
  s.Cin = Cin;
  s.H = H;
  s.W = W;
  s.Cout = Cout;
  s.KH = KH;
  s.KW = KW;
  s.SH = s.SW = S;
  s.PH = s.PW = P;
  s.OH = mnx::conv_out_size(H, KH, S, P, 1);
  s.OW = mnx::conv_out_size(W, KW, S, P, 1);
  s.layout = l;
  s.out_layout = out;  // forward only: the gradient tests pass out = l
  return s;
}

}  // namespace

int main() {
  mnx_test::Counter t;
  const auto& fam = mnx::cpu::conv2d_small_cin_kernels_f32();
  const auto& ref32 = mnx::cpu::conv2d_small_cin_kernels_scalar_f32();
  std::printf("conv2d_small_cin float32 family: %s\n", fam.isa);
  struct Dims {
    int64_t N, Cin, H, W, Cout, KH, KW, S, P;
  };
  const std::vector<Dims> dims = {
      {2, 3, 32, 30, 32, 3, 3, 2, 1},  // the MobileNet V2 stem, small
      {1, 3, 23, 29, 16, 3, 3, 2, 1},  // the V3 stem, odd sizes
      {1, 3, 17, 19, 24, 3, 3, 1, 1},  // 3 vectors of 8: a 2-vector block and a 1-vector one
      {2, 1, 9, 11, 5, 5, 5, 1, 2},    // one input channel, a partial vector
      {1, 4, 10, 7, 37, 7, 5, 3, 3},   // 7x5, stride 3, 37 channels
      {3, 2, 6, 13, 1, 1, 1, 1, 0},    // 1x1, one output channel
      {1, 3, 3, 3, 9, 3, 3, 1, 4},     // padding wider than the input: rows wholly in the padding
      {1, 2, 2, 40, 8, 3, 3, 2, 1},    // one full vector, wide rows
      {1, 3, 5, 9, 64, 3, 3, 1, 0},    // many channel blocks
      {1, 3, 9, 38, 80, 3, 3, 2, 1},   // AVX-512: 4 vectors then 1; 19 = 12 + 4 + 2 + 1 pixels
  };
  uint32_t seed = 1;
  for (Layout l : {Layout::NCHW, Layout::NHWC})
    for (const Dims& d : dims) {
      const SmallCinConvShape s = shape(d.N, d.Cin, d.H, d.W, d.Cout, d.KH, d.KW, d.S, d.P, l, l);
      // the output in the other layout (forward: an NCHW input written
      // channels_last, the fused network's stem, and the converse)
      const Layout other = l == Layout::NCHW ? Layout::NHWC : Layout::NCHW;
      const SmallCinConvShape so = shape(d.N, d.Cin, d.H, d.W, d.Cout, d.KH, d.KW, d.S, d.P, l, other);
      for (Activation a : {Activation::None, Activation::Hardswish}) {
        seed += 3;
        t.check(run_f32(fam, so, a, true, false, seed, fam.isa));
        t.check(run_f32(ref32, so, a, true, false, seed, "scalar f32"));
        t.check(run_f64(so, a, seed));
      }
      // the weight channels_last, [Cout][KH][KW][Cin]
      SmallCinConvShape sw = s;
      sw.w_layout = Layout::NHWC;
      seed += 3;
      t.check(run_f32(fam, sw, Activation::ReLU6, true, false, seed, fam.isa));
      t.check(run_f32(ref32, sw, Activation::ReLU6, true, false, seed, "scalar f32"));
      t.check(run_f64(sw, Activation::ReLU6, seed));
      for (Activation a : {Activation::None, Activation::ReLU, Activation::ReLU6, Activation::Hardswish}) {
        seed += 3;
        t.check(run_f32(fam, s, a, true, false, seed, fam.isa));
        t.check(run_f32(ref32, s, a, a != Activation::ReLU, false, seed, "scalar f32"));
        t.check(run_f64(s, a, seed));
      }
      t.check(run_f32(fam, s, Activation::None, false, false, seed + 1, fam.isa));
      t.check(run_f32(fam, s, Activation::ReLU6, true, true, seed + 2, fam.isa));
      t.check(run_gw_f32(fam, s, false, seed + 3, fam.isa));
      t.check(run_gw_f32(ref32, s, false, seed + 3, "scalar f32"));
      t.check(run_gw_f32(ref32, s, true, seed + 4, "scalar f32"));
      t.check(run_gw_f32(fam, s, true, seed + 4, fam.isa));
      t.check(run_gw_f64(s, seed + 5));
    }
  // The stem at full size: a 4.8 MB output, past kStreamMinBytes (vec.h),
  // written with non-temporal stores (NHWC from the tiles, NCHW through the
  // staging row; the same values; whole and row by row, the fence at the
  // end of each call); and an NCHW input written channels_last
  const std::pair<Layout, Layout> inout[] = {
      {Layout::NHWC, Layout::NHWC}, {Layout::NCHW, Layout::NCHW}, {Layout::NCHW, Layout::NHWC}};
  for (const auto& lo : inout)
    for (Activation a : {Activation::ReLU6, Activation::Hardswish}) {
      const SmallCinConvShape s = shape(6, 3, 224, 224, 16, 3, 3, 2, 1, lo.first, lo.second);
      t.check(run_f32(fam, s, a, true, false, 99, fam.isa));
    }
  return t.finish("test_conv2d_small_cin");
}
