// AVX2/FMA depthwise forward for channels_last (NHWC) tensors, square
// 3x3 / 5x5 / 7x7 kernels, stride 1 or 2 (same along H and W), dilation 1,
// multiplier 1, C a multiple of 8: the MobileNet / ConvNeXt cases.
//
// One work unit is one (n, oh) output row. Vectors hold 8 channels. The
// interior of the row (output columns whose taps are all inside the image)
// is computed in groups of 8 pixels: for each block of 8 channels, 8
// independent accumulators (one per pixel, enough to hide the FMA latency),
// one weight load per tap shared by the 8 pixels, and one aligned-stride
// input load per FMA. The few border pixels check each tap. Rows of taps
// outside the image are skipped for the whole row.
#include "depthwise_avx2_common.h"

namespace mnx {
namespace cpu {
namespace {

using namespace avx2;

// One pixel whose taps may fall outside the image (columns checked).
template <int K>
inline void border_pixel(const float* const* rows, int64_t C, int64_t W,
                         int64_t iw0, const float* wt, const float* bias,
                         float* out, Activation act) {
  for (int64_t cb = 0; cb < C; cb += 8) {
    __m256 a = bias ? _mm256_loadu_ps(bias + cb) : _mm256_setzero_ps();
    for (int kh = 0; kh < K; ++kh) {
      const float* r = rows[kh];
      if (!r) continue;
      for (int kw = 0; kw < K; ++kw) {
        const int64_t iw = iw0 + kw;
        if (iw < 0 || iw >= W) continue;
        a = _mm256_fmadd_ps(_mm256_loadu_ps(r + iw * C + cb),
                            _mm256_loadu_ps(wt + (kh * K + kw) * C + cb), a);
      }
    }
    _mm256_storeu_ps(out + cb, activate(a, act));
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
      for (int64_t cb = 0; cb < C; cb += 8)
        pixel_group<K, S, 8>(rows, C, cb, ow * S - P, wt, bias, yr + ow * C, act);
    for (; ow + 4 <= hi; ow += 4)
      for (int64_t cb = 0; cb < C; cb += 8)
        pixel_group<K, S, 4>(rows, C, cb, ow * S - P, wt, bias, yr + ow * C, act);
    for (; ow < hi; ++ow)
      for (int64_t cb = 0; cb < C; cb += 8)
        pixel_group<K, S, 1>(rows, C, cb, ow * S - P, wt, bias, yr + ow * C, act);
    for (; ow < OW; ++ow)
      border_pixel<K>(rows, C, W, ow * S - P, wt, bias, yr + ow * C, act);
  }
}

}  // namespace

bool depthwise_forward_nhwc_kxk_avx2_supported(const DepthwiseShape& s) {
  return s.layout == Layout::NHWC && s.mult == 1 && s.C % 8 == 0 &&
         s.KH == s.KW && (s.KH == 3 || s.KH == 5 || s.KH == 7) &&
         s.DH == 1 && s.DW == 1 && s.SH == s.SW && (s.SH == 1 || s.SH == 2);
}

// `wt` is the tap-major weight copy [KH * KW][C].
void depthwise_forward_nhwc_kxk_avx2(const DepthwiseShape& s, const float* x,
                                     const float* wt, const float* bias,
                                     float* y, Activation act, int64_t begin,
                                     int64_t end) {
#define MNX_NHWC_CASE(KK, SS)                                          \
  if (s.KH == KK && s.SH == SS)                                        \
    return forward_rows<KK, SS>(s, x, wt, bias, y, act, begin, end);
  MNX_NHWC_CASE(3, 1)
  MNX_NHWC_CASE(3, 2)
  MNX_NHWC_CASE(5, 1)
  MNX_NHWC_CASE(5, 2)
  MNX_NHWC_CASE(7, 1)
  MNX_NHWC_CASE(7, 2)
#undef MNX_NHWC_CASE
}

}  // namespace cpu
}  // namespace mnx
