// The FMA throughput probe (generic/fma_peak.h) for AVX2/FMA.
#include "../generic/fma_peak.h"
#include "../vec/vec_avx2.h"
#include "../cpu_kernels.h"

namespace mnx {
namespace cpu {

int64_t fma_peak_avx2_f32(int64_t iters, float* sink) { return fma_peak_run<VecAvx2>(iters, sink); }

}  // namespace cpu
}  // namespace mnx
