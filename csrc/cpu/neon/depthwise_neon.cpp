// NEON depthwise entry points: route each call to the layout-specific
// vectorised family when it covers the shape, else to the scalar kernels.
// depthwise_neon_path() names the route taken (it repeats these checks; see
// neon_kernels.h for the list of vectorised paths).
#include "neon_kernels.h"

namespace mnx {
namespace cpu {

const char* depthwise_neon_path(const DepthwiseShape& s, int op) {
  static const char* const kRows[3][2] = {
      {"nchw_rows_k3s1", "nchw_rows_k3s2"},
      {"nchw_rows_k5s1", "nchw_rows_k5s2"},
      {"nchw_rows_k7s1", "nchw_rows_k7s2"}};
  if (s.layout == Layout::NHWC)
    return !depthwise_nhwc_neon_supported(s) ? "scalar"
           : s.mult == 1                     ? "nhwc_m1"
                                             : "nhwc_mult";
  switch (op) {
    case 0:
      if (depthwise_forward_nchw_kxk_rows_neon_supported(s))
        return kRows[(s.KH - 3) / 2][s.SH - 1];
      if (depthwise_nchw_neon_small_plane(s)) return "nchw_small_fwd";
      if (depthwise_forward_nchw_neon_supported(s))
        return s.SW == 1 ? "nchw_fwd_s1" : "nchw_fwd_s2";
      return "scalar";
    case 1:
      if (depthwise_nchw_neon_small_plane(s)) return "nchw_small_gi";
      if (depthwise_grad_input_nchw_neon_supported(s))
        return s.SW == 1 ? "nchw_gi_s1" : "nchw_gi_s2";
      return "scalar";
    default:
      if (depthwise_nchw_neon_small_plane(s)) return "nchw_small_gw";
      if (depthwise_grad_weight_nchw_neon_supported(s))
        return s.SW == 1 ? "nchw_gw_s1" : "nchw_gw_s2";
      return "scalar";
  }
}

void depthwise_forward_neon_f32(const DepthwiseShape& s, const float* x,
                                const float* w, const float* bias, float* y,
                                Activation act, int64_t begin, int64_t end) {
  if (depthwise_forward_nchw_kxk_rows_neon_supported(s) &&
      depthwise_forward_nchw_kxk_rows_neon(s, x, w, bias, y, act, begin, end))
    return;
  if (depthwise_forward_nchw_neon_supported(s))
    return depthwise_forward_nchw_neon(s, x, w, bias, y, act, begin, end);
  if (depthwise_nhwc_neon_supported(s) &&
      depthwise_forward_nhwc_neon(s, x, w, bias, y, act, begin, end))
    return;
  depthwise_forward_scalar<float>(s, x, w, bias, y, act, begin, end);
}

void depthwise_grad_input_neon_f32(const DepthwiseShape& s, const float* gy,
                                   const float* w, float* gx, int64_t begin,
                                   int64_t end) {
  if (depthwise_grad_input_nchw_neon_supported(s) &&
      depthwise_grad_input_nchw_neon(s, gy, w, gx, begin, end))
    return;
  if (depthwise_nhwc_neon_supported(s) &&
      depthwise_grad_input_nhwc_neon(s, gy, w, gx, begin, end))
    return;
  depthwise_grad_input_scalar<float>(s, gy, w, gx, begin, end);
}

void depthwise_grad_weight_neon_f32(const DepthwiseShape& s, const float* gy,
                                    const float* x, float* gw, int64_t begin,
                                    int64_t end) {
  if (depthwise_grad_weight_nchw_neon_supported(s))
    return depthwise_grad_weight_nchw_neon(s, gy, x, gw, begin, end);
  if (depthwise_nhwc_neon_supported(s))
    return depthwise_grad_weight_nhwc_neon(s, gy, x, gw, begin, end);
  depthwise_grad_weight_scalar<float>(s, gy, x, gw, begin, end);
}

}  // namespace cpu
}  // namespace mnx
