// Depthwise forward on CUDA. Three kernels, picked by launch_forward():
//
//  depthwise_forward_nchw_tiled_kernel<T, K, S>  NCHW, K x K with K in
//    {3, 5, 7}, stride S in {1, 2}, no dilation, padding < K: shared-memory
//    input tile with halo, 4 output rows per thread from a register sliding
//    window, taps fully unrolled (tiling in cuda_tiling.h, DwNchwTiles).
//  depthwise_forward_nhwc_vec_kernel<T, K, S>  channels_last, same kernel
//    sizes / strides, multiplier 1, C a multiple of the vector width:
//    16-byte loads and stores of 8 halfs / 4 floats / 2 doubles along C,
//    4 output columns per thread, weights transposed to shared memory
//    (DwNhwcTiles).
//  depthwise_forward_generic_kernel<T, KH, KW, NHWC>  everything else: one
//    thread per output (grid-stride, 64-bit indices), taps unrolled for
//    3x3 / 5x5 / 7x7.
//
// All three accumulate in float32 for fp16 / bf16 (float64 for double) and
// apply the fused bias + activation epilogue as they write. The two
// specialised kernels (tiled NCHW, vectorised NHWC) also serve the stride-1,
// multiplier-1 grad_input (a forward convolution of grad_output
// with the flipped kernel, see depthwise_backward.cu): `flip` reads the taps
// in reverse order.
#include "../kernels/depthwise_index.h"
#include "cuda_common.cuh"
#include "cuda_tiling.h"

namespace mnx {
namespace cuda {

using tiling::DwNchwTiles;
using tiling::DwNhwcTiles;

namespace {

template <typename T, int KH, int KW, bool NHWC>
__global__ void depthwise_forward_generic_kernel(DepthwiseShape s, const T* __restrict__ x,
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
    unflatten_nchw<NHWC>(i, Co, s.OH, s.OW, &n, &oc, &oh, &ow);
    const int64_t c = oc / s.mult;
    const T* wp = w + oc * kh_n * kw_n;
    A acc = bias ? to_acc<A>(bias[oc]) : A(0);
    // kh_n / kw_n are compile-time constants in the specialised kernels, so
    // the tap loops are fully unrolled there.
    for_each_input_tap(s, oh, ow, kh_n, kw_n, [&](int kh, int kw, int64_t ih, int64_t iw) {
      const int64_t xi = NHWC ? ((n * s.H + ih) * s.W + iw) * s.C + c
                              : ((n * s.C + c) * s.H + ih) * s.W + iw;
      acc += to_acc<A>(x[xi]) * to_acc<A>(wp[kh * kw_n + kw]);
    });
    y[i] = from_acc<T>(apply_activation(acc, act));
  }
}

// NCHW tiled kernel. Block (tx, ty, tz): tz planes, each an out_h x out_w
// output tile (out_w = tx, out_h = ty * R). Shared memory holds the tz input
// tiles with halo, in_h x in_w each, as T (half the bytes of float for
// fp16 / bf16).
template <typename T, int K, int S>
__global__ void __launch_bounds__(tiling::kDwThreads)
    depthwise_forward_nchw_tiled_kernel(DepthwiseShape s, DwNchwTiles t,
                                        const T* __restrict__ x,
                                        const T* __restrict__ w,
                                        const T* __restrict__ bias,
                                        T* __restrict__ y, Activation act,
                                        bool flip) {
  using A = typename Acc<T>::type;
  constexpr int R = tiling::kDwRowsPerThread;
  constexpr int kInRows = (R - 1) * S + K;  // input rows one thread reads
  extern __shared__ __align__(16) unsigned char dw_smem[];
  T* tile = reinterpret_cast<T*>(dw_smem);

  const tiling::DwNchwTileOrigin o = tiling::dw_nchw_tile_origin(t, blockIdx.x);
  const int H = static_cast<int>(s.H), W = static_cast<int>(s.W);
  const int ih0 = o.oh0 * S - static_cast<int>(s.PH);
  const int iw0 = o.ow0 * S - static_cast<int>(s.PW);
  const int plane_elems = t.in_h * t.in_w;
  const int64_t Co = s.C * s.mult;
  const int tid = threadIdx.x + t.tx * (threadIdx.y + t.ty * threadIdx.z);
  const int nthreads = t.tx * t.ty * t.tz;
  const T zero = from_acc<T>(A(0));

  // 1. cooperative copy of the tz input tiles (coalesced along W, zeros in
  //    the padding).
  for (int z = 0; z < t.tz; ++z) {
    const int64_t plane = o.plane0 + z;
    if (plane >= t.planes) break;
    const int64_t n = plane / Co, c = (plane % Co) / s.mult;
    const T* xp = x + (n * s.C + c) * s.H * s.W;
    T* tp = tile + z * plane_elems;
    for (int e = tid; e < plane_elems; e += nthreads) {
      const int r = e / t.in_w, col = e - r * t.in_w;
      const int ih = ih0 + r, iw = iw0 + col;
      tp[e] = (ih >= 0 && ih < H && iw >= 0 && iw < W) ? xp[(int64_t)ih * W + iw] : zero;
    }
  }
  __syncthreads();

  const int64_t plane = o.plane0 + threadIdx.z;
  if (plane >= t.planes) return;
  const int64_t oc = plane % Co;

  // 2. taps in registers, accumulators start at the bias.
  A wr[K * K];
#pragma unroll
  for (int i = 0; i < K * K; ++i) wr[i] = to_acc<A>(w[oc * K * K + (flip ? K * K - 1 - i : i)]);
  const A b0 = bias ? to_acc<A>(bias[oc]) : A(0);
  A acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = b0;

  // 3. sliding window: input row ir of this thread's window feeds output row
  //    r with tap row kh = ir - r * S (resolved at compile time).
  const T* tp = tile + threadIdx.z * plane_elems + (threadIdx.y * R * S) * t.in_w + threadIdx.x * S;
#pragma unroll
  for (int ir = 0; ir < kInRows; ++ir) {
    A row[K];
#pragma unroll
    for (int kw = 0; kw < K; ++kw) row[kw] = to_acc<A>(tp[ir * t.in_w + kw]);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int kh = ir - r * S;
      if (kh >= 0 && kh < K) {
#pragma unroll
        for (int kw = 0; kw < K; ++kw) acc[r] += row[kw] * wr[kh * K + kw];
      }
    }
  }

