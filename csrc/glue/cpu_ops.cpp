// CPU backend of the mobilenet_ext ops (the op bodies, shared with CUDA, are
// in op_surface.h): output allocation (cpu_output_cache.cpp), threads
// (at::parallel_for, governed by torch.set_num_threads) and dispatch to the
// torch-free kernels picked at run time (csrc/cpu/dispatch.cpp).
#include <ATen/Parallel.h>
#include <algorithm>
#include <atomic>
#include <tuple>
#include <type_traits>
#include <vector>
#include <torch/library.h>

#include "../cpu/conv2d_small_cin.h"
#include "../cpu/cpu_kernels.h"
#include "common.h"
#include "cpu_output_cache.h"
#include "op_surface.h"

namespace mnx {
namespace glue {
namespace {

// Units of roughly this many multiply-adds go to one thread at least.
constexpr int64_t kMinWorkPerTask = 1 << 15;

int64_t grain_for(int64_t units, int64_t work_per_unit) {
  (void)units;
  const int64_t w = work_per_unit > 0 ? work_per_unit : 1;
  return std::max<int64_t>(1, kMinWorkPerTask / w);
}

template <typename T>
const cpu::DepthwiseKernels<T>& dw_kernels() {
  return for_dtype<T>(cpu::depthwise_kernels_f32, cpu::depthwise_kernels_f64);
}
template <typename T>
const cpu::GemmKernels<T>& gemm_kernels() {
  return for_dtype<T>(cpu::gemm_kernels_f32, cpu::gemm_kernels_f64);
}

#define MNX_DISPATCH_CPU(dtype, op, ...)                                  \
  [&] {                                                                   \
    if ((dtype) == at::kFloat) {                                          \
      using scalar_t = float;                                             \
      return __VA_ARGS__();                                               \
    } else {                                                              \
      TORCH_CHECK((dtype) == at::kDouble, op, ": unsupported dtype ",     \
                  (dtype));                                               \
      using scalar_t = double;                                            \
      return __VA_ARGS__();                                               \
    }                                                                     \
  }()

// ---------------------------------------------------------------------------
// The CPU backend of the op bodies in op_surface.h: threads through
// at::parallel_for, kernels from the dispatch table (csrc/cpu/dispatch.cpp).
// ---------------------------------------------------------------------------
void cpu_depthwise_forward(const char* op, const DepthwiseShape& shape, const at::Tensor& x, const at::Tensor& w,
                           const at::Tensor& b, at::Tensor& y, Activation act) {
  DepthwiseShape s = shape;
  // training (the input requires grad): a large channels_last output goes
  // out with non-temporal stores (see dwkxk_forward_rows)
  s.stream_out = x.requires_grad();
  MNX_DISPATCH_CPU(x.scalar_type(), op, [&] {
    const auto& k = dw_kernels<scalar_t>();
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* wp = w.data_ptr<scalar_t>();
    const scalar_t* bp = b.defined() ? b.data_ptr<scalar_t>() : nullptr;
    scalar_t* yp = y.data_ptr<scalar_t>();
    const int64_t units = depthwise_forward_units(s);
    const int64_t per_unit = y.numel() / units * s.KH * s.KW;
    at::parallel_for(0, units, grain_for(units, per_unit),
                     [&](int64_t b0, int64_t b1) {
                       k.forward(s, xp, wp, bp, yp, act, b0, b1);
                     });
  });
}

// A depthwise backward kernel of the dispatch table (grad_input, grad_weight
// or grad_weight_nhwc_partial, all (s, gy, w or x, out, begin, end)) over
// its work units [0, units) on at::parallel_for, at least `grain` units a
// task.
template <typename scalar_t, typename Kernel>
void run_dw_backward(Kernel kernel, const DepthwiseShape& s, const at::Tensor& gy, const at::Tensor& in,
                     at::Tensor& out, int64_t units, int64_t grain) {
  const scalar_t* gyp = gy.data_ptr<scalar_t>();
  const scalar_t* inp = in.data_ptr<scalar_t>();
  scalar_t* outp = out.data_ptr<scalar_t>();
  at::parallel_for(0, units, grain, [&](int64_t b0, int64_t b1) { kernel(s, gyp, inp, outp, b0, b1); });
}

void cpu_depthwise_grad_input(const char* op, const DepthwiseShape& s, const at::Tensor& gy, const at::Tensor& w,
                              at::Tensor& gx) {
  MNX_DISPATCH_CPU(gy.scalar_type(), op, [&] {
    const int64_t units = depthwise_grad_input_units(s);
    const int64_t per_unit = gx.numel() / units * s.KH * s.KW * s.mult;
    run_dw_backward<scalar_t>(dw_kernels<scalar_t>().grad_input, s, gy, w, gx, units,
                              grain_for(units, per_unit));
  });
}

// NHWC, multiplier 1: one pass over the data, partial sums per fixed chunk
// of rows, then a sum over chunks in chunk order (independent of the thread
// count).
template <typename scalar_t>
void dw_grad_weight_by_row_chunks(const cpu::DepthwiseKernels<scalar_t>& k, const DepthwiseShape& s,
                                  const at::Tensor& gy, const at::Tensor& x, at::Tensor& gw) {
  const int64_t chunks = depthwise_grad_weight_row_chunks(s);
  const int64_t KK = s.KH * s.KW, CK = KK * s.C;
  auto partial = at::empty({chunks, CK}, gw.options());
  const int64_t per_chunk = depthwise_grad_weight_row_chunk_size(s) * s.OW * CK;
  run_dw_backward<scalar_t>(k.grad_weight_nhwc_partial, s, gy, x, partial, chunks,
                            grain_for(chunks, per_chunk));
  const scalar_t* pp = partial.data_ptr<scalar_t>();
  scalar_t* gwp = gw.data_ptr<scalar_t>();
  // Per element: 0 + chunk 0 + chunk 1 + ... in chunk order. Blocks of kB
  // elements, the chunks added row by row (contiguous, vectorised) into a
  // local block instead of one strided walk over all chunks per element.
  constexpr int64_t kB = 256;
  at::parallel_for(0, (CK + kB - 1) / kB, 4, [&](int64_t b0, int64_t b1) {
    scalar_t acc[kB];
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t i0 = b * kB, n = std::min(kB, CK - i0);
      for (int64_t j = 0; j < n; ++j) acc[j] = 0;
      for (int64_t u = 0; u < chunks; ++u) {
        const scalar_t* src = pp + u * CK + i0;
        for (int64_t j = 0; j < n; ++j) acc[j] += src[j];
      }
      for (int64_t j = 0; j < n; ++j) {
        const int64_t i = i0 + j, t = i / s.C, c = i % s.C;  // partial is [KK][C]
        gwp[c * KK + t] = acc[j];
      }
    }
  });
}

void cpu_depthwise_grad_weight(const char* op, const DepthwiseShape& s, const at::Tensor& gy, const at::Tensor& x,
                               at::Tensor& gw) {
  MNX_DISPATCH_CPU(x.scalar_type(), op, [&] {
    const auto& k = dw_kernels<scalar_t>();
    if (s.layout == Layout::NHWC && s.mult == 1 && k.grad_weight_nhwc_partial)
      return dw_grad_weight_by_row_chunks<scalar_t>(k, s, gy, x, gw);
    run_dw_backward<scalar_t>(k.grad_weight, s, gy, x, gw, depthwise_grad_weight_units(s), 1);
  });
}

// One GEMM of a multi-GEMM launch (see run_gemms).
template <typename scalar_t>
struct GemmJob {
  GemmArgs g;
  const scalar_t* A;
  const scalar_t* B;
  scalar_t* C;
  const scalar_t* bias;
  const scalar_t* residual;
};

// A GEMM with fewer rows than columns, split by columns into `threads`
// GEMMs (whole kGemmTileN tiles each); empty when it does not apply. The
// units are numbered row-major, so the threads' ranges of such a product
// (a channels_last 1x1 at batch 1 on a small map: 49 pixels x 1280
// channels; a classifier at batch 32) each spanned every column: each
// thread packed (or, prepacked, read) all of B, the weight, for its few
// rows. Split by columns, each packs and reads its share. Every element of
// C gets the same arithmetic (the reduction is not split), so the same
// bits. In-process A/B, 2 threads, Intel Xeon (AVX-512), hot caches:
// channels_last 320->1280 at 7x7, batch 1, 0.68x the time (prepacked, the
// fused model's op, 0.86x), 576->96 prepacked 0.83x, linear layers at
// batch 32 (576-1280 -> 1000-1024) 0.57-0.60x (prepacked 0.85-0.87x); the
// fused models neutral (0.99-1.01x, batch 1 and 32).
template <typename scalar_t>
std::vector<GemmJob<scalar_t>> column_parts(const GemmJob<scalar_t>& jb, int64_t threads) {
  const GemmArgs& g = jb.g;
  const int64_t tn = gemm_tiles_n(g);
  const int64_t parts = std::min(threads, tn);
  if (parts < 2 || g.M >= g.N || g.batch != 1 || g.sum_batch || g.merged_hw > 0 ||
      (g.b_panel > 0 && kGemmTileN % g.b_panel != 0))
    return {};
  std::vector<GemmJob<scalar_t>> out;
  for (int64_t p = 0; p < parts; ++p) {
    const int64_t n0 = tn * p / parts * kGemmTileN, n1 = std::min(g.N, tn * (p + 1) / parts * kGemmTileN);
    GemmJob<scalar_t> j = jb;
    j.g.N = n1 - n0;
    // prepacked: whole panels of b_panel columns, (n0 / b_panel) * K * b_panel floats on
    j.B = g.b_panel > 0 ? jb.B + n0 * g.K : jb.B + gemm_b_col(g, n0);
    j.C = jb.C + gemm_c_col(g, n0);
    if (jb.residual) j.residual = jb.residual + n0;
    if (jb.bias && !g.bias_per_row) j.bias = jb.bias + n0;
    out.push_back(j);
  }
  return out;
}

// Runs all units of all jobs. The units (tiles of C, see params.h) are cut
// into at most get_num_threads() contiguous ranges of about equal cost (tile
// area padded to the micro-kernel, times the reduction length), one per
// task: contiguous ranges let the blocked kernels share packed panels across
// tiles. A unit's result does not depend on the range it falls in, so the
// output is bitwise identical for every thread count. A single GEMM with
// fewer rows than columns runs as column_parts.
template <typename scalar_t>
void run_gemms(const std::vector<GemmJob<scalar_t>>& jobs, const cpu::GemmKernels<scalar_t>& k,
               bool split_columns = true) {
  if (split_columns && jobs.size() == 1) {
    const std::vector<GemmJob<scalar_t>> parts = column_parts(jobs[0], at::get_num_threads());
    if (!parts.empty()) return run_gemms(parts, k, false);
  }
  std::vector<int64_t> offset(jobs.size() + 1, 0);
  for (size_t j = 0; j < jobs.size(); ++j)
    offset[j + 1] = offset[j] + gemm_units(jobs[j].g);
  const int64_t units = offset.back();
  if (units == 0) return;
  // cost prefix over all units
  std::vector<double> prefix(units + 1, 0.0);
  for (size_t j = 0; j < jobs.size(); ++j) {
    const GemmArgs& g = jobs[j].g;
    const int64_t tm = gemm_tiles_m(g), tn = gemm_tiles_n(g);
    const double red =
        (double)g.K * (g.sum_batch ? (double)g.batch : 1.0) + 16.0;
    for (int64_t u = 0; u < offset[j + 1] - offset[j]; ++u) {
      const int64_t r = u % (tm * tn);
      const int64_t rows =
          std::min(kGemmTileM, g.M - (r / tn) * kGemmTileM);
      const int64_t cols =
          std::min(kGemmTileN, g.N - (r % tn) * kGemmTileN);
      const double cost =
          (double)((rows + 7) / 8 * 8) * (double)((cols + 15) / 16 * 16) * red;
      prefix[offset[j] + u + 1] = prefix[offset[j] + u] + cost;
    }
  }
  const double total = prefix[units];
  int64_t tasks = std::min<int64_t>(at::get_num_threads(), units);
  tasks = std::max<int64_t>(
      1, std::min<int64_t>(tasks, (int64_t)(total / kMinWorkPerTask)));
  std::vector<int64_t> cut(tasks + 1, units);
  cut[0] = 0;
  for (int64_t t = 1; t < tasks; ++t) {
    const double target = total * (double)t / (double)tasks;
    cut[t] = std::lower_bound(prefix.begin(), prefix.end(), target) -
             prefix.begin();
    cut[t] = std::max(cut[t - 1], std::min(cut[t], units));
  }
  at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      for (size_t j = 0; j < jobs.size(); ++j) {
        const int64_t lo = std::max(cut[t], offset[j]);
        const int64_t hi = std::min(cut[t + 1], offset[j + 1]);
        if (lo >= hi) continue;
        const GemmJob<scalar_t>& jb = jobs[j];
        k.run(jb.g, jb.A, jb.B, jb.C, jb.bias, jb.residual, lo - offset[j],
              hi - offset[j]);
      }
    }
  });
}

