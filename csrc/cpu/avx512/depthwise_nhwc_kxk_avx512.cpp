// AVX-512F depthwise forward for channels_last (NHWC) tensors: square
// 3x3 / 5x5 / 7x7 kernels, stride 1 or 2 (same along H and W), dilation 1,
// multiplier 1, any channel count: dwkxk_forward_rows of
// generic/depthwise_nhwc_kxk.h (the direct kernel of
// depthwise_nhwc_kxk_avx2.cpp, written once) over VecAvx512, 16 channels per
// register and the channel tail handled by a lane mask (masked loads never
// touch the masked lanes' memory), so C need not be a multiple of 8 or 16.
//
// One work unit is one (n, oh) output row (as for every NHWC forward). The
// interior of a row (output columns whose taps are all inside the image) is
// computed in groups of T = 8 pixels (then 4, then 1 for what is left) per
// 16-channel block: T accumulators,
// per tap row the K weights in registers and each of the S*(T-1)+K input
// columns the group touches loaded once and fed to every (pixel, tap) pair
// that reads it. Border pixels check each tap column; tap rows outside the
// image are skipped. Every output element is one FMA chain in (kh, kw)
// order starting from the bias, whatever the unit split.
#include <immintrin.h>

#include "../generic/depthwise_nhwc_kxk.h"
#include "../vec/vec_avx512.h"
#include "../avx2/avx2_kernels.h"

namespace mnx {
namespace cpu {

bool depthwise_forward_nhwc_kxk_avx512_supported(const DepthwiseShape& s) {
  return s.layout == Layout::NHWC && s.mult == 1 && s.KH == s.KW &&
         (s.KH == 3 || s.KH == 5 || s.KH == 7) && s.DH == 1 && s.DW == 1 &&
         s.SH == s.SW && (s.SH == 1 || s.SH == 2);
}

void depthwise_forward_nhwc_kxk_avx512(const DepthwiseShape& s, const float* x,
                                       const float* wt, const float* bias,
                                       float* y, Activation act, int64_t begin,
                                       int64_t end, bool stream) {
#define MNX_NHWC512_CASE(KK, SS)                                        \
  if (s.KH == KK && s.SH == SS)                                         \
    return dwkxk_forward_rows<VecAvx512, KK, SS>(s, x, wt, bias, y, act, begin, end, stream);
  MNX_NHWC512_CASE(3, 1)
  MNX_NHWC512_CASE(3, 2)
  MNX_NHWC512_CASE(5, 1)
  MNX_NHWC512_CASE(5, 2)
  MNX_NHWC512_CASE(7, 1)
  MNX_NHWC512_CASE(7, 2)
#undef MNX_NHWC512_CASE
}

void depthwise_grad_input_nhwc_s2_kxk_avx512(const DepthwiseShape& s, const float* gy,
                                             const float* wf, float* gx, int64_t begin,
                                             int64_t end) {
  dwkxk_grad_input_s2_rows<VecAvx512>(s, gy, wf, gx, begin, end);
}

}  // namespace cpu
}  // namespace mnx
