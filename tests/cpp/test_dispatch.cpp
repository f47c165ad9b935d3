// The dispatcher returns a complete kernel family for this CPU, and the
// family one expects: NEON on AArch64 (so the NEON kernel tests do not
// silently compare scalar with scalar), AVX2 on x86-64 with AVX2+FMA, unless
// MOBILENET_EXT_ISA=scalar forces the portable kernels. The pointwise GEMM is
// the one gemm_path() names. Depthwise kernel names round-trip, and
// MOBILENET_EXT_DEPTHWISE_PATH (set by this test before the first routing
// call, which reads it once) forces its kernel where that kernel supports the
// shape and changes nothing elsewhere; the entry point then runs exactly that
// kernel. (The routing of representative shapes is checked in
// test_depthwise, which runs without the variable.)
#include <cstdlib>
#include <cstring>
#include <string>

#include "cpu/cpu_kernels.h"
#include "tester.h"

using mnx::cpu::DepthwiseOp;
using mnx::cpu::DepthwisePath;

namespace {

mnx::DepthwiseShape shape(mnx::Layout layout) {
  mnx::DepthwiseShape s;
  s.layout = layout;
  s.N = 1; s.C = 8; s.H = s.W = 16; s.KH = s.KW = 3; s.PH = s.PW = 1;
  s.OH = s.OW = 16;
  return s;
}

}  // namespace

