// The GEMM family's kernels, written once over the vector layer (vec.h) and
// instantiated per ISA by its translation unit (avx2/gemm_avx2.cpp,
// avx512/gemm_avx512.cpp, neon/gemm_neon.cpp), around the blocked driver
// (gemm_driver.h):
//
//   gemm_store_row / gemm_store_tile / gemm_store_buffer
//                       the epilogue (bias per row or column, activation,
//                       residual; see Epi) on a register tile, stored to C
//   gemm_tile           an R x (NV vectors) register tile: C (or 0) + A * B
//                       in k order, then the epilogue; kTail: the last vector
//                       holds the live columns only (masked loads / stores,
//                       masked lanes of C are never read or written)
//   gemm_edge           partial tiles (mr < MR and/or nr < NR): the smallest
//                       gemm_tile that covers them
//   gemm_pack_b         B panel packing fast paths: rows contiguous (vector
//                       copy) or columns contiguous (the ISA's register
//                       transpose, V::transpose_n > 0)
//   gemm_prefetch_next_a  prefetch of the next A panel read in place, in one
//                       burst (the AVX2 asm micro-kernel; the generic tile
//                       spreads it over its k loop instead)
//   GemmKernel<V, MR, NR, kDirectA, kUkr>
//                       the driver's Kern from these pieces; its ukr is the
//                       generic register tile (the AVX-512 family uses it as
//                       is), or kUkr, an ISA's hand-written micro-kernel
//                       (AVX2's inline asm, NEON's by-lane FMAs).
//
// Per element the arithmetic is the driver's (gemm_driver.h): acc = (load_c ?
// C : 0), then acc = fma(a, b, acc) for k in order, then on the last step
// acc + bias, act, + residual. Which tile computes an element (full, edge,
// a wider or narrower R x NV) does not change its bits.
//
// Everything here has internal linkage (see vec.h).
#pragma once

#include <cstdint>

#include "../vec/vec.h"
#include "gemm_driver.h"

namespace mnx {
namespace cpu {
namespace {  // internal linkage: see vec.h

// Per-column bias of an NV-vector row at column n (zero when the epilogue
// has none or a per-row one); last: lanes live in the last vector (kTail).
template <class V, int NV, bool kTail>
inline void gemm_bias_cols(const Epi* e, int64_t n, int last,
                           typename V::reg (&bc)[NV]) {
  constexpr int W = V::width;
  const bool cols = e && e->bias && !e->per_row;
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    const float* p = cols ? e->bias + n + v * W : nullptr;
    bc[v] = !cols                        ? V::zero()
            : (kTail && v == NV - 1) ? V::load_n(p, last)
                                     : V::load(p);
  }
}

// One row (C row m, columns n..) of a register tile: the epilogue when e is
// set, then the store to c (the last vector masked to `last` lanes when
// kTail). bc: gemm_bias_cols.
template <class V, int NV, bool kTail>
inline void gemm_store_row(typename V::reg (&x)[NV], float* c, const Epi* e,
                           int64_t m, int64_t n,
                           const typename V::reg (&bc)[NV], int last) {
  constexpr int W = V::width;
  if (e) {
    if (e->bias) {
      if (e->per_row) {
        const typename V::reg bv = V::set1(e->bias[m]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) x[v] = V::add(x[v], bv);
      } else {
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) x[v] = V::add(x[v], bc[v]);
      }
    }
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) x[v] = activate<V>(x[v], e->act);
    if (e->res) {
      const float* rp = e->res + m * e->ldr + n;
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)
        x[v] = V::add(x[v], (kTail && v == NV - 1) ? V::load_n(rp + v * W, last)
                                                   : V::load(rp + v * W));
    }
  }
  const bool nt = e && e->nt;  // whole vectors streamed (Epi::nt)
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    if (kTail && v == NV - 1)
      V::store_n(c + v * W, x[v], last);
    else if (nt)
      V::stream(c + v * W, x[v]);
    else
      V::store(c + v * W, x[v]);
  }
}

