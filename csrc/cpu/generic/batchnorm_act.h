// Fused BatchNorm + activation for float32, written once over the vector
// layer (vec.h) and instantiated per ISA (avx2/batchnorm_act_avx2.cpp,
// neon/batchnorm_act_neon.cpp). Work units, partial-sum layout and formulas:
// ../batchnorm_act.h. Reductions accumulate in float over at most kBnBlock
// values (NCHW, in registers) or bn_chunk_rows rows (NHWC, a per-channel
// array swept row by row: sweep_nhwc), then in double. Large outputs are
// written with non-temporal stores (stream_ok).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../batchnorm_act.h"
#include "../vec/vec.h"

namespace mnx {
namespace cpu {
namespace {  // internal linkage: see vec.h

template <class V>
struct BnActGeneric {
  using R = typename V::reg;
  static constexpr int W = V::width;

  template <class F>
  static void with_act(Activation act, F&& f) {
    switch (act) {
      case Activation::ReLU:
        f(std::integral_constant<Activation, Activation::ReLU>());
        break;
      case Activation::ReLU6:
        f(std::integral_constant<Activation, Activation::ReLU6>());
        break;
      case Activation::Hardswish:
        f(std::integral_constant<Activation, Activation::Hardswish>());
        break;
      default:
        f(std::integral_constant<Activation, Activation::None>());
        break;
    }
  }

  // dz = dy * act'(z), as bn_act_grad
  template <Activation A>
  static R grad(R z, R dy) {
    const R zero = V::zero();
    switch (A) {
      case Activation::ReLU:
        return V::select_le(z, zero, zero, dy);
      case Activation::ReLU6:
        return V::select_le(z, zero, zero, V::select_le(V::set1(6.f), z, zero, dy));
      case Activation::Hardswish: {
        const R mid = V::mul(dy, V::add(V::div(z, V::set1(3.f)), V::set1(0.5f)));
        return V::select_lt(z, V::set1(-3.f), zero, V::select_le(z, V::set1(3.f), mid, dy));
      }
      default:
        return dy;
    }
  }

  // ---- statistics -----------------------------------------------------------
  static void stats(const BatchNormShape& s, const float* x, double* partial, int64_t begin, int64_t end) {
    if (s.layout == Layout::NCHW) {
      for (int64_t u = begin; u < end; ++u) {
       int64_t n, c0, c1;
       bn_nchw_unit(s, u, n, c0, c1);
       for (int64_t c = c0; c < c1; ++c) {
        const float x0 = x[c * s.HW];
        const R sh = V::set1(x0);
        double s1 = 0, s2 = 0;
        {
          const float* p = x + (n * s.C + c) * s.HW;
          for (int64_t b = 0; b < s.HW; b += kBnBlock) {
            const int64_t e = std::min(s.HW, b + kBnBlock);
            R a0 = V::zero(), a1 = V::zero(), q0 = V::zero(), q1 = V::zero();
            int64_t i = b;
            for (; i + 2 * W <= e; i += 2 * W) {
              const R d0 = V::sub(V::load(p + i), sh), d1 = V::sub(V::load(p + i + W), sh);
              a0 = V::add(a0, d0);
              a1 = V::add(a1, d1);
              q0 = V::fma(d0, d0, q0);
              q1 = V::fma(d1, d1, q1);
            }
            float t1 = V::reduce_add(V::add(a0, a1)), t2 = V::reduce_add(V::add(q0, q1));
            for (; i < e; ++i) {
              const float d = p[i] - x0;
              t1 += d;
              t2 += d * d;
            }
            s1 += t1;
            s2 += t2;
          }
        }
        partial[2 * (n * s.C + c)] = s1;
        partial[2 * (n * s.C + c) + 1] = s2;
       }
      }
      return;
    }
    const int64_t C = s.C, cr = bn_chunk_rows(s), rows = s.N * s.HW;
    for (int64_t u = begin; u < end; ++u) {
      const int64_t r0 = u * cr, r1 = std::min(rows, r0 + cr);
      sweep_nhwc(C, r0, r1, partial + u * 2 * C, [&](int64_t r, int64_t c, int n, R& a, R& q) {
        const R d = V::sub(load_part(x + r * C + c, n), load_part(x + c, n));  // shift: the first row
        a = V::add(a, d);
        q = V::fma(d, d, q);
      });
    }
  }

