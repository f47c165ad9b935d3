// AVX2/FMA depthwise kernels for NCHW tensors, square 3x3 / 5x5 / 7x7
// kernels, stride 1 or 2 (same along H and W), dilation 1, multiplier 1,
// computed on blocks of 8 channels with vectors along the channels ("c8"):
// the forward, grad_input (stride 1 or 2, padding <= K-1, as a flipped
// correlation of the zero-dilated grad_output) and grad_weight (at the end
// of the file).
//
// Why: the row-ring kernel (generic/depthwise_nchw_kxk_rows.h) vectorises
// along W and needs one unaligned input load per FMA (a weight broadcast
// serves 8 FMAs); at 5x5 and 7x7 that is load-bound, and on narrow planes
// (28 or 14 columns) part of every vector is padding. Here 8 channel planes are
// interleaved row by row into a per-thread ring of K zero-padded rows laid
// out [column][8 channels] (an 8x8 transpose per 8 columns), and each output
// row is computed by the NHWC pixel-group micro-kernel (dwkxk_group of
// generic/depthwise_nhwc_kxk.h at C = 8: per tap row the K weight vectors
// stay in registers and every input column is loaded once for all the
// (pixel, tap) pairs that read it, well under one load per FMA), into a
// row buffer that is transposed back to the 8 output planes. Rows of taps
// above or below the image are skipped; columns outside it read the ring's
// zero padding, so there is no border code.
//
// One work unit is one (n, channel) plane as everywhere in NCHW; a range of
// units is processed in blocks of up to 8 consecutive channels of one image
// (a partial block fills the unused lanes with zeros and stores only its
// planes). Every output element is computed from the same taps in the same
// order whatever the block, so results do not depend on how units are split.
#include <cstring>
#include <vector>

#include "depthwise_avx2_common.h"
#include "../generic/depthwise_nhwc_kxk.h"

