// CPU glue of inverted_residual_fused (schema in csrc/ops.cpp; kernel
// csrc/cpu/inverted_residual.h): a channels_last MobileNet block
// (optional expand 1x1 -> depthwise KxK -> optional project 1x1 + optional
// residual) in bands of output rows. Inference only (float32, no autograd);
// mobilenet_ext's fused-model replay (mobilenet_ext/_plan.py) calls it in
// place of the three ops when they appear in that order.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>

#include "../cpu/inverted_residual.h"
#include "common.h"
#include "cpu_output_cache.h"

namespace mnx {
namespace glue {
namespace {

const char* const kOp = "inverted_residual_fused";

void check_f32_cpu(const char* name, const at::Tensor& t) {
  TORCH_CHECK_VALUE(t.device().is_cpu() && t.scalar_type() == at::kFloat, kOp, ": ", name,
                    " must be a float32 CPU tensor, got ", c10::toString(t.scalar_type()), " on ",
                    t.device());
}

// weight [Co, Ci, 1, 1] (or [Co, Ci]) with Ci = cin; its packed form
// [ceil(Co / panel), Ci, panel]; bias [Co] or none. Returns Co.
int64_t check_pointwise_args(const char* which, const at::Tensor& w, const at::Tensor& packed,
                             const c10::optional<at::Tensor>& bias, int64_t cin) {
  check_f32_cpu(which, w);
  TORCH_CHECK_VALUE((w.dim() == 4 && w.size(2) == 1 && w.size(3) == 1) || w.dim() == 2, kOp, ": ",
                    which, " must be a 1x1 weight [C_out, C_in, 1, 1], got shape ", w.sizes());
  TORCH_CHECK_VALUE(w.size(1) == cin && w.size(0) >= 1, kOp, ": ", which, " must have C_in = ", cin,
                    " input channels, got shape ", w.sizes());
  const int64_t co = w.size(0);
  check_f32_cpu("packed weight", packed);
  const int64_t panel = packed.dim() == 3 ? packed.size(2) : 0;
  TORCH_CHECK_VALUE(panel >= 1 && packed.size(1) == cin && packed.size(0) == (co + panel - 1) / panel,
                    kOp, ": the packed ", which, " must be pointwise_pack_weight(", which,
                    ", panel) of shape [ceil(", co, " / panel), ", cin, ", panel], got shape ",
                    packed.sizes());
  if (bias.has_value() && bias->defined()) {
    check_f32_cpu("bias", *bias);
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == co, kOp, ": the bias of ", which,
                      " must have shape [", co, "], got ", bias->sizes());
  }
  return co;
}

const float* opt_ptr(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

at::Tensor opt_contig(const c10::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? t->contiguous() : at::Tensor();
}

// the kernels load packed panels with aligned loads: a view at another
// offset is copied (at::empty's storage is 64-byte aligned)
at::Tensor aligned_packed(const at::Tensor& p) {
  at::Tensor c = p.contiguous();
  if (reinterpret_cast<uintptr_t>(c.data_ptr()) % 64 != 0) c = c.clone();
  return c;
}

at::Tensor inverted_residual_fused_cpu(
    const at::Tensor& input, const c10::optional<at::Tensor>& expand_weight,
    const c10::optional<at::Tensor>& expand_packed, const c10::optional<at::Tensor>& expand_bias,
    int64_t expand_activation, const at::Tensor& dw_weight, const c10::optional<at::Tensor>& dw_bias,
    int64_t stride, int64_t padding, int64_t dw_activation,
    const c10::optional<at::Tensor>& project_weight, const c10::optional<at::Tensor>& project_packed,
    const c10::optional<at::Tensor>& project_bias, int64_t project_activation, bool residual) {
  check_f32_cpu("input", input);
  TORCH_CHECK_VALUE(input.dim() == 4, kOp, ": input must be 4-D [N, C, H, W], got ", input.dim(),
                    "-D");
  TORCH_CHECK_VALUE(input.is_contiguous(at::MemoryFormat::ChannelsLast), kOp,
                    ": input must be channels_last-contiguous (the NHWC kernel), got strides ",
                    input.strides());
  cpu::InvertedResidualShape s;
  s.N = input.size(0);
  s.Cin = input.size(1);
  s.H = input.size(2);
  s.W = input.size(3);
  const bool has_e = expand_weight.has_value() && expand_weight->defined();
  const bool has_p = project_weight.has_value() && project_weight->defined();
  TORCH_CHECK_VALUE(has_e == (expand_packed.has_value() && expand_packed->defined()), kOp,
                    ": expand_weight and expand_packed must be given together");
  TORCH_CHECK_VALUE(has_p == (project_packed.has_value() && project_packed->defined()), kOp,
                    ": project_weight and project_packed must be given together");
  s.expand = has_e;
  s.project = has_p;
  s.Cexp = has_e ? check_pointwise_args("expand_weight", *expand_weight, *expand_packed, expand_bias,
                                        s.Cin)
                 : s.Cin;
  check_f32_cpu("dw_weight", dw_weight);
  TORCH_CHECK_VALUE(dw_weight.dim() == 4 && dw_weight.size(0) == s.Cexp && dw_weight.size(1) == 1 &&
                        dw_weight.size(2) == dw_weight.size(3) && dw_weight.size(2) >= 1,
                    kOp, ": dw_weight must be a square depthwise weight [", s.Cexp,
                    ", 1, K, K], got shape ", dw_weight.sizes());
  if (dw_bias.has_value() && dw_bias->defined()) {
    check_f32_cpu("dw_bias", *dw_bias);
    TORCH_CHECK_VALUE(dw_bias->dim() == 1 && dw_bias->size(0) == s.Cexp, kOp,
                      ": dw_bias must have shape [", s.Cexp, "], got ", dw_bias->sizes());
  }
  s.K = dw_weight.size(2);
  TORCH_CHECK_VALUE(stride >= 1, kOp, ": stride must be >= 1, got ", stride);
  TORCH_CHECK_VALUE(padding >= 0 && padding < s.K, kOp, ": padding must be in [0, K) with K = ", s.K,
                    ", got ", padding);
  s.S = stride;
  s.P = padding;
  s.OH = conv_out_size(s.H, s.K, s.S, s.P, 1);
  s.OW = conv_out_size(s.W, s.K, s.S, s.P, 1);
  TORCH_CHECK_VALUE(s.OH >= 1 && s.OW >= 1, kOp, ": the input ", s.H, "x", s.W,
                    " is too small for a ", s.K, "x", s.K, " kernel with padding ", s.P);
  s.Cout = has_p ? check_pointwise_args("project_weight", *project_weight, *project_packed,
                                        project_bias, s.Cexp)
                 : s.Cexp;
  s.act_expand = check_activation(kOp, expand_activation);
  s.act_dw = check_activation(kOp, dw_activation);
  s.act_project = check_activation(kOp, project_activation);
  s.residual = residual;
  if (residual)
    TORCH_CHECK_VALUE(has_p && s.Cout == s.Cin && s.OH == s.H && s.OW == s.W, kOp,
                      ": residual needs a project layer and an output of the input's shape [", s.N,
                      ", ", s.Cin, ", ", s.H, ", ", s.W, "], got [", s.N, ", ", s.Cout, ", ", s.OH,
                      ", ", s.OW, "]");

  at::Tensor y = empty_cpu_output({s.N, s.Cout, s.OH, s.OW},
                                  input.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (y.numel() == 0) return y;
  const at::Tensor x = input;  // channels_last-contiguous (checked)
  const at::Tensor ew = has_e ? expand_weight->contiguous() : at::Tensor();
  const at::Tensor ep = has_e ? aligned_packed(*expand_packed) : at::Tensor();
  const at::Tensor eb = has_e ? opt_contig(expand_bias) : at::Tensor();
  const at::Tensor dw = dw_weight.contiguous();
  const at::Tensor db = opt_contig(dw_bias);
  const at::Tensor pw = has_p ? project_weight->contiguous() : at::Tensor();
  const at::Tensor pp = has_p ? aligned_packed(*project_packed) : at::Tensor();
  const at::Tensor pb = has_p ? opt_contig(project_bias) : at::Tensor();
  cpu::InvertedResidualWeights w;
  w.expand_w = opt_ptr(ew);
  w.expand_packed = opt_ptr(ep);
  w.expand_panel = has_e ? ep.size(2) : 0;
  w.expand_b = opt_ptr(eb);
  w.dw_w = dw.data_ptr<float>();
  w.dw_b = opt_ptr(db);
  w.project_w = opt_ptr(pw);
  w.project_packed = opt_ptr(pp);
  w.project_panel = has_p ? pp.size(2) : 0;
  w.project_b = opt_ptr(pb);
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  // contiguous row ranges, one per thread (each starts its own bands; the
  // rows a range shares with the one before it are expanded by both)
  const int64_t units = s.units();
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t grain = std::max<int64_t>(1, (units + threads - 1) / threads);
  std::atomic<bool> ok{true};
  at::parallel_for(0, units, grain, [&](int64_t b0, int64_t b1) {
    if (!cpu::inverted_residual_nhwc_forward_f32(s, w, xp, yp, b0, b1)) ok = false;
  });
  TORCH_CHECK(ok.load(), kOp, ": out of memory for the kernel's per-thread scratch");
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(mobilenet_ext, CPU, m) {
  m.impl("inverted_residual_fused", &inverted_residual_fused_cpu);
}

}  // namespace glue
}  // namespace mnx
