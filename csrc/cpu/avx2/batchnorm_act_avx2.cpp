// Fused BatchNorm + activation (generic/batchnorm_act.h) for AVX2/FMA, float32.
#include "../batchnorm_act.h"
#include "../generic/batchnorm_act.h"
#include "../vec/vec_avx2.h"

namespace mnx {
namespace cpu {

const BatchNormActKernels<float>& batchnorm_act_kernels_avx2() { return BnActGeneric<VecAvx2>::table("avx2"); }

}  // namespace cpu
}  // namespace mnx
