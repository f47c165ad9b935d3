#include "common.h"

#include <c10/util/Exception.h>

#include <sstream>

namespace mnx {
namespace glue {

Layout layout_of(const at::Tensor& t) {
  if (t.dim() == 4 && !t.is_contiguous() &&
      t.is_contiguous(at::MemoryFormat::ChannelsLast))
    return Layout::NHWC;
  return Layout::NCHW;
}

at::MemoryFormat memory_format_of(Layout l) {
  return l == Layout::NHWC ? at::MemoryFormat::ChannelsLast
                           : at::MemoryFormat::Contiguous;
}

at::Tensor contiguous_in(const at::Tensor& t, Layout l) {
  return t.contiguous(memory_format_of(l));
}

static std::string dtype_name(const at::Tensor& t) {
  std::ostringstream os;
  os << t.scalar_type();
  return os.str();
}

void check_dtype_supported(const char* op, const at::Tensor& input) {
  const auto st = input.scalar_type();
  if (input.device().is_cpu()) {
    TORCH_CHECK_VALUE(st == at::kFloat || st == at::kDouble, op,
                      ": input must be float32 or float64 on CPU, got ",
                      dtype_name(input));
  } else {
    TORCH_CHECK_VALUE(st == at::kFloat || st == at::kDouble ||
                          st == at::kHalf || st == at::kBFloat16,
                      op,
                      ": input must be float32, float64, float16 or bfloat16 "
                      "on CUDA, got ",
                      dtype_name(input));
  }
}

static void check_same(const char* op, const char* name, const at::Tensor& t,
                       const at::Tensor& input) {
  TORCH_CHECK_VALUE(t.scalar_type() == input.scalar_type(), op, ": ", name,
                    " must have the input's dtype ", dtype_name(input),
                    ", got ", dtype_name(t));
  TORCH_CHECK_VALUE(t.device() == input.device(), op, ": ", name,
                    " must be on the input's device ", input.device(),
                    ", got ", t.device());
}

// grad_output (when given) must be on the input's device, of its dtype,
// and have the op's output shape `out`
static void check_grad_output(const char* op, const at::Tensor* grad_output, const at::Tensor& input,
                              at::IntArrayRef out) {
  if (!grad_output) return;
  check_same(op, "grad_output", *grad_output, input);
  TORCH_CHECK_VALUE(grad_output->sizes() == out, op, ": grad_output must have the output's shape ", out,
                    ", got ", grad_output->sizes());
}

static void check_pair(const char* op, const char* name, at::IntArrayRef v,
                       int64_t min) {
  TORCH_CHECK_VALUE(v.size() == 2, op, ": ", name,
                    " must have 2 elements (h, w), got ", v.size());
  TORCH_CHECK_VALUE(v[0] >= min && v[1] >= min, op, ": ", name,
                    " must be >= ", min, ", got ", v);
  // keeps every index expression (e.g. dilation * (k - 1)) far from int64
  // overflow
  constexpr int64_t kMax = (int64_t{1} << 31) - 1;
  TORCH_CHECK_VALUE(v[0] <= kMax && v[1] <= kMax, op, ": ", name,
                    " must be < 2^31, got ", v);
}

static void check_input4d(const char* op, const at::Tensor& input) {
  TORCH_CHECK_VALUE(input.dim() == 4, op,
                    ": input must be a 4-D tensor [N, C, H, W], got a ",
                    input.dim(), "-D tensor of shape ", input.sizes());
  check_dtype_supported(op, input);
  TORCH_CHECK_VALUE(input.size(1) >= 1, op,
                    ": input must have at least one channel, got shape ",
                    input.sizes());
}

// A conv weight's kernel size (>= 1) and the stride (>= 1) and padding (>= 0)
// pairs, shared by the depthwise and the dense (small-Cin) checks.
static void check_kernel_stride_padding(const char* op, const at::Tensor& weight, at::IntArrayRef stride,
                                        at::IntArrayRef padding) {
  TORCH_CHECK_VALUE(weight.size(2) >= 1 && weight.size(3) >= 1, op,
                    ": weight kernel size must be >= 1, got shape ", weight.sizes());
  check_pair(op, "stride", stride, 1);
  check_pair(op, "padding", padding, 0);
}

// The geometry both conv shapes share (DepthwiseShape, SmallCinConvShape):
// input N, H, W, kernel, stride and padding.
template <typename Shape>
static void fill_geometry(Shape& s, const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
                          at::IntArrayRef padding) {
  s.N = input.size(0);
  s.H = input.size(2);
  s.W = input.size(3);
  s.KH = weight.size(2);
  s.KW = weight.size(3);
  s.SH = stride[0];
  s.SW = stride[1];
  s.PH = padding[0];
  s.PW = padding[1];
}

SmallCinConvShape check_small_cin_conv(const char* op, const at::Tensor& input, const at::Tensor& weight,
                                       const c10::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                       at::IntArrayRef padding, const at::Tensor* grad_output) {
  check_input4d(op, input);
  check_same(op, "weight", weight, input);
  const int64_t C = input.size(1);
  TORCH_CHECK_VALUE(weight.dim() == 4 && weight.size(0) >= 1 && weight.size(1) == C, op,
                    ": weight must be a dense conv weight [C_out, C_in, kh, kw] with C_in = ", C,
                    " input channels (groups = 1), got shape ", weight.sizes());
  check_kernel_stride_padding(op, weight, stride, padding);
  SmallCinConvShape s;
  fill_geometry(s, input, weight, stride, padding);
  s.Cin = C;
  s.Cout = weight.size(0);
  TORCH_CHECK_VALUE(s.H + 2 * s.PH >= s.KH && s.W + 2 * s.PW >= s.KW, op,
                    ": output size would be < 1: padded input ", s.H + 2 * s.PH, "x", s.W + 2 * s.PW,
                    " is smaller than the kernel ", s.KH, "x", s.KW, " (input shape ", input.sizes(),
                    ", weight shape ", weight.sizes(), ")");
  s.OH = conv_out_size(s.H, s.KH, s.SH, s.PH, 1);
  s.OW = conv_out_size(s.W, s.KW, s.SW, s.PW, 1);
  if (bias.has_value() && bias->defined()) {
    check_same(op, "bias", *bias, input);
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == s.Cout, op, ": bias must have shape [", s.Cout,
                      "], got ", bias->sizes());
  }
  check_grad_output(op, grad_output, input, {s.N, s.Cout, s.OH, s.OW});
  s.layout = s.out_layout = layout_of(input);
  return s;
}

DepthwiseShape check_depthwise(const char* op, const at::Tensor& input,
                               const at::Tensor& weight,
                               const c10::optional<at::Tensor>& bias,
                               at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation,
                               const at::Tensor* grad_output) {
  check_input4d(op, input);
  check_same(op, "weight", weight, input);
  const int64_t C = input.size(1);
  TORCH_CHECK_VALUE(weight.dim() == 4 && weight.size(1) == 1 &&
                        weight.size(0) >= 1 && weight.size(0) % C == 0,
                    op,
                    ": weight must be a depthwise weight [C*m, 1, kh, kw] "
                    "with C = ",
                    C, " input channels, got shape ", weight.sizes());
  check_kernel_stride_padding(op, weight, stride, padding);
  check_pair(op, "dilation", dilation, 1);
  DepthwiseShape s;
  fill_geometry(s, input, weight, stride, padding);
  s.C = C;
  s.mult = weight.size(0) / C;
  s.DH = dilation[0];
  s.DW = dilation[1];
  const int64_t effh = s.DH * (s.KH - 1) + 1, effw = s.DW * (s.KW - 1) + 1;
  TORCH_CHECK_VALUE(s.H + 2 * s.PH >= effh && s.W + 2 * s.PW >= effw, op,
                    ": output size would be < 1: padded input ",
                    s.H + 2 * s.PH, "x", s.W + 2 * s.PW,
                    " is smaller than the dilated kernel ", effh, "x", effw,
                    " (input shape ", input.sizes(), ", weight shape ",
                    weight.sizes(), ")");
  s.OH = conv_out_size(s.H, s.KH, s.SH, s.PH, s.DH);
  s.OW = conv_out_size(s.W, s.KW, s.SW, s.PW, s.DW);
  if (bias.has_value() && bias->defined()) {
    check_same(op, "bias", *bias, input);
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == s.C_out(), op,
                      ": bias must have shape [", s.C_out(), "], got ",
                      bias->sizes());
  }
  check_grad_output(op, grad_output, input, {s.N, s.C_out(), s.OH, s.OW});
  s.layout = layout_of(input);
  return s;
}

