// Small-Cin dense convolution (../conv2d_small_cin.h), written once over the
// vector layer V (float32) and instantiated per ISA (avx2/, avx512/, neon/).
//
// Per call and thread: the weights are laid out tap-major with the output
// channels contiguous, wt[(ci * KH + kh) * KW + kw][Cp] (Cp = Cout rounded up
// to whole vectors, zero-padded), and per output row the KH input rows are
// copied to a zero-bordered strip (NCHW: per input channel; NHWC: whole
// rows, channels interleaved, read with a stride of Cin), so the inner loop
// has no bounds checks. The register
// tile is P output pixels x CB channel vectors: per tap CB weight loads, P
// broadcasts of an input value, P * CB FMAs (AVX2: 6 x 2 = 12 accumulators
// of 16 registers; AVX-512 and NEON, 32 registers: 6 x 4 = 24, and 12 x 2 or
// 12 x 1 for the last channel vectors, e.g. 32 or 16 output channels on
// AVX-512). NHWC output is stored from the
// tile; NCHW output goes through a row buffer [OW][Cp] transposed into the
// Cout planes (8x8 register transposes where the ISA has them).
#pragma once

#include <algorithm>
#include <cstdint>

#include "../conv2d_small_cin.h"
#include "../vec/vec.h"
#include "thread_scratch.h"

namespace mnx {
namespace cpu {
namespace {  // internal linkage: see vec/vec.h

template <class V>
struct SmallCinConv {
  using R = typename V::reg;
  static constexpr int kW = V::width;
  static constexpr int kP = 6;                              // output pixels per tile
  static constexpr int kCB = V::registers >= 32 ? 4 : 2;   // channel vectors per tile

  static int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

  // The P x CB tile at output pixels [ow0, ow0 + P), channels [c0, c0 + CB
  // * width): dst[p * ldd + c] for the tile's pixels, `valid` channels of
  // the tile's last vector stored (width: all).
  // Strip row (ci, kh) starts at xs + ci * ci_step + kh * kh_step; its
  // columns are es floats apart (NCHW strip: es 1, ci_step KH * Wp, kh_step
  // Wp; NHWC strip, rows copied whole: es Cin, ci_step 1, kh_step Wp * Cin).
  struct Strip {
    const float* xs;
    int64_t es, ci_step, kh_step;
  };

  // Shape constants a tile may be compiled for (0: read from the shape at
  // run time). With Cin, KH = KW, SW and the strip's element step es fixed
  // (the MobileNet stem: 3 channels, 3x3, stride 2) the tap loops unroll
  // fully and every broadcast reads at a constant offset from one pointer;
  // at run time the 12 offsets of a 12-pixel tile took more integer
  // registers than there are (spilled to vector registers and reloaded at
  // every tap). Per element the same FMAs in the same order either way.
  template <int kCin, int kK, int kS, int kEs>
  struct Fixed {
    static constexpr int Cin = kCin, K = kK, S = kS, Es = kEs;
  };
  using Dynamic = Fixed<0, 0, 0, 0>;

  template <int P, int CB, class F>
  static void tile(const SmallCinConvShape& s, const Strip& st, const float* wt, int64_t Cp,
                   const float* bp, int64_t ow0, int64_t c0, Activation act, float* dst, int64_t ldd,
                   int valid_last, bool nt) {
    R acc[P][CB];
    for (int j = 0; j < CB; ++j) {
      const R b = V::load(bp + c0 + j * kW);
      for (int p = 0; p < P; ++p) acc[p][j] = b;
    }
    const int64_t Cin = F::Cin ? F::Cin : s.Cin, KH = F::K ? F::K : s.KH, KW = F::K ? F::K : s.KW;
    const int64_t es = F::Es ? F::Es : st.es, ps = (F::S ? F::S : s.SW) * es;
#pragma GCC unroll 4
    for (int64_t ci = 0; ci < Cin; ++ci)
#pragma GCC unroll 4
      for (int64_t kh = 0; kh < KH; ++kh) {
        const float* xr = st.xs + ci * st.ci_step + kh * st.kh_step + ow0 * ps;
        const float* wr = wt + (ci * KH + kh) * KW * Cp + c0;
#pragma GCC unroll 4
        for (int64_t kw = 0; kw < KW; ++kw) {
          R wv[CB];
          for (int j = 0; j < CB; ++j) wv[j] = V::load(wr + kw * Cp + j * kW);
          for (int p = 0; p < P; ++p) {
            const R xb = V::set1(xr[p * ps + kw * es]);
            for (int j = 0; j < CB; ++j) acc[p][j] = V::fma(xb, wv[j], acc[p][j]);
          }
        }
      }
    for (int p = 0; p < P; ++p)
      for (int j = 0; j < CB; ++j) {
        const R v = activate<V>(acc[p][j], act);
        float* d = dst + (ow0 + p) * ldd + c0 + j * kW;
        if (j == CB - 1 && valid_last < kW)
          V::store_n(d, v, valid_last);
        else if (nt)
          V::stream(d, v);
        else
          V::store(d, v);
      }
  }

