// The AVX2 family's own grad_weight plane kernel for nchw_direct (NCHW,
// stride_w 1 or 2, KW <= 7): the general NCHW kernels themselves are
// generic/depthwise_nchw.h, which the family (generic/depthwise_family.h)
// runs over VecAvx2 and passes this kernel for every (n, oc) plane pair.
#include "../generic/depthwise_nchw.h"
#include "depthwise_avx2_common.h"

namespace mnx {
namespace cpu {
namespace {

using namespace avx2;

template <int S>
inline __m256 load_s(const float* p) {
  return dw_nchw::load_strided<VecAvx2, S>(p);
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
            a[kw] = _mm256_fmadd_ps(g, load_s<S>(p + kw * s.DW), a[kw]);
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
                                  _mm256_and_ps(load_s<S>(p + kw * s.DW), mk), a[kw]);
        }
      }
    }
    for (int kw = 0; kw < KW; ++kw) acc[kh * KW + kw] = a[kw];
  }
}

}  // namespace

GradWeightPlaneAvx2 depthwise_grad_weight_nchw_padded_plane_avx2(const DepthwiseShape& s,
                                                                 int64_t* floats) {
  *floats = s.H * padded_width(s);
  GradWeightPlaneAvx2 plane = nullptr;
#define MNX_GW_KW(KWV) \
  if (s.KW == KWV) plane = s.SW == 1 ? grad_weight_plane_padded<1, KWV> : grad_weight_plane_padded<2, KWV>;
  MNX_GW_KW(1)
  MNX_GW_KW(2)
  MNX_GW_KW(3)
  MNX_GW_KW(4)
  MNX_GW_KW(5)
  MNX_GW_KW(6)
  MNX_GW_KW(7)
#undef MNX_GW_KW
  return plane;
}

}  // namespace cpu
}  // namespace mnx