int main() {
  // before anything routes a depthwise call
  setenv("MOBILENET_EXT_DEPTHWISE_PATH", "nchw_direct", 1);
  mnx_test::Counter t;
  const auto& dw = mnx::cpu::depthwise_kernels_f32();
  const auto& gm = mnx::cpu::gemm_kernels_f32();
  t.check(dw.forward && dw.grad_input && dw.grad_weight && gm.run);
  t.check(mnx::cpu::selected_isa() != nullptr);
  std::printf("isa: %s, gemm: %s\n", mnx::cpu::selected_isa(),
              mnx::cpu::gemm_path_name(mnx::cpu::gemm_path()));
  const char* env = std::getenv("MOBILENET_EXT_ISA");
  const bool forced_scalar = env && std::strcmp(env, "scalar") == 0;
  const std::string isa = mnx::cpu::selected_isa();
  // the GEMM table entry is the one gemm_path() names
  t.check(std::string(gm.isa) == mnx::cpu::gemm_path_name(mnx::cpu::gemm_path()));
  // the gradient GEMMs' routing: the AVX2 16-wide tile for 9-16 columns and a
  // reduction >= 32 on the avx512 path, the gemm_kernels_f32() table otherwise
  {
    const bool avx512 = mnx::cpu::gemm_path() == mnx::cpu::GemmPath::avx512;
    const auto& narrow = mnx::cpu::gemm_kernels_f32_backward(16, 64);
    t.check(std::string(narrow.isa) == (avx512 ? "avx2" : gm.isa));
    t.check(&mnx::cpu::gemm_kernels_f32_backward(12, 32) == &narrow);
    t.check(&mnx::cpu::gemm_kernels_f32_backward(8, 4096) == &gm);
    t.check(&mnx::cpu::gemm_kernels_f32_backward(17, 4096) == &gm);
    t.check(&mnx::cpu::gemm_kernels_f32_backward(16, 31) == &gm);
  }
  if (forced_scalar) {
    t.check(isa == "scalar" && dw.forward == mnx::cpu::depthwise_forward_scalar<float>);
    t.check(mnx::cpu::gemm_path() == mnx::cpu::GemmPath::scalar &&
            gm.run == mnx::cpu::gemm_scalar<float>);
  } else {
#if defined(__aarch64__)
    t.check(isa == "neon");
    t.check(std::string(dw.isa) == "neon" && std::string(gm.isa) == "neon");
    const mnx::cpu::DepthwiseKernels<float>& neon = mnx::cpu::depthwise_family_neon().entry;
    t.check(dw.forward == neon.forward && dw.grad_input == neon.grad_input &&
            dw.grad_weight == neon.grad_weight);
    t.check(dw.grad_weight_nhwc_partial && dw.grad_weight_nhwc_partial == neon.grad_weight_nhwc_partial);
    t.check(mnx::cpu::gemm_path() == mnx::cpu::GemmPath::neon);
    t.check(gm.run == mnx::cpu::gemm_kernels_neon().run);
#elif defined(__x86_64__)
    t.check(isa == (mnx::cpu::cpu_has_avx2_fma() ? "avx2" : "scalar"));
    // the GEMM is the AVX-512 one exactly when the CPU has AVX-512F, does
    // not split 512-bit operations (or MOBILENET_EXT_ISA=avx512 forces it)
    // and MOBILENET_EXT_ISA does not cap the ISA at avx2
    const bool capped = env && std::strcmp(env, "avx2") == 0;
    const bool forced = env && std::strcmp(env, "avx512") == 0;
    const bool use512 = mnx::cpu::cpu_has_avx512f() && !capped &&
                        (forced || !mnx::cpu::cpu_avx512_split());
    if (isa == "avx2") {
      t.check(mnx::cpu::gemm_path() ==
              (use512 ? mnx::cpu::GemmPath::avx512 : mnx::cpu::GemmPath::avx2));
      t.check(std::string(gm.isa) == (use512 ? "avx512" : "avx2"));
      t.check(gm.run == (use512 ? mnx::cpu::gemm_kernels_avx512() : mnx::cpu::gemm_kernels_avx2()).run);
      const mnx::cpu::DepthwiseKernels<float>& avx2 = mnx::cpu::depthwise_family_avx2().entry;
      t.check(dw.forward == avx2.forward && dw.grad_input == avx2.grad_input &&
              dw.grad_weight == avx2.grad_weight);
      t.check(dw.grad_weight_nhwc_partial &&
              dw.grad_weight_nhwc_partial == avx2.grad_weight_nhwc_partial);
    }
    t.check(mnx::cpu::cpu_use_avx512() == use512);
#endif
  }
  const char* const gemm_names[] = {"scalar", "avx2", "avx512", "neon"};
  for (int i = 0; i < 4; ++i)
    t.check(std::string(mnx::cpu::gemm_path_name(static_cast<mnx::cpu::GemmPath>(i))) ==
            gemm_names[i]);

  // depthwise kernel names
  for (int i = 0; i < mnx::cpu::kDepthwisePathCount; ++i) {
    const auto p = static_cast<DepthwisePath>(i);
    DepthwisePath q = DepthwisePath::scalar;
    t.check(mnx::cpu::depthwise_path_from_name(mnx::cpu::depthwise_path_name(p), &q) && q == p);
  }
  DepthwisePath q = DepthwisePath::nhwc_direct;
  t.check(!mnx::cpu::depthwise_path_from_name("avx2", &q) && q == DepthwisePath::nhwc_direct);
  t.check(!mnx::cpu::depthwise_path_from_name(nullptr, &q));
  t.check(std::string(mnx::cpu::depthwise_path_name(static_cast<DepthwisePath>(99))) == "?");

  // MOBILENET_EXT_DEPTHWISE_PATH=nchw_direct
  t.check(mnx::cpu::depthwise_path_forced(&q) && q == DepthwisePath::nchw_direct);
  const mnx::DepthwiseShape nchw = shape(mnx::Layout::NCHW), nhwc = shape(mnx::Layout::NHWC);
  for (DepthwiseOp op : {DepthwiseOp::forward, DepthwiseOp::grad_input, DepthwiseOp::grad_weight}) {
    const DepthwisePath a = mnx::cpu::depthwise_path_f32(nchw, op);
    const DepthwisePath b = mnx::cpu::depthwise_path_f32(nhwc, op);
    if (isa == "scalar") {
      t.check(a == DepthwisePath::scalar && b == DepthwisePath::scalar);
      continue;
    }
    // NCHW 3x3 stride 1 would go to nchw_c8_kxk (AVX2) / nchw_kxk_rows
    // (NEON forward): forced to nchw_direct, which both families have
    t.check(a == DepthwisePath::nchw_direct);
    // nchw_direct does not support NHWC: the normal choice
#if defined(__x86_64__)
    const DepthwisePath want =
        op == DepthwiseOp::grad_weight ? DepthwisePath::nhwc_direct
        // (AMD: nhwc_kxk_avx2 first where it runs, as here with 3x3)
        : mnx::cpu::cpu_use_avx512() && !mnx::cpu::cpu_prefer_avx2_nhwc_depthwise()
            ? DepthwisePath::nhwc_kxk_avx512
            : DepthwisePath::nhwc_kxk_avx2;
#else
    const DepthwisePath want = DepthwisePath::nhwc_direct;
#endif
    t.check(b == want);
  }
  // the entry point runs what the routing answers: bitwise the same as
  // running nchw_direct itself
  if (isa != "scalar") {
    mnx_test::Buffer x(8 * 16 * 16), w(8 * 9), y(8 * 16 * 16), y2(8 * 16 * 16);
    mnx_test::fill_random(x, 1);
    mnx_test::fill_random(w, 2);
    dw.forward(nchw, x.ptr(), w.ptr(), nullptr, y.ptr(), mnx::Activation::None, 0, 8);
#if defined(__x86_64__)
    const mnx::cpu::DepthwiseFamilyF32& family = mnx::cpu::depthwise_family_avx2();
#else
    const mnx::cpu::DepthwiseFamilyF32& family = mnx::cpu::depthwise_family_neon();
#endif
    t.check(family.run_forward(DepthwisePath::nchw_direct, nchw, x.ptr(), w.ptr(), nullptr,
                               y2.ptr(), mnx::Activation::None, 0, 8));
    t.check(mnx_test::bitwise_equal(y, y2, "forced nchw_direct forward"));
  }
  return t.finish("test_dispatch");
}