PointwiseShape check_pointwise(const char* op, const at::Tensor& input,
                               const at::Tensor& weight,
                               const c10::optional<at::Tensor>& bias,
                               const at::Tensor* grad_output,
                               const c10::optional<at::Tensor>& residual) {
  check_input4d(op, input);
  check_same(op, "weight", weight, input);
  const int64_t C = input.size(1);
  TORCH_CHECK_VALUE(weight.dim() == 4 && weight.size(2) == 1 &&
                        weight.size(3) == 1 && weight.size(0) >= 1,
                    op, ": weight must be a 1x1 weight [C_out, C_in, 1, 1], "
                    "got shape ", weight.sizes());
  TORCH_CHECK_VALUE(weight.size(1) == C, op, ": weight has ", weight.size(1),
                    " input channels but input has ", C, " (input shape ",
                    input.sizes(), ", weight shape ", weight.sizes(), ")");
  PointwiseShape s{input.size(0), C, weight.size(0), input.size(2),
                   input.size(3), layout_of(input)};
  TORCH_CHECK_VALUE(s.H >= 1 && s.W >= 1, op,
                    ": output size would be < 1: input shape ",
                    input.sizes());
  if (bias.has_value() && bias->defined()) {
    check_same(op, "bias", *bias, input);
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == s.Cout, op,
                      ": bias must have shape [", s.Cout, "], got ",
                      bias->sizes());
  }
  const std::vector<int64_t> out = {s.N, s.Cout, s.H, s.W};
  check_grad_output(op, grad_output, input, out);
  if (residual.has_value() && residual->defined()) {
    check_same(op, "residual", *residual, input);
    TORCH_CHECK_VALUE(residual->sizes() == at::IntArrayRef(out), op,
                      ": residual must have the output's shape ",
                      at::IntArrayRef(out), ", got ", residual->sizes());
  }
  return s;
}

