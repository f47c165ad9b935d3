// The channels_last MobileNet block in bands of output rows
// (inverted_residual.h). ISA-neutral: the steps are the selected GEMM and
// depthwise kernels.
#include "inverted_residual.h"

#include <cstring>

#include "cpu_kernels.h"
#include "generic/thread_scratch.h"

namespace mnx {
namespace cpu {

namespace {

int64_t imin_ir(int64_t a, int64_t b) { return a < b ? a : b; }
int64_t imax_ir(int64_t a, int64_t b) { return a > b ? a : b; }

// C[M, Co] = act(A[M, Ci] W^T + b) (+ residual, C's indexing), M rows of
// a layer of M_layer rows, on the selected float32 GEMM the way the packed
// pointwise op calls it on the whole layer (cpu_ops.cpp:
// run_pointwise_forward, NHWC): the packed weight read in place unless the
// layer's GEMM runs as dot products (at most kGemmSmallM rows). Decided on
// the layer's rows, not the band's: the dot products sum in another order,
// and a band of a few rows must give the layer's bits.
void pointwise_rows(int64_t M, int64_t M_layer, int64_t Ci, int64_t Co, const float* A,
                    const float* w, const float* packed, int64_t panel, const float* b,
                    Activation act, const float* residual, float* C) {
  GemmArgs g = gemm_rows_times_weight_t(M, Ci, Co, act);
  GemmArgs layer = g;
  layer.M = M_layer;
  const bool use_packed = packed && panel > 0 && !gemm_small_m_applies(layer);
  if (use_packed) g.b_panel = panel;
  const auto& k = gemm_kernels_f32();
  k.run(g, A, use_packed ? packed : w, C, b, residual, 0, gemm_units(g));
}

}  // namespace

int64_t inverted_residual_band_rows(const InvertedResidualShape& s) {
  const int64_t row_bytes = s.W * s.Cexp * static_cast<int64_t>(sizeof(float));
  const int64_t rows = row_bytes > 0 ? kInvertedResidualBandBytes / row_bytes : s.OH;
  // input rows of a band of b output rows: (b - 1) * S + K
  const int64_t b = rows >= s.K ? (rows - s.K) / s.S + 1 : 1;
  return imax_ir(1, imin_ir(b, s.OH));
}

bool inverted_residual_nhwc_forward_f32(const InvertedResidualShape& s,
                                        const InvertedResidualWeights& w, const float* x,
                                        float* y, int64_t begin, int64_t end) {
  const int64_t band = inverted_residual_band_rows(s);
  const int64_t rows_cap = (band - 1) * s.S + s.K;
  const int64_t erow = s.W * s.Cexp;  // floats per expanded row
  const int64_t drow = s.OW * s.Cexp;
  const int64_t n_e = s.expand ? rows_cap * erow : 0;
  const int64_t n_d = s.project ? band * drow : 0;
  float* ebuf = thread_scratch<0>(n_e + n_d + 16);
  if (!ebuf) return false;  // coverage: unreachable (only on std::bad_alloc)
  float* dbuf = ebuf + ((n_e + 15) / 16) * 16;
  const auto& dw = depthwise_kernels_f32();

  for (int64_t u = begin; u < end;) {
    const int64_t n = u / s.OH;
    const int64_t oh_end = imin_ir(end, (n + 1) * s.OH) - n * s.OH;
    int64_t plo = 0, phi = 0;  // expanded input rows held in ebuf: [plo, phi)
    for (int64_t b0 = u - n * s.OH; b0 < oh_end; b0 += band) {
      const int64_t b1 = imin_ir(b0 + band, oh_end);
      const int64_t lo = imax_ir(0, b0 * s.S - s.P);
      const int64_t hi = imin_ir(s.H, (b1 - 1) * s.S - s.P + s.K);
      const float* src;
      if (s.expand) {
        int64_t from = lo;
        if (phi > lo && plo <= lo) {  // keep the rows shared with the previous band
          std::memmove(ebuf, ebuf + (lo - plo) * erow,
                       sizeof(float) * static_cast<size_t>((phi - lo) * erow));
          from = phi;
        }
        if (hi > from)
          pointwise_rows((hi - from) * s.W, s.N * s.H * s.W, s.Cin, s.Cexp, x + ((n * s.H + from) * s.W) * s.Cin,
                         w.expand_w, w.expand_packed, w.expand_panel, w.expand_b, s.act_expand,
                         nullptr, ebuf + (from - lo) * erow);
        plo = lo;
        phi = hi;
        src = ebuf;
      } else {
        src = x + ((n * s.H + lo) * s.W) * s.Cin;
      }
      // the depthwise on the band: input rows [lo, hi) (rows outside them
      // are outside the image: zero padding), output rows [b0, b1)
      DepthwiseShape ds;
      ds.N = 1;
      ds.C = s.Cexp;
      ds.H = hi - lo;
      ds.W = s.W;
      ds.KH = ds.KW = s.K;
      ds.SH = ds.SW = s.S;
      ds.PH = lo - (b0 * s.S - s.P);
      ds.PW = s.P;
      ds.OH = b1 - b0;
      ds.OW = s.OW;
      ds.layout = Layout::NHWC;
      float* yb = y + ((n * s.OH + b0) * s.OW) * s.Cout;
      float* dst = s.project ? dbuf : yb;
      dw.forward(ds, src, w.dw_w, w.dw_b, dst, s.act_dw, 0, b1 - b0);
      if (s.project)
        pointwise_rows((b1 - b0) * s.OW, s.N * s.OH * s.OW, s.Cexp, s.Cout, dbuf, w.project_w, w.project_packed,
                       w.project_panel, w.project_b, s.act_project,
                       s.residual ? x + ((n * s.H + b0) * s.W) * s.Cin : nullptr, yb);
    }
    u = n * s.OH + oh_end;
  }
  return true;
}

}  // namespace cpu
}  // namespace mnx
