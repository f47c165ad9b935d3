// The bodies of the eight ops, written once for every backend: argument
// checks (common.h), the device guard, output allocation in the input's
// layout, inputs made contiguous in that layout, then the backend's kernel
// launch. A backend is a struct with
//
//   struct Guard { explicit Guard(const at::Tensor& input); };  device guard
//   static at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions&);
//   static void depthwise_forward(op, s, x, w, b, y, act);
//   static void depthwise_grad_input(op, s, gy, w, gx);
//   static void depthwise_grad_weight(op, s, gy, x, gw);   gw is zeroed
//   static void pointwise_forward(op, s, x, w, b, r, y, act);
//   static void pointwise_grad_input(op, s, gy, w, gx);
//   static void pointwise_grad_weight(op, s, gy, x, gw);   gw is zeroed
//
// (b / r undefined when absent; every tensor already contiguous in s.layout,
// weights contiguous) and registers Ops<Backend> with MNX_REGISTER_OPS.
// Included by cpu_ops.cpp and cuda_ops.cpp only (internal linkage).
#pragma once

#include <ATen/ATen.h>

#include "common.h"

namespace mnx {
namespace glue {
namespace {

template <class B>
struct Ops {
  // The backward ops after their argument checks (which gave s): device
  // guard, gradient allocation, inputs contiguous in s.layout, then B's
  // kernel launch `launch` (B::depthwise_grad_input, B::pointwise_grad_input,
  // ...). grad_input is allocated like the input, grad_weight zeroed like the
  // weight.
  template <class Shape, class Launch>
  static at::Tensor grad_input(Launch launch, const char* op, const Shape& s, const at::Tensor& grad_output,
                               const at::Tensor& input, const at::Tensor& weight) {
    typename B::Guard guard(input);
    auto gx = B::empty(input.sizes(), input.options().memory_format(memory_format_of(s.layout)));
    if (gx.numel() == 0) return gx;
    const auto gy = contiguous_in(grad_output, s.layout);
    const auto w = weight.contiguous();
    launch(op, s, gy, w, gx);
    return gx;
  }

  template <class Shape, class Launch>
  static at::Tensor grad_weight(Launch launch, const char* op, const Shape& s, const at::Tensor& grad_output,
                                const at::Tensor& input, const at::Tensor& weight) {
    typename B::Guard guard(input);
    auto gw = at::zeros(weight.sizes(), weight.options());
    if (s.N == 0) return gw;
    const auto x = contiguous_in(input, s.layout);
    const auto gy = contiguous_in(grad_output, s.layout);
    launch(op, s, gy, x, gw);
    return gw;
  }

  static at::Tensor dw_forward(const char* op, const at::Tensor& input, const at::Tensor& weight,
                               const c10::optional<at::Tensor>& bias, at::IntArrayRef stride,
                               at::IntArrayRef padding, at::IntArrayRef dilation, int64_t activation) {
    const Activation act = check_activation(op, activation);
    const DepthwiseShape s = check_depthwise(op, input, weight, bias, stride, padding, dilation);
    typename B::Guard guard(input);
    auto y = B::empty({s.N, s.C_out(), s.OH, s.OW}, input.options().memory_format(memory_format_of(s.layout)));
    if (y.numel() == 0) return y;
    const auto x = contiguous_in(input, s.layout);
    const auto w = weight.contiguous();
    at::Tensor b;
    if (bias.has_value() && bias->defined()) b = bias->contiguous();
    B::depthwise_forward(op, s, x, w, b, y, act);
    return y;
  }

  static at::Tensor depthwise_conv2d(const at::Tensor& input, const at::Tensor& weight,
                                     const c10::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                     at::IntArrayRef padding, at::IntArrayRef dilation) {
    return dw_forward("depthwise_conv2d", input, weight, bias, stride, padding, dilation, 0);
  }

  static at::Tensor depthwise_conv2d_fused(const at::Tensor& input, const at::Tensor& weight,
                                           const c10::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                           at::IntArrayRef padding, at::IntArrayRef dilation,
                                           int64_t activation) {
    return dw_forward("depthwise_conv2d_fused", input, weight, bias, stride, padding, dilation, activation);
  }

  // grad_input, or grad_weight when weight_grad.
  static at::Tensor dw_backward(const char* op, bool weight_grad, const at::Tensor& grad_output,
                                const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef dilation) {
    const DepthwiseShape s = check_depthwise(op, input, weight, {}, stride, padding, dilation, &grad_output);
    return weight_grad ? grad_weight(B::depthwise_grad_weight, op, s, grad_output, input, weight)
                       : grad_input(B::depthwise_grad_input, op, s, grad_output, input, weight);
  }

