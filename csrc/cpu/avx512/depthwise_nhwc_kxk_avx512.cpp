// AVX-512F depthwise forward for channels_last (NHWC) tensors: square
// 3x3 / 5x5 / 7x7 kernels, stride 1 or 2 (same along H and W), dilation 1,
// multiplier 1, any channel count — the structure of
// depthwise_nhwc_kxk_avx2.cpp with 16 channels per register and the channel
// tail handled by a lane mask (masked loads never touch the masked lanes'
// memory), so C need not be a multiple of 8 or 16.
//
// One work unit is one (n, oh) output row (as for every NHWC forward). The
// interior of a row (output columns whose taps are all inside the image) is
// computed in groups of T = 8 pixels (then 4, then 1 for what is left) per
// 16-channel block: T accumulators,
// per tap row the K weights in registers and each of the S*(T-1)+K input
// columns the group touches loaded once and fed to every (pixel, tap) pair
// that reads it. Border pixels check each tap column; tap rows outside the
// image are skipped. Every output element is one FMA chain in (kh, kw)
// order starting from the bias, whatever the unit split.
#include <immintrin.h>

#include "../vec/vec_avx512.h"
#include "avx512_depthwise.h"

namespace mnx {
namespace cpu {
namespace {


template <int K, int S, int T>
inline void group(const float* const* rows, int64_t C, int64_t cb, __mmask16 m,
                  int64_t iw0, const float* wt, const float* bias, float* out,
                  Activation act) {
  constexpr int kCols = S * (T - 1) + K;
  __m512 acc[T];
  const __m512 b = bias ? _mm512_maskz_loadu_ps(m, bias + cb) : _mm512_setzero_ps();
  for (int t = 0; t < T; ++t) acc[t] = b;
  for (int kh = 0; kh < K; ++kh) {
    const float* r = rows[kh];
    if (!r) continue;
    __m512 w[K];
    for (int kw = 0; kw < K; ++kw)
      w[kw] = _mm512_maskz_loadu_ps(m, wt + (kh * K + kw) * C + cb);
    const float* p = r + iw0 * C + cb;
#pragma GCC unroll 32
    for (int j = 0; j < kCols; ++j) {
      const __m512 v = _mm512_maskz_loadu_ps(m, p + j * C);
      // pixel t reads column j with tap kw = j - S * t, 0 <= kw < K
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const int kw = j - S * t;
        if (kw >= 0 && kw < K) acc[t] = _mm512_fmadd_ps(v, w[kw], acc[t]);
      }
    }
  }
  for (int t = 0; t < T; ++t)
    _mm512_mask_storeu_ps(out + t * C + cb, m, activate<VecAvx512>(acc[t], act));
}

template <int K>
inline void border_pixel(const float* const* rows, int64_t C, int64_t W,
                         int64_t iw0, const float* wt, const float* bias,
                         float* out, Activation act) {
  for (int64_t cb = 0; cb < C; cb += 16) {
    const __mmask16 m = C - cb >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (C - cb)) - 1);
    __m512 a = bias ? _mm512_maskz_loadu_ps(m, bias + cb) : _mm512_setzero_ps();
    for (int kh = 0; kh < K; ++kh) {
      const float* r = rows[kh];
      if (!r) continue;
      for (int kw = 0; kw < K; ++kw) {
        const int64_t iw = iw0 + kw;
        if (iw < 0 || iw >= W) continue;
        a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, r + iw * C + cb),
                            _mm512_maskz_loadu_ps(m, wt + (kh * K + kw) * C + cb), a);
      }
    }
    _mm512_mask_storeu_ps(out + cb, m, activate<VecAvx512>(a, act));
  }
}

template <int K, int S, int T>
inline void groups(const float* const* rows, int64_t C, int64_t iw0,
                   const float* wt, const float* bias, float* out,
                   Activation act) {
  for (int64_t cb = 0; cb < C; cb += 16) {
    const __mmask16 m = C - cb >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (C - cb)) - 1);
    group<K, S, T>(rows, C, cb, m, iw0, wt, bias, out, act);
  }
}

template <int K, int S>
void forward_rows(const DepthwiseShape& s, const float* x, const float* wt,
                  const float* bias, float* y, Activation act, int64_t begin,
                  int64_t end) {
  const int64_t C = s.C, W = s.W, P = s.PW, OW = s.OW;
  // interior columns: ow * S - P >= 0 and ow * S - P + K - 1 <= W - 1
  int64_t lo = (P + S - 1) / S, hi = W - K + P >= 0 ? (W - K + P) / S + 1 : 0;
  if (hi > OW) hi = OW;
  if (lo > hi) lo = hi;
  for (int64_t u = begin; u < end; ++u) {
    const int64_t n = u / s.OH, oh = u % s.OH;
    const float* rows[K];
    for (int kh = 0; kh < K; ++kh) {
      const int64_t ih = oh * S - s.PH + kh;
      rows[kh] = (ih >= 0 && ih < s.H) ? x + (n * s.H + ih) * W * C : nullptr;
    }
    float* yr = y + (n * s.OH + oh) * OW * C;
    for (int64_t ow = 0; ow < lo; ++ow)
      border_pixel<K>(rows, C, W, ow * S - P, wt, bias, yr + ow * C, act);
    int64_t ow = lo;
    for (; ow + 8 <= hi; ow += 8)
      groups<K, S, 8>(rows, C, ow * S - P, wt, bias, yr + ow * C, act);
    for (; ow + 4 <= hi; ow += 4)
      groups<K, S, 4>(rows, C, ow * S - P, wt, bias, yr + ow * C, act);
    for (; ow < hi; ++ow)
      groups<K, S, 1>(rows, C, ow * S - P, wt, bias, yr + ow * C, act);
    for (; ow < OW; ++ow)
      border_pixel<K>(rows, C, W, ow * S - P, wt, bias, yr + ow * C, act);
  }
}

}  // namespace

bool depthwise_forward_nhwc_kxk_avx512_supported(const DepthwiseShape& s) {
  return s.layout == Layout::NHWC && s.mult == 1 && s.KH == s.KW &&
         (s.KH == 3 || s.KH == 5 || s.KH == 7) && s.DH == 1 && s.DW == 1 &&
         s.SH == s.SW && (s.SH == 1 || s.SH == 2);
}

void depthwise_forward_nhwc_kxk_avx512(const DepthwiseShape& s, const float* x,
                                       const float* wt, const float* bias,
                                       float* y, Activation act, int64_t begin,
                                       int64_t end) {
#define MNX_NHWC512_CASE(KK, SS)                                        \
  if (s.KH == KK && s.SH == SS)                                         \
    return forward_rows<KK, SS>(s, x, wt, bias, y, act, begin, end);
  MNX_NHWC512_CASE(3, 1)
  MNX_NHWC512_CASE(3, 2)
  MNX_NHWC512_CASE(5, 1)
  MNX_NHWC512_CASE(5, 2)
  MNX_NHWC512_CASE(7, 1)
  MNX_NHWC512_CASE(7, 2)
#undef MNX_NHWC512_CASE
}

}  // namespace cpu
}  // namespace mnx
