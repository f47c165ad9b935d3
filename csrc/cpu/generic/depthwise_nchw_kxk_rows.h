// The NCHW depthwise forward "row ring" kernel (DepthwisePath::nchw_kxk_rows),
// written once over the vector layer (vec.h) and instantiated per ISA by the
// family (depthwise_family.h) with the ISA's way of holding the weights
// (Isa::RowTaps: BroadcastTaps below on AVX2, LaneTaps on NEON).
// Square 3x3 / 5x5 / 7x7 kernels, stride 1 or 2 (same along H and W),
// dilation 1, any padding and channel multiplier.
//
// One work unit is one (n, out-channel) plane. Each input row the plane needs
// is copied once into a small per-thread ring of (R - 1) * S + K zero-padded
// rows for R output rows per step (for stride 2 split into its even and odd
// columns), so the inner loop has no bounds checks, no scalar border code
// and no strided loads: every tap is an unaligned full-vector load at a
// compile-time offset and one FMA with the tap's weight. Rows above and below
// the image read a shared row of zeros. Each step computes 8 output vectors
// (2 rows x 4 vectors, 4 rows x 2 or 8 rows x 1, by the plane's width) so
// that 8 independent FMA chains hide the FMA latency; the last vector of a
// row is stored under a lane mask (V::store_n).
//
// How a tap's weight meets the FMA is the ISA's choice, a Taps<V, K> class
// built from the plane's K*K weights: at(t) the weight's operand, fma(at(t),
// x, acc) = x * w[t] + acc:
// BroadcastTaps (a broadcast per tap; AVX2) or the ISA's own (NEON: weights
// packed 4 per register, FMA by lane). Every output is its taps' FMAs in
// (kh, kw) order whatever the ISA, width or blocking.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "../cpu_kernels.h"
#include "../vec/vec.h"

// Taps whose fma needs a compile-time tap index (NEON's FMA by lane) need
// the tap loops unrolled fully: the including TU then defines
// MNX_ROWS_FULL_UNROLL. Elsewhere the compiler chooses (AVX2: a full unroll
// of the 7x7 loops is slower).
#ifdef MNX_ROWS_FULL_UNROLL
#define MNX_ROWS_UNROLL_TAPS _Pragma("GCC unroll 7")
#else
#define MNX_ROWS_UNROLL_TAPS
#endif