  // Output pixels per tile for a tile of CB channel vectors: enough
  // independent FMA chains to cover the FMA latency on two pipes, within
  // the register file (P * CB accumulators + CB weights + 1 broadcast).
  template <int CB>
  static constexpr int pixels() {
    return V::registers >= 32 && CB < 4 ? 12 : kP;
  }

  // Channels [c0, c0 + CB * width) of one output row, every pixel, into dst
  // (row stride ldd, `cols` channels stored in all).
  template <int CB, class F>
  static void row_channels(const SmallCinConvShape& s, const Strip& st, const float* wt,
                           int64_t Cp, const float* bp, int64_t c0, Activation act, float* dst,
                           int64_t ldd, int64_t cols, bool nt) {
    constexpr int P = pixels<CB>();
    const int valid = static_cast<int>(std::min<int64_t>(kW, cols - (c0 + (CB - 1) * kW)));
    int64_t ow0 = 0;
    for (; ow0 + P <= s.OW; ow0 += P) tile<P, CB, F>(s, st, wt, Cp, bp, ow0, c0, act, dst, ldd, valid, nt);
    // the last pixels in tiles of 4, 2, 1: a 1-pixel tile has only CB FMA
    // chains and waits on their latency (112 = 18 * 6 + 4 columns)
    for (; ow0 + 4 <= s.OW; ow0 += 4) tile<4, CB, F>(s, st, wt, Cp, bp, ow0, c0, act, dst, ldd, valid, nt);
    for (; ow0 + 2 <= s.OW; ow0 += 2) tile<2, CB, F>(s, st, wt, Cp, bp, ow0, c0, act, dst, ldd, valid, nt);
    for (; ow0 < s.OW; ++ow0) tile<1, CB, F>(s, st, wt, Cp, bp, ow0, c0, act, dst, ldd, valid, nt);
  }

  // One output row: every pixel and channel block, in channel groups of kCB
  // vectors (then 2, then 1).
  template <class F>
  static void row_fixed(const SmallCinConvShape& s, const Strip& st, const float* wt, int64_t Cp,
                        const float* bp, Activation act, float* dst, int64_t ldd, int64_t cols, bool nt) {
    int64_t c0 = 0;
    if constexpr (kCB == 4)
      for (; c0 + 4 * kW <= Cp; c0 += 4 * kW) row_channels<4, F>(s, st, wt, Cp, bp, c0, act, dst, ldd, cols, nt);
    for (; c0 + 2 * kW <= Cp; c0 += 2 * kW) row_channels<2, F>(s, st, wt, Cp, bp, c0, act, dst, ldd, cols, nt);
    for (; c0 < Cp; c0 += kW) row_channels<1, F>(s, st, wt, Cp, bp, c0, act, dst, ldd, cols, nt);
  }
  // The row function for the shape, chosen once per call: the stem's shape
  // (3 channels, 3x3, stride 2) compiled for, any other read at run time
  using RowFn = void (*)(const SmallCinConvShape&, const Strip&, const float*, int64_t, const float*,
                         Activation, float*, int64_t, int64_t, bool);
  static RowFn row_for(const SmallCinConvShape& s) {
    if (s.Cin == 3 && s.KH == 3 && s.KW == 3 && s.SW == 2)
      return s.layout == Layout::NHWC ? &row_fixed<Fixed<3, 3, 2, 3>>   // strip elements Cin = 3 floats apart
                                      : &row_fixed<Fixed<3, 3, 2, 1>>;
    return &row_fixed<Dynamic>;
  }