// An R x NV register tile (rows m.., columns n.. of C at c) through the
// epilogue into C.
template <class V, int R, int NV, bool kTail>
inline void gemm_store_tile(typename V::reg (&acc)[R][NV], float* c,
                            int64_t ldc, const Epi* e, int64_t m, int64_t n,
                            int last) {
  typename V::reg bc[NV];
  gemm_bias_cols<V, NV, kTail>(e, n, last, bc);
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
    gemm_store_row<V, NV, kTail>(acc[r], c + r * ldc, e, m + r, n, bc, last);
}

// The same for a full R x (NV * width) tile the micro-kernel left in memory
// (buf, rows ldb floats apart), row by row.
template <class V, int R, int NV>
inline void gemm_store_buffer(const float* buf, int64_t ldb, float* c,
                              int64_t ldc, const Epi* e, int64_t m, int64_t n) {
  constexpr int W = V::width;
  typename V::reg bc[NV];
  gemm_bias_cols<V, NV, false>(e, n, W, bc);
  for (int r = 0; r < R; ++r) {
    typename V::reg x[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) x[v] = V::load(buf + r * ldb + v * W);
    gemm_store_row<V, NV, false>(x, c + r * ldc, e, m + r, n, bc, W);
  }
}

// R x (NV vectors) tile of C at c (R <= MR, NV * width <= NR):
// acc = (load_c ? C : 0) + A_panel * B_panel in k order, then the epilogue
// when e is set. b: packed B panel b[k * NR + j]; A read in place (kDirect:
// row r at a + r * a_rs, unit column stride) or a packed panel a[k * MR + r].
// Columns [0, nr) are live; without kTail nr = NV * width. pf (kDirect
// only): the next row panel of A in place (rows a_rs apart), prefetched
// across the k loop.
template <class V, int R, int NV, int64_t MR, int64_t NR, bool kDirect,
          bool kTail>
inline void gemm_tile(int64_t kc, const float* a, int64_t a_rs, const float* b,
                      float* c, int64_t ldc, bool load_c, const Epi* e,
                      int64_t m, int64_t n, int64_t nr,
                      const float* pf = nullptr) {
  using Reg = typename V::reg;
  constexpr int W = V::width;
  static_assert(R >= 1 && R <= MR && NV >= 1 && NV * W <= NR, "tile shape");
  const int last = kTail ? static_cast<int>(nr - (NV - 1) * W) : W;
  Reg acc[R][NV];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const float* cp = c + r * ldc + v * W;
      acc[r][v] = !load_c                   ? V::zero()
                  : (kTail && v == NV - 1) ? V::load_n(cp, last)
                                           : V::load(cp);
    }
  auto step = [&](int64_t k) __attribute__((always_inline)) {
    Reg bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = V::load(b + k * NR + v * W);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const Reg av = V::set1(kDirect ? a[r * a_rs + k] : a[k * MR + r]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = V::fma(av, bv[v], acc[r][v]);
    }
  };
  if (kDirect && pf) {
    // the next row panel's A prefetched while this one computes: per
    // 16 k steps one 64-byte line of each of its R rows. A burst of all
    // of them before the loop (gemm_prefetch_next_a) stalled on full fill
    // buffers: Intel Xeon (AVX-512), 1 thread, channels_last forward,
    // 576->96 at 14x14 batch 32 161 -> 181 GFLOP/s, 128->128 at 56x56
    // batch 8 170 -> 186 (perf: ~15% of the GEMM's samples on the burst).
    constexpr int64_t kLine = 64 / static_cast<int64_t>(sizeof(float));
    for (int64_t k0 = 0; k0 < kc; k0 += kLine) {
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) __builtin_prefetch(pf + r * a_rs + k0, 0, 3);
      const int64_t k1 = k0 + kLine < kc ? k0 + kLine : kc;
      for (int64_t k = k0; k < k1; ++k) step(k);
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) __builtin_prefetch(pf + r * a_rs + kc - 1, 0, 3);
  } else {
    for (int64_t k = 0; k < kc; ++k) step(k);
  }
  gemm_store_tile<V, R, NV, kTail>(acc, c, ldc, e, m, n, last);
}

