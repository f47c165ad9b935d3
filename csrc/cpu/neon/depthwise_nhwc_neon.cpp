// NEON depthwise kernels for channels_last (NHWC) tensors: vectors of 4
// along the (output) channels, any kernel size, stride, padding, dilation and
// channel multiplier. Spatial bounds are checked per tap (scalar index
// arithmetic); the channel loop runs 16 channels (4 q registers) per step,
// then 4, then a scalar tail, so no padded copy is ever made.
//
// The weights [C_out, 1, KH, KW] are read tap-major ([KH*KW][C_out]) from a
// per-thread scratch buffer filled once per call and reused across calls.
// Channel multiplier m > 1 (output channel oc reads input channel oc / m):
//   forward      the KH input rows of an output row are expanded once to
//                C_out channels (x[.., oc / m]) in a per-thread buffer, then
//                run through the same vector loop;
//   grad_input   the per-output-channel products are summed over the taps
//                with vectors, then each input channel adds its m outputs;
//   grad_weight  the 8 x values of a unit are gathered per tap.
// The kernels are written once for NEON and AVX2 in generic/depthwise_nhwc.h
// (instantiated here over VecNeon: whole vectors, then a scalar tail).
#include <vector>

#include "../generic/depthwise_nhwc.h"
#include "depthwise_neon_common.h"

namespace mnx {
namespace cpu {
namespace {

using V = VecNeon;
constexpr bool kMaskedTail = false, kMult = true;

}  // namespace

bool depthwise_nhwc_neon_supported(const DepthwiseShape& s) {
  return s.layout == Layout::NHWC && s.KH * s.KW <= kDwNhwcMaxTaps;
}

bool depthwise_forward_nhwc_neon(const DepthwiseShape& s, const float* x,
                                 const float* w, const float* bias, float* y,
                                 Activation act, int64_t begin, int64_t end) {
  const float* wt = dwnhwc_tap_major_weights(s, w);
  if (!wt) return false;
  const int64_t Co = s.C_out(), m = s.mult;
  float* xe = nullptr;  // expanded rows [KH][W][Co] (multiplier > 1)
  if (m > 1) {
    thread_local std::vector<float> buf;
    try {
      if (static_cast<int64_t>(buf.size()) < s.KH * s.W * Co) buf.resize(s.KH * s.W * Co);
    } catch (...) {
      return false;
    }
    xe = buf.data();
  }
  dwnhwc_forward<V, kMaskedTail, kMult>(s, x, wt, bias, y, act, begin, end, xe);
  return true;
}

bool depthwise_grad_input_nhwc_neon(const DepthwiseShape& s, const float* gy,
                                    const float* w, float* gx, int64_t begin,
                                    int64_t end) {
  const float* wt = dwnhwc_tap_major_weights(s, w);
  if (!wt) return false;
  const int64_t Co = s.C_out(), m = s.mult;
  float* tmp = nullptr;  // per-output-channel sums (multiplier > 1)
  if (m > 1) {
    thread_local std::vector<float> buf;
    try {
      if (static_cast<int64_t>(buf.size()) < Co) buf.resize(Co);
    } catch (...) {
      return false;
    }
    tmp = buf.data();
  }
  dwnhwc_grad_input<V, kMaskedTail, kMult>(s, gy, wt, gx, begin, end, tmp);
  return true;
}

// Units of kDepthwiseWeightChannelBlock (8) channels = 2 vectors.
void depthwise_grad_weight_nhwc_neon(const DepthwiseShape& s, const float* gy,
                                     const float* x, float* gw, int64_t begin,
                                     int64_t end) {
  dwnhwc_grad_weight<V, kMaskedTail, kMult>(s, gy, x, gw, begin, end);
}

// Partial sums per chunk of rows (multiplier 1): blocks of 16, 4, 1 channels.
void depthwise_grad_weight_nhwc_partial_neon(const DepthwiseShape& s,
                                             const float* gy, const float* x,
                                             float* partial, int64_t begin,
                                             int64_t end) {
  dwnhwc_grad_weight_partial<V>(s, gy, x, partial, begin, end);
}

}  // namespace cpu
}  // namespace mnx
