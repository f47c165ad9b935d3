// The selected depthwise kernel family (AVX2 on x86-64, NEON on AArch64)
// against the scalar reference, over a grid that reaches every specialised
// path (layouts, kernel sizes, strides, paddings, dilations, multipliers,
// map sizes around the vector width, channel tails, activations), with the
// work units split into random sub-ranges as threads would.
#include <algorithm>
#include <cstdio>
#include <random>
#include <string>

#include "cpu/cpu_kernels.h"
#include "tester.h"

using namespace mnx;
using mnx_test::Buffer;

namespace {

std::mt19937 rng(1234);

// Calls fn(b, e) over [0, units) split at random points.
template <typename F>
void split_run(int64_t units, F fn) {
  int64_t b = 0;
  while (b < units) {
    const int64_t e = std::min<int64_t>(units, b + 1 + rng() % 5);
    fn(b, e);
    b = e;
  }
}

bool run_case(const DepthwiseShape& s, Activation act, bool bias) {
  const auto& k = cpu::depthwise_kernels_f32();
  const int64_t Co = s.C_out();
  Buffer x(s.N * s.C * s.H * s.W), w(Co * s.KH * s.KW), b(Co);
  mnx_test::fill_random(x, 1);
  mnx_test::fill_random(w, 2);
  mnx_test::fill_random(b, 3);
  for (int64_t i = 0; i < x.n; ++i) x.data[i] *= 4.f;  // reach the activation kinks
  const int64_t ny = s.N * Co * s.OH * s.OW;
  Buffer y(ny), yref(ny), gy(ny);
  mnx_test::fill_random(gy, 4);
  const float* bp = bias ? b.ptr() : nullptr;
  char name[256];
  std::snprintf(name, sizeof name,
                "%s N%lld C%lld %lldx%lld k%lldx%lld s%lld,%lld p%lld,%lld d%lld,%lld m%lld act%d bias%d",
                s.layout == Layout::NCHW ? "NCHW" : "NHWC", (long long)s.N, (long long)s.C,
                (long long)s.H, (long long)s.W, (long long)s.KH, (long long)s.KW, (long long)s.SH,
                (long long)s.SW, (long long)s.PH, (long long)s.PW, (long long)s.DH, (long long)s.DW,
                (long long)s.mult, (int)act, (int)bias);
  bool ok = true;
  split_run(depthwise_forward_units(s), [&](int64_t b0, int64_t b1) {
    k.forward(s, x.ptr(), w.ptr(), bp, y.ptr(), act, b0, b1);
  });
  cpu::depthwise_forward_scalar<float>(s, x.ptr(), w.ptr(), bp, yref.ptr(), act, 0,
                                       depthwise_forward_units(s));
  ok &= mnx_test::close(y, yref, 1e-5, (std::string("forward ") + name).c_str());

  Buffer gx(x.n), gxref(x.n);
  split_run(depthwise_grad_input_units(s), [&](int64_t b0, int64_t b1) {
    k.grad_input(s, gy.ptr(), w.ptr(), gx.ptr(), b0, b1);
  });
  cpu::depthwise_grad_input_scalar<float>(s, gy.ptr(), w.ptr(), gxref.ptr(), 0,
                                          depthwise_grad_input_units(s));
  ok &= mnx_test::close(gx, gxref, 1e-5, (std::string("grad_input ") + name).c_str());

  Buffer gw(w.n), gwref(w.n);
  split_run(depthwise_grad_weight_units(s), [&](int64_t b0, int64_t b1) {
    k.grad_weight(s, gy.ptr(), x.ptr(), gw.ptr(), b0, b1);
  });
  cpu::depthwise_grad_weight_scalar<float>(s, gy.ptr(), x.ptr(), gwref.ptr(), 0,
                                           depthwise_grad_weight_units(s));
  ok &= mnx_test::close(gw, gwref, 2e-5, (std::string("grad_weight ") + name).c_str());

  if (k.grad_weight_nhwc_partial && s.layout == Layout::NHWC && s.mult == 1) {
    // the one-pass partial-sum path, reduced in chunk order as the glue does
    const int64_t chunks = depthwise_grad_weight_row_chunks(s), KK = s.KH * s.KW;
    Buffer partial(chunks * KK * s.C), gw2(w.n);
    split_run(chunks, [&](int64_t b0, int64_t b1) {
      k.grad_weight_nhwc_partial(s, gy.ptr(), x.ptr(), partial.ptr(), b0, b1);
    });
    for (int64_t i = 0; i < KK * s.C; ++i) {
      float acc = 0.f;
      for (int64_t u = 0; u < chunks; ++u) acc += partial.data[u * KK * s.C + i];
      gw2.data[(i % s.C) * KK + i / s.C] = acc;
    }
    ok &= partial.canaries_ok();
    ok &= mnx_test::close(gw2, gwref, 2e-5, (std::string("grad_weight partial ") + name).c_str());
  }
  return ok;
}

}  // namespace

int main() {
  mnx_test::Counter t;
  std::printf("isa: %s\n", cpu::selected_isa());
  const int64_t sizes[][2] = {{1, 1}, {7, 7}, {8, 9}, {16, 17}, {23, 30}, {3, 40}, {12, 5}};
  // {3, 9}: kernel width > 7 within 49 taps (the generic vector grad_weight)
  const int64_t kernels[][2] = {{1, 1}, {3, 3}, {5, 5}, {7, 7}, {3, 5}, {2, 4}, {9, 9}, {3, 9}};
  const int64_t channels[] = {1, 3, 8, 17, 40};
  int i = 0;
  for (int layout = 0; layout < 2; ++layout)
    for (auto& kk : kernels)
      for (int64_t stride : {1, 2, 3})
        for (int64_t dil : {1, 2})
          for (auto& hw : sizes) {
            DepthwiseShape s;
            s.layout = layout ? Layout::NHWC : Layout::NCHW;
            s.N = 1 + i % 2;
            s.C = channels[i % 5];
            s.mult = (i % 6 == 5) ? 2 : 1;
            s.H = hw[0];
            s.W = hw[1];
            s.KH = kk[0];
            s.KW = kk[1];
            s.SH = (i % 3 == 2) ? 1 : stride;  // some cases with SH != SW
            s.SW = stride;
            s.DH = dil;
            s.DW = (i % 4 == 3) ? 1 : dil;
            s.PH = (i % 3) * s.KH / 2;
            s.PW = (i % 2) ? s.KW / 2 : s.KW - 1;
            s.OH = conv_out_size(s.H, s.KH, s.SH, s.PH, s.DH);
            s.OW = conv_out_size(s.W, s.KW, s.SW, s.PW, s.DW);
            ++i;
            if (s.OH < 1 || s.OW < 1) continue;
            t.check(run_case(s, static_cast<Activation>(i % 4), i % 3 != 0));
          }
  // Large MobileNet-like planes: long vector runs, both strides.
  for (int layout = 0; layout < 2; ++layout)
    for (int64_t k : {3, 5, 7})
      for (int64_t stride : {1, 2})
        for (int64_t width : {29, 70}) {
        DepthwiseShape s;
        s.layout = layout ? Layout::NHWC : Layout::NCHW;
        s.N = 2; s.C = 24; s.H = 28; s.W = width;
        s.KH = s.KW = k; s.SH = s.SW = stride; s.PH = s.PW = k / 2;
        s.OH = conv_out_size(s.H, k, stride, k / 2, 1);
        s.OW = conv_out_size(s.W, k, stride, k / 2, 1);
        t.check(run_case(s, Activation::ReLU6, true));
      }
  return t.finish("test_depthwise");
}
