// AVX2 + FMA strided GEMM (float32): BLIS-style packing + cache blocking
// (../generic/gemm_driver.h) around a 6x16 register-blocked micro-kernel (12
// ymm accumulators, 2 B loads + 6 broadcasts per k), written here in inline
// asm. Everything else is the generic GEMM kernels (../generic/
// gemm_kernels.h) on VecAvx2: edge tiles (R x 8 or R x 16, the last vector
// masked), the epilogue (bias per row or column, activation, residual)
// applied before the final store, B packing (8x8 register transposes).
// No std:: templates here (ODR: this TU is compiled with -mavx2 -mfma).
#include <immintrin.h>

#include "../generic/gemm_driver.h"
#include "../generic/gemm_kernels.h"
#include "../vec/vec_avx2.h"

namespace mnx {
namespace cpu {
namespace {

// 6x16 micro-kernel, whole accumulation in inline asm (GCC spilled the
// intrinsics version's accumulators): ymm0..11 = C tile, ymm12/13 = B row,
// ymm14/15 = broadcasts of A. acc = (load_c ? C : 0) + A_panel * B_panel is
// stored to `out` (C itself, or a local tile when an epilogue follows).
// kDirect: A read in place (row stride a_rs, unit column stride); otherwise
// a packed panel a[k * 6 + r].
#define MNX_ROW(A_ADDR, BR, R0, R1)                     \
  "vbroadcastss " A_ADDR ", %%" BR "\n\t"               \
  "vfmadd231ps %%ymm12, %%" BR ", %%" R0 "\n\t"         \
  "vfmadd231ps %%ymm13, %%" BR ", %%" R1 "\n\t"
// one k step: rows 0..5 of A at A0..A5 (broadcasts alternate ymm14 / ymm15)
#define MNX_ROWS(A0, A1, A2, A3, A4, A5)          \
  MNX_ROW(A0, "ymm14", "ymm0", "ymm1")            \
  MNX_ROW(A1, "ymm15", "ymm2", "ymm3")            \
  MNX_ROW(A2, "ymm14", "ymm4", "ymm5")            \
  MNX_ROW(A3, "ymm15", "ymm6", "ymm7")            \
  MNX_ROW(A4, "ymm14", "ymm8", "ymm9")            \
  MNX_ROW(A5, "ymm15", "ymm10", "ymm11")
#define MNX_PROLOGUE                                                    \
  "test %[lc], %[lc]\n\t"                                               \
  "jz 2f\n\t"                                                           \
  "vmovups (%[c]), %%ymm0\n\t"                                          \
  "vmovups 32(%[c]), %%ymm1\n\t"                                        \
  "vmovups (%[c],%[ldc],1), %%ymm2\n\t"                                 \
  "vmovups 32(%[c],%[ldc],1), %%ymm3\n\t"                               \
  "vmovups (%[c],%[ldc],2), %%ymm4\n\t"                                 \
  "vmovups 32(%[c],%[ldc],2), %%ymm5\n\t"                               \
  "lea (%[c],%[ldc],2), %[c]\n\t"                                       \
  "vmovups (%[c],%[ldc],1), %%ymm6\n\t"                                 \
  "vmovups 32(%[c],%[ldc],1), %%ymm7\n\t"                               \
  "vmovups (%[c],%[ldc],2), %%ymm8\n\t"                                 \
  "vmovups 32(%[c],%[ldc],2), %%ymm9\n\t"                               \
  "lea (%[c],%[ldc],2), %[c]\n\t"                                       \
  "vmovups (%[c],%[ldc],1), %%ymm10\n\t"                                \
  "vmovups 32(%[c],%[ldc],1), %%ymm11\n\t"                              \
  "jmp 3f\n\t"                                                          \
  "2:\n\t"                                                              \
  "vxorps %%ymm0, %%ymm0, %%ymm0\n\t"                                   \
  "vxorps %%ymm1, %%ymm1, %%ymm1\n\t"                                   \
  "vxorps %%ymm2, %%ymm2, %%ymm2\n\t"                                   \
  "vxorps %%ymm3, %%ymm3, %%ymm3\n\t"                                   \
  "vxorps %%ymm4, %%ymm4, %%ymm4\n\t"                                   \
  "vxorps %%ymm5, %%ymm5, %%ymm5\n\t"                                   \
  "vxorps %%ymm6, %%ymm6, %%ymm6\n\t"                                   \
  "vxorps %%ymm7, %%ymm7, %%ymm7\n\t"                                   \
  "vxorps %%ymm8, %%ymm8, %%ymm8\n\t"                                   \
  "vxorps %%ymm9, %%ymm9, %%ymm9\n\t"                                   \
  "vxorps %%ymm10, %%ymm10, %%ymm10\n\t"                                \
  "vxorps %%ymm11, %%ymm11, %%ymm11\n\t"                                \
  "3:\n\t"                                                              \
  "test %[k], %[k]\n\t"                                                 \
  "jz 4f\n\t"                                                           \
  "1:\n\t"                                                              \
  "vmovaps (%[b]), %%ymm12\n\t"                                         \
  "vmovaps 32(%[b]), %%ymm13\n\t"
#define MNX_EPILOGUE                                                    \
  "add $64, %[b]\n\t"                                                   \
  "dec %[k]\n\t"                                                        \
  "jnz 1b\n\t"                                                          \
  "4:\n\t"                                                              \
  "vmovups %%ymm0, (%[o])\n\t"                                          \
  "vmovups %%ymm1, 32(%[o])\n\t"                                        \
  "vmovups %%ymm2, (%[o],%[ldo],1)\n\t"                                 \
  "vmovups %%ymm3, 32(%[o],%[ldo],1)\n\t"                               \
  "vmovups %%ymm4, (%[o],%[ldo],2)\n\t"                                 \
  "vmovups %%ymm5, 32(%[o],%[ldo],2)\n\t"                               \
  "lea (%[o],%[ldo],2), %[o]\n\t"                                       \
  "vmovups %%ymm6, (%[o],%[ldo],1)\n\t"                                 \
  "vmovups %%ymm7, 32(%[o],%[ldo],1)\n\t"                               \
  "vmovups %%ymm8, (%[o],%[ldo],2)\n\t"                                 \
  "vmovups %%ymm9, 32(%[o],%[ldo],2)\n\t"                               \
  "lea (%[o],%[ldo],2), %[o]\n\t"                                       \
  "vmovups %%ymm10, (%[o],%[ldo],1)\n\t"                                \
  "vmovups %%ymm11, 32(%[o],%[ldo],1)\n\t"
#define MNX_CLOBBERS                                                     \
  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", \
      "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc",  \
      "memory"

inline void ukr_core(int64_t kc, const float* a, int64_t a_rs, bool direct,
                     const float* b, float* c, int64_t ldc, bool load_c,
                     float* out, int64_t ldo) {
  int64_t k = kc;
  const int64_t lc = load_c ? 1 : 0;
  const int64_t ldcb = ldc * 4, ldob = ldo * 4;
  if (direct) {
    const int64_t rs = a_rs * 4;
    const float* a3 = a + 3 * a_rs;
    __asm__ volatile(
        MNX_PROLOGUE
        MNX_ROWS("(%[a])", "(%[a],%[rs],1)", "(%[a],%[rs],2)", "(%[a3])",
                 "(%[a3],%[rs],1)", "(%[a3],%[rs],2)")
        "add $4, %[a]\n\t"
        "add $4, %[a3]\n\t"
        MNX_EPILOGUE
        : [a] "+r"(a), [a3] "+r"(a3), [b] "+r"(b), [k] "+r"(k), [c] "+r"(c),
          [o] "+r"(out)
        : [rs] "r"(rs), [ldc] "r"(ldcb), [ldo] "r"(ldob), [lc] "r"(lc)
        : MNX_CLOBBERS);
  } else {
    __asm__ volatile(
        MNX_PROLOGUE
        MNX_ROWS("(%[a])", "4(%[a])", "8(%[a])", "12(%[a])", "16(%[a])",
                 "20(%[a])")
        "add $24, %[a]\n\t"
        MNX_EPILOGUE
        : [a] "+r"(a), [b] "+r"(b), [k] "+r"(k), [c] "+r"(c), [o] "+r"(out)
        : [ldc] "r"(ldcb), [ldo] "r"(ldob), [lc] "r"(lc)
        : MNX_CLOBBERS);
  }
}
#undef MNX_ROW
#undef MNX_ROWS
#undef MNX_PROLOGUE
#undef MNX_EPILOGUE
#undef MNX_CLOBBERS

inline void ukr_6x16(int64_t kc, const float* a, int64_t a_rs, bool direct,
                     const float* b, float* c, int64_t ldc, bool load_c,
                     const Epi* e, int64_t m, int64_t n, bool cold_a) {
  if (direct && cold_a) gemm_prefetch_next_a<6>(a, a_rs, kc);
  if (!e) {
    ukr_core(kc, a, a_rs, direct, b, c, ldc, load_c, c, ldc);
    return;
  }
  alignas(32) float acc[6 * 16];
  ukr_core(kc, a, a_rs, direct, b, c, ldc, load_c, acc, 16);
  gemm_store_buffer<VecAvx2, 6, 2>(acc, 16, c, ldc, e, m, n);
}

// Edge tiles and B packing: the generic kernels; ukr: the asm kernel.
using KernAvx2 = GemmKernel<VecAvx2, 6, 16, true, ukr_6x16>;

}  // namespace

const GemmKernels<float>& gemm_kernels_avx2() { return gemm_table<KernAvx2>("avx2"); }

}  // namespace cpu
}  // namespace mnx
