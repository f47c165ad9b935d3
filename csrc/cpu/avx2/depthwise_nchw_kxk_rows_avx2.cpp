// AVX2/FMA depthwise forward for NCHW tensors, square 3x3 / 5x5 / 7x7
// kernels, stride 1 or 2 (same along H and W), dilation 1, any padding and
// channel multiplier. Multiplier 1 (the MobileNet / ConvNeXt cases) goes to
// the c8 kernels (depthwise_nchw_c8_kxk_avx2.cpp) first, so this runs
// multiplier > 1, and multiplier 1 only when the c8 scratch is not had.
//
// One work unit is one (n, out-channel) plane. Each input row the plane needs
// is copied once into a small per-thread ring of (R - 1) * S + K zero-padded
// rows for R output rows per step (for stride 2 split into its even and odd
// columns), so the inner loop has no bounds checks, no scalar border code
// and no strided loads: every tap is an unaligned 8-float load at a
// compile-time offset and one FMA with a weight broadcast held in a
// register. Rows above and below the image read a shared row of zeros.
// Each step computes 8 output vectors (2 rows x 32 columns, 4 rows x 16 or
// 8 rows x 8, by the plane's width) so that 8 independent FMA chains hide
// the FMA latency; the last vector of a row is stored under a lane mask.
#include <cstring>
#include <vector>

#include "depthwise_avx2_common.h"

namespace mnx {
namespace cpu {
namespace {

using namespace avx2;

constexpr int64_t kMaxRowsOutWidth = 4096;

inline int64_t round_up8(int64_t v) { return (v + 7) / 8 * 8; }

// Floats per ring slot: the padded row (stride 1) or its even half followed
// by its odd half (stride 2), each long enough for every tap of the last
// (possibly partial) output vector.
inline int64_t slot_floats(int64_t K, int64_t S, int64_t OW) {
  const int64_t owv = (OW + 31) / 32 * 32;  // columns computed, see forward_plane_rows
  return S == 1 ? round_up8(owv + K - 1) : 2 * round_up8(owv + (K - 1) / 2);
}

// dst[j] = x[j - P] inside the row, 0 outside (stride 1).
inline void fill_row_s1(const float* x, int64_t W, int64_t P, float* dst,
                        int64_t n) {
  const int64_t lead = imin(P, n);
  std::memset(dst, 0, sizeof(float) * lead);
  const int64_t cnt = imin(W, n - lead);
  if (cnt > 0) std::memcpy(dst + lead, x, sizeof(float) * cnt);
  const int64_t done = lead + (cnt > 0 ? cnt : 0);
  if (n > done) std::memset(dst + done, 0, sizeof(float) * (n - done));
}

// even[i] = padded[2i], odd[i] = padded[2i + 1] with padded[j] = x[j - P]
// inside the row and 0 outside (stride 2); `half` floats each.
inline void fill_row_s2(const float* x, int64_t W, int64_t P, float* even,
                        float* odd, int64_t half) {
  // i with 2i - P >= 0 and 2i - P + 15 <= W - 1 can use full vectors
  const int64_t v0 = (P + 1) / 2;
  int64_t i = 0;
  auto scalar = [&](int64_t k) {
    const int64_t c = 2 * k - P;
    even[k] = (c >= 0 && c < W) ? x[c] : 0.f;
    odd[k] = (c + 1 >= 0 && c + 1 < W) ? x[c + 1] : 0.f;
  };
  for (; i < v0 && i < half; ++i) scalar(i);
  for (; i + 8 <= half && 2 * i - P + 15 <= W - 1; i += 8) {
    const float* p = x + 2 * i - P;
    const __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
    const __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    const __m256 o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    _mm256_storeu_ps(even + i, _mm256_castpd_ps(_mm256_permute4x64_pd(
                                   _mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0))));
    _mm256_storeu_ps(odd + i, _mm256_castpd_ps(_mm256_permute4x64_pd(
                                  _mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0))));
  }
  for (; i < half; ++i) scalar(i);
}

inline void store_out(float* y, int64_t o, int64_t OW, __m256 v) {
  if (o + 8 <= OW)
    _mm256_storeu_ps(y + o, v);
  else if (o < OW)
    _mm256_maskstore_ps(y + o, tail_mask(OW - o), v);
}

// Input vector for output columns [o, o + 8) and tap column kw.
template <int K, int S>
inline __m256 tap_load(const float* row, int64_t half, int64_t o, int kw) {
  if (S == 1) return _mm256_loadu_ps(row + o + kw);
  return _mm256_loadu_ps(row + (kw & 1) * half + o + kw / 2);
}

// R output rows x V vectors of 8 columns per step: R * V = 8 independent
// accumulators, enough to hide the FMA latency (4 cycles, 2 per cycle).
// Narrow planes take more rows per step, wide ones more columns.
template <int K, int S, int R, int V>
void forward_plane_rows(const DepthwiseShape& s, const float* xp,
                        const float* wp, float b0, float* yp, Activation act,
                        float* ring, const float* zeros, int64_t slot) {
  constexpr int NS = (R - 1) * S + K;  // input rows per step = ring slots
  const __m256 bv = _mm256_set1_ps(b0);
  const int64_t OW = s.OW, half = slot / 2;
  const int64_t nvec = (OW + 7) / 8, ocols = (nvec + V - 1) / V * V * 8;
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
    for (int64_t o = 0; o < ocols; o += 8 * V) {
      __m256 acc[R][V];
      for (int r = 0; r < R; ++r)
        for (int v = 0; v < V; ++v) acc[r][v] = bv;
      for (int kh = 0; kh < K; ++kh) {
        for (int kw = 0; kw < K; ++kw) {
          const __m256 w = _mm256_broadcast_ss(wp + kh * K + kw);
          for (int r = 0; r < R; ++r)
            for (int v = 0; v < V; ++v)
              acc[r][v] = _mm256_fmadd_ps(
                  tap_load<K, S>(rows[r * S + kh], half, o + 8 * v, kw), w,
                  acc[r][v]);
        }
      }
      for (int r = 0; r < R; ++r) {
        if (oh + r >= s.OH) break;
        float* yr = yp + (oh + r) * OW;
        for (int v = 0; v < V; ++v) store_out(yr, o + 8 * v, OW, activate<VecAvx2>(acc[r][v], act));
      }
    }
  }
}

