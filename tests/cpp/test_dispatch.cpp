// The dispatcher returns a complete kernel family for this CPU.
#include "cpu/cpu_kernels.h"
#include "tester.h"

int main() {
  mnx_test::Counter t;
  const auto& dw = mnx::cpu::depthwise_kernels_f32();
  const auto& gm = mnx::cpu::gemm_kernels_f32();
  t.check(dw.forward && dw.grad_input && dw.grad_weight && gm.run);
  t.check(mnx::cpu::selected_isa() != nullptr);
  std::printf("isa: %s\n", mnx::cpu::selected_isa());
  return t.finish("test_dispatch");
}
