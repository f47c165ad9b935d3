// AVX2/FMA depthwise forward for NCHW tensors, square 3x3 / 5x5 / 7x7
// kernels, stride 1 or 2 (same along H and W), dilation 1, any padding and
// channel multiplier. Multiplier 1 (the MobileNet / ConvNeXt cases) goes to
// the c8 kernels (depthwise_nchw_c8_kxk_avx2.cpp) first, so this runs
// multiplier > 1, and multiplier 1 only when the c8 scratch is not had.
//
// The row-ring kernel is written once in generic/depthwise_nchw_kxk_rows.h;
// here over VecAvx2 (vectors of 8: steps of 2 rows x 32 columns, 4 x 16 or
// 8 x 8) with a weight broadcast per tap.
#include "../generic/depthwise_nchw_kxk_rows.h"
#include "depthwise_avx2_common.h"

namespace mnx {
namespace cpu {

bool depthwise_forward_nchw_kxk_rows_avx2_supported(const DepthwiseShape& s) {
  return dw_rows::supported(s);
}

// Returns false (nothing written) if the per-thread row ring could not be had.
bool depthwise_forward_nchw_kxk_rows_avx2(const DepthwiseShape& s,
                                          const float* x, const float* w,
                                          const float* bias, float* y,
                                          Activation act, int64_t begin,
                                          int64_t end) {
  return dw_rows::forward<VecAvx2, dw_rows::BroadcastTaps>(s, x, w, bias, y, act, begin, end);
}

}  // namespace cpu
}  // namespace mnx
