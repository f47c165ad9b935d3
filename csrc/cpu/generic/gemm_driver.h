// BLIS-style blocked GEMM driver shared by the AVX2, AVX-512 and NEON
// translation units (ISA-neutral; each includes it once; everything here has
// internal linkage, so no ISA-specific code can leak into another TU through
// the ODR: no std:: templates, no inline functions with external linkage).
//
// A TU defines a kernel struct `Kern` with
//   static constexpr int64_t MR, NR;          register tile
//   static constexpr bool kDirectA;           micro-kernel can read A in place
//                                             when A's columns are contiguous
//   static void ukr(kc, a, a_rs, direct, bp, c, ldc, load_c, epi, m, n,
//                   cold_a);                  full MR x NR tile; cold_a: first
//                                             use of this A block (prefetch)
//   static void ukr_edge(kc, a, a_rs, direct, bp, c, ldc, load_c, epi, m, n,
//                        mr, nr);             partial tiles (mr<MR or nr<NR)
//   static bool pack_b_fast(Bb, b_rs, b_cs, k0, kc, n, nr, dst);
// and calls gemm_blocked<Kern>(...). GemmKernel<V, MR, NR, kDirectA>
// (gemm_kernels.h) is such a Kern written once over the vector layer; an
// ISA derives from it to replace ukr by a hand-written micro-kernel.
//
// Work decomposition (params.h): a unit is one kGemmTileM x kGemmTileN tile
// of C (per batch entry unless sum_batch). A call processes the units
// [begin, end); inside that range the tiles are grouped BLIS-style (NC
// columns x MC rows) so packed panels are reused across units. Every C
// element sees exactly the same arithmetic whatever the range is:
//   acc = 0; for each reduction step s (batch-major, then K blocks of KC;
//   with sum_batch and K < KC, KC blocks of the virtual index b * K + k):
//     acc = (s == 0 ? 0 : C) + sum_k a*b  (FMA chain in k order)
//     C = (last step) ? epilogue(acc) : acc
// so the result is bitwise identical for every split of units over threads
// (whether A is read in place, packed per block or packed once per call
// changes only where the same values are read from).
//
// Loop nest per batch entry: NC column group -> kMCO row chunk -> reduction
// step (pack the KC x NC block of B once) -> MC row block (pack A) -> NR
// column panel -> MR row panel (micro-kernel).
#pragma once

#include <cstdint>
#include <cstdlib>

#include "../cpu_kernels.h"
#include "../vec/vec.h"  // stream_output