  // 4. epilogue: bias (already in acc) + activation, bounds-checked stores.
  const int ow = o.ow0 + static_cast<int>(threadIdx.x);
  if (ow >= s.OW) return;
  T* yp = y + plane * s.OH * s.OW;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int oh = o.oh0 + static_cast<int>(threadIdx.y) * R + r;
    if (oh < s.OH) yp[(int64_t)oh * s.OW + ow] = from_acc<T>(apply_activation(acc[r], act));
  }
}

// 16-byte vector <-> V accumulator values.
template <typename T, typename A, int V>
__device__ __forceinline__ void load_vec16(const T* p, A* out) {
  alignas(16) T e[V];
  *reinterpret_cast<uint4*>(e) = __ldg(reinterpret_cast<const uint4*>(p));
#pragma unroll
  for (int i = 0; i < V; ++i) out[i] = to_acc<A>(e[i]);
}
template <typename T, typename A, int V>
__device__ __forceinline__ void store_vec16(T* p, const A* in) {
  alignas(16) T e[V];
#pragma unroll
  for (int i = 0; i < V; ++i) e[i] = from_acc<T>(in[i]);
  *reinterpret_cast<uint4*>(p) = *reinterpret_cast<const uint4*>(e);
}

// channels_last kernel. Thread (x, y): channel vector blockIdx.y * tx + x,
// output columns ow0 .. ow0 + OWT - 1 of output row (n, oh) given by the
// flattened group blockIdx.x * ty + y. Per tap row kh it keeps that row's
// K weight vectors in registers and walks the (OWT - 1) * S + K input
// vectors of the row once.
template <typename T, int K, int S>
__global__ void __launch_bounds__(128)
    depthwise_forward_nhwc_vec_kernel(DepthwiseShape s, DwNhwcTiles t,
                                      const T* __restrict__ x,
                                      const T* __restrict__ w,
                                      const T* __restrict__ bias,
                                      T* __restrict__ y, Activation act,
                                      bool flip) {
  using A = typename Acc<T>::type;
  constexpr int V = 16 / sizeof(T);
  constexpr int OWT = tiling::kDwNhwcColsPerThread;
  constexpr int kInCols = (OWT - 1) * S + K;
  extern __shared__ __align__(16) unsigned char dw_smem[];
  A* ws = reinterpret_cast<A*>(dw_smem);  // [K*K][tx * V]

  const int nch = t.tx * V;
  const int64_t cblock0 = (int64_t)blockIdx.y * nch;
  for (int e = threadIdx.x + threadIdx.y * t.tx; e < K * K * nch; e += t.tx * t.ty) {
    const int tap = e / nch, cl = e - tap * nch;
    const int64_t c = cblock0 + cl;
    ws[e] = c < s.C ? to_acc<A>(w[c * K * K + (flip ? K * K - 1 - tap : tap)]) : A(0);
  }
  __syncthreads();

  const int64_t c0 = cblock0 + (int64_t)threadIdx.x * V;
  const int64_t grp = (int64_t)blockIdx.x * t.ty + threadIdx.y;
  if (c0 >= s.C || grp >= t.groups) return;
  const int64_t cg = grp % t.col_groups, r = grp / t.col_groups;
  const int64_t oh = r % s.OH, n = r / s.OH;
  const int64_t ow0 = cg * OWT;

  A acc[OWT][V];
#pragma unroll
  for (int v = 0; v < V; ++v) {
    const A b0 = bias ? to_acc<A>(bias[c0 + v]) : A(0);
#pragma unroll
    for (int o = 0; o < OWT; ++o) acc[o][v] = b0;
  }
  const int64_t iw_base = ow0 * S - s.PW;
  const A* wthread = ws + threadIdx.x * V;
#pragma unroll
  for (int kh = 0; kh < K; ++kh) {
    const int64_t ih = oh * S - s.PH + kh;
    if (ih < 0 || ih >= s.H) continue;
    A wrow[K][V];
#pragma unroll
    for (int kw = 0; kw < K; ++kw)
#pragma unroll
      for (int v = 0; v < V; ++v) wrow[kw][v] = wthread[(kh * K + kw) * nch + v];
    const T* xrow = x + ((n * s.H + ih) * s.W) * s.C + c0;
#pragma unroll
    for (int j = 0; j < kInCols; ++j) {
      const int64_t iw = iw_base + j;
      if (iw < 0 || iw >= s.W) continue;
      A xv[V];
      load_vec16<T, A, V>(xrow + iw * s.C, xv);
#pragma unroll
      for (int o = 0; o < OWT; ++o) {
        const int kw = j - o * S;
        if (kw >= 0 && kw < K) {
#pragma unroll
          for (int v = 0; v < V; ++v) acc[o][v] += xv[v] * wrow[kw][v];
        }
      }
    }
  }
#pragma unroll
  for (int o = 0; o < OWT; ++o) {
    const int64_t ow = ow0 + o;
    if (ow >= s.OW) break;
    A out[V];
#pragma unroll
    for (int v = 0; v < V; ++v) out[v] = apply_activation(acc[o][v], act);
    store_vec16<T, A, V>(y + ((n * s.OH + oh) * s.OW + ow) * s.C + c0, out);
  }
}

