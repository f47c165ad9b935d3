// Per-thread scratch for the CPU kernels (ISA-neutral, torch-free).
#pragma once

#include <cstdint>
#include <vector>

namespace mnx {
namespace cpu {
namespace {  // internal linkage: see vec/vec.h

// A per-thread buffer of at least n floats, 64-byte aligned, one per Tag and
// translation unit, reused across calls (it only grows; its contents are
// not kept when it does); null when it cannot be had (allocation failure:
// the caller then writes nothing and reports it, see depthwise_path.h).
template <int Tag>
inline float* thread_scratch(int64_t n) {
  thread_local std::vector<float> buf;
  try {
    if (static_cast<int64_t>(buf.size()) < n + 16) buf.resize(n + 16);
  } catch (...) {    // coverage: unreachable (only on std::bad_alloc)
    return nullptr;  // coverage: unreachable
  }  // coverage: unreachable
  const uintptr_t p = reinterpret_cast<uintptr_t>(buf.data());
  return reinterpret_cast<float*>((p + 63) & ~uintptr_t(63));
}

}  // namespace
}  // namespace cpu
}  // namespace mnx
