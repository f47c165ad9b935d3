// CPU checks of the CUDA kernels' launch and tiling logic (csrc/cuda/
// cuda_tiling.h), no GPU needed: the index arithmetic each kernel uses is
// replayed here with the header's own functions, block by block and thread
// by thread, and the result is compared with a plain convolution / GEMM.
//  - depthwise NCHW tiles: every output written exactly once, shared-memory
//    reads inside the halo tile, tile reads equal the image (or padding),
//    block/shared-memory limits; the replayed kernel equals the convolution
//    (also for stride-1 grad_input run as a flipped forward convolution).
//  - depthwise NHWC vector tiles: coverage and replay.
//  - grad_weight plan: chunks cover the rows once, replay of both stages
//    (warp butterfly + warp-order sums) equals the reference.
//  - tensor-core GEMM: swizzle is a bijection per row and free of ldmatrix
//    bank conflicts, cp.async chunks cover each tile once, the lane maps of
//    ldmatrix / mma.m16n8k16 (emulated from the PTX ISA's fragment layouts)
//    reproduce the GEMM for all four operand layouts, sum_batch and split-K.
//  - plans of huge shapes: 64-bit counts, grid limits.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "cuda/cuda_tiling.h"
#include "tester.h"

using namespace mnx;
using namespace mnx::cuda::tiling;

namespace {

mnx_test::Counter counter;
std::mt19937 rng(7);

#define EXPECT(cond, ...)                                \
  do {                                                   \
    if (!(cond)) {                                       \
      std::fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      std::fprintf(stderr, __VA_ARGS__);                 \
      std::fprintf(stderr, "\n");                        \
      return false;                                      \
    }                                                    \
  } while (0)

std::vector<double> random_vec(int64_t n) {
  std::uniform_int_distribution<int> d(-4, 4);  // small integers: exact sums
  std::vector<double> v(n);
  for (auto& e : v) e = d(rng);
  return v;
}

DepthwiseShape dw_shape(int64_t N, int64_t C, int64_t H, int64_t W, int K, int S, int P,
                        int64_t mult, Layout layout) {
  DepthwiseShape s;
  s.N = N; s.C = C; s.H = H; s.W = W; s.mult = mult;
  s.KH = s.KW = K; s.SH = s.SW = S; s.PH = s.PW = P;
  s.OH = conv_out_size(H, K, S, P, 1);
  s.OW = conv_out_size(W, K, S, P, 1);
  s.layout = layout;
  return s;
}

// Plain depthwise convolution, NCHW or NHWC by s.layout.
std::vector<double> dw_reference(const DepthwiseShape& s, const std::vector<double>& x,
                                 const std::vector<double>& w) {
  const int64_t Co = s.C_out();
  std::vector<double> y(s.N * Co * s.OH * s.OW, 0.0);
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t oc = 0; oc < Co; ++oc)
      for (int64_t oh = 0; oh < s.OH; ++oh)
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          double acc = 0;
          const int64_t c = oc / s.mult;
          for (int64_t kh = 0; kh < s.KH; ++kh)
            for (int64_t kw = 0; kw < s.KW; ++kw) {
              const int64_t ih = oh * s.SH - s.PH + kh * s.DH, iw = ow * s.SW - s.PW + kw * s.DW;
              if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
              const int64_t xi = s.layout == Layout::NCHW ? ((n * s.C + c) * s.H + ih) * s.W + iw
                                                          : ((n * s.H + ih) * s.W + iw) * s.C + c;
              acc += x[xi] * w[(oc * s.KH + kh) * s.KW + kw];
            }
          const int64_t yi = s.layout == Layout::NCHW ? ((n * Co + oc) * s.OH + oh) * s.OW + ow
                                                      : ((n * s.OH + oh) * s.OW + ow) * Co + oc;
          y[yi] = acc;
        }
  return y;
}

// Replay of depthwise_forward_nchw_tiled_kernel (depthwise_forward.cu).
bool replay_nchw_tiled(const DepthwiseShape& s, int elem_bytes, const std::vector<double>& x,
                       const std::vector<double>& w, bool flip, std::vector<double>* y) {
  EXPECT(dw_nchw_tiled_eligible(s), "not eligible");
  const DwNchwTiles t = dw_nchw_tiles(s, elem_bytes);
  const int K = (int)s.KH, S = (int)s.SH, R = kDwRowsPerThread;
  EXPECT(t.tx * t.ty * t.tz <= kDwThreads && t.tx >= 1 && t.ty >= 1 && t.tz >= 1,
         "block %dx%dx%d", t.tx, t.ty, t.tz);
  EXPECT(t.smem_bytes <= kStaticSmemMax, "smem %lld", (long long)t.smem_bytes);
  EXPECT(t.in_h == (t.out_h - 1) * S + K && t.in_w == (t.out_w - 1) * S + K, "halo size");
  const int64_t Co = s.C_out();
  y->assign(s.N * Co * s.OH * s.OW, 0.0);
  std::vector<int> written(y->size(), 0);
  std::vector<double> tile;
  for (int64_t blk = 0; blk < t.blocks; ++blk) {
    const DwNchwTileOrigin o = dw_nchw_tile_origin(t, blk);
    const int ih0 = o.oh0 * S - (int)s.PH, iw0 = o.ow0 * S - (int)s.PW;
    tile.assign((size_t)t.tz * t.in_h * t.in_w, NAN);
    for (int z = 0; z < t.tz; ++z) {
      const int64_t plane = o.plane0 + z;
      if (plane >= t.planes) break;
      const int64_t n = plane / Co, c = (plane % Co) / s.mult;
      for (int e = 0; e < t.in_h * t.in_w; ++e) {
        const int r = e / t.in_w, col = e - r * t.in_w, ih = ih0 + r, iw = iw0 + col;
        tile[(size_t)z * t.in_h * t.in_w + e] =
            (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W) ? x[((n * s.C + c) * s.H + ih) * s.W + iw] : 0.0;
      }
    }
    for (int z = 0; z < t.tz; ++z)
      for (int ty = 0; ty < t.ty; ++ty)
        for (int tx = 0; tx < t.tx; ++tx) {
          const int64_t plane = o.plane0 + z;
          if (plane >= t.planes) continue;
          const int64_t oc = plane % Co;
          std::vector<double> acc(R, 0.0);
          for (int ir = 0; ir < (R - 1) * S + K; ++ir)
            for (int kw = 0; kw < K; ++kw) {
              const int tr = ty * R * S + ir, tc = tx * S + kw;
              EXPECT(tr < t.in_h && tc < t.in_w, "smem read (%d, %d) outside %dx%d", tr, tc, t.in_h, t.in_w);
              const double v = tile[((size_t)z * t.in_h + tr) * t.in_w + tc];
              EXPECT(!std::isnan(v), "unwritten smem read");
              for (int r = 0; r < R; ++r) {
                const int kh = ir - r * S;
                if (kh < 0 || kh >= K) continue;
                const int tap = kh * K + kw;
                acc[r] += v * w[oc * K * K + (flip ? K * K - 1 - tap : tap)];
              }
            }
          const int ow = o.ow0 + tx;
          if (ow >= s.OW) continue;
          for (int r = 0; r < R; ++r) {
            const int oh = o.oh0 + ty * R + r;
            if (oh >= s.OH) continue;
            const int64_t yi = plane * s.OH * s.OW + (int64_t)oh * s.OW + ow;
            (*y)[yi] = acc[r];
            ++written[yi];
          }
        }
  }
  for (size_t i = 0; i < written.size(); ++i)
    EXPECT(written[i] == 1, "output %zu written %d times", i, written[i]);
  return true;
}

