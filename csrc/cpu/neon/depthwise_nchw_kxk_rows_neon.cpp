// NEON depthwise forward for NCHW tensors, square 3x3 / 5x5 / 7x7 kernels,
// stride 1 or 2 (same along H and W), dilation 1, any padding and channel
// multiplier (the MobileNet / ConvNeXt cases).
//
// The row-ring kernel is written once in generic/depthwise_nchw_kxk_rows.h;
// here over VecNeon (vectors of 4: steps of 2 rows x 16 columns, 4 x 8 or
// 8 x 4), with the K*K weights held in registers (packed 4 per q register)
// and one FMA by lane per tap.
#define MNX_ROWS_FULL_UNROLL 1  // LaneTaps: constant lanes
#include "../generic/depthwise_nchw_kxk_rows.h"
#include "depthwise_neon_common.h"

namespace mnx {
namespace cpu {
namespace {

// The plane's K*K weights in (K*K + 3) / 4 registers; fma by lane.
template <class V, int K>
struct LaneTaps {
  static constexpr int NW = (K * K + 3) / 4;  // weight registers
  float32x4_t wq[NW];
  explicit LaneTaps(const float* wp) {
    float wpad[NW * 4] = {};
    for (int t = 0; t < K * K; ++t) wpad[t] = wp[t];
    for (int i = 0; i < NW; ++i) wq[i] = vld1q_f32(wpad + 4 * i);
  }
  struct W {
    float32x4_t q;
    int lane;
  };
  W at(int t) const { return {wq[t / 4], t % 4}; }
  static float32x4_t fma(W w, float32x4_t x, float32x4_t acc) {
    return neon::fma_lane(acc, x, w.q, w.lane);
  }
};

}  // namespace

bool depthwise_forward_nchw_kxk_rows_neon_supported(const DepthwiseShape& s) {
  return dw_rows::supported(s);
}

// Returns false (nothing written) if the per-thread row ring could not be had.
bool depthwise_forward_nchw_kxk_rows_neon(const DepthwiseShape& s,
                                          const float* x, const float* w,
                                          const float* bias, float* y,
                                          Activation act, int64_t begin,
                                          int64_t end) {
  return dw_rows::forward<VecNeon, LaneTaps>(s, x, w, bias, y, act, begin, end);
}

}  // namespace cpu
}  // namespace mnx