namespace mnx {
namespace cpu {
namespace {

// Cache blocking for the 6x16 / 8x8 kernels (measured on Zen 3: 32 KiB L1d,
// 512 KiB L2, 32 MiB L3): a KC x NR panel of B (32 KiB at NR = 16, streamed)
// is reused from L1, an MC x KC block of A (288 KiB) from L2, the KC x NC
// block of B (2 MiB) from L3. KC = 512 measured 0-10% faster than 256 (the
// AVX-512 12x32 kernel passes KC = 256: its KC x 32 panel is 32 KiB).
constexpr int64_t kKC = 512;
constexpr int64_t kNC = 1024;  // multiple of kGemmTileN
constexpr int64_t kMC = 144;   // multiple of kGemmTileM
// Rows of C (multiple of kMC) that go through all K blocks before the next
// rows: B's KC x NC block is packed once per kMCO rows, the kMCO x NC block
// of C stays in L3 between K blocks.
constexpr int64_t kMCO = 1440;

struct Epi {
  const float* bias;  // null: none
  bool per_row;
  Activation act;
  const float* res;  // null: none; C's indexing (ldr = ldc)
  int64_t ldr;
  bool nt = false;  // whole vectors to C with non-temporal stores (GemmArgs::stream_c)
};

inline int64_t g_imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t g_imax(int64_t a, int64_t b) { return a > b ? a : b; }

struct GemmBuffers {
  float* a = nullptr;
  int64_t a_cap = 0;
  float* b = nullptr;
  int64_t b_cap = 0;
  float* af = nullptr;  // whole packed A, shared by all batch entries
  int64_t af_cap = 0;
  ~GemmBuffers() {
    std::free(a);
    std::free(b);
    std::free(af);
  }
};

inline float* gemm_reserve(float*& p, int64_t& cap, int64_t n) {
  if (n <= cap && p) return p;
  std::free(p);
  p = nullptr;
  cap = 0;
  const int64_t bytes = ((n * (int64_t)sizeof(float) + 63) / 64) * 64;
  p = static_cast<float*>(std::aligned_alloc(64, (size_t)(bytes > 0 ? bytes : 64)));
  if (p) cap = n;
  return p;
}

inline GemmBuffers& gemm_tls() {
  static thread_local GemmBuffers buf;
  return buf;
}

// Generic B panel packing: dst[k * NR + j] = B(k0 + k, n + j), zero padded.
template <int64_t NR>
inline void pack_b_generic(const float* Bb, int64_t b_rs, int64_t b_cs,
                           int64_t k0, int64_t kc, int64_t n, int64_t nr,
                           float* dst) {
  for (int64_t k = 0; k < kc; ++k) {
    const float* src = Bb + (k0 + k) * b_rs + n * b_cs;
    float* d = dst + k * NR;
    int64_t j = 0;
    for (; j < nr; ++j) d[j] = src[j * b_cs];
    for (; j < NR; ++j) d[j] = 0.f;
  }
}

// B panel packing with merged columns (GemmArgs::merged_hw): the panel's
// virtual columns [n, n + nr) are runs of consecutive pixels of one image
// each; dst[k * NR + j] = B(k0 + k, n + j), zero padded.
template <int64_t NR>
inline void pack_b_merged(const float* B, const GemmArgs& g, int64_t k0, int64_t kc, int64_t n, int64_t nr,
                          float* dst) {
  for (int64_t j = 0; j < nr;) {
    const int64_t p = (n + j) % g.merged_hw;
    const int64_t len = g_imin(nr - j, g.merged_hw - p);
    const float* src = B + gemm_b_col(g, n + j) + k0 * g.b_rs;
    for (int64_t k = 0; k < kc; ++k) {
      const float* s = src + k * g.b_rs;
      float* d = dst + k * NR + j;
      if (g.b_cs == 1)  // NCHW: a contiguous run of pixels
        for (int64_t t = 0; t < len; ++t) d[t] = s[t];
      else
        for (int64_t t = 0; t < len; ++t) d[t] = s[t * g.b_cs];
    }
    j += len;
  }
  if (nr < NR)
    for (int64_t k = 0; k < kc; ++k)
      for (int64_t j = nr; j < NR; ++j) dst[k * NR + j] = 0.f;
}

// A panel packing: dst[k * MR + r] = A(m + r, k0 + k), zero padded.
template <int64_t MR>
inline void pack_a(const float* Ab, int64_t a_rs, int64_t a_cs, int64_t m,
                   int64_t mr, int64_t k0, int64_t kc, float* dst) {
  if (a_cs == 1) {
    for (int64_t r = 0; r < MR; ++r) {
      if (r < mr) {
        const float* src = Ab + (m + r) * a_rs + k0;
        for (int64_t k = 0; k < kc; ++k) dst[k * MR + r] = src[k];
      } else {
        for (int64_t k = 0; k < kc; ++k) dst[k * MR + r] = 0.f;
      }
    }
    return;
  }
  if (a_rs == 1 && mr == MR) {  // A^T stored (weight gradient NHWC, ...)
    const float* src = Ab + m + k0 * a_cs;
    for (int64_t k = 0; k < kc; ++k, src += a_cs) {
      float* d = dst + k * MR;
      for (int64_t r = 0; r < MR; ++r) d[r] = src[r];  // fixed-size copy
    }
    return;
  }
  for (int64_t k = 0; k < kc; ++k) {
    const float* src = Ab + m * a_rs + (k0 + k) * a_cs;
    float* d = dst + k * MR;
    int64_t r = 0;
    for (; r < mr; ++r) d[r] = src[r * a_rs];
    for (; r < MR; ++r) d[r] = 0.f;
  }
}

// The micro-tile order within a block (see gemm_blocked): MR rows of C
// across all the block's column panels before the next rows when C's rows
// are >= 8 KiB apart (NCHW outputs of 46x46 maps and larger), so each of
// the MR rows is written in one run of up to kNC floats instead of NR
// floats at a time. Measured on Zen 4 (1 thread, NCHW, the same values:
// every C element's arithmetic is the same in both orders): forward
// 8x24->144 at 56x56 3.6 -> 2.2 ms, 1x16->96 at 112x112 0.53 -> 0.44 ms;
// grad_input 8x96->24 at 112x112 13.0 -> 9.5 ms; at 14x14 neither order
// wins, so smaller maps keep the BLIS order.
inline bool gemm_rows_first(const GemmArgs& g) {
  return !g.sum_batch && g.ldc >= 2048;
}

// Prefetch of slice `i` of `parts` equal slices of the `n` floats at `p`, one
// touch per 64-byte line. The prepacked weights of a layer are read once per
// call (channels_last B panels at small maps, NCHW A panels), so at batch 1
// in a network they come from L3 or memory; the hardware prefetchers start
// late on each new panel. In-process A/B at batch 1, 1 thread, Zen 5,
// fused models, median of ratios against no prefetch (against prefetching
// only weights of 256 KiB and more): with ONNX Runtime run between forwards
// (the benchmark's cache state) v2 0.97x (0.99x), v3-small 0.98x (0.97x);
// the model alone v3-large 0.96-0.98x (0.99x), v3-small 0.98-1.00x
// (1.00-1.02x). Prefetches never fault.
inline void gemm_prefetch_span(const float* p, int64_t n, int64_t i, int64_t parts) {
  constexpr int64_t kLine = 64 / static_cast<int64_t>(sizeof(float));
  const int64_t lines = (n + kLine - 1) / kLine;
  const int64_t per = (lines + parts - 1) / parts;
  const int64_t lo = i * per, hi = g_imin(lines, lo + per);
  for (int64_t l = lo; l < hi; ++l) __builtin_prefetch(p + l * kLine, 0, 3);
}

// KC: depth of a K block (the family may choose it for its register tile:
// a KC x NR panel of B should stay in L1).
template <class Kern, int64_t KC = kKC>
void gemm_blocked(const GemmArgs& g, const float* A, const float* B, float* C,
                  const float* bias, const float* residual, int64_t begin,
                  int64_t end) {
  constexpr int64_t MR = Kern::MR, NR = Kern::NR;
  static_assert(kGemmTileM % MR == 0, "tile M must be a multiple of MR");
  static_assert(kGemmTileN % NR == 0, "tile N must be a multiple of NR");
  static_assert(kNC % kGemmTileN == 0 && kMC % kGemmTileM == 0, "blocking");
  if (g.M <= 0 || g.N <= 0) return;
  // packed operands (GemmArgs::a_panel / b_panel) are read in place when
  // their panels are this kernel's tile and 64-byte aligned (aligned panel
  // loads); others go the portable way
  auto misaligned = [](const float* p) { return reinterpret_cast<uintptr_t>(p) % 64 != 0; };
  const bool merged = g.merged_hw > 0;
  if ((g.a_panel > 0 && (g.a_panel != MR || misaligned(A))) ||
      (g.b_panel > 0 && (g.b_panel != NR || misaligned(B))) ||
      (merged && (g.b_panel > 0 || g.sum_batch || !g.bias_per_row))) {
    gemm_scalar<float>(g, A, B, C, bias, residual, begin, end);
    return;
  }
  begin = g_imax(begin, 0);
  end = g_imin(end, gemm_units(g));
  if (begin >= end) return;
  // C streamed (GemmArgs::stream_c): the rule of vec.h's stream_output on
  // the whole of C, rows ldc apart (with ldc a multiple of the width and C
  // aligned, every whole-vector store of a tile is aligned: tiles start at
  // multiples of NR columns)
  const bool nt = g.stream_c && !merged && !g.sum_batch &&
                  stream_output<typename Kern::Vec>(C, g.ldc, (g.batch > 1 ? g.batch * g.c_bs : g.M * g.ldc));
  struct Fence {
    bool on;
    ~Fence() {
      if (on) Kern::Vec::stream_fence();
    }
  } fence{nt};

  const int64_t TM = kGemmTileM, TN = kGemmTileN;
  const int64_t tm = gemm_tiles_m(g), tn = gemm_tiles_n(g), T = tm * tn;
  const int64_t K = g.K > 0 ? g.K : 0;
  const bool no_reduction = g.sum_batch && g.batch <= 0;
  // sum_batch with a short K (NCHW weight gradient: K = H*W): the reduction
  // runs over the virtual index kv = b * K + k in KC blocks that span
  // batches (A and B packed segment by segment), instead of one short step
  // per batch. Same FMA chain per element, longer micro-kernel runs.
  const bool virt = g.sum_batch && g.batch > 1 && K > 0 && K < KC;
  const int64_t Kv = virt ? g.batch * K : K;
  const int64_t nkb = Kv > 0 ? (Kv + KC - 1) / KC : 1;
  const int64_t kcb = Kv > 0 ? (Kv + nkb - 1) / nkb : 0;  // even K blocks
  const int64_t steps =
      no_reduction ? 1 : (g.sum_batch && !virt ? g.batch : 1) * nkb;
  const bool direct_a = Kern::kDirectA && g.a_cs == 1 && !virt && g.a_panel == 0;
  const int64_t G = kNC / TN, MG = kMC / TM, MGO = kMCO / TM;
  const bool rows_first = gemm_rows_first(g);

  GemmBuffers& buf = gemm_tls();
  float* Bp = g.b_panel ? nullptr : gemm_reserve(buf.b, buf.b_cap, g_imax(kcb, 1) * kNC);
  float* Ap = g.a_panel ? nullptr : gemm_reserve(buf.a, buf.a_cap, g_imax(kcb, 1) * kMC);
  if ((!Bp && !g.b_panel) || (!Ap && !g.a_panel)) {  // out of memory: portable path, same unit semantics
    gemm_scalar<float>(g, A, B, C, bias, residual, begin, end);
    return;
  }

  const int64_t bo_lo = g.sum_batch ? 0 : begin / T;
  const int64_t bo_hi = g.sum_batch ? 0 : (end - 1) / T;
  // A shared by all batch entries (a_bs == 0, e.g. the weight in NCHW
  // grad_input) and not read in place: pack all of it once for this call
  // instead of once per batch entry (or use it as it is when it came packed).
  const float* Af = g.a_panel ? A : nullptr;
  if (!Af && !direct_a && g.a_bs == 0 && !g.sum_batch && bo_hi > bo_lo && K > 0) {
    const int64_t rows = (g.M + MR - 1) / MR * MR;
    float* dst = gemm_reserve(buf.af, buf.af_cap, rows * K);
    if (dst)
      for (int64_t m = 0; m < g.M; m += MR)
        pack_a<MR>(A, g.a_rs, g.a_cs, m, g_imin(MR, g.M - m), 0, K,
                   dst + m * K);
    Af = dst;
  }

  for (int64_t bo = bo_lo; bo <= bo_hi; ++bo) {
    const int64_t l0 = g_imax(begin - bo * T, 0);
    const int64_t l1 = g_imin(end - bo * T, T);
    const int64_t mt_lo = l0 / tn, mt_hi = (l1 - 1) / tn;  // inclusive
    float* Cb = C + (g.sum_batch ? 0 : bo * g.c_bs);
    const float* Rb =
        residual ? residual + (g.sum_batch ? 0 : bo * g.c_bs) : nullptr;
    const Epi epi{bias, g.bias_per_row, g.act, Rb, g.ldc, nt};

    for (int64_t ng = 0; ng < tn; ng += G) {
      const int64_t ng_hi = g_imin(tn, ng + G);
      const int64_t n_lo = ng * TN, n_hi = g_imin(g.N, ng_hi * TN);
      const int64_t npan = (n_hi - n_lo + NR - 1) / NR;
      bool b_packed = false;
      for (int64_t mo = mt_lo; mo <= mt_hi; mo += MGO) {
        const int64_t mo_hi = g_imin(mt_hi + 1, mo + MGO);  // exclusive
       for (int64_t s = 0; s < steps; ++s) {
        const int64_t bb = no_reduction ? 0 : s / nkb, kb = s % nkb;
        const int64_t b = g.sum_batch ? bb : bo;
        const int64_t k0 = kb * kcb;  // virtual index when virt
        const int64_t kc = no_reduction ? 0 : g_imin(kcb, Kv - k0);
        const bool first = s == 0, last = s == steps - 1;
        const float* Ab = A + (no_reduction ? 0 : b * g.a_bs);
        const float* Bb = B + (no_reduction ? 0 : b * g.b_bs);
        bool b_done = false;
        for (int64_t mc = mo; mc < mo_hi; mc += MG) {
          const int64_t mc_hi = g_imin(mo_hi, mc + MG);  // exclusive
          // which tile rows of this block have in-range tiles in this group
          bool any = false;
          bool row_on[kMC / kGemmTileM];
          for (int64_t mt = mc; mt < mc_hi; ++mt) {
            const int64_t lo = g_imax(ng, l0 - mt * tn);
            const int64_t hi = g_imin(ng_hi, l1 - mt * tn);
            row_on[mt - mc] = lo < hi;
            any = any || lo < hi;
          }
          if (!any) continue;

          if (!g.b_panel && !b_done && !(b_packed && steps == 1)) {
            for (int64_t jp = 0; jp < npan; ++jp) {
              const int64_t n = n_lo + jp * NR;
              const int64_t nr = g_imin(NR, n_hi - n);
              float* dst = Bp + jp * kc * NR;
              // segments of constant batch (one segment unless virt)
              for (int64_t kv = k0; kv < k0 + kc;) {
                const int64_t sb = virt ? kv / K : 0;
                const int64_t sk = virt ? kv % K : kv;
                const int64_t len = g_imin(k0 + kc - kv, virt ? K - sk : kc);
                const float* Bs = virt ? B + sb * g.b_bs : Bb;
                float* d = dst + (kv - k0) * NR;
                if (merged)
                  pack_b_merged<NR>(Bs, g, sk, len, n, nr, d);  // Bs = Bb (virt is off)
                else if (!Kern::pack_b_fast(Bs, g.b_rs, g.b_cs, sk, len, n, nr, d))
                  pack_b_generic<NR>(Bs, g.b_rs, g.b_cs, sk, len, n, nr, d);
                kv += len;
              }
            }
            b_packed = true;
          }
          b_done = true;
          for (int64_t mt = mc; mt < mc_hi && !Af; ++mt) {
            if (!row_on[mt - mc]) continue;
            const int64_t m_lo = mt * TM, m_hi = g_imin(g.M, m_lo + TM);
            for (int64_t m = m_lo; m < m_hi; m += MR) {
              const int64_t mr = g_imin(MR, m_hi - m);
              if (direct_a && mr == MR) continue;
              float* dst = Ap + ((mt - mc) * TM + (m - m_lo)) * kc;
              for (int64_t kv = k0; kv < k0 + kc;) {
                const int64_t sb = virt ? kv / K : 0;
                const int64_t sk = virt ? kv % K : kv;
                const int64_t len = g_imin(k0 + kc - kv, virt ? K - sk : kc);
                const float* As = virt ? A + sb * g.a_bs : Ab;
                pack_a<MR>(As, g.a_rs, g.a_cs, m, mr, sk, len,
                           dst + (kv - k0) * MR);
                kv += len;
              }
            }
          }

          // A micro-tile with merged columns (GemmArgs::merged_hw). Columns
          // of one image: in place in C at the image's pixel p, with the
          // epilogue's residual pointer rebased to the image (the bias is
          // per row). Columns spanning images: through an MR x NR buffer
          // (C's values gathered into it first when accumulating), then
          // scattered, the residual added in the scatter: the epilogue adds
          // it after the activation as its last operation, so the bits are
          // those of the fused one.
          auto merged_tile = [&](int64_t kc_, const float* ap, bool dir, const float* bp, int64_t m,
                                 int64_t n, int64_t mr, int64_t nr, bool first_, bool last_, bool cold) {
            const int64_t hw = g.merged_hw, i0 = n / hw, p0 = n % hw;
            auto run = [&](float* cp, int64_t ldc, const Epi* e, int64_t nn) {
              if (mr == MR && nr == NR)
                Kern::ukr(kc_, ap, g.a_rs, dir, bp, cp, ldc, !first_, e, m, nn, cold);
              else
                Kern::ukr_edge(kc_, ap, g.a_rs, dir, bp, cp, ldc, !first_, e, m, nn, mr, nr);
            };
            if (p0 + nr <= hw) {
              const Epi ei{bias, true, g.act, Rb ? Rb + i0 * g.c_is : nullptr, g.ldc};
              run(Cb + i0 * g.c_is + m * g.ldc + p0, g.ldc, last_ ? &ei : nullptr, p0);
              return;
            }
            // runs of one image each: buffer columns [j, j + len) at offset o
            // (row m) of C
            alignas(64) float sc[MR * NR];
            auto runs = [&](auto&& f) {
              for (int64_t j = 0, i = i0, p = p0; j < nr; ++i, p = 0) {
                const int64_t len = g_imin(nr - j, hw - p);
                f(j, len, i * g.c_is + m * g.ldc + p);
                j += len;
              }
            };
            if (!first_)
              runs([&](int64_t j, int64_t len, int64_t o) {
                for (int64_t r = 0; r < mr; ++r)
                  for (int64_t t = 0; t < len; ++t) sc[r * NR + j + t] = Cb[o + r * g.ldc + t];
              });
            const Epi ei{bias, true, g.act, nullptr, 0};
            run(sc, NR, last_ ? &ei : nullptr, 0);
            const float* res = last_ ? Rb : nullptr;
            runs([&](int64_t j, int64_t len, int64_t o) {
              for (int64_t r = 0; r < mr; ++r) {
                float* c = Cb + o + r * g.ldc;
                const float* b = sc + r * NR + j;
                if (res)
                  for (int64_t t = 0; t < len; ++t) c[t] = b[t] + res[o + r * g.ldc + t];
                else
                  for (int64_t t = 0; t < len; ++t) c[t] = b[t];
              }
            });
          };

          // One micro-tile: rows [m, m + MR) of tile row mt, columns of panel jp.
          auto tile = [=, &merged_tile](int64_t jp, int64_t mt, int64_t m) {
            const int64_t n = n_lo + jp * NR;
            const int64_t nr = g_imin(NR, n_hi - n);
            const float* bp = g.b_panel ? B + ((n / NR) * K + k0) * NR : Bp + jp * kc * NR;
            const int64_t m_hi = g_imin(g.M, mt * TM + TM);
            const int64_t mr = g_imin(MR, m_hi - m);
            const bool dir = direct_a && mr == MR;
            const float* ap = dir  ? Ab + m * g.a_rs + k0
                              : Af ? Af + m * K + k0 * MR
                                   : Ap + ((mt - mc) * TM + (m - mt * TM)) * kc;
            float* cp = Cb + m * g.ldc + n;
            // Prepacked A (the weights, NCHW): on the block's first column
            // panel, prefetch the next row panel's kc x MR weights, which
            // stream from L3 or memory (see gemm_prefetch_span)
            if (Af && jp == 0 && m + MR < g.M)
              gemm_prefetch_span(Af + (m + MR) * K + k0 * MR, kc * MR, 0, 1);
            if (merged) {
              merged_tile(kc, ap, dir, bp, m, n, mr, nr, first, last, jp == 0);
              return;
            }
            if (mr == MR && nr == NR) {
              Kern::ukr(kc, ap, g.a_rs, dir, bp, cp, g.ldc, !first, last ? &epi : nullptr, m, n,
                        jp == 0);
            } else {
              Kern::ukr_edge(kc, ap, g.a_rs, dir, bp, cp, g.ldc, !first, last ? &epi : nullptr,
                             m, n, mr, nr);
            }
          };
          auto in_range = [=](int64_t jp, int64_t mt) {
            const int64_t u = mt * tn + (n_lo + jp * NR) / TN;
            return u >= l0 && u < l1;
          };
          if (rows_first) {
            // MR rows of C across the whole column group before the next
            // rows: long contiguous runs of each C row (NCHW, C's rows far
            // apart), the A micro-panel reused from L1 across the B panels.
            for (int64_t mt = mc; mt < mc_hi; ++mt)
              for (int64_t m = mt * TM; m < g_imin(g.M, mt * TM + TM); m += MR)
                for (int64_t jp = 0; jp < npan; ++jp)
                  if (in_range(jp, mt)) tile(jp, mt, m);
          } else {
            // BLIS order: each KC x NR panel of B reused from L1 by all row
            // panels of the block.
            // Prepacked B (the weights, channels_last): the next panel's
            // kc x NR block is prefetched in slices, one per micro-tile of
            // this panel, on the first row block of a K step only (later
            // blocks find B in L2; when all of B is in L2 already, as in a
            // loop over one layer, the prefetch costs 2-7%: it pulls the
            // next panel into L1 while this one is still read).
            int64_t ntile = 0;
            for (int64_t mt = mc; mt < mc_hi; ++mt)
              ntile += (g_imin(g.M, mt * TM + TM) - mt * TM + MR - 1) / MR;
            for (int64_t jp = 0; jp < npan; ++jp) {
              const float* nb = mc == mo && g.b_panel && jp + 1 < npan
                                    ? B + (((n_lo + (jp + 1) * NR) / NR) * K + k0) * NR
                                    : nullptr;
              int64_t t = 0;
              for (int64_t mt = mc; mt < mc_hi; ++mt)
                if (in_range(jp, mt))
                  for (int64_t m = mt * TM; m < g_imin(g.M, mt * TM + TM); m += MR) {
                    tile(jp, mt, m);
                    if (nb) gemm_prefetch_span(nb, kc * NR, t++, ntile);
                  }
            }
          }
        }
       }
      }
    }
  }
}

}  // namespace
}  // namespace cpu
}  // namespace mnx
