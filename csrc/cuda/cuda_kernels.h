// Launchers of the CUDA kernels (torch-free). The glue
// (csrc/glue/cuda_ops.cpp) passes raw pointers, the plain shape structs of
// csrc/kernels/params.h and the current stream; every launcher returns the
// launch's cudaError_t so the glue can raise a Python error.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

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
// Workspace (device memory, any alignment of 16 bytes) the one-pass
// grad_weight needs for shape s; 0 when its kernel does not use one.
size_t depthwise_grad_weight_workspace_bytes(DType dt, const DepthwiseShape& s);
// gx = transposed depthwise(gy, w)
cudaError_t depthwise_grad_input(DType dt, const DepthwiseShape& s,
                                 const void* gy, const void* w, void* gx,
                                 cudaStream_t stream);
// gw[C_out, KH, KW] = sum over n, oh, ow of gy * x; deterministic (fixed
// reduction order, no atomics). `workspace` must hold
// depthwise_grad_weight_workspace_bytes(dt, s) bytes.
cudaError_t depthwise_grad_weight(DType dt, const DepthwiseShape& s,
                                  const void* gy, const void* x, void* gw,
                                  void* workspace, cudaStream_t stream);
// Workspace bytes a gemm() call with these arguments and operand pointers
// needs (split-K partial sums); 0 for none.
size_t gemm_workspace_bytes(DType dt, const GemmArgs& g, const void* A,
                            const void* B);
// Strided batched GEMM with epilogue, see GemmArgs; deterministic.
// `workspace` must hold gemm_workspace_bytes(dt, g, A, B) bytes.
cudaError_t gemm(DType dt, const GemmArgs& g, const void* A, const void* B,
                 void* C, const void* bias, const void* residual,
                 void* workspace, cudaStream_t stream);

// Internal (depthwise_forward.cu, used by depthwise_backward.cu): stride-1,
// multiplier-1 grad_input as a forward convolution with the flipped kernel
// on the specialised kernels; cudaErrorNotSupported when none applies.
cudaError_t depthwise_grad_input_as_forward(DType dt, const DepthwiseShape& s,
                                            const void* gy, const void* w,
                                            void* gx, cudaStream_t stream);

}  // namespace cuda
}  // namespace mnx
