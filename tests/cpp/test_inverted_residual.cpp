// The channels_last MobileNet block in bands (cpu/inverted_residual.h)
// against the same layer computed whole, op by op, with the selected kernels
// (expand GEMM over all pixels, depthwise over all rows, project GEMM with
// the residual): bitwise equal, with and without expand / project /
// residual (with weights packed as the op passes them; unpacked ones equal
// to rounding), strides 1 and 2, 3x3 to 7x7,
// channel counts that are not whole vectors, maps narrower than the kernel,
// batch > 1; and bitwise equal again when the rows are computed in ranges
// of 1, 2, 3 and 5 (the thread split). Canaries catch writes past the end.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cpu/cpu_kernels.h"
#include "cpu/inverted_residual.h"
#include "tester.h"

namespace {

using mnx::Activation;
using mnx::Layout;
using mnx::cpu::InvertedResidualShape;
using mnx::cpu::InvertedResidualWeights;
using mnx_test::Buffer;

struct Packed {
  float* p = nullptr;
  explicit Packed(int64_t n) {
    p = static_cast<float*>(std::aligned_alloc(64, ((n * 4 + 63) / 64) * 64 + 64));
  }
  ~Packed() { std::free(p); }
};

bool run_case(int64_t N, int64_t Cin, int64_t H, int64_t W, int64_t Cexp, int64_t K, int64_t S,
              int64_t Cout, bool residual, bool packed, uint32_t seed) {
  InvertedResidualShape s;
  s.N = N;
  s.Cin = Cin;
  s.H = H;
  s.W = W;
  s.expand = Cexp > 0;
  s.Cexp = s.expand ? Cexp : Cin;
  s.K = K;
  s.S = S;
  s.P = K / 2;
  s.OH = mnx::conv_out_size(H, K, S, s.P, 1);
  s.OW = mnx::conv_out_size(W, K, S, s.P, 1);
  s.project = Cout > 0;
  s.Cout = s.project ? Cout : s.Cexp;
  s.residual = residual;
  s.act_expand = Activation::ReLU6;
  s.act_dw = Activation::Hardswish;
  s.act_project = Activation::None;
  const auto& gk = mnx::cpu::gemm_kernels_f32();
  const int64_t panel = gk.nr > 0 ? gk.nr : 8;

  Buffer x(N * H * W * Cin), ew(s.Cexp * Cin), eb(s.Cexp), dw(s.Cexp * K * K), db(s.Cexp),
      pw(s.Cout * s.Cexp), pb(s.Cout);
  mnx_test::fill_random(x, seed);
  mnx_test::fill_random(ew, seed + 1);
  mnx_test::fill_random(eb, seed + 2);
  mnx_test::fill_random(dw, seed + 3);
  mnx_test::fill_random(db, seed + 4);
  mnx_test::fill_random(pw, seed + 5);
  mnx_test::fill_random(pb, seed + 6);
  Packed ep((s.Cexp + panel - 1) / panel * panel * Cin), pp((s.Cout + panel - 1) / panel * panel * s.Cexp);
  mnx::cpu::gemm_pack_panels(ew.ptr(), s.Cexp, Cin, Cin, panel, ep.p);
  mnx::cpu::gemm_pack_panels(pw.ptr(), s.Cout, s.Cexp, s.Cexp, panel, pp.p);

  // the layer op by op, whole (as the separate ops compute it)
  const int64_t P_in = N * H * W, P_out = N * s.OH * s.OW;
  Buffer e(s.expand ? P_in * s.Cexp : 0), d(P_out * s.Cexp), ref(P_out * s.Cout);
  auto gemm = [&](int64_t M, int64_t Ci, int64_t Co, const float* A, const float* w, const float* pk,
                  const float* b, Activation act, const float* res, float* C) {
    mnx::GemmArgs g = mnx::gemm_rows_times_weight_t(M, Ci, Co, act);
    const bool use_pk = packed && !mnx::gemm_small_m_applies(g);
    if (use_pk) g.b_panel = panel;
    gk.run(g, A, use_pk ? pk : w, C, b, res, 0, mnx::gemm_units(g));
  };
  if (s.expand) gemm(P_in, Cin, s.Cexp, x.ptr(), ew.ptr(), ep.p, eb.ptr(), s.act_expand, nullptr, e.ptr());
  mnx::DepthwiseShape ds;
  ds.N = N;
  ds.C = s.Cexp;
  ds.H = H;
  ds.W = W;
  ds.KH = ds.KW = K;
  ds.SH = ds.SW = S;
  ds.PH = ds.PW = s.P;
  ds.OH = s.OH;
  ds.OW = s.OW;
  ds.layout = Layout::NHWC;
  mnx::cpu::depthwise_kernels_f32().forward(ds, s.expand ? e.ptr() : x.ptr(), dw.ptr(), db.ptr(),
                                            s.project ? d.ptr() : ref.ptr(), s.act_dw, 0, N * s.OH);
  if (s.project)
    gemm(P_out, s.Cexp, s.Cout, d.ptr(), pw.ptr(), pp.p, pb.ptr(), s.act_project,
         residual ? x.ptr() : nullptr, ref.ptr());

  InvertedResidualWeights w;
  if (s.expand) {
    w.expand_w = ew.ptr();
    w.expand_packed = packed ? ep.p : nullptr;
    w.expand_panel = packed ? panel : 0;
    w.expand_b = eb.ptr();
  }
  w.dw_w = dw.ptr();
  w.dw_b = db.ptr();
  if (s.project) {
    w.project_w = pw.ptr();
    w.project_packed = packed ? pp.p : nullptr;
    w.project_panel = packed ? panel : 0;
    w.project_b = pb.ptr();
  }
  bool ok = true;
  for (int64_t chunk : {int64_t(0), int64_t(1), int64_t(2), int64_t(3), int64_t(5)}) {
    Buffer y(P_out * s.Cout, -7.f);
    const int64_t units = s.units();
    const int64_t step = chunk == 0 ? units : chunk;
    for (int64_t b = 0; b < units; b += step)
      ok = mnx::cpu::inverted_residual_nhwc_forward_f32(s, w, x.ptr(), y.ptr(), b,
                                                         b + step < units ? b + step : units) && ok;
    bool same = y.canaries_ok();
    if (packed) {
      for (int64_t i = 0; i < ref.n && same; ++i)
        same = std::memcmp(&y.data[i], &ref.data[i], sizeof(float)) == 0;
    } else {
      // unpacked weights: a band of at most kGemmSmallM rows runs the GEMM
      // as dot products (another summation order): equal to rounding
      same = same && mnx_test::close(y, ref, 1e-5, "unpacked weights");
    }
    if (!same) {
      std::fprintf(stderr,
                   "FAIL N=%lld Cin=%lld %lldx%lld Cexp=%lld K=%lld S=%lld Cout=%lld res=%d packed=%d "
                   "rows per call %lld: not bitwise the layer op by op\n",
                   (long long)N, (long long)Cin, (long long)H, (long long)W, (long long)Cexp, (long long)K,
                   (long long)S, (long long)Cout, residual, packed, (long long)step);
      ok = false;
    }
  }
  return ok;
}

}  // namespace