namespace mnx {
namespace cpu {
namespace {  // internal linkage: see vec.h
namespace dw_rows {

constexpr int64_t kMaxRowsOutWidth = 4096;

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

template <class V>
inline int64_t round_up_width(int64_t v) {
  return (v + V::width - 1) / V::width * V::width;
}

// Floats per ring slot: the padded row (stride 1) or its even half followed
// by its odd half (stride 2), each long enough for every tap of the last
// (possibly partial) step of up to 4 vectors.
template <class V>
inline int64_t slot_floats(int64_t K, int64_t S, int64_t OW) {
  const int64_t owv = (OW + 4 * V::width - 1) / (4 * V::width) * (4 * V::width);
  return S == 1 ? round_up_width<V>(owv + K - 1) : 2 * round_up_width<V>(owv + (K - 1) / 2);
}

// dst[j] = x[j - P] inside the row, 0 outside (stride 1).
inline void fill_row_s1(const float* x, int64_t W, int64_t P, float* dst, int64_t n) {
  const int64_t lead = imin(P, n);
  std::memset(dst, 0, sizeof(float) * lead);
  const int64_t cnt = imin(W, n - lead);
  if (cnt > 0) std::memcpy(dst + lead, x, sizeof(float) * cnt);
  const int64_t done = lead + (cnt > 0 ? cnt : 0);
  if (n > done) std::memset(dst + done, 0, sizeof(float) * (n - done));
}

// even[i] = padded[2i], odd[i] = padded[2i + 1] with padded[j] = x[j - P]
// inside the row and 0 outside (stride 2); `half` floats each.
template <class V>
inline void fill_row_s2(const float* x, int64_t W, int64_t P, float* even, float* odd,
                        int64_t half) {
  constexpr int64_t L = V::width;
  // i with 2i - P >= 0 and 2i - P + 2L-1 <= W - 1 can use full vectors
  const int64_t v0 = (P + 1) / 2;
  int64_t i = 0;
  auto scalar = [&](int64_t k) {
    const int64_t c = 2 * k - P;
    even[k] = (c >= 0 && c < W) ? x[c] : 0.f;
    odd[k] = (c + 1 >= 0 && c + 1 < W) ? x[c + 1] : 0.f;
  };
  for (; i < v0 && i < half; ++i) scalar(i);
  for (; i + L <= half && 2 * i - P + 2 * L - 1 <= W - 1; i += L) {
    typename V::reg e, o;
    V::load_even_odd(x + 2 * i - P, e, o);
    V::store(even + i, e);
    V::store(odd + i, o);
  }
  // from i = ceil((W + P) / 2) on, 2i - P >= W: both halves are padding
  const int64_t z = imin((W + P + 1) / 2, half);
  for (; i < z; ++i) scalar(i);
  if (i < half) {
    std::memset(even + i, 0, sizeof(float) * (half - i));
    std::memset(odd + i, 0, sizeof(float) * (half - i));
  }
}

// The weight of tap t broadcast to a register (at), once per tap and step.
template <class V, int K>
struct BroadcastTaps {
  using W = typename V::reg;
  const float* wp;
  explicit BroadcastTaps(const float* w) : wp(w) {}
  W at(int t) const { return V::set1(wp[t]); }
  static typename V::reg fma(W w, typename V::reg x, typename V::reg acc) { return V::fma(x, w, acc); }
};

// R output rows x NV vectors per step: R * NV = 8 independent accumulators.
template <class V, template <class, int> class Taps, int K, int S, int R, int NV>
void forward_plane_rows(const DepthwiseShape& s, const float* xp, const float* wp,
                        float b0, float* yp, Activation act, float* ring,
                        const float* zeros, int64_t slot) {
  using Reg = typename V::reg;
  constexpr int L = V::width;
  constexpr int NS = (R - 1) * S + K;  // input rows per step = ring slots
  const Taps<V, K> taps(wp);
  const Reg bv = V::set1(b0);
  const int64_t OW = s.OW, half = slot / 2;
  const int64_t nvec = (OW + L - 1) / L, ocols = (nvec + NV - 1) / NV * NV * L;
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
          fill_row_s2<V>(xp + ih * s.W, s.W, s.PW, dst, dst + half, half);
        tag[r] = ih;
      }
      rows[j] = dst;
    }
    for (int64_t o = 0; o < ocols; o += L * NV) {
      Reg acc[R][NV];
      for (int r = 0; r < R; ++r)
        for (int v = 0; v < NV; ++v) acc[r][v] = bv;
      MNX_ROWS_UNROLL_TAPS
      for (int kh = 0; kh < K; ++kh) {
        MNX_ROWS_UNROLL_TAPS
        for (int kw = 0; kw < K; ++kw) {
          const auto wt = taps.at(kh * K + kw);
          for (int r = 0; r < R; ++r)
            for (int v = 0; v < NV; ++v) {
              // input vector for output columns [o + L*v, +L) and tap column kw
              const float* row = rows[r * S + kh];
              const float* p = S == 1 ? row + o + L * v + kw
                                      : row + (kw & 1) * half + o + L * v + kw / 2;
              acc[r][v] = taps.fma(wt, V::load(p), acc[r][v]);
            }
        }
      }
      for (int r = 0; r < R; ++r) {
        if (oh + r >= s.OH) break;
        float* yr = yp + (oh + r) * OW;
        for (int v = 0; v < NV; ++v) {
          const int64_t oc = o + L * v;
          const Reg a = activate<V>(acc[r][v], act);
          if (oc + L <= OW)
            V::store(yr + oc, a);
          else if (oc < OW)
            V::store_n(yr + oc, a, static_cast<int>(OW - oc));
        }
      }
    }
  }
}

// Rows per step for a plane of this width (see forward_plane_rows).
template <class V>
inline int rows_per_step(int64_t OW) {
  const int64_t nvec = (OW + V::width - 1) / V::width;
  return nvec >= 3 ? 2 : nvec == 2 ? 4 : 8;
}

template <class V, template <class, int> class Taps, int K, int S>
void forward_units(const DepthwiseShape& s, const float* x, const float* w,
                   const float* bias, float* y, Activation act, int64_t begin,
                   int64_t end, float* ring, const float* zeros, int64_t slot) {
  const int64_t Co = s.C_out();
  const int R = rows_per_step<V>(s.OW);
  for (int64_t u = begin; u < end; ++u) {
    const int64_t n = u / Co, oc = u % Co, c = oc / s.mult;
    const float* xp = x + (n * s.C + c) * s.H * s.W;
    const float* wp = w + oc * K * K;
    const float b0 = bias ? bias[oc] : 0.f;
    float* yp = y + u * s.OH * s.OW;
    if (R == 2)
      forward_plane_rows<V, Taps, K, S, 2, 4>(s, xp, wp, b0, yp, act, ring, zeros, slot);
    else if (R == 4)
      forward_plane_rows<V, Taps, K, S, 4, 2>(s, xp, wp, b0, yp, act, ring, zeros, slot);
    else
      forward_plane_rows<V, Taps, K, S, 8, 1>(s, xp, wp, b0, yp, act, ring, zeros, slot);
  }
}

inline bool supported(const DepthwiseShape& s) {
  return s.layout == Layout::NCHW && s.KH == s.KW &&
         (s.KH == 3 || s.KH == 5 || s.KH == 7) && s.DH == 1 && s.DW == 1 &&
         s.SH == s.SW && (s.SH == 1 || s.SH == 2) && s.OW >= 1 &&
         s.OW <= kMaxRowsOutWidth;
}

// Returns false (nothing written) if the per-thread row ring could not be had.
template <class V, template <class, int> class Taps>
bool forward(const DepthwiseShape& s, const float* x, const float* w, const float* bias,
             float* y, Activation act, int64_t begin, int64_t end) {
  const int64_t K = s.KH, S = s.SH, slot = slot_floats<V>(K, S, s.OW);
  const int64_t nslots = (rows_per_step<V>(s.OW) - 1) * S + K;
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
#define MNX_ROWS_CASE(KK, SS)                                                        \
  if (K == KK && S == SS) {                                                          \
    forward_units<V, Taps, KK, SS>(s, x, w, bias, y, act, begin, end, ring, zeros,   \
                                   slot);                                            \
    return true;                                                                     \
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

}  // namespace dw_rows
}  // namespace
}  // namespace cpu
}  // namespace mnx
