// CUDA implementations of the mobilenet_ext ops: the same checks and layout
// rules as the CPU backend (common.h), a device guard, the current stream,
// and a launch check after every launch; plus autocast registrations so AMP
// runs our kernels in float16 / bfloat16.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../cuda/cuda_kernels.h"
#include "common.h"

namespace mnx {
namespace glue {
namespace {

cuda::DType dtype_of(const char* op, const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return cuda::DType::F32;
    case at::kDouble:
      return cuda::DType::F64;
    case at::kHalf:
      return cuda::DType::F16;
    case at::kBFloat16:
      return cuda::DType::BF16;
    default:
      TORCH_CHECK_VALUE(false, op, ": unsupported dtype ", t.scalar_type());
  }
}

void check_launch(const char* op, cudaError_t err) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA kernel launch failed: ",
              cudaGetErrorString(err));
}

const void* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr() : nullptr;
}

// Scratch memory for a kernel (split-K / per-chunk partial sums) from
// torch's caching allocator on the current device; used on the current
// stream only, so its stream-ordered reuse is safe.
at::Tensor workspace(const at::Tensor& like, size_t bytes) {
  if (bytes == 0) return at::Tensor();
  return at::empty({static_cast<int64_t>(bytes)},
                   like.options().dtype(at::kByte).memory_format(
                       at::MemoryFormat::Contiguous));
}
void* ws_ptr(const at::Tensor& t) {
  return t.defined() ? t.mutable_data_ptr() : nullptr;
}

at::Tensor dw_forward_impl(const char* op, const at::Tensor& input,
                           const at::Tensor& weight,
                           const c10::optional<at::Tensor>& bias,
                           at::IntArrayRef stride, at::IntArrayRef padding,
                           at::IntArrayRef dilation, int64_t activation) {
  const Activation act = check_activation(op, activation);
  const DepthwiseShape s =
      check_depthwise(op, input, weight, bias, stride, padding, dilation);
  c10::cuda::CUDAGuard guard(input.device());
  auto y = at::empty({s.N, s.C_out(), s.OH, s.OW},
                     input.options().memory_format(memory_format_of(s.layout)));
  if (y.numel() == 0) return y;
  const auto x = contiguous_in(input, s.layout);
  const auto w = weight.contiguous();
  at::Tensor b;
  if (bias.has_value() && bias->defined()) b = bias->contiguous();
  check_launch(op, cuda::depthwise_forward(
                       dtype_of(op, input), s, x.const_data_ptr(),
                       w.const_data_ptr(), ptr_or_null(b), y.mutable_data_ptr(),
                       act, at::cuda::getCurrentCUDAStream()));
  return y;
}

at::Tensor depthwise_conv2d_cuda(const at::Tensor& input,
                                 const at::Tensor& weight,
                                 const c10::optional<at::Tensor>& bias,
                                 at::IntArrayRef stride,
                                 at::IntArrayRef padding,
                                 at::IntArrayRef dilation) {
  return dw_forward_impl("depthwise_conv2d", input, weight, bias, stride,
                         padding, dilation, 0);
}

at::Tensor depthwise_conv2d_fused_cuda(const at::Tensor& input,
                                       const at::Tensor& weight,
                                       const c10::optional<at::Tensor>& bias,
                                       at::IntArrayRef stride,
                                       at::IntArrayRef padding,
                                       at::IntArrayRef dilation,
                                       int64_t activation) {
  return dw_forward_impl("depthwise_conv2d_fused", input, weight, bias,
                         stride, padding, dilation, activation);
}

