// AVX2/FMA depthwise kernels for NCHW tensors: the general kernels
// (DepthwisePath::nchw_direct, vectors of 8 along W) and the small-plane
// kernels (DepthwisePath::nchw_small_planes, vectors along 8 channels).
// Which kernel runs is decided in one place, depthwise_path_avx2()
// (depthwise_avx2.cpp): square 3x3/5x5/7x7 kernels with stride 1 or 2 and
// multiplier 1 (every MobileNet and ConvNeXt layer) go first to the
// 8-channel block kernels of depthwise_nchw_c8_kxk_avx2.cpp, the forward
// with multiplier > 1 on those kernels to the row ring
// (depthwise_nchw_kxk_rows_avx2.cpp); the kernels here take the rest:
//  small planes (multiplier 1, fewer than 16 output columns, <= 1024
//               pixels, up to 49 taps, any stride/dilation): all three ops
//               transpose blocks of 8 channels to a stack buffer and
//               vectorise along C.
//  forward      any kernel size up to 7x7 taps (49), stride 1 or 2 along W
//               (any stride along H), any dilation and multiplier; the
//               interior of each output row is vectorised (two vectors per
//               step, weights broadcast once per plane), the borders use the
//               scalar formula, so padding costs no copy.
//  grad_input   stride 1 (a correlation of grad_output with the weights,
//               same vectorisation) and stride_w 2 with any stride_h (by
//               parity classes of the input columns, through a per-thread
//               row buffer); other strides run the scalar kernel.
//  grad_weight  stride 1 or 2 along W: per output channel, one vector
//               accumulator per tap over N x OH x OW, reduced in a fixed order
//               (results do not depend on the thread count).
#include <cstdlib>
#include <vector>

#include "depthwise_avx2_common.h"

