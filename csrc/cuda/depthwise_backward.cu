// Depthwise backward on CUDA.
//
//  grad_input: a transposed depthwise convolution. Stride 1 with multiplier
//    1 and a specialised kernel size runs as a forward convolution of
//    grad_output with the flipped kernel on the tiled / vectorised forward
//    kernels (depthwise_grad_input_as_forward); everything else runs
//    depthwise_grad_input_generic_kernel, one thread per input element
//    (stride-aware: only taps whose output position exists contribute).
//  grad_weight, K x K with K in {3, 5, 7} (any stride, padding, dilation,
//    multiplier): one pass over the data, all K*K taps accumulated in
//    registers (float32 for fp16 / bf16), block reduction by warp shuffles
//    and shared memory into per-chunk partials, then a second kernel adds the
//    chunks in a fixed order (plan: cuda_tiling.h, DwWeightPlan).
//    Deterministic and atomic-free.
//  grad_weight, other kernel sizes: one block per (output channel, tap), a
//    fixed strided split over (n, oh, ow) and a fixed shared-memory tree.
#include "../kernels/depthwise_index.h"
#include "cuda_common.cuh"
#include "cuda_tiling.h"

namespace mnx {
namespace cuda {
namespace {

using tiling::DwWeightPlan;

template <typename T, bool NHWC>
__global__ void depthwise_grad_input_generic_kernel(DepthwiseShape s, const T* __restrict__ gy,
                                                    const T* __restrict__ w,
                                                    T* __restrict__ gx) {
  using A = typename Acc<T>::type;
  const int64_t Co = s.C * s.mult;
  const int64_t KK = s.KH * s.KW;
  const int64_t total = s.N * s.C * s.H * s.W;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    int64_t n, c, ih, iw;
    unflatten_nchw<NHWC>(i, s.C, s.H, s.W, &n, &c, &ih, &iw);
    A acc = A(0);
    for (int64_t j = 0; j < s.mult; ++j) {
      const int64_t oc = c * s.mult + j;
      for_each_grad_tap(s, ih, iw, [&](int64_t kh, int64_t kw, int64_t oh, int64_t ow) {
        const int64_t gi = NHWC ? ((n * s.OH + oh) * s.OW + ow) * Co + oc
                                : ((n * Co + oc) * s.OH + oh) * s.OW + ow;
        acc += to_acc<A>(gy[gi]) * to_acc<A>(w[oc * KK + kh * s.KW + kw]);
      });
    }
    gx[i] = from_acc<T>(acc);
  }
}

// ---- grad_weight, generic kernel sizes -------------------------------------
constexpr int kWeightThreads = 256;

template <typename T, bool NHWC>
__global__ void depthwise_grad_weight_generic_kernel(DepthwiseShape s, const T* __restrict__ gy,
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

// ---- grad_weight, one pass, K in {3, 5, 7} ---------------------------------
// Adds the K*K taps of output position (n, oh, ow) with gradient g into acc.
template <typename T, typename A, int K>
__device__ __forceinline__ void accumulate_taps(const DepthwiseShape& s, const T* __restrict__ xp,
                                                int64_t x_row_stride, int64_t x_col_stride,
                                                int64_t oh, int64_t ow, A g, A* acc) {
  for_each_input_tap(s, oh, ow, K, K, [&](int kh, int kw, int64_t ih, int64_t iw) {
    acc[kh * K + kw] += g * to_acc<A>(xp[ih * x_row_stride + iw * x_col_stride]);
  });
}

// Stage 1, NCHW: block (oc, chunk), 256 threads over the chunk's outputs
// (consecutive threads along W: coalesced). Reduction: xor butterfly in each
// warp, then warp partials added in warp order by threads 0 .. K*K-1.
template <typename T, int K>
__global__ void __launch_bounds__(tiling::kDwWeightThreads)
    depthwise_grad_weight_partial_nchw_kernel(DepthwiseShape s, DwWeightPlan p,
                                              const T* __restrict__ gy,
                                              const T* __restrict__ x,
                                              typename Acc<T>::type* __restrict__ ws) {
  using A = typename Acc<T>::type;
  constexpr int KK = K * K;
  constexpr int kWarps = tiling::kDwWeightThreads / 32;
  __shared__ A warp_sums[kWarps][KK];
  const int64_t Co = s.C * s.mult;
  const int64_t oc = blockIdx.x, chunk = blockIdx.y;
  const int64_t c = oc / s.mult;
  int64_t row0, row1;
  tiling::dw_weight_chunk_rows(s, p, chunk, &row0, &row1);
  const int64_t count = (row1 - row0) * s.OW;

  A acc[KK];
#pragma unroll
  for (int i = 0; i < KK; ++i) acc[i] = A(0);
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
    const int64_t row = row0 + i / s.OW, ow = i % s.OW;
    const int64_t n = row / s.OH, oh = row % s.OH;
    const A g = to_acc<A>(gy[((n * Co + oc) * s.OH + oh) * s.OW + ow]);
    const T* xp = x + (n * s.C + c) * s.H * s.W;
    accumulate_taps<T, A, K>(s, xp, s.W, 1, oh, ow, g, acc);
  }

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int i = 0; i < KK; ++i) {
    A v = acc[i];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane == 0) warp_sums[warp][i] = v;
  }
  __syncthreads();
  if (threadIdx.x < KK) {
    A v = A(0);
#pragma unroll
    for (int w = 0; w < kWarps; ++w) v += warp_sums[w][threadIdx.x];
    ws[(chunk * Co + oc) * KK + threadIdx.x] = v;
  }
}

