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
// Kernel choice (depthwise_path.h), for the AVX2 and NEON families:
//  - the routing function names the expected kernel for representative
//    MobileNet shapes per op and layout (3x3 s1/s2, 5x5, 7x7, multiplier 2,
//    dilation 2, small 7x7 planes, odd kernels, unsupported shapes);
//  - every kernel of the family (the AVX-512 ones when cpu_use_avx512()) is
//    run directly (the family's *_run with that path) on shapes it supports
//    and checked as above, so none is tested only through shapes that
//    happen to route to it;
//  - the grids above exercise every kernel the routing can choose on this
//    CPU, with its K x stride instantiations and step shapes.
// With MOBILENET_EXT_DEPTHWISE_PATH set, the grids run what it forces and
// the routing assertions are skipped.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <initializer_list>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cpu/cpu_kernels.h"
#include "tester.h"

using namespace mnx;
using mnx_test::Buffer;
using cpu::DepthwiseOp;
using cpu::DepthwisePath;

namespace {

std::mt19937 rng(1234);
std::set<std::string> paths_seen;

// The routing and the named kernels of the family under test.
using Family = cpu::DepthwiseFamilyF32;

// The selected float32 family, or null for the scalar one.
const Family* family() {
  const std::string isa = cpu::selected_isa();
#if defined(__x86_64__)
  if (isa == "avx2") return &cpu::depthwise_family_avx2();
#endif
#if defined(__aarch64__)
  if (isa == "neon") return &cpu::depthwise_family_neon();
#endif
  return nullptr;
}

const DepthwiseOp kOps[3] = {DepthwiseOp::forward, DepthwiseOp::grad_input,
                             DepthwiseOp::grad_weight};
const char* op_name(DepthwiseOp op) {
  return op == DepthwiseOp::forward ? "forward"
         : op == DepthwiseOp::grad_input ? "grad_input" : "grad_weight";
}

bool path_forced_by_env() {
  DepthwisePath p;
  return cpu::depthwise_path_forced(&p);
}

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

// Label of the path taken: kernel/op plus what selects its code inside
// (K x stride instantiation, step shape of the row rings, stride_w of the
// general NCHW kernels, multiplier of the NHWC ones).
std::string path_label(DepthwisePath p, DepthwiseOp op, const DepthwiseShape& s) {
  std::string l = std::string(cpu::depthwise_path_name(p)) + "/" + op_name(op);
  const std::string ks = "/k" + std::to_string(s.KH) + "s" + std::to_string(s.SH);
  const int64_t lanes = std::string(family()->entry.isa) == "neon" ? 4 : 8;
  switch (p) {
    case DepthwisePath::nchw_kxk_rows:  // step shapes by vectors per row: 1, 2, >= 3
      return l + ks + "/nvec" + std::to_string(std::min<int64_t>((s.OW + lanes - 1) / lanes, 3));
    case DepthwisePath::nchw_c8_kxk:
    case DepthwisePath::nhwc_kxk_avx2:
    case DepthwisePath::nhwc_kxk_avx512:
      return l + ks;
    case DepthwisePath::nchw_direct:
      return l + "/s" + std::to_string(s.SW);
    case DepthwisePath::nhwc_direct:
      return l + (s.mult == 1 ? "/m1" : "/mult");
    default:
      return l;
  }
}

void record_paths(const DepthwiseShape& s) {
  const Family* f = family();
  if (!f || path_forced_by_env()) return;
  for (DepthwiseOp op : kOps) {
    const DepthwisePath p = f->path(s, op, 0);
    const std::string l = path_label(p, op, s);
    paths_seen.insert(l);
    if (p == DepthwisePath::nchw_direct && s.SH != s.SW) paths_seen.insert(l + "/sh!=sw");
  }
}

// With `forced`, the ops kernel *forced of family() supports for s run that
// kernel directly (the family's *_run), the others are skipped; otherwise
// all ops run through the dispatched entry points.
bool run_case(const DepthwiseShape& s, Activation act, bool bias, bool nan = false,
              const DepthwisePath* forced = nullptr) {
  const auto& k = cpu::depthwise_kernels_f32();
  const Family* f = family();
  auto runs = [&](DepthwiseOp op) { return !forced || f->supported(*forced, s, op); };
  bool had_scratch = true;  // every forced call ran (none lacked scratch)
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
  if (!forced) record_paths(s);
  const float* bp = bias ? b.ptr() : nullptr;
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "%s N%lld C%lld %lldx%lld k%lldx%lld s%lld,%lld p%lld,%lld d%lld,%lld m%lld act%d bias%d%s",
                s.layout == Layout::NCHW ? "NCHW" : "NHWC", (long long)s.N, (long long)s.C,
                (long long)s.H, (long long)s.W, (long long)s.KH, (long long)s.KW, (long long)s.SH,
                (long long)s.SW, (long long)s.PH, (long long)s.PW, (long long)s.DH, (long long)s.DW,
                (long long)s.mult, (int)act, (int)bias, nan ? " NaN" : "");
  const std::string name =
      std::string(buf) + (forced ? std::string(" [") + cpu::depthwise_path_name(*forced) + "]" : "");
  const auto xd = to_double(x, false), xa = to_double(x, true);
  const auto wd = to_double(w, false), wa = to_double(w, true);
  const auto bd = to_double(b, false), ba = to_double(b, true);
  const auto gd = to_double(gy, false), ga = to_double(gy, true);
  bool ok = true;