namespace mnx {
namespace cpu {
namespace {

using namespace avx2;

constexpr int64_t kMaxTaps = 49;

// Range [lo, hi) of output columns whose 8-lane vectors read only in-bounds
// input columns: o*S + off >= 0 and (o+7)*S + (S-1) + off_max <= W-1, for
// off in [off_min, off_max].
inline void vector_range(int64_t S, int64_t off_min, int64_t off_max, int64_t W,
                         int64_t O, int64_t* lo, int64_t* hi) {
  *lo = imin(off_min >= 0 ? 0 : (-off_min + S - 1) / S, O);
  const int64_t lim = W - S - off_max;  // (o+7)*S <= lim
  *hi = lim >= 0 ? imin(lim / S - 6, O - 7) : 0;
  if (*hi < *lo) *hi = *lo;
  // every start in [lo, hi) is a valid vector; callers step by 8 from lo, so
  // the vectors cover [lo, lo + 8 * ceil((hi - lo) / 8)) <= O
}

template <int S>
void forward_plane(const DepthwiseShape& s, const float* xp, const float* wp,
                   float b0, float* yp, Activation act) {
  const int64_t KH = s.KH, KW = s.KW;
  __m256 wv[kMaxTaps];
  for (int64_t t = 0; t < KH * KW; ++t) wv[t] = _mm256_set1_ps(wp[t]);
  const __m256 bv = _mm256_set1_ps(b0);
  int64_t lo, hi;
  vector_range(S, -s.PW, -s.PW + (KW - 1) * s.DW, s.W, s.OW, &lo, &hi);
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
    for (; ow + 8 < hi; ow += 16) {
      __m256 a0 = bv, a1 = bv;
      for (int64_t kh = kh0; kh < kh1; ++kh) {
        const float* xr = xp + (ih0 + kh * s.DH) * s.W + ow * S - s.PW;
        const __m256* w = wv + kh * KW;
        for (int64_t kw = 0; kw < KW; ++kw) {
          const float* p = xr + kw * s.DW;
          a0 = _mm256_fmadd_ps(load_strided<S>(p), w[kw], a0);
          a1 = _mm256_fmadd_ps(load_strided<S>(p + 8 * S), w[kw], a1);
        }
      }
      _mm256_storeu_ps(yr + ow, activate<VecAvx2>(a0, act));
      _mm256_storeu_ps(yr + ow + 8, activate<VecAvx2>(a1, act));
    }
    for (; ow < hi; ow += 8) {
      __m256 a0 = bv;
      for (int64_t kh = kh0; kh < kh1; ++kh) {
        const float* xr = xp + (ih0 + kh * s.DH) * s.W + ow * S - s.PW;
        for (int64_t kw = 0; kw < KW; ++kw)
          a0 = _mm256_fmadd_ps(load_strided<S>(xr + kw * s.DW), wv[kh * KW + kw], a0);
      }
      _mm256_storeu_ps(yr + ow, activate<VecAvx2>(a0, act));
    }
    for (; ow < s.OW; ++ow) scalar_at(ow);
  }
}

// grad_input for stride 1: gx[ih, iw] = sum gy[ih + PH - kh*DH, iw + PW - kw*DW] * w[kh, kw]
void grad_input_plane_s1(const DepthwiseShape& s, const float* gyp,
                         const float* wp, float* gxp, bool accumulate) {
  const int64_t KH = s.KH, KW = s.KW;
  __m256 wv[kMaxTaps];
  for (int64_t t = 0; t < KH * KW; ++t) wv[t] = _mm256_set1_ps(wp[t]);
  int64_t lo, hi;
  // reads gy columns iw + PW - kw*DW, kw in [0, KW)
  vector_range(1, s.PW - (KW - 1) * s.DW, s.PW, s.OW, s.W, &lo, &hi);
  for (int64_t ih = 0; ih < s.H; ++ih) {
    float* xr = gxp + ih * s.W;
    auto scalar_at = [&](int64_t iw) {
      float acc = accumulate ? xr[iw] : 0.f;
      for (int64_t kh = 0; kh < KH; ++kh) {
        const int64_t oh = ih + s.PH - kh * s.DH;
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
    for (; iw < hi; iw += 8) {
      __m256 a = accumulate ? _mm256_loadu_ps(xr + iw) : _mm256_setzero_ps();
      for (int64_t kh = 0; kh < KH; ++kh) {
        const int64_t oh = ih + s.PH - kh * s.DH;
        if (oh < 0 || oh >= s.OH) continue;
        const float* gr = gyp + oh * s.OW + iw + s.PW;
        for (int64_t kw = 0; kw < KW; ++kw)
          a = _mm256_fmadd_ps(_mm256_loadu_ps(gr - kw * s.DW), wv[kh * KW + kw], a);
      }
      _mm256_storeu_ps(xr + iw, a);
    }
    for (; iw < s.W; ++iw) scalar_at(iw);
  }
}

// grad_input for stride_w 2 (any stride_h): for input columns iw = 2j + q the
// taps with (q + PW - kw*DW) even read grad_output column j + off_kw, a
// stride-1 correlation per parity q; results are interleaved into the row.
void grad_input_plane_s2(const DepthwiseShape& s, const float* gyp,
                         const float* wp, float* gxp, bool accumulate,
                         float* tmp) {
  const int64_t KH = s.KH, KW = s.KW;
  for (int64_t ih = 0; ih < s.H; ++ih) {
    float* xr = gxp + ih * s.W;
    for (int64_t q = 0; q < 2; ++q) {
      const int64_t J = (s.W - q + 1) / 2;
      if (J <= 0) continue;
      int64_t offs[kMaxTaps];
      __m256 wv[kMaxTaps];
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
          wv[nt] = _mm256_set1_ps(ws[nt]);
          rows[nt] = gyp + oh * s.OW;
          ++nt;
        }
      }
      int64_t lo = 0, hi = 0;
      if (nt) vector_range(1, off_min, off_max, s.OW, J, &lo, &hi);
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
      for (; j < hi; j += 8) {
        __m256 a = _mm256_setzero_ps();
        for (int64_t t = 0; t < nt; ++t)
          a = _mm256_fmadd_ps(_mm256_loadu_ps(rows[t] + j + offs[t]), wv[t], a);
        _mm256_storeu_ps(tmp + j, a);
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
// acc (vector) and sacc (scalar tails) in a fixed order.
template <int S>
void grad_weight_plane(const DepthwiseShape& s, const float* gyp,
                       const float* xp, __m256* acc, float* sacc) {
  const int64_t KH = s.KH, KW = s.KW;
  int64_t lo, hi;
  vector_range(S, -s.PW, -s.PW + (KW - 1) * s.DW, s.W, s.OW, &lo, &hi);
  const int64_t vend = lo + (hi - lo + 7) / 8 * 8;  // end of the vector part
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
      for (int64_t ow = lo; ow < hi; ow += 8) {
        const __m256 g = _mm256_loadu_ps(gr + ow);
        const float* p = xr + ow * S - s.PW;
        for (int64_t kw = 0; kw < KW; ++kw)
          acc[kh * KW + kw] =
              _mm256_fmadd_ps(g, load_strided<S>(p + kw * s.DW), acc[kh * KW + kw]);
      }
    }
  }
}

// grad_weight of one (n, oc) plane pair for kernel width KW <= 7, every
// output column vectorised: the input plane is first copied to `xpad`, rows
// of width padded_width() with PW zeros on the left and zeros on the right,
// so interior vectors need no bounds check; border vectors mask the lanes
// past OW and the taps that read padding. Tap row kh is the outer loop: its KW accumulators stay in
// registers over the whole plane. Every tap sums over (n, oh, ow-vector) in a
// fixed order.
inline int64_t padded_width(const DepthwiseShape& s) {
  const int64_t owr = (s.OW + 7) / 8 * 8;
  return (owr - 8) * s.SW + (s.KW - 1) * s.DW + 8 * s.SW;
}

template <int S, int KW>
void grad_weight_plane_padded(const DepthwiseShape& s, const float* gyp,
                              const float* xp, float* xpad, __m256* acc) {
  const int64_t Wp = padded_width(s), PW = s.PW, W = s.W;
  const int64_t ncopy = imax(int64_t(0), imin(W, Wp - PW));
  for (int64_t ih = 0; ih < s.H; ++ih) {
    float* r = xpad + ih * Wp;
    const float* src = xp + ih * W;
    int64_t j = 0;
    for (; j < imin(PW, Wp); ++j) r[j] = 0.f;
    for (int64_t i = 0; i < ncopy; ++i) r[PW + i] = src[i];
    for (j = PW + ncopy; j < Wp; ++j) r[j] = 0.f;
  }
  const int64_t OW = s.OW, last_tap = (KW - 1) * s.DW;
  // mask of the lanes of the vector at output column ow whose tap kw reads
  // a real input column (and ow + lane < OW); tabulated for the first
  // kMaskVectors vectors of a row, computed on the fly past them
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  auto border_mask = [&](int64_t ow, int kw) {
    const __m256i owv = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(ow)), lane);
    const __m256i iw = _mm256_add_epi32(
        _mm256_mullo_epi32(owv, _mm256_set1_epi32(S)),
        _mm256_set1_epi32(static_cast<int>(kw * s.DW - PW)));
    const __m256i ok = _mm256_and_si256(
        _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(OW)), owv),
        _mm256_and_si256(_mm256_cmpgt_epi32(iw, _mm256_set1_epi32(-1)),
                         _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(W)), iw)));
    return _mm256_castsi256_ps(ok);
  };
  constexpr int64_t kMaskVectors = 64;
  __m256 masks[kMaskVectors * KW];
  const int64_t nvec = (OW + 7) / 8;
  for (int64_t v = 0; v < imin(nvec, kMaskVectors); ++v)
    for (int kw = 0; kw < KW; ++kw) masks[v * KW + kw] = border_mask(v * 8, kw);
  for (int64_t kh = 0; kh < s.KH; ++kh) {
    __m256 a[KW];
    for (int kw = 0; kw < KW; ++kw) a[kw] = acc[kh * KW + kw];
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      const int64_t ih = oh * s.SH - s.PH + kh * s.DH;
      if (ih < 0 || ih >= s.H) continue;
      const float* gr = gyp + oh * OW;
      const float* xr = xpad + ih * Wp;
      for (int64_t ow = 0; ow < OW; ow += 8) {
        const float* p = xr + ow * S;
        if (ow + 8 <= OW && ow * S - PW >= 0 && (ow + 7) * S - PW + last_tap < W) {
          const __m256 g = _mm256_loadu_ps(gr + ow);
          for (int kw = 0; kw < KW; ++kw)
            a[kw] = _mm256_fmadd_ps(g, load_strided<S>(p + kw * s.DW), a[kw]);
          continue;
        }
        // border vector: lanes past OW and (lane, tap) pairs that read the
        // zero padding contribute exactly nothing (both factors masked to 0,
        // so a NaN/Inf grad_output next to the padding stays out, as in the
        // scalar reference)
        const int64_t v = ow / 8;
        const __m256 g = _mm256_maskload_ps(gr + ow, tail_mask(OW - ow));
        for (int kw = 0; kw < KW; ++kw) {
          const __m256 mk = v < kMaskVectors ? masks[v * KW + kw] : border_mask(ow, kw);
          a[kw] = _mm256_fmadd_ps(_mm256_and_ps(g, mk),
                                  _mm256_and_ps(load_strided<S>(p + kw * s.DW), mk), a[kw]);
        }
      }
    }
    for (int kw = 0; kw < KW; ++kw) acc[kh * KW + kw] = a[kw];
  }
}