// Replay of depthwise_forward_nhwc_vec_kernel.
bool replay_nhwc_vec(const DepthwiseShape& s, int elem_bytes, const std::vector<double>& x,
                     const std::vector<double>& w, bool flip, std::vector<double>* y) {
  EXPECT(dw_nhwc_vec_eligible(s, elem_bytes), "not eligible");
  const DwNhwcTiles t = dw_nhwc_tiles(s, elem_bytes, elem_bytes == 8 ? 8 : 4);
  const int K = (int)s.KH, S = (int)s.SH, V = t.vec, OWT = kDwNhwcColsPerThread;
  EXPECT(t.tx * t.ty <= 128 && t.tx >= 1, "block");
  EXPECT(t.smem_bytes <= kStaticSmemMax, "smem %lld", (long long)t.smem_bytes);
  y->assign(s.N * s.C * s.OH * s.OW, 0.0);
  std::vector<int> written(y->size(), 0);
  for (int64_t by = 0; by < t.grid_y; ++by)
    for (int64_t bx = 0; bx < t.grid_x; ++bx)
      for (int ty = 0; ty < t.ty; ++ty)
        for (int tx = 0; tx < t.tx; ++tx) {
          const int64_t c0 = by * t.tx * V + (int64_t)tx * V;
          const int64_t grp = bx * t.ty + ty;
          if (c0 >= s.C || grp >= t.groups) continue;
          EXPECT(c0 % V == 0 && c0 + V <= s.C, "vector straddles C");
          const int64_t cg = grp % t.col_groups, r = grp / t.col_groups;
          const int64_t oh = r % s.OH, n = r / s.OH, ow0 = cg * OWT;
          std::vector<double> acc(OWT * V, 0.0);
          for (int kh = 0; kh < K; ++kh) {
            const int64_t ih = oh * S - s.PH + kh;
            if (ih < 0 || ih >= s.H) continue;
            for (int j = 0; j < (OWT - 1) * S + K; ++j) {
              const int64_t iw = ow0 * S - s.PW + j;
              if (iw < 0 || iw >= s.W) continue;
              const int64_t xi = ((n * s.H + ih) * s.W + iw) * s.C + c0;
              EXPECT((xi * elem_bytes) % 16 == 0, "unaligned 16-byte load");
              for (int o = 0; o < OWT; ++o) {
                const int kw = j - o * S;
                if (kw < 0 || kw >= K) continue;
                const int tap = kh * K + kw;
                for (int v = 0; v < V; ++v)
                  acc[o * V + v] += x[xi + v] * w[(c0 + v) * K * K + (flip ? K * K - 1 - tap : tap)];
              }
            }
          }
          for (int o = 0; o < OWT; ++o) {
            const int64_t ow = ow0 + o;
            if (ow >= s.OW) break;
            const int64_t yi = ((n * s.OH + oh) * s.OW + ow) * s.C + c0;
            for (int v = 0; v < V; ++v) {
              (*y)[yi + v] = acc[o * V + v];
              ++written[yi + v];
            }
          }
        }
  for (size_t i = 0; i < written.size(); ++i)
    EXPECT(written[i] == 1, "output %zu written %d times", i, written[i]);
  return true;
}

bool equal(const std::vector<double>& a, const std::vector<double>& b, const char* what) {
  EXPECT(a.size() == b.size(), "%s: size", what);
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT(a[i] == b[i], "%s: element %zu: %g vs %g", what, i, a[i], b[i]);
  return true;
}

bool dw_forward_case(const DepthwiseShape& s, int elem_bytes) {
  const auto x = random_vec(s.N * s.C * s.H * s.W), w = random_vec(s.C_out() * s.KH * s.KW);
  const auto ref = dw_reference(s, x, w);
  std::vector<double> got;
  if (s.layout == Layout::NCHW) {
    if (!replay_nchw_tiled(s, elem_bytes, x, w, false, &got)) return false;
  } else {
    if (!replay_nhwc_vec(s, elem_bytes, x, w, false, &got)) return false;
  }
  return equal(got, ref, "depthwise forward");
}

