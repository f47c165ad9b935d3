// Selection of the channel sums / scaling kernels (channel_scale.h).
#include <cstring>

#include "channel_scale.h"
#include "cpu_kernels.h"

namespace mnx {
namespace cpu {

namespace {
const ChannelKernels<float> kChannelScalarF32 = {channel_sums_scalar<float>, channel_scale_scalar<float>, "scalar"};
const ChannelKernels<double> kChannelScalarF64 = {channel_sums_scalar<double>, channel_scale_scalar<double>,
                                                  "scalar"};
}  // namespace

const ChannelKernels<float>& channel_kernels_scalar_f32() { return kChannelScalarF32; }

// the family the other float32 kernels use (selected_isa(): CPUID and
// MOBILENET_EXT_ISA)
const ChannelKernels<float>& channel_kernels_f32() {
  const char* isa = selected_isa();
#if defined(__x86_64__) || defined(_M_X64)
  if (std::strcmp(isa, "avx2") == 0) return channel_kernels_avx2();
#endif
#if defined(__aarch64__)
  if (std::strcmp(isa, "neon") == 0) return channel_kernels_neon();
#endif
  (void)isa;
  return kChannelScalarF32;
}

const ChannelKernels<double>& channel_kernels_f64() { return kChannelScalarF64; }

}  // namespace cpu
}  // namespace mnx
