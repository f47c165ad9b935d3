// NEON depthwise entry points and the one place where this family picks a
// kernel: depthwise_path_neon() maps (shape, op) to a named kernel
// (DepthwisePath, ../depthwise_path.h), and the entry points run what it
// answers. A kernel that cannot get its per-thread scratch (allocation
// failure only) writes nothing; the entry point then asks again without it,
// i.e. takes the next choice (finally the scalar kernel).
//
// Preference order (the first that supports the shape; limits in
// neon_kernels.h):
//   NCHW forward      nchw_kxk_rows; nchw_small_planes; nchw_direct; scalar
//   NCHW grad_input   nchw_small_planes; nchw_direct; scalar
//   NCHW grad_weight  nchw_small_planes; nchw_direct; scalar
//   NHWC (all three)  nhwc_direct; scalar (the glue runs the row-chunk
//                     partial sums instead of grad_weight for multiplier 1)
#include "neon_kernels.h"

namespace mnx {
namespace cpu {

bool depthwise_path_supported_neon(DepthwisePath p, const DepthwiseShape& s,
                                   DepthwiseOp op) {
  switch (p) {
    case DepthwisePath::scalar:
      return true;
    case DepthwisePath::nchw_kxk_rows:
      return op == DepthwiseOp::forward && depthwise_forward_nchw_kxk_rows_neon_supported(s);
    case DepthwisePath::nchw_small_planes:
      return depthwise_nchw_small_planes_neon_supported(s);
    case DepthwisePath::nchw_direct:
      return depthwise_nchw_direct_neon_supported(s);
    case DepthwisePath::nhwc_direct:
      return depthwise_nhwc_neon_supported(s);
    case DepthwisePath::nchw_c8_kxk:  // AVX2 / AVX-512 kernels
    case DepthwisePath::nhwc_kxk_avx2:
    case DepthwisePath::nhwc_kxk_avx512:
      return false;
  }
  return false;  // coverage: unreachable (every enumerator is handled above)
}

DepthwisePath depthwise_path_neon(const DepthwiseShape& s, DepthwiseOp op,
                                  uint32_t skip) {
  auto ok = [&](DepthwisePath p) {
    return !(skip & depthwise_path_bit(p)) && depthwise_path_supported_neon(p, s, op);
  };
  DepthwisePath forced;
  if (depthwise_path_forced(&forced) && ok(forced)) return forced;
  using P = DepthwisePath;
  static const P kOrder[] = {P::nchw_kxk_rows, P::nchw_small_planes, P::nchw_direct,
                             P::nhwc_direct};
  for (P p : kOrder)
    if (ok(p)) return p;
  return P::scalar;
}

bool depthwise_forward_neon_run(DepthwisePath p, const DepthwiseShape& s,
                                const float* x, const float* w, const float* bias,
                                float* y, Activation act, int64_t begin, int64_t end) {
  switch (p) {
    case DepthwisePath::nchw_kxk_rows:
      return depthwise_forward_nchw_kxk_rows_neon(s, x, w, bias, y, act, begin, end);
    case DepthwisePath::nchw_small_planes:
      depthwise_forward_nchw_small_planes_neon(s, x, w, bias, y, act, begin, end);
      return true;
    case DepthwisePath::nchw_direct:
      depthwise_forward_nchw_direct_neon(s, x, w, bias, y, act, begin, end);
      return true;
    case DepthwisePath::nhwc_direct:
      return depthwise_forward_nhwc_neon(s, x, w, bias, y, act, begin, end);
    default:  // scalar (and the paths this family does not have)
      break;
  }
  depthwise_forward_scalar<float>(s, x, w, bias, y, act, begin, end);
  return true;
}

bool depthwise_grad_input_neon_run(DepthwisePath p, const DepthwiseShape& s,
                                   const float* gy, const float* w, float* gx,
                                   int64_t begin, int64_t end) {
  switch (p) {
    case DepthwisePath::nchw_small_planes:
      depthwise_grad_input_nchw_small_planes_neon(s, gy, w, gx, begin, end);
      return true;
    case DepthwisePath::nchw_direct:
      return depthwise_grad_input_nchw_direct_neon(s, gy, w, gx, begin, end);
    case DepthwisePath::nhwc_direct:
      return depthwise_grad_input_nhwc_neon(s, gy, w, gx, begin, end);
    default:  // scalar (and the paths that have no grad_input here)
      break;
  }
  depthwise_grad_input_scalar<float>(s, gy, w, gx, begin, end);
  return true;
}

bool depthwise_grad_weight_neon_run(DepthwisePath p, const DepthwiseShape& s,
                                    const float* gy, const float* x, float* gw,
                                    int64_t begin, int64_t end) {
  switch (p) {
    case DepthwisePath::nchw_small_planes:
      depthwise_grad_weight_nchw_small_planes_neon(s, gy, x, gw, begin, end);
      return true;
    case DepthwisePath::nchw_direct:
      depthwise_grad_weight_nchw_direct_neon(s, gy, x, gw, begin, end);
      return true;
    case DepthwisePath::nhwc_direct:
      depthwise_grad_weight_nhwc_neon(s, gy, x, gw, begin, end);
      return true;
    default:  // scalar (and the paths that have no grad_weight here)
      break;
  }
  depthwise_grad_weight_scalar<float>(s, gy, x, gw, begin, end);
  return true;
}

void depthwise_forward_neon_f32(const DepthwiseShape& s, const float* x,
                                const float* w, const float* bias, float* y,
                                Activation act, int64_t begin, int64_t end) {
  for (uint32_t failed = 0;;) {
    const DepthwisePath p = depthwise_path_neon(s, DepthwiseOp::forward, failed);
    if (depthwise_forward_neon_run(p, s, x, w, bias, y, act, begin, end)) return;
    failed |= depthwise_path_bit(p);  // coverage: unreachable (only when scratch allocation fails)
  }  // coverage: unreachable
}

void depthwise_grad_input_neon_f32(const DepthwiseShape& s, const float* gy,
                                   const float* w, float* gx, int64_t begin,
                                   int64_t end) {
  for (uint32_t failed = 0;;) {
    const DepthwisePath p = depthwise_path_neon(s, DepthwiseOp::grad_input, failed);
    if (depthwise_grad_input_neon_run(p, s, gy, w, gx, begin, end)) return;
    failed |= depthwise_path_bit(p);  // coverage: unreachable (only when scratch allocation fails)
  }  // coverage: unreachable
}

void depthwise_grad_weight_neon_f32(const DepthwiseShape& s, const float* gy,
                                    const float* x, float* gw, int64_t begin,
                                    int64_t end) {
  for (uint32_t failed = 0;;) {
    const DepthwisePath p = depthwise_path_neon(s, DepthwiseOp::grad_weight, failed);
    if (depthwise_grad_weight_neon_run(p, s, gy, x, gw, begin, end)) return;
    failed |= depthwise_path_bit(p);  // coverage: unreachable (only when scratch allocation fails)
  }  // coverage: unreachable
}

}  // namespace cpu
}  // namespace mnx
