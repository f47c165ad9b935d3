// One float32 depthwise kernel family, written once for every instruction
// set: the routing function (which named kernel runs a shape and op: the one
// place where the family chooses), the runner of each named kernel, and the
// entry points, which run what the routing answers and fall back when a
// kernel cannot get its per-thread scratch (allocation failure only: the
// routing is asked again with that kernel excluded, finally the scalar
// kernel). Each ISA's family translation unit (avx2/depthwise_avx2.cpp,
// neon/depthwise_neon.cpp) instantiates DepthwiseFamily<Isa> over its traits
// and exports the table (DepthwiseFamilyF32, cpu_kernels.h).
//
// The kernels every family has (written once in this folder, over Isa::V):
//   nchw_kxk_rows      depthwise_nchw_kxk_rows.h (forward)
//   nchw_small_planes  depthwise_nchw.h (all three ops)
//   nchw_direct        depthwise_nchw.h (all three ops)
//   nhwc_direct        depthwise_nhwc.h (all three ops)
//   scalar             ../scalar/depthwise_scalar.cpp (the reference)
// and the ISA's own kernels (nchw_c8_kxk, nhwc_kxk_avx2, nhwc_kxk_avx512 in
// the AVX2 family), reached through the Isa hooks below.
//
// Preference order (the first kernel that supports (shape, op) and is not
// excluded; MOBILENET_EXT_DEPTHWISE_PATH's kernel first when set and
// supported):
//   NCHW forward      nchw_c8_kxk; nchw_small_planes if strided and
//                     kV.strided_small_planes_first; nchw_kxk_rows;
//                     nchw_small_planes; nchw_direct; scalar
//   NCHW grad_input   nchw_c8_kxk; nchw_small_planes; nchw_direct; scalar
//   NCHW grad_weight  the same as grad_input (nchw_c8_kxk gated by the
//                     forward's limits: its grad_weight blocks have none of
//                     their own)
//   NHWC forward and grad_input
//                     nhwc_kxk_avx512; nhwc_kxk_avx2; nhwc_direct; scalar
//                     (on AMD, nhwc_kxk_avx512 declines the shapes that
//                     nhwc_kxk_avx2 runs but for 5x5 / 7x7 stride 1 with
//                     C % 16 == 0: cpu_nhwc_kxk_avx2_first)
//   NHWC grad_weight  nhwc_direct; scalar (the glue runs the row-chunk
//                     partial sums instead for multiplier 1:
//                     grad_weight_nhwc_partial below, the ISA's own
//                     instance first, Isa::own_grad_weight_nhwc_partial)
// Why (AVX2, measured, 2 threads unless said):
//  - nchw_c8_kxk vs the row ring on every MobileNet/ConvNeXt shape: forward
//    1.2-2.2x faster at batch 1 and 32, never slower beyond noise;
//    grad_weight 2-3.5x faster than the per-tap accumulators of nchw_direct.
//  - small planes reach the forward below c8 only for other kernel shapes,
//    dilation, unequal or larger strides, or without c8 scratch: strided ones
//    go to the channel-transposed kernel before the row ring, stride-1 ones
//    to the row ring first (1 thread, before c8 took these shapes:
//    1x576x14x14 3x3 s2 0.5 -> 0.11 ms, 1x960x7x7 5x5 s1 0.24 -> 0.16 ms).
//    NEON keeps the row ring first (never measured otherwise).
//  - NHWC: the AVX-512 row kernels where the CPU has them (AVX-512F and
//    MOBILENET_EXT_ISA not capped at avx2).
//
// Isa (the traits of one family) provides:
//   V                          the vector layer (../vec/)
//   kVariant                   a DepthwiseVariant (below)
//   RowTaps<V, K>              how nchw_kxk_rows holds its weights
//   and with kVariant.own_kernels (the ISA has kernels of its own):
//     own_supported(p, s, op)    whether own kernel p runs (s, op) (false
//                                for every other path)
//     own_forward / own_grad_input / own_grad_weight (p, ...)
//                                run own kernel p: false (nothing written)
//                                without scratch
//     grad_weight_padded_plane(s, &floats)
//                                nchw_direct's grad_weight plane kernel
//                                with a zero-padded plane copy of `floats`
//                                floats, or null (the generic plane kernel)
//   (without own_kernels: none of these; the generic versions run)
#pragma once

#include <cstdint>

#include "../cpu_kernels.h"
#include "depthwise_nchw.h"
#include "depthwise_nchw_kxk_rows.h"
#include "depthwise_nhwc.h"
#include "thread_scratch.h"

namespace mnx {
namespace cpu {
namespace {  // internal linkage: see vec/vec.h

// How one ISA instantiates the shared kernels.
struct DepthwiseVariant {
  const char* name;                // "avx2", "neon"
  int64_t small_plane_max_ow;      // nchw_small_planes takes OW below this
  bool strided_small_planes_first;  // see the preference order above
  bool nhwc_masked_tail;           // nhwc_direct's variant (depthwise_nhwc.h)
  bool nhwc_mult;                  // nhwc_direct supports multiplier > 1
  bool own_kernels;                // Isa has the hooks above
};

template <class Isa>
struct DepthwiseFamily {
  using V = typename Isa::V;
  using P = DepthwisePath;
  static constexpr DepthwiseVariant kV = Isa::kVariant;

