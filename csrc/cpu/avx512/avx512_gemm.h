// AVX-512F GEMM (float32), compiled in its own translation unit with
// -mavx512f; selected by dispatch.cpp only when cpu_use_avx512().
#pragma once

#include "../cpu_kernels.h"

namespace mnx {
namespace cpu {

int64_t fma_peak_avx512_f32(int64_t iters, float* sink);
void gemm_avx512_f32(const GemmArgs& g, const float* A, const float* B, float* C,
                     const float* bias, const float* residual, int64_t begin,
                     int64_t end);

}  // namespace cpu
}  // namespace mnx