// Partial tile (mr <= MR rows, nr <= NR columns) in place in C: the
// gemm_tile of mr rows and the fewest vectors that hold nr columns.
template <class V, int64_t MR, int64_t NR, bool kDirect, int R, int NV>
inline void gemm_edge_nv(int nv, int64_t kc, const float* a, int64_t a_rs,
                         const float* b, float* c, int64_t ldc, bool load_c,
                         const Epi* e, int64_t m, int64_t n, int64_t nr) {
  if constexpr (NV > 1) {
    if (nv < NV) {
      gemm_edge_nv<V, MR, NR, kDirect, R, NV - 1>(nv, kc, a, a_rs, b, c, ldc,
                                                  load_c, e, m, n, nr);
      return;
    }
  }
  gemm_tile<V, R, NV, MR, NR, kDirect, true>(kc, a, a_rs, b, c, ldc, load_c,
                                             e, m, n, nr);
}

template <class V, int64_t MR, int64_t NR, bool kDirect, int R>
inline void gemm_edge_rows(int64_t mr, int64_t kc, const float* a,
                           int64_t a_rs, const float* b, float* c, int64_t ldc,
                           bool load_c, const Epi* e, int64_t m, int64_t n,
                           int64_t nr) {
  if constexpr (R > 1) {
    if (mr < R) {
      gemm_edge_rows<V, MR, NR, kDirect, R - 1>(mr, kc, a, a_rs, b, c, ldc,
                                                load_c, e, m, n, nr);
      return;
    }
  }
  constexpr int NVMAX = static_cast<int>(NR / V::width);
  const int nv = static_cast<int>((nr + V::width - 1) / V::width);
  gemm_edge_nv<V, MR, NR, kDirect, R, NVMAX>(nv, kc, a, a_rs, b, c, ldc,
                                             load_c, e, m, n, nr);
}

template <class V, int64_t MR, int64_t NR, bool kDirectA>
inline void gemm_edge(int64_t kc, const float* a, int64_t a_rs, bool direct,
                      const float* b, float* c, int64_t ldc, bool load_c,
                      const Epi* e, int64_t m, int64_t n, int64_t mr,
                      int64_t nr) {
  if constexpr (kDirectA) {
    if (direct) {
      gemm_edge_rows<V, MR, NR, true, static_cast<int>(MR)>(
          mr, kc, a, a_rs, b, c, ldc, load_c, e, m, n, nr);
      return;
    }
  }
  gemm_edge_rows<V, MR, NR, false, static_cast<int>(MR)>(
      mr, kc, a, a_rs, b, c, ldc, load_c, e, m, n, nr);
}

// Fast paths of the B panel packing (dst[k * NR + j] = B(k0 + k, n + j)) for
// full NR-wide panels: rows contiguous (b_cs == 1: a vector copy per k) or
// columns contiguous (b_rs == 1: the ISA's register transposes of
// transpose_n square blocks, the k tail element-wise). false: not taken,
// the driver's generic packer does it.
template <class V, int64_t NR>
inline bool gemm_pack_b(const float* Bb, int64_t b_rs, int64_t b_cs,
                        int64_t k0, int64_t kc, int64_t n, int64_t nr,
                        float* dst) {
  constexpr int W = V::width;
  static_assert(NR % W == 0, "NR must be a multiple of the vector width");
  if (nr != NR) return false;
  if (b_cs == 1) {
    const float* src = Bb + k0 * b_rs + n;
    for (int64_t k = 0; k < kc; ++k, src += b_rs)
#pragma GCC unroll 4
      for (int v = 0; v < NR / W; ++v)
        V::store(dst + k * NR + v * W, V::load(src + v * W));
    return true;
  }
  if constexpr (V::transpose_n > 0) {
    constexpr int T = V::transpose_n;
    static_assert(NR % T == 0, "NR must be a multiple of the transpose block");
    if (b_rs == 1) {
      for (int h = 0; h < NR / T; ++h) {
        const float* s = Bb + (n + h * T) * b_cs + k0;
        int64_t k = 0;
        for (; k + T <= kc; k += T) V::transpose(s + k, b_cs, dst + k * NR + h * T, NR);
        for (; k < kc; ++k)
          for (int j = 0; j < T; ++j) dst[k * NR + h * T + j] = s[j * b_cs + k];
      }
      return true;
    }
  }
  return false;
}

