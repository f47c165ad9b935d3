// Small-Cin dense convolution (generic/conv2d_small_cin.h) for NEON (AArch64), float32.
#include "../conv2d_small_cin.h"
#include "../generic/conv2d_small_cin.h"
#include "../vec/vec_neon.h"

namespace mnx {
namespace cpu {

const SmallCinConvKernels<float>& conv2d_small_cin_kernels_neon() { return SmallCinConv<VecNeon>::table("neon"); }

}  // namespace cpu
}  // namespace mnx
