// Selection of the small-Cin dense convolution kernels (conv2d_small_cin.h).
#include <cstring>

#include "conv2d_small_cin.h"
#include "cpu_kernels.h"

namespace mnx {
namespace cpu {

namespace {
const SmallCinConvKernels<float> kScalarF32 = {conv2d_small_cin_forward_scalar<float>,
                                                conv2d_small_cin_grad_weight_scalar<float>, "scalar"};
const SmallCinConvKernels<double> kScalarF64 = {conv2d_small_cin_forward_scalar<double>,
                                                 conv2d_small_cin_grad_weight_scalar<double>, "scalar"};
}  // namespace

const SmallCinConvKernels<float>& conv2d_small_cin_kernels_scalar_f32() { return kScalarF32; }

const SmallCinConvKernels<float>& conv2d_small_cin_kernels_f32() {
  const char* isa = selected_isa();
#if defined(__x86_64__) || defined(_M_X64)
  if (std::strcmp(isa, "avx2") == 0)
    return cpu_use_avx512() ? conv2d_small_cin_kernels_avx512()  // coverage: needs avx512f
                            : conv2d_small_cin_kernels_avx2();
#endif
#if defined(__aarch64__)
  if (std::strcmp(isa, "neon") == 0) return conv2d_small_cin_kernels_neon();
#endif
  (void)isa;
  return kScalarF32;
}

const SmallCinConvKernels<double>& conv2d_small_cin_kernels_f64() { return kScalarF64; }

}  // namespace cpu
}  // namespace mnx
