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
// time with a masked tail: no padded copy.
//
// The weights [C, 1, KH, KW] are read tap-major ([KH*KW][C]) from a
// per-thread scratch buffer filled once per call and reused across calls
// (it only grows to the largest C*KH*KW seen).
#include <cstdlib>
#include <vector>

#include "depthwise_avx2_common.h"
#if MNX_HAVE_AVX512
#include "../avx512/avx512_depthwise.h"
#endif

namespace mnx {
namespace cpu {
namespace {

using namespace avx2;

// Tap-major copy of the weights for this thread.
const float* tap_major_weights(const DepthwiseShape& s, const float* w) {
  thread_local float* buf = nullptr;
  thread_local int64_t cap = 0;
  const int64_t KK = s.KH * s.KW, n = KK * s.C;
  if (n > cap) {
    std::free(buf);
    buf = static_cast<float*>(std::malloc(sizeof(float) * n));
    cap = buf ? n : 0;
    if (!buf) return nullptr;
  }
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t t = 0; t < KK; ++t) buf[t * s.C + c] = w[c * KK + t];
  return buf;
}

// One output (or grad_input) pixel: out[c] = init[c] + sum over the given taps
// of src[tap][c] * wt[tap][c], for all C channels.
struct Tap {
  const float* src;  // points at channel 0 of the source pixel
  int64_t t;         // tap index kh*KW + kw
};

inline void pixel(int64_t C, const Tap* taps, int64_t ntaps, const float* wt,
                  const float* bias, float* out, Activation act) {
  int64_t c = 0;
  for (; c + 32 <= C; c += 32) {
    __m256 a0, a1, a2, a3;
    if (bias) {
      a0 = _mm256_loadu_ps(bias + c);
      a1 = _mm256_loadu_ps(bias + c + 8);
      a2 = _mm256_loadu_ps(bias + c + 16);
      a3 = _mm256_loadu_ps(bias + c + 24);
    } else {
      a0 = a1 = a2 = a3 = _mm256_setzero_ps();
    }
    for (int64_t i = 0; i < ntaps; ++i) {
      const float* p = taps[i].src + c;
      const float* q = wt + taps[i].t * C + c;
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(q), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(p + 8), _mm256_loadu_ps(q + 8), a1);
      a2 = _mm256_fmadd_ps(_mm256_loadu_ps(p + 16), _mm256_loadu_ps(q + 16), a2);
      a3 = _mm256_fmadd_ps(_mm256_loadu_ps(p + 24), _mm256_loadu_ps(q + 24), a3);
    }
    _mm256_storeu_ps(out + c, activate<VecAvx2>(a0, act));
    _mm256_storeu_ps(out + c + 8, activate<VecAvx2>(a1, act));
    _mm256_storeu_ps(out + c + 16, activate<VecAvx2>(a2, act));
    _mm256_storeu_ps(out + c + 24, activate<VecAvx2>(a3, act));
  }
  for (; c < C; c += 8) {
    const int64_t rem = C - c;
    const __m256i m = tail_mask(rem < 8 ? rem : 8);
    __m256 a = bias ? _mm256_maskload_ps(bias + c, m) : _mm256_setzero_ps();
    for (int64_t i = 0; i < ntaps; ++i)
      a = _mm256_fmadd_ps(_mm256_maskload_ps(taps[i].src + c, m),
                          _mm256_maskload_ps(wt + taps[i].t * C + c, m), a);
    _mm256_maskstore_ps(out + c, m, activate<VecAvx2>(a, act));
  }
}

constexpr int64_t kMaxTaps = 1024;

}  // namespace