template <typename scalar_t>
void run_gemm(const GemmArgs& g, const scalar_t* A, const scalar_t* B,
              scalar_t* C, const scalar_t* bias, const scalar_t* residual,
              const cpu::GemmKernels<scalar_t>& k = gemm_kernels<scalar_t>()) {
  run_gemms<scalar_t>({GemmJob<scalar_t>{g, A, B, C, bias, residual}}, k);
}

// The kernels of the gradient GEMMs (cpu::gemm_kernels_f32_backward): chosen
// on the whole product's N and reduction length.
template <typename scalar_t>
const cpu::GemmKernels<scalar_t>& backward_gemm_kernels(const GemmArgs& g) {
  if constexpr (std::is_same<scalar_t, float>::value)
    return cpu::gemm_kernels_f32_backward(g.N, g.K * (g.sum_batch ? g.batch : 1));
  else
    return gemm_kernels<scalar_t>();
}

// Weight gradients have few tiles (Cout x Cin) and a huge reduction
// (N*H*W): the reduction is cut into S chunks, S chosen from the shape only,
// chunk 0 goes to C, chunks 1.. to a scratch buffer, and they are summed in
// chunk order afterwards: deterministic for every thread count.
constexpr int64_t kSplitTargetUnits = 32;   // aim for this many units
constexpr int64_t kSplitMinReduction = 1024;  // per chunk at least
constexpr int64_t kSplitMax = 32;

