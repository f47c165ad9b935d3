// NEON depthwise kernels for NCHW tensors: the general kernels
// (DepthwisePath::nchw_direct, vectors of 4 along W) and the small-plane
// kernels (nchw_small_planes, vectors along 4 channels). Which one runs is
// decided by depthwise_path_neon() (depthwise_neon.cpp); square 3x3/5x5/7x7
// stride 1/2 forward runs the row-ring kernel of
// depthwise_nchw_kxk_rows_neon.cpp instead.
//
//  small planes (multiplier 1, fewer than 12 output columns, <= 1024
//               pixels): all three ops transpose blocks of 4 channels to
//               [H][W][4] and vectorise along C (any stride/dilation).
//  forward      any kernel size up to 7x7 taps (49), stride 1 or 2 along W
//               (any stride along H), any dilation and multiplier; the
//               interior of each output row is vectorised (two vectors per
//               step, weights broadcast once per plane), the borders use the
//               scalar formula, so padding costs no copy.
//  grad_input   stride_w 1 (any stride_h): a correlation of grad_output
//               with the weights (same vectorisation); stride_w 2: one
//               stride-1 correlation per column parity, interleaved into
//               the row through a per-thread buffer.
//  grad_weight  stride 1 or 2 along W: per output channel, one vector
//               accumulator per tap over N x OH x OW plus a scalar one for
//               the borders, reduced in a fixed order (results do not depend
//               on the unit split / thread count).
#include <cstdlib>

#include "depthwise_neon_common.h"

