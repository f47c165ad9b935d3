// Channel sums and channel scaling (../channel_scale.h) for float32, written
// once over the vector layer (vec.h) and instantiated per ISA
// (avx2/channel_scale_avx2.cpp, neon/channel_scale_neon.cpp).
#pragma once

#include <algorithm>
#include <cstdint>

#include "../channel_scale.h"
#include "../vec/vec.h"

namespace mnx {
namespace cpu {
namespace {  // internal linkage: see vec.h

template <class V>
struct ChannelGeneric {
  using R = typename V::reg;
  static constexpr int W = V::width;

  static R load_part(const float* p, int n) { return n == W ? V::load(p) : V::load_n(p, n); }

  // ---- sums -------------------------------------------------------------------
  static void sums(const ChannelShape& s, const float* a, const float* b, double* sum_a, double* sum_ab,
                   int64_t begin, int64_t end) {
    if (s.layout == Layout::NCHW) {
      const int64_t step = kChannelSumChunk * 2 * W;  // values per float chunk
      for (int64_t u = begin; u < end; ++u) {
        const float* pa = a + u * s.HW;
        const float* pb = b ? b + u * s.HW : nullptr;
        double ta = 0, tab = 0;
        for (int64_t c0 = 0; c0 < s.HW; c0 += step) {
          const int64_t e = std::min(s.HW, c0 + step);
          R a0 = V::zero(), a1 = V::zero(), q0 = V::zero(), q1 = V::zero();
          int64_t i = c0;
          if (pb) {
            for (; i + 2 * W <= e; i += 2 * W) {
              const R x0 = V::load(pa + i), x1 = V::load(pa + i + W);
              a0 = V::add(a0, x0);
              a1 = V::add(a1, x1);
              q0 = V::fma(x0, V::load(pb + i), q0);
              q1 = V::fma(x1, V::load(pb + i + W), q1);
            }
            if (i < e) {
              const int n = static_cast<int>(std::min<int64_t>(W, e - i));
              const R x0 = V::load_n(pa + i, n);
              a0 = V::add(a0, x0);
              q0 = V::fma(x0, V::load_n(pb + i, n), q0);
              i += n;
            }
            if (i < e) {
              const int n = static_cast<int>(e - i);
              const R x1 = V::load_n(pa + i, n);
              a1 = V::add(a1, x1);
              q1 = V::fma(x1, V::load_n(pb + i, n), q1);
            }
            tab += static_cast<double>(V::reduce_add(V::add(q0, q1)));
          } else {
            for (; i + 2 * W <= e; i += 2 * W) {
              a0 = V::add(a0, V::load(pa + i));
              a1 = V::add(a1, V::load(pa + i + W));
            }
            if (i < e) {
              const int n = static_cast<int>(std::min<int64_t>(W, e - i));
              a0 = V::add(a0, V::load_n(pa + i, n));
              i += n;
            }
            if (i < e) a1 = V::add(a1, V::load_n(pa + i, static_cast<int>(e - i)));
          }
          ta += static_cast<double>(V::reduce_add(V::add(a0, a1)));
        }
        sum_a[u] = ta;
        if (pb) sum_ab[u] = tab;
      }
      return;
    }
    const int64_t blocks = (s.C + kChannelSumBlock - 1) / kChannelSumBlock;
    for (int64_t u = begin; u < end; ++u) {
      const int64_t n = u / blocks, c0 = (u % blocks) * kChannelSumBlock;
      const int64_t c1 = std::min(s.C, c0 + kChannelSumBlock);
      int64_t c = c0;
      for (; c + 4 * W <= c1; c += 4 * W) sums_nhwc<4>(s, a, b, n, c, W, sum_a, sum_ab);
      for (; c < c1; c += W) sums_nhwc<1>(s, a, b, n, c, static_cast<int>(std::min<int64_t>(W, c1 - c)), sum_a, sum_ab);
    }
  }

