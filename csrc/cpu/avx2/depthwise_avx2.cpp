// AVX2/FMA depthwise entry points: route each call to the layout-specific
// vectorised family (depthwise_nchw_avx2.cpp, depthwise_nhwc_avx2.cpp) when it
// covers the shape, else to the scalar kernels.
//
// Covered:
//   NCHW forward      stride_w 1 or 2, up to 49 taps, any dilation/multiplier
//   NCHW grad_input   stride 1 or stride_w 2 (and any stride on planes with
//                     fewer than 16 output columns), up to 49 taps, any
//                     dilation/multiplier
//   NCHW grad_weight  stride_w 1 or 2, up to 49 taps, any dilation/multiplier
//   NHWC all three    multiplier 1, any kernel size/stride/padding/dilation
#include "avx2_kernels.h"

namespace mnx {
namespace cpu {

void depthwise_forward_avx2_f32(const DepthwiseShape& s, const float* x,
                                const float* w, const float* bias, float* y,
                                Activation act, int64_t begin, int64_t end) {
  if (depthwise_nchw_avx2_supported(s))
    return depthwise_forward_nchw_avx2(s, x, w, bias, y, act, begin, end);
  if (depthwise_nhwc_avx2_supported(s) &&
      depthwise_forward_nhwc_avx2(s, x, w, bias, y, act, begin, end))
    return;
  depthwise_forward_scalar<float>(s, x, w, bias, y, act, begin, end);
}

void depthwise_grad_input_avx2_f32(const DepthwiseShape& s, const float* gy,
                                   const float* w, float* gx, int64_t begin,
                                   int64_t end) {
  if (depthwise_grad_input_nchw_avx2_supported(s))
    return depthwise_grad_input_nchw_avx2(s, gy, w, gx, begin, end);
  if (depthwise_nhwc_avx2_supported(s) &&
      depthwise_grad_input_nhwc_avx2(s, gy, w, gx, begin, end))
    return;
  depthwise_grad_input_scalar<float>(s, gy, w, gx, begin, end);
}

void depthwise_grad_weight_avx2_f32(const DepthwiseShape& s, const float* gy,
                                    const float* x, float* gw, int64_t begin,
                                    int64_t end) {
  if (depthwise_nchw_avx2_supported(s))
    return depthwise_grad_weight_nchw_avx2(s, gy, x, gw, begin, end);
  if (depthwise_nhwc_avx2_supported(s))
    return depthwise_grad_weight_nhwc_avx2(s, gy, x, gw, begin, end);
  depthwise_grad_weight_scalar<float>(s, gy, x, gw, begin, end);
}

}  // namespace cpu
}  // namespace mnx