  // Per-thread scratch of forward and grad_weight: taps[tap][Cp] (the
  // weights tap-major / the weight gradient's sums), chan[Cp] (bias / bias
  // gradient), the input strip xs (fill_strip), with_row a row buffer
  // [OW][Cp] and with_stage a staging row [Cout][OW] (forward NCHW, streamed)
  struct Scratch {
    float *taps, *chan, *xs, *row, *stage;
  };
  static bool scratch(const SmallCinConvShape& s, int64_t Cp, int64_t Wp, bool with_row, Scratch& sc,
                      bool with_stage = false) {
    const int64_t n_taps = round16(s.Cin * s.KH * s.KW * Cp), n_chan = round16(Cp);
    const int64_t n_xs = round16(s.Cin * s.KH * Wp), n_row = with_row ? round16(s.OW * Cp) : 0;
    const int64_t n_stage = with_stage ? round16(s.OW * s.Cout) : 0;
    float* p = thread_scratch<0>(n_taps + n_chan + n_xs + n_row + n_stage);
    if (!p) return false;  // coverage: unreachable (allocation failure)
    float* row = p + n_taps + n_chan + n_xs;
    sc = Scratch{p, p + n_taps, p + n_taps + n_chan, row, with_stage ? row + n_row : nullptr};
    return true;
  }

  // dst[j * ldd + i] = src[i * lds + j] for i < rows, j < cols: the ISA's
  // register transpose (AVX-512: AVX2's 8x8) on whole blocks, the edges
  // element by element. Between a row buffer [OW][Cp] and the Cout planes
  // of one output row (NCHW).
  static void transpose(const float* src, int64_t lds, float* dst, int64_t ldd, int64_t rows, int64_t cols) {
    int64_t j = 0;
    constexpr int TN = V::transpose_n;
    if constexpr (TN > 1) {
      for (; j + TN <= cols; j += TN) {
        int64_t i = 0;
        for (; i + TN <= rows; i += TN) V::transpose(src + i * lds + j, lds, dst + j * ldd + i, ldd);
        for (; i < rows; ++i)
          for (int64_t k = 0; k < TN; ++k) dst[(j + k) * ldd + i] = src[i * lds + j + k];
      }
    }
    for (; j < cols; ++j)
      for (int64_t i = 0; i < rows; ++i) dst[j * ldd + i] = src[i * lds + j];
  }

  // The zero-bordered input strip of output row oh of image n, columns c =
  // input column + PW:
  //   NCHW: xs[(ci * KH + kh) * Wp + c] = x[n, ci, ih, c - PW]
  //   NHWC: xs[(kh * Wp + c) * Cin + ci] = x[n, ih, c - PW, ci] (each input
  //         row copied whole; it was a strided gather per channel)
  // and the Strip that reads it.
  static Strip fill_strip(const SmallCinConvShape& s, const float* x, int64_t n, int64_t oh, int64_t Wp,
                          float* xs) {
    const bool nhwc = s.layout == Layout::NHWC;
    const int64_t es = nhwc ? s.Cin : 1;
    const int64_t lo = std::min<int64_t>(s.PW, Wp), hi = std::min<int64_t>(Wp, s.PW + s.W);
    for (int64_t ci = 0; ci < (nhwc ? 1 : s.Cin); ++ci)
      for (int64_t kh = 0; kh < s.KH; ++kh) {
        float* dr = xs + (nhwc ? kh * Wp * s.Cin : (ci * s.KH + kh) * Wp);
        const int64_t ih = oh * s.SH - s.PH + kh;
        if (ih < 0 || ih >= s.H || hi <= lo) {  // outside the image, or wholly in the padding
          std::fill(dr, dr + Wp * es, 0.f);
          continue;
        }
        const float* src = nhwc ? x + ((n * s.H + ih) * s.W) * s.Cin : x + ((n * s.Cin + ci) * s.H + ih) * s.W;
        std::fill(dr, dr + lo * es, 0.f);
        std::copy(src + (lo - s.PW) * es, src + (hi - s.PW) * es, dr + lo * es);
        std::fill(dr + hi * es, dr + Wp * es, 0.f);
      }
    return Strip{xs, es, nhwc ? 1 : s.KH * Wp, nhwc ? Wp * s.Cin : Wp};
  }

