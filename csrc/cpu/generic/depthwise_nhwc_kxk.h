// The channels_last (NHWC) K x K depthwise row kernel (square 3x3 / 5x5 /
// 7x7, stride S 1 or 2, dilation 1, multiplier 1), written once over the
// vector layer (vec.h) and instantiated per ISA by its translation unit
// (avx2/depthwise_nhwc_kxk_avx2.cpp: 8 lanes, C % 8 == 0;
// avx512/depthwise_nhwc_kxk_avx512.cpp: 16 lanes, any C; dwkxk_group is
// also the micro-kernel of avx2/depthwise_nchw_c8_kxk_avx2.cpp, on rows of 8
// interleaved channels):
//
//   dwkxk_group_cols   T output pixels from input column iw0, one block of
//                      `width` channels: T accumulators, per tap row the K
//                      weights in registers and each of the S*(T-1)+K input
//                      columns the group touches loaded once and fed to
//                      every (pixel, tap) pair that reads it. kEdge: only
//                      the group's columns j in [jlo, jhi) are read (the
//                      others lie outside the image: their taps are
//                      skipped), so a group may cover the row's borders
//   dwkxk_group        the same with every column inside the image
//   dwkxk_groups       a group over all channel blocks: whole vectors, then
//                      the channel tail (C % width lanes) masked
//   dwkxk_border_pixel one pixel whose taps may leave the image (columns
//                      checked per tap)
//   dwkxk_forward_rows output rows (n, oh) in [begin, end).
//                      5x5 / 7x7: the whole row in groups of 8 pixels,
//                      borders included; what is left (1-7 pixels) by one
//                      group of 8 or 4 shifted left to end at the row's end
//                      (a few pixels computed twice, to the same values);
//                      rows of 7 pixels by one group of 7, of 4-6 by two
//                      (overlapping) groups of 4, narrower ones pixel by
//                      pixel.
//                      3x3: the border pixels one at a time
//                      (dwkxk_border_pixel), the interior in groups of 8,
//                      then 4, then 1. stream: large outputs with
//                      non-temporal stores (the stride-1 grad_input's use)
//   dwkxk_grad_input_s2_rows
//                      grad_input rows of a stride-2 layer: per column
//                      parity only the taps that land on grad_output, in
//                      groups of same-parity pixels (dws2_*)
//
// Why two schemes (Zen 5, suite rows, 3 alternating runs each side, 2
// threads; benchmarks/results/dw-cl-20261203-zen5/): with the 5x5 / 7x7
// borders in groups the forward of those rows took 0.57-0.83x the time
// (their borders are 2-3 pixels wide: on a 7x7 map with 7x7 taps every
// pixel but one was a border pixel); the same grouping for 3x3 (1-pixel
// borders) lost 10-25% on 14x14 and 28x28 maps, so 3x3 keeps its scheme.
// Both give the same bits: each output element is one FMA chain in
// (kh, kw) order from the bias.
//
// rows[kh] is the input row of tap row kh or null (outside the image: the
// tap row is skipped); `wt` is tap-major [K * K][C]; pixels are C floats
// apart. kMasked: the channel block holds n < width lanes (load_n /
// store_n: masked lanes' memory is never touched); else every access is a
// whole vector. Every output element is one FMA chain in (kh, kw) order
// starting from the bias, whatever the unit split and the grouping.
#pragma once

#include <cstdint>
#include <type_traits>

#include "../cpu_kernels.h"
#include "../vec/vec.h"

