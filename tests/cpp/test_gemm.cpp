// Unit tests of the float32 GEMM selected by dispatch (AVX2 on x86-64 with
// AVX2+FMA, AVX-512 when cpu_use_avx512(), NEON on AArch64) against
// gemm_scalar<double> on the same data.
//
// Tolerance: float32 accumulation of a length-R reduction (R = K, times the
// batch with sum_batch) of products of values in [-1, 1]; rounding errors
// behave like a random walk, |err| ~ eps * sqrt(R) * |typical term sum|, and
// the check is relative to max|ref| (~ sqrt(R) / 3). tol = 1e-6 * (4 +
// sqrt(R)) leaves ~8x margin over eps = 6e-8 * sqrt(R) without hiding
// indexing bugs (those give O(1) relative errors).
//
// Also checked: bitwise identical results when the units are processed in
// random sub-ranges (what threads do), canaries past every buffer, padding
// between C rows left untouched, NaN propagation through every activation.
//
// Edge tiles: every row count 1..13 and column count 1..33 (each partial
// register tile of the 6x16 AVX2, 12x32 AVX-512 and 8x8 NEON kernels: every
// row count, every vector count, masked last vector) with A read in place
// and packed, B copied, transposed and strided, every epilogue, with and
// without a second K block (C reloaded). The generic GEMM kernels
// (csrc/cpu/generic/gemm_kernels.h) are also run on the portable vector
// member (VecScalar, 4x4 tile) through the same driver: what a new ISA
// gets from its vec traits alone.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu/cpu_kernels.h"
#include "cpu/generic/gemm_kernels.h"
#include "cpu/vec/vec_scalar.h"
#include "tester.h"

using mnx::Activation;
using mnx::GemmArgs;
using mnx_test::Buffer;