namespace mnx {
namespace cpu {
namespace {

using namespace avx2;

constexpr int64_t kMaxC8OutWidth = 4096;

// dst[iw * D * 8 + i] = plane_i[iw] for iw in [0, W), i < nb (planes
// `plane` floats apart, starting at src); lanes i >= nb are 0. Columns in
// between (D > 1: the zeros inserted by a transposed convolution) and the
// padding columns are zeroed by the caller once per slot.
inline void interleave_row(const float* src, int64_t plane, int64_t nb, int64_t W,
                           int64_t D, float* dst) {
  int64_t iw = 0;
  if (nb == 8) {
    for (; iw + 8 <= W; iw += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * plane + iw);
      VecAvx2::transpose8(r);
      for (int j = 0; j < 8; ++j) _mm256_store_ps(dst + (iw + j) * D * 8, r[j]);
    }
  }
  for (; iw < W; ++iw)
    for (int64_t i = 0; i < 8; ++i) dst[iw * D * 8 + i] = i < nb ? src[i * plane + iw] : 0.f;
}

// plane_i[ow] = src[ow * 8 + i] for ow in [0, OW), i < nb (planes `plane`
// floats apart, starting at dst).
inline void deinterleave_row(const float* src, int64_t nb, int64_t OW, float* dst,
                             int64_t plane) {
  int64_t ow = 0;
  if (nb == 8) {
    for (; ow + 8 <= OW; ow += 8) {
      __m256 r[8];
      for (int j = 0; j < 8; ++j) r[j] = _mm256_load_ps(src + (ow + j) * 8);
      VecAvx2::transpose8(r);
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(dst + i * plane + ow, r[i]);
    }
  }
  if (nb == 8 && ow < OW) {
    // the last 1-7 columns: one more transpose and masked stores (on 7- and
    // 14-column planes at batch 1, 10-20% faster than element by element)
    const int rem = static_cast<int>(OW - ow);
    __m256 r[8];
    for (int j = 0; j < 8; ++j) r[j] = j < rem ? _mm256_load_ps(src + (ow + j) * 8) : _mm256_setzero_ps();
    VecAvx2::transpose8(r);
    for (int i = 0; i < 8; ++i) VecAvx2::store_n(dst + i * plane + ow, r[i], rem);
    return;
  }
  for (; ow < OW; ++ow)
    for (int64_t i = 0; i < nb; ++i) dst[i * plane + ow] = src[ow * 8 + i];
}

struct Scratch {
  float* ring;   // K slots of `slot` floats: padded input rows [col][8]
  float* yrow;   // one output row [OW][8]
  float* wt;     // tap-major weights of the block [K*K][8]
  float* bias;   // [8]
  int64_t slot;  // floats per ring slot
};

// A stride-S correlation of K x K taps over C planes of Hin x Win, each
// zero-dilated by D (D - 1 zeros between neighbours: a transposed
// convolution's input) and padded by PH / PW, giving Hout x Wout planes.
// The forward is D = 1; grad_input is the stride-1 correlation of
// grad_output dilated by the forward stride, with the taps flipped.
struct Corr {
  int64_t C, Hin, Win, Hout, Wout, PH, PW, D;
  bool flip;  // taps in reverse order (w[K*K - 1 - t])
};

template <int K, int S>
void forward_block(const Corr& g, const float* x, const float* w,
                   const float* bias, float* y, Activation act, int64_t n,
                   int64_t c0, int64_t nb, const Scratch& sc) {
  const int64_t HW = g.Hin * g.Win, OHW = g.Hout * g.Wout, OW = g.Wout;
  const int64_t last = (g.Hin - 1) * g.D;  // last dilated input row
  for (int t = 0; t < K * K; ++t) {
    const int src = g.flip ? K * K - 1 - t : t;
    for (int64_t i = 0; i < 8; ++i) sc.wt[t * 8 + i] = i < nb ? w[(c0 + i) * K * K + src] : 0.f;
  }
  for (int64_t i = 0; i < 8; ++i) sc.bias[i] = (bias && i < nb) ? bias[c0 + i] : 0.f;
  const float* xb = x + (n * g.C + c0) * HW;
  float* yb = y + (n * g.C + c0) * OHW;
  int64_t tag[K];
  for (int i = 0; i < K; ++i) tag[i] = -1;
  for (int64_t oh = 0; oh < g.Hout; ++oh) {
    const float* rows[K];
    for (int kh = 0; kh < K; ++kh) {
      const int64_t ih = dilated_row(oh * S - g.PH + kh, last, g.D);
      if (ih < 0) {
        rows[kh] = nullptr;
        continue;
      }
      float* dst = sc.ring + (ih % K) * sc.slot;
      if (tag[ih % K] != ih) {
        interleave_row(xb + ih * g.Win, HW, nb, g.Win, g.D, dst + g.PW * 8);
        tag[ih % K] = ih;
      }
      rows[kh] = dst;
    }
    // Groups of 8 (or 4) pixels; the last group is shifted left to end at
    // OW, recomputing a few pixels (same taps, same order: the same values)
    // rather than running narrow groups whose few FMA chains stall on latency.
    if (OW >= 8) {
      for (int64_t ow = 0;; ow += 8) {
        const int64_t o = imin(ow, OW - 8);
        dwkxk_group<VecAvx2, K, S, 8, false>(rows, 8, 0, 8, o * S, sc.wt,
                                             sc.bias, sc.yrow + o * 8, act);
        if (o + 8 >= OW) break;
      }
    } else if (OW >= 4) {
      dwkxk_group<VecAvx2, K, S, 4, false>(rows, 8, 0, 8, 0, sc.wt,
                                           sc.bias, sc.yrow, act);
      const int64_t o = OW - 4;
      dwkxk_group<VecAvx2, K, S, 4, false>(rows, 8, 0, 8, o * S, sc.wt,
                                           sc.bias, sc.yrow + o * 8, act);
    } else {
      for (int64_t ow = 0; ow < OW; ++ow)
        dwkxk_group<VecAvx2, K, S, 1, false>(rows, 8, 0, 8, ow * S, sc.wt,
                                             sc.bias, sc.yrow + ow * 8, act);
    }
    deinterleave_row(sc.yrow, nb, OW, yb + oh * OW, OHW);
  }
}

template <int K, int S>
void forward_units(const Corr& g, const float* x, const float* w,
                   const float* bias, float* y, Activation act, int64_t begin,
                   int64_t end, const Scratch& sc) {
  const int64_t C = g.C;
  for (int64_t u = begin; u < end;) {
    const int64_t n = u / C, c0 = u % C;
    const int64_t nb = imin(imin(8, end - u), C - c0);
    forward_block<K, S>(g, x, w, bias, y, act, n, c0, nb, sc);
    u += nb;
  }
}

// grad_weight of one block of nb (<= 8) channels over the whole batch:
// gw[c][kh][kw] = sum over n, oh, ow of gy[n][c][oh][ow] * x[n][c][oh*S - PH
// + kh][ow*S - PW + kw], taps outside the image skipped (not multiplied by
// the zero padding, so a NaN in grad_output next to the border stays out,
// as in the reference). Lanes are channels, so no horizontal sums: per
// (output row, tap row) K register accumulators (two sets of K for K <= 5,
// to keep 8+ FMA chains in flight) run over the row, then are added to the
// K x K block accumulators. The order of every sum is fixed by the shape.
template <int K, int S>
void grad_weight_block(const DepthwiseShape& s, const float* gy, const float* x,
                       float* gw, int64_t c0, int64_t nb, const Scratch& sc) {
  constexpr int U = K <= 5 ? 2 : 1;  // accumulator sets along the row
  const int64_t HW = s.H * s.W, OHW = s.OH * s.OW, OW = s.OW;
  // output columns whose K taps are all inside the image
  const int64_t lo = imin((s.PW + S - 1) / S, OW);
  const int64_t hi = imax(lo, imin(OW, s.W - K + s.PW >= 0 ? (s.W - K + s.PW) / S + 1 : 0));
  __m256 tot[K * K];
  for (int t = 0; t < K * K; ++t) tot[t] = _mm256_setzero_ps();
  for (int64_t n = 0; n < s.N; ++n) {
    const float* xb = x + (n * s.C + c0) * HW;
    const float* gb = gy + (n * s.C + c0) * OHW;
    int64_t tag[K];
    for (int i = 0; i < K; ++i) tag[i] = -1;
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      interleave_row(gb + oh * OW, OHW, nb, OW, 1, sc.yrow);
      for (int kh = 0; kh < K; ++kh) {
        const int64_t ih = oh * S - s.PH + kh;
        if (ih < 0 || ih >= s.H) continue;
        float* row = sc.ring + (ih % K) * sc.slot;
        if (tag[ih % K] != ih) {
          interleave_row(xb + ih * s.W, HW, nb, s.W, 1, row + s.PW * 8);
          tag[ih % K] = ih;
        }
        __m256 a[U][K];
        for (int q = 0; q < U; ++q)
          for (int kw = 0; kw < K; ++kw) a[q][kw] = _mm256_setzero_ps();
        // border columns: taps checked
        auto border = [&](int64_t ow) {
          const __m256 g = _mm256_load_ps(sc.yrow + ow * 8);
          for (int kw = 0; kw < K; ++kw) {
            const int64_t iw = ow * S - s.PW + kw;
            if (iw < 0 || iw >= s.W) continue;
            a[0][kw] = _mm256_fmadd_ps(g, _mm256_load_ps(row + (ow * S + kw) * 8), a[0][kw]);
          }
        };
        for (int64_t ow = 0; ow < lo; ++ow) border(ow);
        int64_t ow = lo;
        for (; ow + U <= hi; ow += U) {
#pragma GCC unroll 2
          for (int q = 0; q < U; ++q) {
            const __m256 g = _mm256_load_ps(sc.yrow + (ow + q) * 8);
            const float* p = row + (ow + q) * S * 8;
#pragma GCC unroll 7
            for (int kw = 0; kw < K; ++kw)
              a[q][kw] = _mm256_fmadd_ps(g, _mm256_load_ps(p + kw * 8), a[q][kw]);
          }
        }
        for (; ow < hi; ++ow) {
          const __m256 g = _mm256_load_ps(sc.yrow + ow * 8);
          const float* p = row + ow * S * 8;
          for (int kw = 0; kw < K; ++kw)
            a[0][kw] = _mm256_fmadd_ps(g, _mm256_load_ps(p + kw * 8), a[0][kw]);
        }
        for (; ow < OW; ++ow) border(ow);
        for (int kw = 0; kw < K; ++kw) {
          __m256 v = a[0][kw];
          for (int q = 1; q < U; ++q) v = _mm256_add_ps(v, a[q][kw]);
          tot[kh * K + kw] = _mm256_add_ps(tot[kh * K + kw], v);
        }
      }
    }
  }
  alignas(32) float lane[8];
  for (int t = 0; t < K * K; ++t) {
    _mm256_store_ps(lane, tot[t]);
    for (int64_t i = 0; i < nb; ++i) gw[(c0 + i) * K * K + t] = lane[i];
  }
}

// Per-thread scratch for `K` ring rows of `cols` padded columns, a row of
// `row` pixels and a K x K weight block; null if it could not be had.
bool get_scratch(int64_t K, int64_t cols, int64_t row, Scratch* sc) {
  const int64_t slot = cols * 8;
  const int64_t need = K * slot + row * 8 + K * K * 8 + 8;
  // reused across calls on this thread; 32-byte aligned for the row stores
  thread_local std::vector<__m256> buf;
  try {
    if (static_cast<int64_t>(buf.size()) * 8 < need) buf.resize((need + 7) / 8);
  } catch (...) {  // coverage: unreachable (only on std::bad_alloc)
    return false;  // coverage: unreachable
  }  // coverage: unreachable
  float* base = reinterpret_cast<float*>(buf.data());
  *sc = Scratch{base, base + K * slot, base + K * slot + row * 8,
                base + K * slot + row * 8 + K * K * 8, slot};
  // zero padding columns (and lanes) of every slot; interleave_row only
  // writes the image columns [PW, PW + W)
  std::memset(sc->ring, 0, sizeof(float) * K * slot);
  return true;
}

}  // namespace

