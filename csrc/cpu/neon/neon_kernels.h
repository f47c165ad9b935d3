// AArch64 NEON kernels (float32), same structure as the AVX2 family.
//
// Depthwise paths (vectors of 4 floats; everything else runs the scalar
// kernels, see depthwise_neon_path()):
//   NCHW forward      3x3/5x5/7x7, stride 1 or 2 (same along H and W),
//                     dilation 1, any padding/multiplier: per-thread ring of
//                     zero-padded rows, 8 accumulators per step, weights in
//                     registers (depthwise_nchw_kxk_rows_neon.cpp);
//                     otherwise stride_w 1 or 2 and up to 49 taps (any
//                     dilation, stride_h, multiplier): vectorised row
//                     interior, scalar borders (depthwise_nchw_neon.cpp)
//   NCHW grad_input   stride_w 1 or 2 (any stride_h), up to 49 taps
//   NCHW grad_weight  stride_w 1 or 2, up to 49 taps: vector accumulator per
//                     tap, fixed reduction order
//   NCHW small planes multiplier 1, OW < 12, <= 1024 pixels, up to 49 taps,
//                     any stride/dilation: all three ops (forward unless the
//                     row-ring kernel takes it) with vectors along 4 channels
//   NHWC all three    any kernel size (up to 1024 taps), stride, padding,
//                     dilation and multiplier: vectors along C (16 channels
//                     per step, then 4, then a scalar tail)
//                     (depthwise_nhwc_neon.cpp); plus the one-pass
//                     grad_weight partial sums per row chunk (multiplier 1)
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

// Layout-specific depthwise families behind the entry points above.
// depthwise_nchw_kxk_rows_neon.cpp (returns false when the per-thread row
// ring cannot be allocated; nothing is written then):
bool depthwise_forward_nchw_kxk_rows_neon_supported(const DepthwiseShape& s);
bool depthwise_forward_nchw_kxk_rows_neon(const DepthwiseShape& s,
                                          const float* x, const float* w,
                                          const float* bias, float* y,
                                          Activation act, int64_t begin,
                                          int64_t end);
// depthwise_nchw_neon.cpp
bool depthwise_nchw_neon_small_plane(const DepthwiseShape& s);
bool depthwise_forward_nchw_neon_supported(const DepthwiseShape& s);
bool depthwise_grad_input_nchw_neon_supported(const DepthwiseShape& s);
bool depthwise_grad_weight_nchw_neon_supported(const DepthwiseShape& s);
void depthwise_forward_nchw_neon(const DepthwiseShape& s, const float* x,
                                 const float* w, const float* bias, float* y,
                                 Activation act, int64_t begin, int64_t end);
// returns false (nothing written) when its row buffer cannot be allocated
bool depthwise_grad_input_nchw_neon(const DepthwiseShape& s, const float* gy,
                                    const float* w, float* gx, int64_t begin,
                                    int64_t end);
void depthwise_grad_weight_nchw_neon(const DepthwiseShape& s, const float* gy,
                                     const float* x, float* gw, int64_t begin,
                                     int64_t end);
// depthwise_nhwc_neon.cpp (forward / grad_input return false, nothing
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

// Name of the path the NEON entry point takes for this shape (op: 0 forward,
// 1 grad_input, 2 grad_weight), e.g. "nchw_rows_k3s2", "nhwc_m1", "scalar".
// It repeats the entry points' supported() checks in their order (it cannot
// see a scratch allocation failing); tests use it to prove that every
// vectorised path is exercised.
const char* depthwise_neon_path(const DepthwiseShape& s, int op);

}  // namespace cpu
}  // namespace mnx
