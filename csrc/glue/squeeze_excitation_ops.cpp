// CPU glue of the squeeze-excitation ops (schemas in csrc/ops.cpp):
//
//   y = x * gate(fc2(act(fc1(mean_hw(x)))))
//
// The two passes over x (the per-channel means, then the scaling) run on the
// channel kernels (csrc/cpu/channel_scale.h); the two small fully-connected
// layers on [N, C] run on the CPU GEMM (cpu_gemm), their backward on ATen.
// Autograd keeps the output y = x * scale (which the next layer keeps
// anyway) and the channel means of x ([N, C], squeeze_excitation_means: the
// forward's own sums), not x: x is freed after the forward. The backward
// reads grad_output and y once for sum_hw(grad_output * y) = scale *
// sum_hw(grad_output * x) (divided by the scale recomputed from the means;
// where the scale is 0 the gate's derivative is 0 too), back-propagates the
// small layers on [N, C], then writes
//   grad_x = grad_output * scale + d(mean) / HW
// in one pass: no full-size temporary besides grad_x (PyTorch's autograd of
// the same module writes grad_output * x, the average pool's broadcast
// gradient and their sum as three more full-size tensors). Keeping y instead
// of x took a mobilenet_v3_large training step's saved tensors from 1181 to
// ~1100 MiB at batch 32.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "../cpu/channel_scale.h"
#include "common.h"
#include "cpu_output_cache.h"