// A read in place: the hardware prefetchers follow MR strided rows poorly
// when A streams from memory, so on the first pass over an A block the
// micro-kernel prefetches the next MR rows (the next call's panel), one
// touch per 64-byte line. Prefetches never fault.
template <int64_t MR>
inline void gemm_prefetch_next_a(const float* a, int64_t a_rs, int64_t kc) {
  const float* nx = a + MR * a_rs;
  for (int64_t r = 0; r < MR; ++r, nx += a_rs)
    for (int64_t k = 0; k < kc; k += 64 / static_cast<int64_t>(sizeof(float)))
      __builtin_prefetch(nx + k, 0, 3);
}

// A hand-written full MR x NR micro-kernel (the driver's ukr, gemm_driver.h).
using GemmUkr = void (*)(int64_t kc, const float* a, int64_t a_rs, bool direct,
                         const float* b, float* c, int64_t ldc, bool load_c,
                         const Epi* e, int64_t m, int64_t n, bool cold_a);

// The driver's Kern (gemm_driver.h) from the pieces above: MR x NR register
// tile (NR a multiple of V::width; MR * NR / width accumulators plus NR /
// width B vectors and a broadcast must fit V::registers for the generic
// ukr); kDirectA: A may be read in place when its columns are contiguous;
// kUkr: the ISA's own full-tile micro-kernel, or null for the generic one.
template <class V, int64_t MR_, int64_t NR_, bool kDirectA_, GemmUkr kUkr = nullptr>
struct GemmKernel {
  using Vec = V;
  static constexpr int64_t MR = MR_, NR = NR_;
  static constexpr bool kDirectA = kDirectA_;

  // Full MR x NR tile: kUkr, or the generic register tile.
  static void ukr(int64_t kc, const float* a, int64_t a_rs, bool direct,
                  const float* b, float* c, int64_t ldc, bool load_c,
                  const Epi* e, int64_t m, int64_t n, bool cold_a) {
    if constexpr (kUkr != nullptr) {
      kUkr(kc, a, a_rs, direct, b, c, ldc, load_c, e, m, n, cold_a);
      return;
    }
    constexpr int R = static_cast<int>(MR), NV = static_cast<int>(NR / V::width);
    if constexpr (kDirectA) {
      if (direct) {
        gemm_tile<V, R, NV, MR, NR, true, false>(kc, a, a_rs, b, c, ldc, load_c, e, m, n, NR,
                                                 cold_a ? a + MR * a_rs : nullptr);
        return;
      }
    }
    gemm_tile<V, R, NV, MR, NR, false, false>(kc, a, a_rs, b, c, ldc, load_c,
                                              e, m, n, NR);
  }

  // Partial tile (mr <= MR, nr <= NR) in place in C, epilogue fused.
  static void ukr_edge(int64_t kc, const float* a, int64_t a_rs, bool direct,
                       const float* b, float* c, int64_t ldc, bool load_c,
                       const Epi* e, int64_t m, int64_t n, int64_t mr,
                       int64_t nr) {
    gemm_edge<V, MR, NR, kDirectA>(kc, a, a_rs, direct, b, c, ldc, load_c, e,
                                   m, n, mr, nr);
  }

  static bool pack_b_fast(const float* Bb, int64_t b_rs, int64_t b_cs,
                          int64_t k0, int64_t kc, int64_t n, int64_t nr,
                          float* dst) {
    return gemm_pack_b<V, NR>(Bb, b_rs, b_cs, k0, kc, n, nr, dst);
  }
};

