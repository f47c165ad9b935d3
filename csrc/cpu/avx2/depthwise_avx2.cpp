// AVX2/FMA depthwise entry points and the one place where this family picks
// a kernel: depthwise_path_avx2() maps (shape, op) to a named kernel
// (DepthwisePath, ../depthwise_path.h), and the entry points run what it
// answers. A kernel that cannot get its per-thread scratch (allocation
// failure only) writes nothing; the entry point then asks again without it,
// i.e. takes the next choice (finally the scalar kernel).
//
// Preference order (the first that supports the shape; see each kernel's
// limits in depthwise_path.h):
//   NCHW forward      nchw_c8_kxk; nchw_small_planes if strided (stride_h or
//                     stride_w > 1); nchw_kxk_rows; nchw_small_planes;
//                     nchw_direct; scalar
//   NCHW grad_input   nchw_c8_kxk; nchw_small_planes; nchw_direct; scalar
//   NCHW grad_weight  nchw_c8_kxk (gated by the forward's limits: the
//                     grad_weight blocks have none of their own);
//                     nchw_small_planes; nchw_direct; scalar
//   NHWC forward      nhwc_kxk_avx512 (when cpu_use_avx512()); nhwc_kxk_avx2;
//                     nhwc_direct; scalar
//   NHWC grad_input   nhwc_kxk_avx512 (cpu_use_avx512(), stride 1);
//                     nhwc_kxk_avx2; nhwc_direct; scalar
//   NHWC grad_weight  nhwc_direct; scalar (the glue runs the row-chunk
//                     partial sums instead for multiplier 1)
// Why this order (measured, 2 threads unless said):
//  - nchw_c8_kxk vs the row ring on every MobileNet/ConvNeXt shape: forward
//    1.2-2.2x faster at batch 1 and 32, never slower beyond noise;
//    grad_weight 2-3.5x faster than the per-tap accumulators of nchw_direct.
//  - small planes reach the forward below c8 only for other kernel shapes,
//    dilation, unequal or larger strides, or without c8 scratch: strided ones
//    go to the channel-transposed kernel before the row ring, stride-1 ones
//    to the row ring first (1 thread, before c8 took these shapes:
//    1x576x14x14 3x3 s2 0.5 -> 0.11 ms, 1x960x7x7 5x5 s1 0.24 -> 0.16 ms).
//  - NHWC: the AVX-512 row kernels where the CPU has them (AVX-512F and
//    MOBILENET_EXT_ISA not capped at avx2).
#include "avx2_kernels.h"

