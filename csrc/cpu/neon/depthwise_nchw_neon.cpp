// NEON depthwise kernels for NCHW tensors: the general kernels
// (DepthwisePath::nchw_direct, vectors of 4 along W) and the small-plane
// kernels (nchw_small_planes, vectors along 4 channels). Which one runs is
// decided by depthwise_path_neon() (depthwise_neon.cpp); square 3x3/5x5/7x7
// stride 1/2 forward runs the row-ring kernel of
// depthwise_nchw_kxk_rows_neon.cpp instead.
//
//  small planes (multiplier 1, fewer than 12 output columns, <= 1024
//               pixels): all three ops transpose blocks of 4 channels to
//               [H][W][4] and vectorise along C (any stride/dilation).
//  forward      any kernel size up to 7x7 taps (49), stride 1 or 2 along W
//               (any stride along H), any dilation and multiplier; the
//               interior of each output row is vectorised (two vectors per
//               step, weights broadcast once per plane), the borders use the
//               scalar formula, so padding costs no copy.
//  grad_input   stride_w 1 (any stride_h): a correlation of grad_output
//               with the weights (same vectorisation); stride_w 2: one
//               stride-1 correlation per column parity, interleaved into
//               the row through a per-thread buffer.
//  grad_weight  stride 1 or 2 along W: per output channel, one vector
//               accumulator per tap over N x OH x OW plus a scalar one for
//               the borders, reduced in a fixed order (results do not depend
//               on the unit split / thread count).
//
// The kernels are written once for NEON and AVX2 in generic/depthwise_nchw.h
// (over VecNeon: two vectors of 4 per forward step).
#include "../generic/depthwise_nchw.h"
#include "depthwise_neon_common.h"

namespace mnx {
namespace cpu {
namespace {

using dw_nchw::kMaxTaps;
using dw_nchw::kSmallPlane;
using V = VecNeon;

// Small planes: fewer than kSmallOW output columns (as in the 14x14 and 7x7
// stages of MobileNets, multiplier 1) leave little room for vectors along W.
constexpr int64_t kSmallOW = 12;

}  // namespace

bool depthwise_nchw_small_planes_neon_supported(const DepthwiseShape& s) {
  return s.layout == Layout::NCHW && s.mult == 1 && s.KH * s.KW <= kMaxTaps &&
         s.OW < kSmallOW && s.H * s.W <= kSmallPlane && s.OH * s.OW <= kSmallPlane;
}

// all three ops
bool depthwise_nchw_direct_neon_supported(const DepthwiseShape& s) {
  return s.layout == Layout::NCHW && s.KH * s.KW <= kMaxTaps && (s.SW == 1 || s.SW == 2);
}

void depthwise_forward_nchw_small_planes_neon(const DepthwiseShape& s, const float* x,
                                              const float* w, const float* bias, float* y,
                                              Activation act, int64_t begin, int64_t end) {
  dw_nchw::forward_small_planes<V>(s, x, w, bias, y, act, begin, end);
}

void depthwise_grad_input_nchw_small_planes_neon(const DepthwiseShape& s, const float* gy,
                                                 const float* w, float* gx, int64_t begin,
                                                 int64_t end) {
  dw_nchw::grad_input_small_planes<V>(s, gy, w, gx, begin, end);
}

void depthwise_grad_weight_nchw_small_planes_neon(const DepthwiseShape& s, const float* gy,
                                                  const float* x, float* gw, int64_t begin,
                                                  int64_t end) {
  dw_nchw::grad_weight_small_planes<V>(s, gy, x, gw, begin, end);
}

void depthwise_forward_nchw_direct_neon(const DepthwiseShape& s, const float* x,
                                        const float* w, const float* bias, float* y,
                                        Activation act, int64_t begin, int64_t end) {
  dw_nchw::forward_direct<V, 2>(s, x, w, bias, y, act, begin, end);
}

// Returns false (nothing written) if the stride-2 row buffer could not be had.
bool depthwise_grad_input_nchw_direct_neon(const DepthwiseShape& s, const float* gy,
                                           const float* w, float* gx, int64_t begin,
                                           int64_t end) {
  return dw_nchw::grad_input_direct<V>(s, gy, w, gx, begin, end);
}

void depthwise_grad_weight_nchw_direct_neon(const DepthwiseShape& s, const float* gy,
                                            const float* x, float* gw, int64_t begin,
                                            int64_t end) {
  dw_nchw::grad_weight_direct<V>(s, gy, x, gw, begin, end, nullptr, nullptr);
}

}  // namespace cpu
}  // namespace mnx