// Work unit u of the GEMM (params.h): batch entry bo, rows [m0, m1) and
// columns [n0, n1) of C
struct GemmUnit {
  int64_t bo, m0, m1, n0, n1;
};
inline GemmUnit gemm_unit(const GemmArgs& g, int64_t u) {
  const int64_t tm = gemm_tiles_m(g), tn = gemm_tiles_n(g), T = tm * tn;
  const int64_t r = u % T, m0 = (r / tn) * kGemmTileM, n0 = (r % tn) * kGemmTileN;
  return GemmUnit{u / T, m0, g_imin(g.M, m0 + kGemmTileM), n0, g_imin(g.N, n0 + kGemmTileN)};
}

// --- small M: dot products read in place -------------------------------------
// A few rows of C per batch entry (squeeze-excitation layers and
// classifiers at small batches: matrix-vector products or close to them),
// A's rows contiguous (a_cs 1) and B's columns contiguous (b_rs 1: the
// weight rows of the NHWC pointwise forward and of linear layers): each C
// element is the dot product of an A row and a B column, both read where
// they are. The blocked path would copy the whole of B into panels to use
// each panel M times. Per element: one vector accumulator over the chunks
// of V::width in k order (the k tail masked), reduced, then bias,
// activation and residual: the same for every split of the units over
// threads and every tile. Tiles of 4 rows x 4 columns (16 independent
// chains; 4 A and 4 B chunks loaded per 16 FMAs), row and column tails
// narrower.
// (gemm_small_m_applies, ../../kernels/params.h, says when.)

