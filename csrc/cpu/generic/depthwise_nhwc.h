// The general channels_last (NHWC) depthwise kernels (DepthwisePath::
// nhwc_direct), written once over the vector layer (vec.h) and instantiated
// per ISA by the family (depthwise_family.h):
//
//   dwnhwc_tap_major_weights   per-thread tap-major copy [KH*KW][C_out] of the
//                              weights [C_out, 1, KH, KW], reused across calls
//   dwnhwc_pixel               one output pixel over all channels: init (bias
//                              or 0) + sum over the given taps, activation;
//                              4 registers per step, then the tail
//   dwnhwc_forward / dwnhwc_grad_input
//                              per-tap bounds checks (scalar index
//                              arithmetic), no padded copy; units: output
//                              rows (n, oh) / grad_input rows (n, ih)
//   dwnhwc_grad_weight         one unit = kDepthwiseWeightChannelBlock (8)
//                              channels = 8 / width registers per tap, summed
//                              over N x OH x OW in a fixed order
//   dwnhwc_grad_weight_partial partial sums per chunk of (n, oh) rows
//                              (params.h), all channels at once: per row, tap
//                              and channel block the valid output columns
//                              are a contiguous range, summed in registers
//                              (dwnhwc_column_sums); 3x3 taps: the 9 tap
//                              sums of a channel vector in registers along
//                              the row (dwnhwc3x3_grad_weight_rows); every ISA
//
// Template parameters keep each ISA's code as it was:
//   kMaskedTail  true: the channel tail runs as (masked) vectors of `width`
//                lanes, load_n / store_n (AVX2); false: whole vectors, then
//                a scalar loop (NEON, whose load_n goes through memory)
//   kMult        true: channel multiplier > 1 handled (NEON): the forward
//                expands the KH input rows of an output row to C_out
//                channels in `xe`; grad_input sums per output channel in
//                `tmp`, then adds each input channel's m outputs;
//                grad_weight gathers x[oc / m]. false (AVX2, multiplier 1
//                only): that code is not compiled.
// Every output element is one FMA chain in tap order starting from the bias
// (or the partial sum), whatever the unit split.
#pragma once

#include <cstdint>
#include <cstdlib>

#include "../cpu_kernels.h"
#include "../../kernels/depthwise_index.h"
#include "../vec/vec.h"