// Transposed convolution reference: gx = sum over taps of gy * w.
std::vector<double> dw_grad_input_reference(const DepthwiseShape& s, const std::vector<double>& gy,
                                            const std::vector<double>& w) {
  std::vector<double> gx(s.N * s.C * s.H * s.W, 0.0);
  const int64_t Co = s.C_out();
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t oc = 0; oc < Co; ++oc)
      for (int64_t oh = 0; oh < s.OH; ++oh)
        for (int64_t ow = 0; ow < s.OW; ++ow)
          for (int64_t kh = 0; kh < s.KH; ++kh)
            for (int64_t kw = 0; kw < s.KW; ++kw) {
              const int64_t ih = oh * s.SH - s.PH + kh, iw = ow * s.SW - s.PW + kw;
              if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
              const int64_t c = oc / s.mult;
              const int64_t gi = s.layout == Layout::NCHW ? ((n * Co + oc) * s.OH + oh) * s.OW + ow
                                                          : ((n * s.OH + oh) * s.OW + ow) * Co + oc;
              const int64_t xi = s.layout == Layout::NCHW ? ((n * s.C + c) * s.H + ih) * s.W + iw
                                                          : ((n * s.H + ih) * s.W + iw) * s.C + c;
              gx[xi] += gy[gi] * w[(oc * s.KH + kh) * s.KW + kw];
            }
  return gx;
}

bool dw_grad_input_case(const DepthwiseShape& s, int elem_bytes) {
  DepthwiseShape t;
  EXPECT(dw_grad_input_as_forward_shape(s, &t), "grad_input as forward rejected");
  const auto gy = random_vec(s.N * s.C * s.OH * s.OW), w = random_vec(s.C * s.KH * s.KW);
  const auto ref = dw_grad_input_reference(s, gy, w);
  std::vector<double> got;
  if (s.layout == Layout::NCHW) {
    if (!replay_nchw_tiled(t, elem_bytes, gy, w, true, &got)) return false;
  } else {
    if (!dw_nhwc_vec_eligible(t, elem_bytes)) return true;  // generic kernel
    if (!replay_nhwc_vec(t, elem_bytes, gy, w, true, &got)) return false;
  }
  return equal(got, ref, "grad_input as flipped forward");
}

// Replay of the two-stage grad_weight (depthwise_backward.cu).
bool dw_grad_weight_case(const DepthwiseShape& s) {
  EXPECT(dw_weight_one_pass_eligible(s), "not eligible");
  const DwWeightPlan p = dw_weight_plan(s);
  const int64_t rows = s.N * s.OH, Co = s.C_out(), KK = s.KH * s.KW;
  EXPECT(p.chunks >= 1 && p.chunks <= kDwWeightMaxChunks && p.chunks <= rows, "chunks %lld",
         (long long)p.chunks);
  EXPECT((p.chunks - 1) * p.chunk_rows < rows && p.chunks * p.chunk_rows >= rows,
         "chunks do not cover the rows exactly (no empty chunk)");
  EXPECT(p.workspace_elems == p.chunks * Co * KK, "workspace");
  EXPECT(p.groups == (s.layout == Layout::NCHW ? Co : ceil_div(Co, kDwWeightNhwcChannels)), "groups");
  const auto x = random_vec(s.N * s.C * s.H * s.W), gy = random_vec(s.N * Co * s.OH * s.OW);
  // reference
  std::vector<double> ref(Co * KK, 0.0);
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t oc = 0; oc < Co; ++oc)
      for (int64_t oh = 0; oh < s.OH; ++oh)
        for (int64_t ow = 0; ow < s.OW; ++ow)
          for (int64_t tap = 0; tap < KK; ++tap) {
            const int64_t ih = oh * s.SH - s.PH + (tap / s.KW) * s.DH;
            const int64_t iw = ow * s.SW - s.PW + (tap % s.KW) * s.DW;
            if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
            const int64_t c = oc / s.mult;
            const bool nchw = s.layout == Layout::NCHW;
            const int64_t gi = nchw ? ((n * Co + oc) * s.OH + oh) * s.OW + ow : ((n * s.OH + oh) * s.OW + ow) * Co + oc;
            const int64_t xi = nchw ? ((n * s.C + c) * s.H + ih) * s.W + iw : ((n * s.H + ih) * s.W + iw) * s.C + c;
            ref[oc * KK + tap] += gy[gi] * x[xi];
          }
  // stage 1: per (chunk, oc) partials, every output row visited once
  std::vector<double> ws(p.workspace_elems, NAN);
  std::vector<int> row_seen(rows, 0);
  for (int64_t chunk = 0; chunk < p.chunks; ++chunk) {
    const int64_t r0 = chunk * p.chunk_rows, r1 = std::min(rows, r0 + p.chunk_rows);
    for (int64_t r = r0; r < r1; ++r) ++row_seen[r];
    for (int64_t oc = 0; oc < Co; ++oc) {
      std::vector<double> part(KK, 0.0);
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          const int64_t n = r / s.OH, oh = r % s.OH;
          for (int64_t tap = 0; tap < KK; ++tap) {
            const int64_t ih = oh * s.SH - s.PH + (tap / s.KW) * s.DH;
            const int64_t iw = ow * s.SW - s.PW + (tap % s.KW) * s.DW;
            if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
            const int64_t c = oc / s.mult;
            const bool nchw = s.layout == Layout::NCHW;
            const int64_t gi = nchw ? ((n * Co + oc) * s.OH + oh) * s.OW + ow : ((n * s.OH + oh) * s.OW + ow) * Co + oc;
            const int64_t xi = nchw ? ((n * s.C + c) * s.H + ih) * s.W + iw : ((n * s.H + ih) * s.W + iw) * s.C + c;
            part[tap] += gy[gi] * x[xi];
          }
        }
      for (int64_t tap = 0; tap < KK; ++tap) ws[(chunk * Co + oc) * KK + tap] = part[tap];
    }
  }
  for (int64_t r = 0; r < rows; ++r) EXPECT(row_seen[r] == 1, "row %lld seen %d times", (long long)r, row_seen[r]);
  // stage 2
  std::vector<double> got(Co * KK);
  for (int64_t e = 0; e < Co * KK; ++e) {
    double v = 0;
    for (int64_t ch = 0; ch < p.chunks; ++ch) v += ws[ch * Co * KK + e];
    got[e] = v;
  }
  return equal(got, ref, "grad_weight two-stage");
}