  static bool forward(const SmallCinConvShape& s, const float* x, const float* w, const float* bias, float* y,
                      Activation act, int64_t begin, int64_t end) {
    const int64_t Cp = (s.Cout + kW - 1) / kW * kW;
    const int64_t taps = s.Cin * s.KH * s.KW;
    const int64_t Wp = (s.OW - 1) * s.SW + s.KW;  // input columns one output row reads
    // the input read in s.layout (fill_strip), the output written in
    // s.out_layout
    const bool nhwc = s.out_layout == Layout::NHWC;
    const int64_t OHW = s.OH * s.OW;
    // Outputs past the caches (stream_output, ../vec/vec.h) are written with
    // non-temporal stores, their lines not read from memory first (the next
    // layer reads them from memory anyway): NHWC from the tiles; NCHW, whose
    // plane rows are whole vectors (OW a multiple of the width, e.g. 112),
    // through a staging row [Cout][OW] streamed plane row by plane row (OW
    // a whole number of vectors keeps every plane row aligned)
    const bool nt = stream_output<V>(y, nhwc ? s.Cout : s.OW, s.N * OHW * s.Cout);
    const RowFn row = row_for(s);
    Scratch sc;
    if (!scratch(s, Cp, Wp, !nhwc, sc, nt && !nhwc)) return false;  // coverage: unreachable (allocation failure)
    float* wt = sc.taps;
    float* bp = sc.chan;
    float* xs = sc.xs;
    float* rowbuf = sc.row;
    for (int64_t t = 0; t < taps; ++t) {
      const int64_t ci = t / (s.KH * s.KW), kh = t / s.KW % s.KH, kw = t % s.KW;
      for (int64_t c = 0; c < Cp; ++c) wt[t * Cp + c] = c < s.Cout ? w[s.w_index(c, ci, kh, kw)] : 0.f;
    }
    for (int64_t c = 0; c < Cp; ++c) bp[c] = bias && c < s.Cout ? bias[c] : 0.f;
    for (int64_t u = begin; u < end; ++u) {
      const int64_t n = u / s.OH, oh = u % s.OH;
      const Strip st = fill_strip(s, x, n, oh, Wp, xs);
      float* dst = nhwc ? y + (n * s.OH + oh) * s.OW * s.Cout : rowbuf;
      const int64_t ldd = nhwc ? s.Cout : Cp;
      const int64_t cols = nhwc ? s.Cout : Cp;
      row(s, st, wt, Cp, bp, act, dst, ldd, cols, nhwc && nt);
      if (nhwc) continue;
      // the row buffer [OW][Cp] into the Cout planes of image n, row oh
      float* yr = y + n * s.Cout * OHW + oh * s.OW;
      if (!nt) {
        transpose(rowbuf, Cp, yr, OHW, s.OW, s.Cout);
        continue;
      }
      transpose(rowbuf, Cp, sc.stage, s.OW, s.OW, s.Cout);
      for (int64_t c = 0; c < s.Cout; ++c)
        for (int64_t i = 0; i < s.OW; i += kW) V::stream(yr + c * OHW + i, V::load(sc.stage + c * s.OW + i));
    }
    if (nt) V::stream_fence();
    return true;
  }

  // ---- weight gradient -------------------------------------------------
  // Per output row: the row's gy as gr[OW][Cp] (NHWC with Cout a whole
  // number of vectors: gy's row itself; otherwise a copy, NCHW through the
  // register transposes, padded channels zero) and the input strip as in
  // forward. The strip holds the taps as rows of R consecutive floats,
  // rstep apart: NCHW Cin * KH rows (ci, kh) of R = KW taps kw, rstep Wp;
  // NHWC KH rows kh of R = KW * Cin taps (kw, ci), rstep Wp * Cin; one
  // pixel further on is ps = SW * es floats on. A register tile is RG strip
  // rows x TG consecutive taps x CB channel vectors, summed over the row's
  // pixels (per pixel CB loads of gy, RG * TG broadcasts of an input value
  // at constant offsets from RG row pointers, RG * TG * CB FMAs), then added
  // to the per-call total gwt[tap][Cp] (tap in PyTorch's (ci, kh, kw) order).

