// Launch and tiling decisions of the CUDA kernels, as plain C++ (no CUDA or
// torch header needed): which kernel handles which shape, block and grid
// sizes, the index arithmetic of tiles, shared-memory layouts (swizzles),
// the lane/fragment maps of the tensor-core GEMM and workspace sizes.
//
// The .cu files and the host glue use these functions, and
// tests/cpp/test_cuda_tiling.cpp checks them on the CPU (tiles cover every
// output exactly once, halos stay in bounds, swizzles are bijections and free
// of ldmatrix bank conflicts, a CPU replay of the tiled algorithms equals the
// plain convolution / GEMM, 64-bit index arithmetic). Functions marked MNX_HD
// run on both the host and the device.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../kernels/host_device.h"
#include "../kernels/params.h"

namespace mnx {
namespace cuda {
namespace tiling {

constexpr int64_t kInt32Max = 0x7fffffffLL;
constexpr int64_t kGridXMax = 0x7fffffffLL;
constexpr int64_t kGridYZMax = 65535;
constexpr int64_t kStaticSmemMax = 48 * 1024;

MNX_HD int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Square kernel 3x3 / 5x5 / 7x7, equal strides 1 or 2, no dilation: the
// shapes with compile-time specialised depthwise kernels.
inline int specialised_kernel_size(const DepthwiseShape& s) {
  if (s.KH != s.KW || s.DH != 1 || s.DW != 1) return 0;
  if (s.KH != 3 && s.KH != 5 && s.KH != 7) return 0;
  return static_cast<int>(s.KH);
}
inline int specialised_stride(const DepthwiseShape& s) {
  if (s.SH != s.SW || (s.SH != 1 && s.SH != 2)) return 0;
  return static_cast<int>(s.SH);
}

// The output size recorded in s matches its input size, kernel, stride,
// padding and dilation (used when a backward pass is recast as a forward).
inline bool conv_out_check(const DepthwiseShape& s) {
  return conv_out_size(s.H, s.KH, s.SH, s.PH, s.DH) == s.OH &&
         conv_out_size(s.W, s.KW, s.SW, s.PW, s.DW) == s.OW;
}

// Stride-1, multiplier-1 grad_input as a forward convolution: input gy
// (OH x OW), kernel flipped in both axes, padding K - 1 - P, output H x W.
// False when the shape does not qualify.
inline bool dw_grad_input_as_forward_shape(const DepthwiseShape& s, DepthwiseShape* t) {
  if (s.mult != 1 || s.SH != 1 || s.SW != 1 || s.DH != 1 || s.DW != 1 ||
      s.KH != s.KW || s.PH < 0 || s.PW < 0 || s.PH > s.KH - 1 || s.PW > s.KW - 1)
    return false;
  *t = s;
  t->H = s.OH;
  t->W = s.OW;
  t->OH = s.H;
  t->OW = s.W;
  t->PH = s.KH - 1 - s.PH;
  t->PW = s.KW - 1 - s.PW;
  return conv_out_check(*t);
}

// ---------------------------------------------------------------------------
// Depthwise forward, NCHW, tiled (depthwise_forward.cu,
// depthwise_forward_nchw_tiled_kernel<T, K, S>).
//
// A block of tx * ty * tz threads computes tz output planes (n, oc) at once,
// each over a tile of out_h x out_w outputs, out_w = tx, out_h = ty * R
// (R = kDwRowsPerThread). The block first copies the input tile with its halo,
// in_h x in_w = ((out_h - 1) * S + K) x ((out_w - 1) * S + K) elements
// starting at input (oh0 * S - P, ow0 * S - P), into shared memory (zeros
// outside the image), then thread (x, y) computes the column ow0 + x, rows
// oh0 + y * R + r (r < R): it walks the (R - 1) * S + K input rows it needs
// once, keeps one row's K taps in registers and adds them to every output
// row that uses that input row (a register sliding window along H).
// Small planes (7x7, 14x14) get narrow tiles and several planes per block.
// ---------------------------------------------------------------------------
constexpr int kDwRowsPerThread = 4;
constexpr int kDwThreads = 256;

struct DwNchwTiles {
  int tx = 0, ty = 0, tz = 0;        // block = (tx, ty, tz) threads
  int out_h = 0, out_w = 0;          // outputs per plane tile
  int in_h = 0, in_w = 0;            // input tile incl. halo
  int64_t tiles_h = 0, tiles_w = 0;  // tiles per plane
  int64_t planes = 0;                // N * C_out
  int64_t plane_groups = 0;          // ceil(planes / tz)
  int64_t blocks = 0;                // plane_groups * tiles_h * tiles_w
  int64_t smem_bytes = 0;            // tz * in_h * in_w * elem_bytes
};

inline bool dw_nchw_tiled_eligible(const DepthwiseShape& s) {
  if (s.layout != Layout::NCHW) return false;
  const int K = specialised_kernel_size(s), S = specialised_stride(s);
  if (K == 0 || S == 0) return false;
  // halo coordinates in int: padding below the kernel size, planes < 2^31
  if (s.PH < 0 || s.PW < 0 || s.PH >= K || s.PW >= K) return false;
  if (s.H * s.W > kInt32Max || s.OH * s.OW > kInt32Max) return false;
  if (s.H > kInt32Max / 4 || s.W > kInt32Max / 4) return false;
  return s.N * s.C_out() * s.OH * s.OW > 0;
}

MNX_HD int next_pow2(int64_t v) {
  int p = 1;
  while (p < v && p < (1 << 30)) p <<= 1;
  return p;
}

inline DwNchwTiles dw_nchw_tiles(const DepthwiseShape& s, int elem_bytes) {
  DwNchwTiles t;
  const int K = static_cast<int>(s.KH), S = static_cast<int>(s.SH);
  const int R = kDwRowsPerThread;
  t.tx = next_pow2(s.OW);
  if (t.tx < 4) t.tx = 4;
  if (t.tx > 32) t.tx = 32;
  const int64_t row_groups = ceil_div(s.OH, R);
  int64_t ty = kDwThreads / t.tx;
  if (ty > row_groups) ty = row_groups;
  // one plane's halo tile must fit the static shared-memory limit (tall,
  // narrow maps in float64)
  while (ty > 1 && static_cast<int64_t>((ty * R - 1) * S + K) * ((t.tx - 1) * S + K) *
                           elem_bytes > kStaticSmemMax)
    --ty;
  t.ty = static_cast<int>(ty);
  t.out_w = t.tx;
  t.out_h = t.ty * R;
  t.in_h = (t.out_h - 1) * S + K;
  t.in_w = (t.out_w - 1) * S + K;
  t.planes = s.N * s.C_out();
  const int64_t plane_bytes = static_cast<int64_t>(t.in_h) * t.in_w * elem_bytes;
  int64_t tz = kDwThreads / (t.tx * t.ty);
  if (tz > t.planes) tz = t.planes;
  while (tz > 1 && tz * plane_bytes > kStaticSmemMax) --tz;
  if (tz < 1) tz = 1;
  t.tz = static_cast<int>(tz);
  t.tiles_h = ceil_div(s.OH, t.out_h);
  t.tiles_w = ceil_div(s.OW, t.out_w);
  t.plane_groups = ceil_div(t.planes, t.tz);
  t.blocks = t.plane_groups * t.tiles_h * t.tiles_w;
  t.smem_bytes = t.tz * plane_bytes;
  return t;
}

// Block index -> (first plane of the block, tile origin in the output).
struct DwNchwTileOrigin {
  int64_t plane0;
  int oh0, ow0;
};
MNX_HD DwNchwTileOrigin dw_nchw_tile_origin(const DwNchwTiles& t, int64_t block) {
  DwNchwTileOrigin o;
  const int64_t tw = block % t.tiles_w;
  const int64_t r = block / t.tiles_w;
  const int64_t th = r % t.tiles_h;
  o.plane0 = (r / t.tiles_h) * t.tz;
  o.oh0 = static_cast<int>(th * t.out_h);
  o.ow0 = static_cast<int>(tw * t.out_w);
  return o;
}

// ---------------------------------------------------------------------------
// Depthwise forward, channels_last, vectorised along C
// (depthwise_forward_nhwc_vec_kernel<T, K, S>).
//
// One 16-byte vector holds V = 16 / sizeof(T) consecutive channels (8 halfs,
// 4 floats, 2 doubles). Thread (x, y) of a block owns the channel vector
// cblock * tx + x and kDwNhwcColsPerThread consecutive output columns of one
// output row: group g = blockIdx.x * ty + y of the flattened
// (n, oh, column group) index. For every input row it loads the
// (cols - 1) * S + K input vectors once (16-byte loads, coalesced across x)
// and adds each to the outputs that use it. The block's weights are
// transposed once into shared memory as float [K*K][tx * V] so a tap's
// weights for a vector are one contiguous read.
// Needs mult == 1, C % V == 0 and 16-byte aligned x / y.
// ---------------------------------------------------------------------------
constexpr int kDwNhwcColsPerThread = 4;

struct DwNhwcTiles {
  int vec = 0;                 // channels per 16-byte vector
  int tx = 0, ty = 0;          // block = (tx, ty)
  int64_t col_groups = 0;      // ceil(OW / cols per thread)
  int64_t groups = 0;          // N * OH * col_groups
  int64_t grid_x = 0, grid_y = 0;
  int64_t smem_bytes = 0;      // K*K * tx*V accumulator-typed weights
};

inline bool dw_nhwc_vec_eligible(const DepthwiseShape& s, int elem_bytes) {
  if (s.layout != Layout::NHWC || s.mult != 1) return false;
  if (specialised_kernel_size(s) == 0 || specialised_stride(s) == 0) return false;
  const int vec = 16 / elem_bytes;
  return s.C % vec == 0 && s.N * s.C * s.OH * s.OW > 0;
}

inline DwNhwcTiles dw_nhwc_tiles(const DepthwiseShape& s, int elem_bytes,
                                 int acc_bytes) {
  DwNhwcTiles t;
  t.vec = 16 / elem_bytes;
  const int64_t cvecs = s.C / t.vec;
  t.tx = static_cast<int>(cvecs < 32 ? cvecs : 32);
  // the block's transposed weights must fit the static shared-memory limit
  // (7x7 in fp16 / bf16: 49 taps x 8 channels x 4 bytes per vector lane)
  while (t.tx > 1 && s.KH * s.KW * t.tx * t.vec * acc_bytes > kStaticSmemMax) t.tx /= 2;
  t.ty = 128 / t.tx;
  if (t.ty < 1) t.ty = 1;
  t.col_groups = ceil_div(s.OW, kDwNhwcColsPerThread);
  t.groups = s.N * s.OH * t.col_groups;
  t.grid_x = ceil_div(t.groups, t.ty);
  t.grid_y = ceil_div(cvecs, t.tx);
  t.smem_bytes = s.KH * s.KW * t.tx * t.vec * acc_bytes;
  return t;
}

// ---------------------------------------------------------------------------
// Depthwise grad_weight in one pass, deterministic
// (depthwise_backward.cu, depthwise_grad_weight_partial_*_kernel and
// depthwise_grad_weight_reduce_kernel).
//
// Stage 1: the N * OH output rows are cut into `chunks` fixed chunks of
// chunk_rows rows. Block (group, chunk) reads its rows once and keeps all
// K*K taps of its channel(s) in accumulator-typed registers; the block
// reduces them (warp shuffles with a fixed butterfly, then shared memory in
// warp order) and writes workspace[chunk][oc][tap].
//   NCHW: one output channel per block (group = oc), 256 threads over the
//         chunk's outputs.
//   NHWC: 32 consecutive channels per block (threadIdx.x), 8 row lanes
//         (threadIdx.y), reduced over y in shared memory.
// Stage 2: one thread per (oc, tap) adds the chunks in chunk order.
// The chunking depends on the shape only, so every run, every GPU and every
// stream gives the same bits; there are no atomics.
// ---------------------------------------------------------------------------
constexpr int kDwWeightThreads = 256;
constexpr int kDwWeightNhwcChannels = 32;
constexpr int kDwWeightNhwcRows = 8;
constexpr int64_t kDwWeightTargetBlocks = 2048;
constexpr int64_t kDwWeightMaxChunks = 256;

struct DwWeightPlan {
  int64_t groups = 0;      // blocks along channels
  int64_t chunks = 0;      // blocks along N * OH
  int64_t chunk_rows = 0;  // output rows per chunk
  int64_t workspace_elems = 0;  // chunks * C_out * K*K accumulators
};

inline bool dw_weight_one_pass_eligible(const DepthwiseShape& s) {
  return s.KH == s.KW && (s.KH == 3 || s.KH == 5 || s.KH == 7) &&
         s.N * s.OH > 0 && s.OW > 0;
}

inline DwWeightPlan dw_weight_plan(const DepthwiseShape& s) {
  DwWeightPlan p;
  const int64_t Co = s.C_out();
  p.groups = s.layout == Layout::NCHW ? Co : ceil_div(Co, kDwWeightNhwcChannels);
  const int64_t rows = s.N * s.OH;
  int64_t chunks = ceil_div(kDwWeightTargetBlocks, p.groups > 0 ? p.groups : 1);
  if (chunks > kDwWeightMaxChunks) chunks = kDwWeightMaxChunks;
  if (chunks > rows) chunks = rows;
  if (chunks < 1) chunks = 1;
  p.chunk_rows = ceil_div(rows, chunks);
  p.chunks = ceil_div(rows, p.chunk_rows);  // no empty chunk
  p.workspace_elems = p.chunks * Co * s.KH * s.KW;
  return p;
}

// Output rows [row0, row1) of chunk `chunk` (rows: n * OH + oh).
MNX_HD void dw_weight_chunk_rows(const DepthwiseShape& s, const DwWeightPlan& p, int64_t chunk,
                                 int64_t* row0, int64_t* row1) {
  const int64_t rows = s.N * s.OH;
  *row0 = chunk * p.chunk_rows;
  *row1 = *row0 + p.chunk_rows < rows ? *row0 + p.chunk_rows : rows;
}

// ---------------------------------------------------------------------------
// Tensor-core GEMM for fp16 / bf16 (pointwise_gemm.cu,
// gemm_mma_kernel<T, A_K_CONTIG, B_K_CONTIG>): mma.sync.m16n8k16 with float
// accumulation, operands staged by cp.async in a kGemmStages-deep ring of
// shared-memory tiles and read by ldmatrix.
//
// Block tile 128 x 128 x 32, 8 warps as 2 (M) x 4 (N), warp tile 64 x 32 =
// 4 x 4 mma tiles of 16 x 8. Operands are used as they lie in memory:
//   A(m, k) k-contiguous ("A_K", a_cs == 1): smem tile [128 m][32 k]
//   A(m, k) m-contiguous ("A_M", a_rs == 1): smem tile [32 k][128 m]
//   B(k, n) k-contiguous ("B_K", b_rs == 1): smem tile [128 n][32 k]
//   B(k, n) n-contiguous ("B_N", b_cs == 1): smem tile [32 k][128 n]
// A tile row of L halfs is L / 8 chunks of 16 bytes; chunk c of row r is
// stored at chunk swizzle(r, c) (XOR) so that the 8 row addresses of one
// ldmatrix phase hit 8 different bank groups. ldmatrix (non-transposed for
// A_K / B_K, .trans for A_M / B_N) yields the mma fragments directly.
// Loads need 16-byte chunks: the contiguous extent and the other strides
// multiples of 8 elements and 16-byte aligned bases; other shapes use the
// SIMT kernel.
//
// Split-K: when the C tiles alone are too few blocks (late layers with
// small spatial maps, weight gradients), the K iterations (over the batch
// too when sum_batch) are split into `splits` contiguous ranges; each writes
// float partials to workspace[split][batch][M][N] and a second kernel adds
// them in split order and applies the epilogue (deterministic).
// ---------------------------------------------------------------------------
constexpr int kGemmBM = 128, kGemmBN = 128, kGemmBK = 32;
constexpr int kGemmStages = 3;
constexpr int kGemmThreads = 256;
constexpr int kGemmWarpsM = 2, kGemmWarpsN = 4;
constexpr int kGemmWarpM = kGemmBM / kGemmWarpsM;  // 64
constexpr int kGemmWarpN = kGemmBN / kGemmWarpsN;  // 32
constexpr int kGemmMmaM = 16, kGemmMmaN = 8, kGemmMmaK = 16;
constexpr int kGemmTileElems = kGemmBM * kGemmBK;  // per operand and stage
static_assert(kGemmBM == kGemmBN, "A and B tiles share one shape");

// 16-byte chunk position of logical chunk c in row r of a tile whose rows
// are `chunks_per_row` chunks long (4 for a 32-half row, 16 for 128).
MNX_HD int swizzle_chunk(int r, int c, int chunks_per_row) {
  return chunks_per_row >= 8 ? (c ^ (r & 7)) : (c ^ ((r >> 1) & (chunks_per_row - 1)));
}
// Element offset (in elements) of (row, col) in a tile of rows `row_len`
// elements long, 8 elements per chunk.
MNX_HD int tile_offset(int row, int col, int row_len) {
  return row * row_len + swizzle_chunk(row, col >> 3, row_len >> 3) * 8 + (col & 7);
}

// Tile of one operand: rows x row_len in smem coordinates.
//   k-contiguous operand: rows = 128 (m or n), row_len = 32 (k)
//   m/n-contiguous operand: rows = 32 (k), row_len = 128 (m or n)
MNX_HD int operand_row_len(bool k_contig) { return k_contig ? kGemmBK : kGemmBM; }

// cp.async work split: chunk q (0 .. 511) of a 4096-element tile ->
// (smem row, first smem col). Thread t copies chunks t and t + 256.
constexpr int kGemmChunksPerTile = kGemmTileElems / 8;  // 512
MNX_HD void load_chunk_coord(int q, bool k_contig, int* row, int* col) {
  const int cpr = operand_row_len(k_contig) / 8;
  *row = q / cpr;
  *col = (q % cpr) * 8;
}

// ldmatrix.x4 source row of `lane` (smem coordinates relative to the
// 16 x 16 sub-tile's origin), for the A operand of one m16 x k16 step:
//   A_K ([m][k], no trans): lane -> m = lane % 16, k = (lane / 16) * 8
//   A_M ([k][m], .trans):   lane -> k = lane % 8 + (lane / 16) * 8,
//                                   m = ((lane / 8) % 2) * 8
// giving registers a0..a3 = (m 0-7, k 0-7), (m 8-15, k 0-7), (m 0-7, k 8-15),
// (m 8-15, k 8-15) as mma.m16n8k16 wants them.
MNX_HD void a_ldmatrix_src(int lane, bool k_contig, int* m, int* k) {
  if (k_contig) {
    *m = lane % 16;
    *k = (lane / 16) * 8;
  } else {
    *k = lane % 8 + (lane / 16) * 8;
    *m = ((lane / 8) % 2) * 8;
  }
}
// Same for B over two adjacent n8 tiles (n 0-15, k 0-15): registers
// r0, r1 = b0, b1 of the first n8 tile, r2, r3 = b0, b1 of the second.
//   B_K ([n][k], no trans): lane -> n = lane % 8 + (lane / 16) * 8,
//                                   k = ((lane / 8) % 2) * 8
//   B_N ([k][n], .trans):   lane -> k = lane % 8 + ((lane / 8) % 2) * 8,
//                                   n = (lane / 16) * 8
MNX_HD void b_ldmatrix_src(int lane, bool k_contig, int* n, int* k) {
  if (k_contig) {
    *n = lane % 8 + (lane / 16) * 8;
    *k = ((lane / 8) % 2) * 8;
  } else {
    *k = lane % 8 + ((lane / 8) % 2) * 8;
    *n = (lane / 16) * 8;
  }
}
// Accumulator element i (0..3) of `lane` in a 16 x 8 mma tile.
MNX_HD void c_fragment_coord(int lane, int i, int* m, int* n) {
  *m = lane / 4 + (i / 2) * 8;
  *n = (lane % 4) * 2 + (i % 2);
}

// Global -> smem coordinates: (smem row, smem col) of a tile -> (m or n, k)
// relative to the tile origin.
MNX_HD void smem_to_operand(bool k_contig, int row, int col, int* mn, int* k) {
  if (k_contig) {
    *mn = row;
    *k = col;
  } else {
    *k = row;
    *mn = col;
  }
}
MNX_HD void operand_to_smem(bool k_contig, int mn, int k, int* row, int* col) {
  if (k_contig) {
    *row = mn;
    *col = k;
  } else {
    *row = k;
    *col = mn;
  }
}

struct GemmPlan {
  bool mma = false;             // tensor-core kernel (else the SIMT kernel)
  bool a_k_contig = true, b_k_contig = false;
  int bm = 0, bn = 0, bk = 0;   // block tile of the chosen kernel
  int64_t tiles_m = 0, tiles_n = 0;
  bool m_on_x = true;           // M tiles on gridDim.x (2^31 - 1), N tiles on y
  int64_t batches = 1;          // C batches (1 when sum_batch)
  int64_t k_tiles_per_batch = 0;
  int64_t k_iters = 0;          // K iterations over all summed batches
  int64_t splits = 1;           // split-K ranges
  int64_t iters_per_split = 0;
  int64_t workspace_elems = 0;  // accumulator partials, 0 without split-K
};

// Whether an operand can be loaded in 16-byte chunks along its contiguous
// dimension: extent and the other strides multiples of 8 elements.
inline bool chunkable(int64_t contig_extent, int64_t other_stride, int64_t batch_stride) {
  return contig_extent % 8 == 0 && other_stride % 8 == 0 && batch_stride % 8 == 0;
}
// Whether a GEMM operand with extents K and MN (M for A, N for B) and
// strides k_stride, mn_stride, batch_stride can be loaded in 16-byte chunks,
// contiguous along K (sets *k_contig = true) or along MN (false); *k_contig
// is left as it is when it cannot.
inline bool chunkable_operand(int64_t K, int64_t MN, int64_t k_stride, int64_t mn_stride,
                              int64_t batch_stride, bool* k_contig) {
  if (k_stride == 1 && chunkable(K, mn_stride, batch_stride)) {
    *k_contig = true;
    return true;
  }
  if (mn_stride == 1 && chunkable(MN, k_stride, batch_stride)) {
    *k_contig = false;
    return true;
  }
  return false;
}

// SIMT kernel (fp32 / fp64 and the shapes the tensor-core kernel cannot
// load): 64 x 64 block tile, K staged 16 at a time.
constexpr int kSimtTile = 64, kSimtBK = 16, kSimtThreads = 256;

// Split-K decision: only when the C tiles give fewer blocks than a fixed
// target (independent of the device, so the summation order is the same on
// every GPU), at least kGemmMinItersPerSplit K iterations per split.
constexpr int64_t kGemmSplitTargetBlocks = 264;
constexpr int64_t kGemmMaxSplits = 16;
constexpr int64_t kGemmMinItersPerSplit = 4;
constexpr int64_t kGemmMaxWorkspaceElems = int64_t(32) << 20;

inline void gemm_plan_splits(GemmPlan& p, const GemmArgs& g) {
  p.tiles_m = ceil_div(g.M, p.bm);
  p.tiles_n = ceil_div(g.N, p.bn);
  // gridDim.y is limited to 65535: the larger tile count goes on x
  p.m_on_x = p.tiles_n <= kGridYZMax;
  p.k_tiles_per_batch = ceil_div(g.K, p.bk);
  p.k_iters = p.k_tiles_per_batch * (g.sum_batch ? g.batch : 1);
  const int64_t blocks = p.tiles_m * p.tiles_n * p.batches;
  int64_t splits = 1;
  if (blocks > 0 && blocks < kGemmSplitTargetBlocks) {
    splits = ceil_div(kGemmSplitTargetBlocks, blocks);
    const int64_t by_iters = p.k_iters / kGemmMinItersPerSplit;
    if (splits > by_iters) splits = by_iters;
    if (splits > kGemmMaxSplits) splits = kGemmMaxSplits;
    while (splits > 1 && splits * p.batches * g.M * g.N > kGemmMaxWorkspaceElems) --splits;
    if (splits < 1) splits = 1;
  }
  p.iters_per_split = p.k_iters > 0 ? ceil_div(p.k_iters, splits) : 0;
  p.splits = p.k_iters > 0 ? ceil_div(p.k_iters, p.iters_per_split) : 1;  // no empty split
  if (p.splits * p.batches > kGridYZMax) {
    p.splits = 1;
    p.iters_per_split = p.k_iters;
  }
  p.workspace_elems = p.splits > 1 ? p.splits * p.batches * g.M * g.N : 0;
}

// Plan of a GEMM call. `half_type`: fp16 / bf16; `aligned16`: A and B base
// pointers 16-byte aligned; `sm80`: the device has mma.sync m16n8k16.
inline GemmPlan gemm_plan(const GemmArgs& g, bool half_type, bool aligned16, bool sm80) {
  GemmPlan p;
  p.batches = g.sum_batch ? 1 : g.batch;
  if (half_type && aligned16 && sm80 && g.M > 0 && g.N > 0 && g.K > 0) {
    // A(m, k) = A[m * a_rs + k * a_cs], B(k, n) = B[k * b_rs + n * b_cs]
    const bool a_ok = chunkable_operand(g.K, g.M, g.a_cs, g.a_rs, g.a_bs, &p.a_k_contig);
    const bool b_ok = chunkable_operand(g.K, g.N, g.b_rs, g.b_cs, g.b_bs, &p.b_k_contig);
    p.mma = a_ok && b_ok;
  }
  if (p.mma) {
    p.bm = kGemmBM;
    p.bn = kGemmBN;
    p.bk = kGemmBK;
  } else {
    p.bm = p.bn = kSimtTile;
    p.bk = kSimtBK;
  }
  gemm_plan_splits(p, g);
  return p;
}

// K iteration `it` (0 .. k_iters) of C batch c_batch -> (batch of the
// operands, first k of the iteration).
MNX_HD void gemm_k_iter(int64_t it, int64_t k_tiles_per_batch, int bk, bool sum_batch,
                        int64_t c_batch, int64_t* batch, int64_t* k0) {
  if (sum_batch) {
    *batch = it / k_tiles_per_batch;
    *k0 = (it % k_tiles_per_batch) * bk;
  } else {
    *batch = c_batch;
    *k0 = it * bk;
  }
}

// Grid dimensions of the GEMM kernels (z: splits x C batches of a launch)
// and block (x, y) -> tile (m, n).
inline bool gemm_grid_ok(const GemmPlan& p) {
  const int64_t x = p.m_on_x ? p.tiles_m : p.tiles_n, y = p.m_on_x ? p.tiles_n : p.tiles_m;
  return x <= kGridXMax && y <= kGridYZMax && p.splits <= kGridYZMax;
}
MNX_HD void gemm_block_tile(const GemmPlan& p, int64_t bx, int64_t by, int64_t* tm, int64_t* tn) {
  *tm = p.m_on_x ? bx : by;
  *tn = p.m_on_x ? by : bx;
}

// Range of K iterations of split `split`.
MNX_HD void gemm_split_range(const GemmPlan& p, int64_t split, int64_t* begin, int64_t* end) {
  *begin = split * p.iters_per_split;
  const int64_t e = *begin + p.iters_per_split;
  *end = e < p.k_iters ? e : p.k_iters;
}

// The work of GEMM block (bx, by, bz) of a launch whose first C batch is
// batch_begin, with bm x bn block tiles: the origin (m0, n0) of its C tile,
// its split and C batch, and its K iterations [it0, it1).
struct GemmBlockWork {
  int64_t m0, n0, split, cb, it0, it1;
};
MNX_HD GemmBlockWork gemm_block_work(const GemmPlan& p, int64_t bx, int64_t by, int64_t bz,
                                     int64_t batch_begin, int bm, int bn) {
  GemmBlockWork w;
  int64_t tm, tn;
  gemm_block_tile(p, bx, by, &tm, &tn);
  w.m0 = tm * bm;
  w.n0 = tn * bn;
  w.split = bz % p.splits;
  w.cb = batch_begin + bz / p.splits;
  gemm_split_range(p, w.split, &w.it0, &w.it1);
  return w;
}

// Offset of (split, c batch, m, n) in the split-K workspace.
MNX_HD int64_t gemm_workspace_index(const GemmPlan& p, const GemmArgs& g, int64_t split,
                                    int64_t cb, int64_t m, int64_t n) {
  return ((split * p.batches + cb) * g.M + m) * g.N + n;
}

}  // namespace tiling
}  // namespace cuda
}  // namespace mnx
