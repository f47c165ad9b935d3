// Channel sums and scaling (generic/channel_scale.h) for AVX2/FMA, float32.
#include "../channel_scale.h"
#include "../generic/channel_scale.h"
#include "../vec/vec_avx2.h"

namespace mnx {
namespace cpu {

const ChannelKernels<float>& channel_kernels_avx2() { return ChannelGeneric<VecAvx2>::table("avx2"); }

}  // namespace cpu
}  // namespace mnx