template <typename T, bool NHWC>
cudaError_t launch_generic(const DepthwiseShape& s, const T* x, const T* w,
                           const T* b, T* y, Activation act, cudaStream_t st) {
  const int64_t total = s.N * s.C * s.mult * s.OH * s.OW;
  const int threads = 256;
  const unsigned blocks = blocks_for(total, threads);
  if (s.KH == 3 && s.KW == 3)
    depthwise_forward_generic_kernel<T, 3, 3, NHWC><<<blocks, threads, 0, st>>>(s, x, w, b, y, act);
  else if (s.KH == 5 && s.KW == 5)
    depthwise_forward_generic_kernel<T, 5, 5, NHWC><<<blocks, threads, 0, st>>>(s, x, w, b, y, act);
  else if (s.KH == 7 && s.KW == 7)
    depthwise_forward_generic_kernel<T, 7, 7, NHWC><<<blocks, threads, 0, st>>>(s, x, w, b, y, act);
  else
    depthwise_forward_generic_kernel<T, 0, 0, NHWC><<<blocks, threads, 0, st>>>(s, x, w, b, y, act);
  return cudaGetLastError();
}

template <typename T, int K, int S>
cudaError_t launch_nchw_tiled(const DepthwiseShape& s, const T* x, const T* w,
                              const T* b, T* y, Activation act, bool flip,
                              cudaStream_t st) {
  const DwNchwTiles t = tiling::dw_nchw_tiles(s, sizeof(T));
  const dim3 block(t.tx, t.ty, t.tz);
  depthwise_forward_nchw_tiled_kernel<T, K, S>
      <<<(unsigned)t.blocks, block, (size_t)t.smem_bytes, st>>>(s, t, x, w, b, y, act, flip);
  return cudaGetLastError();
}

