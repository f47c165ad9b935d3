// AArch64 NEON kernels (float32), same structure as the AVX2 family.
//
// Depthwise kernels (vectors of 4 floats), chosen by depthwise_path_neon()
// (depthwise_neon.cpp; names in ../depthwise_path.h); everything else runs
// the scalar kernels:
//   nchw_kxk_rows     NCHW forward 3x3/5x5/7x7, stride 1 or 2 (same along H
//                     and W), dilation 1, any padding/multiplier: per-thread
//                     ring of zero-padded rows, 8 accumulators per step,
//                     weights in registers (depthwise_nchw_kxk_rows_neon.cpp)
//   nchw_small_planes NCHW multiplier 1, OW < 12, <= 1024 pixels, up to 49
//                     taps, any stride/dilation: all three ops (forward
//                     unless the row-ring kernel takes it) with vectors along
//                     4 channels (depthwise_nchw_neon.cpp)
//   nchw_direct       NCHW stride_w 1 or 2 (any stride_h), up to 49 taps, any
//                     dilation/multiplier (depthwise_nchw_neon.cpp): forward
//                     and grad_input vectorise the row interior (scalar
//                     borders), grad_weight has a vector accumulator per tap,
//                     fixed reduction order
//   nhwc_direct       NHWC, any kernel size (up to 1024 taps), stride,
//                     padding, dilation and multiplier: vectors along C (16
//                     channels per step, then 4, then a scalar tail)
//                     (depthwise_nhwc_neon.cpp); plus the one-pass
//                     grad_weight partial sums per row chunk (multiplier 1),
//                     which the glue calls instead of grad_weight (not routed)
#pragma once

#include "../cpu_kernels.h"

namespace mnx {
namespace cpu {

void depthwise_forward_neon_f32(const DepthwiseShape& s, const float* x,
                                const float* w, const float* bias, float* y,
                                Activation act, int64_t begin, int64_t end);
void depthwise_grad_input_neon_f32(const DepthwiseShape& s, const float* gy,
                                   const float* w, float* gx, int64_t begin,
                                   int64_t end);
void depthwise_grad_weight_neon_f32(const DepthwiseShape& s, const float* gy,
                                    const float* x, float* gw, int64_t begin,
                                    int64_t end);
void gemm_neon_f32(const GemmArgs& g, const float* A, const float* B, float* C,
                   const float* bias, const float* residual, int64_t begin,
                   int64_t end);

// --- depthwise kernel choice (depthwise_neon.cpp; see ../depthwise_path.h)
// The entry points above run depthwise_path_neon(s, op)'s answer. Paths this
// family has: nchw_kxk_rows, nchw_small_planes, nchw_direct, nhwc_direct,
// scalar.
// Whether kernel p of this family can run (s, op); scalar always.
bool depthwise_path_supported_neon(DepthwisePath p, const DepthwiseShape& s,
                                   DepthwiseOp op);
// The kernel for (s, op): MOBILENET_EXT_DEPTHWISE_PATH's path when set and
// supported, else the first supported one in the preference order (see
// depthwise_neon.cpp), never one in `skip` (depthwise_path_bit()s of kernels
// that failed to get scratch); scalar when none is left.
DepthwisePath depthwise_path_neon(const DepthwiseShape& s, DepthwiseOp op,
                                  uint32_t skip = 0);
// Run kernel p, which must be supported for (s, op): false (nothing
// written) when its per-thread scratch could not be had.
bool depthwise_forward_neon_run(DepthwisePath p, const DepthwiseShape& s,
                                const float* x, const float* w, const float* bias,
                                float* y, Activation act, int64_t begin, int64_t end);
bool depthwise_grad_input_neon_run(DepthwisePath p, const DepthwiseShape& s,
                                   const float* gy, const float* w, float* gx,
                                   int64_t begin, int64_t end);
bool depthwise_grad_weight_neon_run(DepthwisePath p, const DepthwiseShape& s,
                                    const float* gy, const float* x, float* gw,
                                    int64_t begin, int64_t end);

// --- the kernels behind the paths ---------------------------------------------
// nchw_kxk_rows (depthwise_nchw_kxk_rows_neon.cpp; returns false when the
// per-thread row ring cannot be allocated; nothing is written then):
bool depthwise_forward_nchw_kxk_rows_neon_supported(const DepthwiseShape& s);
bool depthwise_forward_nchw_kxk_rows_neon(const DepthwiseShape& s,
                                          const float* x, const float* w,
                                          const float* bias, float* y,
                                          Activation act, int64_t begin,
                                          int64_t end);
// nchw_small_planes and nchw_direct (depthwise_nchw_neon.cpp)
bool depthwise_nchw_small_planes_neon_supported(const DepthwiseShape& s);
bool depthwise_nchw_direct_neon_supported(const DepthwiseShape& s);
void depthwise_forward_nchw_small_planes_neon(const DepthwiseShape& s, const float* x,
                                              const float* w, const float* bias, float* y,
                                              Activation act, int64_t begin, int64_t end);
void depthwise_grad_input_nchw_small_planes_neon(const DepthwiseShape& s, const float* gy,
                                                 const float* w, float* gx, int64_t begin,
                                                 int64_t end);
void depthwise_grad_weight_nchw_small_planes_neon(const DepthwiseShape& s, const float* gy,
                                                  const float* x, float* gw, int64_t begin,
                                                  int64_t end);
void depthwise_forward_nchw_direct_neon(const DepthwiseShape& s, const float* x,
                                        const float* w, const float* bias, float* y,
                                        Activation act, int64_t begin, int64_t end);
// returns false (nothing written) when its row buffer cannot be allocated
bool depthwise_grad_input_nchw_direct_neon(const DepthwiseShape& s, const float* gy,
                                           const float* w, float* gx, int64_t begin,
                                           int64_t end);
void depthwise_grad_weight_nchw_direct_neon(const DepthwiseShape& s, const float* gy,
                                            const float* x, float* gw, int64_t begin,
                                            int64_t end);
// nhwc_direct: depthwise_nhwc_neon.cpp (forward / grad_input return false, nothing
// written, when the tap-major weight buffer cannot be allocated)
bool depthwise_nhwc_neon_supported(const DepthwiseShape& s);
bool depthwise_forward_nhwc_neon(const DepthwiseShape& s, const float* x,
                                 const float* w, const float* bias, float* y,
                                 Activation act, int64_t begin, int64_t end);
bool depthwise_grad_input_nhwc_neon(const DepthwiseShape& s, const float* gy,
                                    const float* w, float* gx, int64_t begin,
                                    int64_t end);
void depthwise_grad_weight_nhwc_neon(const DepthwiseShape& s, const float* gy,
                                     const float* x, float* gw, int64_t begin,
                                     int64_t end);
void depthwise_grad_weight_nhwc_partial_neon(const DepthwiseShape& s,
                                             const float* gy, const float* x,
                                             float* partial, int64_t begin,
                                             int64_t end);

int64_t fma_peak_neon_f32(int64_t iters, float* sink);

}  // namespace cpu
}  // namespace mnx
