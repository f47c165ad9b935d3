// Small-Cin dense convolution (generic/conv2d_small_cin.h) for AVX-512F,
// float32: 16 output channels per vector, tiles of 6 pixels x 4 vectors and
// 12 pixels x 2 or x 1 vectors (MobileNet's 32- and 16-channel stems).
// Called in place of the AVX2 instantiation when cpu_use_avx512().
#include "../conv2d_small_cin.h"
#include "../generic/conv2d_small_cin.h"
#include "../vec/vec_avx512.h"

namespace mnx {
namespace cpu {

const SmallCinConvKernels<float>& conv2d_small_cin_kernels_avx512() {
  return SmallCinConv<VecAvx512>::table("avx512");
}

}  // namespace cpu
}  // namespace mnx