// The warp butterfly of the NCHW grad_weight kernel: xor offsets 16..1 give
// every lane the full sum, and lane 0's result does not depend on anything
// but the lane values (same bits every run).
bool butterfly_case() {
  std::vector<float> lanes(32);
  std::uniform_real_distribution<float> d(-1, 1);
  for (auto& v : lanes) v = d(rng);
  std::vector<float> v = lanes;
  for (int off = 16; off > 0; off >>= 1) {
    std::vector<float> nv(32);
    for (int l = 0; l < 32; ++l) nv[l] = v[l] + v[l ^ off];
    v = nv;
  }
  double exact = 0;
  for (float f : lanes) exact += f;
  for (int l = 0; l < 32; ++l) EXPECT(std::fabs(v[l] - exact) < 1e-5, "butterfly lane %d", l);
  return true;
}

// ---------------------------------------------------------------------------
// Tensor-core GEMM
// ---------------------------------------------------------------------------
bool swizzle_case() {
  for (int k_contig = 0; k_contig < 2; ++k_contig) {
    const int len = operand_row_len(k_contig), rows = kGemmTileElems / len, cpr = len / 8;
    for (int r = 0; r < rows; ++r) {
      std::vector<int> seen(cpr, 0);
      for (int c = 0; c < cpr; ++c) {
        const int pc = swizzle_chunk(r, c, cpr);
        EXPECT(pc >= 0 && pc < cpr, "swizzle out of row");
        ++seen[pc];
      }
      for (int c = 0; c < cpr; ++c) EXPECT(seen[c] == 1, "swizzle not a bijection");
    }
    // cp.async coverage: chunks 0..511 fill every 16-byte slot once
    std::vector<int> slot(kGemmTileElems / 8, 0);
    for (int q = 0; q < kGemmChunksPerTile; ++q) {
      int row, col;
      load_chunk_coord(q, k_contig, &row, &col);
      const int off = tile_offset(row, col, len);
      EXPECT(off % 8 == 0 && off >= 0 && off < kGemmTileElems, "chunk offset %d", off);
      ++slot[off / 8];
    }
    for (int i = 0; i < (int)slot.size(); ++i) EXPECT(slot[i] == 1, "slot %d filled %d times", i, slot[i]);
  }
  return true;
}

// ldmatrix phases: the 8 lanes of each 8x8 matrix read 8 rows of 16 bytes;
// with 2-byte elements and 32 banks of 4 bytes they are conflict-free when
// the 16-byte slots are distinct mod 8.
bool bank_conflict_case() {
  for (int is_b = 0; is_b < 2; ++is_b)
    for (int k_contig = 0; k_contig < 2; ++k_contig) {
      const int len = operand_row_len(k_contig);
      for (int warp_off = 0; warp_off < kGemmBM; warp_off += 16)
        for (int kk = 0; kk < kGemmBK; kk += 16) {
          int slots[32];
          for (int lane = 0; lane < 32; ++lane) {
            int mn, k, row, col;
            if (is_b) b_ldmatrix_src(lane, k_contig, &mn, &k);
            else a_ldmatrix_src(lane, k_contig, &mn, &k);
            operand_to_smem(k_contig, warp_off + mn, kk + k, &row, &col);
            const int off = tile_offset(row, col, len);
            EXPECT(off % 8 == 0, "ldmatrix row not 16-byte aligned");
            slots[lane] = (off / 8) % 8;
          }
          for (int m = 0; m < 4; ++m)
            for (int i = 0; i < 8; ++i)
              for (int j = i + 1; j < 8; ++j)
                EXPECT(slots[m * 8 + i] != slots[m * 8 + j],
                       "bank conflict: operand %c k_contig %d matrix %d lanes %d,%d", is_b ? 'B' : 'A',
                       k_contig, m, i, j);
        }
    }
  return true;
}

// PTX ISA, mma.m16n8k16 with .f16/.bf16 inputs: fragment layouts.
//   A (16x16, row): a_i holds (row g + 8 * (i % 2), col 2t + 8 * (i / 2) + {0,1})
//   B (16x8, col):  b_i holds (k 2t + 8 * i + {0,1}, col g)
//   C (16x8):       c_i holds (row g + 8 * (i / 2), col 2t + i % 2)
// with g = lane / 4, t = lane % 4.
bool c_fragment_spec_case() {
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 4; ++i) {
      int m, n;
      c_fragment_coord(lane, i, &m, &n);
      EXPECT(m == lane / 4 + 8 * (i / 2) && n == 2 * (lane % 4) + i % 2, "c fragment");
    }
  return true;
}

// ldmatrix.x4 emulation: lane l supplies the row address of row l % 8 of
// matrix l / 8; thread t receives, of matrix j, elements (t / 4, 2 (t % 4)
// + {0,1}) (no trans) or (2 (t % 4) + {0,1}, t / 4) (trans).
void ldmatrix_emulate(const std::vector<double>& smem, const int (&addr)[32], bool trans,
                      double (&out)[32][4][2]) {
  for (int t = 0; t < 32; ++t)
    for (int j = 0; j < 4; ++j)
      for (int h = 0; h < 2; ++h) {
        const int r = trans ? 2 * (t % 4) + h : t / 4;
        const int c = trans ? t / 4 : 2 * (t % 4) + h;
        out[t][j][h] = smem[addr[j * 8 + r] + c];
      }
}