namespace mnx {
namespace cpu {
namespace {  // internal linkage: see vec/vec.h

constexpr int64_t kDwNhwcMaxTaps = 1024;

inline int64_t dwnhwc_min(int64_t a, int64_t b) { return a < b ? a : b; }

// Tap-major copy of the weights for this thread (null if out of memory);
// one buffer per translation unit and thread, grown to the largest seen.
inline const float* dwnhwc_tap_major_weights(const DepthwiseShape& s, const float* w) {
  thread_local float* buf = nullptr;
  thread_local int64_t cap = 0;
  const int64_t KK = s.KH * s.KW, Co = s.C_out(), n = KK * Co;
  if (n > cap) {
    std::free(buf);
    buf = static_cast<float*>(std::malloc(sizeof(float) * n));
    cap = buf ? n : 0;
    if (!buf) return nullptr;
  }
  for (int64_t c = 0; c < Co; ++c)
    for (int64_t t = 0; t < KK; ++t) buf[t * Co + c] = w[c * KK + t];
  return buf;
}

struct DwNhwcTap {
  const float* src;  // channel 0 of the source pixel
  int64_t t;         // tap index kh*KW + kw
};

// out[c] = act(init[c] + sum over taps of src[tap][c] * wt[tap][c]), c < C.
template <class V, bool kMaskedTail>
inline void dwnhwc_pixel(int64_t C, const DwNhwcTap* taps, int64_t ntaps, const float* wt,
                         const float* bias, float* out, Activation act) {
  using R = typename V::reg;
  constexpr int L = V::width;
  int64_t c = 0;
  for (; c + 4 * L <= C; c += 4 * L) {
    R a0, a1, a2, a3;
    if (bias) {
      a0 = V::load(bias + c);
      a1 = V::load(bias + c + L);
      a2 = V::load(bias + c + 2 * L);
      a3 = V::load(bias + c + 3 * L);
    } else {
      a0 = a1 = a2 = a3 = V::zero();
    }
    for (int64_t i = 0; i < ntaps; ++i) {
      const float* p = taps[i].src + c;
      const float* q = wt + taps[i].t * C + c;
      a0 = V::fma(V::load(p), V::load(q), a0);
      a1 = V::fma(V::load(p + L), V::load(q + L), a1);
      a2 = V::fma(V::load(p + 2 * L), V::load(q + 2 * L), a2);
      a3 = V::fma(V::load(p + 3 * L), V::load(q + 3 * L), a3);
    }
    V::store(out + c, activate<V>(a0, act));
    V::store(out + c + L, activate<V>(a1, act));
    V::store(out + c + 2 * L, activate<V>(a2, act));
    V::store(out + c + 3 * L, activate<V>(a3, act));
  }
  if constexpr (kMaskedTail) {
    for (; c < C; c += L) {
      const int n = static_cast<int>(dwnhwc_min(C - c, L));
      R a = bias ? V::load_n(bias + c, n) : V::zero();
      for (int64_t i = 0; i < ntaps; ++i)
        a = V::fma(V::load_n(taps[i].src + c, n), V::load_n(wt + taps[i].t * C + c, n), a);
      V::store_n(out + c, activate<V>(a, act), n);
    }
  } else {
    for (; c + L <= C; c += L) {
      R a = bias ? V::load(bias + c) : V::zero();
      for (int64_t i = 0; i < ntaps; ++i)
        a = V::fma(V::load(taps[i].src + c), V::load(wt + taps[i].t * C + c), a);
      V::store(out + c, activate<V>(a, act));
    }
    for (; c < C; ++c) {
      float a = bias ? bias[c] : 0.f;
      for (int64_t i = 0; i < ntaps; ++i) a += taps[i].src[c] * wt[taps[i].t * C + c];
      out[c] = apply_activation(a, act);
    }
  }
}

// Forward over output rows [begin, end); `wt` tap-major. kMult: `xe` is a
// [KH][W][C_out] scratch when s.mult > 1 (else null).
template <class V, bool kMaskedTail, bool kMult>
void dwnhwc_forward(const DepthwiseShape& s, const float* x, const float* wt,
                    const float* bias, float* y, Activation act, int64_t begin,
                    int64_t end, float* xe) {
  const int64_t Co = s.C_out();
  DwNhwcTap taps[kDwNhwcMaxTaps];
  for (int64_t u = begin; u < end; ++u) {
    const int64_t n = u / s.OH, oh = u % s.OH;
    if constexpr (kMult) {
      if (xe) {
        const int64_t m = s.mult;
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          const int64_t ih = oh * s.SH - s.PH + kh * s.DH;
          if (ih < 0 || ih >= s.H) continue;
          const float* xr = x + (n * s.H + ih) * s.W * s.C;
          float* dst = xe + kh * s.W * Co;
          for (int64_t iw = 0; iw < s.W; ++iw)
            for (int64_t oc = 0; oc < Co; ++oc) dst[iw * Co + oc] = xr[iw * s.C + oc / m];
        }
      }
    }
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      int64_t nt = 0;
      for_each_input_tap(s, oh, ow, s.KH, s.KW, [&](int64_t kh, int64_t kw, int64_t ih, int64_t iw) {
        const float* src = x + ((n * s.H + ih) * s.W + iw) * s.C;
        if constexpr (kMult) {
          if (xe) src = xe + (kh * s.W + iw) * Co;
        }
        taps[nt++] = {src, kh * s.KW + kw};
      });
      dwnhwc_pixel<V, kMaskedTail>(Co, taps, nt, wt, bias,
                                   y + ((n * s.OH + oh) * s.OW + ow) * Co, act);
    }
  }
}

// grad_input over rows (n, ih) in [begin, end); `wt` tap-major. kMult: `tmp`
// is a C_out scratch when s.mult > 1 (else null).
template <class V, bool kMaskedTail, bool kMult>
void dwnhwc_grad_input(const DepthwiseShape& s, const float* gy, const float* wt,
                       float* gx, int64_t begin, int64_t end, float* tmp) {
  const int64_t Co = s.C_out();
  DwNhwcTap taps[kDwNhwcMaxTaps];
  for (int64_t u = begin; u < end; ++u) {
    const int64_t n = u / s.H, ih = u % s.H;
    for (int64_t iw = 0; iw < s.W; ++iw) {
      int64_t nt = 0;
      for_each_grad_tap(s, ih, iw, [&](int64_t kh, int64_t kw, int64_t oh, int64_t ow) {
        taps[nt++] = {gy + ((n * s.OH + oh) * s.OW + ow) * Co, kh * s.KW + kw};
      });
      float* out = gx + ((n * s.H + ih) * s.W + iw) * s.C;
      if constexpr (kMult) {
        if (tmp) {
          const int64_t m = s.mult;
          dwnhwc_pixel<V, kMaskedTail>(Co, taps, nt, wt, nullptr, tmp, Activation::None);
          for (int64_t c = 0; c < s.C; ++c) {
            float a = tmp[c * m];
            for (int64_t j = 1; j < m; ++j) a += tmp[c * m + j];
            out[c] = a;
          }
          continue;
        }
      }
      dwnhwc_pixel<V, kMaskedTail>(s.C, taps, nt, wt, nullptr, out, Activation::None);
    }
  }
}

// grad_weight, units of kDepthwiseWeightChannelBlock (8) channels: NR =
// 8 / width vector accumulators per tap over N x OH x OW. kMaskedTail: every
// load is load_n (a partial unit included); else whole vectors when the unit
// is full, load_n otherwise.
template <class V, bool kMaskedTail, bool kMult>
void dwnhwc_grad_weight(const DepthwiseShape& s, const float* gy, const float* x,
                        float* gw, int64_t begin, int64_t end) {
  using R = typename V::reg;
  constexpr int L = V::width;
  static_assert(kDepthwiseWeightChannelBlock == 8 && 8 % L == 0, "whole vectors per unit");
  constexpr int NR = 8 / L;
  const int64_t KK = s.KH * s.KW, C = s.C, Co = s.C_out();
  R acc[NR * kDwNhwcMaxTaps];
  for (int64_t u = begin; u < end; ++u) {
    const int64_t c0 = u * 8;
    const int64_t rem = dwnhwc_min(Co - c0, 8);
    int nl[NR];  // live lanes per register
    for (int j = 0; j < NR; ++j)
      nl[j] = static_cast<int>(rem - j * L < 0 ? 0 : dwnhwc_min(rem - j * L, L));
    const bool full = !kMaskedTail && rem == 8;
    for (int64_t t = 0; t < NR * KK; ++t) acc[t] = V::zero();
    for (int64_t n = 0; n < s.N; ++n) {
      for (int64_t oh = 0; oh < s.OH; ++oh) {
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          const float* gp = gy + ((n * s.OH + oh) * s.OW + ow) * Co + c0;
          R g[NR];
          for (int j = 0; j < NR; ++j) g[j] = full ? V::load(gp + j * L) : V::load_n(gp + j * L, nl[j]);
          for_each_input_tap(s, oh, ow, s.KH, s.KW, [&](int64_t kh, int64_t kw, int64_t ih, int64_t iw) {
            const float* xq = x + ((n * s.H + ih) * s.W + iw) * C;  // the input pixel
            R* a = acc + NR * (kh * s.KW + kw);
            if constexpr (kMult) {
              if (s.mult > 1) {  // gather x[oc / m] for the unit's channels
                float xg[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
                for (int64_t i = 0; i < rem; ++i) xg[i] = xq[(c0 + i) / s.mult];
                for (int j = 0; j < NR; ++j) a[j] = V::fma(g[j], V::load(xg + j * L), a[j]);
                return;
              }
            }
            const float* xp = xq + c0;
            for (int j = 0; j < NR; ++j)
              a[j] = V::fma(g[j], full ? V::load(xp + j * L) : V::load_n(xp + j * L, nl[j]), a[j]);
          });
        }
      }
    }
    alignas(64) float tmp[8];
    for (int64_t t = 0; t < KK; ++t) {
      for (int j = 0; j < NR; ++j) V::store(tmp + j * L, acc[NR * t + j]);
      for (int64_t i = 0; i < rem; ++i) gw[(c0 + i) * KK + t] = tmp[i];
    }
  }
}

// P[c] += sum over ncol columns j of g[j * gstep + c] * x[j * xstep + c],
// c < C: blocks of 4 registers, then whole vectors, then a scalar tail; each
// element is one FMA chain in column order. Not inlined: on its own it keeps
// pointers, strides and the count in registers (written inline in the loop
// nest of dwnhwc_grad_weight_partial, GCC 12 spilled a stride or the count
// to the stack inside the column loop, 2-5% slower on AVX2).
template <class V>
[[gnu::noinline]] void dwnhwc_column_sums(int64_t C, int64_t ncol, const float* g, int64_t gstep,
                                          const float* x, int64_t xstep, float* P) {
  using R = typename V::reg;
  constexpr int L = V::width;
  int64_t c = 0;
  for (; c + 4 * L <= C; c += 4 * L) {
    R a0 = V::load(P + c), a1 = V::load(P + c + L);
    R a2 = V::load(P + c + 2 * L), a3 = V::load(P + c + 3 * L);
    const float* gp = g + c;
    const float* xp = x + c;
    for (int64_t j = ncol; j > 0; --j, gp += gstep, xp += xstep) {
      a0 = V::fma(V::load(gp), V::load(xp), a0);
      a1 = V::fma(V::load(gp + L), V::load(xp + L), a1);
      a2 = V::fma(V::load(gp + 2 * L), V::load(xp + 2 * L), a2);
      a3 = V::fma(V::load(gp + 3 * L), V::load(xp + 3 * L), a3);
    }
    V::store(P + c, a0);
    V::store(P + c + L, a1);
    V::store(P + c + 2 * L, a2);
    V::store(P + c + 3 * L, a3);
  }
  for (; c + L <= C; c += L) {
    R a = V::load(P + c);
    const float* gp = g + c;
    const float* xp = x + c;
    for (int64_t j = ncol; j > 0; --j, gp += gstep, xp += xstep) a = V::fma(V::load(gp), V::load(xp), a);
    V::store(P + c, a);
  }
  for (; c < C; ++c) {
    float a = P[c];
    const float* gp = g + c;
    const float* xp = x + c;
    for (int64_t j = ncol; j > 0; --j, gp += gstep, xp += xstep) a += *gp * *xp;
    P[c] = a;
  }
}

// K x K taps (K = 3, 5, 7; any stride and padding, dilation 1), multiplier
// 1, rows [r0, r1) added to the chunk's partial sums P for the channels
// [0, cvec) (whole vectors): per row and vector of channels the tap sums of
// RG tap rows at a time (RG * K <= 9 registers: all 3 rows of a 3x3, one
// row of a 5x5 / 7x7) stay in registers across the row's output columns,
// each gy vector loaded once per group and each x vector once per tap that
// reads it (1.1-1.2 loads per FMA; the per-tap column sums take 2 and read
// the gy row once per tap). Each element's sum runs over the rows in order,
// each row's columns in order.
template <class V, int K, int RG>
void dwnhwc_kxk_grad_weight_rows(const DepthwiseShape& s, const float* gy, const float* x, float* P,
                                 int64_t r0, int64_t r1, int64_t cvec) {
  static_assert(K % RG == 0 && RG * K <= 9, "tap row groups");
  using R = typename V::reg;
  constexpr int L = V::width;
  const int64_t C = s.C, SW = s.SW, W = s.W;
  // output columns whose K taps are all inside the row: [lo, hi)
  const int64_t lo = dwnhwc_min(s.OW, (s.PW + SW - 1) / SW);
  const int64_t hi = W - K + s.PW < 0 ? lo : dwnhwc_min(s.OW, (W - K + s.PW) / SW + 1);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / s.OH, oh = r % s.OH;
    const float* gr = gy + r * s.OW * C;
    const float* xr[K];
    for (int kh = 0; kh < K; ++kh) {
      const int64_t ih = oh * s.SH - s.PH + kh;
      xr[kh] = ih >= 0 && ih < s.H ? x + (n * s.H + ih) * W * C : nullptr;
    }
    // The next row's gy row and the input rows it reads that this row does
    // not (1 at stride 1, 2 at stride 2), prefetched a slice per channel
    // vector: the column loop reads `width` channels of each pixel, a few
    // C-strided lines per step, which the hardware prefetchers follow late
    // (without it the 3x3 rows took 1.2-1.5x the per-tap column sums' time
    // on [32, 72, 56, 56] and [32, 480, 14, 14]; with it 0.5-0.75x).
    const float* nx[3] = {nullptr, nullptr, nullptr};
    int64_t nn = 0;
    if (r + 1 < s.N * s.OH) {
      const int64_t n1 = (r + 1) / s.OH, oh1 = (r + 1) % s.OH;
      nx[nn++] = gy + (r + 1) * s.OW * C;
      for (int kh = 0; kh < K && nn < 3; ++kh) {
        const int64_t ih = oh1 * s.SH - s.PH + kh;
        const int64_t cur = ih - (oh * s.SH - s.PH);  // its tap row in this row, if one
        if (ih >= 0 && ih < s.H && (n1 != n || cur < 0 || cur >= K)) nx[nn++] = x + (n1 * s.H + ih) * W * C;
      }
    }
    const int64_t nvec = cvec / L;
    for (int64_t c = 0; c < cvec; c += L) {
      for (int64_t i = 0; i < nn; ++i) {
        const int64_t len = (i == 0 ? s.OW : W) * C * static_cast<int64_t>(sizeof(float));
        const int64_t per = (len + nvec - 1) / nvec, b0 = c / L * per, b1 = dwnhwc_min(len, b0 + per);
        const char* q = reinterpret_cast<const char*>(nx[i]);
        for (int64_t o = b0; o < b1; o += 64) __builtin_prefetch(q + o, 0, 3);
      }
      for (int k0 = 0; k0 < K; k0 += RG) {
        bool any = false;
        for (int j = 0; j < RG; ++j) any = any || xr[k0 + j];
        if (!any) continue;
        R a[RG * K];
        for (int t = 0; t < RG * K; ++t) a[t] = V::load(P + (k0 * K + t) * C + c);
        auto checked = [&](int64_t ow) {  // a border column: taps outside the row skipped
          const R g = V::load(gr + ow * C + c);
          for (int j = 0; j < RG; ++j) {
            if (!xr[k0 + j]) continue;
            for (int kw = 0; kw < K; ++kw) {
              const int64_t iw = ow * SW - s.PW + kw;
              if (iw >= 0 && iw < W) a[j * K + kw] = V::fma(g, V::load(xr[k0 + j] + iw * C + c), a[j * K + kw]);
            }
          }
        };
        int64_t ow = 0;
        for (; ow < lo; ++ow) checked(ow);
        for (; ow < hi; ++ow) {
          const R g = V::load(gr + ow * C + c);
          const int64_t off = (ow * SW - s.PW) * C + c;
          for (int j = 0; j < RG; ++j) {
            if (!xr[k0 + j]) continue;
            const float* xp = xr[k0 + j] + off;
            for (int kw = 0; kw < K; ++kw) a[j * K + kw] = V::fma(g, V::load(xp + kw * C), a[j * K + kw]);
          }
        }
        for (; ow < s.OW; ++ow) checked(ow);
        for (int t = 0; t < RG * K; ++t) V::store(P + (k0 * K + t) * C + c, a[t]);
      }
    }
  }
}

