// Device helpers shared by the CUDA kernels: element <-> accumulator
// conversion and the activation epilogue. No torch headers.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../kernels/params.h"
#include "cuda_kernels.h"

namespace mnx {
namespace cuda {

template <typename T>
struct Acc {
  using type = float;
};
template <>
struct Acc<double> {
  using type = double;
};

template <typename A, typename T>
__device__ __forceinline__ A to_acc(T v) {
  return static_cast<A>(v);
}
template <>
__device__ __forceinline__ float to_acc<float, __half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float to_acc<float, __nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <typename T, typename A>
__device__ __forceinline__ T from_acc(A v) {
  return static_cast<T>(v);
}
template <>
__device__ __forceinline__ __half from_acc<__half, float>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16, float>(float v) {
  return __float2bfloat16_rn(v);
}

template <typename A>
__device__ __forceinline__ A activate(A v, Activation act) {
  switch (act) {
    case Activation::ReLU:
      return v > A(0) ? v : (v != v ? v : A(0));
    case Activation::ReLU6: {
      if (v != v) return v;
      A r = v > A(0) ? v : A(0);
      return r < A(6) ? r : A(6);
    }
    case Activation::Hardswish: {
      if (v != v) return v;
      A t = v + A(3);
      t = t > A(0) ? t : A(0);
      t = t < A(6) ? t : A(6);
      return v * t / A(6);
    }
    default:
      return v;
  }
}

inline unsigned int blocks_for(int64_t n, int threads, int64_t cap = 65535LL * 16) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  return static_cast<unsigned int>(b < cap ? b : cap);
}

// Calls F<T>() for the element type of dt.
#define MNX_CUDA_DISPATCH(dt, ...)              \
  [&]() -> cudaError_t {                        \
    switch (dt) {                               \
      case DType::F32: {                        \
        using T = float;                        \
        return __VA_ARGS__();                   \
      }                                         \
      case DType::F64: {                        \
        using T = double;                       \
        return __VA_ARGS__();                   \
      }                                         \
      case DType::F16: {                        \
        using T = __half;                       \
        return __VA_ARGS__();                   \
      }                                         \
      case DType::BF16: {                       \
        using T = __nv_bfloat16;                \
        return __VA_ARGS__();                   \
      }                                         \
    }                                           \
    return cudaErrorInvalidValue;               \
  }()

}  // namespace cuda
}  // namespace mnx