// Small planes (fewer than 16 output columns, as in the 14x14 and 7x7 stages
// of MobileNets) leave no room for vectors along W: blocks of up to 8
// channels are transposed to [H][W][8] in a stack buffer and computed with
// vectors along the channels instead, then written back plane by plane.
constexpr int64_t kSmallPlane = 1024;

bool small_plane(const DepthwiseShape& s) {
  return s.mult == 1 && s.OW < 16 && s.H * s.W <= kSmallPlane &&
         s.OH * s.OW <= kSmallPlane;
}

void forward_small_planes(const DepthwiseShape& s, const float* x,
                          const float* w, const float* bias, float* y,
                          Activation act, int64_t begin, int64_t end) {
  const int64_t Co = s.C_out(), KK = s.KH * s.KW, HW = s.H * s.W,
                OHW = s.OH * s.OW;
  alignas(32) float xt[8 * kSmallPlane];
  alignas(32) float yt[8 * kSmallPlane];
  alignas(32) float lane[8];
  __m256 wt[kMaxTaps];
  for (int64_t u = begin; u < end;) {
    const int64_t n = u / Co, c0 = u % Co;
    const int64_t nb = imin(imin(8, end - u), Co - c0);
    for (int64_t p = 0; p < HW; ++p)
      for (int64_t i = 0; i < 8; ++i)
        xt[p * 8 + i] = i < nb ? x[(n * s.C + c0 + i) * HW + p] : 0.f;
    for (int64_t t = 0; t < KK; ++t) {
      for (int64_t i = 0; i < 8; ++i) lane[i] = i < nb ? w[(c0 + i) * KK + t] : 0.f;
      wt[t] = _mm256_load_ps(lane);
    }
    for (int64_t i = 0; i < 8; ++i) lane[i] = (bias && i < nb) ? bias[c0 + i] : 0.f;
    const __m256 bv = _mm256_load_ps(lane);
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        __m256 a = bv;
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          const int64_t ih = oh * s.SH - s.PH + kh * s.DH;
          if (ih < 0 || ih >= s.H) continue;
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            const int64_t iw = ow * s.SW - s.PW + kw * s.DW;
            if (iw < 0 || iw >= s.W) continue;
            a = _mm256_fmadd_ps(_mm256_load_ps(xt + (ih * s.W + iw) * 8),
                                wt[kh * s.KW + kw], a);
          }
        }
        _mm256_store_ps(yt + (oh * s.OW + ow) * 8, activate<VecAvx2>(a, act));
      }
    }
    for (int64_t i = 0; i < nb; ++i) {
      float* yp = y + (u + i) * OHW;
      for (int64_t p = 0; p < OHW; ++p) yp[p] = yt[p * 8 + i];
    }
    u += nb;
  }
}

