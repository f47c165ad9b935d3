// AArch64 NEON kernels (float32), same structure as the AVX2 family.
#pragma once

#include "../cpu_kernels.h"

namespace mnx {
namespace cpu {

void depthwise_forward_neon_f32(const DepthwiseShape& s, const float* x,
                                const float* w, const float* bias, float* y,
                                Activation act, int64_t begin, int64_t end);
void depthwise_grad_input_neon_f32(const DepthwiseShape& s, const float* gy,
                                   const float* w, float* gx, int64_t begin,
                                   int64_t end);
void depthwise_grad_weight_neon_f32(const DepthwiseShape& s, const float* gy,
                                    const float* x, float* gw, int64_t begin,
                                    int64_t end);
void gemm_neon_f32(const GemmArgs& g, const float* A, const float* B, float* C,
                   const float* bias, const float* residual, int64_t begin,
                   int64_t end);

}  // namespace cpu
}  // namespace mnx