int64_t grad_weight_splits(const GemmArgs& g) {
  const int64_t units = gemm_units(g);
  const int64_t red = g.K * (g.sum_batch ? g.batch : 1);
  if (units >= kSplitTargetUnits || units == 0) return 1;
  int64_t S = (kSplitTargetUnits + units - 1) / units;
  S = std::min(S, red / kSplitMinReduction);
  S = std::min(S, kSplitMax);
  if (g.sum_batch && g.batch < S) S = std::min(S, g.K / kSplitMinReduction);
  return std::max<int64_t>(S, 1);
}

template <typename scalar_t>
void run_gemm_split_reduction(const GemmArgs& g, const scalar_t* A,
                              const scalar_t* B, scalar_t* C,
                              const at::TensorOptions& opts) {
  const int64_t S = grad_weight_splits(g);
  const auto& k = backward_gemm_kernels<scalar_t>(g);
  if (S <= 1) {
    run_gemm<scalar_t>(g, A, B, C, nullptr, nullptr, k);
    return;
  }
  // C is dense [M, ldc] here (weight gradient)
  const int64_t csize = g.M * g.ldc;
  at::Tensor scratch = at::empty({S - 1, csize}, opts);
  scalar_t* P = scratch.data_ptr<scalar_t>();
  std::vector<GemmJob<scalar_t>> jobs;
  const bool by_batch = g.sum_batch && g.batch >= S;
  const int64_t len = by_batch ? g.batch : g.K;
  for (int64_t s = 0; s < S; ++s) {
    const int64_t i0 = len * s / S, i1 = len * (s + 1) / S;
    GemmArgs sub = g;
    const scalar_t* As = A;
    const scalar_t* Bs = B;
    if (by_batch) {
      sub.batch = i1 - i0;
      As += i0 * g.a_bs;
      Bs += i0 * g.b_bs;
    } else {
      sub.K = i1 - i0;
      As += i0 * g.a_cs;
      Bs += i0 * g.b_rs;
    }
    scalar_t* Cs = s == 0 ? C : P + (s - 1) * csize;
    jobs.push_back(GemmJob<scalar_t>{sub, As, Bs, Cs, nullptr, nullptr});
  }
  run_gemms<scalar_t>(jobs, k);
  at::parallel_for(0, csize, 4096, [&](int64_t i0, int64_t i1) {
    for (int64_t s = 1; s < S; ++s) {
      const scalar_t* ps = P + (s - 1) * csize;
      for (int64_t i = i0; i < i1; ++i) C[i] += ps[i];
    }
  });
}

