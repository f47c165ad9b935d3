// Launchers of the CUDA kernels (torch-free). The glue
// (csrc/glue/cuda_ops.cpp) passes raw pointers, the plain shape structs of
// csrc/kernels/params.h and the current stream; every launcher returns the
// launch's cudaError_t so the glue can raise a Python error.
#pragma once

#include <cuda_runtime_api.h>

#include "../kernels/params.h"

namespace mnx {
namespace cuda {

// Element type of all tensors of one call. Accumulation is float32 for
// F32/F16/BF16 and float64 for F64.
enum class DType : int32_t { F32 = 0, F64 = 1, F16 = 2, BF16 = 3 };

// y = act(depthwise(x, w) + bias); bias may be null.
cudaError_t depthwise_forward(DType dt, const DepthwiseShape& s, const void* x,
                              const void* w, const void* bias, void* y,
                              Activation act, cudaStream_t stream);
// gx = transposed depthwise(gy, w)
cudaError_t depthwise_grad_input(DType dt, const DepthwiseShape& s,
                                 const void* gy, const void* w, void* gx,
                                 cudaStream_t stream);
// gw[C_out, KH, KW] = sum over n, oh, ow of gy * x; deterministic (fixed
// reduction order, no atomics).
cudaError_t depthwise_grad_weight(DType dt, const DepthwiseShape& s,
                                  const void* gy, const void* x, void* gw,
                                  cudaStream_t stream);
// Strided batched GEMM with epilogue, see GemmArgs; deterministic.
cudaError_t gemm(DType dt, const GemmArgs& g, const void* A, const void* B,
                 void* C, const void* bias, const void* residual,
                 cudaStream_t stream);

}  // namespace cuda
}  // namespace mnx