int main() {
  mnx_test::Counter t;
  struct C {
    int64_t N, Cin, H, W, Cexp, K, S, Cout;
    bool res;
  };
  const std::vector<C> cases = {
      {1, 24, 30, 30, 144, 3, 1, 24, true},   // v2-like, residual
      {1, 16, 40, 36, 96, 3, 2, 24, false},   // expand, stride 2
      {1, 32, 25, 25, 0, 3, 1, 16, false},    // no expand
      {2, 40, 14, 14, 240, 5, 1, 40, true},   // 5x5, batch 2
      {1, 96, 9, 9, 576, 5, 2, 0, false},     // no project
      {3, 7, 9, 11, 13, 3, 2, 5, false},      // odd channel counts
      {1, 8, 5, 3, 20, 7, 1, 8, true},        // 7x7 wider than the map
      {2, 12, 6, 6, 72, 3, 2, 20, false},     // a few output rows
      {1, 5, 1, 1, 6, 3, 1, 5, true},         // 1x1 map: dot-product GEMMs
      {1, 24, 120, 8, 160, 3, 1, 24, true},   // many bands
  };
  uint32_t seed = 11;
  for (const C& c : cases)
    for (bool packed : {true, false}) {
      seed += 17;
      t.check(run_case(c.N, c.Cin, c.H, c.W, c.Cexp, c.K, c.S, c.Cout, c.res, packed, seed));
    }
  return t.finish("test_inverted_residual");
}