// The layout a pointwise GEMM is formulated in. With 1x1 maps (squeeze-
// excitation) both layouts lie in memory as [N, C]; the NHWC form makes one
// GEMM with M = N instead of N matrix-vector products with one column. The
// output keeps the input's memory format either way.
Layout pointwise_gemm_layout(const PointwiseShape& s) {
  return s.H * s.W == 1 ? Layout::NHWC : s.layout;
}

// NCHW GEMMs with few columns per image (HW) run with the columns of groups
// of images merged (GemmArgs::merged_hw): at 7x7 the per-image product
// leaves the last 32-wide column panel of the AVX-512 kernel half padding.
// Groups of G images make about kMergedCols columns; the images left over
// (N % G) are a second job of one group. Per element the arithmetic is the
// per-image product's (the same K blocks and epilogue): the output is
// bitwise the same. Measured on the Intel Xeon (AVX-512, 2 threads, plain
// op, batch 32, sequential runs), GFLOP/s per-image -> merged: forward
// 1024->1024 7x7 196 -> 278, 512->1024 7x7 219 -> 298, 960->160 7x7
// 203 -> 254, 576->96 14x14 254 -> 286; grad_input 1024->1024 7x7 195 ->
// 263, 672->160 7x7 230 -> 294. Groups of 256 or 1024 columns did no
// better; maps of 28x28 and more are not merged (the padding is <= 2%).
// Returns the jobs to run (one, the product as given, when merging does
// not apply).
constexpr int64_t kMergedCols = 512;

template <typename scalar_t>
std::vector<GemmJob<scalar_t>> merged_image_jobs(const GemmArgs& g, Layout layout, const scalar_t* A,
                                                 const scalar_t* B, scalar_t* C, const scalar_t* bias,
                                                 const scalar_t* residual) {
  const int64_t hw = g.N, G = std::min<int64_t>(g.batch, kMergedCols / std::max<int64_t>(1, hw));
  if (layout != Layout::NCHW || g.sum_batch || g.b_panel > 0 || !g.bias_per_row || G < 2)
    return {GemmJob<scalar_t>{g, A, B, C, bias, residual}};
  GemmArgs m = g;
  m.merged_hw = hw;
  m.b_is = g.b_bs;
  m.c_is = g.c_bs;
  m.N = G * hw;
  m.batch = g.batch / G;
  m.b_bs = G * g.b_bs;
  m.c_bs = G * g.c_bs;
  std::vector<GemmJob<scalar_t>> jobs{GemmJob<scalar_t>{m, A, B, C, bias, residual}};
  const int64_t done = m.batch * G, rest = g.batch - done;
  if (rest > 0) {
    GemmArgs r = rest > 1 ? m : g;  // one image left: the plain product
    r.batch = 1;
    if (rest > 1) r.N = rest * hw;
    jobs.push_back(GemmJob<scalar_t>{r, A, B + done * g.b_bs, C + done * g.c_bs, bias,
                                     residual ? residual + done * g.c_bs : nullptr});
  }
  return jobs;
}

