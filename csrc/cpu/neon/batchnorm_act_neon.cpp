// Fused BatchNorm + activation (generic/batchnorm_act.h) for AArch64 NEON, float32.
#include "../generic/batchnorm_act.h"
#include "../vec/vec_neon.h"

namespace mnx {
namespace cpu {

extern const BatchNormActKernels<float> kBatchNormActNeonF32;
const BatchNormActKernels<float> kBatchNormActNeonF32 = {
    BnActGeneric<VecNeon>::stats, BnActGeneric<VecNeon>::apply, BnActGeneric<VecNeon>::backward_reduce,
    BnActGeneric<VecNeon>::backward_dx, "neon"};

}  // namespace cpu
}  // namespace mnx
