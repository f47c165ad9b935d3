// AVX-512F depthwise kernels (float32), compiled in their own translation
// units with -mavx512f; called only after dispatch.cpp has checked CPUID
// (cpu_has_avx512f()).
#pragma once

#include "../cpu_kernels.h"

namespace mnx {
namespace cpu {

// channels_last forward, square 3x3/5x5/7x7, stride 1 or 2, dilation 1,
// multiplier 1, any C. `wt` is the tap-major weight copy [KH*KW][C].
bool depthwise_forward_nhwc_kxk_avx512_supported(const DepthwiseShape& s);
void depthwise_forward_nhwc_kxk_avx512(const DepthwiseShape& s, const float* x,
                                       const float* wt, const float* bias,
                                       float* y, Activation act, int64_t begin,
                                       int64_t end);

}  // namespace cpu
}  // namespace mnx
