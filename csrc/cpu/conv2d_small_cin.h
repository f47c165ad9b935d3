// Dense 2-D convolution with few input channels (groups = 1), the network
// stem (e.g. MobileNet's 3 -> 32 or 3 -> 16 channels, 3x3, stride 2), with
// the bias and activation applied as the output is written. Torch-free.
//
// PyTorch runs this through oneDNN with reorders of the input and output to
// a blocked layout and back (three fresh buffers per call); the kernels here
// read the input as it lies (NCHW or NHWC) and write the output once.
//
// Layout: input x [N, Cin, H, W] and output y [N, Cout, OH, OW] both in
// `layout` (NCHW or NHWC); weight w [Cout, Cin, KH, KW] (PyTorch's order),
// bias [Cout] or null; dilation 1, zero padding.
//
// The shape is SmallCinConvShape (../kernels/params.h): one work unit = one
// (n, oh) output row, all output channels; units are independent, so any
// split over threads gives the same bits.
//
// Weight gradient (training the stem; the input of a network's first layer
// needs no gradient, so there is no grad_input kernel): over the output rows
// [begin, end), gw[co, ci, kh, kw] = sum gy[n, co, oh, ow] * x[n, ci, oh * SH
// - PH + kh, ow * SW - PW + kw] (zero outside the image) and gb[co] = sum
// gy[n, co, oh, ow], summed row by row in row order (each row's sum over its
// pixels first, then added to the total), so the result depends on [begin,
// end) only; the glue cuts the rows into chunks fixed by the shape and adds
// the chunks' sums in chunk order (deterministic for any thread count).
#pragma once

#include <cstdint>

#include "../kernels/params.h"

namespace mnx {
namespace cpu {

template <typename T>
struct SmallCinConvKernels {
  // y = act(conv(x, w) + bias) for output rows [begin, end); false (nothing
  // written) when the per-thread scratch could not be had
  bool (*forward)(const SmallCinConvShape& s, const T* x, const T* w, const T* bias, T* y,
                  Activation act, int64_t begin, int64_t end);
  // gw [Cout, Cin, KH, KW] and gb [Cout] (gb may be null) overwritten with
  // the sums over output rows [begin, end); false (nothing written) when the
  // per-thread scratch could not be had
  bool (*grad_weight)(const SmallCinConvShape& s, const T* x, const T* gy, T* gw, T* gb, int64_t begin,
                      int64_t end);
  const char* isa;
};

// Portable reference (any T; the float64 path and the oracle of the tests).
template <typename T>
bool conv2d_small_cin_forward_scalar(const SmallCinConvShape& s, const T* x, const T* w, const T* bias, T* y,
                                     Activation act, int64_t begin, int64_t end);
template <typename T>
bool conv2d_small_cin_grad_weight_scalar(const SmallCinConvShape& s, const T* x, const T* gy, T* gw, T* gb,
                                         int64_t begin, int64_t end);

#if defined(__x86_64__) || defined(_M_X64)
const SmallCinConvKernels<float>& conv2d_small_cin_kernels_avx2();  // avx2/conv2d_small_cin_avx2.cpp
const SmallCinConvKernels<float>& conv2d_small_cin_kernels_avx512();  // avx512/conv2d_small_cin_avx512.cpp
#endif
#if defined(__aarch64__)
const SmallCinConvKernels<float>& conv2d_small_cin_kernels_neon();  // neon/conv2d_small_cin_neon.cpp
#endif

// Selected family (conv2d_small_cin_dispatch.cpp): the AVX2 (AVX-512 when
// cpu_use_avx512()) or NEON instantiation of generic/conv2d_small_cin.h for
// float32 (same rule as the other families: MOBILENET_EXT_ISA=scalar forces
// the reference), the scalar reference for float64.
const SmallCinConvKernels<float>& conv2d_small_cin_kernels_f32();
const SmallCinConvKernels<float>& conv2d_small_cin_kernels_scalar_f32();
const SmallCinConvKernels<double>& conv2d_small_cin_kernels_f64();

}  // namespace cpu
}  // namespace mnx