bool depthwise_nhwc_direct_avx2_supported(const DepthwiseShape& s) {
  return s.layout == Layout::NHWC && s.mult == 1 && s.KH * s.KW <= kMaxTaps;
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
  const float* wt = tap_major_weights(s, w);
  if (!wt) return false;
#if MNX_HAVE_AVX512
  if (p == DepthwisePath::nhwc_kxk_avx512) {
    depthwise_forward_nhwc_kxk_avx512(s, x, wt, bias, y, act, begin, end);  // coverage: needs avx512f
    return true;  // coverage: needs avx512f
  }
#endif
  if (p == DepthwisePath::nhwc_kxk_avx2)
    return depthwise_forward_nhwc_kxk_avx2(s, x, wt, bias, y, act, begin, end);
  Tap taps[kMaxTaps];
  for (int64_t u = begin; u < end; ++u) {
    const int64_t n = u / s.OH, oh = u % s.OH;
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      int64_t nt = 0;
      for (int64_t kh = 0; kh < s.KH; ++kh) {
        const int64_t ih = oh * s.SH - s.PH + kh * s.DH;
        if (ih < 0 || ih >= s.H) continue;
        for (int64_t kw = 0; kw < s.KW; ++kw) {
          const int64_t iw = ow * s.SW - s.PW + kw * s.DW;
          if (iw < 0 || iw >= s.W) continue;
          taps[nt++] = {x + ((n * s.H + ih) * s.W + iw) * s.C, kh * s.KW + kw};
        }
      }
      pixel(s.C, taps, nt, wt, bias, y + ((n * s.OH + oh) * s.OW + ow) * s.C, act);
    }
  }
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
  const float* wt = tap_major_weights(s, w);
  if (!wt) return false;
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
          taps[nt++] = {gy + ((n * s.OH + oh) * s.OW + ow) * s.C, kh * s.KW + kw};
        }
      }
      pixel(s.C, taps, nt, wt, nullptr, gx + ((n * s.H + ih) * s.W + iw) * s.C,
            Activation::None);
    }
  }
  return true;
}

// One unit = 8 channels: a vector accumulator per tap over N x OH x OW, in a
// fixed order (independent of the thread count).
void depthwise_grad_weight_nhwc_avx2(const DepthwiseShape& s, const float* gy,
                                     const float* x, float* gw, int64_t begin,
                                     int64_t end) {
  const int64_t KK = s.KH * s.KW, C = s.C;
  __m256 acc[kMaxTaps];
  for (int64_t u = begin; u < end; ++u) {
    const int64_t c0 = u * 8;
    const int64_t rem = C - c0 < 8 ? C - c0 : 8;
    const __m256i m = tail_mask(rem);
    for (int64_t t = 0; t < KK; ++t) acc[t] = _mm256_setzero_ps();
    for (int64_t n = 0; n < s.N; ++n) {
      for (int64_t oh = 0; oh < s.OH; ++oh) {
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          const __m256 g = _mm256_maskload_ps(gy + ((n * s.OH + oh) * s.OW + ow) * C + c0, m);
          for (int64_t kh = 0; kh < s.KH; ++kh) {
            const int64_t ih = oh * s.SH - s.PH + kh * s.DH;
            if (ih < 0 || ih >= s.H) continue;
            const float* xr = x + ((n * s.H + ih) * s.W) * C + c0;
            for (int64_t kw = 0; kw < s.KW; ++kw) {
              const int64_t iw = ow * s.SW - s.PW + kw * s.DW;
              if (iw < 0 || iw >= s.W) continue;
              acc[kh * s.KW + kw] = _mm256_fmadd_ps(
                  g, _mm256_maskload_ps(xr + iw * C, m), acc[kh * s.KW + kw]);
            }
          }
        }
      }
    }
    alignas(32) float tmp[8];
    for (int64_t t = 0; t < KK; ++t) {
      _mm256_store_ps(tmp, acc[t]);
      for (int64_t i = 0; i < rem; ++i) gw[(c0 + i) * KK + t] = tmp[i];
    }
  }
}

// Partial sums per chunk of (n, oh) rows (params.h), all
// channels at once: for each row, tap and 32-channel block, the valid output
// columns are a contiguous range, summed in registers without bounds checks.
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
