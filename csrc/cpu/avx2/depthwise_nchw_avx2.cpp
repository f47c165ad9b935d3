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
//
// The kernels are written once for AVX2 and NEON in generic/depthwise_nchw.h
// (over VecAvx2: two vectors of 8 per forward step); the padded grad_weight
// plane kernel below is AVX2's own.
#include <vector>

#include "../generic/depthwise_nchw.h"
#include "depthwise_avx2_common.h"

namespace mnx {
namespace cpu {
namespace {

using namespace avx2;
using dw_nchw::kMaxTaps;
using dw_nchw::kSmallPlane;
using V = VecAvx2;

template <int S>
inline __m256 load_s(const float* p) {
  return dw_nchw::load_strided<V, S>(p);
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

// Small planes (fewer than 16 output columns, as in the 14x14 and 7x7 stages
// of MobileNets) leave no room for vectors along W: blocks of up to 8
// channels are transposed to [H][W][8] in a stack buffer and computed with
// vectors along the channels instead, then written back plane by plane.
bool small_plane(const DepthwiseShape& s) {
  return s.mult == 1 && s.OW < 16 && s.H * s.W <= kSmallPlane &&
         s.OH * s.OW <= kSmallPlane;
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
  dw_nchw::forward_small_planes<V>(s, x, w, bias, y, act, begin, end);
}

void depthwise_grad_input_nchw_small_planes_avx2(const DepthwiseShape& s, const float* gy,
                                                 const float* w, float* gx, int64_t begin,
                                                 int64_t end) {
  dw_nchw::grad_input_small_planes<V>(s, gy, w, gx, begin, end);
}

void depthwise_grad_weight_nchw_small_planes_avx2(const DepthwiseShape& s, const float* gy,
                                                  const float* x, float* gw, int64_t begin,
                                                  int64_t end) {
  dw_nchw::grad_weight_small_planes<V>(s, gy, x, gw, begin, end);
}

void depthwise_forward_nchw_direct_avx2(const DepthwiseShape& s, const float* x,
                                        const float* w, const float* bias, float* y,
                                        Activation act, int64_t begin, int64_t end) {
  dw_nchw::forward_direct<V, 2>(s, x, w, bias, y, act, begin, end);
}

// Returns false (nothing written) if the stride-2 row buffer could not be had.
bool depthwise_grad_input_nchw_direct_avx2(const DepthwiseShape& s, const float* gy,
                                           const float* w, float* gx, int64_t begin,
                                           int64_t end) {
  return dw_nchw::grad_input_direct<V>(s, gy, w, gx, begin, end);
}

void depthwise_grad_weight_nchw_direct_avx2(const DepthwiseShape& s, const float* gy,
                                            const float* x, float* gw, int64_t begin,
                                            int64_t end) {
  // padded-plane path for KW <= 7 (per-thread plane buffer, reused)
  dw_nchw::PaddedFn<V> padded = nullptr;
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
  dw_nchw::grad_weight_direct<V>(s, gy, x, gw, begin, end, padded, xpad);
}

}  // namespace cpu
}  // namespace mnx