namespace mnx {
namespace cpu {
namespace {

using namespace neon;

constexpr int64_t kMaxTaps = 49;

// Range [lo, hi) of start columns o whose 4-lane vectors read only in-bounds
// input columns: o*S + off >= 0 and (o+3)*S + (S-1) + off_max <= W-1 for off
// in [off_min, off_max], and o + 3 < O. Callers step by 4 from lo.
inline void vector_range(int64_t S, int64_t off_min, int64_t off_max, int64_t W,
                         int64_t O, int64_t* lo, int64_t* hi) {
  *lo = imin(off_min >= 0 ? 0 : (-off_min + S - 1) / S, O);
  const int64_t lim = W - S - off_max;  // (o+3)*S <= lim
  *hi = lim >= 0 ? imin(lim / S - 2, O - 3) : 0;
  if (*hi < *lo) *hi = *lo;
}

template <int S>
void forward_plane(const DepthwiseShape& s, const float* xp, const float* wp,
                   float b0, float* yp, Activation act) {
  const int64_t KH = s.KH, KW = s.KW;
  float32x4_t wv[kMaxTaps];
  for (int64_t t = 0; t < KH * KW; ++t) wv[t] = vdupq_n_f32(wp[t]);
  const float32x4_t bv = vdupq_n_f32(b0);
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
    for (; ow + 4 < hi; ow += 8) {
      float32x4_t a0 = bv, a1 = bv;
      for (int64_t kh = kh0; kh < kh1; ++kh) {
        const float* xr = xp + (ih0 + kh * s.DH) * s.W + ow * S - s.PW;
        const float32x4_t* w = wv + kh * KW;
        for (int64_t kw = 0; kw < KW; ++kw) {
          const float* p = xr + kw * s.DW;
          a0 = vfmaq_f32(a0, load_strided<S>(p), w[kw]);
          a1 = vfmaq_f32(a1, load_strided<S>(p + 4 * S), w[kw]);
        }
      }
      vst1q_f32(yr + ow, activate<VecNeon>(a0, act));
      vst1q_f32(yr + ow + 4, activate<VecNeon>(a1, act));
    }
    for (; ow < hi; ow += 4) {
      float32x4_t a0 = bv;
      for (int64_t kh = kh0; kh < kh1; ++kh) {
        const float* xr = xp + (ih0 + kh * s.DH) * s.W + ow * S - s.PW;
        for (int64_t kw = 0; kw < KW; ++kw)
          a0 = vfmaq_f32(a0, load_strided<S>(xr + kw * s.DW), wv[kh * KW + kw]);
      }
      vst1q_f32(yr + ow, activate<VecNeon>(a0, act));
    }
    for (; ow < s.OW; ++ow) scalar_at(ow);
  }
}

// grad_input for stride_w 1 (any stride_h):
// gx[ih, iw] (+)= sum gy[(ih + PH - kh*DH) / SH, iw + PW - kw*DW] * w[kh, kw]
// over the kh for which ih + PH - kh*DH is a multiple of SH
void grad_input_plane_s1(const DepthwiseShape& s, const float* gyp,
                         const float* wp, float* gxp, bool accumulate) {
  const int64_t KH = s.KH, KW = s.KW;
  float32x4_t wv[kMaxTaps];
  for (int64_t t = 0; t < KH * KW; ++t) wv[t] = vdupq_n_f32(wp[t]);
  int64_t lo, hi;
  // reads gy columns iw + PW - kw*DW, kw in [0, KW)
  vector_range(1, s.PW - (KW - 1) * s.DW, s.PW, s.OW, s.W, &lo, &hi);
  for (int64_t ih = 0; ih < s.H; ++ih) {
    float* xr = gxp + ih * s.W;
    auto scalar_at = [&](int64_t iw) {
      float acc = accumulate ? xr[iw] : 0.f;
      for (int64_t kh = 0; kh < KH; ++kh) {
        const int64_t th = ih + s.PH - kh * s.DH;
        if (th < 0 || th % s.SH) continue;
        const int64_t oh = th / s.SH;
        if (oh >= s.OH) continue;
        for (int64_t kw = 0; kw < KW; ++kw) {
          const int64_t ow = iw + s.PW - kw * s.DW;
          if (ow >= 0 && ow < s.OW) acc += gyp[oh * s.OW + ow] * wp[kh * KW + kw];
        }
      }
      xr[iw] = acc;
    };
    int64_t iw = 0;
    for (; iw < lo && iw < s.W; ++iw) scalar_at(iw);
    for (; iw < hi; iw += 4) {
      float32x4_t a = accumulate ? vld1q_f32(xr + iw) : vdupq_n_f32(0.f);
      for (int64_t kh = 0; kh < KH; ++kh) {
        const int64_t th = ih + s.PH - kh * s.DH;
        if (th < 0 || th % s.SH) continue;
        const int64_t oh = th / s.SH;
        if (oh >= s.OH) continue;
        const float* gr = gyp + oh * s.OW + iw + s.PW;
        for (int64_t kw = 0; kw < KW; ++kw)
          a = vfmaq_f32(a, vld1q_f32(gr - kw * s.DW), wv[kh * KW + kw]);
      }
      vst1q_f32(xr + iw, a);
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
      float32x4_t wv[kMaxTaps];
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
          wv[nt] = vdupq_n_f32(ws[nt]);
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
      for (; j < hi; j += 4) {
        float32x4_t a = vdupq_n_f32(0.f);
        for (int64_t t = 0; t < nt; ++t)
          a = vfmaq_f32(a, vld1q_f32(rows[t] + j + offs[t]), wv[t]);
        vst1q_f32(tmp + j, a);
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
template <int S>
void grad_weight_plane(const DepthwiseShape& s, const float* gyp,
                       const float* xp, float32x4_t* acc, float* sacc) {
  const int64_t KH = s.KH, KW = s.KW;
  int64_t lo, hi;
  vector_range(S, -s.PW, -s.PW + (KW - 1) * s.DW, s.W, s.OW, &lo, &hi);
  const int64_t vend = lo + (hi - lo + 3) / 4 * 4;  // end of the vector part
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
      for (int64_t ow = lo; ow < hi; ow += 4) {
        const float32x4_t g = vld1q_f32(gr + ow);
        const float* p = xr + ow * S - s.PW;
        for (int64_t kw = 0; kw < KW; ++kw)
          acc[kh * KW + kw] =
              vfmaq_f32(acc[kh * KW + kw], g, load_strided<S>(p + kw * s.DW));
      }
    }
  }
}


// Small planes (fewer than kSmallOW output columns, as in the 14x14 and 7x7
// stages of MobileNets, multiplier 1) leave little room for vectors along W:
// blocks of up to 4 channels are transposed to [H][W][4] in a stack buffer
// and computed with vectors along the channels instead (any stride and
// dilation), then written back plane by plane. Each lane is computed exactly
// as it would be alone, so the results do not depend on how units are
// grouped into blocks (or split over threads).
constexpr int64_t kSmallPlane = 1024;
constexpr int64_t kSmallOW = 12;

// Transposes planes [c0, c0+nb) (each of `plane` floats, channel stride
// `plane`) to dst[p * 4 + i], zero-filling lanes i >= nb.
inline void gather4(const float* src, int64_t nb, int64_t plane, float* dst) {
  for (int64_t p = 0; p < plane; ++p)
    for (int64_t i = 0; i < 4; ++i) dst[p * 4 + i] = i < nb ? src[i * plane + p] : 0.f;
}

// Lanes [0, nb) of the tap-t weights of channels c0.. (zero elsewhere).
inline float32x4_t weight_lanes(const float* w, int64_t c0, int64_t nb, int64_t KK,
                                int64_t t) {
  float lane[4] = {0.f, 0.f, 0.f, 0.f};
  for (int64_t i = 0; i < nb; ++i) lane[i] = w[(c0 + i) * KK + t];
  return vld1q_f32(lane);
}

void forward_small_planes(const DepthwiseShape& s, const float* x, const float* w,
                          const float* bias, float* y, Activation act, int64_t begin,
                          int64_t end) {
  const int64_t Co = s.C_out(), KK = s.KH * s.KW, HW = s.H * s.W, OHW = s.OH * s.OW;
  float xt[4 * kSmallPlane];
  float yt[4 * kSmallPlane];
  float32x4_t wt[kMaxTaps];
  for (int64_t u = begin; u < end;) {
    const int64_t n = u / Co, c0 = u % Co;
    const int64_t nb = imin(imin(4, end - u), Co - c0);
    gather4(x + (n * s.C + c0) * HW, nb, HW, xt);
    for (int64_t t = 0; t < KK; ++t) wt[t] = weight_lanes(w, c0, nb, KK, t);
    float bl[4] = {0.f, 0.f, 0.f, 0.f};
    for (int64_t i = 0; i < nb; ++i) bl[i] = bias ? bias[c0 + i] : 0.f;
    const float32x4_t bv = vld1q_f32(bl);
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        float32x4_t a = bv;
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          const int64_t ih = oh * s.SH - s.PH + kh * s.DH;
          if (ih < 0 || ih >= s.H) continue;
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            const int64_t iw = ow * s.SW - s.PW + kw * s.DW;
            if (iw < 0 || iw >= s.W) continue;
            a = vfmaq_f32(a, vld1q_f32(xt + (ih * s.W + iw) * 4), wt[kh * s.KW + kw]);
          }
        }
        vst1q_f32(yt + (oh * s.OW + ow) * 4, activate<VecNeon>(a, act));
      }
    }
    for (int64_t i = 0; i < nb; ++i) {
      float* yp = y + (u + i) * OHW;
      for (int64_t p = 0; p < OHW; ++p) yp[p] = yt[p * 4 + i];
    }
    u += nb;
  }
}