  static bool supported(P p, const DepthwiseShape& s, DepthwiseOp op) {
    const bool nchw = s.layout == Layout::NCHW;
    const int64_t taps = s.KH * s.KW;
    switch (p) {
      case P::scalar:
        return true;
      case P::nchw_kxk_rows:
        return op == DepthwiseOp::forward && dw_rows::supported(s);
      case P::nchw_small_planes:
        return nchw && taps <= dw_nchw::kMaxTaps && s.mult == 1 &&
               s.OW < kV.small_plane_max_ow && s.H * s.W <= dw_nchw::kSmallPlane &&
               s.OH * s.OW <= dw_nchw::kSmallPlane;
      case P::nchw_direct:
        return nchw && taps <= dw_nchw::kMaxTaps && (s.SW == 1 || s.SW == 2);
      case P::nhwc_direct:
        return !nchw && taps <= kDwNhwcMaxTaps && (kV.nhwc_mult || s.mult == 1);
      default:
        if constexpr (kV.own_kernels) return Isa::own_supported(p, s, op);
        return false;
    }
  }

  static P path(const DepthwiseShape& s, DepthwiseOp op, uint32_t skip) {
    auto ok = [&](P p) { return !(skip & depthwise_path_bit(p)) && supported(p, s, op); };
    P forced;
    if (depthwise_path_forced(&forced) && ok(forced)) return forced;
    if (s.layout == Layout::NCHW) {
      if (ok(P::nchw_c8_kxk)) return P::nchw_c8_kxk;
      if (op == DepthwiseOp::forward) {
        const bool strided = s.SH > 1 || s.SW > 1;
        if (kV.strided_small_planes_first && strided && ok(P::nchw_small_planes))
          return P::nchw_small_planes;
        if (ok(P::nchw_kxk_rows)) return P::nchw_kxk_rows;
      }
      if (ok(P::nchw_small_planes)) return P::nchw_small_planes;
      if (ok(P::nchw_direct)) return P::nchw_direct;
    } else {
      if (ok(P::nhwc_kxk_avx512)) return P::nhwc_kxk_avx512;
      if (ok(P::nhwc_kxk_avx2)) return P::nhwc_kxk_avx2;
      if (ok(P::nhwc_direct)) return P::nhwc_direct;
    }
    return P::scalar;
  }

  // --- nhwc_direct with the scratch its variant needs ------------------------
  static bool nhwc_forward(const DepthwiseShape& s, const float* x, const float* w,
                           const float* bias, float* y, Activation act, int64_t begin,
                           int64_t end) {
    const float* wt = dwnhwc_tap_major_weights(s, w);
    if (!wt) return false;
    float* xe = nullptr;  // expanded rows [KH][W][C_out] (multiplier > 1)
    if constexpr (kV.nhwc_mult) {
      if (s.mult > 1 && !(xe = thread_scratch<0>(s.KH * s.W * s.C_out()))) return false;
    }
    dwnhwc_forward<V, kV.nhwc_masked_tail, kV.nhwc_mult>(s, x, wt, bias, y, act, begin,
                                                            end, xe);
    return true;
  }

  static bool nhwc_grad_input(const DepthwiseShape& s, const float* gy, const float* w,
                              float* gx, int64_t begin, int64_t end) {
    const float* wt = dwnhwc_tap_major_weights(s, w);
    if (!wt) return false;
    float* tmp = nullptr;  // per-output-channel sums (multiplier > 1)
    if constexpr (kV.nhwc_mult) {
      if (s.mult > 1 && !(tmp = thread_scratch<1>(s.C_out()))) return false;
    }
    dwnhwc_grad_input<V, kV.nhwc_masked_tail, kV.nhwc_mult>(s, gy, wt, gx, begin, end,
                                                               tmp);
    return true;
  }

  // nchw_direct's grad_weight: the ISA's padded-plane kernel where it has one
  // and its plane buffer can be had, else the generic plane kernel.
  static void nchw_grad_weight(const DepthwiseShape& s, const float* gy, const float* x,
                               float* gw, int64_t begin, int64_t end) {
    dw_nchw::PaddedFn<V> padded = nullptr;
    float* xpad = nullptr;
    if constexpr (kV.own_kernels) {
      int64_t floats = 0;
      padded = Isa::grad_weight_padded_plane(s, &floats);
      if (padded && !(xpad = thread_scratch<2>(floats))) padded = nullptr;  // coverage: unreachable (only on std::bad_alloc)
    }
    dw_nchw::grad_weight_direct<V>(s, gy, x, gw, begin, end, padded, xpad);
  }

