// The AVX2 family's own depthwise kernels (float32, x86-64 AVX2 + FMA, and
// the AVX-512 kernel it calls), the ones the other families do not have;
// included only by the AVX2 and AVX-512 translation units. The
// family itself (routing, the kernels every ISA shares, entry points) is
// generic/depthwise_family.h, instantiated in depthwise_avx2.cpp and reached
// through depthwise_family_avx2() (../cpu_kernels.h).
#pragma once

#include <immintrin.h>

#include "../cpu_kernels.h"

namespace mnx {
namespace cpu {

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

// nhwc_kxk_avx2 and nhwc_kxk_avx512 (depthwise_nhwc_kxk_avx2.cpp; the
// AVX-512 kernel itself is ../avx512/depthwise_nhwc_kxk_avx512.cpp): square
// 3x3/5x5/7x7, stride 1 or 2, dilation 1, multiplier 1; nhwc_kxk_avx2 needs
// C % 8 == 0, nhwc_kxk_avx512 cpu_use_avx512(). grad_input with padding
// <= K-1: at stride 1 as the forward of the flipped taps, at stride 2 by
// dwkxk_grad_input_s2_rows (generic/depthwise_nhwc_kxk.h).
bool depthwise_nhwc_kxk_avx2_supported(DepthwisePath p, const DepthwiseShape& s,
                                       DepthwiseOp op);
// Run p (nhwc_kxk_avx2 or nhwc_kxk_avx512, supported for s) with the weights
// [C, 1, K, K]; false (nothing written) when a scratch buffer cannot be had.
bool depthwise_forward_nhwc_kxk_avx2(DepthwisePath p, const DepthwiseShape& s,
                                     const float* x, const float* w, const float* bias,
                                     float* y, Activation act, int64_t begin, int64_t end);
bool depthwise_grad_input_nhwc_kxk_avx2(DepthwisePath p, const DepthwiseShape& s,
                                        const float* gy, const float* w, float* gx,
                                        int64_t begin, int64_t end);

// The AVX-512F forward behind nhwc_kxk_avx512
// (../avx512/depthwise_nhwc_kxk_avx512.cpp, compiled with -mavx512f; call
// only when cpu_use_avx512()): channels_last, square 3x3/5x5/7x7, stride 1
// or 2, dilation 1, multiplier 1, any C; `wt` is the tap-major weight copy
// [KH*KW][C]; stream: large outputs with non-temporal stores (the
// grad_input's use; see dwkxk_forward_rows).
bool depthwise_forward_nhwc_kxk_avx512_supported(const DepthwiseShape& s);
// grad_input of a stride-2 layer (square 3x3/5x5/7x7, padding <= K-1, any C)
// from the flipped tap-major weights [KH*KW][C]; units: grad_input rows.
void depthwise_grad_input_nhwc_s2_kxk_avx512(const DepthwiseShape& s, const float* gy,
                                             const float* wf, float* gx, int64_t begin,
                                             int64_t end);
void depthwise_forward_nhwc_kxk_avx512(const DepthwiseShape& s, const float* x,
                                       const float* wt, const float* bias,
                                       float* y, Activation act, int64_t begin,
                                       int64_t end, bool stream = false);

// The AVX-512F instance of the channels_last weight gradient's partial sums
// (../avx512/depthwise_nhwc_grad_weight_avx512.cpp; call only when
// cpu_use_avx512()), DepthwiseKernels::grad_weight_nhwc_partial's contract.
void depthwise_grad_weight_nhwc_partial_avx512(const DepthwiseShape& s, const float* gy, const float* x,
                                               float* partial, int64_t begin, int64_t end);

// nchw_direct's grad_weight plane kernel for KW <= 7 with a zero-padded copy
// of the input plane (depthwise_nchw_avx2.cpp): null for other shapes, else
// the kernel and in *floats the size of the plane buffer it needs.
using GradWeightPlaneAvx2 = void (*)(const DepthwiseShape&, const float*, const float*,
                                     float*, __m256*);
GradWeightPlaneAvx2 depthwise_grad_weight_nchw_padded_plane_avx2(const DepthwiseShape& s,
                                                                 int64_t* floats);

}  // namespace cpu
}  // namespace mnx
