// The FMA throughput probe (generic/fma_peak.h) for AArch64 NEON.
#include "../generic/fma_peak.h"
#include "../vec/vec_neon.h"
#include "../cpu_kernels.h"

namespace mnx {
namespace cpu {

int64_t fma_peak_neon_f32(int64_t iters, float* sink) { return fma_peak_run<VecNeon>(iters, sink); }

}  // namespace cpu
}  // namespace mnx