namespace mnx {
namespace cpu {
namespace {  // internal linkage: see vec/vec.h

template <class V, bool kMasked>
inline typename V::reg dwkxk_load(const float* p, int n) {
  if constexpr (kMasked) return V::load_n(p, n);
  else return V::load(p);
}

// kStream: whole vectors go out with non-temporal stores (p aligned to
// V::stream_align; see dwkxk_forward_rows)
template <class V, bool kMasked, bool kStream = false>
inline void dwkxk_store(float* p, typename V::reg v, int n) {
  if constexpr (kMasked) V::store_n(p, v, n);
  else if constexpr (kStream) V::stream(p, v);
  else V::store(p, v);
}

// The loops have compile-time bounds and are unrolled fully (the pragmas:
// GCC 12 -O3 miscompiled the partially unrolled form, which test_depthwise
// caught; -O2 and the full unroll are correct). Column pointers are formed
// only for the columns read.
template <class V, int K, int S, int T, bool kMasked, bool kEdge, bool kStream = false>
inline void dwkxk_group_cols(const float* const* rows, int64_t C, int64_t cb, int n,
                             int64_t iw0, int jlo, int jhi, const float* wt,
                             const float* bias, float* out, Activation act) {
  using R = typename V::reg;
  constexpr int kCols = S * (T - 1) + K;
  R acc[T];
  const R b = bias ? dwkxk_load<V, kMasked>(bias + cb, n) : V::zero();
  for (int t = 0; t < T; ++t) acc[t] = b;
  for (int kh = 0; kh < K; ++kh) {
    const float* r = rows[kh];
    if (!r) continue;
    R w[K];
    for (int kw = 0; kw < K; ++kw)
      w[kw] = dwkxk_load<V, kMasked>(wt + (kh * K + kw) * C + cb, n);
#pragma GCC unroll 32
    for (int j = 0; j < kCols; ++j) {
      if (kEdge && (j < jlo || j >= jhi)) continue;
      const R v = dwkxk_load<V, kMasked>(r + (iw0 + j) * C + cb, n);
      // pixel t reads column j with tap kw = j - S * t, 0 <= kw < K
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const int kw = j - S * t;
        if (kw >= 0 && kw < K) acc[t] = V::fma(v, w[kw], acc[t]);
      }
    }
  }
  for (int t = 0; t < T; ++t)
    dwkxk_store<V, kMasked, kStream>(out + t * C + cb, activate<V>(acc[t], act), n);
}

template <class V, int K, int S, int T, bool kMasked>
inline void dwkxk_group(const float* const* rows, int64_t C, int64_t cb, int n,
                        int64_t iw0, const float* wt, const float* bias, float* out,
                        Activation act) {
  dwkxk_group_cols<V, K, S, T, kMasked, false>(rows, C, cb, n, iw0, 0, S * (T - 1) + K, wt,
                                               bias, out, act);
}

// f(masked, cb, n) over the channel blocks of C: whole vectors
// (masked = std::false_type, n = width), then the tail (std::true_type,
// n = C % width lanes).
template <class V, class F>
inline void dwkxk_channel_blocks(int64_t C, F&& f) {
  int64_t cb = 0;
  for (; cb + V::width <= C; cb += V::width) f(std::false_type{}, cb, V::width);
  if (cb < C) f(std::true_type{}, cb, static_cast<int>(C - cb));
}

// A group of T pixels from input column iw0 over every channel block.
// kEdge: see dwkxk_group_cols.
template <class V, int K, int S, int T, bool kEdge, bool kStream = false>
inline void dwkxk_groups(const float* const* rows, int64_t C, int64_t iw0, int jlo, int jhi,
                         const float* wt, const float* bias, float* out, Activation act) {
  dwkxk_channel_blocks<V>(C, [&](auto masked, int64_t cb, int n) {
    dwkxk_group_cols<V, K, S, T, decltype(masked)::value, kEdge, kStream>(rows, C, cb, n, iw0, jlo, jhi,
                                                                 wt, bias, out, act);
  });
}

// Output pixels [ow, ow + T) of a row of W input columns with padding P:
// dwkxk_groups, the column checks only where the group's columns leave the
// image.
template <class V, int K, int S, int T, bool kStream>
inline void dwkxk_group_at(const float* const* rows, int64_t C, int64_t W, int64_t P,
                           int64_t ow, const float* wt, const float* bias, float* yr,
                           Activation act) {
  constexpr int kCols = S * (T - 1) + K;
  const int64_t iw0 = ow * S - P;
  const int jlo = iw0 < 0 ? static_cast<int>(iw0 < -kCols ? kCols : -iw0) : 0;
  const int jhi = W - iw0 < kCols ? static_cast<int>(W - iw0 < 0 ? 0 : W - iw0) : kCols;
  if (jlo == 0 && jhi == kCols)
    dwkxk_groups<V, K, S, T, false, kStream>(rows, C, iw0, 0, kCols, wt, bias, yr + ow * C, act);
  else
    dwkxk_groups<V, K, S, T, true, kStream>(rows, C, iw0, jlo, jhi, wt, bias, yr + ow * C, act);
}

template <class V, int K, bool kMasked, bool kStream>
inline void dwkxk_border_pixel_block(const float* const* rows, int64_t C, int64_t W, int64_t cb,
                                     int n, int64_t iw0, const float* wt, const float* bias,
                                     float* out, Activation act) {
  typename V::reg a = bias ? dwkxk_load<V, kMasked>(bias + cb, n) : V::zero();
  for (int kh = 0; kh < K; ++kh) {
    const float* r = rows[kh];
    if (!r) continue;
    for (int kw = 0; kw < K; ++kw) {
      const int64_t iw = iw0 + kw;
      if (iw < 0 || iw >= W) continue;
      a = V::fma(dwkxk_load<V, kMasked>(r + iw * C + cb, n),
                 dwkxk_load<V, kMasked>(wt + (kh * K + kw) * C + cb, n), a);
    }
  }
  dwkxk_store<V, kMasked, kStream>(out + cb, activate<V>(a, act), n);
}

template <class V, int K, bool kStream>
inline void dwkxk_border_pixel(const float* const* rows, int64_t C, int64_t W, int64_t iw0,
                               const float* wt, const float* bias, float* out, Activation act) {
  dwkxk_channel_blocks<V>(C, [&](auto masked, int64_t cb, int n) {
    dwkxk_border_pixel_block<V, K, decltype(masked)::value, kStream>(rows, C, W, cb, n, iw0, wt, bias, out,
                                                            act);
  });
}

// Prefetches for the next output row, one slice per 8-pixel group so the
// touches are spread over the row's compute: the input rows it adds (the S
// rows below this row's window, columns [c0, c1)), and, for writing, its
// output pixels under this group. In a network both are cold (the input
// was written by the producing layer and left L2; the output buffer was
// last used a layer or more ago): at batch 1, one thread, Zen 5, a layer
// whose output lines are not in cache took 2-3x its time in a loop
// (32x112x112: 92 -> 255 us; with the prefetches 168 us), and the
// hardware prefetchers do little for the group's C-strided reads and
// stores. In-process A/B on fused channels_last models (alternating
// forwards, median of ratios): v2 0.958-0.967x at batch 1 (1 and 2
// threads), 0.922x at batch 32; v3-large 0.99x / 0.97x; v3-small 1.00x.
// A layer run in a loop (its data in L2) is 3-10% slower. Prefetches never
// fault.
inline int64_t dwkxk_imin(int64_t a, int64_t b) { return a < b ? a : b; }

template <int S>
inline void dwkxk_prefetch_next(const float* const* next, int64_t C, int64_t c0,
                                int64_t c1) {
  for (int i = 0; i < S; ++i) {
    if (!next[i]) continue;
    const char* p = reinterpret_cast<const char*>(next[i] + c0 * C);
    const char* e = reinterpret_cast<const char*>(next[i] + c1 * C);
    for (; p < e; p += 64) __builtin_prefetch(p, 0, 3);
  }
}

inline void dwkxk_prefetch_out(const float* p, int64_t n) {
  const char* q = reinterpret_cast<const char*>(p);
  for (int64_t b = 0; b < n * static_cast<int64_t>(sizeof(float)); b += 64) __builtin_prefetch(q + b, 1, 3);
}

// One output row of 5x5 / 7x7 taps in pixel groups, borders included (see
// the top of this file); `next`: the rows to prefetch for the next output
// row, `more`: whether there is one in this range.
template <class V, int K, int S, bool kStream>
inline void dwkxk_grouped_row(const float* const* rows, const float* const* next, int64_t C,
                              int64_t W, int64_t P, int64_t OW, bool more, const float* wt,
                              const float* bias, float* yr, Activation act) {
  auto col = [W](int64_t iw) { return iw < 0 ? 0 : dwkxk_imin(iw, W); };
  if (OW >= 8) {
    dwkxk_prefetch_next<S>(next, C, 0, col(K - P));
    int64_t ow = 0;
    for (; ow + 8 <= OW; ow += 8) {
      // this group reads columns [ow*S - P, ow*S - P + 7*S + K)
      dwkxk_prefetch_next<S>(next, C, col(ow * S - P + K), col(ow * S - P + 8 * S + K));
      if (more && !kStream) dwkxk_prefetch_out(yr + (OW + ow) * C, 8 * C);
      dwkxk_group_at<V, K, S, 8, kStream>(rows, C, W, P, ow, wt, bias, yr, act);
    }
    if (ow < OW) {
      dwkxk_prefetch_next<S>(next, C, col(ow * S - P + K), W);
      if (more && !kStream) dwkxk_prefetch_out(yr + (OW + ow) * C, (OW - ow) * C);
      if (OW - ow > 4)
        dwkxk_group_at<V, K, S, 8, kStream>(rows, C, W, P, OW - 8, wt, bias, yr, act);
      else
        dwkxk_group_at<V, K, S, 4, kStream>(rows, C, W, P, OW - 4, wt, bias, yr, act);
    }
    return;
  }
  dwkxk_prefetch_next<S>(next, C, 0, W);
  if (more && !kStream) dwkxk_prefetch_out(yr + OW * C, OW * C);
  if (OW == 7) {
    dwkxk_group_at<V, K, S, 7, kStream>(rows, C, W, P, 0, wt, bias, yr, act);
  } else if (OW >= 4) {
    dwkxk_group_at<V, K, S, 4, kStream>(rows, C, W, P, 0, wt, bias, yr, act);
    dwkxk_group_at<V, K, S, 4, kStream>(rows, C, W, P, OW - 4, wt, bias, yr, act);
  } else {
    for (int64_t ow = 0; ow < OW; ++ow)
      dwkxk_group_at<V, K, S, 1, kStream>(rows, C, W, P, ow, wt, bias, yr, act);
  }
}

template <class V, int K, int S, bool kStream>
void dwkxk_forward_rows_t(const DepthwiseShape& s, const float* x, const float* wt,
                          const float* bias, float* y, Activation act, int64_t begin,
                          int64_t end) {
  const int64_t C = s.C, W = s.W, P = s.PW, OW = s.OW;
  auto col = [W](int64_t iw) { return iw < 0 ? 0 : dwkxk_imin(iw, W); };
  for (int64_t u = begin; u < end; ++u) {
    const int64_t n = u / s.OH, oh = u % s.OH;
    const float* rows[K];
    for (int kh = 0; kh < K; ++kh) {
      const int64_t ih = oh * S - s.PH + kh;
      rows[kh] = (ih >= 0 && ih < s.H) ? x + (n * s.H + ih) * W * C : nullptr;
    }
    // the rows output row oh + 1 reads and oh does not (same image only)
    const float* next[S];
    for (int i = 0; i < S; ++i) {
      const int64_t ih = (oh + 1) * S - s.PH + K - S + i;
      next[i] = (u + 1 < end && oh + 1 < s.OH && ih >= 0 && ih < s.H)
                    ? x + (n * s.H + ih) * W * C
                    : nullptr;
    }
    const bool more = u + 1 < end;
    float* yr = y + (n * s.OH + oh) * OW * C;
    if constexpr (K == 3) {
      // interior columns: ow * S - P >= 0 and ow * S - P + K - 1 <= W - 1
      int64_t lo = (P + S - 1) / S, hi = W - K + P >= 0 ? (W - K + P) / S + 1 : 0;
      if (hi > OW) hi = OW;
      if (lo > hi) lo = hi;
      for (int64_t ow = 0; ow < lo; ++ow)
        dwkxk_border_pixel<V, K, kStream>(rows, C, W, ow * S - P, wt, bias, yr + ow * C, act);
      dwkxk_prefetch_next<S>(next, C, 0, dwkxk_imin(lo * S + K, W));
      int64_t ow = lo;
      for (; ow + 8 <= hi; ow += 8) {
        dwkxk_prefetch_next<S>(next, C, col(ow * S - P + K), col(ow * S - P + 8 * S + K));
        if (more && !kStream) dwkxk_prefetch_out(yr + (OW + ow) * C, 8 * C);
        dwkxk_groups<V, K, S, 8, false, kStream>(rows, C, ow * S - P, 0, 7 * S + K, wt, bias, yr + ow * C, act);
      }
      dwkxk_prefetch_next<S>(next, C, col(ow * S - P + K), W);
      for (; ow + 4 <= hi; ow += 4)
        dwkxk_groups<V, K, S, 4, false, kStream>(rows, C, ow * S - P, 0, 3 * S + K, wt, bias, yr + ow * C, act);
      for (; ow < hi; ++ow)
        dwkxk_groups<V, K, S, 1, false, kStream>(rows, C, ow * S - P, 0, K, wt, bias, yr + ow * C, act);
      for (; ow < OW; ++ow)
        dwkxk_border_pixel<V, K, kStream>(rows, C, W, ow * S - P, wt, bias, yr + ow * C, act);
    } else {  // (not instantiated for 3x3)
      dwkxk_grouped_row<V, K, S, kStream>(rows, next, C, W, P, OW, more, wt, bias, yr, act);
    }
  }
}

// The rows above. stream (the stride-1 grad_input, which runs this kernel
// on grad_output): an output of 4 MiB and more is written with non-temporal
// stores where every full-vector store is aligned (C a multiple of the
// width, y aligned), without the output prefetches; each line is then not
// read from memory before it is written. Batch 32, 2 threads, Intel Xeon
// (AVX-512), cache flushed before each call, streamed / plain time (2
// runs): 3x3 grad_input 144x56x56 0.81, 192x28x28 0.78-0.81, 384x14x14
// 0.69-0.72, 960x7x7 0.62-0.74; 5x5 240x28x28 0.77, 480x14x14 0.75-0.83.
// The forward streams in training only (DepthwiseShape::stream_out, set by
// the glue when the input requires grad): alone with the cache flushed it
// gained as much (0.62-0.92 at stride 1), but the fused models at batch 32
// (channels_last, process-alternating) took 1.00-1.06x the time, their
// next op reading the output while it was still in the (large, 480 MB
// here) L3; training steps at batch 32, channels_last, streamed / plain
// (3 process-alternating rounds each): mobilenet_v2 0.973,
// mobilenet_v3_large 1.003.
template <class V, int K, int S>
void dwkxk_forward_rows(const DepthwiseShape& s, const float* x, const float* wt,
                        const float* bias, float* y, Activation act, int64_t begin,
                        int64_t end, bool stream = false) {
  if (stream && stream_output<V>(y, s.C, s.N * s.OH * s.OW * s.C)) {
    dwkxk_forward_rows_t<V, K, S, true>(s, x, wt, bias, y, act, begin, end);
    V::stream_fence();
  } else {
    dwkxk_forward_rows_t<V, K, S, false>(s, x, wt, bias, y, act, begin, end);
  }
}

// ---- grad_input at stride 2 ------------------------------------------------
// gx of a stride-2 K x K layer is the stride-1 correlation of gy zero-dilated
// by 2 and padded by Q = K-1-P with the flipped taps wf (tap-major
// [K * K][C], wf[a * K + b] = w[K-1-a][K-1-b]):
//   gx[ih][iw] = sum over (a, b) of wf[a][b] * G[ih + a - QH][iw + b - QW],
//   G[r][c] = gy[r / 2][c / 2] where r and c are even and in range, else 0.
// Only the taps that land on a gy pixel are computed: tap rows a with
// ih + a - QH even (ceil(K/2) or floor(K/2) of them), tap columns b with
// iw + b - QW even, so pixels of one column parity share their taps. A
// group of T pixels iw0, iw0 + 2, ... of one parity reads NB consecutive
// tap columns' worth of gy columns (ow0 .. ow0 + T - 1 + NB - 1), each loaded
// once and fed to every (pixel, tap) pair that reads it. Each gx element is
// one FMA chain over its taps in (a, b) order from zero: the dilated
// correlation's chain without its products with the inserted zeros.
template <class V, int K, int NB, int T, bool kMasked, bool kStream>
inline void dws2_group(const float* const* rows, const int* ra, int nr, int64_t C, int64_t cb,
                       int n, int64_t ow0, int b0, const float* wf, float* out) {
  using R = typename V::reg;
  R acc[T];
  for (int t = 0; t < T; ++t) acc[t] = V::zero();
  for (int i = 0; i < nr; ++i) {
    R w[NB];
    for (int m = 0; m < NB; ++m) w[m] = dwkxk_load<V, kMasked>(wf + (ra[i] * K + b0 + 2 * m) * C + cb, n);
    const float* r = rows[i] + ow0 * C + cb;
#pragma GCC unroll 16
    for (int q = 0; q < T + NB - 1; ++q) {
      const R v = dwkxk_load<V, kMasked>(r + q * C, n);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const int m = q - t;  // pixel t reads column q with its m-th tap
        if (m >= 0 && m < NB) acc[t] = V::fma(v, w[m], acc[t]);
      }
    }
  }
  for (int t = 0; t < T; ++t) dwkxk_store<V, kMasked, kStream>(out + 2 * t * C + cb, acc[t], n);
}

// One gx pixel whose tap columns may leave gy (each checked), every channel
// block.
template <class V, int K, bool kStream>
inline void dws2_border_pixel(const float* const* rows, const int* ra, int nr, int64_t C,
                              int64_t OW, int64_t iw, int64_t QW, const float* wf, float* out) {
  dwkxk_channel_blocks<V>(C, [&](auto masked, int64_t cb, int n) {
    constexpr bool M = decltype(masked)::value;
    typename V::reg acc = V::zero();
    for (int i = 0; i < nr; ++i)
      for (int b = 0; b < K; ++b) {
        const int64_t c = iw + b - QW;
        if (c < 0 || (c & 1) || c / 2 >= OW) continue;
        acc = V::fma(dwkxk_load<V, M>(rows[i] + (c / 2) * C + cb, n),
                     dwkxk_load<V, M>(wf + (ra[i] * K + b) * C + cb, n), acc);
      }
    dwkxk_store<V, M, kStream>(out + cb, acc, n);
  });
}

// The pixels of one column parity of a gx row: jj-th pixel iw = par + 2 jj;
// its first tap column b0 and gy column ow = base + jj (+ m for its m-th tap).
template <class V, int K, int NB, bool kStream>
inline void dws2_parity(const float* const* rows, const int* ra, int nr, int64_t C, int64_t W,
                        int64_t OW, int64_t QW, int par, const float* wf, float* gxr) {
  const int b0 = static_cast<int>((par + QW) & 1);
  const int64_t count = (W - par + 1) / 2;
  const int64_t base = (par + b0 - QW) / 2;  // exact: par + b0 - QW is even
  int64_t lo = base < 0 ? -base : 0, hi = OW - NB + 1 - base;
  if (hi > count) hi = count;
  if (lo > hi) lo = hi;
  auto pix = [&](int64_t jj) { return gxr + (par + 2 * jj) * C; };
  for (int64_t jj = 0; jj < lo; ++jj) dws2_border_pixel<V, K, kStream>(rows, ra, nr, C, OW, par + 2 * jj, QW, wf, pix(jj));
  int64_t jj = lo;
  auto groups = [&](auto tc) {
    constexpr int T = decltype(tc)::value;
    for (; jj + T <= hi; jj += T)
      dwkxk_channel_blocks<V>(C, [&](auto masked, int64_t cb, int n) {
        dws2_group<V, K, NB, T, decltype(masked)::value, kStream>(rows, ra, nr, C, cb, n, base + jj, b0, wf, pix(jj));
      });
  };
  groups(std::integral_constant<int, 8>{});
  groups(std::integral_constant<int, 4>{});
  groups(std::integral_constant<int, 1>{});
  for (; jj < count; ++jj) dws2_border_pixel<V, K, kStream>(rows, ra, nr, C, OW, par + 2 * jj, QW, wf, pix(jj));
}

// grad_input rows (n, ih) in [begin, end) of a stride-2 K x K layer (shape
// s: square K, stride 2, dilation 1, multiplier 1, padding <= K-1; gy
// [N, OH, OW, C], gx [N, H, W, C]); wf as above. kStream: gx written with
// non-temporal stores (whole vectors aligned to V::stream_align).
template <class V, int K, bool kStream>
void dws2_rows(const DepthwiseShape& s, const float* gy, const float* wf, float* gx,
               int64_t begin, int64_t end) {
  const int64_t C = s.C, W = s.W, OW = s.OW, QH = K - 1 - s.PH, QW = K - 1 - s.PW;
  for (int64_t u = begin; u < end; ++u) {
    const int64_t n = u / s.H, ih = u % s.H;
    const float* rows[K];
    int ra[K], nr = 0;
    for (int a = 0; a < K; ++a) {
      const int64_t r = ih + a - QH;
      if (r < 0 || (r & 1) || r / 2 >= s.OH) continue;
      ra[nr] = a;
      rows[nr++] = gy + (n * s.OH + r / 2) * OW * C;
    }
    float* gxr = gx + u * W * C;
    for (int par = 0; par < 2 && par < W; ++par) {
      // tap columns b = b0, b0 + 2, ...: (K + 1) / 2 of them when b0 = 0
      if (((par + QW) & 1) == 0)
        dws2_parity<V, K, (K + 1) / 2, kStream>(rows, ra, nr, C, W, OW, QW, par, wf, gxr);
      else
        dws2_parity<V, K, K / 2, kStream>(rows, ra, nr, C, W, OW, QW, par, wf, gxr);
    }
  }
}

// The rows as above; a gx of 4 MiB and more is written with non-temporal
// stores where every store is a whole aligned vector (C a multiple of the
// width): the rows are written once, in two interleaved passes (even then
// odd pixels), and without them each line of gx is read from memory before
// it is written (perf: the first pass of each row held most of the time).
template <class V, int K>
void dwkxk_grad_input_s2_k(const DepthwiseShape& s, const float* gy, const float* wf, float* gx,
                           int64_t begin, int64_t end) {
  if (stream_output<V>(gx, s.C, s.N * s.H * s.W * s.C)) {
    dws2_rows<V, K, true>(s, gy, wf, gx, begin, end);
    V::stream_fence();
  } else {
    dws2_rows<V, K, false>(s, gy, wf, gx, begin, end);
  }
}

// The entry point of each ISA's translation unit: K = s.KH, 3, 5 or 7.
template <class V>
void dwkxk_grad_input_s2_rows(const DepthwiseShape& s, const float* gy, const float* wf, float* gx,
                              int64_t begin, int64_t end) {
  if (s.KH == 3) dwkxk_grad_input_s2_k<V, 3>(s, gy, wf, gx, begin, end);
  else if (s.KH == 5) dwkxk_grad_input_s2_k<V, 5>(s, gy, wf, gx, begin, end);
  else dwkxk_grad_input_s2_k<V, 7>(s, gy, wf, gx, begin, end);
}

}  // namespace
}  // namespace cpu
}  // namespace mnx
