// The NCHW depthwise kernels vectorised along W (DepthwisePath::nchw_direct)
// and along the channels (nchw_small_planes), written once over the vector
// layer (vec.h) and instantiated per ISA by the family (depthwise_family.h),
// which holds their shape limits and passes, on AVX2, the padded grad_weight
// plane kernel (a PaddedFn, avx2/depthwise_nchw_avx2.cpp).
//
//  forward_direct      any kernel up to kMaxTaps, stride 1 or 2 along W (any
//                      along H), any dilation and multiplier: the interior of
//                      each output row in steps of NV vectors (then single
//                      vectors), weights broadcast once per plane; borders by
//                      the scalar formula, so padding costs no copy.
//  grad_input_direct   stride_w 1 (any stride_h): a correlation of
//                      grad_output with the weights; stride_w 2: one
//                      stride-1 correlation per column parity, interleaved
//                      into the row through a per-thread buffer.
//  grad_weight_direct  stride_w 1 or 2: per output channel one vector
//                      accumulator per tap over N x OH x OW plus a scalar one
//                      for the borders, reduced in a fixed order.
//  *_small_planes      multiplier 1, small planes (kSmallPlane pixels): blocks
//                      of V::width channels transposed to [H][W][width] and
//                      computed with vectors along C (any stride/dilation).
//
// Per element the arithmetic does not depend on the vector width or the
// blocking: every output is its taps' FMAs in (kh, kw) order (vector lanes
// and the scalar borders alike), so each ISA keeps its results bit for bit.
#pragma once

#include <cstdint>
#include <cstdlib>

#include "../cpu_kernels.h"
#include "../../kernels/depthwise_index.h"
#include "../vec/vec.h"

