// Portable depthwise convolution kernels for any kernel size, stride,
// padding, dilation and channel multiplier, both layouts. They are the
// general path behind the vectorised specialisations and the float64 path.
#include "../cpu_kernels.h"
#include "../../kernels/depthwise_index.h"

#include <vector>

namespace mnx {
namespace cpu {

template <typename T>
void depthwise_forward_scalar(const DepthwiseShape& s, const T* x, const T* w,
                              const T* bias, T* y, Activation act,
                              int64_t begin, int64_t end) {
  const int64_t Co = s.C_out();
  const int64_t KK = s.KH * s.KW;
  if (s.layout == Layout::NCHW) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t n = u / Co, oc = u % Co, c = oc / s.mult;
      const T* xp = x + (n * s.C + c) * s.H * s.W;
      const T* wp = w + oc * KK;
      T* yp = y + u * s.OH * s.OW;
      const T b0 = bias ? bias[oc] : T(0);
      for (int64_t oh = 0; oh < s.OH; ++oh) {
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          T acc = b0;
          for_each_input_tap(s, oh, ow, s.KH, s.KW, [&](int64_t kh, int64_t kw, int64_t ih, int64_t iw) {
            acc += xp[ih * s.W + iw] * wp[kh * s.KW + kw];
          });
          yp[oh * s.OW + ow] = apply_activation(acc, act);
        }
      }
    }
  } else {
    // NHWC: unit = (n, oh); the inner loop runs over contiguous channels.
    std::vector<T> acc(Co);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t n = u / s.OH, oh = u % s.OH;
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        for (int64_t oc = 0; oc < Co; ++oc) acc[oc] = bias ? bias[oc] : T(0);
        for_each_input_tap(s, oh, ow, s.KH, s.KW, [&](int64_t kh, int64_t kw, int64_t ih, int64_t iw) {
          const T* xp = x + ((n * s.H + ih) * s.W + iw) * s.C;
          const T* wp = w + kh * s.KW + kw;
          for (int64_t oc = 0; oc < Co; ++oc) acc[oc] += xp[oc / s.mult] * wp[oc * KK];
        });
        T* yp = y + ((n * s.OH + oh) * s.OW + ow) * Co;
        for (int64_t oc = 0; oc < Co; ++oc)
          yp[oc] = apply_activation(acc[oc], act);
      }
    }
  }
}

// Tap loops (for_each_input_tap, for_each_grad_tap over src_index):
// csrc/kernels/depthwise_index.h, shared with the CUDA kernels.

template <typename T>
void depthwise_grad_input_scalar(const DepthwiseShape& s, const T* gy,
                                 const T* w, T* gx, int64_t begin,
                                 int64_t end) {
  const int64_t Co = s.C_out();
  const int64_t KK = s.KH * s.KW;
  if (s.layout == Layout::NCHW) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t n = u / s.C, c = u % s.C;
      T* gxp = gx + u * s.H * s.W;
      for (int64_t ih = 0; ih < s.H; ++ih) {
        for (int64_t iw = 0; iw < s.W; ++iw) {
          T acc = T(0);
          for (int64_t j = 0; j < s.mult; ++j) {
            const int64_t oc = c * s.mult + j;
            const T* gyp = gy + (n * Co + oc) * s.OH * s.OW;
            const T* wp = w + oc * KK;
            for_each_grad_tap(s, ih, iw, [&](int64_t kh, int64_t kw, int64_t oh, int64_t ow) {
              acc += gyp[oh * s.OW + ow] * wp[kh * s.KW + kw];
            });
          }
          gxp[ih * s.W + iw] = acc;
        }
      }
    }
  } else {
    std::vector<T> acc(s.C);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t n = u / s.H, ih = u % s.H;
      for (int64_t iw = 0; iw < s.W; ++iw) {
        for (int64_t c = 0; c < s.C; ++c) acc[c] = T(0);
        for_each_grad_tap(s, ih, iw, [&](int64_t kh, int64_t kw, int64_t oh, int64_t ow) {
          const T* gyp = gy + ((n * s.OH + oh) * s.OW + ow) * Co;
          const T* wp = w + kh * s.KW + kw;
          for (int64_t oc = 0; oc < Co; ++oc) acc[oc / s.mult] += gyp[oc] * wp[oc * KK];
        });
        T* gxp = gx + ((n * s.H + ih) * s.W + iw) * s.C;
        for (int64_t c = 0; c < s.C; ++c) gxp[c] = acc[c];
      }
    }
  }
}

template <typename T>
void depthwise_grad_weight_scalar(const DepthwiseShape& s, const T* gy,
                                  const T* x, T* gw, int64_t begin,
                                  int64_t end) {
  const int64_t Co = s.C_out();
  const int64_t KK = s.KH * s.KW;
  const int64_t B = kDepthwiseWeightChannelBlock;
  std::vector<T> acc(B * KK);
  for (int64_t u = begin; u < end; ++u) {
    const int64_t oc0 = u * B;
    const int64_t nb = (oc0 + B <= Co) ? B : Co - oc0;
    for (auto& v : acc) v = T(0);
    // each tap's sum runs over (n, oh, ow) in order
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t oh = 0; oh < s.OH; ++oh)
        for (int64_t ow = 0; ow < s.OW; ++ow)
          for_each_input_tap(s, oh, ow, s.KH, s.KW, [&](int64_t kh, int64_t kw, int64_t ih, int64_t iw) {
            for (int64_t b = 0; b < nb; ++b) {
              const int64_t oc = oc0 + b, c = oc / s.mult;
              T g, xv;
              if (s.layout == Layout::NCHW) {
                g = gy[((n * Co + oc) * s.OH + oh) * s.OW + ow];
                xv = x[((n * s.C + c) * s.H + ih) * s.W + iw];
              } else {
                g = gy[((n * s.OH + oh) * s.OW + ow) * Co + oc];
                xv = x[((n * s.H + ih) * s.W + iw) * s.C + c];
              }
              acc[b * KK + kh * s.KW + kw] += g * xv;
            }
          });
    for (int64_t b = 0; b < nb; ++b)
      for (int64_t k = 0; k < KK; ++k) gw[(oc0 + b) * KK + k] = acc[b * KK + k];
  }
}

#define MNX_INSTANTIATE(T)                                                    \
  template void depthwise_forward_scalar<T>(const DepthwiseShape&, const T*, \
                                            const T*, const T*, T*,          \
                                            Activation, int64_t, int64_t);   \
  template void depthwise_grad_input_scalar<T>(                              \
      const DepthwiseShape&, const T*, const T*, T*, int64_t, int64_t);      \
  template void depthwise_grad_weight_scalar<T>(                             \
      const DepthwiseShape&, const T*, const T*, T*, int64_t, int64_t);
MNX_INSTANTIATE(float)
MNX_INSTANTIATE(double)
#undef MNX_INSTANTIATE

}  // namespace cpu
}  // namespace mnx