  // forward
  if (runs(DepthwiseOp::forward)) {
    Buffer y(0);
    ok &= run_splits(depthwise_forward_units(s), ny, [&](float* o, int64_t b0, int64_t b1) {
      if (forced)
        had_scratch &= f->run_forward(*forced, s, x.ptr(), w.ptr(), bp, o, act, b0, b1);
      else
        k.forward(s, x.ptr(), w.ptr(), bp, o, act, b0, b1);
    }, &y, "forward " + name);
    std::vector<double> ref(ny), absref(ny);
    cpu::depthwise_forward_scalar<double>(s, xd.data(), wd.data(), bias ? bd.data() : nullptr,
                                          ref.data(), act, 0, depthwise_forward_units(s));
    cpu::depthwise_forward_scalar<double>(s, xa.data(), wa.data(), bias ? ba.data() : nullptr,
                                          absref.data(), Activation::None, 0,
                                          depthwise_forward_units(s));
    ok &= mnx_test::close_to_ref(y, ref, absref, KK + 1, ("forward " + name).c_str());
  }

  // grad_input
  if (runs(DepthwiseOp::grad_input)) {
    Buffer gx(0);
    ok &= run_splits(depthwise_grad_input_units(s), x.n, [&](float* o, int64_t b0, int64_t b1) {
      if (forced)
        had_scratch &= f->run_grad_input(*forced, s, gy.ptr(), w.ptr(), o, b0, b1);
      else
        k.grad_input(s, gy.ptr(), w.ptr(), o, b0, b1);
    }, &gx, "grad_input " + name);
    std::vector<double> ref(x.n, 0.0), absref(x.n, 0.0);
    cpu::depthwise_grad_input_scalar<double>(s, gd.data(), wd.data(), ref.data(), 0,
                                             depthwise_grad_input_units(s));
    cpu::depthwise_grad_input_scalar<double>(s, ga.data(), wa.data(), absref.data(), 0,
                                             depthwise_grad_input_units(s));
    ok &= mnx_test::close_to_ref(gx, ref, absref, KK * s.mult, ("grad_input " + name).c_str());
  }

