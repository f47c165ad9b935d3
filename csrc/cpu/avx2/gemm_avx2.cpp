// avx2 GEMM entry point (packing + cache blocking + register-blocked
// micro-kernel go here); uncovered cases run the scalar GEMM.
#include "avx2_kernels.h"

namespace mnx {
namespace cpu {

void gemm_avx2_f32(const GemmArgs& g, const float* A, const float* B, float* C,
                   const float* bias, const float* residual, int64_t begin,
                   int64_t end) {
  gemm_scalar<float>(g, A, B, C, bias, residual, begin, end);
}

}  // namespace cpu
}  // namespace mnx
