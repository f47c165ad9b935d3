// Strided batched GEMM for the pointwise (1x1) convolution on CUDA, on the
// tensor as it lies in memory (GemmArgs strides express NCHW / NHWC, plain or
// transposed: no im2col, no layout copy). Two kernels, chosen by
// tiling::gemm_plan (cuda_tiling.h):
//
//  gemm_mma_kernel<T, A_K, B_K>  fp16 / bf16 on sm_80+: tensor cores through
//    mma.sync.m16n8k16 (float accumulation), 128 x 128 x 32 block tiles,
//    8 warps of 64 x 32, a 3-stage cp.async ring of swizzled shared-memory
//    tiles read with ldmatrix (.trans for operands that are contiguous along
//    M or N). A_K / B_K: operand contiguous along K (see cuda_tiling.h).
//  gemm_simt_kernel<T>  float32 / float64 and fp16 / bf16 shapes whose
//    operands cannot be loaded in 16-byte chunks: 64 x 64 tiles, 256 threads
//    with a 4 x 4 register block each, K staged 16 at a time.
//
// Both reduce a contiguous range of K iterations (over the batch too when
// sum_batch, in batch order). With split-K (few C tiles: late layers with
// small maps, weight gradients) each split writes accumulator partials to the
// workspace and gemm_split_reduce_kernel adds them in split order and
// applies the epilogue, so results are deterministic. Epilogue: bias (per row
// or column), activation, residual add.
#include <type_traits>

#include "cuda_common.cuh"
#include "cuda_tiling.h"

namespace mnx {
namespace cuda {

using tiling::GemmPlan;

namespace {

// v = act(acc + bias) + residual, written to C(cb, m, n).
template <typename T, typename Ac>
__device__ __forceinline__ void epilogue_store(const GemmArgs& g, T* __restrict__ C,
                                               const T* __restrict__ bias,
                                               const T* __restrict__ residual, int64_t cb,
                                               int64_t m, int64_t n, Ac v) {
  if (bias) v += to_acc<Ac>(bias[g.bias_per_row ? m : n]);
  v = apply_activation(v, g.act);
  const int64_t ci = (g.sum_batch ? 0 : cb * g.c_bs) + m * g.ldc + n;
  if (residual) v += to_acc<Ac>(residual[ci]);
  C[ci] = from_acc<T>(v);
}

// ---------------------------------------------------------------------------
// SIMT kernel
// ---------------------------------------------------------------------------
constexpr int kTile = tiling::kSimtTile;
constexpr int kStageK = tiling::kSimtBK;
constexpr int kThreads = tiling::kSimtThreads;  // 16 x 16 threads, 4 x 4 outputs each

template <typename T>
__global__ void __launch_bounds__(kThreads)
    gemm_simt_kernel(GemmArgs g, GemmPlan p, const T* __restrict__ A, const T* __restrict__ B,
                     T* __restrict__ C, const T* __restrict__ bias,
                     const T* __restrict__ residual, typename Acc<T>::type* __restrict__ ws,
                     int64_t batch_begin) {
  using Ac = typename Acc<T>::type;
  __shared__ Ac As[kStageK][kTile];  // As[k][m]
  __shared__ Ac Bs[kStageK][kTile];  // Bs[k][n]
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const tiling::GemmBlockWork bw =
      tiling::gemm_block_work(p, blockIdx.x, blockIdx.y, blockIdx.z, batch_begin, kTile, kTile);
  const int64_t m0 = bw.m0, n0 = bw.n0, split = bw.split, cb = bw.cb, it0 = bw.it0, it1 = bw.it1;

  Ac acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = Ac(0);

  for (int64_t it = it0; it < it1; ++it) {
    int64_t b, k0;
    tiling::gemm_k_iter(it, p.k_tiles_per_batch, kStageK, g.sum_batch, cb, &b, &k0);
    const T* Ab = A + b * g.a_bs;
    const T* Bb = B + b * g.b_bs;
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

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t m = m0 + ty + 16 * i;
    if (m >= g.M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t n = n0 + tx + 16 * j;
      if (n >= g.N) continue;
      if (p.splits > 1)
        ws[tiling::gemm_workspace_index(p, g, split, cb, m, n)] = acc[i][j];
      else
        epilogue_store(g, C, bias, residual, cb, m, n, acc[i][j]);
    }
  }
}

// ---------------------------------------------------------------------------
// Tensor-core kernel (sm_80+)
// ---------------------------------------------------------------------------
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global -> shared copy; zero-fills when !valid (src-size 0).
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem)),
               "l"(gmem), "r"(src_bytes));
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