namespace mnx {
namespace cpu {

bool depthwise_path_supported_avx2(DepthwisePath p, const DepthwiseShape& s,
                                   DepthwiseOp op) {
  const bool fwd = op == DepthwiseOp::forward, gi = op == DepthwiseOp::grad_input;
  switch (p) {
    case DepthwisePath::scalar:
      return true;
    case DepthwisePath::nchw_c8_kxk:
      return gi ? depthwise_grad_input_nchw_c8_kxk_avx2_supported(s)
                : depthwise_forward_nchw_c8_kxk_avx2_supported(s);
    case DepthwisePath::nchw_kxk_rows:
      return fwd && depthwise_forward_nchw_kxk_rows_avx2_supported(s);
    case DepthwisePath::nchw_small_planes:
      return depthwise_nchw_small_planes_avx2_supported(s);
    case DepthwisePath::nchw_direct:
      return gi ? depthwise_grad_input_nchw_direct_avx2_supported(s)
                : depthwise_nchw_direct_avx2_supported(s);
    case DepthwisePath::nhwc_kxk_avx2:
      return fwd  ? depthwise_forward_nhwc_kxk_avx2_supported(s)
             : gi ? depthwise_grad_input_nhwc_kxk_avx2_supported(s)
                  : false;
    case DepthwisePath::nhwc_kxk_avx512:
      return fwd  ? depthwise_forward_nhwc_avx512_usable(s)
             : gi ? depthwise_grad_input_nhwc_avx512_usable(s)
                  : false;
    case DepthwisePath::nhwc_direct:
      return depthwise_nhwc_direct_avx2_supported(s);
  }
  return false;  // coverage: unreachable (every enumerator is handled above)
}

DepthwisePath depthwise_path_avx2(const DepthwiseShape& s, DepthwiseOp op,
                                  uint32_t skip) {
  auto ok = [&](DepthwisePath p) {
    return !(skip & depthwise_path_bit(p)) && depthwise_path_supported_avx2(p, s, op);
  };
  DepthwisePath forced;
  if (depthwise_path_forced(&forced) && ok(forced)) return forced;
  using P = DepthwisePath;
  if (s.layout == Layout::NCHW) {
    if (ok(P::nchw_c8_kxk)) return P::nchw_c8_kxk;
    if (op == DepthwiseOp::forward) {
      const bool strided = s.SH > 1 || s.SW > 1;
      if (strided && ok(P::nchw_small_planes)) return P::nchw_small_planes;
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

bool depthwise_forward_avx2_run(DepthwisePath p, const DepthwiseShape& s,
                                const float* x, const float* w, const float* bias,
                                float* y, Activation act, int64_t begin, int64_t end) {
  switch (p) {
    case DepthwisePath::nchw_c8_kxk:
      return depthwise_forward_nchw_c8_kxk_avx2(s, x, w, bias, y, act, begin, end);
    case DepthwisePath::nchw_kxk_rows:
      return depthwise_forward_nchw_kxk_rows_avx2(s, x, w, bias, y, act, begin, end);
    case DepthwisePath::nchw_small_planes:
      depthwise_forward_nchw_small_planes_avx2(s, x, w, bias, y, act, begin, end);
      return true;
    case DepthwisePath::nchw_direct:
      depthwise_forward_nchw_direct_avx2(s, x, w, bias, y, act, begin, end);
      return true;
    case DepthwisePath::nhwc_kxk_avx512:
    case DepthwisePath::nhwc_kxk_avx2:
    case DepthwisePath::nhwc_direct:
      return depthwise_forward_nhwc_avx2(p, s, x, w, bias, y, act, begin, end);
    case DepthwisePath::scalar:
      break;
  }
  depthwise_forward_scalar<float>(s, x, w, bias, y, act, begin, end);
  return true;
}

bool depthwise_grad_input_avx2_run(DepthwisePath p, const DepthwiseShape& s,
                                   const float* gy, const float* w, float* gx,
                                   int64_t begin, int64_t end) {
  switch (p) {
    case DepthwisePath::nchw_c8_kxk:
      return depthwise_grad_input_nchw_c8_kxk_avx2(s, gy, w, gx, begin, end);
    case DepthwisePath::nchw_small_planes:
      depthwise_grad_input_nchw_small_planes_avx2(s, gy, w, gx, begin, end);
      return true;
    case DepthwisePath::nchw_direct:
      return depthwise_grad_input_nchw_direct_avx2(s, gy, w, gx, begin, end);
    case DepthwisePath::nhwc_kxk_avx512:
    case DepthwisePath::nhwc_kxk_avx2:
    case DepthwisePath::nhwc_direct:
      return depthwise_grad_input_nhwc_avx2(p, s, gy, w, gx, begin, end);
    case DepthwisePath::nchw_kxk_rows:  // forward only (never supported here)
    case DepthwisePath::scalar:
      break;
  }
  depthwise_grad_input_scalar<float>(s, gy, w, gx, begin, end);
  return true;
}

bool depthwise_grad_weight_avx2_run(DepthwisePath p, const DepthwiseShape& s,
                                    const float* gy, const float* x, float* gw,
                                    int64_t begin, int64_t end) {
  switch (p) {
    case DepthwisePath::nchw_c8_kxk:
      return depthwise_grad_weight_nchw_c8_kxk_avx2(s, gy, x, gw, begin, end);
    case DepthwisePath::nchw_small_planes:
      depthwise_grad_weight_nchw_small_planes_avx2(s, gy, x, gw, begin, end);
      return true;
    case DepthwisePath::nchw_direct:
      depthwise_grad_weight_nchw_direct_avx2(s, gy, x, gw, begin, end);
      return true;
    case DepthwisePath::nhwc_direct:
      depthwise_grad_weight_nhwc_avx2(s, gy, x, gw, begin, end);
      return true;
    case DepthwisePath::nchw_kxk_rows:  // forward / grad_input only
    case DepthwisePath::nhwc_kxk_avx2:  // (never supported here)
    case DepthwisePath::nhwc_kxk_avx512:
    case DepthwisePath::scalar:
      break;
  }
  depthwise_grad_weight_scalar<float>(s, gy, x, gw, begin, end);
  return true;
}

void depthwise_forward_avx2_f32(const DepthwiseShape& s, const float* x,
                                const float* w, const float* bias, float* y,
                                Activation act, int64_t begin, int64_t end) {
  for (uint32_t failed = 0;;) {
    const DepthwisePath p = depthwise_path_avx2(s, DepthwiseOp::forward, failed);
    if (depthwise_forward_avx2_run(p, s, x, w, bias, y, act, begin, end)) return;
    failed |= depthwise_path_bit(p);  // coverage: unreachable (only when scratch allocation fails)
  }  // coverage: unreachable
}

void depthwise_grad_input_avx2_f32(const DepthwiseShape& s, const float* gy,
                                   const float* w, float* gx, int64_t begin,
                                   int64_t end) {
  for (uint32_t failed = 0;;) {
    const DepthwisePath p = depthwise_path_avx2(s, DepthwiseOp::grad_input, failed);
    if (depthwise_grad_input_avx2_run(p, s, gy, w, gx, begin, end)) return;
    failed |= depthwise_path_bit(p);  // coverage: unreachable (only when scratch allocation fails)
  }  // coverage: unreachable
}

void depthwise_grad_weight_avx2_f32(const DepthwiseShape& s, const float* gy,
                                    const float* x, float* gw, int64_t begin,
                                    int64_t end) {
  for (uint32_t failed = 0;;) {
    const DepthwisePath p = depthwise_path_avx2(s, DepthwiseOp::grad_weight, failed);
    if (depthwise_grad_weight_avx2_run(p, s, gy, x, gw, begin, end)) return;
    failed |= depthwise_path_bit(p);  // coverage: unreachable (only when scratch allocation fails)
  }  // coverage: unreachable
}

}  // namespace cpu
}  // namespace mnx
