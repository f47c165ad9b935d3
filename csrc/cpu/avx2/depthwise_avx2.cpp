// The AVX2/FMA depthwise family: generic/depthwise_family.h (routing, the
// kernels every ISA shares, entry points) over VecAvx2 (vectors of 8), with
// the kernels only this family has:
//   nchw_c8_kxk      depthwise_nchw_c8_kxk_avx2.cpp
//   nhwc_kxk_avx2    depthwise_nhwc_kxk_avx2.cpp
//   nhwc_kxk_avx512  ../avx512/depthwise_nhwc_kxk_avx512.cpp, when
//                    cpu_use_avx512()
//   nchw_direct's padded grad_weight plane kernel (depthwise_nchw_avx2.cpp)
//   the NHWC weight gradient's row-chunk partial sums over VecAvx512
//                    (../avx512/depthwise_nhwc_grad_weight_avx512.cpp), when
//                    own_grad_weight_nhwc_partial below takes the shape
// Shared kernels as instantiated here: small planes take OW < 16; the
// strided forward tries small planes before the row ring; nhwc_direct runs
// the channel tail as masked vectors and needs multiplier 1; the row ring
// broadcasts one weight per tap.
#include "../generic/depthwise_family.h"
#include "../vec/vec_avx2.h"
#include "avx2_kernels.h"

namespace mnx {
namespace cpu {
namespace {

using P = DepthwisePath;

struct IsaAvx2 {
  using V = VecAvx2;
  // name, small planes below OW 16, strided small planes first, nhwc_direct
  // masked tail and multiplier 1 only, own kernels
  static constexpr DepthwiseVariant kVariant = {"avx2", 16, true, true, false, true};
  template <class W, int K>
  using RowTaps = dw_rows::BroadcastTaps<W, K>;

  static bool own_supported(P p, const DepthwiseShape& s, DepthwiseOp op) {
    if (p == P::nchw_c8_kxk)
      return op == DepthwiseOp::grad_input ? depthwise_grad_input_nchw_c8_kxk_avx2_supported(s)
                                           : depthwise_forward_nchw_c8_kxk_avx2_supported(s);
    return depthwise_nhwc_kxk_avx2_supported(p, s, op);
  }
  static bool own_forward(P p, const DepthwiseShape& s, const float* x, const float* w,
                          const float* bias, float* y, Activation act, int64_t begin,
                          int64_t end) {
    if (p == P::nchw_c8_kxk)
      return depthwise_forward_nchw_c8_kxk_avx2(s, x, w, bias, y, act, begin, end);
    return depthwise_forward_nhwc_kxk_avx2(p, s, x, w, bias, y, act, begin, end);
  }
  static bool own_grad_input(P p, const DepthwiseShape& s, const float* gy, const float* w,
                             float* gx, int64_t begin, int64_t end) {
    if (p == P::nchw_c8_kxk)
      return depthwise_grad_input_nchw_c8_kxk_avx2(s, gy, w, gx, begin, end);
    return depthwise_grad_input_nhwc_kxk_avx2(p, s, gy, w, gx, begin, end);
  }
  // only nchw_c8_kxk has a grad_weight of its own
  static bool own_grad_weight(P, const DepthwiseShape& s, const float* gy, const float* x,
                              float* gw, int64_t begin, int64_t end) {
    return depthwise_grad_weight_nchw_c8_kxk_avx2(s, gy, x, gw, begin, end);
  }
  // The AVX-512 instance where cpu_use_avx512(), C % 16 == 0 and the CPU is
  // not one that prefers the AVX2 channels_last depthwise kernels (AMD:
  // measured there for the forward only, so its weight gradient stays as it
  // was). Intel Xeon (AVX-512, 2 threads, batch 32 unless said), time
  // against the AVX2 instance, process-alternating runs, median of 3:
  // 3x3 [144, 56x56] 0.87, [96, 112x112] s2 0.93, [576, 14x14] 0.83,
  // [960, 7x7] 0.81, [480, 14x14] 0.85, batch 1 [144, 56x56] 0.85; 5x5
  // [240, 14x14] 0.82, [672, 14x14] s2 0.93, batch 1 [576, 14x14] 0.90.
  // With C % 16 == 8 ([72, 56x56]) it took 2.26x: the last 8 channels fall
  // to the per-tap column sums' scalar loop, where AVX2 has whole vectors.
  static bool own_grad_weight_nhwc_partial(const DepthwiseShape& s, const float* gy, const float* x,
                                           float* partial, int64_t begin, int64_t end) {
    if (!cpu_use_avx512() || cpu_prefer_avx2_nhwc_depthwise() || s.C % 16 != 0) return false;
    depthwise_grad_weight_nhwc_partial_avx512(s, gy, x, partial, begin, end);  // coverage: needs avx512f
    return true;  // coverage: needs avx512f
  }
  static GradWeightPlaneAvx2 grad_weight_padded_plane(const DepthwiseShape& s,
                                                      int64_t* floats) {
    return depthwise_grad_weight_nchw_padded_plane_avx2(s, floats);
  }
};

}  // namespace

const DepthwiseFamilyF32& depthwise_family_avx2() {
  return DepthwiseFamily<IsaAvx2>::table();
}

}  // namespace cpu
}  // namespace mnx