// The forward GEMM. packed (float32 only): the weight as
// pointwise_pack_weight made it, read in place as the GEMM's A (NCHW) or B
// (NHWC) operand, except where the GEMM runs as dot products (a few rows:
// gemm_small_m_applies), which read the weight itself; either way the output
// is bitwise the unpacked one's.
void run_pointwise_forward(const char* op, const PointwiseShape& s, const at::Tensor& x,
                           const at::Tensor& w, const at::Tensor& b, const at::Tensor& r,
                           at::Tensor& y, Activation act, const at::Tensor* packed) {
  PointwiseShape sg = s;
  sg.layout = pointwise_gemm_layout(s);
  GemmArgs g = pointwise_forward_gemm(sg);
  g.act = act;
  // Training (the input requires grad: the output is kept for the backward,
  // and a step's working set is far past the caches): a large output goes
  // to memory with non-temporal stores (GemmArgs::stream_c). Inference keeps
  // plain stores: the next op may read the output from L3 (the depthwise
  // forward measured slower streamed there, depthwise_nhwc_kxk.h). With
  // the grad_input below: training steps at batch 32, 2 threads, Intel Xeon
  // (AVX-512), benchmarks/ab_builds.py 3 rounds, new / old time:
  // mobilenet_v2 cl 0.957, mobilenet_v3_large cl 0.976, mobilenet_v2 nchw
  // 0.977 (inference at batch 32, the same code, 0.978: the noise).
  g.stream_c = x.requires_grad();
  const bool use_packed = packed && !gemm_small_m_applies(g);
  if (use_packed) (sg.layout == Layout::NCHW ? g.a_panel : g.b_panel) = packed->size(2);
  MNX_DISPATCH_CPU(x.scalar_type(), op, [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* wp = use_packed ? packed->data_ptr<scalar_t>() : w.data_ptr<scalar_t>();
    const scalar_t* A = sg.layout == Layout::NCHW ? wp : xp;
    const scalar_t* B = sg.layout == Layout::NCHW ? xp : wp;
    run_gemms<scalar_t>(merged_image_jobs<scalar_t>(g, sg.layout, A, B, y.data_ptr<scalar_t>(),
                                                    b.defined() ? b.data_ptr<scalar_t>() : nullptr,
                                                    r.defined() ? r.data_ptr<scalar_t>() : nullptr),
                        gemm_kernels<scalar_t>());
  });
}

void cpu_pointwise_forward(const char* op, const PointwiseShape& s, const at::Tensor& x, const at::Tensor& w,
                           const at::Tensor& b, const at::Tensor& r, at::Tensor& y, Activation act) {
  run_pointwise_forward(op, s, x, w, b, r, y, act, nullptr);
}

void cpu_pointwise_grad_input(const char* op, const PointwiseShape& s, const at::Tensor& gy, const at::Tensor& w,
                              at::Tensor& gx) {
  PointwiseShape sg = s;
  sg.layout = pointwise_gemm_layout(s);
  GemmArgs g = pointwise_grad_input_gemm(sg);
  g.stream_c = true;  // a backward op: training, as the forward's above
  MNX_DISPATCH_CPU(gy.scalar_type(), op, [&] {
    const scalar_t* gyp = gy.data_ptr<scalar_t>();
    const scalar_t* wp = w.data_ptr<scalar_t>();
    const scalar_t* A = sg.layout == Layout::NCHW ? wp : gyp;
    const scalar_t* B = sg.layout == Layout::NCHW ? gyp : wp;
    run_gemms<scalar_t>(merged_image_jobs<scalar_t>(g, sg.layout, A, B, gx.data_ptr<scalar_t>(), nullptr, nullptr),
                        backward_gemm_kernels<scalar_t>(g));
  });
}

// channels_last: gW[Cout, Cin] = gY^T X, a GEMM whose N is Cin. With fewer
// input than output channels (the expanding 1x1 layers) the micro-kernel's
// column panels (32 wide on AVX-512) are mostly padding, so the transposed
// product gW^T[Cin, Cout] = X^T gY runs instead, with Cout as N, and is
// transposed into gW (Cin x Cout floats). Per element the same products in
// the same k order; only the split of the reduction over threads can
// differ. A/B at batch 32, 2 threads, Zen 5 (AVX-512): expanding layers of
// V2 / V3 0.67-0.92x the time (16->64 at 112x112: 9.97 -> 7.43 ms), 0.96-1.05x
// where both orientations fill their panels; the projections (Cin > Cout)
// ran 1.02-1.44x slower transposed and keep the direct form.
// The transposed product needs a Cin x Cout buffer besides gW: only where it
// is at most 1/16 of grad_output (N*H*W >= 16 * Cin). Without that bound
// the batch-1 layers on small maps (7x7, 14x14), whose weights outweigh
// their activations, took up to 1.85x nn.Conv2d's peak memory of forward +
// backward (320->1280 at 7x7) where they had taken 1.0x.
bool pointwise_grad_weight_transposed(const PointwiseShape& s) {
  return s.layout == Layout::NHWC && s.Cin < s.Cout && s.N * s.H * s.W >= 16 * s.Cin;
}

