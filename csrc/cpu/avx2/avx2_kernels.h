// x86-64 AVX2 + FMA kernels (float32). Compiled with -mavx2 -mfma in their
// own translation units; only called after dispatch.cpp has checked CPUID.
// The depthwise entry points run the kernel depthwise_path_avx2() names
// (specialised by kernel size, stride, layout; the scalar kernels for
// everything else).
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

// --- depthwise kernel choice (depthwise_avx2.cpp; see ../depthwise_path.h)
// The entry points above run depthwise_path_avx2(s, op)'s answer. Paths this
// family has: nchw_c8_kxk, nchw_kxk_rows, nchw_small_planes, nchw_direct,
// nhwc_kxk_avx512 (only when cpu_use_avx512()), nhwc_kxk_avx2, nhwc_direct,
// scalar.
// Whether kernel p of this family can run (s, op): its own shape limits
// (for nhwc_kxk_avx512 also cpu_use_avx512()); scalar always.
bool depthwise_path_supported_avx2(DepthwisePath p, const DepthwiseShape& s,
                                   DepthwiseOp op);
// The kernel for (s, op): MOBILENET_EXT_DEPTHWISE_PATH's path when set and
// supported, else the first supported one in the preference order (see
// depthwise_avx2.cpp), never one in `skip` (a set of depthwise_path_bit()s:
// kernels that failed to get scratch); scalar when none is left.
DepthwisePath depthwise_path_avx2(const DepthwiseShape& s, DepthwiseOp op,
                                  uint32_t skip = 0);
// Run kernel p, which must be supported for (s, forward / grad_input /
// grad_weight): false (nothing written) when its per-thread scratch could
// not be had. Tests use them to run every kernel directly.
bool depthwise_forward_avx2_run(DepthwisePath p, const DepthwiseShape& s,
                                const float* x, const float* w, const float* bias,
                                float* y, Activation act, int64_t begin, int64_t end);
bool depthwise_grad_input_avx2_run(DepthwisePath p, const DepthwiseShape& s,
                                   const float* gy, const float* w, float* gx,
                                   int64_t begin, int64_t end);
bool depthwise_grad_weight_avx2_run(DepthwisePath p, const DepthwiseShape& s,
                                    const float* gy, const float* x, float* gw,
                                    int64_t begin, int64_t end);

// --- the kernels behind the paths ---------------------------------------------
// depthwise_nchw_avx2.cpp: nchw_small_planes (all three ops) and nchw_direct
// (forward and grad_weight stride_w 1 or 2; grad_input stride 1 or stride_w
// 2); up to 49 taps.
bool depthwise_nchw_small_planes_avx2_supported(const DepthwiseShape& s);
bool depthwise_nchw_direct_avx2_supported(const DepthwiseShape& s);
bool depthwise_grad_input_nchw_direct_avx2_supported(const DepthwiseShape& s);
void depthwise_forward_nchw_small_planes_avx2(const DepthwiseShape& s, const float* x,
                                              const float* w, const float* bias, float* y,
                                              Activation act, int64_t begin, int64_t end);
void depthwise_grad_input_nchw_small_planes_avx2(const DepthwiseShape& s, const float* gy,
                                                 const float* w, float* gx, int64_t begin,
                                                 int64_t end);
void depthwise_grad_weight_nchw_small_planes_avx2(const DepthwiseShape& s, const float* gy,
                                                  const float* x, float* gw, int64_t begin,
                                                  int64_t end);
void depthwise_forward_nchw_direct_avx2(const DepthwiseShape& s, const float* x,
                                        const float* w, const float* bias, float* y,
                                        Activation act, int64_t begin, int64_t end);
// returns false (nothing written) when the stride-2 row buffer cannot be had
bool depthwise_grad_input_nchw_direct_avx2(const DepthwiseShape& s, const float* gy,
                                           const float* w, float* gx, int64_t begin,
                                           int64_t end);
void depthwise_grad_weight_nchw_direct_avx2(const DepthwiseShape& s, const float* gy,
                                            const float* x, float* gw, int64_t begin,
                                            int64_t end);
// nchw_kxk_rows: square 3x3/5x5/7x7, stride 1 or 2, dilation 1
// (depthwise_nchw_kxk_rows_avx2.cpp); returns false when its per-thread row ring cannot be allocated.
bool depthwise_forward_nchw_kxk_rows_avx2_supported(const DepthwiseShape& s);
bool depthwise_forward_nchw_kxk_rows_avx2(const DepthwiseShape& s,
                                          const float* x, const float* w,
                                          const float* bias, float* y,
                                          Activation act, int64_t begin,
                                          int64_t end);
// nchw_c8_kxk: square 3x3/5x5/7x7, stride 1 or 2, dilation 1, multiplier 1,
// on blocks of 8 channels interleaved to [column][8] (depthwise_nchw_c8_kxk_avx2.cpp);
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
// The same blocks for grad_weight (units: blocks of 8 channels); it has no
// supported() of its own: the routing gates it by the forward's.
bool depthwise_grad_weight_nchw_c8_kxk_avx2(const DepthwiseShape& s,
                                            const float* gy, const float* x,
                                            float* gw, int64_t begin,
                                            int64_t end);
// nhwc_kxk_avx2: square 3x3/5x5/7x7, stride 1 or 2, dilation 1, C % 8 == 0
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
// depthwise_nhwc_avx2.cpp: nhwc_direct (multiplier 1, up to 1024 taps), and
// the tap-major weights for nhwc_kxk_avx2 / nhwc_kxk_avx512.
bool depthwise_nhwc_direct_avx2_supported(const DepthwiseShape& s);
// cpu_use_avx512() and the AVX-512 forward takes s (the forward of the
// flipped taps for grad_input: stride 1, padding <= K-1)
bool depthwise_forward_nhwc_avx512_usable(const DepthwiseShape& s);
bool depthwise_grad_input_nhwc_avx512_usable(const DepthwiseShape& s);
// Run NHWC kernel p (nhwc_kxk_avx512, nhwc_kxk_avx2 or nhwc_direct; must be
// supported); false (nothing written) when a scratch buffer cannot be had.
bool depthwise_forward_nhwc_avx2(DepthwisePath p, const DepthwiseShape& s, const float* x,
                                 const float* w, const float* bias, float* y,
                                 Activation act, int64_t begin, int64_t end);
bool depthwise_grad_input_nhwc_avx2(DepthwisePath p, const DepthwiseShape& s, const float* gy,
                                    const float* w, float* gx, int64_t begin,
                                    int64_t end);
// The NHWC multiplier-1 grad_weight as partial sums per row chunk
// (DepthwiseKernels::grad_weight_nhwc_partial): the torch glue calls it
// instead of grad_weight for those shapes, so it is outside the routing.
// depthwise_grad_weight_nhwc_avx2 is nhwc_direct's grad_weight.
void depthwise_grad_weight_nhwc_partial_avx2(const DepthwiseShape& s,
                                             const float* gy, const float* x,
                                             float* partial, int64_t begin,
                                             int64_t end);
void depthwise_grad_weight_nhwc_avx2(const DepthwiseShape& s, const float* gy,
                                     const float* x, float* gw, int64_t begin,
                                     int64_t end);

}  // namespace cpu
}  // namespace mnx
