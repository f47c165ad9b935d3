// Depthwise forward on CUDA: one thread per output element (grid-stride,
// 64-bit indices), taps unrolled at compile time for 3x3, 5x5 and 7x7, a
// generic path for any other kernel size; NCHW (consecutive threads along W)
// and native NHWC (consecutive threads along C: coalesced, no layout copy).
// Fused bias + activation epilogue; float32 accumulation for fp16/bf16.
#include "cuda_common.cuh"

namespace mnx {
namespace cuda {
namespace {

template <typename T, int KH, int KW, bool NHWC>
__global__ void depthwise_forward_kernel(DepthwiseShape s, const T* __restrict__ x,
                                         const T* __restrict__ w,
                                         const T* __restrict__ bias,
                                         T* __restrict__ y, Activation act) {
  using A = typename Acc<T>::type;
  const int kh_n = KH > 0 ? KH : static_cast<int>(s.KH);
  const int kw_n = KW > 0 ? KW : static_cast<int>(s.KW);
  const int64_t Co = s.C * s.mult;
  const int64_t total = s.N * Co * s.OH * s.OW;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    int64_t n, oc, oh, ow;
    if (NHWC) {
      oc = i % Co;
      int64_t r = i / Co;
      ow = r % s.OW;
      r /= s.OW;
      oh = r % s.OH;
      n = r / s.OH;
    } else {
      ow = i % s.OW;
      int64_t r = i / s.OW;
      oh = r % s.OH;
      r /= s.OH;
      oc = r % Co;
      n = r / Co;
    }
    const int64_t c = oc / s.mult;
    const T* wp = w + oc * kh_n * kw_n;
    A acc = bias ? to_acc<A>(bias[oc]) : A(0);
    const int64_t ih0 = oh * s.SH - s.PH, iw0 = ow * s.SW - s.PW;
    // kh_n / kw_n are compile-time constants in the specialised kernels, so
    // these loops are fully unrolled there.
#pragma unroll
    for (int kh = 0; kh < kh_n; ++kh) {
      const int64_t ih = ih0 + kh * s.DH;
      if (ih < 0 || ih >= s.H) continue;
#pragma unroll
      for (int kw = 0; kw < kw_n; ++kw) {
        const int64_t iw = iw0 + kw * s.DW;
        if (iw < 0 || iw >= s.W) continue;
        const int64_t xi = NHWC ? ((n * s.H + ih) * s.W + iw) * s.C + c
                                : ((n * s.C + c) * s.H + ih) * s.W + iw;
        acc += to_acc<A>(x[xi]) * to_acc<A>(wp[kh * kw_n + kw]);
      }
    }
    y[i] = from_acc<T>(activate(acc, act));
  }
}

template <typename T, bool NHWC>
cudaError_t launch_forward(const DepthwiseShape& s, const T* x, const T* w,
                           const T* b, T* y, Activation act, cudaStream_t st) {
  const int64_t total = s.N * s.C * s.mult * s.OH * s.OW;
  if (total == 0) return cudaSuccess;
  const int threads = 256;
  const unsigned blocks = blocks_for(total, threads);
  if (s.KH == 3 && s.KW == 3)
    depthwise_forward_kernel<T, 3, 3, NHWC><<<blocks, threads, 0, st>>>(s, x, w, b, y, act);
  else if (s.KH == 5 && s.KW == 5)
    depthwise_forward_kernel<T, 5, 5, NHWC><<<blocks, threads, 0, st>>>(s, x, w, b, y, act);
  else if (s.KH == 7 && s.KW == 7)
    depthwise_forward_kernel<T, 7, 7, NHWC><<<blocks, threads, 0, st>>>(s, x, w, b, y, act);
  else
    depthwise_forward_kernel<T, 0, 0, NHWC><<<blocks, threads, 0, st>>>(s, x, w, b, y, act);
  return cudaGetLastError();
}

}  // namespace

cudaError_t depthwise_forward(DType dt, const DepthwiseShape& s, const void* x,
                              const void* w, const void* bias, void* y,
                              Activation act, cudaStream_t stream) {
  return MNX_CUDA_DISPATCH(dt, [&] {
    const T* xp = static_cast<const T*>(x);
    const T* wp = static_cast<const T*>(w);
    const T* bp = static_cast<const T*>(bias);
    T* yp = static_cast<T*>(y);
    return s.layout == Layout::NHWC
               ? launch_forward<T, true>(s, xp, wp, bp, yp, act, stream)
               : launch_forward<T, false>(s, xp, wp, bp, yp, act, stream);
  });
}

}  // namespace cuda
}  // namespace mnx