// Transposes planes [c0, c0+nb) of image n (each of `plane` floats, channel
// stride `plane`) to dst[p * 8 + i], zero-filling lanes i >= nb.
inline void gather8(const float* src, int64_t nb, int64_t plane, float* dst) {
  for (int64_t p = 0; p < plane; ++p)
    for (int64_t i = 0; i < 8; ++i) dst[p * 8 + i] = i < nb ? src[i * plane + p] : 0.f;
}

// grad_input on small planes (multiplier 1, any stride): 8 channels at once.
void grad_input_small_planes(const DepthwiseShape& s, const float* gy,
                             const float* w, float* gx, int64_t begin,
                             int64_t end) {
  const int64_t C = s.C, KK = s.KH * s.KW, HW = s.H * s.W, OHW = s.OH * s.OW;
  alignas(32) float gt[8 * kSmallPlane];
  alignas(32) float xt[8 * kSmallPlane];
  alignas(32) float lane[8];
  __m256 wt[kMaxTaps];
  for (int64_t u = begin; u < end;) {
    const int64_t n = u / C, c0 = u % C;
    const int64_t nb = imin(imin(8, end - u), C - c0);
    gather8(gy + (n * C + c0) * OHW, nb, OHW, gt);
    for (int64_t t = 0; t < KK; ++t) {
      for (int64_t i = 0; i < 8; ++i) lane[i] = i < nb ? w[(c0 + i) * KK + t] : 0.f;
      wt[t] = _mm256_load_ps(lane);
    }
    for (int64_t ih = 0; ih < s.H; ++ih) {
      for (int64_t iw = 0; iw < s.W; ++iw) {
        __m256 a = _mm256_setzero_ps();
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          const int64_t th = ih + s.PH - kh * s.DH;
          if (th < 0 || th % s.SH) continue;
          const int64_t oh = th / s.SH;
          if (oh >= s.OH) continue;
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            const int64_t tw = iw + s.PW - kw * s.DW;
            if (tw < 0 || tw % s.SW) continue;
            const int64_t ow = tw / s.SW;
            if (ow >= s.OW) continue;
            a = _mm256_fmadd_ps(_mm256_load_ps(gt + (oh * s.OW + ow) * 8),
                                wt[kh * s.KW + kw], a);
          }
        }
        _mm256_store_ps(xt + (ih * s.W + iw) * 8, a);
      }
    }
    for (int64_t i = 0; i < nb; ++i) {
      float* xp = gx + (u + i) * HW;
      for (int64_t p = 0; p < HW; ++p) xp[p] = xt[p * 8 + i];
    }
    u += nb;
  }
}

