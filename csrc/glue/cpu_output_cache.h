// Output buffers of the CPU ops, kept for reuse (see cpu_output_cache.cpp).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace mnx {
namespace glue {

// An uninitialised CPU tensor of `sizes` with `opts` (dtype, memory format).
// Buffers of at least kCachedMinBytes come from the output cache: freed ones
// are kept (up to the cache's limit) and handed out again to a later request
// of about the same size, so the pages are not faulted in anew on every call.
at::Tensor empty_cpu_output(at::IntArrayRef sizes, const at::TensorOptions& opts);

struct CpuCacheStats {
  int64_t limit_bytes;      // most bytes kept while free (0: cache off)
  int64_t in_use_bytes;     // handed out and not yet freed
  int64_t cached_bytes;     // free, kept for reuse
  int64_t peak_reserved_bytes;  // max of in_use + cached so far
  int64_t hits, misses, evictions;
};
CpuCacheStats cpu_cache_stats();
// Gives every free buffer back to the system; returns the bytes released.
int64_t cpu_cache_clear();
// Sets the limit on free bytes kept (evicting the oldest free buffers beyond
// it); 0 turns caching off. Returns the previous limit.
int64_t cpu_cache_set_limit(int64_t bytes);

}  // namespace glue
}  // namespace mnx