at::Tensor depthwise_conv2d_backward_input_cuda(const at::Tensor& grad_output,
                                                const at::Tensor& input,
                                                const at::Tensor& weight,
                                                at::IntArrayRef stride,
                                                at::IntArrayRef padding,
                                                at::IntArrayRef dilation) {
  const char* op = "depthwise_conv2d_backward_input";
  const DepthwiseShape s = check_depthwise(op, input, weight, {}, stride,
                                           padding, dilation, &grad_output);
  c10::cuda::CUDAGuard guard(input.device());
  auto gx = at::empty(input.sizes(), input.options().memory_format(
                                         memory_format_of(s.layout)));
  if (gx.numel() == 0) return gx;
  const auto gy = contiguous_in(grad_output, s.layout);
  const auto w = weight.contiguous();
  check_launch(op, cuda::depthwise_grad_input(
                       dtype_of(op, input), s, gy.const_data_ptr(),
                       w.const_data_ptr(), gx.mutable_data_ptr(),
                       at::cuda::getCurrentCUDAStream()));
  return gx;
}

at::Tensor depthwise_conv2d_backward_weight_cuda(const at::Tensor& grad_output,
                                                 const at::Tensor& input,
                                                 const at::Tensor& weight,
                                                 at::IntArrayRef stride,
                                                 at::IntArrayRef padding,
                                                 at::IntArrayRef dilation) {
  const char* op = "depthwise_conv2d_backward_weight";
  const DepthwiseShape s = check_depthwise(op, input, weight, {}, stride,
                                           padding, dilation, &grad_output);
  c10::cuda::CUDAGuard guard(input.device());
  auto gw = at::zeros(weight.sizes(), weight.options());
  if (s.N == 0) return gw;
  const auto x = contiguous_in(input, s.layout);
  const auto gy = contiguous_in(grad_output, s.layout);
  const cuda::DType dt = dtype_of(op, input);
  const auto ws =
      workspace(input, cuda::depthwise_grad_weight_workspace_bytes(dt, s));
  check_launch(op, cuda::depthwise_grad_weight(
                       dt, s, gy.const_data_ptr(), x.const_data_ptr(),
                       gw.mutable_data_ptr(), ws_ptr(ws),
                       at::cuda::getCurrentCUDAStream()));
  return gw;
}

at::Tensor pw_forward_impl(const char* op, const at::Tensor& input,
                           const at::Tensor& weight,
                           const c10::optional<at::Tensor>& bias,
                           int64_t activation,
                           const c10::optional<at::Tensor>& residual) {
  const Activation act = check_activation(op, activation);
  const PointwiseShape s =
      check_pointwise(op, input, weight, bias, nullptr, residual);
  c10::cuda::CUDAGuard guard(input.device());
  auto y = at::empty({s.N, s.Cout, s.H, s.W},
                     input.options().memory_format(memory_format_of(s.layout)));
  if (y.numel() == 0) return y;
  const auto x = contiguous_in(input, s.layout);
  const auto w = weight.contiguous();
  at::Tensor b, r;
  if (bias.has_value() && bias->defined()) b = bias->contiguous();
  if (residual.has_value() && residual->defined())
    r = contiguous_in(*residual, s.layout);
  GemmArgs g = pointwise_forward_gemm(s);
  g.act = act;
  const bool nchw = s.layout == Layout::NCHW;
  const void* A = nchw ? w.const_data_ptr() : x.const_data_ptr();
  const void* B = nchw ? x.const_data_ptr() : w.const_data_ptr();
  const cuda::DType dt = dtype_of(op, input);
  const auto ws = workspace(input, cuda::gemm_workspace_bytes(dt, g, A, B));
  check_launch(op, cuda::gemm(dt, g, A, B, y.mutable_data_ptr(),
                              ptr_or_null(b), ptr_or_null(r), ws_ptr(ws),
                              at::cuda::getCurrentCUDAStream()));
  return y;
}

at::Tensor pointwise_conv2d_cuda(const at::Tensor& input,
                                 const at::Tensor& weight,
                                 const c10::optional<at::Tensor>& bias) {
  return pw_forward_impl("pointwise_conv2d", input, weight, bias, 0, {});
}

