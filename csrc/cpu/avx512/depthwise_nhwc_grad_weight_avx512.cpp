// AVX-512F channels_last depthwise weight gradient, multiplier 1: the
// per-chunk partial sums of generic/depthwise_nhwc.h
// (dwnhwc_grad_weight_partial: K x K tap rows in registers along each row,
// the per-tap column sums elsewhere) over VecAvx512, 16 channels per
// register. Every element's sum runs over the chunk's rows in order, each
// row's columns in order, as in the AVX2 family's instance.
#include "../generic/depthwise_nhwc.h"
#include "../vec/vec_avx512.h"
#include "../avx2/avx2_kernels.h"

namespace mnx {
namespace cpu {

void depthwise_grad_weight_nhwc_partial_avx512(const DepthwiseShape& s, const float* gy, const float* x,
                                               float* partial, int64_t begin, int64_t end) {
  dwnhwc_grad_weight_partial<VecAvx512>(s, gy, x, partial, begin, end);
}

}  // namespace cpu
}  // namespace mnx