void cpu_pointwise_grad_weight(const char* op, const PointwiseShape& s, const at::Tensor& gy, const at::Tensor& x,
                               at::Tensor& gw) {
  const bool transposed = pointwise_grad_weight_transposed(s);
  const GemmArgs g = transposed ? pointwise_grad_weight_t_gemm(s) : pointwise_grad_weight_gemm(s);
  at::Tensor out = transposed ? at::empty({s.Cin, s.Cout}, gw.options()) : gw;
  MNX_DISPATCH_CPU(x.scalar_type(), op, [&] {
    const scalar_t* gyp = gy.data_ptr<scalar_t>();
    const scalar_t* xp = x.data_ptr<scalar_t>();
    run_gemm_split_reduction<scalar_t>(g, transposed ? xp : gyp, transposed ? gyp : xp,
                                       out.data_ptr<scalar_t>(), gw.options());
  });
  if (transposed) gw.view({s.Cout, s.Cin}).copy_(out.t());
}

// --- the pointwise weight packed once (inference, float32) -------------------
// pointwise_pack_weight: weight [C_out, C_in, 1, 1] -> [ceil(C_out / panel),
// C_in, panel] (cpu::gemm_pack_panels). pointwise_conv2d_packed reads it as
// the GEMM's A (NCHW) or B (NHWC) operand in place: the blocked kernels skip
// their per-call weight packing when panel is their tile (gemm_tile()), any
// other panel is still read correctly. Same FMA order as the unpacked op, so
// the output is bitwise pointwise_conv2d_fused's.
at::Tensor pointwise_pack_weight(const at::Tensor& weight, int64_t panel) {
  const char* op = "pointwise_pack_weight";
  TORCH_CHECK_VALUE(weight.dim() == 4 && weight.size(2) == 1 && weight.size(3) == 1 &&
                        weight.size(0) >= 1 && weight.size(1) >= 1,
                    op, ": weight must be a 1x1 weight [C_out, C_in, 1, 1], got shape ",
                    weight.sizes());
  TORCH_CHECK_VALUE(weight.scalar_type() == at::kFloat, op, ": weight must be float32, got ",
                    c10::toString(weight.scalar_type()));
  TORCH_CHECK_VALUE(panel >= 1 && panel <= 256, op, ": panel must be in [1, 256], got ", panel);
  const at::Tensor w = weight.contiguous();
  const int64_t M = w.size(0), K = w.size(1);
  at::Tensor out = at::empty({(M + panel - 1) / panel, K, panel}, w.options());
  cpu::gemm_pack_panels(w.data_ptr<float>(), M, K, K, panel, out.data_ptr<float>());
  return out;
}

at::Tensor pointwise_conv2d_packed(const at::Tensor& input, const at::Tensor& weight,
                                   const at::Tensor& packed, const c10::optional<at::Tensor>& bias,
                                   int64_t activation, const c10::optional<at::Tensor>& residual) {
  const char* op = "pointwise_conv2d_packed";
  const Activation act = check_activation(op, activation);
  const PointwiseShape s = check_pointwise(op, input, weight, bias, nullptr, residual);
  TORCH_CHECK_VALUE(input.scalar_type() == at::kFloat, op, ": input must be float32, got ",
                    c10::toString(input.scalar_type()));
  TORCH_CHECK_VALUE(packed.scalar_type() == at::kFloat && packed.device().is_cpu(), op,
                    ": packed must be a float32 CPU tensor, got ", c10::toString(packed.scalar_type()),
                    " on ", packed.device());
  const int64_t panel = packed.dim() == 3 ? packed.size(2) : 0;
  TORCH_CHECK_VALUE(panel >= 1 && packed.size(1) == s.Cin &&
                        packed.size(0) == (s.Cout + panel - 1) / panel,
                    op, ": packed must be pointwise_pack_weight(weight, panel) of shape "
                    "[ceil(C_out / panel), C_in, panel] with C_out = ", s.Cout, ", C_in = ", s.Cin,
                    ", got shape ", packed.sizes());
  at::Tensor y = empty_cpu_output({s.N, s.Cout, s.H, s.W},
                              input.options().memory_format(memory_format_of(s.layout)));
  if (y.numel() == 0) return y;
  const at::Tensor x = contiguous_in(input, s.layout);
  at::Tensor pk = packed.contiguous();
  // the kernels load packed panels with aligned loads: a view at another
  // offset is copied (at::empty's storage is 64-byte aligned)
  if (reinterpret_cast<uintptr_t>(pk.data_ptr()) % 64 != 0) pk = pk.clone();
  at::Tensor b, r;
  if (bias.has_value() && bias->defined()) b = bias->contiguous();
  if (residual.has_value() && residual->defined()) r = contiguous_in(*residual, s.layout);
  run_pointwise_forward(op, s, x, weight.contiguous(), b, r, y, act, &pk);
  return y;
}