at::Tensor pointwise_conv2d_fused_cuda(const at::Tensor& input,
                                       const at::Tensor& weight,
                                       const c10::optional<at::Tensor>& bias,
                                       int64_t activation,
                                       const c10::optional<at::Tensor>& residual) {
  return pw_forward_impl("pointwise_conv2d_fused", input, weight, bias,
                         activation, residual);
}

at::Tensor pointwise_conv2d_backward_input_cuda(const at::Tensor& grad_output,
                                                const at::Tensor& input,
                                                const at::Tensor& weight) {
  const char* op = "pointwise_conv2d_backward_input";
  const PointwiseShape s =
      check_pointwise(op, input, weight, {}, &grad_output);
  c10::cuda::CUDAGuard guard(input.device());
  auto gx = at::empty(input.sizes(), input.options().memory_format(
                                         memory_format_of(s.layout)));
  if (gx.numel() == 0) return gx;
  const auto gy = contiguous_in(grad_output, s.layout);
  const auto w = weight.contiguous();
  const GemmArgs g = pointwise_grad_input_gemm(s);
  const bool nchw = s.layout == Layout::NCHW;
  const void* A = nchw ? w.const_data_ptr() : gy.const_data_ptr();
  const void* B = nchw ? gy.const_data_ptr() : w.const_data_ptr();
  const cuda::DType dt = dtype_of(op, input);
  const auto ws = workspace(input, cuda::gemm_workspace_bytes(dt, g, A, B));
  check_launch(op, cuda::gemm(dt, g, A, B, gx.mutable_data_ptr(), nullptr,
                              nullptr, ws_ptr(ws),
                              at::cuda::getCurrentCUDAStream()));
  return gx;
}

at::Tensor pointwise_conv2d_backward_weight_cuda(const at::Tensor& grad_output,
                                                 const at::Tensor& input,
                                                 const at::Tensor& weight) {
  const char* op = "pointwise_conv2d_backward_weight";
  const PointwiseShape s =
      check_pointwise(op, input, weight, {}, &grad_output);
  c10::cuda::CUDAGuard guard(input.device());
  auto gw = at::zeros(weight.sizes(), weight.options());
  if (s.N == 0) return gw;
  const auto x = contiguous_in(input, s.layout);
  const auto gy = contiguous_in(grad_output, s.layout);
  const GemmArgs g = pointwise_grad_weight_gemm(s);
  const cuda::DType dt = dtype_of(op, input);
  const auto ws = workspace(input, cuda::gemm_workspace_bytes(
                                       dt, g, gy.const_data_ptr(),
                                       x.const_data_ptr()));
  check_launch(op, cuda::gemm(dt, g, gy.const_data_ptr(), x.const_data_ptr(),
                              gw.mutable_data_ptr(), nullptr, nullptr,
                              ws_ptr(ws), at::cuda::getCurrentCUDAStream()));
  return gw;
}

// ---------------------------------------------------------------------------
// Autocast: cast floating inputs to the autocast dtype and redispatch below
// the autocast key (to autograd, then CUDA).
// ---------------------------------------------------------------------------
at::Tensor cast(const at::Tensor& t) {
  return at::autocast::cached_cast(at::autocast::get_autocast_dtype(at::kCUDA),
                                   t, c10::DeviceType::CUDA);
}
c10::optional<at::Tensor> cast(const c10::optional<at::Tensor>& t) {
  if (!t.has_value() || !t->defined()) return t;
  return cast(*t);
}

template <typename Sig>
c10::TypedOperatorHandle<Sig> find_op(const char* name) {
  return c10::Dispatcher::singleton()
      .findSchemaOrThrow(name, "")
      .template typed<Sig>();
}

using DwSig = at::Tensor(const at::Tensor&, const at::Tensor&,
                         const c10::optional<at::Tensor>&, at::IntArrayRef,
                         at::IntArrayRef, at::IntArrayRef);