// grad_weight on small planes (multiplier 1): one unit = 8 channels, a vector
// accumulator per tap over N x OH x OW in a fixed order.
void grad_weight_small_planes(const DepthwiseShape& s, const float* gy,
                              const float* x, float* gw, int64_t begin,
                              int64_t end) {
  const int64_t C = s.C, KK = s.KH * s.KW, HW = s.H * s.W, OHW = s.OH * s.OW;
  alignas(32) float gt[8 * kSmallPlane];
  alignas(32) float xt[8 * kSmallPlane];
  alignas(32) float lane[8];
  __m256 acc[kMaxTaps];
  for (int64_t u = begin; u < end; ++u) {
    const int64_t c0 = u * kDepthwiseWeightChannelBlock;
    const int64_t nb = imin(8, C - c0);
    for (int64_t t = 0; t < KK; ++t) acc[t] = _mm256_setzero_ps();
    for (int64_t n = 0; n < s.N; ++n) {
      gather8(gy + (n * C + c0) * OHW, nb, OHW, gt);
      gather8(x + (n * C + c0) * HW, nb, HW, xt);
      for (int64_t oh = 0; oh < s.OH; ++oh) {
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          const __m256 g = _mm256_load_ps(gt + (oh * s.OW + ow) * 8);
          for (int64_t kh = 0; kh < s.KH; ++kh) {
            const int64_t ih = oh * s.SH - s.PH + kh * s.DH;
            if (ih < 0 || ih >= s.H) continue;
            for (int64_t kw = 0; kw < s.KW; ++kw) {
              const int64_t iw = ow * s.SW - s.PW + kw * s.DW;
              if (iw < 0 || iw >= s.W) continue;
              acc[kh * s.KW + kw] = _mm256_fmadd_ps(
                  g, _mm256_load_ps(xt + (ih * s.W + iw) * 8), acc[kh * s.KW + kw]);
            }
          }
        }
      }
    }
    for (int64_t t = 0; t < KK; ++t) {
      _mm256_store_ps(lane, acc[t]);
      for (int64_t i = 0; i < nb; ++i) gw[(c0 + i) * KK + t] = lane[i];
    }
  }
}

}  // namespace

bool depthwise_nchw_small_planes_avx2_supported(const DepthwiseShape& s) {
  return s.layout == Layout::NCHW && s.KH * s.KW <= kMaxTaps && small_plane(s);
}

bool depthwise_nchw_direct_avx2_supported(const DepthwiseShape& s) {
  return s.layout == Layout::NCHW && s.KH * s.KW <= kMaxTaps && (s.SW == 1 || s.SW == 2);
}

bool depthwise_grad_input_nchw_direct_avx2_supported(const DepthwiseShape& s) {
  return s.layout == Layout::NCHW && s.KH * s.KW <= kMaxTaps &&
         ((s.SH == 1 && s.SW == 1) || s.SW == 2);
}

void depthwise_forward_nchw_small_planes_avx2(const DepthwiseShape& s, const float* x,
                                              const float* w, const float* bias, float* y,
                                              Activation act, int64_t begin, int64_t end) {
  forward_small_planes(s, x, w, bias, y, act, begin, end);
}

void depthwise_grad_input_nchw_small_planes_avx2(const DepthwiseShape& s, const float* gy,
                                                 const float* w, float* gx, int64_t begin,
                                                 int64_t end) {
  grad_input_small_planes(s, gy, w, gx, begin, end);
}

