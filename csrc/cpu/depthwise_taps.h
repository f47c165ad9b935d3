// The tap loops of the depthwise convolution, written once for the scalar
// reference (scalar/depthwise_scalar.cpp) and the kernels written over the
// vector layer (generic/depthwise_nchw.h, generic/depthwise_nhwc.h).
// Torch-free and free of vector code. Taps are visited in (kh, kw) order,
// which the kernels' FMA chains rely on.
#pragma once

#include <cstdint>

#include "../kernels/params.h"

namespace mnx {
namespace cpu {
namespace {  // internal linkage: see vec/vec.h

// f(kh, kw, ih, iw) for each tap of output pixel (oh, ow) whose input pixel
// ih = oh*SH - PH + kh*DH, iw = ow*SW - PW + kw*DW lies inside the input.
template <class F>
inline void dw_for_each_input_tap(const DepthwiseShape& s, int64_t oh, int64_t ow, F&& f) {
  for (int64_t kh = 0; kh < s.KH; ++kh) {
    const int64_t ih = oh * s.SH - s.PH + kh * s.DH;
    if (ih < 0 || ih >= s.H) continue;
    for (int64_t kw = 0; kw < s.KW; ++kw) {
      const int64_t iw = ow * s.SW - s.PW + kw * s.DW;
      if (iw < 0 || iw >= s.W) continue;
      f(kh, kw, ih, iw);
    }
  }
}

// The transposed map: f(kh, kw, oh, ow) for each tap through which input
// pixel (ih, iw) reaches an output pixel (oh, ow) of the output.
template <class F>
inline void dw_for_each_output_tap(const DepthwiseShape& s, int64_t ih, int64_t iw, F&& f) {
  for (int64_t kh = 0; kh < s.KH; ++kh) {
    const int64_t th = ih + s.PH - kh * s.DH;  // oh * SH
    if (th < 0 || th % s.SH) continue;
    const int64_t oh = th / s.SH;
    if (oh >= s.OH) continue;
    for (int64_t kw = 0; kw < s.KW; ++kw) {
      const int64_t tw = iw + s.PW - kw * s.DW;  // ow * SW
      if (tw < 0 || tw % s.SW) continue;
      const int64_t ow = tw / s.SW;
      if (ow >= s.OW) continue;
      f(kh, kw, oh, ow);
    }
  }
}

}  // namespace
}  // namespace cpu
}  // namespace mnx