  static at::Tensor depthwise_conv2d_backward_input(const at::Tensor& grad_output, const at::Tensor& input,
                                                    const at::Tensor& weight, at::IntArrayRef stride,
                                                    at::IntArrayRef padding, at::IntArrayRef dilation) {
    return dw_backward("depthwise_conv2d_backward_input", false, grad_output, input, weight, stride, padding,
                       dilation);
  }

  static at::Tensor depthwise_conv2d_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                                     const at::Tensor& weight, at::IntArrayRef stride,
                                                     at::IntArrayRef padding, at::IntArrayRef dilation) {
    return dw_backward("depthwise_conv2d_backward_weight", true, grad_output, input, weight, stride, padding,
                       dilation);
  }

  static at::Tensor pw_forward(const char* op, const at::Tensor& input, const at::Tensor& weight,
                               const c10::optional<at::Tensor>& bias, int64_t activation,
                               const c10::optional<at::Tensor>& residual) {
    const Activation act = check_activation(op, activation);
    const PointwiseShape s = check_pointwise(op, input, weight, bias, nullptr, residual);
    typename B::Guard guard(input);
    auto y = B::empty({s.N, s.Cout, s.H, s.W}, input.options().memory_format(memory_format_of(s.layout)));
    if (y.numel() == 0) return y;
    const auto x = contiguous_in(input, s.layout);
    const auto w = weight.contiguous();
    at::Tensor b, r;
    if (bias.has_value() && bias->defined()) b = bias->contiguous();
    if (residual.has_value() && residual->defined()) r = contiguous_in(*residual, s.layout);
    B::pointwise_forward(op, s, x, w, b, r, y, act);
    return y;
  }

  static at::Tensor pointwise_conv2d(const at::Tensor& input, const at::Tensor& weight,
                                     const c10::optional<at::Tensor>& bias) {
    return pw_forward("pointwise_conv2d", input, weight, bias, 0, {});
  }

  static at::Tensor pointwise_conv2d_fused(const at::Tensor& input, const at::Tensor& weight,
                                           const c10::optional<at::Tensor>& bias, int64_t activation,
                                           const c10::optional<at::Tensor>& residual) {
    return pw_forward("pointwise_conv2d_fused", input, weight, bias, activation, residual);
  }

  static at::Tensor pw_backward(const char* op, bool weight_grad, const at::Tensor& grad_output,
                                const at::Tensor& input, const at::Tensor& weight) {
    const PointwiseShape s = check_pointwise(op, input, weight, {}, &grad_output);
    return weight_grad ? grad_weight(B::pointwise_grad_weight, op, s, grad_output, input, weight)
                       : grad_input(B::pointwise_grad_input, op, s, grad_output, input, weight);
  }

  static at::Tensor pointwise_conv2d_backward_input(const at::Tensor& grad_output, const at::Tensor& input,
                                                    const at::Tensor& weight) {
    return pw_backward("pointwise_conv2d_backward_input", false, grad_output, input, weight);
  }

  static at::Tensor pointwise_conv2d_backward_weight(const at::Tensor& grad_output, const at::Tensor& input,
                                                     const at::Tensor& weight) {
    return pw_backward("pointwise_conv2d_backward_weight", true, grad_output, input, weight);
  }
};

}  // namespace
}  // namespace glue
}  // namespace mnx

// Registers the eight ops of Ops<Backend> in a TORCH_LIBRARY_IMPL block.
#define MNX_REGISTER_OPS(m, Backend)                                                                   \
  do {                                                                                                \
    using O = ::mnx::glue::Ops<Backend>;                                                              \
    (m).impl("depthwise_conv2d", &O::depthwise_conv2d);                                               \
    (m).impl("depthwise_conv2d_fused", &O::depthwise_conv2d_fused);                                   \
    (m).impl("depthwise_conv2d_backward_input", &O::depthwise_conv2d_backward_input);                 \
    (m).impl("depthwise_conv2d_backward_weight", &O::depthwise_conv2d_backward_weight);               \
    (m).impl("pointwise_conv2d", &O::pointwise_conv2d);                                               \
    (m).impl("pointwise_conv2d_fused", &O::pointwise_conv2d_fused);                                   \
    (m).impl("pointwise_conv2d_backward_input", &O::pointwise_conv2d_backward_input);                 \
    (m).impl("pointwise_conv2d_backward_weight", &O::pointwise_conv2d_backward_weight);               \
  } while (0)