void depthwise_grad_weight_nchw_small_planes_avx2(const DepthwiseShape& s, const float* gy,
                                                  const float* x, float* gw, int64_t begin,
                                                  int64_t end) {
  grad_weight_small_planes(s, gy, x, gw, begin, end);
}

void depthwise_forward_nchw_direct_avx2(const DepthwiseShape& s, const float* x,
                                        const float* w, const float* bias, float* y,
                                        Activation act, int64_t begin, int64_t end) {
  const int64_t Co = s.C_out(), KK = s.KH * s.KW;
  for (int64_t u = begin; u < end; ++u) {
    const int64_t n = u / Co, oc = u % Co, c = oc / s.mult;
    const float* xp = x + (n * s.C + c) * s.H * s.W;
    const float b0 = bias ? bias[oc] : 0.f;
    float* yp = y + u * s.OH * s.OW;
    if (s.SW == 1)
      forward_plane<1>(s, xp, w + oc * KK, b0, yp, act);
    else
      forward_plane<2>(s, xp, w + oc * KK, b0, yp, act);
  }
}

// Returns false (nothing written) if the stride-2 row buffer could not be had.
bool depthwise_grad_input_nchw_direct_avx2(const DepthwiseShape& s, const float* gy,
                                           const float* w, float* gx, int64_t begin,
                                           int64_t end) {
  const int64_t Co = s.C_out(), KK = s.KH * s.KW;
  float* tmp = nullptr;
  if (s.SW == 2) {
    // per-thread row buffer, reused across calls (grows to the widest row)
    thread_local float* buf = nullptr;
    thread_local int64_t cap = 0;
    const int64_t need = (s.W + 1) / 2 + 8;
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
        grad_input_plane_s2(s, gyp, w + oc * KK, gxp, j > 0, tmp);
      else
        grad_input_plane_s1(s, gyp, w + oc * KK, gxp, j > 0);
    }
  }
  return true;
}

void depthwise_grad_weight_nchw_direct_avx2(const DepthwiseShape& s, const float* gy,
                                            const float* x, float* gw, int64_t begin,
                                            int64_t end) {
  const int64_t Co = s.C_out(), KK = s.KH * s.KW;
  const int64_t B = kDepthwiseWeightChannelBlock;
  __m256 acc[kMaxTaps];
  float sacc[kMaxTaps];
  // padded-plane path for KW <= 7 (per-thread plane buffer, reused)
  using PaddedFn = void (*)(const DepthwiseShape&, const float*, const float*,
                            float*, __m256*);
  PaddedFn padded = nullptr;
#define MNX_GW_KW(KWV)                                                   \
  if (s.KW == KWV)                                                       \
    padded = s.SW == 1 ? grad_weight_plane_padded<1, KWV>                \
                       : grad_weight_plane_padded<2, KWV>;
  MNX_GW_KW(1)
  MNX_GW_KW(2)
  MNX_GW_KW(3)
  MNX_GW_KW(4)
  MNX_GW_KW(5)
  MNX_GW_KW(6)
  MNX_GW_KW(7)
#undef MNX_GW_KW
  thread_local std::vector<float> xpad_buf;
  float* xpad = nullptr;
  if (padded) {
    try {
      const int64_t need = s.H * padded_width(s);
      if (static_cast<int64_t>(xpad_buf.size()) < need) xpad_buf.resize(need);
      xpad = xpad_buf.data();
    } catch (...) {  // coverage: unreachable (only on std::bad_alloc)
      padded = nullptr;  // coverage: unreachable
    }  // coverage: unreachable
  }
  for (int64_t u = begin; u < end; ++u) {
    const int64_t oc1 = imin(Co, (u + 1) * B);
    for (int64_t oc = u * B; oc < oc1; ++oc) {
      const int64_t c = oc / s.mult;
      for (int64_t t = 0; t < KK; ++t) {
        acc[t] = _mm256_setzero_ps();
        sacc[t] = 0.f;
      }
      for (int64_t n = 0; n < s.N; ++n) {
        const float* gyp = gy + (n * Co + oc) * s.OH * s.OW;
        const float* xp = x + (n * s.C + c) * s.H * s.W;
        if (padded)
          padded(s, gyp, xp, xpad, acc);
        else if (s.SW == 1)
          grad_weight_plane<1>(s, gyp, xp, acc, sacc);
        else
          grad_weight_plane<2>(s, gyp, xp, acc, sacc);
      }
      for (int64_t t = 0; t < KK; ++t) gw[oc * KK + t] = hsum(acc[t]) + sacc[t];
    }
  }
}

}  // namespace cpu
}  // namespace mnx
