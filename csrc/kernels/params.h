// Plain parameter structs shared by the torch glue and the kernels.
//
// Everything under csrc/kernels, csrc/cpu and csrc/cuda includes this header
// and nothing from torch, so the kernels can be compiled and unit-tested on
// their own with CMake (sanitizers, cross-compiles) and CUDA files compile fast.
#pragma once

#include <cstdint>

namespace mnx {

// Memory layout of a 4-D activation tensor (input, output and their grads
// always share one layout inside a call).
enum class Layout : int32_t {
  NCHW = 0,  // torch.contiguous_format
  NHWC = 1,  // torch.channels_last
};

// Activation applied in the epilogue (inference fusion). Values are part of
// the op schema (the `activation` int argument), keep them stable.
enum class Activation : int32_t {
  None = 0,
  ReLU = 1,
  ReLU6 = 2,
  Hardswish = 3,
};

// Depthwise convolution: weight [C_in * mult, 1, KH, KW], out channel oc reads
// input channel oc / mult.
struct DepthwiseShape {
  int64_t N = 0, C = 0, H = 0, W = 0;  // input
  int64_t mult = 1;                    // channel multiplier, C_out = C * mult
  int64_t KH = 0, KW = 0;
  int64_t SH = 1, SW = 1;
  int64_t PH = 0, PW = 0;
  int64_t DH = 1, DW = 1;
  int64_t OH = 0, OW = 0;  // output
  Layout layout = Layout::NCHW;
  // forward: write a large output with non-temporal stores where the kernel
  // can (the channels_last KxK rows, dwkxk_forward_rows); set for training
  bool stream_out = false;