// kRows x kCols dot products, A rows a[r] and B columns b[j] (contiguous
// along k): per element one vector accumulator over the chunks of
// V::width in k order (the k tail masked), then V::reduce_add. Every element
// gets the same arithmetic whatever kRows / kCols computes it.
template <class V, int kRows, int kCols>
inline void gemm_dots(const float* const* a, const float* const* b, int64_t K, float (&out)[kRows][kCols]) {
  using R = typename V::reg;
  constexpr int64_t W = V::width;
  R acc[kRows][kCols];
#pragma GCC unroll 4
  for (int i = 0; i < kRows; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < kCols; ++j) acc[i][j] = V::zero();
  int64_t k = 0;
  for (; k + W <= K; k += W) {
    R bv[kCols];
#pragma GCC unroll 4
    for (int j = 0; j < kCols; ++j) bv[j] = V::load(b[j] + k);
#pragma GCC unroll 4
    for (int i = 0; i < kRows; ++i) {
      const R av = V::load(a[i] + k);
#pragma GCC unroll 4
      for (int j = 0; j < kCols; ++j) acc[i][j] = V::fma(av, bv[j], acc[i][j]);
    }
  }
  if (k < K) {  // the tail chunk, masked
    const int n = static_cast<int>(K - k);
    R bv[kCols];
#pragma GCC unroll 4
    for (int j = 0; j < kCols; ++j) bv[j] = V::load_n(b[j] + k, n);
#pragma GCC unroll 4
    for (int i = 0; i < kRows; ++i) {
      const R av = V::load_n(a[i] + k, n);
#pragma GCC unroll 4
      for (int j = 0; j < kCols; ++j) acc[i][j] = V::fma(av, bv[j], acc[i][j]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < kRows; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < kCols; ++j) out[i][j] = V::reduce_add(acc[i][j]);
}

template <class V, int kRows, int kCols>
inline void gemm_dots_store(const GemmArgs& g, const float* Ab, const float* Bb, float* Cb, const float* bias,
                            const float* Rb, int64_t m, int64_t n) {
  const float* a[kRows];
  const float* b[kCols];
  for (int i = 0; i < kRows; ++i) a[i] = Ab + (m + i) * g.a_rs;
  for (int j = 0; j < kCols; ++j) b[j] = Bb + (n + j) * g.b_cs;
  float v[kRows][kCols];
  gemm_dots<V, kRows, kCols>(a, b, g.K, v);
  for (int i = 0; i < kRows; ++i)
    for (int j = 0; j < kCols; ++j) {
      float x = v[i][j];
      if (bias) x += bias[g.bias_per_row ? m + i : n + j];
      x = apply_activation(x, g.act);
      if (Rb) x += Rb[(m + i) * g.ldc + n + j];
      Cb[(m + i) * g.ldc + n + j] = x;
    }
}

template <class V>
void gemm_small_m(const GemmArgs& g, const float* A, const float* B, float* C,
                  const float* bias, const float* residual, int64_t begin, int64_t end) {
  for (int64_t u = g_imax(begin, 0); u < g_imin(end, gemm_units(g)); ++u) {
    const GemmUnit t = gemm_unit(g, u);
    const float* Ab = A + t.bo * g.a_bs;
    const float* Bb = B + t.bo * g.b_bs;
    float* Cb = C + t.bo * g.c_bs;
    const float* Rb = residual ? residual + t.bo * g.c_bs : nullptr;
    for (int64_t n = t.n0; n < t.n1;) {
      const bool c4 = n + 4 <= t.n1;
      int64_t m = t.m0;
      for (; m + 4 <= t.m1; m += 4) {
        if (c4) gemm_dots_store<V, 4, 4>(g, Ab, Bb, Cb, bias, Rb, m, n);
        else gemm_dots_store<V, 4, 1>(g, Ab, Bb, Cb, bias, Rb, m, n);
      }
      for (; m < t.m1; ++m) {
        if (c4) gemm_dots_store<V, 1, 4>(g, Ab, Bb, Cb, bias, Rb, m, n);
        else gemm_dots_store<V, 1, 1>(g, Ab, Bb, Cb, bias, Rb, m, n);
      }
      n += c4 ? 4 : 1;
    }
  }
}

// --- k-major operands read in place (gemm_kmajor_applies, params.h) ------
// A tile of R rows x NV vectors of C: acc = (load_c ? C : 0), then for k in
// order acc = fma(A[k][m], B[k][n], acc) with A read at a + k * a_ks + r and
// B at b + k * b_ks + v * width (kTail: the last vector's `last` lanes,
// masked), then stored: the blocked path's FMA chain per element.
template <class V, int R, int NV, bool kTail>
inline void gemm_kmajor_tile(int64_t kc, const float* a, int64_t a_ks, const float* b, int64_t b_ks, float* c,
                             int64_t ldc, bool load_c, int last) {
  using Reg = typename V::reg;
  constexpr int W = V::width;
  Reg acc[R][NV];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const float* cp = c + r * ldc + v * W;
      acc[r][v] = !load_c ? V::zero() : (kTail && v == NV - 1) ? V::load_n(cp, last) : V::load(cp);
    }
  for (int64_t k = 0; k < kc; ++k) {
    Reg bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      bv[v] = (kTail && v == NV - 1) ? V::load_n(b + k * b_ks + v * W, last) : V::load(b + k * b_ks + v * W);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const Reg av = V::set1(a[k * a_ks + r]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = V::fma(av, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      float* cp = c + r * ldc + v * W;
      if (kTail && v == NV - 1)
        V::store_n(cp, acc[r][v], last);
      else
        V::store(cp, acc[r][v]);
    }
}

// Rows [m, m + mr) (mr <= R), columns [n, n + nr) (nr <= NV * width): the
// tile of mr rows and the fewest vectors (R and NV count down)
template <class V, int R, int NV>
inline void gemm_kmajor_edge(int64_t mr, int64_t nr, int64_t kc, const float* a, int64_t a_ks, const float* b,
                             int64_t b_ks, float* c, int64_t ldc, bool load_c) {
  constexpr int W = V::width;
  if constexpr (R > 1) {
    if (mr < R) return gemm_kmajor_edge<V, R - 1, NV>(mr, nr, kc, a, a_ks, b, b_ks, c, ldc, load_c);
  }
  if constexpr (NV > 1) {
    if (nr <= (NV - 1) * W) return gemm_kmajor_edge<V, R, NV - 1>(mr, nr, kc, a, a_ks, b, b_ks, c, ldc, load_c);
  }
  if (nr == NV * W)
    gemm_kmajor_tile<V, R, NV, false>(kc, a, a_ks, b, b_ks, c, ldc, load_c, W);
  else
    gemm_kmajor_tile<V, R, NV, true>(kc, a, a_ks, b, b_ks, c, ldc, load_c, static_cast<int>(nr - (NV - 1) * W));
}

// Units [begin, end) of the GEMM in K steps of kKmajorKC, all units of the
// range step by step: the step's A and B rows come from memory once for all
// of them (a unit reads 64 columns of B's rows and 24 of A's), and every
// row tile of a unit reads its B slice (kKmajorKC x 64 floats, 32 KiB) from
// L1 after the first. Register tile: AVX-512 / NEON 6 rows x 4
// vectors (24 accumulators, per k 4 loads of B and 6 broadcasts of A for 24
// FMAs), AVX2 4 x 2.
constexpr int64_t kKmajorKC = 128;

template <class V>
void gemm_kmajor(const GemmArgs& g, const float* A, const float* B, float* C, int64_t begin, int64_t end) {
  constexpr int R = V::registers >= 32 ? 6 : 4;
  constexpr int NV = V::registers >= 32 ? 4 : 2;
  constexpr int64_t TW = NV * V::width;
  const int64_t u0 = g_imax(begin, 0), u1 = g_imin(end, gemm_units(g));
  for (int64_t k0 = 0; k0 < g.K; k0 += kKmajorKC) {
    const int64_t kc = g_imin(kKmajorKC, g.K - k0);
    for (int64_t u = u0; u < u1; ++u) {
      const GemmUnit t = gemm_unit(g, u);
      for (int64_t m = t.m0; m < t.m1; m += R)
        for (int64_t n = t.n0; n < t.n1; n += TW) {
          const int64_t mr = g_imin(R, t.m1 - m), nr = g_imin(TW, t.n1 - n);
          const float* a = A + t.bo * g.a_bs + k0 * g.a_cs + m;
          const float* b = B + t.bo * g.b_bs + k0 * g.b_rs + n;
          float* c = C + t.bo * g.c_bs + m * g.ldc + n;
          if (mr == R && nr == TW)
            gemm_kmajor_tile<V, R, NV, false>(kc, a, g.a_cs, b, g.b_rs, c, g.ldc, k0 > 0, V::width);
          else
            gemm_kmajor_edge<V, R, NV>(mr, nr, kc, a, g.a_cs, b, g.b_rs, c, g.ldc, k0 > 0);
        }
    }
  }
}

// The GEMM of a table: small M as dot products, k-major operands in place,
// else the blocked driver.
template <class Kern, int64_t KC>
void gemm_run(const GemmArgs& g, const float* A, const float* B, float* C, const float* bias,
              const float* residual, int64_t begin, int64_t end) {
  if (gemm_small_m_applies(g)) {
    gemm_small_m<typename Kern::Vec>(g, A, B, C, bias, residual, begin, end);
    return;
  }
  if (!bias && !residual && gemm_kmajor_applies(g)) {
    gemm_kmajor<typename Kern::Vec>(g, A, B, C, begin, end);
    return;
  }
  gemm_blocked<Kern, KC>(g, A, B, C, bias, residual, begin, end);
}

// The float32 GEMM table of Kern (each ISA's translation unit returns it from
// gemm_kernels_<isa>(), ../cpu_kernels.h).
template <class Kern, int64_t KC = kKC>
const GemmKernels<float>& gemm_table(const char* isa) {
  static const GemmKernels<float> k = {gemm_run<Kern, KC>, isa, Kern::MR, Kern::NR};
  return k;
}

}  // namespace
}  // namespace cpu
}  // namespace mnx