template <typename T, int K, int S>
cudaError_t launch_nhwc_vec(const DepthwiseShape& s, const T* x, const T* w,
                            const T* b, T* y, Activation act, bool flip,
                            cudaStream_t st) {
  using A = typename Acc<T>::type;
  const DwNhwcTiles t = tiling::dw_nhwc_tiles(s, sizeof(T), sizeof(A));
  const dim3 grid((unsigned)t.grid_x, (unsigned)t.grid_y);
  depthwise_forward_nhwc_vec_kernel<T, K, S>
      <<<grid, dim3(t.tx, t.ty), (size_t)t.smem_bytes, st>>>(s, t, x, w, b, y, act, flip);
  return cudaGetLastError();
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// The specialised kernel for (K, S), or cudaErrorNotSupported if the shape
// has none.
template <typename T>
cudaError_t launch_specialised(const DepthwiseShape& s, const T* x, const T* w,
                               const T* b, T* y, Activation act, bool flip,
                               cudaStream_t st) {
  using A = typename Acc<T>::type;
  const int K = tiling::specialised_kernel_size(s), S = tiling::specialised_stride(s);
#define MNX_DW_CASE(KK, SS)                                                    \
  if (K == KK && S == SS) {                                                    \
    if (s.layout == Layout::NCHW) {                                            \
      if (!tiling::dw_nchw_tiled_eligible(s)) return cudaErrorNotSupported;    \
      const DwNchwTiles t = tiling::dw_nchw_tiles(s, sizeof(T));               \
      if (t.blocks > tiling::kGridXMax) return cudaErrorNotSupported;          \
      return launch_nchw_tiled<T, KK, SS>(s, x, w, b, y, act, flip, st);       \
    }                                                                          \
    if (!tiling::dw_nhwc_vec_eligible(s, sizeof(T)) || !aligned16(x) ||        \
        !aligned16(y))                                                         \
      return cudaErrorNotSupported;                                            \
    const DwNhwcTiles t = tiling::dw_nhwc_tiles(s, sizeof(T), sizeof(A));      \
    if (t.grid_x > tiling::kGridXMax || t.grid_y > tiling::kGridYZMax)         \
      return cudaErrorNotSupported;                                            \
    return launch_nhwc_vec<T, KK, SS>(s, x, w, b, y, act, flip, st);           \
  }
  MNX_DW_CASE(3, 1)
  MNX_DW_CASE(3, 2)
  MNX_DW_CASE(5, 1)
  MNX_DW_CASE(5, 2)
  MNX_DW_CASE(7, 1)
  MNX_DW_CASE(7, 2)
#undef MNX_DW_CASE
  return cudaErrorNotSupported;
}

}  // namespace

cudaError_t depthwise_forward(DType dt, const DepthwiseShape& s, const void* x,
                              const void* w, const void* bias, void* y,
                              Activation act, cudaStream_t stream) {
  if (s.N * s.C * s.mult * s.OH * s.OW == 0) return cudaSuccess;
  return MNX_CUDA_DISPATCH(dt, [&] {
    const T* xp = static_cast<const T*>(x);
    const T* wp = static_cast<const T*>(w);
    const T* bp = static_cast<const T*>(bias);
    T* yp = static_cast<T*>(y);
    const cudaError_t err = launch_specialised<T>(s, xp, wp, bp, yp, act, false, stream);
    if (err != cudaErrorNotSupported) return err;
    return s.layout == Layout::NHWC
               ? launch_generic<T, true>(s, xp, wp, bp, yp, act, stream)
               : launch_generic<T, false>(s, xp, wp, bp, yp, act, stream);
  });
}

// Stride-1 grad_input with multiplier 1 as a forward convolution of gy
// (OH x OW) with the flipped kernel and padding K - 1 - P, giving H x W.
// Returns cudaErrorNotSupported when no specialised kernel applies.
cudaError_t depthwise_grad_input_as_forward(DType dt, const DepthwiseShape& s,
                                            const void* gy, const void* w,
                                            void* gx, cudaStream_t stream) {
  DepthwiseShape t;
  if (!tiling::dw_grad_input_as_forward_shape(s, &t)) return cudaErrorNotSupported;
  return MNX_CUDA_DISPATCH(dt, [&] {
    return launch_specialised<T>(t, static_cast<const T*>(gy), static_cast<const T*>(w),
                                 nullptr, static_cast<T*>(gx), Activation::None, true, stream);
  });
}

}  // namespace cuda
}  // namespace mnx
