// Index arithmetic of the depthwise kernels shared by the CPU kernels
// (csrc/cpu) and the CUDA kernels (csrc/cuda). Torch-free, host and device.
#pragma once

#include <cstdint>

#include "host_device.h"
#include "params.h"

namespace mnx {

// Transposed convolution along one dimension: the output position o with
// o * S - P + k * D == i for tap k, or -1 when there is none in [0, O).
MNX_HD int64_t src_index(int64_t i, int64_t k, int64_t S, int64_t P,
                         int64_t D, int64_t O) {
  const int64_t t = i + P - k * D;
  if (t < 0 || t % S != 0) return -1;
  const int64_t o = t / S;
  return o < O ? o : -1;
}

// f(kh, kw, ih, iw) for each tap (kh, kw) of a kh_n x kw_n kernel through
// which output pixel (oh, ow) reads an input pixel (ih, iw) inside the image
// (taps on the zero padding skipped), in (kh, kw) order. On the device the
// loops are unrolled where kh_n and kw_n are compile-time constants.
template <class F>
MNX_HD void for_each_input_tap(const DepthwiseShape& s, int64_t oh, int64_t ow, int kh_n, int kw_n,
                               F&& f) {
  const int64_t ih0 = oh * s.SH - s.PH, iw0 = ow * s.SW - s.PW;
  MNX_UNROLL
  for (int kh = 0; kh < kh_n; ++kh) {
    const int64_t ih = ih0 + kh * s.DH;
    if (ih < 0 || ih >= s.H) continue;
    MNX_UNROLL
    for (int kw = 0; kw < kw_n; ++kw) {
      const int64_t iw = iw0 + kw * s.DW;
      if (iw < 0 || iw >= s.W) continue;
      f(kh, kw, ih, iw);
    }
  }
}

// f(kh, kw, oh, ow) for each tap through which input pixel (ih, iw) reaches
// an output pixel, in (kh, kw) order (src_index on both axes): the taps of
// the depthwise grad_input.
template <class F>
MNX_HD void for_each_grad_tap(const DepthwiseShape& s, int64_t ih, int64_t iw, F&& f) {
  for (int64_t kh = 0; kh < s.KH; ++kh) {
    const int64_t oh = src_index(ih, kh, s.SH, s.PH, s.DH, s.OH);
    if (oh < 0) continue;
    for (int64_t kw = 0; kw < s.KW; ++kw) {
      const int64_t ow = src_index(iw, kw, s.SW, s.PW, s.DW, s.OW);
      if (ow >= 0) f(kh, kw, oh, ow);
    }
  }
}

// i = ((d0 * e1 + d1) * e2 + d2) * e3 + d3 -> (d0, d1, d2, d3), innermost
// dimension first.
MNX_HD void unflatten4(int64_t i, int64_t e1, int64_t e2, int64_t e3,
                       int64_t* d0, int64_t* d1, int64_t* d2, int64_t* d3) {
  *d3 = i % e3;
  int64_t r = i / e3;
  *d2 = r % e2;
  r /= e2;
  *d1 = r % e1;
  *d0 = r / e1;
}

// (n, c, h, w) of the flat index i of a [N, C, H, W] tensor stored NCHW or,
// when NHWC, channels-last (c fastest).
template <bool NHWC>
MNX_HD void unflatten_nchw(int64_t i, int64_t C, int64_t H, int64_t W,
                           int64_t* n, int64_t* c, int64_t* h, int64_t* w) {
  if (NHWC)
    unflatten4(i, H, W, C, n, h, w, c);
  else
    unflatten4(i, C, H, W, n, c, h, w);
}

}  // namespace mnx