  // Accumulators a tile may hold: the register file less CB gy vectors and
  // one broadcast
  template <int CB>
  static constexpr int acc_budget() {
    return V::registers - CB - 1;
  }
  static constexpr int kMaxTG = 12;  // taps per strip row in one tile
  static constexpr int kMaxRG = 4;   // strip rows in one tile

  struct GwRows {
    const float* xs;  // the strip
    int64_t rstep, ps, R;
    bool nhwc;
    int64_t Cin, KH, KW;
    // PyTorch's tap index of strip row r, column k
    int64_t tap(int64_t r, int64_t k) const {
      return nhwc ? ((k % Cin) * KH + r) * KW + k / Cin : r * KW + k;
    }
  };

  // strip rows [r0, r0 + RG), columns [k0, k0 + TG); channels [c0, c0 +
  // CB * width)
  template <int TG, int RG, int CB>
  static void gw_tile(const GwRows& g, int64_t OW, const float* gr, int64_t Cp, int64_t r0, int64_t k0,
                      int64_t c0, float* gwt) {
    static_assert(TG * RG * CB <= acc_budget<CB>(), "register tile too large");
    const float* xp[RG];
    for (int r = 0; r < RG; ++r) xp[r] = g.xs + (r0 + r) * g.rstep + k0;
    R acc[RG][TG][CB];
    for (int r = 0; r < RG; ++r)
      for (int t = 0; t < TG; ++t)
        for (int j = 0; j < CB; ++j) acc[r][t][j] = V::zero();
    const int64_t ps = g.ps;
    for (int64_t p = 0; p < OW; ++p) {
      R gv[CB];
      for (int j = 0; j < CB; ++j) gv[j] = V::load(gr + p * Cp + c0 + j * kW);
      for (int r = 0; r < RG; ++r)
        for (int t = 0; t < TG; ++t) {
          const R xb = V::set1(xp[r][p * ps + t]);
          for (int j = 0; j < CB; ++j) acc[r][t][j] = V::fma(xb, gv[j], acc[r][t][j]);
        }
    }
    for (int r = 0; r < RG; ++r)
      for (int t = 0; t < TG; ++t) {
        float* d = gwt + g.tap(r0 + r, k0 + t) * Cp + c0;
        for (int j = 0; j < CB; ++j) V::store(d + j * kW, V::add(V::load(d + j * kW), acc[r][t][j]));
      }
  }

  // The most strip rows a tile of TG columns x CB vectors may take
  template <int TG, int CB>
  static constexpr int rows_per_tile() {
    return acc_budget<CB>() / (TG * CB) < kMaxRG ? acc_budget<CB>() / (TG * CB) : kMaxRG;
  }

  // Columns [k0, k0 + tg) of every strip row, channels c0..: tiles of
  // rows_per_tile rows, the last rows one by one (TG counts down to tg)
  template <int TG, int CB>
  static void gw_columns(int tg, const GwRows& g, int64_t rows, int64_t OW, const float* gr, int64_t Cp,
                         int64_t k0, int64_t c0, float* gwt) {
    if constexpr (TG > 1) {
      if (tg < TG) {
        gw_columns<TG - 1, CB>(tg, g, rows, OW, gr, Cp, k0, c0, gwt);
        return;
      }
    }
    constexpr int RG = rows_per_tile<TG, CB>();
    int64_t r0 = 0;
    if constexpr (RG > 1)
      for (; r0 + RG <= rows; r0 += RG) gw_tile<TG, RG, CB>(g, OW, gr, Cp, r0, k0, c0, gwt);
    for (; r0 < rows; ++r0) gw_tile<TG, 1, CB>(g, OW, gr, Cp, r0, k0, c0, gwt);
  }

  // Every tap of channel block c0: the strip rows' columns in runs of at
  // most max_cols (the last run shorter)
  template <int CB>
  static void gw_channels(const GwRows& g, int64_t rows, int64_t OW, const float* gr, int64_t Cp, int64_t c0,
                          float* gwt) {
    constexpr int M = acc_budget<CB>() / CB < kMaxTG ? acc_budget<CB>() / CB : kMaxTG;
    for (int64_t k0 = 0; k0 < g.R; k0 += M) {
      const int tg = static_cast<int>(std::min<int64_t>(M, g.R - k0));
      gw_columns<M, CB>(tg, g, rows, OW, gr, Cp, k0, c0, gwt);
    }
  }

