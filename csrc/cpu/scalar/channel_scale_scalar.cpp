// Channel sums and scaling, portable reference (any T): the float64 path, the
// float32 path when no SIMD family is selected, and the oracle of
// tests/cpp/test_channel_scale.cpp. Independent of the vector layer; same
// work units as generic/channel_scale.h (../channel_scale.h), sums in double.
#include <algorithm>

#include "../channel_scale.h"

namespace mnx {
namespace cpu {

template <typename T>
void channel_sums_scalar(const ChannelShape& s, const T* a, const T* b, double* sum_a, double* sum_ab,
                         int64_t begin, int64_t end) {
  if (s.layout == Layout::NCHW) {
    for (int64_t u = begin; u < end; ++u) {
      double ta = 0, tab = 0;
      for (int64_t i = u * s.HW; i < (u + 1) * s.HW; ++i) {
        ta += double(a[i]);
        if (b) tab += double(a[i]) * double(b[i]);
      }
      sum_a[u] = ta;
      if (b) sum_ab[u] = tab;
    }
    return;
  }
  const int64_t blocks = (s.C + kChannelSumBlock - 1) / kChannelSumBlock;
  for (int64_t u = begin; u < end; ++u) {
    const int64_t n = u / blocks, c0 = (u % blocks) * kChannelSumBlock;
    const int64_t c1 = std::min(s.C, c0 + kChannelSumBlock);
    for (int64_t c = c0; c < c1; ++c) {
      double ta = 0, tab = 0;
      for (int64_t r = 0; r < s.HW; ++r) {
        const int64_t i = (n * s.HW + r) * s.C + c;
        ta += double(a[i]);
        if (b) tab += double(a[i]) * double(b[i]);
      }
      sum_a[n * s.C + c] = ta;
      if (b) sum_ab[n * s.C + c] = tab;
    }
  }
}

template <typename T>
void channel_scale_scalar(const ChannelShape& s, const T* x, const T* scale, const T* shift, T* y, int64_t begin,
                          int64_t end) {
  if (s.layout == Layout::NCHW) {
    for (int64_t u = begin; u < end; ++u)
      for (int64_t i = u * s.HW; i < (u + 1) * s.HW; ++i) y[i] = shift ? x[i] * scale[u] + shift[u] : x[i] * scale[u];
    return;
  }
  for (int64_t r = begin; r < end; ++r) {
    const int64_t nc = (r / s.HW) * s.C;
    for (int64_t c = 0; c < s.C; ++c) {
      const int64_t i = r * s.C + c;
      y[i] = shift ? x[i] * scale[nc + c] + shift[nc + c] : x[i] * scale[nc + c];
    }
  }
}

#define MNX_INSTANTIATE_CHANNEL(T)                                                                           \
  template void channel_sums_scalar<T>(const ChannelShape&, const T*, const T*, double*, double*, int64_t, \
                                       int64_t);                                                          \
  template void channel_scale_scalar<T>(const ChannelShape&, const T*, const T*, const T*, T*, int64_t, int64_t);
MNX_INSTANTIATE_CHANNEL(float)
MNX_INSTANTIATE_CHANNEL(double)
#undef MNX_INSTANTIATE_CHANNEL

}  // namespace cpu
}  // namespace mnx