  // NHWC reductions of one chunk (rows [r0, r1), all C channels): each row
  // is read in address order over a panel of up to kSweep channels, the two
  // float sums per channel in an array that stays in L1, then stored as
  // doubles to out[2c], out[2c + 1]. f(r, c, n, a, q) adds row r's values of
  // channels [c, c + n) (n <= W lanes live) to the sums a, q. Per channel the
  // sums run over the rows in order, as a register loop per channel block
  // did before: the same bits. That loop read all the chunk's rows for 16-32
  // channels, then again for the next ones, a few cache lines per row at a
  // stride of a whole row; on data that comes from memory (a training step)
  // its loads waited. Training step, mobilenet_v2 batch 32 channels_last,
  // 2 threads, Intel Xeon (AVX-512), process-alternating: 0.90-0.93x the
  // time; on a warm tensor alone in a loop no change.
  static constexpr int64_t kSweep = 512;
  template <class F>
  static void sweep_nhwc(int64_t C, int64_t r0, int64_t r1, double* out, F&& f) {
    alignas(64) float sa[kSweep], sq[kSweep];
    for (int64_t c0 = 0; c0 < C; c0 += kSweep) {
      const int64_t nc = std::min(kSweep, C - c0);
      const int64_t full = nc / W * W;
      const int tail = static_cast<int>(nc - full);
      for (int64_t i = 0; i < kSweep; ++i) sa[i] = sq[i] = 0.f;
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t c = 0; c < full; c += W) {
          R a = V::load(sa + c), q = V::load(sq + c);
          f(r, c0 + c, W, a, q);
          V::store(sa + c, a);
          V::store(sq + c, q);
        }
        if (tail) {
          R a = V::load(sa + full), q = V::load(sq + full);
          f(r, c0 + full, tail, a, q);
          V::store(sa + full, a);
          V::store(sq + full, q);
        }
      }
      for (int64_t i = 0; i < nc; ++i) {
        out[2 * (c0 + i)] = sa[i];
        out[2 * (c0 + i) + 1] = sq[i];
      }
    }
  }

  static R load_part(const float* p, int n) { return n == W ? V::load(p) : V::load_n(p, n); }

  // Large outputs (apply's y, backward_dx's dx) go out with non-temporal
  // stores (stream_output, vec.h): NHWC where C is a multiple of W, NCHW
  // where HW is. Training step at batch 32, channels_last, 2 threads, Intel
  // Xeon (AVX-512), process-alternating, streamed / plain time:
  // mobilenet_v2 0.95-0.97, mobilenet_v3_large 0.90-1.00.
  static bool stream_ok(const BatchNormShape& s, const float* out) {
    return stream_output<V>(out, s.layout == Layout::NCHW ? s.HW : s.C, s.N * s.HW * s.C);
  }
  // a whole vector to p: streamed or not (when nt, every store is whole)
  static void put(float* p, R v, bool nt) {
    if (nt) V::stream(p, v);
    else V::store(p, v);
  }

  // ---- y = act((x - ctr) * scale + shift) -------------------------------------
  static void apply(const BatchNormShape& s, const float* x, const float* ctr, const float* scale, const float* shift,
                    Activation act, float* y, int64_t begin, int64_t end) {
    with_act(act, [&](auto a) { apply_t<decltype(a)::value>(s, x, ctr, scale, shift, y, begin, end); });
  }