namespace {

int64_t extent(int64_t batch, int64_t bs, int64_t d0, int64_t s0, int64_t d1,
               int64_t s1) {
  if (batch <= 0 || d0 <= 0 || d1 <= 0) return 1;
  return (batch - 1) * bs + (d0 - 1) * s0 + (d1 - 1) * s1 + 1;
}

struct Case {
  std::string name;
  GemmArgs g;
  bool bias = false;
  bool residual = false;
};

mnx_test::Counter counter;
std::mt19937 rng(12345);

using GemmFn = void (*)(const GemmArgs&, const float*, const float*, float*,
                        const float*, const float*, int64_t, int64_t);

// The generic kernels on the portable vector member: 4x4 tiles, A read in
// place when it can be, no register transpose.
using KernGenericScalar =
    mnx::cpu::GemmKernel<mnx::cpu::VecScalar, 4, 4, true>;
void gemm_generic_scalar(const GemmArgs& g, const float* A, const float* B,
                         float* C, const float* bias, const float* res,
                         int64_t b0, int64_t b1) {
  mnx::cpu::gemm_run<KernGenericScalar, mnx::cpu::kKC>(g, A, B, C, bias, res, b0, b1);
}

GemmFn g_run = nullptr;  // the GEMM under test (check_case)

void run_units(const GemmArgs& g, const float* A, const float* B, float* C,
               const float* bias, const float* res, int64_t b0, int64_t b1) {
  if (g_run)
    g_run(g, A, B, C, bias, res, b0, b1);
  else
    mnx::cpu::gemm_kernels_f32().run(g, A, B, C, bias, res, b0, b1);
}

// A case's operands as its strides span them, random, with canaries:
// A, B, the bias, the residual (C's extent); bp / rp the case's bias and
// residual pointers (null when it has none).
struct Operands {
  int64_t na, nb, nc;
  Buffer A, B, bias, R;
  const float* bp;
  const float* rp;
  explicit Operands(const Case& cs)
      : na(extent(cs.g.batch, cs.g.a_bs, cs.g.M, cs.g.a_rs, cs.g.K, cs.g.a_cs)),
        nb(extent(cs.g.batch, cs.g.b_bs, cs.g.K, cs.g.b_rs, cs.g.N, cs.g.b_cs)),
        nc(extent(cs.g.sum_batch ? 1 : cs.g.batch, cs.g.c_bs, cs.g.M, cs.g.ldc, cs.g.N, 1)),
        A(na), B(nb), bias(cs.g.bias_per_row ? cs.g.M : cs.g.N), R(nc) {
    mnx_test::fill_random(A, rng());
    mnx_test::fill_random(B, rng());
    mnx_test::fill_random(bias, rng());
    mnx_test::fill_random(R, rng());
    bp = cs.bias ? bias.ptr() : nullptr;
    rp = cs.residual ? R.ptr() : nullptr;
  }
};

void check_case(const Case& cs) {
  const GemmArgs& g = cs.g;
  const int64_t nbo = g.sum_batch ? 1 : g.batch;
  Operands op(cs);
  const int64_t na = op.na, nb = op.nb, nc = op.nc;
  Buffer &A = op.A, &B = op.B, &bias = op.bias, &R = op.R;
  const float* bp = op.bp;
  const float* rp = op.rp;

  // double reference
  std::vector<double> Ad(A.data.begin(), A.data.begin() + na),
      Bd(B.data.begin(), B.data.begin() + nb),
      biasd(bias.data.begin(), bias.data.begin() + bias.n),
      Rd(R.data.begin(), R.data.begin() + nc), Cd(nc, 7.0);
  const int64_t units = mnx::gemm_units(g);
  mnx::cpu::gemm_scalar<double>(g, Ad.data(), Bd.data(), Cd.data(),
                                cs.bias ? biasd.data() : nullptr,
                                cs.residual ? Rd.data() : nullptr, 0, units);
  // padding between rows (ldc > N) must stay untouched: sentinel 7
  Buffer ref(nc, 7.f);
  for (int64_t i = 0; i < nc; ++i) ref.data[i] = (float)Cd[i];

  Buffer C(nc, 7.f);
  run_units(g, A.ptr(), B.ptr(), C.ptr(), bp, rp, 0, units);
  const double R_len = (double)g.K * (g.sum_batch ? g.batch : 1);
  const double tol = 1e-6 * (4.0 + std::sqrt(R_len));
  counter.check(mnx_test::close(C, ref, tol, cs.name.c_str()));
  for (int64_t i = 0; i < nc; ++i) {
    // padding columns are exactly the sentinel
    const int64_t col = (nbo > 1 && g.c_bs > 0 ? i % g.c_bs : i) % g.ldc;
    if (col >= g.N && C.data[i] != 7.f) {
      std::fprintf(stderr, "FAIL %s: padding written at %lld\n",
                   cs.name.c_str(), (long long)i);
      counter.check(false);
      break;
    }
  }

  // random sub-ranges (threads) -> bitwise identical
  for (int rep = 0; rep < 2; ++rep) {
    Buffer C2(nc, 7.f);
    std::vector<int64_t> cuts = {0, units};
    const int ncut = 1 + (int)(rng() % 5);
    for (int i = 0; i < ncut && units > 1; ++i)
      cuts.push_back(1 + (int64_t)(rng() % (uint64_t)(units - 1)));
    std::sort(cuts.begin(), cuts.end());
    // process the pieces in reverse order too (threads finish in any order)
    for (size_t i = cuts.size() - 1; i > 0; --i)
      run_units(g, A.ptr(), B.ptr(), C2.ptr(), bp, rp, cuts[i - 1], cuts[i]);
    const bool same = C2.canaries_ok() &&
                      std::memcmp(C.ptr(), C2.ptr(), nc * sizeof(float)) == 0;
    if (!same)
      std::fprintf(stderr, "FAIL %s: split run differs (rep %d)\n",
                   cs.name.c_str(), rep);
    counter.check(same);
  }
  // a sub-range writes only its own tiles
  if (units > 1) {
    const int64_t c0 = (int64_t)(rng() % (uint64_t)units);
    const int64_t c1 = c0 + 1 + (int64_t)(rng() % (uint64_t)(units - c0));
    Buffer C3(nc, 7.f);
    run_units(g, A.ptr(), B.ptr(), C3.ptr(), bp, rp, c0, c1);
    const int64_t tm = mnx::gemm_tiles_m(g), tn = mnx::gemm_tiles_n(g);
    bool ok = C3.canaries_ok();
    for (int64_t bo = 0; bo < nbo && ok; ++bo)
      for (int64_t m = 0; m < g.M && ok; ++m)
        for (int64_t n = 0; n < g.N; ++n) {
          const int64_t u = bo * tm * tn + (m / mnx::kGemmTileM) * tn +
                            n / mnx::kGemmTileN;
          const float got = C3.data[bo * g.c_bs + m * g.ldc + n];
          const float want = C.data[bo * g.c_bs + m * g.ldc + n];
          const bool inside = u >= c0 && u < c1;
          if (inside ? std::memcmp(&got, &want, 4) != 0 : got != 7.f) {
            std::fprintf(stderr, "FAIL %s: range [%lld,%lld) wrong at unit "
                         "%lld\n", cs.name.c_str(), (long long)c0,
                         (long long)c1, (long long)u);
            ok = false;
            break;
          }
        }
    counter.check(ok);
  }
  counter.check(A.canaries_ok() && B.canaries_ok() && bias.canaries_ok() &&
                R.canaries_ok());
}

std::string nm(const char* what, int64_t a, int64_t b, int64_t c, int64_t d,
               int64_t e) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s(%lld,%lld,%lld,%lld,%lld)", what,
                (long long)a, (long long)b, (long long)c, (long long)d,
                (long long)e);
  return buf;
}