// Full replay of gemm_mma_kernel + gemm_split_reduce_kernel for one GemmArgs
// (operands in double, laid out by the strides).
bool gemm_replay_case(const GemmArgs& g, int64_t a_size, int64_t b_size) {
  const GemmPlan p = gemm_plan(g, true, true, true);
  EXPECT(p.mma, "plan did not pick the tensor-core kernel");
  EXPECT(p.splits >= 1 && p.splits <= kGemmMaxSplits, "splits");
  // split ranges: contiguous, cover [0, k_iters), none empty
  int64_t expect_begin = 0;
  for (int64_t sp = 0; sp < p.splits; ++sp) {
    int64_t b, e;
    gemm_split_range(p, sp, &b, &e);
    EXPECT(b == expect_begin && e > b, "split %lld range [%lld, %lld)", (long long)sp, (long long)b, (long long)e);
    expect_begin = e;
  }
  EXPECT(expect_begin == p.k_iters, "splits end at %lld of %lld", (long long)expect_begin, (long long)p.k_iters);
  EXPECT(p.workspace_elems == (p.splits > 1 ? p.splits * p.batches * g.M * g.N : 0), "workspace");

  const auto A = random_vec(a_size), B = random_vec(b_size);
  const int64_t c_size = (g.sum_batch ? 0 : (g.batch - 1) * g.c_bs) + g.M * g.ldc;
  std::vector<double> ref(c_size, 0.0), C(c_size, NAN), ws(p.workspace_elems, NAN);
  for (int64_t cb = 0; cb < p.batches; ++cb)
    for (int64_t m = 0; m < g.M; ++m)
      for (int64_t n = 0; n < g.N; ++n) {
        double acc = 0;
        for (int64_t b = g.sum_batch ? 0 : cb; b < (g.sum_batch ? g.batch : cb + 1); ++b)
          for (int64_t k = 0; k < g.K; ++k)
            acc += A[b * g.a_bs + m * g.a_rs + k * g.a_cs] * B[b * g.b_bs + k * g.b_rs + n * g.b_cs];
        ref[(g.sum_batch ? 0 : cb * g.c_bs) + m * g.ldc + n] = acc;
      }

  const bool AK = p.a_k_contig, BK = p.b_k_contig;
  const int a_len = operand_row_len(AK), b_len = operand_row_len(BK);
  std::vector<double> sA(kGemmTileElems), sB(kGemmTileElems);
  EXPECT(gemm_grid_ok(p), "grid");
  const int64_t gx = p.m_on_x ? p.tiles_m : p.tiles_n, gy = p.m_on_x ? p.tiles_n : p.tiles_m;
  for (int64_t z = 0; z < p.splits * p.batches; ++z)
    for (int64_t bx = 0; bx < gx; ++bx)
      for (int64_t by = 0; by < gy; ++by) {
        int64_t tm, tn;
        gemm_block_tile(p, bx, by, &tm, &tn);
        const int64_t m0 = tm * kGemmBM, n0 = tn * kGemmBN, split = z % p.splits, cb = z / p.splits;
        int64_t it0, it1;
        gemm_split_range(p, split, &it0, &it1);
        std::vector<double> acc(8 * 4 * 4 * 32 * 4, 0.0);  // [warp][mt][nt][lane][i]
        for (int64_t it = it0; it < it1; ++it) {
          int64_t b, k0;
          gemm_k_iter(it, p.k_tiles_per_batch, kGemmBK, g.sum_batch, cb, &b, &k0);
          std::fill(sA.begin(), sA.end(), NAN);
          std::fill(sB.begin(), sB.end(), NAN);
          for (int q = 0; q < kGemmChunksPerTile; ++q) {
            int row, col, mn, kk;
            load_chunk_coord(q, AK, &row, &col);
            smem_to_operand(AK, row, col, &mn, &kk);
            for (int e = 0; e < 8; ++e) {  // the 16-byte chunk, zero-filled out of range
              int mm = mn, k = kk;
              if (AK) k += e; else mm += e;
              const int64_t m = m0 + mm, kg = k0 + k;
              const bool ok = (m0 + mn) < g.M && (k0 + kk) < g.K;  // chunk predicate
              EXPECT(!ok || (m < g.M && kg < g.K), "partial A chunk");
              sA[tile_offset(row, col, a_len) + e] = ok ? A[b * g.a_bs + m * g.a_rs + kg * g.a_cs] : 0.0;
            }
            load_chunk_coord(q, BK, &row, &col);
            smem_to_operand(BK, row, col, &mn, &kk);
            for (int e = 0; e < 8; ++e) {
              int nn = mn, k = kk;
              if (BK) k += e; else nn += e;
              const int64_t n = n0 + nn, kg = k0 + k;
              const bool ok = (n0 + mn) < g.N && (k0 + kk) < g.K;
              EXPECT(!ok || (n < g.N && kg < g.K), "partial B chunk");
              sB[tile_offset(row, col, b_len) + e] = ok ? B[b * g.b_bs + kg * g.b_rs + n * g.b_cs] : 0.0;
            }
          }
          for (int warp = 0; warp < 8; ++warp) {
            const int wm = warp / kGemmWarpsN, wn = warp % kGemmWarpsN;
            for (int kk = 0; kk < kGemmBK; kk += 16) {
              double af[4][32][4][2], bf[4][32][2][2];
              for (int mt = 0; mt < 4; ++mt) {
                int addr[32];
                for (int lane = 0; lane < 32; ++lane) {
                  int mn, k, row, col;
                  a_ldmatrix_src(lane, AK, &mn, &k);
                  operand_to_smem(AK, wm * kGemmWarpM + mt * 16 + mn, kk + k, &row, &col);
                  addr[lane] = tile_offset(row, col, a_len);
                }
                ldmatrix_emulate(sA, addr, !AK, af[mt]);
              }
              for (int np = 0; np < 2; ++np) {
                int addr[32];
                for (int lane = 0; lane < 32; ++lane) {
                  int mn, k, row, col;
                  b_ldmatrix_src(lane, BK, &mn, &k);
                  operand_to_smem(BK, wn * kGemmWarpN + np * 16 + mn, kk + k, &row, &col);
                  addr[lane] = tile_offset(row, col, b_len);
                }
                double r[32][4][2];
                ldmatrix_emulate(sB, addr, !BK, r);
                for (int l = 0; l < 32; ++l)
                  for (int h = 0; h < 2; ++h) {
                    bf[2 * np][l][0][h] = r[l][0][h];
                    bf[2 * np][l][1][h] = r[l][1][h];
                    bf[2 * np + 1][l][0][h] = r[l][2][h];
                    bf[2 * np + 1][l][1][h] = r[l][3][h];
                  }
              }
              // mma per the PTX fragment layouts
              for (int mt = 0; mt < 4; ++mt)
                for (int nt = 0; nt < 4; ++nt) {
                  double Am[16][16], Bm[16][8];
                  for (int l = 0; l < 32; ++l) {
                    const int gq = l / 4, tq = l % 4;
                    for (int i = 0; i < 4; ++i)
                      for (int h = 0; h < 2; ++h) {
                        const double v = af[mt][l][i][h];
                        EXPECT(!std::isnan(v), "A fragment read unwritten smem");
                        Am[gq + 8 * (i % 2)][2 * tq + 8 * (i / 2) + h] = v;
                      }
                    for (int i = 0; i < 2; ++i)
                      for (int h = 0; h < 2; ++h) {
                        const double v = bf[nt][l][i][h];
                        EXPECT(!std::isnan(v), "B fragment read unwritten smem");
                        Bm[2 * tq + 8 * i + h][gq] = v;
                      }
                  }
                  for (int l = 0; l < 32; ++l)
                    for (int i = 0; i < 4; ++i) {
                      const int r = l / 4 + 8 * (i / 2), c = 2 * (l % 4) + i % 2;
                      double d = 0;
                      for (int k = 0; k < 16; ++k) d += Am[r][k] * Bm[k][c];
                      acc[(((warp * 4 + mt) * 4 + nt) * 32 + l) * 4 + i] += d;
                    }
                }
            }
          }
        }
        // epilogue through c_fragment_coord
        for (int warp = 0; warp < 8; ++warp) {
          const int wm = warp / kGemmWarpsN, wn = warp % kGemmWarpsN;
          for (int mt = 0; mt < 4; ++mt)
            for (int nt = 0; nt < 4; ++nt)
              for (int l = 0; l < 32; ++l)
                for (int i = 0; i < 4; ++i) {
                  int mm, nn;
                  c_fragment_coord(l, i, &mm, &nn);
                  const int64_t m = m0 + wm * kGemmWarpM + mt * 16 + mm;
                  const int64_t n = n0 + wn * kGemmWarpN + nt * 8 + nn;
                  if (m >= g.M || n >= g.N) continue;
                  const double v = acc[(((warp * 4 + mt) * 4 + nt) * 32 + l) * 4 + i];
                  if (p.splits > 1) {
                    const int64_t wi = gemm_workspace_index(p, g, split, cb, m, n);
                    EXPECT(std::isnan(ws[wi]), "workspace element written twice");
                    ws[wi] = v;
                  } else {
                    const int64_t ci = (g.sum_batch ? 0 : cb * g.c_bs) + m * g.ldc + n;
                    EXPECT(std::isnan(C[ci]), "C element written twice");
                    C[ci] = v;
                  }
                }
        }
      }
  if (p.splits > 1) {
    const int64_t per_batch = g.M * g.N, total = p.batches * per_batch;
    for (int64_t e = 0; e < total; ++e) {
      const int64_t cb = e / per_batch, r = e % per_batch, m = r / g.N, n = r % g.N;
      double v = 0;
      for (int64_t sp = 0; sp < p.splits; ++sp) {
        EXPECT(!std::isnan(ws[sp * total + e]), "workspace element never written");
        v += ws[sp * total + e];
      }
      C[(g.sum_batch ? 0 : cb * g.c_bs) + m * g.ldc + n] = v;
    }
  }
  for (int64_t cb = 0; cb < p.batches; ++cb)
    for (int64_t m = 0; m < g.M; ++m)
      for (int64_t n = 0; n < g.N; ++n) {
        const int64_t ci = (g.sum_batch ? 0 : cb * g.c_bs) + m * g.ldc + n;
        EXPECT(C[ci] == ref[ci], "C(%lld, %lld, %lld) = %g, expected %g", (long long)cb, (long long)m,
               (long long)n, C[ci], ref[ci]);
      }
  return true;
}

