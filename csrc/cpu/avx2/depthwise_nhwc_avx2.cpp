// AVX2/FMA depthwise kernels for channels_last (NHWC) tensors, channel
// multiplier 1: vectors of 8 along C, any kernel size (up to 1024 taps),
// stride, padding and dilation (DepthwisePath::nhwc_direct). The kernel is
// chosen by depthwise_path_avx2() (depthwise_avx2.cpp): the forward and
// grad_input of square 3x3/5x5/7x7 at stride 1 or 2 go first, when
// cpu_use_avx512(), to the AVX-512 forward (nhwc_kxk_avx512: any C;
// grad_input at stride 1 only), then to the row kernels of
// depthwise_nhwc_kxk_avx2.cpp (nhwc_kxk_avx2: C % 8 == 0; one of them copies
// rows into a padded ring). This file runs all three with the weights they
// need. The general kernels here check spatial bounds per tap (scalar index
// arithmetic) and vectorise the channel loop 4 registers (32 channels) at a
// time with a masked tail: no padded copy. They are written once for AVX2 and
// NEON in generic/depthwise_nhwc.h (instantiated here over VecAvx2).
//
// The weights [C, 1, KH, KW] are read tap-major ([KH*KW][C]) from a
// per-thread scratch buffer filled once per call and reused across calls
// (it only grows to the largest C*KH*KW seen).
#include <vector>

#include "../generic/depthwise_nhwc.h"
#include "depthwise_avx2_common.h"
#if MNX_HAVE_AVX512
#include "../avx512/avx512_depthwise.h"
#endif

