// neon depthwise entry points. Specialised micro-kernels are added here;
// every case they do not cover runs the scalar kernels.
#include "neon_kernels.h"

namespace mnx {
namespace cpu {

void depthwise_forward_neon_f32(const DepthwiseShape& s, const float* x,
                                const float* w, const float* bias, float* y,
                                Activation act, int64_t begin, int64_t end) {
  depthwise_forward_scalar<float>(s, x, w, bias, y, act, begin, end);
}

void depthwise_grad_input_neon_f32(const DepthwiseShape& s, const float* gy,
                                   const float* w, float* gx, int64_t begin,
                                   int64_t end) {
  depthwise_grad_input_scalar<float>(s, gy, w, gx, begin, end);
}

void depthwise_grad_weight_neon_f32(const DepthwiseShape& s, const float* gy,
                                    const float* x, float* gw, int64_t begin,
                                    int64_t end) {
  depthwise_grad_weight_scalar<float>(s, gy, x, gw, begin, end);
}

}  // namespace cpu
}  // namespace mnx
