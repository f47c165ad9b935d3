// The AVX2 family's NHWC grad_weight partial sums per row chunk (the
// general NHWC kernels themselves are generic/depthwise_nhwc.h, run by the
// family over VecAvx2).
#include "depthwise_avx2_common.h"

namespace mnx {
namespace cpu {

using namespace avx2;

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