bool depthwise_forward_nchw_c8_kxk_avx2_supported(const DepthwiseShape& s) {
  return s.layout == Layout::NCHW && s.mult == 1 && s.KH == s.KW &&
         (s.KH == 3 || s.KH == 5 || s.KH == 7) && s.DH == 1 && s.DW == 1 &&
         s.SH == s.SW && (s.SH == 1 || s.SH == 2) && s.OW >= 1 &&
         s.OW <= kMaxC8OutWidth;
}

namespace {

// Runs the correlation `g` (K x K taps, stride S) over units [begin, end)
// of (n, c) output planes; false (nothing written) without scratch.
bool run_corr(const Corr& g, int64_t K, int64_t S, const float* x,
              const float* w, const float* bias, float* y, Activation act,
              int64_t begin, int64_t end) {
  // padded columns read: (Wout - 1) * S + K, at least the interleaved row
  Scratch sc;
  if (!get_scratch(K, imax((g.Wout - 1) * S + K, g.PW + (g.Win - 1) * g.D + 1), g.Wout, &sc))
    return false;
#define MNX_C8_CASE(KK, SS)                                                  \
  if (K == KK && S == SS) {                                                  \
    forward_units<KK, SS>(g, x, w, bias, y, act, begin, end, sc);            \
    return true;                                                             \
  }
  MNX_C8_CASE(3, 1)
  MNX_C8_CASE(3, 2)
  MNX_C8_CASE(5, 1)
  MNX_C8_CASE(5, 2)
  MNX_C8_CASE(7, 1)
  MNX_C8_CASE(7, 2)
#undef MNX_C8_CASE
  return false;  // coverage: unreachable (the supported() checks come first)
}

}  // namespace