template <bool TRANS>
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if (TRANS)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(smem)));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(smem)));
#endif
}

// D (+)= A * B with mma.sync m16n8k16, float accumulation; fp16 or bf16
// operands, the instruction's operand type `ab` ("f16" / "bf16") being the
// only difference between the two.
#define MNX_MMA_16816(ab)                                                              \
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." ab "." ab ".f32 {%0, %1, %2, %3}, " \
               "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"                       \
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                        \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]))
template <typename T>
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4],
                                          const uint32_t (&b)[2]) {
  static_assert(std::is_same<T, __half>::value || std::is_same<T, __nv_bfloat16>::value,
                "mma_16816: fp16 or bf16 operands");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (std::is_same<T, __half>::value)
    MNX_MMA_16816("f16");
  else
    MNX_MMA_16816("bf16");
#endif
}
#undef MNX_MMA_16816

using tiling::kGemmBK;
using tiling::kGemmBM;
using tiling::kGemmBN;
using tiling::kGemmStages;
using tiling::kGemmTileElems;

// cp.async of chunk q of an operand's tile into `tile` (row length len):
// element (mn, k) of the operand is base[mn * mn_stride + k * k_stride],
// tile origin (mn0, k0), extents MN x K; chunks outside are zero-filled
// (`fallback`: any valid address).
template <typename T, bool K_CONTIG>
__device__ __forceinline__ void load_operand_chunk(T* tile, int len, int q, const T* base,
                                                   const T* fallback, int64_t mn0, int64_t k0,
                                                   int64_t MN, int64_t K, int64_t mn_stride,
                                                   int64_t k_stride) {
  int row, col, mn, kk;
  tiling::load_chunk_coord(q, K_CONTIG, &row, &col);
  tiling::smem_to_operand(K_CONTIG, row, col, &mn, &kk);
  const int64_t m = mn0 + mn, k = k0 + kk;
  const bool ok = m < MN && k < K;
  cp_async_16(tile + tiling::tile_offset(row, col, len), ok ? base + m * mn_stride + k * k_stride : fallback,
              ok);
}

