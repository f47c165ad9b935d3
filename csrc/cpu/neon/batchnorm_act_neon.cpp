// Fused BatchNorm + activation (generic/batchnorm_act.h) for AArch64 NEON, float32.
#include "../batchnorm_act.h"
#include "../generic/batchnorm_act.h"
#include "../vec/vec_neon.h"

namespace mnx {
namespace cpu {

const BatchNormActKernels<float>& batchnorm_act_kernels_neon() { return BnActGeneric<VecNeon>::table("neon"); }

}  // namespace cpu
}  // namespace mnx