// Returns false (nothing written) if the per-thread scratch could not be had.
bool depthwise_forward_nchw_c8_kxk_avx2(const DepthwiseShape& s, const float* x,
                                        const float* w, const float* bias,
                                        float* y, Activation act, int64_t begin,
                                        int64_t end) {
  const Corr g{s.C, s.H, s.W, s.OH, s.OW, s.PH, s.PW, 1, false};
  return run_corr(g, s.KH, s.SH, x, w, bias, y, act, begin, end);
}

bool depthwise_grad_input_nchw_c8_kxk_avx2_supported(const DepthwiseShape& s) {
  return depthwise_forward_nchw_c8_kxk_avx2_supported(s) && s.PH <= s.KH - 1 &&
         s.PW <= s.KW - 1 && s.W <= kMaxC8OutWidth;
}

// grad_input[ih][iw] = sum over taps of w[kh][kw] * grad_output[oh][ow] with
// ih = oh*S - PH + kh: the stride-1 correlation of grad_output zero-dilated
// by S, padded by K-1-P, with the taps flipped. Units: (n, c) planes of
// grad_input.
bool depthwise_grad_input_nchw_c8_kxk_avx2(const DepthwiseShape& s,
                                           const float* gy, const float* w,
                                           float* gx, int64_t begin,
                                           int64_t end) {
  const int64_t K = s.KH;
  const Corr g{s.C, s.OH, s.OW, s.H, s.W, K - 1 - s.PH, K - 1 - s.PW, s.SH, true};
  return run_corr(g, K, 1, gy, w, nullptr, gx, Activation::None, begin, end);
}

// Units are blocks of kDepthwiseWeightChannelBlock (8) channels, as in every
// grad_weight kernel. Returns false (nothing written) without scratch.
bool depthwise_grad_weight_nchw_c8_kxk_avx2(const DepthwiseShape& s,
                                            const float* gy, const float* x,
                                            float* gw, int64_t begin,
                                            int64_t end) {
  static_assert(kDepthwiseWeightChannelBlock == 8, "one 8-lane block per unit");
  const int64_t K = s.KH, S = s.SH;
  Scratch sc;
  if (!get_scratch(K, imax((s.OW - 1) * S + K, s.PW + s.W), s.OW, &sc)) return false;
  for (int64_t u = begin; u < end; ++u) {
    const int64_t c0 = u * 8, nb = imin(8, s.C - c0);
#define MNX_C8_GW_CASE(KK, SS) \
    if (K == KK && S == SS) grad_weight_block<KK, SS>(s, gy, x, gw, c0, nb, sc);
    MNX_C8_GW_CASE(3, 1)
    MNX_C8_GW_CASE(3, 2)
    MNX_C8_GW_CASE(5, 1)
    MNX_C8_GW_CASE(5, 2)
    MNX_C8_GW_CASE(7, 1)
    MNX_C8_GW_CASE(7, 2)
#undef MNX_C8_GW_CASE
  }
  return true;
}

}  // namespace cpu
}  // namespace mnx
