// CUDA backend of the mobilenet_ext ops (the op bodies, checks and layout
// rules shared with the CPU are in op_surface.h / common.h): a device guard,
// the current stream, and a launch check after every launch; plus autocast
// registrations so AMP runs our kernels in float16 / bfloat16.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../cuda/cuda_kernels.h"
#include "common.h"
#include "op_surface.h"

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

cudaStream_t stream() { return at::cuda::getCurrentCUDAStream(); }

// ---------------------------------------------------------------------------
// The CUDA backend of the op bodies in op_surface.h: device guard, current
// stream, workspace from the caching allocator, a launch check after every
// launch.
// ---------------------------------------------------------------------------
struct CudaBackend {
  struct Guard {
    explicit Guard(const at::Tensor& input) : g(input.device()) {}
    c10::cuda::CUDAGuard g;
  };
  static at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& opts) {
    return at::empty(sizes, opts);
  }

  static void depthwise_forward(const char* op, const DepthwiseShape& s, const at::Tensor& x, const at::Tensor& w,
                                const at::Tensor& b, at::Tensor& y, Activation act) {
    check_launch(op, cuda::depthwise_forward(dtype_of(op, x), s, x.const_data_ptr(), w.const_data_ptr(),
                                             ptr_or_null(b), y.mutable_data_ptr(), act, stream()));
  }

  static void depthwise_grad_input(const char* op, const DepthwiseShape& s, const at::Tensor& gy,
                                   const at::Tensor& w, at::Tensor& gx) {
    check_launch(op, cuda::depthwise_grad_input(dtype_of(op, gy), s, gy.const_data_ptr(), w.const_data_ptr(),
                                                gx.mutable_data_ptr(), stream()));
  }

  static void depthwise_grad_weight(const char* op, const DepthwiseShape& s, const at::Tensor& gy,
                                    const at::Tensor& x, at::Tensor& gw) {
    const cuda::DType dt = dtype_of(op, x);
    const auto ws = workspace(x, cuda::depthwise_grad_weight_workspace_bytes(dt, s));
    check_launch(op, cuda::depthwise_grad_weight(dt, s, gy.const_data_ptr(), x.const_data_ptr(),
                                                 gw.mutable_data_ptr(), ws_ptr(ws), stream()));
  }

  // C = A B on the tensors as they lie in memory (GemmArgs), with its workspace
  static void gemm(const char* op, const at::Tensor& like, const GemmArgs& g, const void* A, const void* B,
                   void* C, const void* bias, const void* residual) {
    const cuda::DType dt = dtype_of(op, like);
    const auto ws = workspace(like, cuda::gemm_workspace_bytes(dt, g, A, B));
    check_launch(op, cuda::gemm(dt, g, A, B, C, bias, residual, ws_ptr(ws), stream()));
  }

  static void pointwise_forward(const char* op, const PointwiseShape& s, const at::Tensor& x, const at::Tensor& w,
                                const at::Tensor& b, const at::Tensor& r, at::Tensor& y, Activation act) {
    GemmArgs g = pointwise_forward_gemm(s);
    g.act = act;
    const bool nchw = s.layout == Layout::NCHW;
    gemm(op, x, g, nchw ? w.const_data_ptr() : x.const_data_ptr(), nchw ? x.const_data_ptr() : w.const_data_ptr(),
         y.mutable_data_ptr(), ptr_or_null(b), ptr_or_null(r));
  }

  static void pointwise_grad_input(const char* op, const PointwiseShape& s, const at::Tensor& gy,
                                   const at::Tensor& w, at::Tensor& gx) {
    const GemmArgs g = pointwise_grad_input_gemm(s);
    const bool nchw = s.layout == Layout::NCHW;
    gemm(op, gy, g, nchw ? w.const_data_ptr() : gy.const_data_ptr(), nchw ? gy.const_data_ptr() : w.const_data_ptr(),
         gx.mutable_data_ptr(), nullptr, nullptr);
  }

  static void pointwise_grad_weight(const char* op, const PointwiseShape& s, const at::Tensor& gy,
                                    const at::Tensor& x, at::Tensor& gw) {
    gemm(op, x, pointwise_grad_weight_gemm(s), gy.const_data_ptr(), x.const_data_ptr(), gw.mutable_data_ptr(),
         nullptr, nullptr);
  }
};

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
  MNX_REGISTER_OPS(m, CudaBackend);
}

TORCH_LIBRARY_IMPL(mobilenet_ext, AutocastCUDA, m) {
  m.impl("depthwise_conv2d", &depthwise_conv2d_autocast);
  m.impl("depthwise_conv2d_fused", &depthwise_conv2d_fused_autocast);
  m.impl("pointwise_conv2d", &pointwise_conv2d_autocast);
  m.impl("pointwise_conv2d_fused", &pointwise_conv2d_fused_autocast);
}

}  // namespace glue
}  // namespace mnx