  int64_t C_out() const { return C * mult; }
};

inline int64_t conv_out_size(int64_t in, int64_t k, int64_t s, int64_t p,
                             int64_t d) {
  return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

// Dense convolution with few input channels (groups = 1, dilation 1): the
// network stem (cpu/conv2d_small_cin.h). Input [N, Cin, H, W], weight [Cout,
// Cin, KH, KW], output [N, Cout, OH, OW], the input in `layout`, the
// output (forward) in `out_layout`: the input's, or the other one (a fused
// network's NCHW input convolved straight into its channels_last inside;
// the gradients: both `layout`). The forward's weight in `w_layout`: NCHW
// [Cout][Cin][KH][KW], or NHWC [Cout][KH][KW][Cin] (a model moved to
// channels_last; the kernels reorder the weight per call anyway). One work
// unit = one (n, oh) output row.
struct SmallCinConvShape {
  int64_t N = 0, Cin = 0, H = 0, W = 0;
  int64_t Cout = 0, KH = 0, KW = 0;
  int64_t SH = 1, SW = 1, PH = 0, PW = 0;
  int64_t OH = 0, OW = 0;
  Layout layout = Layout::NCHW;
  Layout out_layout = Layout::NCHW;
  Layout w_layout = Layout::NCHW;
  int64_t units() const { return N * OH; }
  // offset of the forward's weight element (co, ci, kh, kw)
  int64_t w_index(int64_t co, int64_t ci, int64_t kh, int64_t kw) const {
    return w_layout == Layout::NHWC ? ((co * KH + kh) * KW + kw) * Cin + ci : ((co * Cin + ci) * KH + kh) * KW + kw;
  }
};

// Work decomposition of the depthwise kernels. The glue splits [0, units)
// over threads; a unit is independent of all others, so any split gives the
// same bits.
//  forward / grad_input:
//    NCHW: one unit = one (n, channel) output plane
//    NHWC: one unit = one (n, row) of the output
//  grad_weight: one unit = one block of kDepthwiseWeightChannelBlock output
//    channels, reduced over N, OH, OW in a fixed order (bitwise identical for
//    every thread count).
constexpr int64_t kDepthwiseWeightChannelBlock = 8;

inline int64_t depthwise_forward_units(const DepthwiseShape& s) {
  return s.layout == Layout::NCHW ? s.N * s.C_out() : s.N * s.OH;
}
inline int64_t depthwise_grad_input_units(const DepthwiseShape& s) {
  return s.layout == Layout::NCHW ? s.N * s.C : s.N * s.H;
}
// NHWC grad_weight may instead be computed as partial sums per chunk of
// (n, oh) output rows over all channels (one pass over the data), added in
// chunk order afterwards. The chunk size depends on the shape only (at least
// 4 rows, at most ~64 chunks), never on the thread count.
inline int64_t depthwise_grad_weight_row_chunk_size(const DepthwiseShape& s) {
  const int64_t rows = s.N * s.OH, by_count = (rows + 63) / 64;
  return by_count > 4 ? by_count : 4;
}
inline int64_t depthwise_grad_weight_row_chunks(const DepthwiseShape& s) {
  const int64_t cs = depthwise_grad_weight_row_chunk_size(s);
  return (s.N * s.OH + cs - 1) / cs;
}
inline int64_t depthwise_grad_weight_units(const DepthwiseShape& s) {
  return (s.C_out() + kDepthwiseWeightChannelBlock - 1) /
         kDepthwiseWeightChannelBlock;
}

// Generic strided, batched GEMM used by the pointwise (1x1) convolution:
//   C_b[M, N] (+)= A_b[M, K] * B_b[K, N]      for b in [0, batch)
// A(m, k) = A[b * a_bs + m * a_rs + k * a_cs], likewise B; C is row-major
// with leading dimension ldc. The tensor is used as it lies in memory: the
// strides express NCHW or NHWC, plain or transposed, without any copy.
//
// If sum_batch, all batches accumulate into the same C (no c_bs), in batch
// order: used for weight gradients (deterministic).
// Epilogue (applied once, after the full K / batch reduction):
//   v = acc + bias[m or n]; v = act(v); v += residual(m, n)
struct GemmArgs {
  int64_t M = 0, N = 0, K = 0;
  int64_t batch = 1;
  int64_t a_rs = 0, a_cs = 0, a_bs = 0;
  int64_t b_rs = 0, b_cs = 0, b_bs = 0;
  int64_t ldc = 0, c_bs = 0;
  bool sum_batch = false;
  bool bias_per_row = true;  // bias indexed by m (true) or by n (false)
  Activation act = Activation::None;
  // residual uses C's indexing (ldc, c_bs)
  // > 0: A (B) is packed in panels of a_panel rows (b_panel columns) over
  // the whole K, as cpu::gemm_pack_panels writes them: A(m, k) =
  // A[((m / P) * K + k) * P + m % P], B(k, n) = B[((n / P) * K + k) * P +
  // n % P]; that operand's strides are then ignored. It is shared by the
  // batch entries, sum_batch is off, and it is 64-byte aligned (the blocked
  // kernels load packed panels with aligned loads). Every kernel reads it; the blocked
  // ones read it in place (no packing per call) when the panel is their MR
  // (A) or NR (B) tile, as the GemmKernels table gives it.
  int64_t a_panel = 0, b_panel = 0;
  // > 0: each batch entry is a group of images whose columns are merged
  // into one product (NCHW pointwise GEMMs on small maps, whose HW columns
  // per image would leave the micro-kernel's last column panel mostly
  // padding): N is images per entry * merged_hw, and virtual column j is
  // pixel p = j % merged_hw of the entry's image i = j / merged_hw:
  // B(k, j) = B[b * b_bs + i * b_is + k * b_rs + p * b_cs], C(m, j) and the
  // residual at C[b * c_bs + i * c_is + m * ldc + p]. The bias is per row
  // (bias_per_row), B is not packed (b_panel 0), sum_batch is off.
  int64_t merged_hw = 0, b_is = 0, c_is = 0;
  // Write C with non-temporal stores where the blocked CPU kernels can: the
  // final stores of whole vectors, when C is large and aligned (vec.h,
  // stream_output). Same values; a hint that C is not read again soon.
  bool stream_c = false;
};

// Offsets of virtual column n in a batch entry's B (at k = 0) and C (at
// m = 0): n * b_cs and n, or the merged mapping above.
inline int64_t gemm_b_col(const GemmArgs& g, int64_t n) {
  return g.merged_hw > 0 ? (n / g.merged_hw) * g.b_is + (n % g.merged_hw) * g.b_cs : n * g.b_cs;
}
inline int64_t gemm_c_col(const GemmArgs& g, int64_t n) {
  return g.merged_hw > 0 ? (n / g.merged_hw) * g.c_is + n % g.merged_hw : n;
}

// C[M, Co] = act(A[M, Ci] W^T + bias): A's rows Ci floats apart (NHWC
// pixels, or a batch of vectors), W [Co, Ci] row-major read as B = W^T, bias
// per column. The channels_last 1x1 forward, the linear layers of
// squeeze-excitation and the band steps of the MobileNet block op.
inline GemmArgs gemm_rows_times_weight_t(int64_t M, int64_t Ci, int64_t Co, Activation act) {
  GemmArgs g;
  g.M = M;
  g.N = Co;
  g.K = Ci;
  g.batch = 1;
  g.a_rs = Ci;
  g.a_cs = 1;
  g.b_rs = 1;
  g.b_cs = Ci;
  g.ldc = Co;
  g.bias_per_row = false;
  g.act = act;
  return g;
}

// A GEMM is split into tiles of C (kGemmTileM x kGemmTileN) per batch entry
// (or per C when sum_batch). Each tile reduces its full K (and batch), so
// tiles are independent and results do not depend on the thread count.
// Tiles are small (fine-grained load balance at batch 1); the blocked kernels
// group the consecutive tiles of one call BLIS-style, so packed panels are
// shared across tiles and the small tile costs no packing efficiency.
constexpr int64_t kGemmTileM = 24;  // multiple of the micro-kernel rows (6, 8, 12)
constexpr int64_t kGemmTileN = 64;  // multiple of the micro-kernel cols (8, 16, 32)

inline int64_t gemm_tiles_m(const GemmArgs& g) {
  return (g.M + kGemmTileM - 1) / kGemmTileM;
}
inline int64_t gemm_tiles_n(const GemmArgs& g) {
  return (g.N + kGemmTileN - 1) / kGemmTileN;
}
inline int64_t gemm_units(const GemmArgs& g) {
  return (g.sum_batch ? 1 : g.batch) * gemm_tiles_m(g) * gemm_tiles_n(g);
}

// The CPU GEMMs compute C as dot products of A rows and B columns read in
// place (cpu/generic/gemm_kernels.h, gemm_small_m) when C has at most
// kGemmSmallM rows per batch entry, or at most kGemmDotsMaxM with K from
// kGemmDotsMinK, and both are contiguous along k (not packed): a
// matrix-vector product gains nothing from packing B, and a few rows against
// a long K not enough to pay for it. Linear layers (K 576-1280, N 1000-1280),
// 2 threads, Intel Xeon AVX-512, against the blocked path with the weight
// prepacked (fused model): batch 8 0.82-0.93x, 12 0.82-0.91x, 16 0.77-0.88x,
// 32 1.04-1.34x (hence 16); unpacked, batch 8, 1024->1000: 0.42 -> 0.09 ms.
constexpr int64_t kGemmSmallM = 4;
constexpr int64_t kGemmDotsMaxM = 16;
constexpr int64_t kGemmDotsMinK = 512;
inline bool gemm_small_m_applies(const GemmArgs& g) {
  return g.M >= 1 && (g.M <= kGemmSmallM || (g.M <= kGemmDotsMaxM && g.K >= kGemmDotsMinK)) && g.a_cs == 1 && g.b_rs == 1 && !g.sum_batch &&
         g.a_panel == 0 && g.b_panel == 0 && g.merged_hw == 0 && g.K > 0;
}

// Both operands k-major and read in place (cpu/generic/gemm_kernels.h,
// gemm_kmajor): A with unit row stride (A[m][k] at m + k * a_cs) and B with
// unit column stride (B[k][n] at k * b_rs + n), as in the channels_last
// weight gradient (gY^T X or X^T gY, K = N*H*W pixels). With few rows of C
// (one channel count small) the blocked path packs the wide operand once
// per K block to use it for one or two row panels; read in place, each
// pixel's rows are loaded once per tile. Per element the same FMA chain in k
// order as the blocked path, so the same bits. Only without an epilogue.
// K from 512 (it was 4096 while the masked-tail tiles spilled): Intel Xeon
// AVX-512, 2 threads, channels_last weight gradient, median of 3 alternating
// runs against 4096: 72->24 at 28x28 batch 2 0.48x, 24->144 at 28x28 batch
// 2 0.54x, 240->40 at 14x14 batch 8 0.67x, 24->72 at 28x28 batch 1 (K 784)
// 0.53x, 64->384 at 14x14 batch 4 (K 784) 1.04x, 80->480 0.99x.
constexpr int64_t kGemmKmajorMaxM = 64;
constexpr int64_t kGemmKmajorMinK = 512;
inline bool gemm_kmajor_applies(const GemmArgs& g) {
  return g.M >= 1 && g.M <= kGemmKmajorMaxM && g.K >= kGemmKmajorMinK && g.N >= 1 && g.a_rs == 1 &&
         g.b_cs == 1 && !g.sum_batch && g.a_panel == 0 && g.b_panel == 0 && g.merged_hw == 0 &&
         g.act == Activation::None;
}

}  // namespace mnx
