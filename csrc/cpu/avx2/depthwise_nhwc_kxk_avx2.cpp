// AVX2/FMA depthwise forward for channels_last (NHWC) tensors, square
// 3x3 / 5x5 / 7x7 kernels, stride 1 or 2 (same along H and W), dilation 1,
// multiplier 1, C a multiple of 8: the MobileNet / ConvNeXt cases; and
// grad_input for the same kernels as a flipped correlation.
//
// The forward (one output row (n, oh) per work unit) is the direct row
// kernel, dwkxk_forward_rows of generic/depthwise_nhwc_kxk.h (written once
// for AVX2 and AVX-512; here over VecAvx2, whole vectors): it reads the
// input rows in place, every row in groups of 8 pixels (borders included,
// their taps outside the image skipped), the last group shifted left to
// end at the row's end. Until 2026-12-03 the 5x5 / 7x7 stride-1 forward ran
// the padded ring below instead (the direct kernel then ran its borders
// pixel by pixel); with the borders in groups the direct kernel is faster
// there too: in-process A/B, Zen 5 running these AVX2 kernels, 2 threads,
// the suite's 5x5 / 7x7 stride-1 channels_last shapes, 0.57-0.91x the
// ring's time at batch 32 and 0.77-1.08x (geomean 0.93x) at batch 1.
//
// grad_input is the stride-1 correlation of grad_output with the taps
// flipped and padding K-1-P: at stride 1 the forward; at stride 2 that
// correlation over grad_output zero-dilated by 2 with only the taps that
// land on a grad_output pixel, dwkxk_grad_input_s2_rows of
// generic/depthwise_nhwc_kxk.h. (Until 2026-12-04 stride 2 laid the dilated
// rows into a zeroed ring and ran every tap, 3/4 of them on zeros at 3x3.)

#include "../generic/depthwise_nhwc.h"
#include "../generic/depthwise_nhwc_kxk.h"
#include "../generic/thread_scratch.h"
#include "depthwise_avx2_common.h"