  // grad_weight
  const double gw_terms = double(s.N * s.OH * s.OW);
  std::vector<double> ref(w.n, 0.0), absref(w.n, 0.0);
  cpu::depthwise_grad_weight_scalar<double>(s, gd.data(), xd.data(), ref.data(), 0,
                                            depthwise_grad_weight_units(s));
  cpu::depthwise_grad_weight_scalar<double>(s, ga.data(), xa.data(), absref.data(), 0,
                                            depthwise_grad_weight_units(s));
  if (runs(DepthwiseOp::grad_weight)) {
    Buffer gw(0);
    ok &= run_splits(depthwise_grad_weight_units(s), w.n, [&](float* o, int64_t b0, int64_t b1) {
      if (forced)
        had_scratch &= f->run_grad_weight(*forced, s, gy.ptr(), x.ptr(), o, b0, b1);
      else
        k.grad_weight(s, gy.ptr(), x.ptr(), o, b0, b1);
    }, &gw, "grad_weight " + name);
    ok &= mnx_test::close_to_ref(gw, ref, absref, gw_terms, ("grad_weight " + name).c_str());
  }
  if (!had_scratch) std::fprintf(stderr, "FAIL %s: a forced kernel had no scratch\n", name.c_str());
  ok &= had_scratch;

  if (!forced && k.grad_weight_nhwc_partial && s.layout == Layout::NHWC && s.mult == 1) {
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

const char* const kNames[] = {"scalar", "nchw_c8_kxk", "nchw_kxk_rows", "nchw_small_planes",
                              "nchw_direct", "nhwc_kxk_avx2", "nhwc_kxk_avx512", "nhwc_direct"};

// The routing names the expected kernel for representative MobileNet shapes
// (per op: forward, grad_input, grad_weight), on this family and CPU.
void check_routing(mnx_test::Counter& t) {
  const Family* f = family();
  const bool neon = std::string(f->entry.isa) == "neon";
  const bool use512 = cpu::cpu_use_avx512();
  const Layout NCHW = Layout::NCHW, NHWC = Layout::NHWC;
  // names, in the order forward, grad_input, grad_weight
  using P3 = std::vector<std::string>;
  const P3 c8 = {"nchw_c8_kxk", "nchw_c8_kxk", "nchw_c8_kxk"};
  const P3 rows_direct = {"nchw_kxk_rows", "nchw_direct", "nchw_direct"};
  const P3 rows_small = {"nchw_kxk_rows", "nchw_small_planes", "nchw_small_planes"};
  const P3 direct = {"nchw_direct", "nchw_direct", "nchw_direct"};
  const P3 small = {"nchw_small_planes", "nchw_small_planes", "nchw_small_planes"};
  const P3 scalar = {"scalar", "scalar", "scalar"};
  const P3 nhwc = {"nhwc_direct", "nhwc_direct", "nhwc_direct"};
  const P3 k512 = {"nhwc_kxk_avx512", "nhwc_kxk_avx512", "nhwc_direct"};
  const P3 k512_s2 = {"nhwc_kxk_avx512", "nhwc_kxk_avx2", "nhwc_direct"};
  const P3 kavx2 = {"nhwc_kxk_avx2", "nhwc_kxk_avx2", "nhwc_direct"};
  struct Case {
    const char* what;
    DepthwiseShape s;
    P3 avx512, avx2, neon;  // AVX2 family with / without cpu_use_avx512(); NEON
  };
  const Case cases[] = {
      {"NCHW 3x3 s1 112x112", make_shape(NCHW, 1, 32, 1, 112, 112, 3, 3, 1, 1, 1, 1, 1, 1),
       c8, c8, rows_direct},
      {"NCHW 3x3 s2 112x112", make_shape(NCHW, 1, 64, 1, 112, 112, 3, 3, 2, 2, 1, 1, 1, 1),
       c8, c8, rows_direct},
      {"NCHW 3x3 s1 14x14", make_shape(NCHW, 1, 512, 1, 14, 14, 3, 3, 1, 1, 1, 1, 1, 1),
       c8, c8, rows_direct},
      {"NCHW 3x3 s1 7x7 plane", make_shape(NCHW, 1, 1024, 1, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1),
       c8, c8, rows_small},
      {"NCHW 5x5 s1 7x7 plane", make_shape(NCHW, 1, 960, 1, 7, 7, 5, 5, 1, 1, 2, 2, 1, 1),
       c8, c8, rows_small},
      {"NCHW 5x5 s2 28x28", make_shape(NCHW, 1, 240, 1, 28, 28, 5, 5, 2, 2, 2, 2, 1, 1),
       c8, c8, rows_direct},
      {"NCHW 7x7 s1 56x56", make_shape(NCHW, 1, 96, 1, 56, 56, 7, 7, 1, 1, 3, 3, 1, 1),
       c8, c8, rows_direct},
      {"NCHW 3x3 s1 multiplier 2", make_shape(NCHW, 1, 32, 2, 112, 112, 3, 3, 1, 1, 1, 1, 1, 1),
       rows_direct, rows_direct, rows_direct},
      {"NCHW 3x3 s1 dilation 2", make_shape(NCHW, 1, 32, 1, 56, 56, 3, 3, 1, 1, 2, 2, 2, 2),
       direct, direct, direct},
      {"NCHW 3x3 s1 dilation 2 7x7 plane",
       make_shape(NCHW, 1, 64, 1, 7, 7, 3, 3, 1, 1, 2, 2, 2, 2), small, small, small},
      {"NCHW 3x3 s2 dilation 2 14x14", make_shape(NCHW, 1, 64, 1, 14, 14, 3, 3, 2, 2, 2, 2, 2, 2),
       small, small, small},
      {"NCHW 3x5 s1", make_shape(NCHW, 1, 16, 1, 20, 20, 3, 5, 1, 1, 1, 2, 1, 1),
       direct, direct, direct},
      {"NCHW 9x9 (81 taps)", make_shape(NCHW, 1, 16, 1, 20, 20, 9, 9, 1, 1, 4, 4, 1, 1),
       scalar, scalar, scalar},
      {"NCHW 3x3 s3 7x7 out", make_shape(NCHW, 1, 16, 1, 20, 20, 3, 3, 3, 3, 1, 1, 1, 1),
       small, small, small},
      {"NCHW 3x3 s3 40x40", make_shape(NCHW, 1, 16, 1, 40, 40, 3, 3, 3, 3, 1, 1, 1, 1),
       scalar, scalar, scalar},
      {"NCHW 3x3 stride (2, 1)", make_shape(NCHW, 1, 16, 1, 20, 20, 3, 3, 2, 1, 1, 1, 1, 1),
       direct, direct, direct},
      {"NCHW 3x3 s1 padding 3", make_shape(NCHW, 1, 16, 1, 20, 20, 3, 3, 1, 1, 3, 3, 1, 1),
       {"nchw_c8_kxk", "nchw_direct", "nchw_c8_kxk"},
       {"nchw_c8_kxk", "nchw_direct", "nchw_c8_kxk"}, rows_direct},
      {"NHWC 3x3 s1 112x112", make_shape(NHWC, 1, 32, 1, 112, 112, 3, 3, 1, 1, 1, 1, 1, 1),
       k512, kavx2, nhwc},
      {"NHWC 3x3 s2 112x112", make_shape(NHWC, 1, 64, 1, 112, 112, 3, 3, 2, 2, 1, 1, 1, 1),
       k512, kavx2, nhwc},
      {"NHWC 5x5 s2 C % 16 == 8", make_shape(NHWC, 1, 72, 1, 56, 56, 5, 5, 2, 2, 2, 2, 1, 1),
       k512_s2, kavx2, nhwc},
      {"NHWC 5x5 s1 7x7", make_shape(NHWC, 1, 960, 1, 7, 7, 5, 5, 1, 1, 2, 2, 1, 1),
       k512, kavx2, nhwc},
      {"NHWC 5x5 s2 28x28", make_shape(NHWC, 1, 240, 1, 28, 28, 5, 5, 2, 2, 2, 2, 1, 1),
       k512, kavx2, nhwc},
      {"NHWC 7x7 s1 56x56", make_shape(NHWC, 1, 96, 1, 56, 56, 7, 7, 1, 1, 3, 3, 1, 1),
       k512, kavx2, nhwc},
      {"NHWC 3x3 s1 C % 8 != 0", make_shape(NHWC, 1, 20, 1, 28, 28, 3, 3, 1, 1, 1, 1, 1, 1),
       k512, nhwc, nhwc},
      {"NHWC 3x3 s2 C % 8 != 0", make_shape(NHWC, 1, 20, 1, 28, 28, 3, 3, 2, 2, 1, 1, 1, 1),
       {"nhwc_kxk_avx512", "nhwc_direct", "nhwc_direct"}, nhwc, nhwc},
      {"NHWC 3x3 s1 padding 3", make_shape(NHWC, 1, 32, 1, 20, 20, 3, 3, 1, 1, 3, 3, 1, 1),
       {"nhwc_kxk_avx512", "nhwc_direct", "nhwc_direct"},
       {"nhwc_kxk_avx2", "nhwc_direct", "nhwc_direct"}, nhwc},
      {"NHWC 3x3 s1 multiplier 2", make_shape(NHWC, 1, 32, 2, 56, 56, 3, 3, 1, 1, 1, 1, 1, 1),
       scalar, scalar, nhwc},
      {"NHWC 3x3 s1 dilation 2", make_shape(NHWC, 1, 32, 1, 56, 56, 3, 3, 1, 1, 2, 2, 2, 2),
       nhwc, nhwc, nhwc},
      {"NHWC 3x5 s1", make_shape(NHWC, 1, 32, 1, 20, 20, 3, 5, 1, 1, 1, 2, 1, 1),
       nhwc, nhwc, nhwc},
  };
  for (const Case& c : cases) {
    // AMD: nhwc_kxk_avx2 first where it runs, but for 5x5 / 7x7 stride 1
    // with C % 16 == 0
    P3 want = neon ? c.neon : use512 ? c.avx512 : c.avx2;
    const bool avx2_first = cpu::cpu_prefer_avx2_nhwc_depthwise() &&
                            (c.s.SH != 1 || c.s.KH == 3 || c.s.C % 16 != 0);
    t.check(neon || cpu::cpu_nhwc_kxk_avx2_first(c.s) == avx2_first);
    if (!neon && use512 && avx2_first)
      for (int i = 0; i < 3; ++i)
        if (c.avx2[i] == "nhwc_kxk_avx2") want[i] = "nhwc_kxk_avx2";
    for (int i = 0; i < 3; ++i) {
      const std::string got = cpu::depthwise_path_name(f->path(c.s, kOps[i], 0));
      const bool ok = got == want[i];
      if (!ok)
        std::fprintf(stderr, "FAIL routing %s %s: %s, expected %s\n", c.what, op_name(kOps[i]),
                     got.c_str(), want[i].c_str());
      t.check(ok);
      // dispatch.cpp answers the same for the selected family
      t.check(cpu::depthwise_path_f32(c.s, kOps[i]) == f->path(c.s, kOps[i], 0));
    }
  }
  // A kernel that failed (no scratch) is skipped: the next choice runs.
  auto expect = [&](const char* what, const DepthwiseShape& s, DepthwiseOp op,
                    std::initializer_list<DepthwisePath> failed, const char* want) {
    uint32_t skip = 0;
    for (DepthwisePath p : failed) skip |= cpu::depthwise_path_bit(p);
    const std::string got = cpu::depthwise_path_name(f->path(s, op, skip));
    if (got != want)
      std::fprintf(stderr, "FAIL fallback %s %s: %s, expected %s\n", what, op_name(op),
                   got.c_str(), want);
    t.check(got == want);
  };
  using P = DepthwisePath;
  const DepthwiseShape& a = cases[0].s;       // NCHW 3x3 s1 112x112
  const DepthwiseShape& plane7 = cases[3].s;  // NCHW 3x3 s1 7x7 plane
  const DepthwiseShape& n3 = cases[17].s;     // NHWC 3x3 s1 112x112
  const DepthwiseOp fwd = DepthwiseOp::forward, gw = DepthwiseOp::grad_weight;
  if (neon) {
    expect("no rows", a, fwd, {P::nchw_kxk_rows}, "nchw_direct");
    expect("no rows", plane7, fwd, {P::nchw_kxk_rows}, "nchw_small_planes");
    expect("no rows, direct", a, fwd, {P::nchw_kxk_rows, P::nchw_direct}, "scalar");
    expect("no nhwc", n3, fwd, {P::nhwc_direct}, "scalar");
  } else {
    expect("no c8", a, fwd, {P::nchw_c8_kxk}, "nchw_kxk_rows");
    expect("no c8, rows", a, fwd, {P::nchw_c8_kxk, P::nchw_kxk_rows}, "nchw_direct");
    expect("no c8", a, gw, {P::nchw_c8_kxk}, "nchw_direct");
    // stride-1 small planes: the row ring before the small-plane kernel
    expect("no c8 (7x7)", plane7, fwd, {P::nchw_c8_kxk}, "nchw_kxk_rows");
    expect("no c8, rows (7x7)", plane7, fwd, {P::nchw_c8_kxk, P::nchw_kxk_rows},
           "nchw_small_planes");
    expect("no c8 (7x7)", plane7, gw, {P::nchw_c8_kxk}, "nchw_small_planes");
    // strided small planes: the small-plane kernel before the row ring
    expect("no c8 (s2 to 7x7)", make_shape(Layout::NCHW, 1, 8, 1, 14, 14, 3, 3, 2, 2, 1, 1, 1, 1),
           fwd, {P::nchw_c8_kxk}, "nchw_small_planes");
    expect("no avx512", n3, fwd, {P::nhwc_kxk_avx512}, "nhwc_kxk_avx2");
    expect("no avx512, kxk", n3, fwd, {P::nhwc_kxk_avx512, P::nhwc_kxk_avx2}, "nhwc_direct");
    expect("none", n3, fwd, {P::nhwc_kxk_avx512, P::nhwc_kxk_avx2, P::nhwc_direct}, "scalar");
  }
}

// Every kernel of the family, run directly on shapes it supports (up to
// kPerPath per op), against the reference; each kernel/op the family has
// must have run on at least two shapes, and none may claim an op it lacks.
void check_forced_paths(mnx_test::Counter& t) {
  const Family* f = family();
  const bool neon = std::string(f->entry.isa) == "neon";
  const bool use512 = cpu::cpu_use_avx512();
  std::vector<DepthwiseShape> pool;
  for (int layout = 0; layout < 2; ++layout) {
    const Layout L = layout ? Layout::NHWC : Layout::NCHW;
    for (int64_t K : {3, 5, 7})
      for (int64_t S : {1, 2}) {
        pool.push_back(make_shape(L, 2, 16, 1, 19, 19, K, K, S, S, K / 2, K / 2, 1, 1));
        pool.push_back(make_shape(L, 1, 20, 1, 13, 35, K, K, S, S, K - 1, 0, 1, 1));
      }
    pool.push_back(make_shape(L, 1, 9, 2, 17, 23, 3, 3, 1, 1, 1, 1, 1, 1));    // multiplier 2
    pool.push_back(make_shape(L, 1, 5, 3, 11, 30, 5, 5, 2, 2, 2, 2, 1, 1));    // multiplier 3
    pool.push_back(make_shape(L, 1, 12, 1, 21, 27, 3, 3, 1, 1, 2, 2, 2, 2));   // dilation 2
    pool.push_back(make_shape(L, 2, 12, 1, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1));     // 7x7 planes
    pool.push_back(make_shape(L, 1, 19, 1, 14, 14, 5, 5, 2, 2, 2, 2, 1, 1));   // to 7x7
    pool.push_back(make_shape(L, 1, 10, 1, 9, 11, 3, 3, 2, 2, 2, 2, 2, 2));    // small, d2
    pool.push_back(make_shape(L, 1, 16, 1, 20, 24, 3, 5, 1, 1, 1, 2, 1, 1));   // 3x5
    pool.push_back(make_shape(L, 1, 16, 1, 20, 22, 3, 5, 2, 2, 1, 2, 1, 1));   // 3x5 s2
    pool.push_back(make_shape(L, 1, 8, 1, 12, 14, 9, 9, 1, 1, 4, 4, 1, 1));    // 81 taps
    pool.push_back(make_shape(L, 1, 8, 1, 20, 20, 3, 3, 3, 3, 1, 1, 1, 1));    // stride 3
    pool.push_back(make_shape(L, 1, 8, 1, 20, 50, 3, 3, 3, 3, 1, 1, 1, 1));    // stride 3, wide
    pool.push_back(make_shape(L, 1, 8, 1, 20, 40, 3, 3, 2, 1, 1, 1, 1, 1));    // stride (2, 1)
    pool.push_back(make_shape(L, 1, 16, 1, 12, 40, 3, 3, 1, 1, 3, 3, 1, 1));   // padding K
  }
  constexpr int kPerPath = 6;
  for (int pi = 0; pi < cpu::kDepthwisePathCount; ++pi) {
    const DepthwisePath p = static_cast<DepthwisePath>(pi);
    t.check(std::string(cpu::depthwise_path_name(p)) == kNames[pi]);
    int ran[3] = {0, 0, 0};
    int i = 0;
    for (const DepthwiseShape& s : pool) {
      bool use = false;
      for (int op = 0; op < 3; ++op)
        if (f->supported(p, s, kOps[op]) && ran[op] < kPerPath) use = true;
      if (!use) continue;
      for (int op = 0; op < 3; ++op) ran[op] += f->supported(p, s, kOps[op]);
      ++i;
      t.check(run_case(s, static_cast<Activation>(i % 4), i % 2 == 0, i % 3 == 0, &p));
    }
    // which ops each kernel has in this family (on this CPU)
    bool has[3] = {true, true, true};
    switch (p) {
      case DepthwisePath::nchw_c8_kxk:
        has[0] = has[1] = has[2] = !neon;
        break;
      case DepthwisePath::nchw_kxk_rows:
        has[1] = has[2] = false;
        break;
      case DepthwisePath::nhwc_kxk_avx2:
        has[0] = has[1] = !neon;
        has[2] = false;
        break;
      case DepthwisePath::nhwc_kxk_avx512:
        has[0] = has[1] = !neon && use512;
        has[2] = false;
        break;
      default:
        break;
    }
    for (int op = 0; op < 3; ++op) {
      const bool ok = has[op] ? ran[op] >= 2 : ran[op] == 0;
      if (!ok)
        std::fprintf(stderr, "FAIL forced %s %s ran on %d shapes\n", kNames[pi],
                     op_name(kOps[op]), ran[op]);
      t.check(ok);
    }
    std::printf("forced %-18s forward %d, grad_input %d, grad_weight %d shapes\n", kNames[pi],
                ran[0], ran[1], ran[2]);
  }
}

}  // namespace

int main() {
  mnx_test::Counter t;
  const auto& k = cpu::depthwise_kernels_f32();
  std::printf("isa: %s\n", cpu::selected_isa());
#if defined(__aarch64__)
  // the kernels under test must be the NEON ones, not scalar vs scalar
  const cpu::DepthwiseKernels<float>& neon = cpu::depthwise_family_neon().entry;
  t.check(std::string(k.isa) == "neon" && k.forward == neon.forward &&
          k.grad_input == neon.grad_input && k.grad_weight == neon.grad_weight &&
          k.grad_weight_nhwc_partial && k.grad_weight_nhwc_partial == neon.grad_weight_nhwc_partial);
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
  // channels_last outputs of 4 MiB and more: non-temporal stores in the
  // forward (and the stride-1 grad_input through it) and the stride-2
  // grad_input, C % 16 == 0 (the AVX-512 instances where they run) and 8.
  for (int64_t K : {3, 5, 7})
    for (int64_t S : {1, 2})
      for (int64_t C : {32, 40})
        t.check(run_case(make_shape(Layout::NHWC, 2, C, 1, 128, 130, K, K, S, S, K / 2, K / 2, 1, 1),
                         static_cast<Activation>((K + S) % 4), K == 5));
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

  // Unequal strides with stride_w 1 on planes too wide for the small-plane
  // kernels (the general kernels' stride_h > 1 with stride_w 1).
  for (int layout = 0; layout < 2; ++layout)
    for (int64_t K : {3, 5, 7})
      t.check(run_case(make_shape(layout ? Layout::NHWC : Layout::NCHW, 1, 5, 1, 9, 40, K, K,
                                  2, 1, K / 2, K / 2, 1, 1),
                       static_cast<Activation>(K % 4), true));

  // 5. Kernel choice: the routing for representative shapes, every kernel
  //    run directly, and every kernel the routing can choose here reached
  //    by the grids above.
  const Family* f = family();
  if (f) {
    check_forced_paths(t);
    if (path_forced_by_env()) {
      std::printf("MOBILENET_EXT_DEPTHWISE_PATH is set: routing checks skipped\n");
    } else {
      check_routing(t);
      const bool neon = std::string(f->entry.isa) == "neon";
      const bool use512 = cpu::cpu_use_avx512();
      const char* const ops[3] = {"forward", "grad_input", "grad_weight"};
      std::vector<std::string> want;
      auto ks = [](int K, int S) { return "/k" + std::to_string(K) + "s" + std::to_string(S); };
      for (const char* op : ops) {
        const std::string o = op;
        want.push_back("scalar/" + o);
        want.push_back("nchw_small_planes/" + o);
        want.push_back("nhwc_direct/" + o + "/m1");
        if (neon) want.push_back("nhwc_direct/" + o + "/mult");
        for (int S : {1, 2}) {
          if (neon || o != "grad_input" || S == 2) {  // AVX2 grad_input: stride 1 or stride_w 2
            want.push_back("nchw_direct/" + o + "/s" + std::to_string(S) + "/sh!=sw");
          }
          want.push_back("nchw_direct/" + o + "/s" + std::to_string(S));
        }
        for (int K : {3, 5, 7})
          for (int S : {1, 2}) {
            if (!neon) want.push_back("nchw_c8_kxk/" + o + ks(K, S));
            if (o == "forward")
              for (int nv : {1, 2, 3})
                want.push_back("nchw_kxk_rows/forward" + ks(K, S) + "/nvec" + std::to_string(nv));
            if (neon || o == "grad_weight") continue;
            // (on AMD only the 5x5 / 7x7 stride-1 shapes with C % 16 == 0)
            const bool k512 = use512 && !(cpu::cpu_prefer_avx2_nhwc_depthwise() && (S == 2 || K == 3));
            // (stride-2 grad_input: AVX-512 where C % 16 == 0, else AVX2)
            if (k512) want.push_back("nhwc_kxk_avx512/" + o + ks(K, S));
            if (!k512 || (o == "grad_input" && S == 2))
              want.push_back("nhwc_kxk_avx2/" + o + ks(K, S));
          }
      }
      for (const auto& p : want) {
        const bool seen = paths_seen.count(p) > 0;
        if (!seen) std::fprintf(stderr, "FAIL %s path never exercised: %s\n", f->entry.isa, p.c_str());
        t.check(seen);
      }
      std::printf("%s paths exercised: %zu (%zu required)\n", f->entry.isa, paths_seen.size(),
                  want.size());
    }
  }
  return t.finish("test_depthwise");
}
