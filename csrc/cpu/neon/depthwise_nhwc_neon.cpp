// NEON depthwise kernels for channels_last (NHWC) tensors: vectors of 4
// along the (output) channels, any kernel size, stride, padding, dilation and
// channel multiplier. Spatial bounds are checked per tap (scalar index
// arithmetic); the channel loop runs 16 channels (4 q registers) per step,
// then 4, then a scalar tail, so no padded copy is ever made.
//
// The weights [C_out, 1, KH, KW] are read tap-major ([KH*KW][C_out]) from a
// per-thread scratch buffer filled once per call and reused across calls.
// Channel multiplier m > 1 (output channel oc reads input channel oc / m):
//   forward      the KH input rows of an output row are expanded once to
//                C_out channels (x[.., oc / m]) in a per-thread buffer, then
//                run through the same vector loop;
//   grad_input   the per-output-channel products are summed over the taps
//                with vectors, then each input channel adds its m outputs;
//   grad_weight  the 8 x values of a unit are gathered per tap.
#include <cstdlib>
#include <vector>

#include "depthwise_neon_common.h"

namespace mnx {
namespace cpu {
namespace {

using namespace neon;

constexpr int64_t kMaxTaps = 1024;

// Tap-major copy of the weights for this thread (null if out of memory).
const float* tap_major_weights(const DepthwiseShape& s, const float* w) {
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

struct Tap {
  const float* src;  // channel 0 of the source pixel
  int64_t t;         // tap index kh*KW + kw
};

// out[c] = act(init[c] + sum over taps of src[tap][c] * wt[tap][c]).
inline void pixel(int64_t C, const Tap* taps, int64_t ntaps, const float* wt,
                  const float* bias, float* out, Activation act) {
  int64_t c = 0;
  for (; c + 16 <= C; c += 16) {
    float32x4_t a0, a1, a2, a3;
    if (bias) {
      a0 = vld1q_f32(bias + c);
      a1 = vld1q_f32(bias + c + 4);
      a2 = vld1q_f32(bias + c + 8);
      a3 = vld1q_f32(bias + c + 12);
    } else {
      a0 = a1 = a2 = a3 = vdupq_n_f32(0.f);
    }
    for (int64_t i = 0; i < ntaps; ++i) {
      const float* p = taps[i].src + c;
      const float* q = wt + taps[i].t * C + c;
      a0 = vfmaq_f32(a0, vld1q_f32(p), vld1q_f32(q));
      a1 = vfmaq_f32(a1, vld1q_f32(p + 4), vld1q_f32(q + 4));
      a2 = vfmaq_f32(a2, vld1q_f32(p + 8), vld1q_f32(q + 8));
      a3 = vfmaq_f32(a3, vld1q_f32(p + 12), vld1q_f32(q + 12));
    }
    vst1q_f32(out + c, activate<VecNeon>(a0, act));
    vst1q_f32(out + c + 4, activate<VecNeon>(a1, act));
    vst1q_f32(out + c + 8, activate<VecNeon>(a2, act));
    vst1q_f32(out + c + 12, activate<VecNeon>(a3, act));
  }
  for (; c + 4 <= C; c += 4) {
    float32x4_t a = bias ? vld1q_f32(bias + c) : vdupq_n_f32(0.f);
    for (int64_t i = 0; i < ntaps; ++i)
      a = vfmaq_f32(a, vld1q_f32(taps[i].src + c), vld1q_f32(wt + taps[i].t * C + c));
    vst1q_f32(out + c, activate<VecNeon>(a, act));
  }
  for (; c < C; ++c) {
    float a = bias ? bias[c] : 0.f;
    for (int64_t i = 0; i < ntaps; ++i) a += taps[i].src[c] * wt[taps[i].t * C + c];
    out[c] = apply_activation(a, act);
  }
}

}  // namespace

bool depthwise_nhwc_neon_supported(const DepthwiseShape& s) {
  return s.layout == Layout::NHWC && s.KH * s.KW <= kMaxTaps;
}

bool depthwise_forward_nhwc_neon(const DepthwiseShape& s, const float* x,
                                 const float* w, const float* bias, float* y,
                                 Activation act, int64_t begin, int64_t end) {
  const float* wt = tap_major_weights(s, w);
  if (!wt) return false;
  const int64_t Co = s.C_out(), m = s.mult;
  float* xe = nullptr;  // expanded rows [KH][W][Co] (multiplier > 1)
  if (m > 1) {
    thread_local std::vector<float> buf;
    try {
      if (static_cast<int64_t>(buf.size()) < s.KH * s.W * Co) buf.resize(s.KH * s.W * Co);
    } catch (...) {
      return false;
    }
    xe = buf.data();
  }
  Tap taps[kMaxTaps];
  for (int64_t u = begin; u < end; ++u) {
    const int64_t n = u / s.OH, oh = u % s.OH;
    if (xe) {
      for (int64_t kh = 0; kh < s.KH; ++kh) {
        const int64_t ih = oh * s.SH - s.PH + kh * s.DH;
        if (ih < 0 || ih >= s.H) continue;
        const float* xr = x + (n * s.H + ih) * s.W * s.C;
        float* dst = xe + kh * s.W * Co;
        for (int64_t iw = 0; iw < s.W; ++iw)
          for (int64_t oc = 0; oc < Co; ++oc) dst[iw * Co + oc] = xr[iw * s.C + oc / m];
      }
    }
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      int64_t nt = 0;
      for (int64_t kh = 0; kh < s.KH; ++kh) {
        const int64_t ih = oh * s.SH - s.PH + kh * s.DH;
        if (ih < 0 || ih >= s.H) continue;
        for (int64_t kw = 0; kw < s.KW; ++kw) {
          const int64_t iw = ow * s.SW - s.PW + kw * s.DW;
          if (iw < 0 || iw >= s.W) continue;
          const float* src = xe ? xe + (kh * s.W + iw) * Co
                                : x + ((n * s.H + ih) * s.W + iw) * s.C;
          taps[nt++] = {src, kh * s.KW + kw};
        }
      }
      pixel(Co, taps, nt, wt, bias, y + ((n * s.OH + oh) * s.OW + ow) * Co, act);
    }
  }
  return true;
}

bool depthwise_grad_input_nhwc_neon(const DepthwiseShape& s, const float* gy,
                                    const float* w, float* gx, int64_t begin,
                                    int64_t end) {
  const float* wt = tap_major_weights(s, w);
  if (!wt) return false;
  const int64_t Co = s.C_out(), m = s.mult;
  float* tmp = nullptr;  // per-output-channel sums (multiplier > 1)
  if (m > 1) {
    thread_local std::vector<float> buf;
    try {
      if (static_cast<int64_t>(buf.size()) < Co) buf.resize(Co);
    } catch (...) {
      return false;
    }
    tmp = buf.data();
  }
  Tap taps[kMaxTaps];
  for (int64_t u = begin; u < end; ++u) {
    const int64_t n = u / s.H, ih = u % s.H;
    for (int64_t iw = 0; iw < s.W; ++iw) {
      int64_t nt = 0;
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
          taps[nt++] = {gy + ((n * s.OH + oh) * s.OW + ow) * Co, kh * s.KW + kw};
        }
      }
      float* out = gx + ((n * s.H + ih) * s.W + iw) * s.C;
      if (!tmp) {
        pixel(s.C, taps, nt, wt, nullptr, out, Activation::None);
        continue;
      }
      pixel(Co, taps, nt, wt, nullptr, tmp, Activation::None);
      for (int64_t c = 0; c < s.C; ++c) {
        float a = tmp[c * m];
        for (int64_t j = 1; j < m; ++j) a += tmp[c * m + j];
        out[c] = a;
      }
    }
  }
  return true;
}