// Stage 1, NHWC: block (channel group, chunk) of 32 channels (threadIdx.x,
// coalesced along C) x 8 row lanes (threadIdx.y over the chunk's rows).
// Row lanes are added in y order through shared memory, one tap at a time.
template <typename T, int K>
__global__ void __launch_bounds__(tiling::kDwWeightNhwcChannels * tiling::kDwWeightNhwcRows)
    depthwise_grad_weight_partial_nhwc_kernel(DepthwiseShape s, DwWeightPlan p,
                                              const T* __restrict__ gy,
                                              const T* __restrict__ x,
                                              typename Acc<T>::type* __restrict__ ws) {
  using A = typename Acc<T>::type;
  constexpr int KK = K * K;
  constexpr int CX = tiling::kDwWeightNhwcChannels, RY = tiling::kDwWeightNhwcRows;
  __shared__ A lanes[RY][CX];
  const int64_t Co = s.C * s.mult;
  const int64_t oc = (int64_t)blockIdx.x * CX + threadIdx.x, chunk = blockIdx.y;
  const bool active = oc < Co;
  const int64_t c = oc / s.mult;
  int64_t row0, row1;
  tiling::dw_weight_chunk_rows(s, p, chunk, &row0, &row1);

  A acc[KK];
#pragma unroll
  for (int i = 0; i < KK; ++i) acc[i] = A(0);
  if (active) {
    for (int64_t row = row0 + threadIdx.y; row < row1; row += RY) {
      const int64_t n = row / s.OH, oh = row % s.OH;
      const T* gp = gy + (row * s.OW) * Co + oc;
      const T* xp = x + n * s.H * s.W * s.C + c;
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const A g = to_acc<A>(gp[ow * Co]);
        accumulate_taps<T, A, K>(s, xp, s.W * s.C, s.C, oh, ow, g, acc);
      }
    }
  }
#pragma unroll
  for (int i = 0; i < KK; ++i) {
    lanes[threadIdx.y][threadIdx.x] = acc[i];
    __syncthreads();
    if (threadIdx.y == 0 && active) {
      A v = A(0);
#pragma unroll
      for (int y = 0; y < RY; ++y) v += lanes[y][threadIdx.x];
      ws[(chunk * Co + oc) * KK + i] = v;
    }
    __syncthreads();
  }
}

// Stage 2: gw[e] = sum over chunks, in chunk order, of ws[chunk][e].
template <typename T>
__global__ void depthwise_grad_weight_reduce_kernel(int64_t elems, int64_t chunks,
                                                    const typename Acc<T>::type* __restrict__ ws,
                                                    T* __restrict__ gw) {
  using A = typename Acc<T>::type;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < elems;
       e += (int64_t)gridDim.x * blockDim.x) {
    A v = A(0);
    for (int64_t ch = 0; ch < chunks; ++ch) v += ws[ch * elems + e];
    gw[e] = from_acc<T>(v);
  }
}