// The mappings of csrc/glue/common.cpp (pointwise_*_gemm).
Case pw_forward(bool nhwc, int64_t N, int64_t Cin, int64_t Cout, int64_t HW) {
  Case c;
  GemmArgs& g = c.g;
  if (!nhwc) {
    g.M = Cout; g.N = HW; g.K = Cin; g.batch = N;
    g.a_rs = Cin; g.a_cs = 1; g.a_bs = 0;
    g.b_rs = HW; g.b_cs = 1; g.b_bs = Cin * HW;
    g.ldc = HW; g.c_bs = Cout * HW;
    g.bias_per_row = true;
  } else {
    g.M = N * HW; g.N = Cout; g.K = Cin; g.batch = 1;
    g.a_rs = Cin; g.a_cs = 1;
    g.b_rs = 1; g.b_cs = Cin;
    g.ldc = Cout;
    g.bias_per_row = false;
  }
  c.name = nm(nhwc ? "fwd_nhwc" : "fwd_nchw", N, Cin, Cout, HW, 0);
  return c;
}

Case pw_grad_input(bool nhwc, int64_t N, int64_t Cin, int64_t Cout,
                   int64_t HW) {
  Case c;
  GemmArgs& g = c.g;
  if (!nhwc) {
    g.M = Cin; g.N = HW; g.K = Cout; g.batch = N;
    g.a_rs = 1; g.a_cs = Cin; g.a_bs = 0;
    g.b_rs = HW; g.b_cs = 1; g.b_bs = Cout * HW;
    g.ldc = HW; g.c_bs = Cin * HW;
  } else {
    g.M = N * HW; g.N = Cin; g.K = Cout; g.batch = 1;
    g.a_rs = Cout; g.a_cs = 1;
    g.b_rs = Cin; g.b_cs = 1;
    g.ldc = Cin;
  }
  c.name = nm(nhwc ? "gin_nhwc" : "gin_nchw", N, Cin, Cout, HW, 0);
  return c;
}

Case pw_grad_weight(bool nhwc, int64_t N, int64_t Cin, int64_t Cout,
                    int64_t HW) {
  Case c;
  GemmArgs& g = c.g;
  g.M = Cout; g.N = Cin; g.ldc = Cin;
  if (!nhwc) {
    g.K = HW; g.batch = N; g.sum_batch = true;
    g.a_rs = HW; g.a_cs = 1; g.a_bs = Cout * HW;
    g.b_rs = 1; g.b_cs = HW; g.b_bs = Cin * HW;
  } else {
    g.K = N * HW; g.batch = 1;
    g.a_rs = 1; g.a_cs = Cout;
    g.b_rs = Cin; g.b_cs = 1;
  }
  c.name = nm(nhwc ? "gw_nhwc" : "gw_nchw", N, Cin, Cout, HW, 0);
  return c;
}

// Generic: A transposed / strided, B transposed, ldc padded, batch strides.
Case generic(int64_t M, int64_t N, int64_t K, int64_t batch, int variant,
             bool sum_batch) {
  Case c;
  GemmArgs& g = c.g;
  g.M = M; g.N = N; g.K = K; g.batch = batch; g.sum_batch = sum_batch;
  switch (variant % 4) {
    case 0:  // A row-major, B row-major
      g.a_rs = K; g.a_cs = 1; g.b_rs = N; g.b_cs = 1; break;
    case 1:  // A col-major (transposed), B col-major (transposed)
      g.a_rs = 1; g.a_cs = M; g.b_rs = 1; g.b_cs = K; break;
    case 2:  // A row-major padded, B col-major padded
      g.a_rs = K + 3; g.a_cs = 1; g.b_rs = 1; g.b_cs = K + 5; break;
    default:  // both fully strided (no unit stride)
      g.a_rs = 2; g.a_cs = 2 * M + 1; g.b_rs = 3 * N + 2; g.b_cs = 3; break;
  }
  const int64_t asz = extent(1, 0, M, g.a_rs, K, g.a_cs);
  const int64_t bsz = extent(1, 0, K, g.b_rs, N, g.b_cs);
  g.a_bs = asz + 7; g.b_bs = bsz + 1;
  g.ldc = N + (variant & 1 ? 5 : 0);
  g.c_bs = sum_batch ? 0 : M * g.ldc + 3;
  g.bias_per_row = (variant / 4) % 2 == 0;
  g.act = static_cast<Activation>(variant % 4);
  c.bias = (variant % 3) != 0;
  c.residual = (variant % 5) < 2;
  c.name = nm(sum_batch ? "generic_sumb" : "generic", M, N, K, batch, variant);
  return c;
}

