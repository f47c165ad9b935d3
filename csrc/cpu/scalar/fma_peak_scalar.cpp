// The FMA throughput probe (generic/fma_peak.h) on plain C++ floats (no
// SIMD family compiled or MOBILENET_EXT_ISA=scalar).
#include "../cpu_kernels.h"
#include "../generic/fma_peak.h"
#include "../vec/vec_scalar.h"

namespace mnx {
namespace cpu {

int64_t fma_peak_scalar_f32(int64_t iters, float* sink) { return fma_peak_run<VecScalar>(iters, sink); }

}  // namespace cpu
}  // namespace mnx
