// x86-64 AVX2 + FMA kernels (float32). Compiled with -mavx2 -mfma in their
// own translation units; only called after dispatch.cpp has checked CPUID.
// Each entry point handles its specialised cases (kernel size, stride,
// layout) and falls back to the scalar kernels for everything else.
#pragma once

#include "../cpu_kernels.h"

namespace mnx {
namespace cpu {

void depthwise_forward_avx2_f32(const DepthwiseShape& s, const float* x,
                                const float* w, const float* bias, float* y,
                                Activation act, int64_t begin, int64_t end);
void depthwise_grad_input_avx2_f32(const DepthwiseShape& s, const float* gy,
                                   const float* w, float* gx, int64_t begin,
                                   int64_t end);
void depthwise_grad_weight_avx2_f32(const DepthwiseShape& s, const float* gy,
                                    const float* x, float* gw, int64_t begin,
                                    int64_t end);
// FMA throughput probe (generic/fma_peak.h): flops done, result to *sink.
int64_t fma_peak_avx2_f32(int64_t iters, float* sink);
void gemm_avx2_f32(const GemmArgs& g, const float* A, const float* B, float* C,
                   const float* bias, const float* residual, int64_t begin,
                   int64_t end);

// Layout-specific depthwise families behind the entry points above
// (depthwise_nchw_avx2.cpp, depthwise_nhwc_avx2.cpp). The NHWC ones return
// false when their per-thread scratch buffer cannot be allocated.
bool depthwise_nchw_avx2_supported(const DepthwiseShape& s);
bool depthwise_grad_input_nchw_avx2_supported(const DepthwiseShape& s);
void depthwise_forward_nchw_avx2(const DepthwiseShape& s, const float* x,
                                 const float* w, const float* bias, float* y,
                                 Activation act, int64_t begin, int64_t end);
void depthwise_grad_input_nchw_avx2(const DepthwiseShape& s, const float* gy,
                                    const float* w, float* gx, int64_t begin,
                                    int64_t end);
void depthwise_grad_weight_nchw_avx2(const DepthwiseShape& s, const float* gy,
                                     const float* x, float* gw, int64_t begin,
                                     int64_t end);
// Square 3x3/5x5/7x7, stride 1 or 2, dilation 1 (depthwise_nchw_kxk_rows_avx2.cpp);
// returns false when its per-thread row ring cannot be allocated.
bool depthwise_forward_nchw_kxk_rows_avx2_supported(const DepthwiseShape& s);
bool depthwise_forward_nchw_kxk_rows_avx2(const DepthwiseShape& s,
                                          const float* x, const float* w,
                                          const float* bias, float* y,
                                          Activation act, int64_t begin,
                                          int64_t end);
// Square 3x3/5x5/7x7, stride 1 or 2, dilation 1, multiplier 1, on blocks of
// 8 channels interleaved to [column][8] (depthwise_nchw_c8_kxk_avx2.cpp);
// returns false when its per-thread scratch cannot be allocated.
bool depthwise_forward_nchw_c8_kxk_avx2_supported(const DepthwiseShape& s);
bool depthwise_forward_nchw_c8_kxk_avx2(const DepthwiseShape& s, const float* x,
                                        const float* w, const float* bias,
                                        float* y, Activation act, int64_t begin,
                                        int64_t end);
// grad_input (stride 1 or 2, padding <= K-1) as the stride-1 correlation of
// grad_output zero-dilated by the stride with the taps flipped.
bool depthwise_grad_input_nchw_c8_kxk_avx2_supported(const DepthwiseShape& s);
bool depthwise_grad_input_nchw_c8_kxk_avx2(const DepthwiseShape& s,
                                           const float* gy, const float* w,
                                           float* gx, int64_t begin,
                                           int64_t end);
// The same blocks for grad_weight (units: blocks of 8 channels).
bool depthwise_grad_weight_nchw_c8_kxk_avx2(const DepthwiseShape& s,
                                            const float* gy, const float* x,
                                            float* gw, int64_t begin,
                                            int64_t end);
bool depthwise_nhwc_avx2_supported(const DepthwiseShape& s);
// Square 3x3/5x5/7x7, stride 1 or 2, dilation 1, C % 8 == 0
// (depthwise_nhwc_kxk_avx2.cpp); `wt` is the tap-major weight copy [KH*KW][C].
// Return false when their per-thread row ring cannot be allocated.
bool depthwise_forward_nhwc_kxk_avx2_supported(const DepthwiseShape& s);
bool depthwise_forward_nhwc_kxk_avx2(const DepthwiseShape& s, const float* x,
                                     const float* wt, const float* bias,
                                     float* y, Activation act, int64_t begin,
                                     int64_t end);
// grad_input for those kernels with padding <= K-1; `wf` is the tap-major
// copy of the flipped weights.
bool depthwise_grad_input_nhwc_kxk_avx2_supported(const DepthwiseShape& s);
bool depthwise_grad_input_nhwc_kxk_avx2(const DepthwiseShape& s, const float* gy,
                                        const float* wf, float* gx,
                                        int64_t begin, int64_t end);
bool depthwise_forward_nhwc_avx2(const DepthwiseShape& s, const float* x,
                                 const float* w, const float* bias, float* y,
                                 Activation act, int64_t begin, int64_t end);
bool depthwise_grad_input_nhwc_avx2(const DepthwiseShape& s, const float* gy,
                                    const float* w, float* gx, int64_t begin,
                                    int64_t end);
void depthwise_grad_weight_nhwc_partial_avx2(const DepthwiseShape& s,
                                             const float* gy, const float* x,
                                             float* partial, int64_t begin,
                                             int64_t end);
void depthwise_grad_weight_nhwc_avx2(const DepthwiseShape& s, const float* gy,
                                     const float* x, float* gw, int64_t begin,
                                     int64_t end);

}  // namespace cpu
}  // namespace mnx