// A case of the edge grid: layout as generic() (0, 2: A row-major, read in
// place; 1: A and B transposed; 3: both strided), epilogue chosen by epi
// independently of the layout.
Case edge_case(int64_t M, int64_t N, int64_t K, int layout, int epi) {
  Case c = generic(M, N, K, 1 + epi % 2, layout, false);
  c.g.act = static_cast<Activation>(epi % 4);
  c.g.bias_per_row = (epi / 4) % 2 == 0;
  c.bias = (epi / 2) % 3 != 0;
  c.residual = (epi % 3) != 1;
  c.name = nm("edge", M, N, K, layout, epi);
  return c;
}

// Packed weights (GemmArgs::a_panel / b_panel): the pointwise forward's
// weight packed by gemm_pack_panels with `panel` (the kernel's own tile: mr
// for NCHW, nr for NHWC; or another width, read the portable way). With
// the kernel's panel the output is bitwise the unpacked run's, for the whole
// range and for random sub-ranges; with another panel it is within the
// reference tolerance; a misaligned packed buffer likewise. The packed
// buffer has canaries too.
void check_packed(bool nhwc, int64_t N, int64_t Cin, int64_t Cout, int64_t HW, int64_t panel,
                  bool own_panel, int act) {
  Case cs = pw_forward(nhwc, N, Cin, Cout, HW);
  GemmArgs g = cs.g;
  g.act = static_cast<Activation>(act);
  Buffer X(N * Cin * HW), W(Cout * Cin), bias(Cout), R(N * Cout * HW);
  mnx_test::fill_random(X, rng());
  mnx_test::fill_random(W, rng());
  mnx_test::fill_random(bias, rng());
  mnx_test::fill_random(R, rng());
  const int64_t units = mnx::gemm_units(g), nc = N * Cout * HW;
  const float* A = nhwc ? X.ptr() : W.ptr();
  const float* B = nhwc ? W.ptr() : X.ptr();
  Buffer C(nc, 7.f);
  run_units(g, A, B, C.ptr(), bias.ptr(), R.ptr(), 0, units);

  // 64-byte aligned, as the driver's own panels (the kernels load B panels
  // with aligned loads), canaries after it
  const int64_t np = (Cout + panel - 1) / panel * Cin * panel;
  const int64_t cap = (np + mnx_test::kCanary + 15) / 16 * 16;
  float* P = static_cast<float*>(std::aligned_alloc(64, cap * sizeof(float)));
  for (int64_t i = 0; i < cap; ++i) P[i] = i < np ? 5.f : mnx_test::kCanaryValue;
  auto packed_canaries_ok = [&] {
    for (int64_t i = np; i < cap; ++i)
      if (P[i] != mnx_test::kCanaryValue) return false;
    return true;
  };
  mnx::cpu::gemm_pack_panels(W.ptr(), Cout, Cin, Cin, panel, P);
  GemmArgs gp = g;
  (nhwc ? gp.b_panel : gp.a_panel) = panel;
  const float* Ap = nhwc ? X.ptr() : P;
  const float* Bp = nhwc ? P : X.ptr();
  const std::string name = nm(nhwc ? "packed_nhwc" : "packed_nchw", N, Cin, Cout, HW, panel);
  for (int rep = 0; rep < 3; ++rep) {
    Buffer C2(nc, 7.f);
    std::vector<int64_t> cuts = {0, units};
    for (int i = 0; i < rep * 2 && units > 1; ++i)
      cuts.push_back(1 + (int64_t)(rng() % (uint64_t)(units - 1)));
    std::sort(cuts.begin(), cuts.end());
    for (size_t i = cuts.size() - 1; i > 0; --i)
      run_units(gp, Ap, Bp, C2.ptr(), bias.ptr(), R.ptr(), cuts[i - 1], cuts[i]);
    bool ok = C2.canaries_ok() && packed_canaries_ok();
    if (own_panel && !mnx::gemm_small_m_applies(g)) {  // (small M: the glue runs it unpacked)
      ok = ok && std::memcmp(C.ptr(), C2.ptr(), nc * sizeof(float)) == 0;
    } else {
      ok = ok && mnx_test::close(C2, C, 1e-6 * (4.0 + std::sqrt((double)Cin)), name.c_str());
    }
    if (!ok) std::fprintf(stderr, "FAIL %s rep %d\n", name.c_str(), rep);
    counter.check(ok);
  }
  // not 64-byte aligned: read the portable way, still right (no crash)
  std::vector<float> shifted(np + 1);
  std::memcpy(shifted.data() + 1, P, np * sizeof(float));
  const float* S = shifted.data() + 1;
  if (reinterpret_cast<uintptr_t>(S) % 64 != 0) {
    Buffer C3(nc, 7.f);
    run_units(gp, nhwc ? X.ptr() : S, nhwc ? S : X.ptr(), C3.ptr(), bias.ptr(), R.ptr(), 0, units);
    counter.check(C3.canaries_ok() &&
                  mnx_test::close(C3, C, 1e-6 * (4.0 + std::sqrt((double)Cin)), (name + " misaligned").c_str()));
  }
  std::free(P);
}