  static bool grad_weight(const SmallCinConvShape& s, const float* x, const float* gy, float* gw, float* gb,
                          int64_t begin, int64_t end) {
    const int64_t Cp = (s.Cout + kW - 1) / kW * kW;
    const int64_t taps = s.Cin * s.KH * s.KW;
    const int64_t Wp = (s.OW - 1) * s.SW + s.KW;
    const bool nhwc = s.layout == Layout::NHWC;
    const bool gy_in_place = nhwc && Cp == s.Cout;
    Scratch sc;
    if (!scratch(s, Cp, Wp, !gy_in_place, sc)) return false;  // coverage: unreachable (allocation failure)
    float *const gwt = sc.taps, *const gbt = sc.chan, *const rowbuf = sc.row;
    std::fill(gwt, gwt + taps * Cp, 0.f);
    std::fill(gbt, gbt + Cp, 0.f);
    const int64_t OHW = s.OH * s.OW;
    for (int64_t u = begin; u < end; ++u) {
      const int64_t n = u / s.OH, oh = u % s.OH;
      const Strip st = fill_strip(s, x, n, oh, Wp, sc.xs);
      const float* gr = rowbuf;
      if (gy_in_place) {
        gr = gy + (n * s.OH + oh) * s.OW * s.Cout;
      } else if (nhwc) {
        const float* src = gy + (n * s.OH + oh) * s.OW * s.Cout;
        for (int64_t o = 0; o < s.OW; ++o) {
          std::copy(src + o * s.Cout, src + (o + 1) * s.Cout, rowbuf + o * Cp);
          std::fill(rowbuf + o * Cp + s.Cout, rowbuf + (o + 1) * Cp, 0.f);
        }
      } else {
        // the Cout planes of image n, row oh, into the row buffer [OW][Cp]
        // (padded channels zero)
        transpose(gy + n * s.Cout * OHW + oh * s.OW, OHW, rowbuf, Cp, s.Cout, s.OW);
        for (int64_t o = 0; o < s.OW; ++o) std::fill(rowbuf + o * Cp + s.Cout, rowbuf + (o + 1) * Cp, 0.f);
      }
      // the bias gradient: the row's sum per channel (four chains of adds,
      // pixel o on chain o % 4, then (0 + 1) + (2 + 3); one chain would wait
      // on the add latency at every pixel)
      for (int64_t c = 0; c < Cp; c += kW) {
        R a[4] = {V::zero(), V::zero(), V::zero(), V::zero()};
        int64_t o = 0;
        for (; o + 4 <= s.OW; o += 4)
          for (int k = 0; k < 4; ++k) a[k] = V::add(a[k], V::load(gr + (o + k) * Cp + c));
        for (int k = 0; o < s.OW; ++o, ++k) a[k] = V::add(a[k], V::load(gr + o * Cp + c));
        const R acc = V::add(V::add(a[0], a[1]), V::add(a[2], a[3]));
        V::store(gbt + c, V::add(V::load(gbt + c), acc));
      }
      const GwRows g{st.xs, nhwc ? Wp * s.Cin : Wp, s.SW * st.es, nhwc ? s.KW * s.Cin : s.KW, nhwc,
                     s.Cin, s.KH, s.KW};
      const int64_t rows = nhwc ? s.KH : s.Cin * s.KH;
      int64_t c0 = 0;
      if constexpr (kCB == 4)
        for (; c0 + 4 * kW <= Cp; c0 += 4 * kW) gw_channels<4>(g, rows, s.OW, gr, Cp, c0, gwt);
      for (; c0 + 2 * kW <= Cp; c0 += 2 * kW) gw_channels<2>(g, rows, s.OW, gr, Cp, c0, gwt);
      for (; c0 < Cp; c0 += kW) gw_channels<1>(g, rows, s.OW, gr, Cp, c0, gwt);
    }
    for (int64_t co = 0; co < s.Cout; ++co)
      for (int64_t t = 0; t < taps; ++t) gw[co * taps + t] = gwt[t * Cp + co];
    if (gb) std::copy(gbt, gbt + s.Cout, gb);
    return true;
  }

  static const SmallCinConvKernels<float>& table(const char* isa) {
    static const SmallCinConvKernels<float> t = {&forward, &grad_weight, isa};
    return t;
  }
};

}  // namespace
}  // namespace cpu
}  // namespace mnx