// The pointwise GEMMs of csrc/glue/common.cpp (forward, grad_input,
// grad_weight for NCHW and NHWC), restated here.
struct PwGemm {
  GemmArgs g;
  int64_t a_size, b_size;
};
std::vector<PwGemm> pointwise_gemms(int64_t N, int64_t Cin, int64_t Cout, int64_t HW) {
  std::vector<PwGemm> out;
  GemmArgs g;
  // NCHW forward: W[Cout, Cin] * X_n[Cin, HW]
  g = GemmArgs();
  g.M = Cout; g.N = HW; g.K = Cin; g.batch = N;
  g.a_rs = Cin; g.a_cs = 1; g.b_rs = HW; g.b_cs = 1; g.b_bs = Cin * HW;
  g.ldc = HW; g.c_bs = Cout * HW;
  out.push_back({g, Cout * Cin, N * Cin * HW});
  // NHWC forward: X[NHW, Cin] * W^T
  g = GemmArgs();
  g.M = N * HW; g.N = Cout; g.K = Cin; g.a_rs = Cin; g.a_cs = 1; g.b_rs = 1; g.b_cs = Cin; g.ldc = Cout;
  out.push_back({g, N * HW * Cin, Cout * Cin});
  // NCHW grad_input: W^T[Cin, Cout] * gY_n
  g = GemmArgs();
  g.M = Cin; g.N = HW; g.K = Cout; g.batch = N;
  g.a_rs = 1; g.a_cs = Cin; g.b_rs = HW; g.b_cs = 1; g.b_bs = Cout * HW; g.ldc = HW; g.c_bs = Cin * HW;
  out.push_back({g, Cout * Cin, N * Cout * HW});
  // NHWC grad_input: gY[NHW, Cout] * W[Cout, Cin]
  g = GemmArgs();
  g.M = N * HW; g.N = Cin; g.K = Cout; g.a_rs = Cout; g.a_cs = 1; g.b_rs = Cin; g.b_cs = 1; g.ldc = Cin;
  out.push_back({g, N * HW * Cout, Cout * Cin});
  // NCHW grad_weight: sum_n gY_n * X_n^T
  g = GemmArgs();
  g.M = Cout; g.N = Cin; g.ldc = Cin; g.K = HW; g.batch = N; g.sum_batch = true;
  g.a_rs = HW; g.a_cs = 1; g.a_bs = Cout * HW; g.b_rs = 1; g.b_cs = HW; g.b_bs = Cin * HW;
  out.push_back({g, N * Cout * HW, N * Cin * HW});
  // NHWC grad_weight: gY^T * X
  g = GemmArgs();
  g.M = Cout; g.N = Cin; g.ldc = Cin; g.K = N * HW; g.a_rs = 1; g.a_cs = Cout; g.b_rs = Cin; g.b_cs = 1;
  out.push_back({g, N * HW * Cout, N * HW * Cin});
  return out;
}

