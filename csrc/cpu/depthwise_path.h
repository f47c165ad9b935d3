// Which depthwise kernel runs, by name: one routing function per kernel
// family maps (shape, op) to a DepthwisePath, and the family's entry points
// run the kernel it names (MLAS-style: the choice is made in one place, and
// what it answers is what runs).
//
//   AVX2 family  depthwise_family_avx2().path  (avx2/depthwise_avx2.cpp)
//   NEON family  depthwise_family_neon().path  (neon/depthwise_neon.cpp)
//   scalar       always DepthwisePath::scalar
// Both families are generic/depthwise_family.h, which holds the routing
// function and the preference order, instantiated over each ISA's traits.
// depthwise_path_f32() (cpu_kernels.h) asks the family dispatch.cpp selected.
//
// Forcing a path (tests, experiments): MOBILENET_EXT_DEPTHWISE_PATH=<name>
// (read once, at the first routing call) makes every routing call answer
// that path where the family has it and it supports the shape and op;
// elsewhere the normal choice is made. Unknown names are ignored. Tests run
// one named kernel directly with the families' *_run functions.
//
// Fallback at run time: a kernel that cannot get its per-thread scratch
// buffer (only on allocation failure) writes nothing and reports it; the
// entry point then asks the routing function again with that kernel
// excluded, i.e. takes the next choice in the preference order, and at the
// end the scalar kernel (which needs no scratch).
//
// ISA-neutral and torch-free: included by dispatch.cpp, every family and the
// tests; the functions are defined in dispatch.cpp (no ISA flags).
#pragma once

#include <cstdint>

#include "../kernels/params.h"

namespace mnx {
namespace cpu {

enum class DepthwiseOp : int32_t {
  forward = 0,      // y = act(conv(x, w) + bias)
  grad_input = 1,   // gx = conv_transpose(gy, w)
  grad_weight = 2,  // gw = sum of gy * x (the units of grad_weight)
};

// The kernels. Names say layout, kernel and, where one family has two, the
// ISA; each maps to the files below.
enum class DepthwisePath : int32_t {
  // scalar/depthwise_scalar.cpp: any shape, any op (the reference)
  scalar = 0,
  // avx2/depthwise_nchw_c8_kxk_avx2.cpp: blocks of 8 channels interleaved to
  // [column][8]; square 3x3/5x5/7x7, stride 1 or 2 (equal), dilation 1,
  // multiplier 1; all three ops (grad_input also padding <= K-1)
  nchw_c8_kxk = 1,
  // generic/depthwise_nchw_kxk_rows.h (every family):
  // ring of zero-padded rows; square 3x3/5x5/7x7, stride 1 or 2 (equal),
  // dilation 1, any multiplier; forward only
  nchw_kxk_rows = 2,
  // generic/depthwise_nchw.h (small-plane kernels, every family): channels
  // transposed to [H][W][lanes], vectors along C; multiplier 1, fewer than 16 (AVX2) / 12 (NEON) output columns,
  // <= 1024 pixels, up to 49 taps, any stride/dilation; all three ops
  nchw_small_planes = 3,
  // generic/depthwise_nchw.h (general kernels, every family; grad_weight
  // with AVX2's padded-plane kernel, avx2/depthwise_nchw_avx2.cpp): vectors
  // along W, scalar borders; up to 49 taps, stride_w 1 or 2 (any stride_h),
  // any dilation/multiplier; all three ops
  nchw_direct = 4,
  // avx2/depthwise_nhwc_kxk_avx2.cpp: row kernels (direct for 3x3 and
  // stride 2, padded ring for 5x5/7x7 stride 1); square 3x3/5x5/7x7, stride
  // 1 or 2, dilation 1, multiplier 1, C % 8 == 0; forward and grad_input
  // (padding <= K-1)
  nhwc_kxk_avx2 = 5,
  // avx512/depthwise_nhwc_kxk_avx512.cpp (called from the AVX2 family when
  // cpu_use_avx512()): square 3x3/5x5/7x7, stride 1 or 2, dilation 1,
  // multiplier 1, any C; forward, and grad_input at stride 1 (padding <= K-1)
  nhwc_kxk_avx512 = 6,
  // generic/depthwise_nhwc.h (general kernels, every family): vectors along
  // C, any kernel size up to 1024 taps, any stride, padding and dilation; multiplier 1 on AVX2, any on NEON
  nhwc_direct = 7,
};
constexpr int kDepthwisePathCount = 8;

// "scalar", "nchw_c8_kxk", ... (the enumerator's name); "?" if out of range.
const char* depthwise_path_name(DepthwisePath p);
// The path of that name; false (and *p untouched) for an unknown name.
bool depthwise_path_from_name(const char* name, DepthwisePath* p);
// The path MOBILENET_EXT_DEPTHWISE_PATH names (read once); false when unset
// or not a path name.
bool depthwise_path_forced(DepthwisePath* p);

// A set of paths (the routing functions' `skip`: kernels that failed).
// Internal linkage, as everything defined in these headers (see vec/vec.h).
static inline uint32_t depthwise_path_bit(DepthwisePath p) {
  return uint32_t(1) << static_cast<int>(p);
}

}  // namespace cpu
}  // namespace mnx
