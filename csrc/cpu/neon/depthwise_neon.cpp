// The NEON depthwise family (AArch64, float32): generic/depthwise_family.h
// (routing, kernels, entry points) over VecNeon (vectors of 4). It has no
// kernels of its own; as instantiated here: small planes take OW < 12; the
// forward tries the row ring first whatever the stride; nhwc_direct runs
// whole vectors then a scalar channel tail (VecNeon::load_n goes through
// memory) and supports any channel multiplier; the row ring holds the K*K
// weights in registers, 4 per q register, with one FMA by lane per tap.
#define MNX_ROWS_FULL_UNROLL 1  // LaneTaps: constant lanes once unrolled
#include <arm_neon.h>

#include "../generic/depthwise_family.h"
#include "../vec/vec_neon.h"

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
  // acc + x * w.q[w.lane]; the lane is a constant once the taps are unrolled
  static float32x4_t fma(W w, float32x4_t x, float32x4_t acc) {
    switch (w.lane) {
      case 0:
        return vfmaq_laneq_f32(acc, x, w.q, 0);
      case 1:
        return vfmaq_laneq_f32(acc, x, w.q, 1);
      case 2:
        return vfmaq_laneq_f32(acc, x, w.q, 2);
      default:
        return vfmaq_laneq_f32(acc, x, w.q, 3);
    }
  }
};

struct IsaNeon {
  using V = VecNeon;
  // name, small planes below OW 12, the row ring first, nhwc_direct scalar
  // tail and any multiplier, no kernels of its own
  static constexpr DepthwiseVariant kVariant = {"neon", 12, false, false, true, false};
  template <class W, int K>
  using RowTaps = LaneTaps<W, K>;
};

}  // namespace

const DepthwiseFamilyF32& depthwise_family_neon() {
  return DepthwiseFamily<IsaNeon>::table();
}

}  // namespace cpu
}  // namespace mnx