// Partial sums per chunk of (n, oh) rows (params.h), multiplier 1: per row,
// tap and channel block the valid output columns [lo, hi) are contiguous.
// 3x3 taps, and 5x5 / 7x7 on rows of 28 pixels and more: the channels in
// whole vectors by dwnhwc_kxk_grad_weight_rows, the channel tail by the
// per-tap column sums. In-process A/B against the column sums for all
// channels (Zen 5, AVX2 family, batch 32): 19 3x3 shapes of v2 / v3, the sum
// of times 0.75x on 2 threads, 0.67x on 1, per shape 0.43-0.96x except
// [32, 96, 28, 28] stride 2 at 1.08x (150 us); 5x5 / 7x7 at 28x28 and more
// 0.63-0.69x ([32, 96, 28, 28] 5x5 stride 2: 1.01x), at 14x14 and 7x7
// 0.91-1.18x: those keep the column sums. Other kernel sizes: the column
// sums.
template <class V>
void dwnhwc_grad_weight_partial(const DepthwiseShape& s, const float* gy, const float* x,
                                float* partial, int64_t begin, int64_t end) {
  const int64_t C = s.C, KK = s.KH * s.KW, rows = s.N * s.OH;
  const int64_t cs = depthwise_grad_weight_row_chunk_size(s);
  const bool kxk = s.KH == s.KW && s.DH == 1 && s.DW == 1 &&
                   (s.KH == 3 || ((s.KH == 5 || s.KH == 7) && s.W >= 28));
  const int64_t cvec = kxk ? C / V::width * V::width : 0;  // channels the K x K rows take
  for (int64_t u = begin; u < end; ++u) {
    float* P = partial + u * KK * C;
    for (int64_t i = 0; i < KK * C; ++i) P[i] = 0.f;
    const int64_t r1 = dwnhwc_min(rows, (u + 1) * cs);
    if (cvec > 0) {
      if (s.KH == 3)
        dwnhwc_kxk_grad_weight_rows<V, 3, 3>(s, gy, x, P, u * cs, r1, cvec);
      else if (s.KH == 5)
        dwnhwc_kxk_grad_weight_rows<V, 5, 1>(s, gy, x, P, u * cs, r1, cvec);
      else
        dwnhwc_kxk_grad_weight_rows<V, 7, 1>(s, gy, x, P, u * cs, r1, cvec);
    }
    if (cvec == C) continue;
    for (int64_t r = u * cs; r < r1; ++r) {
      const int64_t n = r / s.OH, oh = r % s.OH;
      const float* gr = gy + r * s.OW * C + cvec;
      for (int64_t kh = 0; kh < s.KH; ++kh) {
        const int64_t ih = oh * s.SH - s.PH + kh * s.DH;
        if (ih < 0 || ih >= s.H) continue;
        const float* xr = x + (n * s.H + ih) * s.W * C + cvec;
        for (int64_t kw = 0; kw < s.KW; ++kw) {
          const int64_t t0 = s.PW - kw * s.DW;  // iw = ow*SW - t0
          const int64_t lo = t0 <= 0 ? 0 : (t0 + s.SW - 1) / s.SW;
          const int64_t t1 = s.W - 1 + t0;
          const int64_t hi = t1 < 0 ? 0 : dwnhwc_min(s.OW, t1 / s.SW + 1);
          if (hi <= lo) continue;
          dwnhwc_column_sums<V>(C - cvec, hi - lo, gr + lo * C, C, xr + (lo * s.SW - t0) * C, s.SW * C,
                                P + (kh * s.KW + kw) * C + cvec);
        }
      }
    }
  }
}

}  // namespace
}  // namespace cpu
}  // namespace mnx