// __launch_bounds__(256, 2): at most 128 registers, two blocks per SM
// (2 x 48 KiB of shared memory).
template <typename T, bool A_K, bool B_K>
__global__ void __launch_bounds__(tiling::kGemmThreads, 2)
    gemm_mma_kernel(GemmArgs g, GemmPlan p, const T* __restrict__ A, const T* __restrict__ B,
                    T* __restrict__ C, const T* __restrict__ bias,
                    const T* __restrict__ residual, float* __restrict__ ws,
                    int64_t batch_begin) {
  // 3 stages x (A + B) x 4096 halfs = 48 KiB of static shared memory.
  __shared__ __align__(128) T sA[kGemmStages][kGemmTileElems];
  __shared__ __align__(128) T sB[kGemmStages][kGemmTileElems];
  constexpr int a_len = A_K ? kGemmBK : kGemmBM;  // smem row length
  constexpr int b_len = B_K ? kGemmBK : kGemmBN;

  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wm = warp / tiling::kGemmWarpsN, wn = warp % tiling::kGemmWarpsN;
  const tiling::GemmBlockWork bw =
      tiling::gemm_block_work(p, blockIdx.x, blockIdx.y, blockIdx.z, batch_begin, kGemmBM, kGemmBN);
  const int64_t m0 = bw.m0, n0 = bw.n0, split = bw.split, cb = bw.cb, it0 = bw.it0, it1 = bw.it1;
  const int n_it = static_cast<int>(it1 - it0);

  // cp.async of K iteration `it` into ring slot `stage`: each thread copies
  // chunks tid and tid + 256 of both 4096-element tiles.
  auto load_stage = [&](int stage, int64_t it) {
    int64_t b, k0;
    tiling::gemm_k_iter(it, p.k_tiles_per_batch, kGemmBK, g.sum_batch, cb, &b, &k0);
    const T* Ab = A + b * g.a_bs;
    const T* Bb = B + b * g.b_bs;
#pragma unroll
    for (int i = 0; i < tiling::kGemmChunksPerTile / tiling::kGemmThreads; ++i) {
      const int q = tid + i * tiling::kGemmThreads;
      load_operand_chunk<T, A_K>(sA[stage], a_len, q, Ab, A, m0, k0, g.M, g.K, g.a_rs, g.a_cs);
      load_operand_chunk<T, B_K>(sB[stage], b_len, q, Bb, B, n0, k0, g.N, g.K, g.b_cs, g.b_rs);
    }
  };

  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;

  // Per-lane ldmatrix source coordinates (fixed for the whole kernel).
  int a_mn, a_k, b_mn, b_k;
  tiling::a_ldmatrix_src(lane, A_K, &a_mn, &a_k);
  tiling::b_ldmatrix_src(lane, B_K, &b_mn, &b_k);

#pragma unroll
  for (int s = 0; s < kGemmStages - 1; ++s) {
    if (s < n_it) load_stage(s, it0 + s);
    cp_async_commit();
  }
  for (int i = 0; i < n_it; ++i) {
    // iteration i's group has landed (at most STAGES - 2 younger ones are in
    // flight) and every warp is done with the slot about to be refilled
    cp_async_wait<kGemmStages - 2>();
    __syncthreads();
    const int nxt = i + kGemmStages - 1;
    if (nxt < n_it) load_stage(nxt % kGemmStages, it0 + nxt);
    cp_async_commit();

    const T* a_s = sA[i % kGemmStages];
    const T* b_s = sB[i % kGemmStages];
#pragma unroll
    for (int kk = 0; kk < kGemmBK; kk += tiling::kGemmMmaK) {
      uint32_t af[4][4], bf[4][2];
#pragma unroll
      for (int mt = 0; mt < 4; ++mt) {
        int row, col;
        tiling::operand_to_smem(A_K, wm * tiling::kGemmWarpM + mt * 16 + a_mn, kk + a_k, &row, &col);
        ldmatrix_x4<!A_K>(af[mt], a_s + tiling::tile_offset(row, col, a_len));
      }
#pragma unroll
      for (int np = 0; np < 2; ++np) {
        int row, col;
        tiling::operand_to_smem(B_K, wn * tiling::kGemmWarpN + np * 16 + b_mn, kk + b_k, &row, &col);
        uint32_t r[4];
        ldmatrix_x4<!B_K>(r, b_s + tiling::tile_offset(row, col, b_len));
        bf[2 * np][0] = r[0];
        bf[2 * np][1] = r[1];
        bf[2 * np + 1][0] = r[2];
        bf[2 * np + 1][1] = r[3];
      }
#pragma unroll
      for (int mt = 0; mt < 4; ++mt)
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) mma_16816<T>(acc[mt][nt], af[mt], bf[nt]);
    }
  }
  cp_async_wait<0>();

#pragma unroll
  for (int mt = 0; mt < 4; ++mt)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        int mm, nn;
        tiling::c_fragment_coord(lane, e, &mm, &nn);
        const int64_t m = m0 + wm * tiling::kGemmWarpM + mt * 16 + mm;
        const int64_t n = n0 + wn * tiling::kGemmWarpN + nt * 8 + nn;
        if (m >= g.M || n >= g.N) continue;
        if (p.splits > 1)
          ws[tiling::gemm_workspace_index(p, g, split, cb, m, n)] = acc[mt][nt][e];
        else
          epilogue_store(g, C, bias, residual, cb, m, n, acc[mt][nt][e]);
      }
}

// Split-K second stage: C = epilogue(sum over splits, in split order).
template <typename T>
__global__ void gemm_split_reduce_kernel(GemmArgs g, GemmPlan p, T* __restrict__ C,
                                         const T* __restrict__ bias,
                                         const T* __restrict__ residual,
                                         const typename Acc<T>::type* __restrict__ ws) {
  using Ac = typename Acc<T>::type;
  const int64_t per_batch = g.M * g.N, total = p.batches * per_batch;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total;
       e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t cb = e / per_batch, r = e % per_batch, m = r / g.N, n = r % g.N;
    Ac v = Ac(0);
    for (int64_t sp = 0; sp < p.splits; ++sp) v += ws[sp * total + e];
    epilogue_store(g, C, bias, residual, cb, m, n, v);
  }
}

