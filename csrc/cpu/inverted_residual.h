// A MobileNet block in one pass over its input, channels_last (NHWC):
//
//   e = act_e(x W_e^T + b_e)           expand 1x1 (optional: e = x)
//   d = act_d(depthwise_KxK(e) + b_d)  stride S, padding P, dilation 1
//   y = act_p(d W_p^T + b_p) (+ x)     project 1x1 (optional: y = d), the
//                                      residual added after act_p
//
// computed in bands of output rows: per band the expand runs on the input
// rows the band reads (the rows it shares with the previous band are kept,
// not recomputed), the depthwise on those rows, the project on the band's
// depthwise rows. The expanded and depthwise tensors exist only band by
// band (about kInvertedResidualBandBytes per thread), so they stay in the
// caches instead of going through L3 or memory between three separate ops.
//
// Torch-free and ISA-neutral: the band steps are the selected float32
// GEMM and depthwise kernels (gemm_kernels_f32, depthwise_kernels_f32) on
// sub-shapes of the layer, each output element computed by the same
// arithmetic as the separate ops compute it (GEMM elements do not depend on
// the rows around them; the depthwise kernels' do not depend on the rows
// computed with them), so the result is bitwise the three ops' result when
// the 1x1 weights come packed (as the op passes them; unpacked, a band of at
// most kGemmSmallM rows runs its GEMM as dot products, equal to rounding) and
// the routing gives the band the separate op's depthwise kernel.
//
// Work units: output rows (n, oh); a call computes rows [begin, end), any
// split gives the same bits (a range starts its own bands, recomputing the
// input rows it shares with the range before it).
#pragma once

#include <cstdint>

#include "../kernels/params.h"

namespace mnx {
namespace cpu {

struct InvertedResidualShape {
  int64_t N = 0, H = 0, W = 0, Cin = 0;  // input [N, H, W, Cin]
  int64_t Cexp = 0;                       // depthwise channels (Cin without expand)
  int64_t K = 3, S = 1, P = 1;            // square depthwise kernel, stride, padding
  int64_t OH = 0, OW = 0, Cout = 0;       // output [N, OH, OW, Cout] (Cout = Cexp without project)
  bool expand = false, project = false, residual = false;
  Activation act_expand = Activation::None, act_dw = Activation::None,
             act_project = Activation::None;
  int64_t units() const { return N * OH; }
};

struct InvertedResidualWeights {
  // expand: weight [Cexp, Cin] and, optionally, packed [ceil(Cexp / panel),
  // Cin, panel] (cpu::gemm_pack_panels; read in place when panel is the
  // GEMM's NR tile and the pointer 64-byte aligned); bias [Cexp] or null
  const float* expand_w = nullptr;
  const float* expand_packed = nullptr;
  int64_t expand_panel = 0;
  const float* expand_b = nullptr;
  const float* dw_w = nullptr;  // [Cexp, K, K]
  const float* dw_b = nullptr;  // [Cexp] or null
  const float* project_w = nullptr;  // [Cout, Cexp]
  const float* project_packed = nullptr;
  int64_t project_panel = 0;
  const float* project_b = nullptr;
};

// Per-thread working set aimed at for the expanded rows of one band. In-process
// A/B on fused channels_last models, Zen 5 (1 MiB L2 per core), against 256
// KiB: 64 KiB 1.11-1.21x the time, 128 KiB 1.02-1.11x, 384 KiB 0.98-1.01x,
// 512 KiB 0.97-1.02x, 1 MiB 0.99-1.00x (batch 1 and 32, 1 and 2 threads).
constexpr int64_t kInvertedResidualBandBytes = int64_t(384) << 10;

// Output rows per band for this shape (>= 1, <= OH).
int64_t inverted_residual_band_rows(const InvertedResidualShape& s);

// y[n, oh] for output rows [begin, end). false (nothing written) when the
// per-thread scratch could not be had.
bool inverted_residual_nhwc_forward_f32(const InvertedResidualShape& s,
                                        const InvertedResidualWeights& w, const float* x,
                                        float* y, int64_t begin, int64_t end);

}  // namespace cpu
}  // namespace mnx