namespace mnx {
namespace cpu {
namespace {

using namespace avx2;

// nhwc_direct over the vector layer: 4 registers (32 channels) per step,
// then a masked tail of up to 8 channels; multiplier 1 only.
using V = VecAvx2;
constexpr bool kMaskedTail = true, kMult = false;


}  // namespace

bool depthwise_nhwc_direct_avx2_supported(const DepthwiseShape& s) {
  return s.layout == Layout::NHWC && s.mult == 1 && s.KH * s.KW <= kDwNhwcMaxTaps;
}

bool depthwise_forward_nhwc_avx512_usable(const DepthwiseShape& s) {
#if MNX_HAVE_AVX512
  return cpu_use_avx512() && depthwise_forward_nhwc_kxk_avx512_supported(s);
#else
  return false;
#endif
}

// Square K x K at stride 1, dilation 1, padding <= K-1: grad_input is the
// forward of grad_output with the taps flipped and padding K-1-P, which the
// AVX-512 forward runs (any C).
bool depthwise_grad_input_nhwc_avx512_usable(const DepthwiseShape& s) {
#if MNX_HAVE_AVX512
  const int64_t K = s.KH;
  return cpu_use_avx512() && s.layout == Layout::NHWC && s.mult == 1 && s.SH == 1 &&
         s.SW == 1 && s.KW == K && s.PH <= K - 1 && s.PW <= K - 1 &&
         depthwise_forward_nhwc_kxk_avx512_supported(flipped_forward_shape(s));
#else
  return false;
#endif
}

// Runs kernel p (nhwc_kxk_avx512, nhwc_kxk_avx2 or nhwc_direct, supported
// for s); returns false (nothing written) if a scratch buffer could not be
// had.
bool depthwise_forward_nhwc_avx2(DepthwisePath p, const DepthwiseShape& s, const float* x,
                                 const float* w, const float* bias, float* y,
                                 Activation act, int64_t begin, int64_t end) {
  const float* wt = dwnhwc_tap_major_weights(s, w);
  if (!wt) return false;
#if MNX_HAVE_AVX512
  if (p == DepthwisePath::nhwc_kxk_avx512) {
    depthwise_forward_nhwc_kxk_avx512(s, x, wt, bias, y, act, begin, end);  // coverage: needs avx512f
    return true;  // coverage: needs avx512f
  }
#endif
  if (p == DepthwisePath::nhwc_kxk_avx2)
    return depthwise_forward_nhwc_kxk_avx2(s, x, wt, bias, y, act, begin, end);
  dwnhwc_forward<V, kMaskedTail, kMult>(s, x, wt, bias, y, act, begin, end, nullptr);
  return true;
}

// Square 3x3/5x5/7x7, stride 1 or 2, dilation 1, padding <= K-1: grad_input
// is the stride-1 correlation of grad_output (zero-dilated by the stride)
// with the kernel flipped in both axes and padding K-1-P, run by the AVX-512
// forward (nhwc_kxk_avx512, stride 1) or the kernels of
// depthwise_nhwc_kxk_avx2.cpp (nhwc_kxk_avx2, C % 8 == 0: the direct one
// for 3x3 at stride 1, else the padded ring). Returns false (nothing
// written) without scratch.
static bool grad_input_nhwc_as_forward(DepthwisePath p, const DepthwiseShape& s,
                                       const float* gy, const float* w, float* gx,
                                       int64_t begin, int64_t end) {
  const int64_t K = s.KH;
  // tap-major flipped weights [KK][C] for this thread, reused across calls
  thread_local std::vector<float> wf;
  const int64_t KK = K * K;
  try {
    if (static_cast<int64_t>(wf.size()) < KK * s.C) wf.resize(KK * s.C);
  } catch (...) {  // coverage: unreachable (only on std::bad_alloc)
    return false;  // coverage: unreachable
  }  // coverage: unreachable
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t i = 0; i < KK; ++i) wf[i * s.C + c] = w[c * KK + KK - 1 - i];
#if MNX_HAVE_AVX512
  if (p == DepthwisePath::nhwc_kxk_avx512) {
    depthwise_forward_nhwc_kxk_avx512(flipped_forward_shape(s), gy, wf.data(), nullptr, gx,  // coverage: needs avx512f
                                      Activation::None, begin, end);  // coverage: needs avx512f
    return true;  // coverage: needs avx512f
  }
#endif
  return depthwise_grad_input_nhwc_kxk_avx2(s, gy, wf.data(), gx, begin, end);
}

// Runs kernel p (nhwc_kxk_avx512, nhwc_kxk_avx2 or nhwc_direct, supported
// for s); returns false (nothing written) if a scratch buffer could not be
// had.
bool depthwise_grad_input_nhwc_avx2(DepthwisePath p, const DepthwiseShape& s, const float* gy,
                                    const float* w, float* gx, int64_t begin,
                                    int64_t end) {
  if (p != DepthwisePath::nhwc_direct)
    return grad_input_nhwc_as_forward(p, s, gy, w, gx, begin, end);
  const float* wt = dwnhwc_tap_major_weights(s, w);
  if (!wt) return false;
  dwnhwc_grad_input<V, kMaskedTail, kMult>(s, gy, wt, gx, begin, end, nullptr);
  return true;
}

// nhwc_direct's grad_weight: units of 8 channels, one (masked) register each.
void depthwise_grad_weight_nhwc_avx2(const DepthwiseShape& s, const float* gy,
                                     const float* x, float* gw, int64_t begin,
                                     int64_t end) {
  dwnhwc_grad_weight<V, kMaskedTail, kMult>(s, gy, x, gw, begin, end);
}

// The one-pass partial sums (DepthwiseKernels::grad_weight_nhwc_partial):
// the algorithm of dwnhwc_grad_weight_partial (generic/depthwise_nhwc.h,
// which NEON runs), kept hand-written here: instantiated over VecAvx2 it
// measured 2-5% slower (GCC 12 spills the two column strides of the inner
// loop), so this copy stays until that is fixed.
void depthwise_grad_weight_nhwc_partial_avx2(const DepthwiseShape& s,
                                             const float* gy, const float* x,
                                             float* partial, int64_t begin,
                                             int64_t end) {
  const int64_t C = s.C, KK = s.KH * s.KW, rows = s.N * s.OH;
  for (int64_t u = begin; u < end; ++u) {
    float* P = partial + u * KK * C;
    for (int64_t i = 0; i < KK * C; ++i) P[i] = 0.f;
    const int64_t cs = depthwise_grad_weight_row_chunk_size(s);
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
          for (; c + 32 <= C; c += 32) {
            __m256 a0 = _mm256_loadu_ps(Pt + c), a1 = _mm256_loadu_ps(Pt + c + 8);
            __m256 a2 = _mm256_loadu_ps(Pt + c + 16), a3 = _mm256_loadu_ps(Pt + c + 24);
            const float* g = gr + lo * gstep + c;
            const float* xp = xr + (lo * s.SW - t0) * C + c;
            for (int64_t ow = lo; ow < hi; ++ow, g += gstep, xp += xstep) {
              a0 = _mm256_fmadd_ps(_mm256_loadu_ps(g), _mm256_loadu_ps(xp), a0);
              a1 = _mm256_fmadd_ps(_mm256_loadu_ps(g + 8), _mm256_loadu_ps(xp + 8), a1);
              a2 = _mm256_fmadd_ps(_mm256_loadu_ps(g + 16), _mm256_loadu_ps(xp + 16), a2);
              a3 = _mm256_fmadd_ps(_mm256_loadu_ps(g + 24), _mm256_loadu_ps(xp + 24), a3);
            }
            _mm256_storeu_ps(Pt + c, a0);
            _mm256_storeu_ps(Pt + c + 8, a1);
            _mm256_storeu_ps(Pt + c + 16, a2);
            _mm256_storeu_ps(Pt + c + 24, a3);
          }
          for (; c < C; c += 8) {
            const int64_t rem = C - c;
            const __m256i m = tail_mask(rem < 8 ? rem : 8);
            __m256 a = _mm256_maskload_ps(Pt + c, m);
            const float* g = gr + lo * gstep + c;
            const float* xp = xr + (lo * s.SW - t0) * C + c;
            for (int64_t ow = lo; ow < hi; ++ow, g += gstep, xp += xstep)
              a = _mm256_fmadd_ps(_mm256_maskload_ps(g, m), _mm256_maskload_ps(xp, m), a);
            _mm256_maskstore_ps(Pt + c, m, a);
          }
        }
      }
    }
  }
}


}  // namespace cpu
}  // namespace mnx