Activation check_activation(const char* op, int64_t activation) {
  TORCH_CHECK_VALUE(activation >= 0 && activation <= 3, op,
                    ": activation must be 0 (none), 1 (relu), 2 (relu6) or 3 "
                    "(hardswish), got ",
                    activation);
  return static_cast<Activation>(activation);
}

// NCHW: per image, Y_n[Cout, HW] = W[Cout, Cin] * X_n[Cin, HW].
// NHWC: Y[NHW, Cout] = X[NHW, Cin] * W^T.
GemmArgs pointwise_forward_gemm(const PointwiseShape& s) {
  GemmArgs g;
  const int64_t HW = s.H * s.W;
  if (s.layout == Layout::NCHW) {
    g.M = s.Cout; g.N = HW; g.K = s.Cin; g.batch = s.N;
    g.a_rs = s.Cin; g.a_cs = 1; g.a_bs = 0;           // W
    g.b_rs = HW; g.b_cs = 1; g.b_bs = s.Cin * HW;     // X_n
    g.ldc = HW; g.c_bs = s.Cout * HW;
    g.bias_per_row = true;
  } else {
    g = gemm_rows_times_weight_t(s.N * HW, s.Cin, s.Cout, Activation::None);  // X W^T
  }
  return g;
}

// NCHW: gX_n[Cin, HW] = W^T[Cin, Cout] * gY_n[Cout, HW].
// NHWC: gX[NHW, Cin] = gY[NHW, Cout] * W[Cout, Cin].
GemmArgs pointwise_grad_input_gemm(const PointwiseShape& s) {
  GemmArgs g;
  const int64_t HW = s.H * s.W;
  if (s.layout == Layout::NCHW) {
    g.M = s.Cin; g.N = HW; g.K = s.Cout; g.batch = s.N;
    g.a_rs = 1; g.a_cs = s.Cin; g.a_bs = 0;            // W^T
    g.b_rs = HW; g.b_cs = 1; g.b_bs = s.Cout * HW;     // gY_n
    g.ldc = HW; g.c_bs = s.Cin * HW;
  } else {
    g.M = s.N * HW; g.N = s.Cin; g.K = s.Cout; g.batch = 1;
    g.a_rs = s.Cout; g.a_cs = 1;                       // gY
    g.b_rs = s.Cin; g.b_cs = 1;                        // W
    g.ldc = s.Cin;
  }
  return g;
}

// NCHW: gW[Cout, Cin] = sum_n gY_n[Cout, HW] * X_n^T[HW, Cin].
// NHWC: gW[Cout, Cin] = gY^T[Cout, NHW] * X[NHW, Cin].
GemmArgs pointwise_grad_weight_gemm(const PointwiseShape& s) {
  GemmArgs g;
  const int64_t HW = s.H * s.W;
  g.M = s.Cout; g.N = s.Cin; g.ldc = s.Cin;
  if (s.layout == Layout::NCHW) {
    g.K = HW; g.batch = s.N; g.sum_batch = true;
    g.a_rs = HW; g.a_cs = 1; g.a_bs = s.Cout * HW;     // gY_n
    g.b_rs = 1; g.b_cs = HW; g.b_bs = s.Cin * HW;      // X_n^T
  } else {
    g.K = s.N * HW; g.batch = 1;
    g.a_rs = 1; g.a_cs = s.Cout;                       // gY^T
    g.b_rs = s.Cin; g.b_cs = 1;                        // X
  }
  return g;
}

// NHWC, transposed: gW^T[Cin, Cout] = X^T[Cin, NHW] * gY[NHW, Cout].
GemmArgs pointwise_grad_weight_t_gemm(const PointwiseShape& s) {
  GemmArgs g;
  g.M = s.Cin; g.N = s.Cout; g.ldc = s.Cout;
  g.K = s.N * s.H * s.W; g.batch = 1;
  g.a_rs = 1; g.a_cs = s.Cin;                          // X^T
  g.b_rs = s.Cout; g.b_cs = 1;                         // gY
  return g;
}

}  // namespace glue
}  // namespace mnx