// C = A^T-stored * B^T-stored: A m-contiguous, B k-contiguous.
bool synthetic_transposed_case(int64_t M, int64_t N, int64_t K, int64_t batch) {
  GemmArgs g;
  g.M = M; g.N = N; g.K = K; g.batch = batch;
  g.a_rs = 1; g.a_cs = M; g.a_bs = M * K;
  g.b_rs = 1; g.b_cs = K; g.b_bs = N * K;
  g.ldc = N; g.c_bs = M * N;
  const GemmPlan p = gemm_plan(g, true, true, true);
  EXPECT(p.mma && !p.a_k_contig && p.b_k_contig, "A_M / B_K plan");
  return gemm_replay_case(g, batch * M * K, batch * N * K);
}

bool gemm_layout_coverage_case() {
  // the six pointwise GEMMs reach three (A, B) layouts; (A_M, B_K) only
  // comes from a generic GEMM (replayed in synthetic_transposed_case)
  bool seen[2][2] = {{false, false}, {false, false}};
  for (const auto& pg : pointwise_gemms(2, 32, 48, 64)) {
    const GemmPlan p = gemm_plan(pg.g, true, true, true);
    EXPECT(p.mma, "aligned pointwise GEMM not on tensor cores");
    seen[p.a_k_contig][p.b_k_contig] = true;
  }
  EXPECT(seen[1][1] && seen[1][0] && seen[0][0], "pointwise GEMM layouts not reached");
  // fallbacks: fp32, misaligned pointers, pre-sm80, HW not a multiple of 8 in NCHW
  const GemmArgs g0 = pointwise_gemms(2, 32, 48, 64)[0].g;
  EXPECT(!gemm_plan(g0, false, true, true).mma, "fp32 took mma");
  EXPECT(!gemm_plan(g0, true, false, true).mma, "misaligned took mma");
  EXPECT(!gemm_plan(g0, true, true, false).mma, "pre-sm80 took mma");
  EXPECT(!gemm_plan(pointwise_gemms(2, 32, 48, 49)[0].g, true, true, true).mma, "HW=49 NCHW took mma");
  EXPECT(gemm_plan(pointwise_gemms(2, 32, 48, 49)[1].g, true, true, true).mma, "NHWC HW=49 should take mma");
  return true;
}