template <typename T>
constexpr bool is_half_type() {
  return sizeof(T) == 2;
}

bool device_has_sm80() {
  int dev = 0, major = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess)
    return false;
  return major >= 8;
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

GemmPlan plan_for(DType dt, const GemmArgs& g, const void* A, const void* B) {
  const bool half = dt == DType::F16 || dt == DType::BF16;
  return tiling::gemm_plan(g, half, aligned16(A) && aligned16(B), half && device_has_sm80());
}

template <typename T>
cudaError_t launch_gemm(const GemmArgs& g, const GemmPlan& p, const T* A, const T* B, T* C,
                        const T* bias, const T* residual, void* workspace, cudaStream_t st) {
  using Ac = typename Acc<T>::type;
  if (!tiling::gemm_grid_ok(p)) return cudaErrorInvalidConfiguration;
  if (p.splits > 1 && workspace == nullptr) return cudaErrorInvalidValue;
  Ac* ws = static_cast<Ac*>(workspace);
  // C batches in chunks so that gridDim.z = splits * batches <= 65535
  const int64_t per_launch = tiling::kGridYZMax / p.splits;
  for (int64_t b0 = 0; b0 < p.batches; b0 += per_launch) {
    const int64_t nb = p.batches - b0 < per_launch ? p.batches - b0 : per_launch;
    const dim3 grid((unsigned)(p.m_on_x ? p.tiles_m : p.tiles_n),
                    (unsigned)(p.m_on_x ? p.tiles_n : p.tiles_m), (unsigned)(nb * p.splits));
    if (p.mma) {
      if constexpr (is_half_type<T>()) {
        float* wsf = reinterpret_cast<float*>(ws);
        const int tb = tiling::kGemmThreads;
        if (p.a_k_contig && p.b_k_contig)
          gemm_mma_kernel<T, true, true><<<grid, tb, 0, st>>>(g, p, A, B, C, bias, residual, wsf, b0);
        else if (p.a_k_contig)
          gemm_mma_kernel<T, true, false><<<grid, tb, 0, st>>>(g, p, A, B, C, bias, residual, wsf, b0);
        else if (p.b_k_contig)
          gemm_mma_kernel<T, false, true><<<grid, tb, 0, st>>>(g, p, A, B, C, bias, residual, wsf, b0);
        else
          gemm_mma_kernel<T, false, false><<<grid, tb, 0, st>>>(g, p, A, B, C, bias, residual, wsf, b0);
      } else {
        return cudaErrorInvalidValue;
      }
    } else {
      gemm_simt_kernel<T><<<grid, kThreads, 0, st>>>(g, p, A, B, C, bias, residual, ws, b0);
    }
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  if (p.splits > 1) {
    const int64_t total = p.batches * g.M * g.N;
    gemm_split_reduce_kernel<T><<<blocks_for(total, 256), 256, 0, st>>>(g, p, C, bias, residual, ws);
    return cudaGetLastError();
  }
  return cudaSuccess;
}

}  // namespace

size_t gemm_workspace_bytes(DType dt, const GemmArgs& g, const void* A, const void* B) {
  if (g.M == 0 || g.N == 0) return 0;
  const GemmPlan p = plan_for(dt, g, A, B);
  return static_cast<size_t>(p.workspace_elems) * (dt == DType::F64 ? 8 : 4);
}

cudaError_t gemm(DType dt, const GemmArgs& g, const void* A, const void* B,
                 void* C, const void* bias, const void* residual, void* workspace,
                 cudaStream_t stream) {
  if (g.M == 0 || g.N == 0) return cudaSuccess;
  const GemmPlan p = plan_for(dt, g, A, B);
  return MNX_CUDA_DISPATCH(dt, [&] {
    return launch_gemm<T>(g, p, static_cast<const T*>(A), static_cast<const T*>(B),
                          static_cast<T*>(C), static_cast<const T*>(bias),
                          static_cast<const T*>(residual), workspace, stream);
  });
}

}  // namespace cuda
}  // namespace mnx