// One unit = kDepthwiseWeightChannelBlock (8) channels = 2 vectors: a pair of
// vector accumulators per tap over N x OH x OW, in a fixed order
// (independent of the unit split).
void depthwise_grad_weight_nhwc_neon(const DepthwiseShape& s, const float* gy,
                                     const float* x, float* gw, int64_t begin,
                                     int64_t end) {
  static_assert(kDepthwiseWeightChannelBlock == 8, "two vectors per unit");
  const int64_t KK = s.KH * s.KW, C = s.C, Co = s.C_out(), m = s.mult;
  float32x4_t acc[2 * kMaxTaps];
  for (int64_t u = begin; u < end; ++u) {
    const int64_t c0 = u * 8;
    const int64_t rem = imin(Co - c0, 8);
    const int64_t r0 = imin(rem, 4), r1 = rem - r0;
    for (int64_t t = 0; t < 2 * KK; ++t) acc[t] = vdupq_n_f32(0.f);
    for (int64_t n = 0; n < s.N; ++n) {
      for (int64_t oh = 0; oh < s.OH; ++oh) {
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          const float* gp = gy + ((n * s.OH + oh) * s.OW + ow) * Co + c0;
          float32x4_t g0, g1;
          if (rem == 8) {
            g0 = vld1q_f32(gp);
            g1 = vld1q_f32(gp + 4);
          } else {
            g0 = load_partial(gp, r0);
            g1 = load_partial(gp + 4, r1);
          }
          for (int64_t kh = 0; kh < s.KH; ++kh) {
            const int64_t ih = oh * s.SH - s.PH + kh * s.DH;
            if (ih < 0 || ih >= s.H) continue;
            const float* xr = x + ((n * s.H + ih) * s.W) * C;
            for (int64_t kw = 0; kw < s.KW; ++kw) {
              const int64_t iw = ow * s.SW - s.PW + kw * s.DW;
              if (iw < 0 || iw >= s.W) continue;
              const int64_t t = kh * s.KW + kw;
              if (m > 1) {  // gather x[oc / m] for the unit's channels
                float xg[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
                for (int64_t i = 0; i < rem; ++i) xg[i] = xr[iw * C + (c0 + i) / m];
                acc[2 * t] = vfmaq_f32(acc[2 * t], g0, vld1q_f32(xg));
                acc[2 * t + 1] = vfmaq_f32(acc[2 * t + 1], g1, vld1q_f32(xg + 4));
                continue;
              }
              const float* xp = xr + iw * C + c0;
              if (rem == 8) {
                acc[2 * t] = vfmaq_f32(acc[2 * t], g0, vld1q_f32(xp));
                acc[2 * t + 1] = vfmaq_f32(acc[2 * t + 1], g1, vld1q_f32(xp + 4));
              } else {
                acc[2 * t] = vfmaq_f32(acc[2 * t], g0, load_partial(xp, r0));
                acc[2 * t + 1] =
                    vfmaq_f32(acc[2 * t + 1], g1, load_partial(xp + 4, r1));
              }
            }
          }
        }
      }
    }
    float tmp[8];
    for (int64_t t = 0; t < KK; ++t) {
      vst1q_f32(tmp, acc[2 * t]);
      vst1q_f32(tmp + 4, acc[2 * t + 1]);
      for (int64_t i = 0; i < rem; ++i) gw[(c0 + i) * KK + t] = tmp[i];
    }
  }
}

