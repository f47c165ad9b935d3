// Portable small-Cin dense convolution (conv2d_small_cin.h), any T: the
// float64 path and the reference the vector kernels are tested against.
#include "../conv2d_small_cin.h"
#include "../cpu_kernels.h"

namespace mnx {
namespace cpu {

template <typename T>
bool conv2d_small_cin_forward_scalar(const SmallCinConvShape& s, const T* x, const T* w, const T* bias, T* y,
                                     Activation act, int64_t begin, int64_t end) {
  const bool nhwc = s.layout == Layout::NHWC, nhwc_out = s.out_layout == Layout::NHWC;
  for (int64_t u = begin; u < end; ++u) {
    const int64_t n = u / s.OH, oh = u % s.OH;
    for (int64_t co = 0; co < s.Cout; ++co)
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        T acc = bias ? bias[co] : T(0);
        for (int64_t ci = 0; ci < s.Cin; ++ci)
          for (int64_t kh = 0; kh < s.KH; ++kh) {
            const int64_t ih = oh * s.SH - s.PH + kh;
            if (ih < 0 || ih >= s.H) continue;
            for (int64_t kw = 0; kw < s.KW; ++kw) {
              const int64_t iw = ow * s.SW - s.PW + kw;
              if (iw < 0 || iw >= s.W) continue;
              const T xv = nhwc ? x[((n * s.H + ih) * s.W + iw) * s.Cin + ci]
                                : x[((n * s.Cin + ci) * s.H + ih) * s.W + iw];
              acc += xv * w[s.w_index(co, ci, kh, kw)];
            }
          }
        const T v = apply_activation<T>(acc, act);
        if (nhwc_out)
          y[((n * s.OH + oh) * s.OW + ow) * s.Cout + co] = v;
        else
          y[((n * s.Cout + co) * s.OH + oh) * s.OW + ow] = v;
      }
  }
  return true;
}

// Row by row in row order; per row and element the sum over the row's
// pixels first (ow in order), then added to the total.
template <typename T>
bool conv2d_small_cin_grad_weight_scalar(const SmallCinConvShape& s, const T* x, const T* gy, T* gw, T* gb,
                                         int64_t begin, int64_t end) {
  const bool nhwc = s.layout == Layout::NHWC;
  const int64_t taps = s.Cin * s.KH * s.KW;
  for (int64_t i = 0; i < s.Cout * taps; ++i) gw[i] = T(0);
  if (gb)
    for (int64_t co = 0; co < s.Cout; ++co) gb[co] = T(0);
  auto g_at = [&](int64_t n, int64_t co, int64_t oh, int64_t ow) {
    return nhwc ? gy[((n * s.OH + oh) * s.OW + ow) * s.Cout + co] : gy[((n * s.Cout + co) * s.OH + oh) * s.OW + ow];
  };
  for (int64_t u = begin; u < end; ++u) {
    const int64_t n = u / s.OH, oh = u % s.OH;
    for (int64_t co = 0; co < s.Cout; ++co) {
      if (gb) {
        T row(0);
        for (int64_t ow = 0; ow < s.OW; ++ow) row += g_at(n, co, oh, ow);
        gb[co] += row;
      }
      for (int64_t ci = 0; ci < s.Cin; ++ci)
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          const int64_t ih = oh * s.SH - s.PH + kh;
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            T row(0);
            for (int64_t ow = 0; ow < s.OW; ++ow) {
              // padding taps add gy * 0 (a NaN in gy reaches every tap)
              const int64_t iw = ow * s.SW - s.PW + kw;
              const bool in = ih >= 0 && ih < s.H && iw >= 0 && iw < s.W;
              const T xv = !in ? T(0)
                           : nhwc ? x[((n * s.H + ih) * s.W + iw) * s.Cin + ci]
                                  : x[((n * s.Cin + ci) * s.H + ih) * s.W + iw];
              row += g_at(n, co, oh, ow) * xv;
            }
            gw[((co * s.Cin + ci) * s.KH + kh) * s.KW + kw] += row;
          }
        }
    }
  }
  return true;
}

template bool conv2d_small_cin_grad_weight_scalar<float>(const SmallCinConvShape&, const float*, const float*,
                                                         float*, float*, int64_t, int64_t);
template bool conv2d_small_cin_grad_weight_scalar<double>(const SmallCinConvShape&, const double*, const double*,
                                                          double*, double*, int64_t, int64_t);

template bool conv2d_small_cin_forward_scalar<float>(const SmallCinConvShape&, const float*, const float*,
                                                     const float*, float*, Activation, int64_t, int64_t);
template bool conv2d_small_cin_forward_scalar<double>(const SmallCinConvShape&, const double*, const double*,
                                                      const double*, double*, Activation, int64_t, int64_t);

}  // namespace cpu
}  // namespace mnx
