// Strided batched GEMM for the pointwise (1x1) convolution on CUDA, on the
// tensor as it lies in memory (GemmArgs strides express NCHW / NHWC, plain or
// transposed: no im2col, no layout copy).
//
// A SIMT kernel: 64x64 tiles of C per block, 256 threads each computing a 4x4
// register block, K staged through shared memory 16 at a time; float32
// accumulation (float64 for double). sum_batch loops over the batch inside
// the block in order, so the result is deterministic. The epilogue applies
// bias (per row or column), the activation and the residual add.
#include "cuda_common.cuh"

namespace mnx {
namespace cuda {
namespace {

constexpr int kTile = 64;
constexpr int kStageK = 16;
constexpr int kThreads = 256;  // 16 x 16 threads, 4 x 4 outputs each

template <typename T>
__global__ void __launch_bounds__(kThreads)
    gemm_tiled_kernel(GemmArgs g, const T* __restrict__ A, const T* __restrict__ B,
                      T* __restrict__ C, const T* __restrict__ bias,
                      const T* __restrict__ residual, int64_t batch_begin) {
  using Ac = typename Acc<T>::type;
  __shared__ Ac As[kStageK][kTile];  // As[k][m]
  __shared__ Ac Bs[kStageK][kTile];  // Bs[k][n]
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t m0 = (int64_t)blockIdx.y * kTile, n0 = (int64_t)blockIdx.x * kTile;
  const int64_t bz = batch_begin + blockIdx.z;
  const int64_t b_first = g.sum_batch ? 0 : bz;
  const int64_t b_last = g.sum_batch ? g.batch : bz + 1;

  Ac acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = Ac(0);

  for (int64_t b = b_first; b < b_last; ++b) {
    const T* Ab = A + b * g.a_bs;
    const T* Bb = B + b * g.b_bs;
    for (int64_t k0 = 0; k0 < g.K; k0 += kStageK) {
      // 256 threads load 16 x 64 elements of A and of B (4 each).
      for (int e = threadIdx.x; e < kStageK * kTile; e += kThreads) {
        const int kk = e / kTile, mm = e % kTile;
        const int64_t k = k0 + kk;
        const int64_t m = m0 + mm, n = n0 + mm;
        As[kk][mm] = (k < g.K && m < g.M) ? to_acc<Ac>(Ab[m * g.a_rs + k * g.a_cs]) : Ac(0);
        Bs[kk][mm] = (k < g.K && n < g.N) ? to_acc<Ac>(Bb[k * g.b_rs + n * g.b_cs]) : Ac(0);
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < kStageK; ++kk) {
        Ac a[4], bv[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
#pragma unroll
        for (int j = 0; j < 4; ++j) bv[j] = Bs[kk][tx + 16 * j];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * bv[j];
      }
      __syncthreads();
    }
  }

  const int64_t c_off = g.sum_batch ? 0 : bz * g.c_bs;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t m = m0 + ty + 16 * i;
    if (m >= g.M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t n = n0 + tx + 16 * j;
      if (n >= g.N) continue;
      Ac v = acc[i][j];
      if (bias) v += to_acc<Ac>(bias[g.bias_per_row ? m : n]);
      v = activate(v, g.act);
      const int64_t ci = c_off + m * g.ldc + n;
      if (residual) v += to_acc<Ac>(residual[ci]);
      C[ci] = from_acc<T>(v);
    }
  }
}

}  // namespace

cudaError_t gemm(DType dt, const GemmArgs& g, const void* A, const void* B,
                 void* C, const void* bias, const void* residual,
                 cudaStream_t stream) {
  if (g.M == 0 || g.N == 0) return cudaSuccess;
  const int64_t gx = (g.N + kTile - 1) / kTile, gy = (g.M + kTile - 1) / kTile;
  if (gx > 0x7fffffffLL || gy > 65535) return cudaErrorInvalidConfiguration;
  const int64_t batches = g.sum_batch ? 1 : g.batch;
  return MNX_CUDA_DISPATCH(dt, [&] {
    for (int64_t b0 = 0; b0 < batches; b0 += 65535) {
      const int64_t nb = batches - b0 < 65535 ? batches - b0 : 65535;
      dim3 grid((unsigned)gx, (unsigned)gy, (unsigned)nb);
      gemm_tiled_kernel<T><<<grid, kThreads, 0, stream>>>(
          g, static_cast<const T*>(A), static_cast<const T*>(B), static_cast<T*>(C),
          static_cast<const T*>(bias), static_cast<const T*>(residual), b0);
      const cudaError_t err = cudaGetLastError();
      if (err != cudaSuccess) return err;
    }
    return cudaSuccess;
  });
}

}  // namespace cuda
}  // namespace mnx