  template <Activation A>
  static void apply_t(const BatchNormShape& s, const float* x, const float* ctr, const float* scale,
                      const float* shift, float* y, int64_t begin, int64_t end) {
    if (s.layout == Layout::NCHW) {
      const bool nt = stream_ok(s, y);
      for (int64_t u = begin; u < end; ++u) {
        const int64_t c = u % s.C;
        const R m = V::set1(ctr[c]), k = V::set1(scale[c]), b = V::set1(shift[c]);
        const float* p = x + u * s.HW;
        float* q = y + u * s.HW;
        int64_t i = 0;
        for (; i + W <= s.HW; i += W) put(q + i, activate<V>(V::fma(V::sub(V::load(p + i), m), k, b), A), nt);
        if (i < s.HW) {
          const int n = static_cast<int>(s.HW - i);
          V::store_n(q + i, activate<V>(V::fma(V::sub(V::load_n(p + i, n), m), k, b), A), n);
        }
      }
      if (nt) V::stream_fence();
      return;
    }
    const int64_t C = s.C;
    const bool nt = stream_ok(s, y);
    for (int64_t r = begin; r < end; ++r) {
      const float* p = x + r * C;
      float* q = y + r * C;
      int64_t c = 0;
      for (; c + W <= C; c += W)
        put(q + c, activate<V>(V::fma(V::sub(V::load(p + c), V::load(ctr + c)), V::load(scale + c),
                                      V::load(shift + c)), A), nt);
      if (c < C) {
        const int n = static_cast<int>(C - c);
        V::store_n(q + c, activate<V>(V::fma(V::sub(V::load_n(p + c, n), V::load_n(ctr + c, n)),
                                             V::load_n(scale + c, n), V::load_n(shift + c, n)), A), n);
      }
    }
    if (nt) V::stream_fence();
  }

  // ---- backward pass 1: sum dz, sum dz * (x - mean) ---------------------------
  static void backward_reduce(const BatchNormShape& s, const float* dy, const float* x, const float* mean,
                              const float* scale, const float* beta, Activation act, double* partial,
                              int64_t begin, int64_t end) {
    with_act(act, [&](auto a) { reduce_t<decltype(a)::value>(s, dy, x, mean, scale, beta, partial, begin, end); });
  }

  template <Activation A>
  static void reduce_t(const BatchNormShape& s, const float* dy, const float* x, const float* mean,
                       const float* scale, const float* beta, double* partial, int64_t begin, int64_t end) {
    if (s.layout == Layout::NCHW) {
      for (int64_t u = begin; u < end; ++u) {
       int64_t n, c0, c1;
       bn_nchw_unit(s, u, n, c0, c1);
       for (int64_t c = c0; c < c1; ++c) {
        const float mc = mean[c], kc = scale[c], bc = beta[c];
        const R m = V::set1(mc), k = V::set1(kc), b = V::set1(bc);
        double s1 = 0, s2 = 0;
        {
          const int64_t off = (n * s.C + c) * s.HW;
          const float* px = x + off;
          const float* pg = dy + off;
          for (int64_t blk = 0; blk < s.HW; blk += kBnBlock) {
            const int64_t e = std::min(s.HW, blk + kBnBlock);
            R a0 = V::zero(), a1 = V::zero(), q0 = V::zero(), q1 = V::zero();
            int64_t i = blk;
            for (; i + 2 * W <= e; i += 2 * W) {
              const R d0 = V::sub(V::load(px + i), m), d1 = V::sub(V::load(px + i + W), m);
              const R g0 = grad<A>(V::fma(d0, k, b), V::load(pg + i));
              const R g1 = grad<A>(V::fma(d1, k, b), V::load(pg + i + W));
              a0 = V::add(a0, g0);
              a1 = V::add(a1, g1);
              q0 = V::fma(g0, d0, q0);
              q1 = V::fma(g1, d1, q1);
            }
            float t1 = V::reduce_add(V::add(a0, a1)), t2 = V::reduce_add(V::add(q0, q1));
            for (; i < e; ++i) {
              const float d = px[i] - mc;
              const float g = bn_act_grad<float>(d * kc + bc, pg[i], A);
              t1 += g;
              t2 += g * d;
            }
            s1 += t1;
            s2 += t2;
          }
        }
        partial[2 * (n * s.C + c)] = s1;
        partial[2 * (n * s.C + c) + 1] = s2;
       }
      }
      return;
    }
    const int64_t C = s.C, cr = bn_chunk_rows(s), rows = s.N * s.HW;
    for (int64_t u = begin; u < end; ++u) {
      const int64_t r0 = u * cr, r1 = std::min(rows, r0 + cr);
      sweep_nhwc(C, r0, r1, partial + u * 2 * C, [&](int64_t r, int64_t c, int n, R& a, R& q) {
        const R d = V::sub(load_part(x + r * C + c, n), load_part(mean + c, n));
        const R g = grad<A>(V::fma(d, load_part(scale + c, n), load_part(beta + c, n)), load_part(dy + r * C + c, n));
        a = V::add(a, g);
        q = V::fma(g, d, q);
      });
    }
  }