namespace mnx {
namespace cpu {
namespace {  // internal linkage: see vec.h
namespace dw_nchw {

constexpr int64_t kMaxTaps = 49;
constexpr int64_t kSmallPlane = 1024;

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// width consecutive floats (S == 1) or the width even ones of p[0, 2 * width)
// (S == 2; the caller guarantees p[2 * width - 1] is readable).
template <class V, int S>
inline typename V::reg load_strided(const float* p) {
  if (S == 1) return V::load(p);
  return V::load_even(p);
}

// Range [lo, hi) of start columns o whose width-lane vectors read only
// in-bounds input columns: o*S + off >= 0 and (o + width-1)*S + (S-1) +
// off_max <= W-1 for off in [off_min, off_max], and o + width-1 < O.
// Callers step by width from lo, so the vectors cover
// [lo, lo + width * ceil((hi - lo) / width)) <= O.
template <class V>
inline void vector_range(int64_t S, int64_t off_min, int64_t off_max, int64_t W,
                         int64_t O, int64_t* lo, int64_t* hi) {
  constexpr int64_t L = V::width;
  *lo = imin(off_min >= 0 ? 0 : (-off_min + S - 1) / S, O);
  const int64_t lim = W - S - off_max;  // (o + L-1)*S <= lim
  *hi = lim >= 0 ? imin(lim / S - (L - 2), O - (L - 1)) : 0;
  if (*hi < *lo) *hi = *lo;
}

template <class V, int S, int NV>
void forward_plane(const DepthwiseShape& s, const float* xp, const float* wp,
                   float b0, float* yp, Activation act) {
  using R = typename V::reg;
  constexpr int64_t L = V::width;
  const int64_t KH = s.KH, KW = s.KW;
  R wv[kMaxTaps];
  for (int64_t t = 0; t < KH * KW; ++t) wv[t] = V::set1(wp[t]);
  const R bv = V::set1(b0);
  int64_t lo, hi;
  vector_range<V>(S, -s.PW, -s.PW + (KW - 1) * s.DW, s.W, s.OW, &lo, &hi);
  for (int64_t oh = 0; oh < s.OH; ++oh) {
    const int64_t ih0 = oh * s.SH - s.PH;
    int64_t kh0 = 0, kh1 = KH;
    while (kh0 < KH && ih0 + kh0 * s.DH < 0) ++kh0;
    while (kh1 > kh0 && ih0 + (kh1 - 1) * s.DH >= s.H) --kh1;
    float* yr = yp + oh * s.OW;
    auto scalar_at = [&](int64_t ow) {
      float acc = b0;
      for (int64_t kh = kh0; kh < kh1; ++kh) {
        const float* xr = xp + (ih0 + kh * s.DH) * s.W;
        for (int64_t kw = 0; kw < KW; ++kw) {
          const int64_t iw = ow * S - s.PW + kw * s.DW;
          if (iw >= 0 && iw < s.W) acc += xr[iw] * wp[kh * KW + kw];
        }
      }
      yr[ow] = apply_activation(acc, act);
    };
    int64_t ow = 0;
    for (; ow < lo && ow < s.OW; ++ow) scalar_at(ow);
    for (; ow + (NV - 1) * L < hi; ow += NV * L) {
      R a[NV];
      for (int v = 0; v < NV; ++v) a[v] = bv;
      for (int64_t kh = kh0; kh < kh1; ++kh) {
        const float* xr = xp + (ih0 + kh * s.DH) * s.W + ow * S - s.PW;
        const R* w = wv + kh * KW;
        for (int64_t kw = 0; kw < KW; ++kw) {
          const float* p = xr + kw * s.DW;
          for (int v = 0; v < NV; ++v)
            a[v] = V::fma(load_strided<V, S>(p + v * L * S), w[kw], a[v]);
        }
      }
      for (int v = 0; v < NV; ++v) V::store(yr + ow + v * L, activate<V>(a[v], act));
    }
    for (; ow < hi; ow += L) {
      R a0 = bv;
      for (int64_t kh = kh0; kh < kh1; ++kh) {
        const float* xr = xp + (ih0 + kh * s.DH) * s.W + ow * S - s.PW;
        for (int64_t kw = 0; kw < KW; ++kw)
          a0 = V::fma(load_strided<V, S>(xr + kw * s.DW), wv[kh * KW + kw], a0);
      }
      V::store(yr + ow, activate<V>(a0, act));
    }
    for (; ow < s.OW; ++ow) scalar_at(ow);
  }
}

// grad_input for stride_w 1 (any stride_h):
// gx[ih, iw] (+)= sum gy[(ih + PH - kh*DH) / SH, iw + PW - kw*DW] * w[kh, kw]
// over the kh for which ih + PH - kh*DH is a multiple of SH (kAnySH false:
// SH == 1, no division).
template <class V, bool kAnySH>
void grad_input_plane_s1(const DepthwiseShape& s, const float* gyp,
                         const float* wp, float* gxp, bool accumulate) {
  using R = typename V::reg;
  constexpr int64_t L = V::width;
  const int64_t KH = s.KH, KW = s.KW;
  R wv[kMaxTaps];
  for (int64_t t = 0; t < KH * KW; ++t) wv[t] = V::set1(wp[t]);
  int64_t lo, hi;
  // reads gy columns iw + PW - kw*DW, kw in [0, KW)
  vector_range<V>(1, s.PW - (KW - 1) * s.DW, s.PW, s.OW, s.W, &lo, &hi);
  for (int64_t ih = 0; ih < s.H; ++ih) {
    float* xr = gxp + ih * s.W;
    auto scalar_at = [&](int64_t iw) {
      float acc = accumulate ? xr[iw] : 0.f;
      for (int64_t kh = 0; kh < KH; ++kh) {
        int64_t oh = ih + s.PH - kh * s.DH;  // grad_output row (times SH)
        if (kAnySH) {
          if (oh < 0 || oh % s.SH) continue;
          oh /= s.SH;
        }
        if (oh < 0 || oh >= s.OH) continue;
        for (int64_t kw = 0; kw < KW; ++kw) {
          const int64_t ow = iw + s.PW - kw * s.DW;
          if (ow >= 0 && ow < s.OW) acc += gyp[oh * s.OW + ow] * wp[kh * KW + kw];
        }
      }
      xr[iw] = acc;
    };
    int64_t iw = 0;
    for (; iw < lo && iw < s.W; ++iw) scalar_at(iw);
    for (; iw < hi; iw += L) {
      R a = accumulate ? V::load(xr + iw) : V::zero();
      for (int64_t kh = 0; kh < KH; ++kh) {
        int64_t oh = ih + s.PH - kh * s.DH;
        if (kAnySH) {
          if (oh < 0 || oh % s.SH) continue;
          oh /= s.SH;
        }
        if (oh < 0 || oh >= s.OH) continue;
        const float* gr = gyp + oh * s.OW + iw + s.PW;
        for (int64_t kw = 0; kw < KW; ++kw)
          a = V::fma(V::load(gr - kw * s.DW), wv[kh * KW + kw], a);
      }
      V::store(xr + iw, a);
    }
    for (; iw < s.W; ++iw) scalar_at(iw);
  }
}

// grad_input for stride_w 2 (any stride_h): for input columns iw = 2j + q the
// taps with (q + PW - kw*DW) even read grad_output column j + off_kw, a
// stride-1 correlation per parity q; results are interleaved into the row.
template <class V>
void grad_input_plane_s2(const DepthwiseShape& s, const float* gyp,
                         const float* wp, float* gxp, bool accumulate,
                         float* tmp) {
  using R = typename V::reg;
  constexpr int64_t L = V::width;
  const int64_t KH = s.KH, KW = s.KW;
  for (int64_t ih = 0; ih < s.H; ++ih) {
    float* xr = gxp + ih * s.W;
    for (int64_t q = 0; q < 2; ++q) {
      const int64_t J = (s.W - q + 1) / 2;
      if (J <= 0) continue;
      int64_t offs[kMaxTaps];
      R wv[kMaxTaps];
      float ws[kMaxTaps];
      const float* rows[kMaxTaps];
      int64_t nt = 0, off_min = 0, off_max = 0;
      for (int64_t kh = 0; kh < KH; ++kh) {
        const int64_t th = ih + s.PH - kh * s.DH;
        if (th < 0 || th % s.SH) continue;
        const int64_t oh = th / s.SH;
        if (oh >= s.OH) continue;
        for (int64_t kw = 0; kw < KW; ++kw) {
          const int64_t tw = q + s.PW - kw * s.DW;
          if (tw % 2) continue;
          const int64_t off = tw / 2;  // exact
          if (nt == 0 || off < off_min) off_min = off;
          if (nt == 0 || off > off_max) off_max = off;
          offs[nt] = off;
          ws[nt] = wp[kh * KW + kw];
          wv[nt] = V::set1(ws[nt]);
          rows[nt] = gyp + oh * s.OW;
          ++nt;
        }
      }
      int64_t lo = 0, hi = 0;
      if (nt) vector_range<V>(1, off_min, off_max, s.OW, J, &lo, &hi);
      auto scalar_at = [&](int64_t j) {
        float acc = 0.f;
        for (int64_t t = 0; t < nt; ++t) {
          const int64_t ow = j + offs[t];
          if (ow >= 0 && ow < s.OW) acc += rows[t][ow] * ws[t];
        }
        tmp[j] = acc;
      };
      int64_t j = 0;
      for (; j < lo; ++j) scalar_at(j);
      for (; j < hi; j += L) {
        R a = V::zero();
        for (int64_t t = 0; t < nt; ++t) a = V::fma(V::load(rows[t] + j + offs[t]), wv[t], a);
        V::store(tmp + j, a);
      }
      for (; j < J; ++j) scalar_at(j);
      if (accumulate)
        for (int64_t jj = 0; jj < J; ++jj) xr[2 * jj + q] += tmp[jj];
      else
        for (int64_t jj = 0; jj < J; ++jj) xr[2 * jj + q] = tmp[jj];
    }
  }
}

// Per-tap partial sums of gy * x over one (n, oc) plane pair, added to
// acc (vector part) and sacc (scalar borders) in a fixed order.
template <class V, int S>
void grad_weight_plane(const DepthwiseShape& s, const float* gyp,
                       const float* xp, typename V::reg* acc, float* sacc) {
  constexpr int64_t L = V::width;
  const int64_t KH = s.KH, KW = s.KW;
  int64_t lo, hi;
  vector_range<V>(S, -s.PW, -s.PW + (KW - 1) * s.DW, s.W, s.OW, &lo, &hi);
  const int64_t vend = lo + (hi - lo + L - 1) / L * L;  // end of the vector part
  for (int64_t oh = 0; oh < s.OH; ++oh) {
    const int64_t ih0 = oh * s.SH - s.PH;
    const float* gr = gyp + oh * s.OW;
    for (int64_t kh = 0; kh < KH; ++kh) {
      const int64_t ih = ih0 + kh * s.DH;
      if (ih < 0 || ih >= s.H) continue;
      const float* xr = xp + ih * s.W;
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        if (ow == lo && hi > lo) ow = vend;  // vector part handled below
        if (ow >= s.OW) break;
        for (int64_t kw = 0; kw < KW; ++kw) {
          const int64_t iw = ow * S - s.PW + kw * s.DW;
          if (iw >= 0 && iw < s.W) sacc[kh * KW + kw] += gr[ow] * xr[iw];
        }
      }
      for (int64_t ow = lo; ow < hi; ow += L) {
        const typename V::reg g = V::load(gr + ow);
        const float* p = xr + ow * S - s.PW;
        for (int64_t kw = 0; kw < KW; ++kw)
          acc[kh * KW + kw] = V::fma(g, load_strided<V, S>(p + kw * s.DW), acc[kh * KW + kw]);
      }
    }
  }
}

// --- the nchw_direct entry points ---------------------------------------------

template <class V, int NV>
void forward_direct(const DepthwiseShape& s, const float* x, const float* w,
                    const float* bias, float* y, Activation act, int64_t begin,
                    int64_t end) {
  const int64_t Co = s.C_out(), KK = s.KH * s.KW;
  for (int64_t u = begin; u < end; ++u) {
    const int64_t n = u / Co, oc = u % Co, c = oc / s.mult;
    const float* xp = x + (n * s.C + c) * s.H * s.W;
    const float b0 = bias ? bias[oc] : 0.f;
    float* yp = y + u * s.OH * s.OW;
    if (s.SW == 1)
      forward_plane<V, 1, NV>(s, xp, w + oc * KK, b0, yp, act);
    else
      forward_plane<V, 2, NV>(s, xp, w + oc * KK, b0, yp, act);
  }
}

// Returns false (nothing written) if the stride-2 row buffer could not be had.
template <class V>
bool grad_input_direct(const DepthwiseShape& s, const float* gy, const float* w,
                       float* gx, int64_t begin, int64_t end) {
  const int64_t Co = s.C_out(), KK = s.KH * s.KW;
  float* tmp = nullptr;
  if (s.SW == 2) {
    // per-thread row buffer, reused across calls (grows to the widest row)
    thread_local float* buf = nullptr;
    thread_local int64_t cap = 0;
    const int64_t need = (s.W + 1) / 2 + V::width;
    if (need > cap) {
      std::free(buf);
      buf = static_cast<float*>(std::malloc(sizeof(float) * need));
      cap = buf ? need : 0;
    }
    tmp = buf;
    if (!tmp) return false;
  }
  for (int64_t u = begin; u < end; ++u) {
    const int64_t n = u / s.C, c = u % s.C;
    float* gxp = gx + u * s.H * s.W;
    for (int64_t j = 0; j < s.mult; ++j) {
      const int64_t oc = c * s.mult + j;
      const float* gyp = gy + (n * Co + oc) * s.OH * s.OW;
      if (s.SW == 2)
        grad_input_plane_s2<V>(s, gyp, w + oc * KK, gxp, j > 0, tmp);
      else if (s.SH == 1)
        grad_input_plane_s1<V, false>(s, gyp, w + oc * KK, gxp, j > 0);
      else
        grad_input_plane_s1<V, true>(s, gyp, w + oc * KK, gxp, j > 0);
    }
  }
  return true;
}

// An ISA's own grad_weight kernel for one (n, oc) plane pair that adds into
// the vector accumulators only (AVX2: the zero-padded plane copy `xpad`).
template <class V>
using PaddedFn = void (*)(const DepthwiseShape&, const float*, const float*,
                          float*, typename V::reg*);

// padded: null, or the plane kernel to use for every plane (with xpad).
template <class V>
void grad_weight_direct(const DepthwiseShape& s, const float* gy, const float* x,
                        float* gw, int64_t begin, int64_t end, PaddedFn<V> padded,
                        float* xpad) {
  const int64_t Co = s.C_out(), KK = s.KH * s.KW;
  const int64_t B = kDepthwiseWeightChannelBlock;
  typename V::reg acc[kMaxTaps];
  float sacc[kMaxTaps];
  for (int64_t u = begin; u < end; ++u) {
    const int64_t oc1 = imin(Co, (u + 1) * B);
    for (int64_t oc = u * B; oc < oc1; ++oc) {
      const int64_t c = oc / s.mult;
      for (int64_t t = 0; t < KK; ++t) {
        acc[t] = V::zero();
        sacc[t] = 0.f;
      }
      for (int64_t n = 0; n < s.N; ++n) {
        const float* gyp = gy + (n * Co + oc) * s.OH * s.OW;
        const float* xp = x + (n * s.C + c) * s.H * s.W;
        if (padded)
          padded(s, gyp, xp, xpad, acc);
        else if (s.SW == 1)
          grad_weight_plane<V, 1>(s, gyp, xp, acc, sacc);
        else
          grad_weight_plane<V, 2>(s, gyp, xp, acc, sacc);
      }
      for (int64_t t = 0; t < KK; ++t) gw[oc * KK + t] = V::reduce_add(acc[t]) + sacc[t];
    }
  }
}

// --- nchw_small_planes ------------------------------------------------------------

// Transposes planes [0, nb) at src (each of `plane` floats, channel stride
// `plane`) to dst[p * width + i], zero-filling lanes i >= nb.
template <class V>
inline void gather_lanes(const float* src, int64_t nb, int64_t plane, float* dst) {
  constexpr int64_t L = V::width;
  for (int64_t p = 0; p < plane; ++p)
    for (int64_t i = 0; i < L; ++i) dst[p * L + i] = i < nb ? src[i * plane + p] : 0.f;
}

// The inverse for lanes [0, nb): dst[i * plane + p] = src[p * width + i].
template <class V>
inline void scatter_lanes(const float* src, int64_t nb, int64_t plane, float* dst) {
  for (int64_t i = 0; i < nb; ++i)
    for (int64_t p = 0; p < plane; ++p) dst[i * plane + p] = src[p * V::width + i];
}

// Lanes [0, nb) of the tap-t weights of channels c0.. (zero elsewhere).
template <class V>
inline typename V::reg weight_lanes(const float* w, int64_t c0, int64_t nb, int64_t KK,
                                    int64_t t) {
  float lane[V::width] = {};
  for (int64_t i = 0; i < nb; ++i) lane[i] = w[(c0 + i) * KK + t];
  return V::load(lane);
}

// The blocks of forward_small_planes and grad_input_small_planes: units
// [begin, end) of (n, c) planes, C channels per image (multiplier 1), in
// blocks of up to width channels of one image. Per block the in_plane-float
// input planes (at in + u * in_plane) are transposed to it[p * width + i],
// wt[t] gets the lanes of tap t's weights, pixel(it, wt, ot) computes the
// output planes in the same transposed form in ot, which are scattered to
// out + u * out_plane. Each lane is computed exactly as it would be alone, so
// the results do not depend on how units are grouped into blocks (or split
// over threads).
template <class V, class F>
void small_planes_blocks(const DepthwiseShape& s, int64_t C, const float* in, int64_t in_plane,
                         const float* w, float* out, int64_t out_plane, int64_t begin,
                         int64_t end, F&& pixel) {
  constexpr int64_t L = V::width;
  const int64_t KK = s.KH * s.KW;
  alignas(64) float it[L * kSmallPlane];
  alignas(64) float ot[L * kSmallPlane];
  typename V::reg wt[kMaxTaps];
  for (int64_t u = begin; u < end;) {
    const int64_t c0 = u % C;
    const int64_t nb = imin(imin(L, end - u), C - c0);
    gather_lanes<V>(in + u * in_plane, nb, in_plane, it);
    for (int64_t t = 0; t < KK; ++t) wt[t] = weight_lanes<V>(w, c0, nb, KK, t);
    pixel(c0, nb, static_cast<const float*>(it), static_cast<const typename V::reg*>(wt), ot);
    scatter_lanes<V>(ot, nb, out_plane, out + u * out_plane);
    u += nb;
  }
}

template <class V>
void forward_small_planes(const DepthwiseShape& s, const float* x, const float* w,
                          const float* bias, float* y, Activation act, int64_t begin,
                          int64_t end) {
  using R = typename V::reg;
  constexpr int64_t L = V::width;
  small_planes_blocks<V>(s, s.C_out(), x, s.H * s.W, w, y, s.OH * s.OW, begin, end,
                         [&](int64_t c0, int64_t nb, const float* xt, const R* wt, float* yt) {
    float bl[L] = {};
    for (int64_t i = 0; i < nb; ++i) bl[i] = bias ? bias[c0 + i] : 0.f;
    const R bv = V::load(bl);
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        R a = bv;
        for_each_input_tap(s, oh, ow, s.KH, s.KW, [&](int64_t kh, int64_t kw, int64_t ih, int64_t iw) {
          a = V::fma(V::load(xt + (ih * s.W + iw) * L), wt[kh * s.KW + kw], a);
        });
        V::store(yt + (oh * s.OW + ow) * L, activate<V>(a, act));
      }
    }
  });
}

// grad_input on small planes (multiplier 1, any stride).
template <class V>
void grad_input_small_planes(const DepthwiseShape& s, const float* gy, const float* w,
                             float* gx, int64_t begin, int64_t end) {
  using R = typename V::reg;
  constexpr int64_t L = V::width;
  small_planes_blocks<V>(s, s.C, gy, s.OH * s.OW, w, gx, s.H * s.W, begin, end,
                         [&](int64_t, int64_t, const float* gt, const R* wt, float* xt) {
    for (int64_t ih = 0; ih < s.H; ++ih) {
      for (int64_t iw = 0; iw < s.W; ++iw) {
        R a = V::zero();
        for_each_grad_tap(s, ih, iw, [&](int64_t kh, int64_t kw, int64_t oh, int64_t ow) {
          a = V::fma(V::load(gt + (oh * s.OW + ow) * L), wt[kh * s.KW + kw], a);
        });
        V::store(xt + (ih * s.W + iw) * L, a);
      }
    }
  });
}

// grad_weight on small planes (multiplier 1): one unit =
// kDepthwiseWeightChannelBlock channels in blocks of width, a vector
// accumulator per tap over N x OH x OW in a fixed order.
template <class V>
void grad_weight_small_planes(const DepthwiseShape& s, const float* gy, const float* x,
                              float* gw, int64_t begin, int64_t end) {
  constexpr int64_t L = V::width;
  const int64_t C = s.C, KK = s.KH * s.KW, HW = s.H * s.W, OHW = s.OH * s.OW;
  alignas(64) float gt[L * kSmallPlane];
  alignas(64) float xt[L * kSmallPlane];
  typename V::reg acc[kMaxTaps];
  for (int64_t u = begin; u < end; ++u) {
    const int64_t cb1 = imin(C, (u + 1) * kDepthwiseWeightChannelBlock);
    for (int64_t c0 = u * kDepthwiseWeightChannelBlock; c0 < cb1; c0 += L) {
      const int64_t nb = imin(L, cb1 - c0);
      for (int64_t t = 0; t < KK; ++t) acc[t] = V::zero();
      for (int64_t n = 0; n < s.N; ++n) {
        gather_lanes<V>(gy + (n * C + c0) * OHW, nb, OHW, gt);
        gather_lanes<V>(x + (n * C + c0) * HW, nb, HW, xt);
        for (int64_t oh = 0; oh < s.OH; ++oh) {
          for (int64_t ow = 0; ow < s.OW; ++ow) {
            const typename V::reg g = V::load(gt + (oh * s.OW + ow) * L);
            for_each_input_tap(s, oh, ow, s.KH, s.KW, [&](int64_t kh, int64_t kw, int64_t ih, int64_t iw) {
              acc[kh * s.KW + kw] = V::fma(g, V::load(xt + (ih * s.W + iw) * L), acc[kh * s.KW + kw]);
            });
          }
        }
      }
      for (int64_t t = 0; t < KK; ++t) {
        alignas(64) float lane[L];
        V::store(lane, acc[t]);
        for (int64_t i = 0; i < nb; ++i) gw[(c0 + i) * KK + t] = lane[i];
      }
    }
  }
}

}  // namespace dw_nchw
}  // namespace
}  // namespace cpu
}  // namespace mnx