namespace mnx {
namespace cpu {
namespace {

using namespace avx2;

bool forward_supported(const DepthwiseShape& s) {
  return s.layout == Layout::NHWC && s.mult == 1 && s.C % 8 == 0 &&
         s.KH == s.KW && (s.KH == 3 || s.KH == 5 || s.KH == 7) &&
         s.DH == 1 && s.DW == 1 && s.SH == s.SW && (s.SH == 1 || s.SH == 2);
}

// `wt` is the tap-major weight copy [KH * KW][C]. Units: output rows (n, oh).
bool forward_tap_major(const DepthwiseShape& s, const float* x, const float* wt,
                       const float* bias, float* y, Activation act, int64_t begin,
                       int64_t end, bool stream = false) {
#define MNX_DIRECT_CASE(KK, SS)                                        \
  if (s.KH == KK && s.SH == SS) {                                      \
    dwkxk_forward_rows<VecAvx2, KK, SS>(s, x, wt, bias, y, act, begin, end, stream); \
    return true;                                                       \
  }
  MNX_DIRECT_CASE(3, 1)
  MNX_DIRECT_CASE(3, 2)
  MNX_DIRECT_CASE(5, 1)
  MNX_DIRECT_CASE(5, 2)
  MNX_DIRECT_CASE(7, 1)
  MNX_DIRECT_CASE(7, 2)
#undef MNX_DIRECT_CASE
  return false;  // coverage: unreachable (forward_supported() is checked first)
}

// `wf` is the tap-major copy of the flipped weights [KH * KW][C] (tap t holds
// w[c][KH*KW - 1 - t]). Units: grad_input rows (n, ih).
bool grad_input_flipped(const DepthwiseShape& s, const float* gy, const float* wf,
                        float* gx, int64_t begin, int64_t end) {
  if (s.SH == 1) {
    // the forward of grad_output with the flipped taps and padding K-1-P
    return forward_tap_major(flipped_forward_shape(s), gy, wf, nullptr, gx,
                             Activation::None, begin, end, /*stream=*/true);
  }
  dwkxk_grad_input_s2_rows<VecAvx2>(s, gy, wf, gx, begin, end);
  return true;
}

}  // namespace

bool depthwise_nhwc_kxk_avx2_supported(DepthwisePath p, const DepthwiseShape& s,
                                       DepthwiseOp op) {
  const bool gi = op == DepthwiseOp::grad_input;
  if (op == DepthwiseOp::grad_weight) return false;
  if (p == DepthwisePath::nhwc_kxk_avx2)
    return forward_supported(s) && (!gi || (s.PH <= s.KH - 1 && s.PW <= s.KW - 1));
#if MNX_HAVE_AVX512
  if (p == DepthwisePath::nhwc_kxk_avx512 && cpu_use_avx512()) {
    // AMD: nhwc_kxk_avx2 first where it runs, but for 5x5 / 7x7 stride 1
    // with C % 16 == 0 (cpu_nhwc_kxk_avx2_first)
    if (cpu_nhwc_kxk_avx2_first(s) &&  // coverage: needs avx512f
        depthwise_nhwc_kxk_avx2_supported(DepthwisePath::nhwc_kxk_avx2, s, op))  // coverage: needs avx512f+amd
      return false;  // coverage: needs avx512f+amd
    if (!gi) return depthwise_forward_nhwc_kxk_avx512_supported(s);
    // square K x K, dilation 1, padding <= K-1: at stride 1 (any C) the
    // AVX-512 forward of grad_output with the taps flipped and padding
    // K-1-P; at stride 2 dwkxk_grad_input_s2_rows where C % 16 == 0 (its
    // large outputs then go out with non-temporal stores; at C % 16 == 8
    // the AVX2 instance streams and the AVX-512 one does not: [32, 72, 56,
    // 56] 5x5, 3.3 ms on AVX2 against 3.8 ms)
    const int64_t K = s.KH;
    if (s.layout != Layout::NHWC || s.mult != 1 || s.KW != K || s.PH > K - 1 || s.PW > K - 1)
      return false;
    if (s.SH == 2)
      return s.SW == 2 && s.DH == 1 && s.DW == 1 && (K == 3 || K == 5 || K == 7) && s.C % 16 == 0;
    return s.SH == 1 && s.SW == 1 &&
           depthwise_forward_nhwc_kxk_avx512_supported(flipped_forward_shape(s));
  }
#endif
  return false;
}

bool depthwise_forward_nhwc_kxk_avx2(DepthwisePath p, const DepthwiseShape& s,
                                     const float* x, const float* w, const float* bias,
                                     float* y, Activation act, int64_t begin, int64_t end) {
  const float* wt = dwnhwc_tap_major_weights(s, w);
  if (!wt) return false;
#if MNX_HAVE_AVX512
  if (p == DepthwisePath::nhwc_kxk_avx512) {
    depthwise_forward_nhwc_kxk_avx512(s, x, wt, bias, y, act, begin, end, s.stream_out);  // coverage: needs avx512f
    return true;  // coverage: needs avx512f
  }
#endif
  return forward_tap_major(s, x, wt, bias, y, act, begin, end, s.stream_out);
}

bool depthwise_grad_input_nhwc_kxk_avx2(DepthwisePath p, const DepthwiseShape& s,
                                        const float* gy, const float* w, float* gx,
                                        int64_t begin, int64_t end) {
  // tap-major flipped weights [KK][C] for this thread, reused across calls
  const int64_t KK = s.KH * s.KW;
  float* wf = thread_scratch<1>(KK * s.C);
  if (!wf) return false;  // coverage: unreachable (only on std::bad_alloc)
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t i = 0; i < KK; ++i) wf[i * s.C + c] = w[c * KK + KK - 1 - i];
#if MNX_HAVE_AVX512
  if (p == DepthwisePath::nhwc_kxk_avx512) {
    if (s.SH == 2)  // coverage: needs avx512f
      depthwise_grad_input_nhwc_s2_kxk_avx512(s, gy, wf, gx, begin, end);  // coverage: needs avx512f
    else
      depthwise_forward_nhwc_kxk_avx512(flipped_forward_shape(s), gy, wf, nullptr, gx,  // coverage: needs avx512f
                                        Activation::None, begin, end, /*stream=*/true);  // coverage: needs avx512f
    return true;  // coverage: needs avx512f
  }
#endif
  return grad_input_flipped(s, gy, wf, gx, begin, end);
}

}  // namespace cpu
}  // namespace mnx