// conv2d_small_cin_fused: a dense conv with few input channels (the stem),
// act(conv + bias) written once in the input's layout, or in channels_last
// from any input (cpu/conv2d_small_cin.h).
at::Tensor conv2d_small_cin_fused(const at::Tensor& input, const at::Tensor& weight,
                                  const c10::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                  at::IntArrayRef padding, int64_t activation, bool channels_last_output) {
  const char* op = "conv2d_small_cin_fused";
  const Activation act = check_activation(op, activation);
  SmallCinConvShape s = check_small_cin_conv(op, input, weight, bias, stride, padding);
  if (channels_last_output) s.out_layout = Layout::NHWC;
  at::Tensor y =
      empty_cpu_output({s.N, s.Cout, s.OH, s.OW}, input.options().memory_format(memory_format_of(s.out_layout)));
  if (y.numel() == 0) return y;
  const at::Tensor x = contiguous_in(input, s.layout);
  // a channels_last weight (a model moved to channels_last) read as it is:
  // its copy took 20-30 us of a ~1.4 ms batch-1 mobilenet_v3_small
  const bool w_cl = !weight.is_contiguous() && weight.is_contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor w = w_cl ? weight : weight.contiguous();
  s.w_layout = w_cl ? Layout::NHWC : Layout::NCHW;
  at::Tensor b;
  if (bias.has_value() && bias->defined()) b = bias->contiguous();
  MNX_DISPATCH_CPU(x.scalar_type(), op, [&] {
    const auto& k = for_dtype<scalar_t>(cpu::conv2d_small_cin_kernels_f32, cpu::conv2d_small_cin_kernels_f64);
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* wp = w.data_ptr<scalar_t>();
    const scalar_t* bp = b.defined() ? b.data_ptr<scalar_t>() : nullptr;
    scalar_t* yp = y.data_ptr<scalar_t>();
    const int64_t units = s.units();
    const int64_t per_unit = s.OW * s.Cout * s.Cin * s.KH * s.KW;
    std::atomic<bool> ok{true};
    at::parallel_for(0, units, grain_for(units, per_unit), [&](int64_t b0, int64_t b1) {
      if (!k.forward(s, xp, wp, bp, yp, act, b0, b1)) ok = false;
    });
    TORCH_CHECK(ok.load(), op, ": out of memory for the kernel's per-thread scratch");
  });
  return y;
}

// conv2d_small_cin_backward_weight: (grad_weight, grad_bias) of the stem.
// The output rows are cut into chunks fixed by the shape (at most
// kSmallCinGradChunks, at least kSmallCinGradRowsPerChunk rows each), each
// chunk's sums are computed by one kernel call into its own slot, and the
// slots are added in chunk order: the same bits for any thread count.
constexpr int64_t kSmallCinGradChunks = 64;
constexpr int64_t kSmallCinGradRowsPerChunk = 4;

std::tuple<at::Tensor, at::Tensor> conv2d_small_cin_backward_weight(const at::Tensor& grad_output,
                                                                    const at::Tensor& input,
                                                                    const at::Tensor& weight,
                                                                    at::IntArrayRef stride,
                                                                    at::IntArrayRef padding) {
  const char* op = "conv2d_small_cin_backward_weight";
  const SmallCinConvShape s = check_small_cin_conv(op, input, weight, {}, stride, padding, &grad_output);
  const int64_t taps = s.Cin * s.KH * s.KW, slot = s.Cout * taps + s.Cout;
  at::Tensor gw = at::zeros({s.Cout, s.Cin, s.KH, s.KW}, weight.options());
  at::Tensor gb = at::zeros({s.Cout}, weight.options());
  const int64_t units = s.units();
  if (units == 0) return {gw, gb};
  const at::Tensor x = contiguous_in(input, s.layout);
  const at::Tensor gy = contiguous_in(grad_output, s.layout);
  const int64_t chunks =
      std::max<int64_t>(1, std::min(kSmallCinGradChunks, units / kSmallCinGradRowsPerChunk));
  at::Tensor part = at::empty({chunks, slot}, weight.options());
  MNX_DISPATCH_CPU(x.scalar_type(), op, [&] {
    const auto& k = for_dtype<scalar_t>(cpu::conv2d_small_cin_kernels_f32, cpu::conv2d_small_cin_kernels_f64);
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* gyp = gy.data_ptr<scalar_t>();
    scalar_t* pp = part.data_ptr<scalar_t>();
    std::atomic<bool> ok{true};
    at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        scalar_t* dst = pp + c * slot;
        if (!k.grad_weight(s, xp, gyp, dst, dst + s.Cout * taps, units * c / chunks, units * (c + 1) / chunks))
          ok = false;
      }
    });
    TORCH_CHECK(ok.load(), op, ": out of memory for the kernel's per-thread scratch");
    scalar_t* gwp = gw.data_ptr<scalar_t>();
    scalar_t* gbp = gb.data_ptr<scalar_t>();
    for (int64_t c = 0; c < chunks; ++c) {
      const scalar_t* src = pp + c * slot;
      for (int64_t i = 0; i < s.Cout * taps; ++i) gwp[i] += src[i];
      for (int64_t i = 0; i < s.Cout; ++i) gbp[i] += src[s.Cout * taps + i];
    }
  });
  return {gw, gb};
}