// Partial sums per chunk of (n, oh) rows (params.h), all channels at once:
// for each row, tap and channel block, the valid output columns are a
// contiguous range, summed in registers without bounds checks.
void depthwise_grad_weight_nhwc_partial_neon(const DepthwiseShape& s,
                                             const float* gy, const float* x,
                                             float* partial, int64_t begin,
                                             int64_t end) {
  const int64_t C = s.C, KK = s.KH * s.KW, rows = s.N * s.OH;
  const int64_t cs = depthwise_grad_weight_row_chunk_size(s);
  for (int64_t u = begin; u < end; ++u) {
    float* P = partial + u * KK * C;
    for (int64_t i = 0; i < KK * C; ++i) P[i] = 0.f;
    const int64_t r1 = imin(rows, (u + 1) * cs);
    for (int64_t r = u * cs; r < r1; ++r) {
      const int64_t n = r / s.OH, oh = r % s.OH;
      const float* gr = gy + r * s.OW * C;
      for (int64_t kh = 0; kh < s.KH; ++kh) {
        const int64_t ih = oh * s.SH - s.PH + kh * s.DH;
        if (ih < 0 || ih >= s.H) continue;
        const float* xr = x + (n * s.H + ih) * s.W * C;
        for (int64_t kw = 0; kw < s.KW; ++kw) {
          const int64_t t0 = s.PW - kw * s.DW;  // iw = ow*SW - t0
          const int64_t lo = t0 <= 0 ? 0 : (t0 + s.SW - 1) / s.SW;
          const int64_t t1 = s.W - 1 + t0;
          const int64_t hi = t1 < 0 ? 0 : imin(s.OW, t1 / s.SW + 1);
          if (hi <= lo) continue;
          float* Pt = P + (kh * s.KW + kw) * C;
          const int64_t gstep = C, xstep = s.SW * C;
          int64_t c = 0;
          for (; c + 16 <= C; c += 16) {
            float32x4_t a0 = vld1q_f32(Pt + c), a1 = vld1q_f32(Pt + c + 4);
            float32x4_t a2 = vld1q_f32(Pt + c + 8), a3 = vld1q_f32(Pt + c + 12);
            const float* g = gr + lo * gstep + c;
            const float* xp = xr + (lo * s.SW - t0) * C + c;
            for (int64_t ow = lo; ow < hi; ++ow, g += gstep, xp += xstep) {
              a0 = vfmaq_f32(a0, vld1q_f32(g), vld1q_f32(xp));
              a1 = vfmaq_f32(a1, vld1q_f32(g + 4), vld1q_f32(xp + 4));
              a2 = vfmaq_f32(a2, vld1q_f32(g + 8), vld1q_f32(xp + 8));
              a3 = vfmaq_f32(a3, vld1q_f32(g + 12), vld1q_f32(xp + 12));
            }
            vst1q_f32(Pt + c, a0);
            vst1q_f32(Pt + c + 4, a1);
            vst1q_f32(Pt + c + 8, a2);
            vst1q_f32(Pt + c + 12, a3);
          }
          for (; c + 4 <= C; c += 4) {
            float32x4_t a = vld1q_f32(Pt + c);
            const float* g = gr + lo * gstep + c;
            const float* xp = xr + (lo * s.SW - t0) * C + c;
            for (int64_t ow = lo; ow < hi; ++ow, g += gstep, xp += xstep)
              a = vfmaq_f32(a, vld1q_f32(g), vld1q_f32(xp));
            vst1q_f32(Pt + c, a);
          }
          for (; c < C; ++c) {
            float a = Pt[c];
            const float* g = gr + lo * gstep + c;
            const float* xp = xr + (lo * s.SW - t0) * C + c;
            for (int64_t ow = lo; ow < hi; ++ow, g += gstep, xp += xstep) a += *g * *xp;
            Pt[c] = a;
          }
        }
      }
    }
  }
}

}  // namespace cpu
}  // namespace mnx