using DwFusedSig = at::Tensor(const at::Tensor&, const at::Tensor&,
                              const c10::optional<at::Tensor>&, at::IntArrayRef,
                              at::IntArrayRef, at::IntArrayRef, int64_t);
using PwSig = at::Tensor(const at::Tensor&, const at::Tensor&,
                         const c10::optional<at::Tensor>&);
using PwFusedSig = at::Tensor(const at::Tensor&, const at::Tensor&,
                              const c10::optional<at::Tensor>&, int64_t,
                              const c10::optional<at::Tensor>&);

#define MNX_NO_AUTOCAST \
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCUDA)

at::Tensor depthwise_conv2d_autocast(const at::Tensor& input,
                                     const at::Tensor& weight,
                                     const c10::optional<at::Tensor>& bias,
                                     at::IntArrayRef stride,
                                     at::IntArrayRef padding,
                                     at::IntArrayRef dilation) {
  MNX_NO_AUTOCAST;
  static auto op = find_op<DwSig>("mobilenet_ext::depthwise_conv2d");
  return op.call(cast(input), cast(weight), cast(bias), stride, padding,
                 dilation);
}

at::Tensor depthwise_conv2d_fused_autocast(
    const at::Tensor& input, const at::Tensor& weight,
    const c10::optional<at::Tensor>& bias, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, int64_t activation) {
  MNX_NO_AUTOCAST;
  static auto op = find_op<DwFusedSig>("mobilenet_ext::depthwise_conv2d_fused");
  return op.call(cast(input), cast(weight), cast(bias), stride, padding,
                 dilation, activation);
}

at::Tensor pointwise_conv2d_autocast(const at::Tensor& input,
                                     const at::Tensor& weight,
                                     const c10::optional<at::Tensor>& bias) {
  MNX_NO_AUTOCAST;
  static auto op = find_op<PwSig>("mobilenet_ext::pointwise_conv2d");
  return op.call(cast(input), cast(weight), cast(bias));
}

at::Tensor pointwise_conv2d_fused_autocast(
    const at::Tensor& input, const at::Tensor& weight,
    const c10::optional<at::Tensor>& bias, int64_t activation,
    const c10::optional<at::Tensor>& residual) {
  MNX_NO_AUTOCAST;
  static auto op = find_op<PwFusedSig>("mobilenet_ext::pointwise_conv2d_fused");
  return op.call(cast(input), cast(weight), cast(bias), activation,
                 cast(residual));
}

}  // namespace

TORCH_LIBRARY_IMPL(mobilenet_ext, CUDA, m) {
  m.impl("depthwise_conv2d", &depthwise_conv2d_cuda);
  m.impl("depthwise_conv2d_fused", &depthwise_conv2d_fused_cuda);
  m.impl("depthwise_conv2d_backward_input",
         &depthwise_conv2d_backward_input_cuda);
  m.impl("depthwise_conv2d_backward_weight",
         &depthwise_conv2d_backward_weight_cuda);
  m.impl("pointwise_conv2d", &pointwise_conv2d_cuda);
  m.impl("pointwise_conv2d_fused", &pointwise_conv2d_fused_cuda);
  m.impl("pointwise_conv2d_backward_input",
         &pointwise_conv2d_backward_input_cuda);
  m.impl("pointwise_conv2d_backward_weight",
         &pointwise_conv2d_backward_weight_cuda);
}

TORCH_LIBRARY_IMPL(mobilenet_ext, AutocastCUDA, m) {
  m.impl("depthwise_conv2d", &depthwise_conv2d_autocast);
  m.impl("depthwise_conv2d_fused", &depthwise_conv2d_fused_autocast);
  m.impl("pointwise_conv2d", &pointwise_conv2d_autocast);
  m.impl("pointwise_conv2d_fused", &pointwise_conv2d_fused_autocast);
}

}  // namespace glue
}  // namespace mnx