namespace mnx {
namespace glue {
namespace {

using cpu::ChannelShape;

constexpr int64_t kMinElementsPerTask = 1 << 15;

enum class Gate : int64_t { Hardsigmoid = 0, Sigmoid = 1 };

template <typename T>
const cpu::ChannelKernels<T>& channel_kernels() {
  return for_dtype<T>(cpu::channel_kernels_f32, cpu::channel_kernels_f64);
}

// [rows, cols] view of a fully-connected weight given as [rows, cols] or as a
// 1x1 conv weight [rows, cols, 1, 1]
at::Tensor check_fc_weight(const char* op, const char* name, const at::Tensor& w, int64_t rows, int64_t cols,
                           const at::Tensor& input) {
  const bool ok_shape = (w.dim() == 2 && w.size(0) == rows && w.size(1) == cols) ||
                        (w.dim() == 4 && w.size(0) == rows && w.size(1) == cols && w.size(2) == 1 && w.size(3) == 1);
  TORCH_CHECK_VALUE(ok_shape, op, ": ", name, " must have shape [", rows, ", ", cols, "] or [", rows, ", ", cols,
                    ", 1, 1], got ", w.sizes());
  TORCH_CHECK_VALUE(w.scalar_type() == input.scalar_type(), op, ": ", name, " must have the input's dtype ",
                    input.scalar_type(), ", got ", w.scalar_type());
  TORCH_CHECK_VALUE(w.device() == input.device(), op, ": ", name, " must be on the input's device ", input.device(),
                    ", got ", w.device());
  return w.reshape({rows, cols}).contiguous();
}

at::Tensor check_fc_bias(const char* op, const char* name, const c10::optional<at::Tensor>& b, int64_t rows,
                         const at::Tensor& input) {
  if (!b.has_value() || !b->defined()) return at::Tensor();
  TORCH_CHECK_VALUE(b->dim() == 1 && b->size(0) == rows, op, ": ", name, " must have shape [", rows, "], got ",
                    b->sizes());
  TORCH_CHECK_VALUE(b->scalar_type() == input.scalar_type(), op, ": ", name, " must have the input's dtype ",
                    input.scalar_type(), ", got ", b->scalar_type());
  TORCH_CHECK_VALUE(b->device() == input.device(), op, ": ", name, " must be on the input's device ",
                    input.device(), ", got ", b->device());
  return b->contiguous();
}

struct SeArgs {
  ChannelShape s;
  at::Tensor w1, b1, w2, b2;  // [S, C], [S] or undefined, [C, S], [C] or undefined
  Activation act;
  Gate gate;
};

// The checks on the activation and its channel shape, shared by every op here.
ChannelShape check_se_input(const char* op, const at::Tensor& input) {
  const ChannelShape s = check_channel_input<ChannelShape>(op, input);
  TORCH_CHECK_VALUE(input.device().is_cpu(), op, ": input must be a CPU tensor, got ", input.device());
  TORCH_CHECK_VALUE(input.size(2) > 0 && input.size(3) > 0, op,
                    ": input must have a non-empty spatial size (H, W > 0), got shape ", input.sizes());
  return s;
}

SeArgs check_se(const char* op, const at::Tensor& input, const at::Tensor& weight1,
                const c10::optional<at::Tensor>& bias1, const at::Tensor& weight2,
                const c10::optional<at::Tensor>& bias2, int64_t activation, int64_t gate) {
  SeArgs a;
  a.s = check_se_input(op, input);
  TORCH_CHECK_VALUE(weight1.dim() == 2 || weight1.dim() == 4, op,
                    ": weight1 must have shape [squeeze_channels, C] or [squeeze_channels, C, 1, 1], got ",
                    weight1.sizes());
  TORCH_CHECK_VALUE(gate == 0 || gate == 1, op, ": gate must be 0 (hardsigmoid) or 1 (sigmoid), got ", gate);
  const int64_t S = weight1.size(0);
  a.w1 = check_fc_weight(op, "weight1", weight1, S, a.s.C, input);
  a.w2 = check_fc_weight(op, "weight2", weight2, a.s.C, S, input);
  a.b1 = check_fc_bias(op, "bias1", bias1, S, input);
  a.b2 = check_fc_bias(op, "bias2", bias2, a.s.C, input);
  a.act = check_activation(op, activation);
  a.gate = static_cast<Gate>(gate);
  return a;
}

// act(x @ w^T + b) for x [N, K] contiguous, w [M, K] contiguous: the
// project's CPU GEMM called directly (C = A B with A = x, B(k, m) = w[m, k],
// both read in place; at batch 1 the dot-product path). Going through the
// pointwise op's dispatcher entry instead cost its checks, views and
// allocations on every call (the small layers of every SE block).
at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, Activation act = Activation::None) {
  const int64_t N = x.size(0), K = x.size(1), M = w.size(0);
  at::Tensor y = at::empty({N, M}, x.options());
  const GemmArgs g = gemm_rows_times_weight_t(N, K, M, act);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "squeeze_excitation linear", [&] {
    cpu_gemm<scalar_t>(g, x.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                       b.defined() ? b.data_ptr<scalar_t>() : nullptr, nullptr);
  });
  return y;
}

at::Tensor activate(const at::Tensor& z, Activation act) {
  switch (act) {
    case Activation::ReLU:
      return at::relu(z);
    case Activation::ReLU6:
      return at::hardtanh(z, 0, 6);
    case Activation::Hardswish:
      return at::hardswish(z);
    default:
      return z;
  }
}

at::Tensor activate_backward(const at::Tensor& g, const at::Tensor& z, Activation act) {
  switch (act) {
    case Activation::ReLU:
      return at::threshold_backward(g, z, 0);
    case Activation::ReLU6:
      return at::hardtanh_backward(g, z, 0, 6);
    case Activation::Hardswish:
      return at::hardswish_backward(g, z);
    default:
      return g;
  }
}

// The small layers on the channel means p [N, C]: z1 = fc1(p), z2 = fc2(act(z1)), scale = gate(z2).
// z1 only for the backward (with_pre); the forward fuses act into fc1.
struct SeScale {
  at::Tensor z1, h, z2, scale;
};

SeScale se_scale(const SeArgs& a, const at::Tensor& p, bool with_pre) {
  SeScale r;
  if (with_pre) {
    r.z1 = linear(p, a.w1, a.b1);
    r.h = activate(r.z1, a.act);
  } else {
    r.h = linear(p, a.w1, a.b1, a.act);
  }
  r.z2 = linear(r.h, a.w2, a.b2);
  if (with_pre)
    r.scale = a.gate == Gate::Sigmoid ? at::sigmoid(r.z2) : at::hardsigmoid(r.z2);
  else  // the forward keeps nothing: gate in place
    r.scale = a.gate == Gate::Sigmoid ? r.z2.sigmoid_() : at::hardsigmoid_(r.z2);
  return r;
}

template <typename T>
void run_sums(const ChannelShape& s, const T* x, const T* b, double* sum_a, double* sum_ab) {
  const auto& k = channel_kernels<T>();
  // at least kMinElementsPerTask values per task in both layouts (an NHWC
  // unit is HW rows of kChannelSumBlock channels)
  const int64_t per_unit = s.layout == Layout::NCHW ? s.HW : s.HW * std::min<int64_t>(s.C, cpu::kChannelSumBlock);
  const int64_t grain = std::max<int64_t>(1, kMinElementsPerTask / std::max<int64_t>(per_unit, 1));
  at::parallel_for(0, cpu::channel_sum_units(s), grain,
                   [&](int64_t b0, int64_t b1) { k.sums(s, x, b, sum_a, sum_ab, b0, b1); });
}

template <typename T>
void run_scale(const ChannelShape& s, const T* x, const T* scale, const T* shift, T* y) {
  const auto& k = channel_kernels<T>();
  const int64_t per_unit = s.layout == Layout::NCHW ? s.HW : s.C;
  const int64_t grain = std::max<int64_t>(1, kMinElementsPerTask / per_unit);
  at::parallel_for(0, cpu::channel_scale_units(s), grain,
                   [&](int64_t b0, int64_t b1) { k.scale(s, x, scale, shift, y, b0, b1); });
}

// [N, C] tensor from double sums times `factor`
at::Tensor from_sums(const std::vector<double>& v, double factor, const ChannelShape& s,
                     const at::TensorOptions& opt) {
  at::Tensor t = at::empty({s.N, s.C}, opt);
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "from_sums", [&] {
    scalar_t* p = t.data_ptr<scalar_t>();
    for (int64_t i = 0; i < s.N * s.C; ++i) p[i] = static_cast<scalar_t>(v[i] * factor);
  });
  return t;
}