void packed_tests(int64_t mr, int64_t nr) {
  const int64_t shapes[][4] = {{1, 16, 96, 56}, {2, 13, 37, 35}, {1, 300, 70, 9},
                               {3, 7, 1, 5},    {1, 600, 29, 3}, {2, 24, 40, 2100}};
  int v = 0;
  for (const auto& s : shapes)
    for (int nhwc = 0; nhwc < 2; ++nhwc) {
      const int64_t own = nhwc ? nr : mr;
      if (own > 0) check_packed(nhwc, s[0], s[1], s[2], s[3], own, true, v++ % 4);
      check_packed(nhwc, s[0], s[1], s[2], s[3], 5, own == 5, v++ % 4);
    }
}

// Merged image columns (GemmArgs::merged_hw: the NCHW pointwise forward and
// grad_input on small maps, merged_image_jobs in csrc/glue/cpu_ops.cpp):
// groups of G images run as one product of G * HW columns, the images left
// over as a second product. Each element gets the per-image product's
// arithmetic (the same K blocks, the same epilogue), so the output is
// bitwise the per-image one, whole and split into random sub-ranges run in
// reverse order; the per-image product itself is held against the double
// reference (check_case). Panels that span 2-5 images, two K blocks (C
// gathered and reloaded), every epilogue, a residual.
void check_merged(bool grad_input, int64_t N, int64_t Cin, int64_t Cout, int64_t HW, int64_t G, int epi,
                  bool b_pixel_major = false) {
  Case cs = grad_input ? pw_grad_input(false, N, Cin, Cout, HW) : pw_forward(false, N, Cin, Cout, HW);
  if (b_pixel_major) {  // B's pixels K floats apart (strided columns: the generic packing)
    cs.g.b_rs = 1;
    cs.g.b_cs = cs.g.K;
  }
  if (!grad_input) {
    cs.bias = epi % 2 == 0;
    cs.residual = epi % 3 != 1;
    cs.g.act = static_cast<Activation>(epi % 4);
  }
  check_case(cs);
  const GemmArgs& g = cs.g;
  Operands op(cs);
  const int64_t nc = op.nc;
  const Buffer &A = op.A, &B = op.B;
  const float* bp = op.bp;
  const float* rp = op.rp;
  Buffer C(nc, 7.f), C2(nc, 7.f);
  run_units(g, A.ptr(), B.ptr(), C.ptr(), bp, rp, 0, mnx::gemm_units(g));

  GemmArgs m = g;
  m.merged_hw = HW;
  m.b_is = g.b_bs;
  m.c_is = g.c_bs;
  m.N = G * HW;
  m.batch = N / G;
  m.b_bs = G * g.b_bs;
  m.c_bs = G * g.c_bs;
  const int64_t units = mnx::gemm_units(m);
  std::vector<int64_t> cuts = {0, units};
  for (int i = 0; i < 3 && units > 1; ++i) cuts.push_back(1 + (int64_t)(rng() % (uint64_t)(units - 1)));
  std::sort(cuts.begin(), cuts.end());
  for (size_t i = cuts.size() - 1; i > 0; --i)
    run_units(m, A.ptr(), B.ptr(), C2.ptr(), bp, rp, cuts[i - 1], cuts[i]);
  const int64_t done = m.batch * G;
  if (done < N) {
    GemmArgs r = m;
    r.batch = 1;
    r.N = (N - done) * HW;
    run_units(r, A.ptr(), B.ptr() + done * g.b_bs, C2.ptr() + done * g.c_bs, bp, rp ? rp + done * g.c_bs : nullptr,
              0, mnx::gemm_units(r));
  }
  const std::string name = nm(grad_input ? "merged_gin" : "merged_fwd", N, Cin, Cout, HW, G);
  const bool ok = C2.canaries_ok() && std::memcmp(C.ptr(), C2.ptr(), nc * sizeof(float)) == 0;
  if (!ok) std::fprintf(stderr, "FAIL %s: differs from the per-image product\n", name.c_str());
  counter.check(ok);
}