// grad_input on small planes (multiplier 1, any stride): 4 channels at once.
void grad_input_small_planes(const DepthwiseShape& s, const float* gy, const float* w,
                             float* gx, int64_t begin, int64_t end) {
  const int64_t C = s.C, KK = s.KH * s.KW, HW = s.H * s.W, OHW = s.OH * s.OW;
  float gt[4 * kSmallPlane];
  float xt[4 * kSmallPlane];
  float32x4_t wt[kMaxTaps];
  for (int64_t u = begin; u < end;) {
    const int64_t n = u / C, c0 = u % C;
    const int64_t nb = imin(imin(4, end - u), C - c0);
    gather4(gy + (n * C + c0) * OHW, nb, OHW, gt);
    for (int64_t t = 0; t < KK; ++t) wt[t] = weight_lanes(w, c0, nb, KK, t);
    for (int64_t ih = 0; ih < s.H; ++ih) {
      for (int64_t iw = 0; iw < s.W; ++iw) {
        float32x4_t a = vdupq_n_f32(0.f);
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
            a = vfmaq_f32(a, vld1q_f32(gt + (oh * s.OW + ow) * 4), wt[kh * s.KW + kw]);
          }
        }
        vst1q_f32(xt + (ih * s.W + iw) * 4, a);
      }
    }
    for (int64_t i = 0; i < nb; ++i) {
      float* xp = gx + (u + i) * HW;
      for (int64_t p = 0; p < HW; ++p) xp[p] = xt[p * 4 + i];
    }
    u += nb;
  }
}

