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

  template <int P, int CB>
  static void tile(const SmallCinConvShape& s, const Strip& st, const float* wt, int64_t Cp,
                   const float* bp, int64_t ow0, int64_t c0, Activation act, float* dst, int64_t ldd,
                   int valid_last) {
    R acc[P][CB];
    for (int j = 0; j < CB; ++j) {
      const R b = V::load(bp + c0 + j * kW);
      for (int p = 0; p < P; ++p) acc[p][j] = b;
    }
    const int64_t es = st.es, ps = s.SW * es;
    for (int64_t ci = 0; ci < s.Cin; ++ci)
      for (int64_t kh = 0; kh < s.KH; ++kh) {
        const float* xr = st.xs + ci * st.ci_step + kh * st.kh_step + ow0 * ps;
        const float* wr = wt + (ci * s.KH + kh) * s.KW * Cp + c0;
        for (int64_t kw = 0; kw < s.KW; ++kw) {
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
  template <int CB>
  static void row_channels(const SmallCinConvShape& s, const Strip& st, const float* wt,
                           int64_t Cp, const float* bp, int64_t c0, Activation act, float* dst,
                           int64_t ldd, int64_t cols) {
    constexpr int P = pixels<CB>();
    const int valid = static_cast<int>(std::min<int64_t>(kW, cols - (c0 + (CB - 1) * kW)));
    int64_t ow0 = 0;
    for (; ow0 + P <= s.OW; ow0 += P) tile<P, CB>(s, st, wt, Cp, bp, ow0, c0, act, dst, ldd, valid);
    // the last pixels in tiles of 4, 2, 1: a 1-pixel tile has only CB FMA
    // chains and waits on their latency (112 = 18 * 6 + 4 columns)
    for (; ow0 + 4 <= s.OW; ow0 += 4) tile<4, CB>(s, st, wt, Cp, bp, ow0, c0, act, dst, ldd, valid);
    for (; ow0 + 2 <= s.OW; ow0 += 2) tile<2, CB>(s, st, wt, Cp, bp, ow0, c0, act, dst, ldd, valid);
    for (; ow0 < s.OW; ++ow0) tile<1, CB>(s, st, wt, Cp, bp, ow0, c0, act, dst, ldd, valid);
  }

  // One output row: every pixel and channel block, in channel groups of kCB
  // vectors (then 2, then 1).
  static void row(const SmallCinConvShape& s, const Strip& st, const float* wt, int64_t Cp,
                  const float* bp, Activation act, float* dst, int64_t ldd, int64_t cols) {
    int64_t c0 = 0;
    if constexpr (kCB == 4)
      for (; c0 + 4 * kW <= Cp; c0 += 4 * kW) row_channels<4>(s, st, wt, Cp, bp, c0, act, dst, ldd, cols);
    for (; c0 + 2 * kW <= Cp; c0 += 2 * kW) row_channels<2>(s, st, wt, Cp, bp, c0, act, dst, ldd, cols);
    for (; c0 < Cp; c0 += kW) row_channels<1>(s, st, wt, Cp, bp, c0, act, dst, ldd, cols);
  }

  static bool forward(const SmallCinConvShape& s, const float* x, const float* w, const float* bias, float* y,
                      Activation act, int64_t begin, int64_t end) {
    const int64_t Cp = (s.Cout + kW - 1) / kW * kW;
    const int64_t taps = s.Cin * s.KH * s.KW;
    const int64_t Wp = (s.OW - 1) * s.SW + s.KW;  // input columns one output row reads
    const bool nhwc = s.layout == Layout::NHWC;
    const int64_t n_wt = round16(taps * Cp), n_b = round16(Cp), n_xs = round16(s.Cin * s.KH * Wp);
    const int64_t n_row = nhwc ? 0 : round16(s.OW * Cp);
    float* wt = thread_scratch<0>(n_wt + n_b + n_xs + n_row);
    if (!wt) return false;  // coverage: unreachable (allocation failure)
    float* bp = wt + n_wt;
    float* xs = bp + n_b;
    float* rowbuf = xs + n_xs;
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t c = 0; c < Cp; ++c) wt[t * Cp + c] = c < s.Cout ? w[c * taps + t] : 0.f;
    for (int64_t c = 0; c < Cp; ++c) bp[c] = bias && c < s.Cout ? bias[c] : 0.f;
    const int64_t OHW = s.OH * s.OW;
    for (int64_t u = begin; u < end; ++u) {
      const int64_t n = u / s.OH, oh = u % s.OH;
      // the zero-bordered input strip, columns c = input column + PW:
      //   NCHW: xs[(ci * KH + kh) * Wp + c] = x[n, ci, ih, c - PW]
      //   NHWC: xs[(kh * Wp + c) * Cin + ci] = x[n, ih, c - PW, ci] (each
      //         input row copied whole; it was a strided gather per channel)
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
          const float* src = nhwc ? x + ((n * s.H + ih) * s.W) * s.Cin
                                  : x + ((n * s.Cin + ci) * s.H + ih) * s.W;
          std::fill(dr, dr + lo * es, 0.f);
          std::copy(src + (lo - s.PW) * es, src + (hi - s.PW) * es, dr + lo * es);
          std::fill(dr + hi * es, dr + Wp * es, 0.f);
        }
      const Strip st{xs, es, nhwc ? 1 : s.KH * Wp, nhwc ? Wp * s.Cin : Wp};
      float* dst = nhwc ? y + (n * s.OH + oh) * s.OW * s.Cout : rowbuf;
      const int64_t ldd = nhwc ? s.Cout : Cp;
      const int64_t cols = nhwc ? s.Cout : Cp;
      row(s, st, wt, Cp, bp, act, dst, ldd, cols);
      if (nhwc) continue;
      // the row buffer [OW][Cp] into the Cout planes of image n, row oh
      float* yr = y + n * s.Cout * OHW + oh * s.OW;
      int64_t c = 0;
      constexpr int TN = V::transpose_n;  // the ISA's register transpose (AVX-512: AVX2's 8x8)
      if constexpr (TN > 1) {
        for (; c + TN <= s.Cout; c += TN) {
          int64_t o = 0;
          for (; o + TN <= s.OW; o += TN) V::transpose(rowbuf + o * Cp + c, Cp, yr + c * OHW + o, OHW);
          for (; o < s.OW; ++o)
            for (int64_t k = 0; k < TN; ++k) yr[(c + k) * OHW + o] = rowbuf[o * Cp + c + k];
        }
      }
      for (; c < s.Cout; ++c)
        for (int64_t o = 0; o < s.OW; ++o) yr[c * OHW + o] = rowbuf[o * Cp + c];
    }
    return true;
  }

  static const SmallCinConvKernels<float>& table(const char* isa) {
    static const SmallCinConvKernels<float> t = {&forward, isa};
    return t;
  }
};

}  // namespace
}  // namespace cpu
}  // namespace mnx