void merged_tests() {
  // N, Cin, Cout, HW, G
  const int64_t shapes[][5] = {{5, 13, 29, 7, 2},  {4, 300, 37, 49, 3}, {7, 530, 13, 9, 3},
                               {3, 40, 70, 25, 3}, {6, 16, 50, 1, 4},   {33, 64, 24, 49, 10}};
  int e = 0;
  for (const auto& s : shapes)
    for (int gi = 0; gi < 2; ++gi) check_merged(gi == 1, s[0], s[1], s[2], s[3], s[4], e++);
  check_merged(false, 5, 13, 29, 7, 2, 0, true);
  check_merged(true, 4, 300, 37, 9, 3, 1, true);
}

// GemmArgs::stream_c (non-temporal stores of C, outputs >= 4 MiB): the same
// bits as plain stores, C's canaries intact; NHWC forwards whose C rows are
// a multiple of the width (streamed, edge panels too) and not (plain).
void stream_tests() {
  const int64_t shapes[][3] = {{24, 64, 16400}, {5, 80, 13200}, {7, 70, 15000}};  // Cin, Cout, pixels
  for (const auto& sh : shapes) {
    Case cs = pw_forward(true, 1, sh[0], sh[1], sh[2]);
    GemmArgs g = cs.g;
    g.act = Activation::ReLU6;
    const int64_t nc = sh[2] * sh[1];
    Buffer X(sh[2] * sh[0]), W(sh[1] * sh[0]), bias(sh[1]), C(nc, 7.f), C2(nc, 7.f);
    mnx_test::fill_random(X, rng());
    mnx_test::fill_random(W, rng());
    mnx_test::fill_random(bias, rng());
    const int64_t units = mnx::gemm_units(g);
    run_units(g, X.ptr(), W.ptr(), C.ptr(), bias.ptr(), nullptr, 0, units);
    g.stream_c = true;
    run_units(g, X.ptr(), W.ptr(), C2.ptr(), bias.ptr(), nullptr, 0, units / 3);
    run_units(g, X.ptr(), W.ptr(), C2.ptr(), bias.ptr(), nullptr, units / 3, units);
    const bool ok = C2.canaries_ok() && std::memcmp(C.ptr(), C2.ptr(), nc * sizeof(float)) == 0;
    if (!ok) std::fprintf(stderr, "FAIL stream_c %lldx%lld: differs from plain stores\n", (long long)sh[1], (long long)sh[2]);
    counter.check(ok);
  }
}

void nan_test() {
  // NaN in A row 0 must reach every output of row 0 whatever the activation
  for (int act = 0; act < 4; ++act) {
    Case cs = generic(13, 37, 300, 1, 0, false);
    GemmArgs& g = cs.g;
    g.act = static_cast<Activation>(act);
    Buffer A(g.M * g.K), B(g.K * g.N), C(g.M * g.ldc);
    mnx_test::fill_random(A, 1);
    mnx_test::fill_random(B, 2);
    A.data[5] = NAN;
    run_units(g, A.ptr(), B.ptr(), C.ptr(), nullptr, nullptr, 0,
              mnx::gemm_units(g));
    bool ok = C.canaries_ok();
    for (int64_t n = 0; n < g.N; ++n) ok = ok && std::isnan(C.data[n]);
    for (int64_t i = g.ldc; i < g.M * g.ldc; ++i)
      ok = ok && !std::isnan(C.data[i]);
    if (!ok) std::fprintf(stderr, "FAIL nan propagation act=%d\n", act);
    counter.check(ok);
  }
}

}  // namespace