  // --- the named kernels ---------------------------------------------------
  // Run kernel p, which must be supported for (s, op): false (nothing
  // written) when its per-thread scratch could not be had.
  static bool run_forward(P p, const DepthwiseShape& s, const float* x, const float* w,
                          const float* bias, float* y, Activation act, int64_t begin,
                          int64_t end) {
    switch (p) {
      case P::nchw_kxk_rows:
        return dw_rows::forward<V, Isa::template RowTaps>(s, x, w, bias, y, act, begin, end);
      case P::nchw_small_planes:
        dw_nchw::forward_small_planes<V>(s, x, w, bias, y, act, begin, end);
        return true;
      case P::nchw_direct:
        dw_nchw::forward_direct<V, 2>(s, x, w, bias, y, act, begin, end);
        return true;
      case P::nhwc_direct:
        return nhwc_forward(s, x, w, bias, y, act, begin, end);
      case P::scalar:
        break;
      default:
        if constexpr (kV.own_kernels)
          return Isa::own_forward(p, s, x, w, bias, y, act, begin, end);
        break;
    }
    depthwise_forward_scalar<float>(s, x, w, bias, y, act, begin, end);
    return true;
  }

  static bool run_grad_input(P p, const DepthwiseShape& s, const float* gy, const float* w,
                             float* gx, int64_t begin, int64_t end) {
    switch (p) {
      case P::nchw_small_planes:
        dw_nchw::grad_input_small_planes<V>(s, gy, w, gx, begin, end);
        return true;
      case P::nchw_direct:
        return dw_nchw::grad_input_direct<V>(s, gy, w, gx, begin, end);
      case P::nhwc_direct:
        return nhwc_grad_input(s, gy, w, gx, begin, end);
      case P::nchw_kxk_rows:  // forward only (never supported here)
      case P::scalar:
        break;
      default:
        if constexpr (kV.own_kernels) return Isa::own_grad_input(p, s, gy, w, gx, begin, end);
        break;
    }
    depthwise_grad_input_scalar<float>(s, gy, w, gx, begin, end);
    return true;
  }

  static bool run_grad_weight(P p, const DepthwiseShape& s, const float* gy, const float* x,
                              float* gw, int64_t begin, int64_t end) {
    switch (p) {
      case P::nchw_small_planes:
        dw_nchw::grad_weight_small_planes<V>(s, gy, x, gw, begin, end);
        return true;
      case P::nchw_direct:
        nchw_grad_weight(s, gy, x, gw, begin, end);
        return true;
      case P::nhwc_direct:
        dwnhwc_grad_weight<V, kV.nhwc_masked_tail, kV.nhwc_mult>(s, gy, x, gw, begin, end);
        return true;
      case P::nchw_kxk_rows:  // forward only (never supported here)
      case P::scalar:
        break;
      default:
        if constexpr (kV.own_kernels) return Isa::own_grad_weight(p, s, gy, x, gw, begin, end);
        break;
    }
    depthwise_grad_weight_scalar<float>(s, gy, x, gw, begin, end);
    return true;
  }

  // --- entry points: the routing's answer, then the fallbacks ----------------
  // Routed<op, run>::entry(s, args...) runs run(path(s, op), s, args...),
  // asking again without a kernel that could not get its scratch.
  template <DepthwiseOp op, class Fn, Fn run>
  struct Routed;
  template <DepthwiseOp op, class... A, bool (*run)(P, const DepthwiseShape&, A...)>
  struct Routed<op, bool (*)(P, const DepthwiseShape&, A...), run> {
    static void entry(const DepthwiseShape& s, A... a) {
      for (uint32_t failed = 0;;) {
        const P p = path(s, op, failed);
        if (run(p, s, a...)) return;
        failed |= depthwise_path_bit(p);  // coverage: unreachable (only when scratch allocation fails)
      }  // coverage: unreachable
    }
  };
  template <DepthwiseOp op, auto run>
  static constexpr auto entry = Routed<op, decltype(run), run>::entry;

  // NHWC, multiplier 1: the weight gradient's partial sums per row chunk
  // (DepthwiseKernels::grad_weight_nhwc_partial): the ISA's own instance
  // where it has one for this CPU, else dwnhwc_grad_weight_partial over V.
  static void grad_weight_nhwc_partial(const DepthwiseShape& s, const float* gy, const float* x,
                                       float* partial, int64_t begin, int64_t end) {
    if constexpr (kV.own_kernels)
      if (Isa::own_grad_weight_nhwc_partial(s, gy, x, partial, begin, end)) return;
    dwnhwc_grad_weight_partial<V>(s, gy, x, partial, begin, end);
  }

  static const DepthwiseFamilyF32& table() {
    static const DepthwiseFamilyF32 t = {
        {entry<DepthwiseOp::forward, run_forward>, entry<DepthwiseOp::grad_input, run_grad_input>,
         entry<DepthwiseOp::grad_weight, run_grad_weight>, kV.name, grad_weight_nhwc_partial},
        supported,
        path,
        run_forward,
        run_grad_input,
        run_grad_weight};
    return t;
  }
};

}  // namespace
}  // namespace cpu
}  // namespace mnx
