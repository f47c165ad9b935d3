// The FMA throughput probe (generic/fma_peak.h) for AVX-512F.
#include "../generic/fma_peak.h"
#include "../vec/vec_avx512.h"
#include "../cpu_kernels.h"

namespace mnx {
namespace cpu {

int64_t fma_peak_avx512_f32(int64_t iters, float* sink) { return fma_peak_run<VecAvx512>(iters, sink); }

}  // namespace cpu
}  // namespace mnx