// gemm_kmajor against the blocked driver on the same operands: bitwise
// equal (M = 40 rows, K = 4099: both paths' FMA chain in k order)
void kmajor_same_bits_as_blocked() {
  Case c = pw_grad_weight(true, 1, 77, 40, 4099);
  Operands op(c);
  const int64_t units = mnx::gemm_units(c.g);
  Buffer C1(op.nc, 7.f), C2(op.nc, 7.f);
  const auto& k = mnx::cpu::gemm_kernels_f32();
  k.run(c.g, op.A.ptr(), op.B.ptr(), C1.ptr(), nullptr, nullptr, 0, units);
  // a residual of zeros keeps the blocked path (k-major runs without an epilogue)
  Buffer zero(op.nc, 0.f);
  k.run(c.g, op.A.ptr(), op.B.ptr(), C2.ptr(), nullptr, zero.ptr(), 0, units);
  counter.check(mnx_test::bitwise_equal(C1, C2, "kmajor vs blocked"));
}

int main() {
  std::printf("gemm isa: %s\n", mnx::cpu::gemm_kernels_f32().isa);
  std::vector<Case> cases;
  // pointwise mappings, small MobileNet-like and awkward shapes
  const int64_t pw[][4] = {
      {1, 32, 16, 112}, {2, 16, 96, 49},  {1, 24, 144, 56}, {3, 144, 24, 17},
      {1, 7, 5, 1},     {2, 64, 40, 25},  {1, 320, 97, 9},  {2, 33, 300, 13},
      {1, 1, 1, 1},     {1, 257, 19, 31}, {4, 5, 70, 3},    {1, 160, 960, 4},
  };
  int v = 0;
  for (const auto& s : pw) {
    for (int nhwc = 0; nhwc < 2; ++nhwc) {
      Case f = pw_forward(nhwc, s[0], s[1], s[2], s[3]);
      f.bias = (v % 2) == 0;
      f.residual = (v % 3) == 0;
      f.g.act = static_cast<Activation>(v % 4);
      ++v;
      cases.push_back(f);
      cases.push_back(pw_grad_input(nhwc, s[0], s[1], s[2], s[3]));
      cases.push_back(pw_grad_weight(nhwc, s[0], s[1], s[2], s[3]));
    }
  }
  // generic grid: 1, primes, around register / tile / cache block edges
  const int64_t Ms[] = {1, 5, 6, 7, 8, 23, 24, 25, 47, 145, 150};
  const int64_t Ns[] = {1, 3, 15, 16, 17, 63, 64, 65, 129, 1031};
  const int64_t Ks[] = {0, 1, 2, 8, 13, 255, 256, 257, 600};
  int variant = 0;
  for (int64_t M : Ms)
    for (int64_t N : Ns)
      for (int64_t K : Ks) {
        // keep the grid affordable under ASan / qemu: sample it
        if ((rng() % 5) != 0 && !(M <= 8 && N <= 17)) continue;
        if (M * N * K > 4000000) continue;
        const int64_t batch = 1 + (int64_t)(rng() % 3);
        cases.push_back(generic(M, N, K, batch, variant, (variant % 7) == 3));
        ++variant;
      }
  // sum_batch with several batches and K blocks, batch = 0, K = 0
  cases.push_back(generic(30, 70, 300, 3, 5, true));
  cases.push_back(generic(9, 1100, 20, 2, 2, true));
  cases.push_back(generic(9, 33, 17, 0, 1, true));
  cases.push_back(generic(13, 20, 0, 2, 6, false));

  // edge tiles: every (rows, columns) of a partial tile, one K block with A
  // in place and packed; a second K block (K > 512: C reloaded) on a subset
  std::vector<Case> edges;
  int epi = 0;
  for (int64_t M = 1; M <= 13; ++M)
    for (int64_t N = 1; N <= 33; ++N) {
      const int64_t K = 1 + (M * 7 + N * 3) % 19;  // 1..19: transpose k tails
      edges.push_back(edge_case(M, N, K, (int)(M + N) % 2 * 2, epi++));
      edges.push_back(edge_case(M, N, K, 1 + (int)(M + N) % 2 * 2, epi++));
    }
  const int64_t Nk[] = {1, 4, 5, 8, 9, 16, 17, 31, 32, 33};
  for (int64_t M = 1; M <= 13; ++M)
    for (int64_t N : Nk)
      edges.push_back(edge_case(M, N, 530, (int)(M + N) % 4, epi++));

  // small M (<= 4 rows of C, or <= 16 with K >= 512: dot products read in
  // place): NHWC forwards of
  // 1x1 maps (squeeze-excitation), K tails of every length, N tails of the
  // 4-column groups, every epilogue
  {
    const int64_t sk[] = {1, 3, 8, 15, 16, 17, 33, 480};
    const int64_t sn[] = {1, 3, 4, 5, 9, 70};
    int e = 0;
    for (int64_t n = 1; n <= 5; ++n)
      for (int64_t K : sk)
        for (int64_t N : sn) {
          if ((rng() % 3) != 0 && !(K == 480 || N == 70)) continue;
          Case f = pw_forward(true, n, K, N, 1);
          f.bias = e % 2 == 0;
          f.residual = e % 3 == 0;
          f.g.act = static_cast<Activation>(e++ % 4);
          cases.push_back(f);
        }
    // up to kGemmDotsMaxM rows with K from kGemmDotsMinK: 4-row groups and
    // a row tail; just past either bound: the blocked path
    const int64_t dm[][3] = {{6, 512, 70}, {13, 517, 5}, {16, 700, 9}, {9, 1029, 4},
                             {17, 600, 70}, {8, 511, 9}};
    for (const auto& d : dm) {
      Case f = pw_forward(true, d[0], d[1], d[2], 1);
      f.bias = e % 2 == 0;
      f.residual = e % 3 == 0;
      f.g.act = static_cast<Activation>(e++ % 4);
      const bool dots = d[0] <= mnx::kGemmDotsMaxM && d[1] >= mnx::kGemmDotsMinK;
      if (mnx::gemm_small_m_applies(f.g) != dots) {
        std::fprintf(stderr, "FAIL %s: dot-product path %s\n", f.name.c_str(), dots ? "not taken" : "taken");
        counter.check(false);
      }
      cases.push_back(f);
    }
  }
  // C rows >= 2048 floats apart: the rows-first micro-tile order (NCHW
  // outputs of large maps), one and two K blocks, tails in M and N
  cases.push_back(pw_forward(false, 2, 16, 30, 2100));
  cases.push_back(pw_grad_input(false, 2, 30, 16, 2100));
  cases.push_back(pw_forward(false, 1, 530, 13, 2049));
  cases.push_back(pw_grad_weight(false, 2, 13, 7, 2100));

  // k-major operands read in place (gemm_kmajor_applies: M <= 64, K >=
  // 512, A k-major, B rows): channels_last weight gradients with M rows
  // across register-tile and unit edges, N across vector and unit edges,
  // K steps with a tail; batch 2 without sum_batch (per-entry strides); and
  // one bitwise check against the blocked path (the same FMA chain)
  {
    const int64_t km[][3] = {{1, 1, 4096}, {5, 17, 4100}, {6, 64, 4097}, {13, 100, 4225},
                             {24, 65, 4096}, {25, 96, 5000}, {40, 7, 4099}, {64, 129, 4111},
                             {3, 20, 512}, {30, 50, 700}};
    for (const auto& d : km) {
      Case c = pw_grad_weight(true, 1, d[1], d[0], d[2]);
      c.name = "kmajor " + c.name;
      if (!mnx::gemm_kmajor_applies(c.g)) {
        std::fprintf(stderr, "FAIL %s: k-major path not taken\n", c.name.c_str());
        counter.check(false);
      }
      cases.push_back(c);
    }
    Case b = pw_grad_weight(true, 1, 30, 9, 4200);
    b.g.batch = 2;
    b.g.a_bs = 9 * 4200 + 3;
    b.g.b_bs = 30 * 4200 + 5;
    b.g.c_bs = 9 * 30 + 2;
    b.g.ldc = 30;
    b.name = "kmajor batch 2";
    cases.push_back(b);
  }

  for (const Case& c : cases) check_case(c);
  for (const Case& c : edges) check_case(c);
  kmajor_same_bits_as_blocked();
  nan_test();
  packed_tests(mnx::cpu::gemm_kernels_f32().mr, mnx::cpu::gemm_kernels_f32().nr);
  merged_tests();
  stream_tests();

  // the generic kernels alone (VecScalar): the pointwise mappings, the edge
  // grid, and the generic grid's first cases
  g_run = gemm_generic_scalar;
  for (size_t i = 0; i < cases.size() && i < 120; ++i) check_case(cases[i]);
  for (const Case& c : edges) check_case(c);
  nan_test();
  packed_tests(KernGenericScalar::MR, KernGenericScalar::NR);
  merged_tests();
  stream_tests();
  g_run = nullptr;
  return counter.finish("test_gemm");
}