// Plans of huge shapes: 64-bit counts, no overflow, grid limits respected.
bool big_shape_case() {
  // 2^31+ elements in one tensor
  DepthwiseShape s = dw_shape(64, 256, 512, 512, 3, 1, 1, 1, Layout::NCHW);
  EXPECT(s.N * s.C * s.H * s.W > (int64_t(1) << 31), "shape not big");
  EXPECT(dw_nchw_tiled_eligible(s), "big NCHW not eligible");
  DwNchwTiles t = dw_nchw_tiles(s, 2);
  EXPECT(t.blocks == t.plane_groups * t.tiles_h * t.tiles_w && t.blocks <= kGridXMax, "blocks");
  const DwNchwTileOrigin o = dw_nchw_tile_origin(t, t.blocks - 1);
  EXPECT(o.plane0 + t.tz >= t.planes && o.plane0 < t.planes, "last block's planes");
  EXPECT(o.oh0 + t.out_h >= s.OH && o.ow0 + t.out_w >= s.OW, "last tile");
  s.layout = Layout::NHWC;
  const DwNhwcTiles v = dw_nhwc_tiles(s, 2, 4);
  EXPECT(v.groups == s.N * s.OH * ceil_div(s.OW, kDwNhwcColsPerThread), "nhwc groups");
  EXPECT(v.grid_x <= kGridXMax && v.grid_y <= kGridYZMax, "nhwc grid");
  const DwWeightPlan p = dw_weight_plan(s);
  EXPECT(p.chunks * p.chunk_rows >= s.N * s.OH && p.chunks <= kGridYZMax, "weight plan");
  // a plane of >= 2^31 elements goes to the generic kernel
  DepthwiseShape huge = dw_shape(1, 1, 1 << 16, 1 << 16, 3, 1, 1, 1, Layout::NCHW);
  EXPECT(!dw_nchw_tiled_eligible(huge), "2^32-element plane took the int-indexed tiled kernel");
  // GEMM: NHWC forward with M = N*H*W > 2^31 / 128 tiles
  GemmArgs g = pointwise_gemms(256, 64, 64, 256 * 256)[1].g;
  const GemmPlan gp = gemm_plan(g, true, true, true);
  EXPECT(gp.mma && gp.tiles_m == ceil_div(g.M, 128) && gp.tiles_m <= kGridXMax, "big gemm tiles");
  EXPECT(gemm_workspace_index(gp, g, 0, 0, g.M - 1, g.N - 1) == g.M * g.N - 1, "ws index");
  // NCHW forward with a 4096x4096 map: N tiles beyond 65535 go on x
  g = pointwise_gemms(1, 64, 64, int64_t(4096) * 4096)[0].g;
  const GemmPlan sp = gemm_plan(g, false, true, true);
  EXPECT(!sp.m_on_x && gemm_grid_ok(sp), "N tiles on x");
  // grad_weight with a huge K gets split-K, bounded workspace
  g = pointwise_gemms(256, 64, 64, 56 * 56)[4].g;
  const GemmPlan wp = gemm_plan(g, true, true, true);
  EXPECT(wp.splits > 1 && wp.workspace_elems <= kGemmMaxWorkspaceElems, "grad_weight split-K");
  return true;
}

}  // namespace

int main() {
  // depthwise forward: NCHW tiles and NHWC vectors over kernel / stride /
  // padding / map sizes (incl. 1x1 maps, odd sizes, tails) and dtypes
  const int sizes[][2] = {{1, 1}, {3, 5}, {7, 7}, {14, 14}, {17, 9}, {33, 40}, {56, 3}};
  for (int K : {3, 5, 7})
    for (int S : {1, 2})
      for (int P = 0; P < K; P += (K > 3 ? 2 : 1))
        for (const auto& hw : sizes) {
          if (conv_out_size(hw[0], K, S, P, 1) < 1 || conv_out_size(hw[1], K, S, P, 1) < 1) continue;
          for (int eb : {2, 4, 8}) {
            const int mult = (K == 3 && eb == 4) ? 2 : 1;
            counter.check(dw_forward_case(dw_shape(2, 3, hw[0], hw[1], K, S, P, mult, Layout::NCHW), eb));
            const int vec = 16 / eb;
            counter.check(dw_forward_case(dw_shape(1, vec * 5, hw[0], hw[1], K, S, P, 1, Layout::NHWC), eb));
            if (S == 1) {
              counter.check(dw_grad_input_case(dw_shape(2, 3, hw[0], hw[1], K, 1, P, 1, Layout::NCHW), eb));
              counter.check(dw_grad_input_case(dw_shape(1, vec * 3, hw[0], hw[1], K, 1, P, 1, Layout::NHWC), eb));
            }
          }
        }
  // shared-memory caps: tall narrow float64 maps, 7x7 fp16 with 256+ channels
  counter.check(dw_forward_case(dw_shape(1, 2, 700, 3, 7, 2, 3, 1, Layout::NCHW), 8));
  counter.check(dw_forward_case(dw_shape(1, 2, 700, 3, 7, 1, 3, 1, Layout::NCHW), 8));
  counter.check(dw_forward_case(dw_shape(1, 8 * 36, 4, 9, 7, 1, 3, 1, Layout::NHWC), 2));
  // many planes: tz > 1 with partial last plane group, 40 channel vectors
  counter.check(dw_forward_case(dw_shape(3, 37, 7, 7, 3, 1, 1, 1, Layout::NCHW), 2));
  counter.check(dw_forward_case(dw_shape(1, 8 * 40, 5, 6, 5, 2, 2, 1, Layout::NHWC), 2));
  // grad_weight plan and two-stage replay
  for (int K : {3, 5, 7})
    for (int S : {1, 2})
      for (auto layout : {Layout::NCHW, Layout::NHWC}) {
        counter.check(dw_grad_weight_case(dw_shape(2, 3, 9, 11, K, S, K / 2, 1, layout)));
        counter.check(dw_grad_weight_case(dw_shape(3, 2, 17, 9, K, S, 0, 2, layout)));
      }
  {
    DepthwiseShape s = dw_shape(1, 40, 40, 12, 3, 1, 2, 1, Layout::NHWC);
    s.DH = s.DW = 2;
    s.OH = conv_out_size(s.H, 3, 1, 2, 2);
    s.OW = conv_out_size(s.W, 3, 1, 2, 2);
    counter.check(dw_grad_weight_case(s));
  }
  counter.check(butterfly_case());
  // tensor-core GEMM
  counter.check(swizzle_case());
  counter.check(bank_conflict_case());
  counter.check(c_fragment_spec_case());
  counter.check(gemm_layout_coverage_case());
  // shapes: tails in M / N / K (multiples of 8), several tiles, split-K
  const int64_t pw[][4] = {{2, 16, 24, 64}, {1, 40, 136, 8}, {2, 144, 32, 200}, {1, 264, 8, 1024}};
  for (const auto& c : pw)
    for (const auto& pg : pointwise_gemms(c[0], c[1], c[2], c[3]))
      counter.check(gemm_replay_case(pg.g, pg.a_size, pg.b_size));
  counter.check(synthetic_transposed_case(136, 24, 40, 2));
  counter.check(synthetic_transposed_case(8, 8, 8 * 64, 1));
  counter.check(big_shape_case());
  return counter.finish("test_cuda_tiling");
}
