// CPU glue of the fused BatchNorm + activation ops (schemas in csrc/ops.cpp):
// argument checks, layout, threads (at::parallel_for over the kernels' work
// units, csrc/cpu/batchnorm_act.h) and the per-channel coefficients, computed
// here in double. The running statistics are updated in Python
// (mobilenet_ext/ops.py, batch_norm_act) from the returned save_mean /
// save_invstd, so both ops stay functional (torch.library.register_autograd).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <tuple>
#include <vector>

#include "../cpu/batchnorm_act.h"
#include "common.h"
#include "cpu_output_cache.h"

namespace mnx {
namespace glue {
namespace {

using cpu::BatchNormShape;

template <typename T>
const cpu::BatchNormActKernels<T>& bn_kernels() {
  return for_dtype<T>(cpu::batchnorm_act_kernels_f32, cpu::batchnorm_act_kernels_f64);
}

constexpr int64_t kMinElementsPerTask = 1 << 15;

void check_channel_vector(const char* op, const char* name, const c10::optional<at::Tensor>& t,
                          const at::Tensor& input) {
  if (!t.has_value() || !t->defined()) return;
  TORCH_CHECK_VALUE(t->dim() == 1 && t->size(0) == input.size(1), op, ": ", name, " must have shape [",
                    input.size(1), "], got ", t->sizes());
  TORCH_CHECK_VALUE(t->scalar_type() == input.scalar_type(), op, ": ", name, " must have the input's dtype ",
                    input.scalar_type(), ", got ", t->scalar_type());
  TORCH_CHECK_VALUE(t->device() == input.device(), op, ": ", name, " must be on the input's device ",
                    input.device(), ", got ", t->device());
}

BatchNormShape check_input(const char* op, const at::Tensor& input) {
  return check_channel_input<BatchNormShape>(op, input);
}

// gamma * invstd as T, from the saved invstd: the forward's scale and the
// one the backward rebuilds for the activation's mask are the same bits.
template <typename T>
T bn_scale(double gamma, double saved_invstd) {
  return static_cast<T>(gamma * saved_invstd);
}

// values of an optional [C] tensor as double (fill when absent)
template <typename T>
std::vector<double> channel_values(const c10::optional<at::Tensor>& t, int64_t C, double fill) {
  std::vector<double> v(C, fill);
  if (t.has_value() && t->defined()) {
    const auto tc = t->contiguous();
    const T* p = tc.data_ptr<T>();
    for (int64_t c = 0; c < C; ++c) v[c] = static_cast<double>(p[c]);
  }
  return v;
}

template <typename T>
void run_reduce(const BatchNormShape& s, std::vector<double>& partial,
                const std::function<void(double*, int64_t, int64_t)>& f) {
  partial.assign(cpu::bn_partial_size(s), 0.0);
  const int64_t units = cpu::bn_reduce_units(s);
  at::parallel_for(0, units, 1, [&](int64_t b0, int64_t b1) { f(partial.data(), b0, b1); });
}

int64_t elementwise_grain(const BatchNormShape& s) {
  const int64_t per_unit = s.layout == Layout::NCHW ? s.HW : s.C;
  return std::max<int64_t>(1, kMinElementsPerTask / std::max<int64_t>(1, per_unit));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_act_cpu(
    const at::Tensor& input, const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias,
    const c10::optional<at::Tensor>& running_mean, const c10::optional<at::Tensor>& running_var, bool training,
    double eps, int64_t activation) {
  const char* op = "batch_norm_act";
  const BatchNormShape s = check_input(op, input);
  const Activation act = check_activation(op, activation);
  check_channel_vector(op, "weight", weight, input);
  check_channel_vector(op, "bias", bias, input);
  check_channel_vector(op, "running_mean", running_mean, input);
  check_channel_vector(op, "running_var", running_var, input);
  const int64_t M = s.count();
  if (training) {
    // as F.batch_norm: one value per channel is an error, none (an empty
    // batch) is not
    TORCH_CHECK_VALUE(M != 1, "Expected more than 1 value per channel when training, got input size ",
                      input.sizes());
  } else {
    TORCH_CHECK_VALUE(running_mean.has_value() && running_mean->defined() && running_var.has_value() &&
                          running_var->defined(),
                      op, ": running_mean and running_var are required when training is False");
  }
  const at::Tensor x = contiguous_in(input, s.layout);
  at::Tensor y = empty_cpu_output(input.sizes(), input.options().memory_format(memory_format_of(s.layout)));
  at::Tensor save_mean = at::empty({s.C}, input.options());
  at::Tensor save_invstd = at::empty({s.C}, input.options());
  if (input.numel() == 0) {
    save_mean.fill_(NAN);
    save_invstd.fill_(NAN);
    return {y, save_mean, save_invstd};
  }
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "batch_norm_act", [&] {
    using T = scalar_t;
    const auto& k = bn_kernels<T>();
    const T* xp = x.data_ptr<T>();
    const std::vector<double> g = channel_values<T>(weight, s.C, 1.0), b = channel_values<T>(bias, s.C, 0.0);
    std::vector<T> scale(s.C), shift(s.C);
    T* mp = save_mean.data_ptr<T>();
    T* ip = save_invstd.data_ptr<T>();
    if (training) {
      std::vector<double> partial, dmean(s.C), var(s.C);
      run_reduce<T>(s, partial, [&](double* p, int64_t b0, int64_t b1) { k.stats(s, xp, p, b0, b1); });
      cpu::bn_stats_finalize(s, partial.data(), dmean.data(), var.data());
      // The output is centred on the saved (rounded) mean, with the
      // rounding folded into the shift: near z = 0 its error is then that of
      // |x - mean| (small there), not of |x - x0|. mean - saved mean is taken
      // as (x0 - saved mean) + dmean, not from `mean` (rounded in double at
      // |mean| >> std): x0 - saved mean is exact for float32 and, where it
      // matters (|mean| >> std, so the two are close), for float64.
      for (int64_t c = 0; c < s.C; ++c) {
        const T x0 = xp[s.layout == Layout::NCHW ? c * s.HW : c];  // the shift of the sums
        mp[c] = static_cast<T>(static_cast<double>(x0) + dmean[c]);
        ip[c] = static_cast<T>(1.0 / std::sqrt(var[c] + eps));
        scale[c] = bn_scale<T>(g[c], ip[c]);
        const double rounding = (static_cast<double>(x0) - static_cast<double>(mp[c])) + dmean[c];
        shift[c] = static_cast<T>(b[c] - rounding * (g[c] * static_cast<double>(ip[c])));
      }
    } else {
      const std::vector<double> rm = channel_values<T>(running_mean, s.C, 0.0);
      const std::vector<double> rv = channel_values<T>(running_var, s.C, 1.0);
      for (int64_t c = 0; c < s.C; ++c) {
        mp[c] = static_cast<T>(rm[c]);
        ip[c] = static_cast<T>(1.0 / std::sqrt(rv[c] + eps));
        scale[c] = bn_scale<T>(g[c], ip[c]);
        shift[c] = static_cast<T>(b[c]);
      }
    }
    T* yp = y.data_ptr<T>();
    at::parallel_for(0, cpu::bn_elementwise_units(s), elementwise_grain(s), [&](int64_t b0, int64_t b1) {
      k.apply(s, xp, mp, scale.data(), shift.data(), act, yp, b0, b1);
    });
  });
  return {y, save_mean, save_invstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_act_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& input, const c10::optional<at::Tensor>& weight,
    const c10::optional<at::Tensor>& bias, const at::Tensor& save_mean, const at::Tensor& save_invstd,
    bool training, int64_t activation) {
  const char* op = "batch_norm_act_backward";
  const BatchNormShape s = check_input(op, input);
  const Activation act = check_activation(op, activation);
  TORCH_CHECK_VALUE(grad_output.sizes() == input.sizes(), op, ": grad_output must have the input's shape ",
                    input.sizes(), ", got ", grad_output.sizes());
  TORCH_CHECK_VALUE(grad_output.scalar_type() == input.scalar_type() && grad_output.device() == input.device(), op,
                    ": grad_output must have the input's dtype and device");
  check_channel_vector(op, "weight", weight, input);
  check_channel_vector(op, "bias", bias, input);
  check_channel_vector(op, "save_mean", save_mean, input);
  check_channel_vector(op, "save_invstd", save_invstd, input);
  const at::Tensor x = contiguous_in(input, s.layout);
  const at::Tensor gy = contiguous_in(grad_output, s.layout);
  at::Tensor gx = empty_cpu_output(input.sizes(), input.options().memory_format(memory_format_of(s.layout)));
  at::Tensor gw = at::zeros({s.C}, input.options());
  at::Tensor gb = at::zeros({s.C}, input.options());
  if (input.numel() == 0) return {gx, gw, gb};
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "batch_norm_act", [&] {
    using T = scalar_t;
    const auto& k = bn_kernels<T>();
    const T* xp = x.data_ptr<T>();
    const T* gyp = gy.data_ptr<T>();
    const std::vector<double> g = channel_values<T>(weight, s.C, 1.0), b = channel_values<T>(bias, s.C, 0.0);
    const std::vector<double> inv = channel_values<T>(save_invstd, s.C, 1.0);
    const auto mean_c = save_mean.contiguous();
    const T* mean = mean_c.data_ptr<T>();
    std::vector<T> scale(s.C), beta(s.C), A(s.C), B(s.C), K(s.C);
    for (int64_t c = 0; c < s.C; ++c) {
      scale[c] = bn_scale<T>(g[c], inv[c]);
      beta[c] = static_cast<T>(b[c]);
    }
    std::vector<double> partial, sdz(s.C), sdzd(s.C);
    run_reduce<T>(s, partial, [&](double* p, int64_t b0, int64_t b1) {
      k.backward_reduce(s, gyp, xp, mean, scale.data(), beta.data(), act, p, b0, b1);
    });
    cpu::bn_sum_partials(s, partial.data(), sdz.data(), sdzd.data());
    T* gwp = gw.data_ptr<T>();
    T* gbp = gb.data_ptr<T>();
    const double M = static_cast<double>(s.count());
    for (int64_t c = 0; c < s.C; ++c) {
      gwp[c] = static_cast<T>(sdzd[c] * inv[c]);
      gbp[c] = static_cast<T>(sdz[c]);
      const double a = g[c] * inv[c];
      A[c] = static_cast<T>(a);
      B[c] = training ? static_cast<T>(-a * sdzd[c] * inv[c] * inv[c] / M) : T(0);
      K[c] = training ? static_cast<T>(-a * sdz[c] / M) : T(0);
    }
    T* gxp = gx.data_ptr<T>();
    at::parallel_for(0, cpu::bn_elementwise_units(s), elementwise_grain(s), [&](int64_t b0, int64_t b1) {
      k.backward_dx(s, gyp, xp, mean, scale.data(), beta.data(), A.data(), B.data(), K.data(), act, gxp, b0, b1);
    });
  });
  return {gx, gw, gb};
}

}  // namespace
}  // namespace glue
}  // namespace mnx

TORCH_LIBRARY_IMPL(mobilenet_ext, CPU, m) {
  m.impl("batch_norm_act", &mnx::glue::batch_norm_act_cpu);
  m.impl("batch_norm_act_backward", &mnx::glue::batch_norm_act_backward_cpu);
}
