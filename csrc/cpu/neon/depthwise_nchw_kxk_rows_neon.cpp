// NEON depthwise forward for NCHW tensors, square 3x3 / 5x5 / 7x7 kernels,
// stride 1 or 2 (same along H and W), dilation 1, any padding and channel
// multiplier (the MobileNet / ConvNeXt cases). Same scheme as the AVX2
// kxk rows kernel, with vectors of 4:
//
// One work unit is one (n, out-channel) plane. Each input row the plane needs
// is copied once into a per-thread ring of zero-padded rows (for stride 2
// split into its even and odd columns), so the inner loop has no bounds
// checks, no scalar border code and no strided loads: every tap is an
// unaligned 4-float load at a compile-time offset and one FMA by lane with
// the weights held in registers (K*K taps packed 4 per q register). Rows
// above/below the image read a shared row of zeros. Each step computes 8
// output vectors (2 rows x 16 columns, 4 rows x 8 or 8 rows x 4, by the
// plane's width): 8 independent FMA chains. The last vector of a row is
// stored lane by lane when partial.
#include <vector>

#include "depthwise_neon_common.h"

namespace mnx {
namespace cpu {
namespace {

using namespace neon;

constexpr int64_t kMaxRowsOutWidth = 4096;

inline int64_t round_up4(int64_t v) { return (v + 3) / 4 * 4; }

// Columns computed per output row (a whole number of steps, <= OW + 15).
inline int64_t computed_cols(int64_t OW) { return (OW + 15) / 16 * 16; }

// Floats per ring slot: the padded row (stride 1) or its even half followed
// by its odd half (stride 2), long enough for every tap of the last vector.
inline int64_t slot_floats(int64_t K, int64_t S, int64_t OW) {
  const int64_t oc = computed_cols(OW);
  return S == 1 ? round_up4(oc + K - 1) : 2 * round_up4(oc + (K - 1) / 2);
}

// dst[j] = x[j - P] inside the row, 0 outside (stride 1).
inline void fill_row_s1(const float* x, int64_t W, int64_t P, float* dst,
                        int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const int64_t c = j - P;
    if (c >= 0 && c < W) {
      const int64_t cnt = imin(W - c, n - j);
      std::memcpy(dst + j, x + c, sizeof(float) * cnt);
      j += cnt - 1;
    } else {
      dst[j] = 0.f;
    }
  }
}

// even[i] = padded[2i], odd[i] = padded[2i + 1] with padded[j] = x[j - P]
// inside the row, 0 outside (stride 2); `half` floats each.
inline void fill_row_s2(const float* x, int64_t W, int64_t P, float* even,
                        float* odd, int64_t half) {
  int64_t i = 0;
  auto scalar = [&](int64_t k) {
    const int64_t c = 2 * k - P;
    even[k] = (c >= 0 && c < W) ? x[c] : 0.f;
    odd[k] = (c + 1 >= 0 && c + 1 < W) ? x[c + 1] : 0.f;
  };
  const int64_t v0 = (P + 1) / 2;  // first i with 2i - P >= 0
  for (; i < v0 && i < half; ++i) scalar(i);
  for (; i + 4 <= half && 2 * i - P + 7 <= W - 1; i += 4) {
    const float32x4x2_t eo = vld2q_f32(x + 2 * i - P);
    vst1q_f32(even + i, eo.val[0]);
    vst1q_f32(odd + i, eo.val[1]);
  }
  for (; i < half; ++i) scalar(i);
}

inline void store_out(float* y, int64_t o, int64_t OW, float32x4_t v) {
  if (o + 4 <= OW)
    vst1q_f32(y + o, v);
  else if (o < OW)
    store_partial(y + o, OW - o, v);
}

// Input vector for output columns [o, o + 4) and tap column kw.
template <int S>
inline float32x4_t tap_load(const float* row, int64_t half, int64_t o, int kw) {
  if (S == 1) return vld1q_f32(row + o + kw);
  return vld1q_f32(row + (kw & 1) * half + o + kw / 2);
}

// R output rows x V vectors of 4 columns per step (R * V = 8 accumulators).
template <int K, int S, int R, int V>
void forward_plane_rows(const DepthwiseShape& s, const float* xp,
                        const float* wp, float b0, float* yp, Activation act,
                        float* ring, const float* zeros, int64_t slot) {
  constexpr int NS = (R - 1) * S + K;  // input rows per step = ring slots
  constexpr int NW = (K * K + 3) / 4;  // weight registers
  float wpad[NW * 4] = {};
  for (int t = 0; t < K * K; ++t) wpad[t] = wp[t];
  float32x4_t wq[NW];
  for (int i = 0; i < NW; ++i) wq[i] = vld1q_f32(wpad + 4 * i);
  const float32x4_t bv = vdupq_n_f32(b0);
  const int64_t OW = s.OW, half = slot / 2;
  const int64_t ocols = computed_cols(OW);
  int64_t tag[NS];
  for (int i = 0; i < NS; ++i) tag[i] = -1;
  for (int64_t oh = 0; oh < s.OH; oh += R) {
    const float* rows[NS];
    for (int j = 0; j < NS; ++j) {
      const int64_t ih = oh * S - s.PH + j;
      if (ih < 0 || ih >= s.H) {
        rows[j] = zeros;
        continue;
      }
      const int64_t r = ih % NS;
      float* dst = ring + r * slot;
      if (tag[r] != ih) {
        if (S == 1)
          fill_row_s1(xp + ih * s.W, s.W, s.PW, dst, slot);
        else
          fill_row_s2(xp + ih * s.W, s.W, s.PW, dst, dst + half, half);
        tag[r] = ih;
      }
      rows[j] = dst;
    }
    const int rmax = static_cast<int>(imin(R, s.OH - oh));
    for (int64_t o = 0; o < ocols; o += 4 * V) {
      if (o >= OW) break;
      float32x4_t acc[R][V];
      for (int r = 0; r < R; ++r)
        for (int v = 0; v < V; ++v) acc[r][v] = bv;
#pragma GCC unroll 7
      for (int kh = 0; kh < K; ++kh) {
#pragma GCC unroll 7
        for (int kw = 0; kw < K; ++kw) {
          const int t = kh * K + kw;
          for (int r = 0; r < R; ++r)
            for (int v = 0; v < V; ++v)
              acc[r][v] = fma_lane(acc[r][v],
                                   tap_load<S>(rows[r * S + kh], half, o + 4 * v, kw),
                                   wq[t / 4], t % 4);
        }
      }
      for (int r = 0; r < rmax; ++r) {
        float* yr = yp + (oh + r) * OW;
        for (int v = 0; v < V; ++v) store_out(yr, o + 4 * v, OW, activate<VecNeon>(acc[r][v], act));
      }
    }
  }
}

// Rows per step for a plane of this width (see forward_plane_rows).
inline int rows_per_step(int64_t OW) {
  const int64_t nvec = (OW + 3) / 4;
  return nvec >= 3 ? 2 : nvec == 2 ? 4 : 8;
}

template <int K, int S>
void forward_units(const DepthwiseShape& s, const float* x, const float* w,
                   const float* bias, float* y, Activation act, int64_t begin,
                   int64_t end, float* ring, const float* zeros,
                   int64_t slot) {
  const int64_t Co = s.C_out();
  const int R = rows_per_step(s.OW);
  for (int64_t u = begin; u < end; ++u) {
    const int64_t n = u / Co, oc = u % Co, c = oc / s.mult;
    const float* xp = x + (n * s.C + c) * s.H * s.W;
    const float* wp = w + oc * K * K;
    const float b0 = bias ? bias[oc] : 0.f;
    float* yp = y + u * s.OH * s.OW;
    if (R == 2)
      forward_plane_rows<K, S, 2, 4>(s, xp, wp, b0, yp, act, ring, zeros, slot);
    else if (R == 4)
      forward_plane_rows<K, S, 4, 2>(s, xp, wp, b0, yp, act, ring, zeros, slot);
    else
      forward_plane_rows<K, S, 8, 1>(s, xp, wp, b0, yp, act, ring, zeros, slot);
  }
}

}  // namespace

bool depthwise_forward_nchw_kxk_rows_neon_supported(const DepthwiseShape& s) {
  return s.layout == Layout::NCHW && s.KH == s.KW &&
         (s.KH == 3 || s.KH == 5 || s.KH == 7) && s.DH == 1 && s.DW == 1 &&
         s.SH == s.SW && (s.SH == 1 || s.SH == 2) && s.OW >= 1 &&
         s.OW <= kMaxRowsOutWidth;
}

bool depthwise_forward_nchw_kxk_rows_neon(const DepthwiseShape& s,
                                          const float* x, const float* w,
                                          const float* bias, float* y,
                                          Activation act, int64_t begin,
                                          int64_t end) {
  const int64_t K = s.KH, S = s.SH, slot = slot_floats(K, S, s.OW);
  const int64_t nslots = (rows_per_step(s.OW) - 1) * S + K;
  // the ring plus one slot of zeros; reused across calls on this thread
  thread_local std::vector<float> buf;
  try {
    if (static_cast<int64_t>(buf.size()) < (nslots + 1) * slot)
      buf.assign((nslots + 1) * slot, 0.f);
  } catch (...) {
    return false;
  }
  float* ring = buf.data();
  float* zeros = ring + nslots * slot;
  std::memset(zeros, 0, sizeof(float) * slot);
#define MNX_ROWS_CASE(KK, SS)                                                \
  if (K == KK && S == SS) {                                                  \
    forward_units<KK, SS>(s, x, w, bias, y, act, begin, end, ring, zeros,    \
                          slot);                                             \
    return true;                                                             \
  }
  MNX_ROWS_CASE(3, 1)
  MNX_ROWS_CASE(3, 2)
  MNX_ROWS_CASE(5, 1)
  MNX_ROWS_CASE(5, 2)
  MNX_ROWS_CASE(7, 1)
  MNX_ROWS_CASE(7, 2)
#undef MNX_ROWS_CASE
  return false;
}

}  // namespace cpu
}  // namespace mnx
