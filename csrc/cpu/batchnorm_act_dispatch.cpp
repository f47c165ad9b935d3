// Selection of the fused BatchNorm + activation kernels (batchnorm_act.h)
// and the per-channel finalisation shared by every family.
#include <cmath>
#include <cstring>

#include "batchnorm_act.h"
#include "cpu_kernels.h"

namespace mnx {
namespace cpu {

namespace {
const BatchNormActKernels<float> kBatchNormActScalarF32 = {
    bn_stats_scalar<float>, bn_apply_scalar<float>, bn_backward_reduce_scalar<float>,
    bn_backward_dx_scalar<float>, "scalar"};
const BatchNormActKernels<double> kBatchNormActScalarF64 = {
    bn_stats_scalar<double>, bn_apply_scalar<double>, bn_backward_reduce_scalar<double>,
    bn_backward_dx_scalar<double>, "scalar"};
}  // namespace

const BatchNormActKernels<float>& batchnorm_act_kernels_scalar_f32() { return kBatchNormActScalarF32; }

// the family the other float32 kernels use (selected_isa(): CPUID and
// MOBILENET_EXT_ISA)
const BatchNormActKernels<float>& batchnorm_act_kernels_f32() {
  const char* isa = selected_isa();
#if defined(__x86_64__) || defined(_M_X64)
  if (std::strcmp(isa, "avx2") == 0) return batchnorm_act_kernels_avx2();
#endif
#if defined(__aarch64__)
  if (std::strcmp(isa, "neon") == 0) return batchnorm_act_kernels_neon();
#endif
  (void)isa;
  return kBatchNormActScalarF32;
}

const BatchNormActKernels<double>& batchnorm_act_kernels_f64() { return kBatchNormActScalarF64; }

void bn_sum_partials(const BatchNormShape& s, const double* partial, double* sum0, double* sum1) {
  for (int64_t c = 0; c < s.C; ++c) {
    sum0[c] = 0;
    sum1[c] = 0;
  }
  // NCHW: per image; NHWC: per chunk; in order: independent of the thread count
  const int64_t units = s.layout == Layout::NCHW ? s.N : bn_reduce_units(s);
  for (int64_t u = 0; u < units; ++u)
    for (int64_t c = 0; c < s.C; ++c) {
      sum0[c] += partial[(u * s.C + c) * 2];
      sum1[c] += partial[(u * s.C + c) * 2 + 1];
    }
}

void bn_stats_finalize(const BatchNormShape& s, const double* partial, double* dmean, double* var) {
  bn_sum_partials(s, partial, dmean, var);  // S1, S2 of x - x0
  const double M = static_cast<double>(s.count());
  for (int64_t c = 0; c < s.C; ++c) {
    const double d = dmean[c] / M;
    double v = (var[c] - dmean[c] * d) / M;
    if (v < 0) v = 0;  // rounding; NaN stays NaN
    dmean[c] = d;
    var[c] = v;
  }
}

}  // namespace cpu
}  // namespace mnx