// The channel means [N, C] of x (contiguous in s.layout): sums in double.
template <typename T>
at::Tensor channel_means(const ChannelShape& s, const at::Tensor& x) {
  std::vector<double> sx(s.N * s.C);
  run_sums<T>(s, x.data_ptr<T>(), nullptr, sx.data(), nullptr);
  return from_sums(sx, 1.0 / s.HW, s, x.options());
}

// y = x * scale(x) for x contiguous in s.layout (y may be x)
void se_forward_into(const SeArgs& a, const at::Tensor& x, at::Tensor& y) {
  const ChannelShape& s = a.s;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "squeeze_excitation", [&] {
    using T = scalar_t;
    const at::Tensor scale = se_scale(a, channel_means<T>(s, x), false).scale.contiguous();
    run_scale<T>(s, x.data_ptr<T>(), scale.data_ptr<T>(), nullptr, y.data_ptr<T>());
  });
}

at::Tensor squeeze_excitation_cpu(const at::Tensor& input, const at::Tensor& weight1,
                                  const c10::optional<at::Tensor>& bias1, const at::Tensor& weight2,
                                  const c10::optional<at::Tensor>& bias2, int64_t activation, int64_t gate) {
  const SeArgs a = check_se("squeeze_excitation", input, weight1, bias1, weight2, bias2, activation, gate);
  at::AutoDispatchBelowADInplaceOrView below_autograd;  // the ATen calls on [N, C] record nothing
  at::Tensor y = empty_cpu_output(input.sizes(), input.options().memory_format(memory_format_of(a.s.layout)));
  if (a.s.N > 0) se_forward_into(a, contiguous_in(input, a.s.layout), y);
  return y;
}

// Inference inside a fused block: input *= scale, no autograd (the caller
// checks that nothing records and that nothing else reads input).
void squeeze_excitation_inplace_cpu(const at::Tensor& input, const at::Tensor& weight1,
                                    const c10::optional<at::Tensor>& bias1, const at::Tensor& weight2,
                                    const c10::optional<at::Tensor>& bias2, int64_t activation, int64_t gate) {
  const SeArgs a = check_se("squeeze_excitation_", input, weight1, bias1, weight2, bias2, activation, gate);
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  if (a.s.N == 0) return;
  at::Tensor x = contiguous_in(input, a.s.layout);  // input itself unless it is strided
  se_forward_into(a, x, x);
  if (!x.is_same(input)) input.copy_(x);
}