// Rows per step for a plane of this width (see forward_plane_rows).
inline int rows_per_step(int64_t OW) {
  const int64_t nvec = (OW + 7) / 8;
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

bool depthwise_forward_nchw_kxk_rows_avx2_supported(const DepthwiseShape& s) {
  return s.layout == Layout::NCHW && s.KH == s.KW &&
         (s.KH == 3 || s.KH == 5 || s.KH == 7) && s.DH == 1 && s.DW == 1 &&
         s.SH == s.SW && (s.SH == 1 || s.SH == 2) && s.OW >= 1 &&
         s.OW <= kMaxRowsOutWidth;
}

// Returns false (nothing written) if the per-thread row ring could not be had.
bool depthwise_forward_nchw_kxk_rows_avx2(const DepthwiseShape& s,
                                          const float* x, const float* w,
                                          const float* bias, float* y,
                                          Activation act, int64_t begin,
                                          int64_t end) {
  const int64_t K = s.KH, S = s.SH, slot = slot_floats(K, S, s.OW);
  const int64_t nslots = (rows_per_step(s.OW) - 1) * S + K;
  // the ring plus one slot of zeros; reused across calls on this thread.
  thread_local std::vector<float> buf;
  try {
    if (static_cast<int64_t>(buf.size()) < (nslots + 1) * slot)
      buf.assign((nslots + 1) * slot, 0.f);
  } catch (...) {  // coverage: unreachable (only on std::bad_alloc)
    return false;  // coverage: unreachable
  }  // coverage: unreachable
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