template <typename T, int K>
cudaError_t launch_weight_one_pass(const DepthwiseShape& s, const T* gy, const T* x,
                                   T* gw, void* workspace, cudaStream_t st) {
  using A = typename Acc<T>::type;
  const DwWeightPlan p = tiling::dw_weight_plan(s);
  A* ws = static_cast<A*>(workspace);
  if (s.layout == Layout::NCHW) {
    const dim3 grid((unsigned)p.groups, (unsigned)p.chunks);
    depthwise_grad_weight_partial_nchw_kernel<T, K>
        <<<grid, tiling::kDwWeightThreads, 0, st>>>(s, p, gy, x, ws);
  } else {
    const dim3 grid((unsigned)p.groups, (unsigned)p.chunks);
    const dim3 block(tiling::kDwWeightNhwcChannels, tiling::kDwWeightNhwcRows);
    depthwise_grad_weight_partial_nhwc_kernel<T, K><<<grid, block, 0, st>>>(s, p, gy, x, ws);
  }
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  const int64_t elems = s.C_out() * K * K;
  depthwise_grad_weight_reduce_kernel<T><<<blocks_for(elems, 256), 256, 0, st>>>(elems, p.chunks, ws, gw);
  return cudaGetLastError();
}

size_t acc_bytes(DType dt) { return dt == DType::F64 ? 8 : 4; }

}  // namespace

size_t depthwise_grad_weight_workspace_bytes(DType dt, const DepthwiseShape& s) {
  if (!tiling::dw_weight_one_pass_eligible(s)) return 0;
  return static_cast<size_t>(tiling::dw_weight_plan(s).workspace_elems) * acc_bytes(dt);
}

cudaError_t depthwise_grad_input(DType dt, const DepthwiseShape& s,
                                 const void* gy, const void* w, void* gx,
                                 cudaStream_t stream) {
  const int64_t total = s.N * s.C * s.H * s.W;
  if (total == 0) return cudaSuccess;
  const cudaError_t fast = depthwise_grad_input_as_forward(dt, s, gy, w, gx, stream);
  if (fast != cudaErrorNotSupported) return fast;
  const int threads = 256;
  const unsigned blocks = blocks_for(total, threads);
  return MNX_CUDA_DISPATCH(dt, [&] {
    const T* g = static_cast<const T*>(gy);
    const T* wp = static_cast<const T*>(w);
    T* out = static_cast<T*>(gx);
    if (s.layout == Layout::NHWC)
      depthwise_grad_input_generic_kernel<T, true><<<blocks, threads, 0, stream>>>(s, g, wp, out);
    else
      depthwise_grad_input_generic_kernel<T, false><<<blocks, threads, 0, stream>>>(s, g, wp, out);
    return cudaGetLastError();
  });
}

cudaError_t depthwise_grad_weight(DType dt, const DepthwiseShape& s,
                                  const void* gy, const void* x, void* gw,
                                  void* workspace, cudaStream_t stream) {
  const int64_t blocks = s.C * s.mult * s.KH * s.KW;
  if (blocks == 0) return cudaSuccess;
  if (tiling::dw_weight_one_pass_eligible(s)) {
    const DwWeightPlan p = tiling::dw_weight_plan(s);
    if (workspace == nullptr) return cudaErrorInvalidValue;
    if (p.groups > tiling::kGridXMax || p.chunks > tiling::kGridYZMax)
      return cudaErrorInvalidConfiguration;
    return MNX_CUDA_DISPATCH(dt, [&] {
      const T* g = static_cast<const T*>(gy);
      const T* xp = static_cast<const T*>(x);
      T* out = static_cast<T*>(gw);
      switch (s.KH) {
        case 3: return launch_weight_one_pass<T, 3>(s, g, xp, out, workspace, stream);
        case 5: return launch_weight_one_pass<T, 5>(s, g, xp, out, workspace, stream);
        default: return launch_weight_one_pass<T, 7>(s, g, xp, out, workspace, stream);
      }
    });
  }
  if (blocks > 0x7fffffffLL) return cudaErrorInvalidConfiguration;
  return MNX_CUDA_DISPATCH(dt, [&] {
    const T* g = static_cast<const T*>(gy);
    const T* xp = static_cast<const T*>(x);
    T* out = static_cast<T*>(gw);
    if (s.layout == Layout::NHWC)
      depthwise_grad_weight_generic_kernel<T, true><<<(unsigned)blocks, kWeightThreads, 0, stream>>>(s, g, xp, out);
    else
      depthwise_grad_weight_generic_kernel<T, false><<<(unsigned)blocks, kWeightThreads, 0, stream>>>(s, g, xp, out);
    return cudaGetLastError();
  });
}

}  // namespace cuda
}  // namespace mnx
