// Small-Cin dense convolution (generic/conv2d_small_cin.h) for AVX2/FMA, float32.
#include "../conv2d_small_cin.h"
#include "../generic/conv2d_small_cin.h"
#include "../vec/vec_avx2.h"

namespace mnx {
namespace cpu {

const SmallCinConvKernels<float>& conv2d_small_cin_kernels_avx2() { return SmallCinConv<VecAvx2>::table("avx2"); }

}  // namespace cpu
}  // namespace mnx
