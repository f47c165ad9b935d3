// Fused BatchNorm + activation (generic/batchnorm_act.h) for AVX2/FMA, float32.
#include "../generic/batchnorm_act.h"
#include "../vec/vec_avx2.h"

namespace mnx {
namespace cpu {

extern const BatchNormActKernels<float> kBatchNormActAvx2F32;
const BatchNormActKernels<float> kBatchNormActAvx2F32 = {
    BnActGeneric<VecAvx2>::stats, BnActGeneric<VecAvx2>::apply, BnActGeneric<VecAvx2>::backward_reduce,
    BnActGeneric<VecAvx2>::backward_dx, "avx2"};

}  // namespace cpu
}  // namespace mnx
