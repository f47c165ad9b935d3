// Fused BatchNorm + activation, portable reference (any T): the float64 path,
// the float32 path when no SIMD family is selected, and the oracle of
// tests/cpp/test_batchnorm_act.cpp. Independent of the vector layer; same
// work units and partial-sum layout as generic/batchnorm_act.h
// (../batchnorm_act.h). Sums are kept in double.
#include <algorithm>

#include "../batchnorm_act.h"
#include "../cpu_kernels.h"

namespace mnx {
namespace cpu {

template <typename T>
void bn_stats_scalar(const BatchNormShape& s, const T* x, double* partial, int64_t begin, int64_t end) {
  if (s.layout == Layout::NCHW) {
    for (int64_t u = begin; u < end; ++u) {
      int64_t n, c0, c1;
      bn_nchw_unit(s, u, n, c0, c1);
      for (int64_t c = c0; c < c1; ++c) {
        const double x0 = x[c * s.HW];
        double s1 = 0, s2 = 0;
        const T* p = x + (n * s.C + c) * s.HW;
        for (int64_t i = 0; i < s.HW; ++i) {
          const double d = double(p[i]) - x0;
          s1 += d;
          s2 += d * d;
        }
        partial[2 * (n * s.C + c)] = s1;
        partial[2 * (n * s.C + c) + 1] = s2;
      }
    }
    return;
  }
  const int64_t C = s.C, cr = bn_chunk_rows(s), rows = s.N * s.HW;
  for (int64_t u = begin; u < end; ++u) {
    double* out = partial + u * 2 * C;
    std::fill(out, out + 2 * C, 0.0);
    for (int64_t r = u * cr; r < std::min(rows, (u + 1) * cr); ++r)
      for (int64_t c = 0; c < C; ++c) {
        const double d = double(x[r * C + c]) - double(x[c]);
        out[2 * c] += d;
        out[2 * c + 1] += d * d;
      }
  }
}

template <typename T>
void bn_apply_scalar(const BatchNormShape& s, const T* x, const T* ctr, const T* scale, const T* shift,
                     Activation act, T* y, int64_t begin, int64_t end) {
  if (s.layout == Layout::NCHW) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t c = u % s.C;
      for (int64_t i = u * s.HW; i < (u + 1) * s.HW; ++i)
        y[i] = apply_activation<T>((x[i] - ctr[c]) * scale[c] + shift[c], act);
    }
    return;
  }
  for (int64_t r = begin; r < end; ++r)
    for (int64_t c = 0; c < s.C; ++c) {
      const int64_t i = r * s.C + c;
      y[i] = apply_activation<T>((x[i] - ctr[c]) * scale[c] + shift[c], act);
    }
}

template <typename T>
void bn_backward_reduce_scalar(const BatchNormShape& s, const T* dy, const T* x, const T* mean, const T* scale,
                               const T* beta, Activation act, double* partial, int64_t begin, int64_t end) {
  if (s.layout == Layout::NCHW) {
    for (int64_t u = begin; u < end; ++u) {
      int64_t n, c0, c1;
      bn_nchw_unit(s, u, n, c0, c1);
      for (int64_t c = c0; c < c1; ++c) {
        double s1 = 0, s2 = 0;
        for (int64_t i = (n * s.C + c) * s.HW; i < (n * s.C + c + 1) * s.HW; ++i) {
          const T d = x[i] - mean[c];
          const T g = bn_act_grad<T>(d * scale[c] + beta[c], dy[i], act);
          s1 += g;
          s2 += double(g) * double(d);
        }
        partial[2 * (n * s.C + c)] = s1;
        partial[2 * (n * s.C + c) + 1] = s2;
      }
    }
    return;
  }
  const int64_t C = s.C, cr = bn_chunk_rows(s), rows = s.N * s.HW;
  for (int64_t u = begin; u < end; ++u) {
    double* out = partial + u * 2 * C;
    std::fill(out, out + 2 * C, 0.0);
    for (int64_t r = u * cr; r < std::min(rows, (u + 1) * cr); ++r)
      for (int64_t c = 0; c < C; ++c) {
        const int64_t i = r * C + c;
        const T d = x[i] - mean[c];
        const T g = bn_act_grad<T>(d * scale[c] + beta[c], dy[i], act);
        out[2 * c] += g;
        out[2 * c + 1] += double(g) * double(d);
      }
  }
}

template <typename T>
void bn_backward_dx_scalar(const BatchNormShape& s, const T* dy, const T* x, const T* mean, const T* scale,
                           const T* beta, const T* A, const T* B, const T* K, Activation act, T* dx,
                           int64_t begin, int64_t end) {
  auto one = [&](int64_t i, int64_t c) {
    const T d = x[i] - mean[c];
    const T g = bn_act_grad<T>(d * scale[c] + beta[c], dy[i], act);
    dx[i] = A[c] * g + B[c] * d + K[c];
  };
  if (s.layout == Layout::NCHW) {
    for (int64_t u = begin; u < end; ++u)
      for (int64_t i = u * s.HW; i < (u + 1) * s.HW; ++i) one(i, u % s.C);
    return;
  }
  for (int64_t r = begin; r < end; ++r)
    for (int64_t c = 0; c < s.C; ++c) one(r * s.C + c, c);
}

#define MNX_BN_INSTANTIATE(T)                                                                                   \
  template void bn_stats_scalar<T>(const BatchNormShape&, const T*, double*, int64_t, int64_t);                 \
  template void bn_apply_scalar<T>(const BatchNormShape&, const T*, const T*, const T*, const T*, Activation, \
                                   T*, int64_t, int64_t);                                                       \
  template void bn_backward_reduce_scalar<T>(const BatchNormShape&, const T*, const T*, const T*, const T*,    \
                                             const T*, Activation, double*, int64_t, int64_t);                  \
  template void bn_backward_dx_scalar<T>(const BatchNormShape&, const T*, const T*, const T*, const T*,        \
                                         const T*, const T*, const T*, const T*, Activation, T*, int64_t,       \
                                         int64_t);
MNX_BN_INSTANTIATE(float)
MNX_BN_INSTANTIATE(double)
#undef MNX_BN_INSTANTIATE

}  // namespace cpu
}  // namespace mnx