// The channel means of x as the forward computes them ([N, C]).
at::Tensor squeeze_excitation_means_cpu(const at::Tensor& input) {
  const ChannelShape s = check_se_input("squeeze_excitation_means", input);
  if (s.N == 0) return at::empty({s.N, s.C}, input.options());
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const at::Tensor x = contiguous_in(input, s.layout);
  at::Tensor p;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "squeeze_excitation_means",
                             [&] { p = channel_means<scalar_t>(s, x); });
  return p;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> squeeze_excitation_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& output, const at::Tensor& means, const at::Tensor& weight1,
    const c10::optional<at::Tensor>& bias1, const at::Tensor& weight2, const c10::optional<at::Tensor>& bias2,
    int64_t activation, int64_t gate) {
  const char* op = "squeeze_excitation_backward";
  const SeArgs a = check_se(op, output, weight1, bias1, weight2, bias2, activation, gate);
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  TORCH_CHECK_VALUE(grad_output.sizes() == output.sizes(), op, ": grad_output must have the output's shape ",
                    output.sizes(), ", got ", grad_output.sizes());
  TORCH_CHECK_VALUE(grad_output.scalar_type() == output.scalar_type() && grad_output.device() == output.device(), op,
                    ": grad_output must have the output's dtype and device");
  const ChannelShape& s = a.s;
  TORCH_CHECK_VALUE(means.dim() == 2 && means.size(0) == s.N && means.size(1) == s.C, op,
                    ": means must have shape [N, C] = [", s.N, ", ", s.C, "], got ", means.sizes());
  TORCH_CHECK_VALUE(means.scalar_type() == output.scalar_type() && means.device() == output.device(), op,
                    ": means must have the output's dtype and device");
  at::Tensor gx = empty_cpu_output(output.sizes(), output.options().memory_format(memory_format_of(s.layout)));
  if (s.N == 0)
    return {gx, at::zeros_like(weight1), a.b1.defined() ? at::zeros_like(a.b1) : at::zeros({a.w1.size(0)}, output.options()),
            at::zeros_like(weight2), a.b2.defined() ? at::zeros_like(a.b2) : at::zeros({s.C}, output.options())};
  const at::Tensor y = contiguous_in(output, s.layout);
  const at::Tensor gy = contiguous_in(grad_output, s.layout);
  at::Tensor gw1, gb1, gw2, gb2;
  AT_DISPATCH_FLOATING_TYPES(output.scalar_type(), "squeeze_excitation_backward", [&] {
    using T = scalar_t;
    std::vector<double> sy(s.N * s.C), sgy(s.N * s.C);
    run_sums<T>(s, y.data_ptr<T>(), gy.data_ptr<T>(), sy.data(), sgy.data());
    const at::Tensor p = means.contiguous();
    const SeScale f = se_scale(a, p, true);
    // sum_hw(grad * x) = sum_hw(grad * y) / scale; 0 where the scale is 0
    // (there the gate's derivative is 0: hardsigmoid at or below -3, sigmoid
    // underflowed), not 0 / 0
    const at::Tensor sc = f.scale.contiguous();
    const T* scp = sc.data_ptr<T>();
    for (int64_t i = 0; i < s.N * s.C; ++i) sgy[i] = scp[i] != T(0) ? sgy[i] / static_cast<double>(scp[i]) : 0.0;
    const at::Tensor grad_scale = from_sums(sgy, 1.0, s, output.options());
    const at::Tensor dz2 = a.gate == Gate::Sigmoid ? at::sigmoid_backward(grad_scale, f.scale)
                                                   : at::hardsigmoid_backward(grad_scale, f.z2);
    gw2 = at::mm(dz2.t(), f.h).reshape(weight2.sizes());
    gb2 = dz2.sum(0);
    const at::Tensor dz1 = activate_backward(at::mm(dz2, a.w2), f.z1, a.act);
    gw1 = at::mm(dz1.t(), p).reshape(weight1.sizes());
    gb1 = dz1.sum(0);
    const at::Tensor shift = (at::mm(dz1, a.w1) * (1.0 / s.HW)).contiguous();
    run_scale<T>(s, gy.data_ptr<T>(), sc.data_ptr<T>(), shift.data_ptr<T>(), gx.data_ptr<T>());
  });
  return {gx, gw1, gb1, gw2, gb2};
}

}  // namespace
}  // namespace glue
}  // namespace mnx

TORCH_LIBRARY_IMPL(mobilenet_ext, CPU, m) {
  m.impl("squeeze_excitation", &mnx::glue::squeeze_excitation_cpu);
  m.impl("squeeze_excitation_backward", &mnx::glue::squeeze_excitation_backward_cpu);
  m.impl("squeeze_excitation_means", &mnx::glue::squeeze_excitation_means_cpu);
  m.impl("squeeze_excitation_", &mnx::glue::squeeze_excitation_inplace_cpu);
}