  // ---- backward pass 2: dx = A * dz + B * (x - mean) + K ----------------------
  static void backward_dx(const BatchNormShape& s, const float* dy, const float* x, const float* mean,
                          const float* scale, const float* beta, const float* cA, const float* cB, const float* cK,
                          Activation act, float* dx, int64_t begin, int64_t end) {
    with_act(act, [&](auto a) {
      dx_t<decltype(a)::value>(s, dy, x, mean, scale, beta, cA, cB, cK, dx, begin, end);
    });
  }

  template <Activation A>
  static R dx_one(R xv, R gv, R m, R k, R b, R ca, R cb, R ck) {
    const R d = V::sub(xv, m);
    const R g = grad<A>(V::fma(d, k, b), gv);
    return V::fma(cb, d, V::fma(ca, g, ck));
  }

  template <Activation A>
  static void dx_t(const BatchNormShape& s, const float* dy, const float* x, const float* mean, const float* scale,
                   const float* beta, const float* cA, const float* cB, const float* cK, float* dx, int64_t begin,
                   int64_t end) {
    if (s.layout == Layout::NCHW) {
      const bool nt = stream_ok(s, dx);
      for (int64_t u = begin; u < end; ++u) {
        const int64_t c = u % s.C;
        const R m = V::set1(mean[c]), k = V::set1(scale[c]), b = V::set1(beta[c]);
        const R ca = V::set1(cA[c]), cb = V::set1(cB[c]), ck = V::set1(cK[c]);
        const float* px = x + u * s.HW;
        const float* pg = dy + u * s.HW;
        float* q = dx + u * s.HW;
        int64_t i = 0;
        for (; i + W <= s.HW; i += W) put(q + i, dx_one<A>(V::load(px + i), V::load(pg + i), m, k, b, ca, cb, ck), nt);
        if (i < s.HW) {
          const int n = static_cast<int>(s.HW - i);
          V::store_n(q + i, dx_one<A>(V::load_n(px + i, n), V::load_n(pg + i, n), m, k, b, ca, cb, ck), n);
        }
      }
      if (nt) V::stream_fence();
      return;
    }
    const int64_t C = s.C;
    const bool nt = stream_ok(s, dx);
    for (int64_t r = begin; r < end; ++r) {
      const float* px = x + r * C;
      const float* pg = dy + r * C;
      float* q = dx + r * C;
      int64_t c = 0;
      for (; c + W <= C; c += W)
        put(q + c, dx_one<A>(V::load(px + c), V::load(pg + c), V::load(mean + c), V::load(scale + c),
                             V::load(beta + c), V::load(cA + c), V::load(cB + c), V::load(cK + c)), nt);
      if (c < C) {
        const int n = static_cast<int>(C - c);
        V::store_n(q + c, dx_one<A>(V::load_n(px + c, n), V::load_n(pg + c, n), V::load_n(mean + c, n),
                                    V::load_n(scale + c, n), V::load_n(beta + c, n), V::load_n(cA + c, n),
                                    V::load_n(cB + c, n), V::load_n(cK + c, n)), n);
      }
    }
    if (nt) V::stream_fence();
  }

  // The float32 kernel table over V (each ISA's translation unit returns it
  // from batchnorm_act_kernels_<isa>(), ../batchnorm_act.h).
  static const BatchNormActKernels<float>& table(const char* isa) {
    static const BatchNormActKernels<float> k = {stats, apply, backward_reduce, backward_dx, isa};
    return k;
  }
};

}  // namespace
}  // namespace cpu
}  // namespace mnx
