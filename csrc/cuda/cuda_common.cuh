// Device helpers shared by the CUDA kernels: element <-> accumulator
// conversion, the activation epilogue (from ../kernels/activation.h) and
// dtype dispatch. No torch headers.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../kernels/activation.h"
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

// Element <-> accumulator conversions: plain casts, except fp16 / bf16 to and
// from float, which go through the intrinsics (round to nearest even on the
// way back; the CUDA_NO_HALF_CONVERSIONS build has no implicit casts).
template <typename T, typename A>
struct AccConvert {
  static __device__ __forceinline__ A to(T v) { return static_cast<A>(v); }
  static __device__ __forceinline__ T from(A v) { return static_cast<T>(v); }
};
template <>
struct AccConvert<__half, float> {
  static __device__ __forceinline__ float to(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half from(float v) { return __float2half_rn(v); }
};
template <>
struct AccConvert<__nv_bfloat16, float> {
  static __device__ __forceinline__ float to(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 from(float v) { return __float2bfloat16_rn(v); }
};

template <typename A, typename T>
__device__ __forceinline__ A to_acc(T v) {
  return AccConvert<T, A>::to(v);
}
template <typename T, typename A>
__device__ __forceinline__ T from_acc(A v) {
  return AccConvert<T, A>::from(v);
}

// The activation epilogue is apply_activation() of ../kernels/activation.h,
// the same definition the CPU kernels use.

inline unsigned int blocks_for(int64_t n, int threads, int64_t cap = 65535LL * 16) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  return static_cast<unsigned int>(b < cap ? b : cap);
}

// The element type of a DType, as a tag value: f(TypeTag<T>{}).
template <typename T>
struct TypeTag {
  using type = T;
};
template <class F>
cudaError_t dispatch_dtype(DType dt, F&& f) {
  switch (dt) {
    case DType::F32:
      return f(TypeTag<float>{});
    case DType::F64:
      return f(TypeTag<double>{});
    case DType::F16:
      return f(TypeTag<__half>{});
    case DType::BF16:
      return f(TypeTag<__nv_bfloat16>{});
  }
  return cudaErrorInvalidValue;
}

// Calls F() with T = the element type of dt (F: a lambda that uses T).
#define MNX_CUDA_DISPATCH(dt, ...)                                                    \
  ::mnx::cuda::dispatch_dtype((dt), [&](auto mnx_type_tag_) -> cudaError_t {          \
    using T = typename decltype(mnx_type_tag_)::type;                                 \
    return __VA_ARGS__();                                                             \
  })

}  // namespace cuda
}  // namespace mnx
