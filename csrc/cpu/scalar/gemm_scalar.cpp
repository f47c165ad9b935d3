// Portable strided GEMM (see GemmArgs in params.h): the float64 path and the
// reference the vectorised micro-kernels are tested against.
#include "../cpu_kernels.h"

#include <algorithm>
#include <vector>

namespace mnx {
namespace cpu {

template <typename T>
void gemm_scalar(const GemmArgs& g, const T* A, const T* B, T* C,
                 const T* bias, const T* residual, int64_t begin,
                 int64_t end) {
  const int64_t tm = gemm_tiles_m(g), tn = gemm_tiles_n(g);
  std::vector<T> acc(kGemmTileN);
  for (int64_t u = begin; u < end; ++u) {
    const int64_t b_out = u / (tm * tn);
    const int64_t r = u % (tm * tn);
    const int64_t m0 = (r / tn) * kGemmTileM, n0 = (r % tn) * kGemmTileN;
    const int64_t m1 = std::min(g.M, m0 + kGemmTileM);
    const int64_t n1 = std::min(g.N, n0 + kGemmTileN);
    const int64_t nb0 = g.sum_batch ? 0 : b_out;
    const int64_t nb1 = g.sum_batch ? g.batch : b_out + 1;
    T* Cb = C + (g.sum_batch ? 0 : b_out * g.c_bs);
    const T* Rb = residual ? residual + (g.sum_batch ? 0 : b_out * g.c_bs)
                           : nullptr;
    const int64_t pa = g.a_panel, pb = g.b_panel;  // packed operands (params.h)
    for (int64_t m = m0; m < m1; ++m) {
      for (int64_t n = n0; n < n1; ++n) acc[n - n0] = T(0);
      for (int64_t b = nb0; b < nb1; ++b) {
        const T* Ab = pa > 0 ? A + (m / pa) * g.K * pa + m % pa : A + b * g.a_bs + m * g.a_rs;
        const int64_t a_cs = pa > 0 ? pa : g.a_cs;
        const T* Bb = B + b * g.b_bs;
        for (int64_t k = 0; k < g.K; ++k) {
          const T a = Ab[k * a_cs];
          if (pb > 0) {
            for (int64_t n = n0; n < n1; ++n)
              acc[n - n0] += a * B[((n / pb) * g.K + k) * pb + n % pb];
            continue;
          }
          const T* Bk = Bb + k * g.b_rs;
          for (int64_t n = n0; n < n1; ++n) acc[n - n0] += a * Bk[gemm_b_col(g, n)];
        }
      }
      for (int64_t n = n0; n < n1; ++n) {
        T v = acc[n - n0];
        if (bias) v += bias[g.bias_per_row ? m : n];
        v = apply_activation(v, g.act);
        if (Rb) v += Rb[m * g.ldc + gemm_c_col(g, n)];
        Cb[m * g.ldc + gemm_c_col(g, n)] = v;
      }
    }
  }
}

void gemm_pack_panels(const float* W, int64_t rows, int64_t K, int64_t ld, int64_t R,
                      float* dst) {
  for (int64_t p = 0; p * R < rows; ++p)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t r = 0; r < R; ++r) {
        const int64_t row = p * R + r;
        dst[(p * K + k) * R + r] = row < rows ? W[row * ld + k] : 0.f;
      }
}

template void gemm_scalar<float>(const GemmArgs&, const float*, const float*,
                                 float*, const float*, const float*, int64_t,
                                 int64_t);
template void gemm_scalar<double>(const GemmArgs&, const double*,
                                  const double*, double*, const double*,
                                  const double*, int64_t, int64_t);

}  // namespace cpu
}  // namespace mnx
