// The dispatcher returns a complete kernel family for this CPU, and the
// family one expects: NEON on AArch64 (so the NEON kernel tests do not
// silently compare scalar with scalar), AVX2 on x86-64 with AVX2+FMA, unless
// MOBILENET_EXT_ISA=scalar forces the portable kernels.
#include <cstdlib>
#include <cstring>
#include <string>

#include "cpu/cpu_kernels.h"
#include "tester.h"
#if defined(__aarch64__)
#include "cpu/neon/neon_kernels.h"
#endif

int main() {
  mnx_test::Counter t;
  const auto& dw = mnx::cpu::depthwise_kernels_f32();
  const auto& gm = mnx::cpu::gemm_kernels_f32();
  t.check(dw.forward && dw.grad_input && dw.grad_weight && gm.run);
  t.check(mnx::cpu::selected_isa() != nullptr);
  std::printf("isa: %s\n", mnx::cpu::selected_isa());
  const char* env = std::getenv("MOBILENET_EXT_ISA");
  const bool forced_scalar = env && std::strcmp(env, "scalar") == 0;
  const std::string isa = mnx::cpu::selected_isa();
  if (forced_scalar) {
    t.check(isa == "scalar" && dw.forward == mnx::cpu::depthwise_forward_scalar<float>);
  } else {
#if defined(__aarch64__)
    t.check(isa == "neon");
    t.check(std::string(dw.isa) == "neon" && std::string(gm.isa) == "neon");
    t.check(dw.forward == mnx::cpu::depthwise_forward_neon_f32);
    t.check(dw.grad_input == mnx::cpu::depthwise_grad_input_neon_f32);
    t.check(dw.grad_weight == mnx::cpu::depthwise_grad_weight_neon_f32);
    t.check(dw.grad_weight_nhwc_partial == mnx::cpu::depthwise_grad_weight_nhwc_partial_neon);
    t.check(gm.run == mnx::cpu::gemm_neon_f32);
    // the routing reports vectorised paths for the MobileNet shapes
    mnx::DepthwiseShape s;
    s.N = 1; s.C = 8; s.H = s.W = 16; s.KH = s.KW = 3; s.PH = s.PW = 1;
    s.OH = s.OW = 16;
    t.check(std::string(mnx::cpu::depthwise_neon_path(s, 0)) == "nchw_rows_k3s1");
    t.check(std::string(mnx::cpu::depthwise_neon_path(s, 1)) == "nchw_gi_s1");
    t.check(std::string(mnx::cpu::depthwise_neon_path(s, 2)) == "nchw_gw_s1");
    s.layout = mnx::Layout::NHWC;
    t.check(std::string(mnx::cpu::depthwise_neon_path(s, 0)) == "nhwc_m1");
#elif defined(__x86_64__)
    t.check(isa == (mnx::cpu::cpu_has_avx2_fma() ? "avx2" : "scalar"));
    // the GEMM is the AVX-512 one exactly when the CPU has AVX-512F and
    // MOBILENET_EXT_ISA does not cap the ISA at avx2
    const bool capped = env && std::strcmp(env, "avx2") == 0;
    if (isa == "avx2")
      t.check(std::string(gm.isa) ==
              (mnx::cpu::cpu_has_avx512f() && !capped ? "avx512" : "avx2"));
    t.check(mnx::cpu::cpu_use_avx512() == (mnx::cpu::cpu_has_avx512f() && !capped));
#endif
  }
  return t.finish("test_dispatch");
}
