// Channel sums and scaling (generic/channel_scale.h) for AArch64 NEON, float32.
#include "../channel_scale.h"
#include "../generic/channel_scale.h"
#include "../vec/vec_neon.h"

namespace mnx {
namespace cpu {

const ChannelKernels<float>& channel_kernels_neon() { return ChannelGeneric<VecNeon>::table("neon"); }

}  // namespace cpu
}  // namespace mnx
