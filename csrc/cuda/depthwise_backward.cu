// Depthwise backward on CUDA.
//  grad_input: transposed depthwise convolution, one thread per input element
//    (stride-aware: only taps whose output position exists contribute).
//  grad_weight: one block per (output channel, tap); each thread sums a fixed
//    strided subset of (n, oh, ow) and the block reduces in shared memory in a
//    fixed tree order: deterministic, no atomics.
#include "cuda_common.cuh"

namespace mnx {
namespace cuda {
namespace {

__device__ __forceinline__ int64_t src_index(int64_t i, int64_t k, int64_t S,
                                             int64_t P, int64_t D, int64_t O) {
  const int64_t t = i + P - k * D;
  if (t < 0 || t % S != 0) return -1;
  const int64_t o = t / S;
  return o < O ? o : -1;
}

template <typename T, bool NHWC>
__global__ void depthwise_grad_input_kernel(DepthwiseShape s, const T* __restrict__ gy,
                                            const T* __restrict__ w,
                                            T* __restrict__ gx) {
  using A = typename Acc<T>::type;
  const int64_t Co = s.C * s.mult;
  const int64_t KK = s.KH * s.KW;
  const int64_t total = s.N * s.C * s.H * s.W;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    int64_t n, c, ih, iw;
    if (NHWC) {
      c = i % s.C;
      int64_t r = i / s.C;
      iw = r % s.W;
      r /= s.W;
      ih = r % s.H;
      n = r / s.H;
    } else {
      iw = i % s.W;
      int64_t r = i / s.W;
      ih = r % s.H;
      r /= s.H;
      c = r % s.C;
      n = r / s.C;
    }
    A acc = A(0);
    for (int64_t j = 0; j < s.mult; ++j) {
      const int64_t oc = c * s.mult + j;
      for (int64_t kh = 0; kh < s.KH; ++kh) {
        const int64_t oh = src_index(ih, kh, s.SH, s.PH, s.DH, s.OH);
        if (oh < 0) continue;
        for (int64_t kw = 0; kw < s.KW; ++kw) {
          const int64_t ow = src_index(iw, kw, s.SW, s.PW, s.DW, s.OW);
          if (ow < 0) continue;
          const int64_t gi = NHWC ? ((n * s.OH + oh) * s.OW + ow) * Co + oc
                                  : ((n * Co + oc) * s.OH + oh) * s.OW + ow;
          acc += to_acc<A>(gy[gi]) * to_acc<A>(w[oc * KK + kh * s.KW + kw]);
        }
      }
    }
    gx[i] = from_acc<T>(acc);
  }
}

constexpr int kWeightThreads = 256;

template <typename T, bool NHWC>
__global__ void depthwise_grad_weight_kernel(DepthwiseShape s, const T* __restrict__ gy,
                                             const T* __restrict__ x,
                                             T* __restrict__ gw) {
  using A = typename Acc<T>::type;
  __shared__ A partial[kWeightThreads];
  const int64_t Co = s.C * s.mult;
  const int64_t KK = s.KH * s.KW;
  const int64_t oc = blockIdx.x / KK;
  const int64_t tap = blockIdx.x % KK;
  const int64_t kh = tap / s.KW, kw = tap % s.KW;
  const int64_t c = oc / s.mult;
  const int64_t per_image = s.OH * s.OW;
  const int64_t total = s.N * per_image;
  A acc = A(0);
  for (int64_t i = threadIdx.x; i < total; i += blockDim.x) {
    const int64_t n = i / per_image, r = i % per_image;
    const int64_t oh = r / s.OW, ow = r % s.OW;
    const int64_t ih = oh * s.SH - s.PH + kh * s.DH;
    const int64_t iw = ow * s.SW - s.PW + kw * s.DW;
    if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
    const int64_t gi = NHWC ? ((n * s.OH + oh) * s.OW + ow) * Co + oc
                            : ((n * Co + oc) * s.OH + oh) * s.OW + ow;
    const int64_t xi = NHWC ? ((n * s.H + ih) * s.W + iw) * s.C + c
                            : ((n * s.C + c) * s.H + ih) * s.W + iw;
    acc += to_acc<A>(gy[gi]) * to_acc<A>(x[xi]);
  }
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int step = kWeightThreads / 2; step > 0; step >>= 1) {
    if (threadIdx.x < step) partial[threadIdx.x] += partial[threadIdx.x + step];
    __syncthreads();
  }
  if (threadIdx.x == 0) gw[oc * KK + tap] = from_acc<T>(partial[0]);
}

}  // namespace

cudaError_t depthwise_grad_input(DType dt, const DepthwiseShape& s,
                                 const void* gy, const void* w, void* gx,
                                 cudaStream_t stream) {
  const int64_t total = s.N * s.C * s.H * s.W;
  if (total == 0) return cudaSuccess;
  const int threads = 256;
  const unsigned blocks = blocks_for(total, threads);
  return MNX_CUDA_DISPATCH(dt, [&] {
    const T* g = static_cast<const T*>(gy);
    const T* wp = static_cast<const T*>(w);
    T* out = static_cast<T*>(gx);
    if (s.layout == Layout::NHWC)
      depthwise_grad_input_kernel<T, true><<<blocks, threads, 0, stream>>>(s, g, wp, out);
    else
      depthwise_grad_input_kernel<T, false><<<blocks, threads, 0, stream>>>(s, g, wp, out);
    return cudaGetLastError();
  });
}

cudaError_t depthwise_grad_weight(DType dt, const DepthwiseShape& s,
                                  const void* gy, const void* x, void* gw,
                                  cudaStream_t stream) {
  const int64_t blocks = s.C * s.mult * s.KH * s.KW;
  if (blocks == 0) return cudaSuccess;
  if (blocks > 0x7fffffffLL) return cudaErrorInvalidConfiguration;
  return MNX_CUDA_DISPATCH(dt, [&] {
    const T* g = static_cast<const T*>(gy);
    const T* xp = static_cast<const T*>(x);
    T* out = static_cast<T*>(gw);
    if (s.layout == Layout::NHWC)
      depthwise_grad_weight_kernel<T, true><<<(unsigned)blocks, kWeightThreads, 0, stream>>>(s, g, xp, out);
    else
      depthwise_grad_weight_kernel<T, false><<<(unsigned)blocks, kWeightThreads, 0, stream>>>(s, g, xp, out);
    return cudaGetLastError();
  });
}

}  // namespace cuda
}  // namespace mnx