// grad_weight on small planes (multiplier 1): one unit = 8 channels = two
// blocks of 4, a vector accumulator per tap over N x OH x OW in a fixed order.
void grad_weight_small_planes(const DepthwiseShape& s, const float* gy, const float* x,
                              float* gw, int64_t begin, int64_t end) {
  const int64_t C = s.C, KK = s.KH * s.KW, HW = s.H * s.W, OHW = s.OH * s.OW;
  float gt[4 * kSmallPlane];
  float xt[4 * kSmallPlane];
  float32x4_t acc[kMaxTaps];
  for (int64_t u = begin; u < end; ++u) {
    const int64_t cb1 = imin(C, (u + 1) * kDepthwiseWeightChannelBlock);
    for (int64_t c0 = u * kDepthwiseWeightChannelBlock; c0 < cb1; c0 += 4) {
      const int64_t nb = imin(4, cb1 - c0);
      for (int64_t t = 0; t < KK; ++t) acc[t] = vdupq_n_f32(0.f);
      for (int64_t n = 0; n < s.N; ++n) {
        gather4(gy + (n * C + c0) * OHW, nb, OHW, gt);
        gather4(x + (n * C + c0) * HW, nb, HW, xt);
        for (int64_t oh = 0; oh < s.OH; ++oh) {
          for (int64_t ow = 0; ow < s.OW; ++ow) {
            const float32x4_t g = vld1q_f32(gt + (oh * s.OW + ow) * 4);
            for (int64_t kh = 0; kh < s.KH; ++kh) {
              const int64_t ih = oh * s.SH - s.PH + kh * s.DH;
              if (ih < 0 || ih >= s.H) continue;
              for (int64_t kw = 0; kw < s.KW; ++kw) {
                const int64_t iw = ow * s.SW - s.PW + kw * s.DW;
                if (iw < 0 || iw >= s.W) continue;
                acc[kh * s.KW + kw] = vfmaq_f32(acc[kh * s.KW + kw], g,
                                                vld1q_f32(xt + (ih * s.W + iw) * 4));
              }
            }
          }
        }
      }
      for (int64_t t = 0; t < KK; ++t) {
        float lane[4];
        vst1q_f32(lane, acc[t]);
        for (int64_t i = 0; i < nb; ++i) gw[(c0 + i) * KK + t] = lane[i];
      }
    }
  }
}

}  // namespace

bool depthwise_nchw_small_planes_neon_supported(const DepthwiseShape& s) {
  return s.layout == Layout::NCHW && s.mult == 1 && s.KH * s.KW <= kMaxTaps &&
         s.OW < kSmallOW && s.H * s.W <= kSmallPlane && s.OH * s.OW <= kSmallPlane;
}

// all three ops
bool depthwise_nchw_direct_neon_supported(const DepthwiseShape& s) {
  return s.layout == Layout::NCHW && s.KH * s.KW <= kMaxTaps && (s.SW == 1 || s.SW == 2);
}

void depthwise_forward_nchw_small_planes_neon(const DepthwiseShape& s, const float* x,
                                              const float* w, const float* bias, float* y,
                                              Activation act, int64_t begin, int64_t end) {
  forward_small_planes(s, x, w, bias, y, act, begin, end);
}

void depthwise_grad_input_nchw_small_planes_neon(const DepthwiseShape& s, const float* gy,
                                                 const float* w, float* gx, int64_t begin,
                                                 int64_t end) {
  grad_input_small_planes(s, gy, w, gx, begin, end);
}

void depthwise_grad_weight_nchw_small_planes_neon(const DepthwiseShape& s, const float* gy,
                                                  const float* x, float* gw, int64_t begin,
                                                  int64_t end) {
  grad_weight_small_planes(s, gy, x, gw, begin, end);
}

void depthwise_forward_nchw_direct_neon(const DepthwiseShape& s, const float* x,
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

bool depthwise_grad_input_nchw_direct_neon(const DepthwiseShape& s, const float* gy,
                                           const float* w, float* gx, int64_t begin,
                                           int64_t end) {
  const int64_t Co = s.C_out(), KK = s.KH * s.KW;
  float* tmp = nullptr;
  if (s.SW == 2) {
    // per-thread row buffer, reused across calls (grows to the widest row)
    thread_local float* buf = nullptr;
    thread_local int64_t cap = 0;
    const int64_t need = (s.W + 1) / 2 + 4;
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

void depthwise_grad_weight_nchw_direct_neon(const DepthwiseShape& s, const float* gy,
                                            const float* x, float* gw, int64_t begin,
                                            int64_t end) {
  const int64_t Co = s.C_out(), KK = s.KH * s.KW;
  const int64_t B = kDepthwiseWeightChannelBlock;
  float32x4_t acc[kMaxTaps];
  float sacc[kMaxTaps];
  for (int64_t u = begin; u < end; ++u) {
    const int64_t oc1 = imin(Co, (u + 1) * B);
    for (int64_t oc = u * B; oc < oc1; ++oc) {
      const int64_t c = oc / s.mult;
      for (int64_t t = 0; t < KK; ++t) {
        acc[t] = vdupq_n_f32(0.f);
        sacc[t] = 0.f;
      }
      for (int64_t n = 0; n < s.N; ++n) {
        const float* gyp = gy + (n * Co + oc) * s.OH * s.OW;
        const float* xp = x + (n * s.C + c) * s.H * s.W;
        if (s.SW == 1)
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