struct CpuBackend {
  struct Guard {
    explicit Guard(const at::Tensor&) {}
  };
  static at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& opts) {
    return empty_cpu_output(sizes, opts);
  }
  static constexpr auto depthwise_forward = cpu_depthwise_forward;
  static constexpr auto depthwise_grad_input = cpu_depthwise_grad_input;
  static constexpr auto depthwise_grad_weight = cpu_depthwise_grad_weight;
  static constexpr auto pointwise_forward = cpu_pointwise_forward;
  static constexpr auto pointwise_grad_input = cpu_pointwise_grad_input;
  static constexpr auto pointwise_grad_weight = cpu_pointwise_grad_weight;
};

// linear_fused / linear_packed: a linear layer as the 1x1 GEMM on views
// [N, in, 1, 1] and [out, in, 1, 1] (the classifier of a fused network).
void check_linear(const char* op, const at::Tensor& input, const at::Tensor& weight,
                  const c10::optional<at::Tensor>& bias) {
  TORCH_CHECK_VALUE(input.dim() == 2, op, ": input must be a 2-D tensor [N, in_features], got shape ",
                    input.sizes());
  check_dtype_supported(op, input);
  TORCH_CHECK_VALUE(weight.dim() == 2 && weight.size(1) == input.size(1) && weight.size(0) >= 1, op,
                    ": weight must be [out_features, ", input.size(1), "], got shape ", weight.sizes());
  TORCH_CHECK_VALUE(weight.scalar_type() == input.scalar_type(), op, ": weight must have the input's dtype ",
                    c10::toString(input.scalar_type()), ", got ", c10::toString(weight.scalar_type()));
  if (bias.has_value() && bias->defined())
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == weight.size(0) &&
                          bias->scalar_type() == input.scalar_type(),
                      op, ": bias must be [", weight.size(0), "] of the input's dtype, got shape ", bias->sizes(),
                      " ", c10::toString(bias->scalar_type()));
}

at::Tensor linear_fused(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                        int64_t activation) {
  check_linear("linear_fused", input, weight, bias);
  const at::Tensor x = input.contiguous(), w = weight.contiguous();
  const at::Tensor y = Ops<CpuBackend>::pointwise_conv2d_fused(
      x.view({x.size(0), x.size(1), 1, 1}), w.view({w.size(0), w.size(1), 1, 1}), bias, activation, {});
  return y.view({x.size(0), w.size(0)});
}

at::Tensor linear_packed(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& packed,
                         const c10::optional<at::Tensor>& bias, int64_t activation) {
  check_linear("linear_packed", input, weight, bias);
  const at::Tensor x = input.contiguous(), w = weight.contiguous();
  const at::Tensor y = pointwise_conv2d_packed(x.view({x.size(0), x.size(1), 1, 1}),
                                               w.view({w.size(0), w.size(1), 1, 1}), packed, bias, activation, {});
  return y.view({x.size(0), w.size(0)});
}

}  // namespace

template <typename T>
void cpu_gemm(const GemmArgs& g, const T* A, const T* B, T* C, const T* bias, const T* residual) {
  run_gemm<T>(g, A, B, C, bias, residual);
}
template void cpu_gemm<float>(const GemmArgs&, const float*, const float*, float*, const float*, const float*);
template void cpu_gemm<double>(const GemmArgs&, const double*, const double*, double*, const double*,
                               const double*);

TORCH_LIBRARY_IMPL(mobilenet_ext, CPU, m) {
  MNX_REGISTER_OPS(m, CpuBackend);
  m.impl("pointwise_pack_weight", &pointwise_pack_weight);
  m.impl("pointwise_conv2d_packed", &pointwise_conv2d_packed);
  m.impl("conv2d_small_cin_fused", &conv2d_small_cin_fused);
  m.impl("conv2d_small_cin_backward_weight", &conv2d_small_cin_backward_weight);
  m.impl("linear_fused", &linear_fused);
  m.impl("linear_packed", &linear_packed);
}

}  // namespace glue
}  // namespace mnx
