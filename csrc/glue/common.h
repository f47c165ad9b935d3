// Torch glue shared by the CPU and CUDA backends: argument checks, layout
// choice and conversion between tensors and the plain kernel structs.
#pragma once

#include <ATen/ATen.h>

#include <type_traits>

#include "../kernels/params.h"

namespace mnx {
namespace glue {

// Layout the kernels run in for this activation: channels_last when the
// tensor is channels_last-contiguous and not NCHW-contiguous, otherwise NCHW
// (any other strided tensor is copied to NCHW). mobilenet_ext/ops.py mirrors
// this rule in the fake kernels.
Layout layout_of(const at::Tensor& t);
at::MemoryFormat memory_format_of(Layout l);
// `t` contiguous in layout `l` (no copy if it already is).
at::Tensor contiguous_in(const at::Tensor& t, Layout l);

// Validates the arguments of a depthwise op and returns its shape. `op`
// prefixes every message. `grad_output`, when given, must have the output's
// shape.
DepthwiseShape check_depthwise(const char* op, const at::Tensor& input,
                               const at::Tensor& weight,
                               const c10::optional<at::Tensor>& bias,
                               at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation,
                               const at::Tensor* grad_output = nullptr);

// Validates the arguments of conv2d_small_cin_fused (a dense conv, groups =
// 1, dilation 1) and returns its shape; grad_output, when given, as in
// check_depthwise.
SmallCinConvShape check_small_cin_conv(const char* op, const at::Tensor& input, const at::Tensor& weight,
                                       const c10::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                       at::IntArrayRef padding, const at::Tensor* grad_output = nullptr);

struct PointwiseShape {
  int64_t N, Cin, Cout, H, W;
  Layout layout;
};
PointwiseShape check_pointwise(const char* op, const at::Tensor& input,
                               const at::Tensor& weight,
                               const c10::optional<at::Tensor>& bias,
                               const at::Tensor* grad_output = nullptr,
                               const c10::optional<at::Tensor>& residual = {});

Activation check_activation(const char* op, int64_t activation);
void check_dtype_supported(const char* op, const at::Tensor& input);

// The checks every per-channel op (BatchNorm, squeeze-excitation) makes on
// its activation, 4-D with a supported dtype and at least one channel, and
// its N, C, H*W and layout, as a kernel shape struct with those fields
// (cpu::BatchNormShape, cpu::ChannelShape).
template <class Shape>
Shape check_channel_input(const char* op, const at::Tensor& input) {
  TORCH_CHECK_VALUE(input.dim() == 4, op, ": input must be a 4-D tensor [N, C, H, W], got shape ", input.sizes());
  check_dtype_supported(op, input);
  TORCH_CHECK_VALUE(input.size(1) > 0, op, ": input must have at least one channel, got shape ", input.sizes());
  Shape s;
  s.N = input.size(0);
  s.C = input.size(1);
  s.HW = input.size(2) * input.size(3);
  s.layout = layout_of(input);
  return s;
}

// GEMM arguments for the pointwise forward / grad_input / grad_weight on a
// tensor as it lies in memory (see params.h).
GemmArgs pointwise_forward_gemm(const PointwiseShape& s);
GemmArgs pointwise_grad_input_gemm(const PointwiseShape& s);
GemmArgs pointwise_grad_weight_gemm(const PointwiseShape& s);
GemmArgs pointwise_grad_weight_t_gemm(const PointwiseShape& s);  // NHWC: gW^T = X^T gY

// C = act(A B + bias) (+ residual) on the CPU GEMM family the pointwise ops
// use (threads over C's tiles; float32 and float64), for glue that computes
// a small matrix product itself (cpu_ops.cpp).
template <typename T>
void cpu_gemm(const GemmArgs& g, const T* A, const T* B, T* C, const T* bias, const T* residual);

// The float32 or the float64 one of a pair of functions (the CPU kernel
// tables of the two dtypes): f32() for T = float, f64() for T = double.
template <typename T, typename F32, typename F64>
decltype(auto) for_dtype(F32 f32, F64 f64) {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "for_dtype: float or double");
  if constexpr (std::is_same<T, float>::value)
    return f32();
  else
    return f64();
}

}  // namespace glue
}  // namespace mnx