  // NV vectors of channels from c0 of image n; the last one has `last` lanes
  template <int NV>
  static void sums_nhwc(const ChannelShape& s, const float* a, const float* b, int64_t n, int64_t c0, int last,
                        double* sum_a, double* sum_ab) {
    double da[NV * W] = {}, dq[NV * W] = {};
    const int64_t base = n * s.HW * s.C + c0;
    for (int64_t r0 = 0; r0 < s.HW; r0 += kChannelSumChunk) {
      const int64_t r1 = std::min(s.HW, r0 + kChannelSumChunk);
      R ac[NV], qc[NV];
      for (int v = 0; v < NV; ++v) ac[v] = qc[v] = V::zero();
      for (int64_t r = r0; r < r1; ++r) {
        const float* pa = a + base + r * s.C;
        for (int v = 0; v < NV; ++v) {
          const int w = v == NV - 1 ? last : W;
          const R x = load_part(pa + v * W, w);
          ac[v] = V::add(ac[v], x);
          if (b) qc[v] = V::fma(x, load_part(b + base + r * s.C + v * W, w), qc[v]);
        }
      }
      float t[W];
      for (int v = 0; v < NV; ++v) {
        V::store(t, ac[v]);
        for (int l = 0; l < W; ++l) da[v * W + l] += t[l];
        if (b) {
          V::store(t, qc[v]);
          for (int l = 0; l < W; ++l) dq[v * W + l] += t[l];
        }
      }
    }
    const int total = (NV - 1) * W + last;
    for (int l = 0; l < total; ++l) {
      sum_a[n * s.C + c0 + l] = da[l];
      if (b) sum_ab[n * s.C + c0 + l] = dq[l];
    }
  }

  // ---- y = x * scale + shift ------------------------------------------------------
  static void scale(const ChannelShape& s, const float* x, const float* sc, const float* sh, float* y,
                    int64_t begin, int64_t end) {
    if (s.layout == Layout::NCHW) {
      for (int64_t u = begin; u < end; ++u) {
        const R k = V::set1(sc[u]);
        const float* p = x + u * s.HW;
        float* q = y + u * s.HW;
        if (sh) {
          const R t = V::set1(sh[u]);
          int64_t i = 0;
          for (; i + W <= s.HW; i += W) V::store(q + i, V::fma(V::load(p + i), k, t));
          if (i < s.HW) {
            const int n = static_cast<int>(s.HW - i);
            V::store_n(q + i, V::fma(V::load_n(p + i, n), k, t), n);
          }
        } else {
          int64_t i = 0;
          for (; i + W <= s.HW; i += W) V::store(q + i, V::mul(V::load(p + i), k));
          if (i < s.HW) {
            const int n = static_cast<int>(s.HW - i);
            V::store_n(q + i, V::mul(V::load_n(p + i, n), k), n);
          }
        }
      }
      return;
    }
    const int64_t C = s.C;
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / s.HW;
      const float* k = sc + n * C;
      const float* t = sh ? sh + n * C : nullptr;
      const float* p = x + r * C;
      float* q = y + r * C;
      int64_t c = 0;
      if (t) {
        for (; c + W <= C; c += W) V::store(q + c, V::fma(V::load(p + c), V::load(k + c), V::load(t + c)));
      } else {
        for (; c + W <= C; c += W) V::store(q + c, V::mul(V::load(p + c), V::load(k + c)));
      }
      if (c < C) {
        const int m = static_cast<int>(C - c);
        const R xv = V::load_n(p + c, m), kv = V::load_n(k + c, m);
        V::store_n(q + c, t ? V::fma(xv, kv, V::load_n(t + c, m)) : V::mul(xv, kv), m);
      }
    }
  }

  // The float32 kernel table over V (each ISA's translation unit returns it
  // from channel_kernels_<isa>(), ../channel_scale.h).
  static const ChannelKernels<float>& table(const char* isa) {
    static const ChannelKernels<float> k = {sums, scale, isa};
    return k;
  }
};

}  // namespace
}  // namespace cpu
}  // namespace mnx
