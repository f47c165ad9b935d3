// AVX-512F strided GEMM (float32): the BLIS-style driver of the AVX2 family
// (csrc/cpu/generic/gemm_driver.h: packing, cache blocking, work units, the
// deterministic per-element FMA chain) around a 12x32 register-blocked
// micro-kernel: 24 zmm accumulators (12 rows x 2 vectors of 16 columns), per
// k two aligned B loads and 12 broadcasts of A feeding 24 FMAs, i.e. 768
// flops per 14 loads (the AVX2 6x16 kernel: 192 per 8). 12 x 32 divides the
// driver's 24 x 64 work-unit tile, so units and their split over threads
// are the same as for every other family.
//
// The whole family is the generic GEMM kernels (../generic/gemm_kernels.h)
// on VecAvx512: the micro-kernel is their register tile at R = 12, NV = 2;
// edge tiles the same tile with R < 12 rows and the last vector masked
// (masked lanes of C are never read or written); the epilogue (bias per row
// or column, activation, residual) in registers before the store; B packing
// with 8x8 register transposes.
// No std:: templates here (ODR: this TU is compiled with -mavx512f).
#include "../generic/gemm_driver.h"
#include "../generic/gemm_kernels.h"
#include "../vec/vec_avx512.h"

namespace mnx {
namespace cpu {
const GemmKernels<float>& gemm_kernels_avx512() {
  return gemm_table<GemmKernel<VecAvx512, 12, 32, true>, 256>("avx512");
}

}  // namespace cpu
}  // namespace mnx
