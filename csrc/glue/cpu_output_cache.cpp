// The CPU ops' output cache.
//
// Why: glibc serves blocks above its mmap threshold (at most 32 MiB) straight
// from the kernel and unmaps them on free, so every large activation of a
// network is a fresh mapping whose pages are faulted in and zeroed by the
// kernel on first write, on every call. At batch 32 that is as much time as
// the convolutions: fused mobilenet_v2, NCHW, 2 threads, measured 365 ms and
// 39k page faults per inference, against 185 ms with glibc told to keep its
// memory (MALLOC_MMAP_THRESHOLD_ etc., a process-wide setting).
//
// What: outputs of at least kCachedMinBytes are allocated here; a freed
// buffer is kept on a free list and handed to the next request of about its
// size (at most 1/8 larger), whose pages are then already mapped. On Linux
// the buffers are our own page-granular mappings, and a larger buffer handed
// to a smaller request gives its tail pages back first: a buffer in use is
// never more than its request rounded up to a page, so the memory counted
// for an output is the output's (a 64 KiB granule and whole reused buffers
// counted up to 12% more: fwd+bwd peak 1.08x nn.Conv2d's on small maps). Free
// buffers are kept up to a limit (bytes; MOBILENET_EXT_CPU_CACHE_MB, default
// min(RAM / 8, 4 GiB)); beyond it the oldest free ones go back to the system.
// Buffers handed out are reported to torch.profiler's memory events like
// PyTorch's CPU allocator does, so profile_memory (and the benchmark's peak
// memory column) still counts them while they are in use; the free bytes
// kept are reported as reserved and by mobilenet_ext.cpu_cache_stats().
//
// A fresh buffer of at least 4 MiB is 2 MiB-aligned and gets transparent huge
// pages where the kernel offers them on request (THP mode "madvise"),
// faulted in on one thread, until one is slow to fault in (see
// kSlowHugeFaultNs; MOBILENET_EXT_HUGE_PAGES=0 turns huge pages off, =1 keeps
// them however slow).
#include "cpu_output_cache.h"

#include <ATen/EmptyTensor.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace mnx {
namespace glue {
namespace {

constexpr int64_t kCachedMinBytes = int64_t(1) << 20;
constexpr size_t kHugePageBytes = size_t(1) << 21;
constexpr size_t kHugePageMinBytes = 2 * kHugePageBytes;

// MOBILENET_EXT_HUGE_PAGES: "0" never asks for huge pages, "1" always does,
// unset: asks until a huge page is slow to fault in (below).
enum class HugePages { Off, On, Adaptive };
HugePages huge_pages_mode() {
  static const HugePages m = [] {
    const char* e = std::getenv("MOBILENET_EXT_HUGE_PAGES");
    if (!e || !*e) return HugePages::Adaptive;
    return std::strcmp(e, "0") == 0 ? HugePages::Off : HugePages::On;
  }();
  return m;
}

// A huge page normally faults in at the cost of zeroing 2 MiB (well under a
// millisecond). Where the memory behind it is not backed yet (here: a
// Firecracker VM, whose host backs guest memory on first touch) it took
// 12-26 ms per huge page: the first fused mobilenet_v2 inference at batch
// 32, channels_last, took 6.8 s and the second 3.2 s (the steady state 88
// ms), against 0.25 s and 0.20 s with 4 KiB pages. In the adaptive mode
// the first huge page slower than this turns the advice off for the rest
// of the process (the steady state then loses what huge pages gave there:
// training steps at batch 32, A/B of 3 rounds, 4 KiB / huge: v2 CL 1.067,
// v3-large CL 1.044, v3-large NCHW 0.976; benchmarks/results/
// ab-20261205-intel-s6). MOBILENET_EXT_HUGE_PAGES=1 keeps them.
constexpr int64_t kSlowHugeFaultNs = 3000000;
std::atomic<bool> g_huge_pages_slow{false};

bool huge_pages_off() {
  const HugePages m = huge_pages_mode();
  return m == HugePages::Off || (m == HugePages::Adaptive && g_huge_pages_slow.load(std::memory_order_relaxed));
}

// Buffer sizes are rounded up to this: the page size where buffers are our
// own mappings (Linux), else 64 KiB.
size_t granule() {
#if defined(__linux__)
  static const size_t g = [] {
    const long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? static_cast<size_t>(p) : size_t(4096);
  }();
  return g;
#else
  return size_t(1) << 16;
#endif
}

#if defined(__linux__)
// A fresh anonymous mapping of `bytes` (a multiple of the page size) starting
// at a multiple of `align` (a power of two; at most the page size: any page
// start), or nullptr.
void* map_pages(size_t bytes, size_t align) {
  const size_t extra = align > granule() ? align : 0;
  void* m = mmap(nullptr, bytes + extra, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  if (!extra) return m;
  const auto p = reinterpret_cast<uintptr_t>(m);
  const uintptr_t a = (p + align - 1) & ~uintptr_t(align - 1);
  if (a > p) munmap(m, a - p);
  if (p + extra > a) munmap(reinterpret_cast<void*>(a + bytes), p + extra - a);
  return reinterpret_cast<void*>(a);
}
#endif

int64_t default_limit() {
  if (const char* e = std::getenv("MOBILENET_EXT_CPU_CACHE_MB")) {
    char* end = nullptr;
    const long long mb = std::strtoll(e, &end, 10);
    TORCH_CHECK_VALUE(end != e && *end == '\0' && mb >= 0,
                      "MOBILENET_EXT_CPU_CACHE_MB must be a whole number of MiB >= 0, got '", e, "'");
    return static_cast<int64_t>(mb) << 20;
  }
  int64_t limit = int64_t(4) << 30;
#if defined(__linux__)
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) limit = std::min<int64_t>(limit, int64_t(pages) * page / 8);
#endif
  return limit;
}

struct Block {
  void* ptr;
  size_t bytes;
};

class OutputCache final : public c10::Allocator {
 public:
  OutputCache() : limit_(default_limit()) {}

  c10::DataPtr allocate(size_t n) override {
    const size_t bytes = round_up(std::max<size_t>(n, 1));
    Block* b = take(bytes);
    if (!b) b = fresh(bytes);
    report(b->ptr, static_cast<int64_t>(b->bytes));
    return {b->ptr, b, &OutputCache::release_ctx, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    std::memcpy(dest, src, count);
  }

  CpuCacheStats stats() {
    std::lock_guard<std::mutex> g(mu_);
    return {limit_, in_use_, cached_, peak_reserved_, hits_, misses_, evictions_};
  }

  int64_t clear() {
    FreeList drop;
    int64_t was;
    {
      std::lock_guard<std::mutex> g(mu_);
      drop.swap(free_);
      by_size_.clear();
      was = cached_;
      cached_ = 0;
    }
    free_blocks(drop);
    return was;
  }

  int64_t set_limit(int64_t bytes) {
    std::list<Block*> drop;
    int64_t was;
    {
      std::lock_guard<std::mutex> g(mu_);
      was = limit_;
      limit_ = std::max<int64_t>(0, bytes);
      evict_locked(0, drop);
    }
    free_blocks(drop);
    return was;
  }

 private:
  using FreeList = std::list<Block*>;  // front: most recently freed

  static size_t round_up(size_t n) { return (n + granule() - 1) / granule() * granule(); }

  // A free block of at least `bytes` and at most 1/8 more, or nullptr. On
  // Linux a larger block is first cut to `bytes`, its tail pages unmapped.
  Block* take(size_t bytes) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = by_size_.lower_bound(bytes);
    if (it == by_size_.end() || it->first > bytes + bytes / 8) {
      ++misses_;
      return nullptr;
    }
    Block* b = *it->second;
    free_.erase(it->second);
    by_size_.erase(it);
    cached_ -= static_cast<int64_t>(b->bytes);
#if defined(__linux__)
    if (b->bytes > bytes) {
      munmap(static_cast<char*>(b->ptr) + bytes, b->bytes - bytes);
      b->bytes = bytes;
    }
#endif
    in_use_ += static_cast<int64_t>(b->bytes);
    ++hits_;
    return b;
  }

  static void* system_alloc(size_t bytes) {
    const size_t align = bytes >= kHugePageMinBytes ? kHugePageBytes : 64;
#if defined(__linux__)
    return map_pages(bytes, align);
#else
    void* p = nullptr;
    return posix_memalign(&p, align, bytes) == 0 ? p : nullptr;
#endif
  }

  static void system_free(Block* b) {
#if defined(__linux__)
    munmap(b->ptr, b->bytes);
#else
    std::free(b->ptr);
#endif
  }

  Block* fresh(size_t bytes) {
    void* p = system_alloc(bytes);
    if (p == nullptr) {
      // give the free buffers back and try once more before failing
      clear();
      p = system_alloc(bytes);
      TORCH_CHECK(p != nullptr, "mobilenet_ext: out of memory allocating an output of ", bytes, " bytes");
    }
    advise_huge_pages(p, bytes);
    {
      std::lock_guard<std::mutex> g(mu_);
      in_use_ += static_cast<int64_t>(bytes);
      peak_reserved_ = std::max(peak_reserved_, in_use_ + cached_);
    }
    return new Block{p, bytes};
  }

  static void advise_huge_pages(void* ptr, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (bytes < kHugePageMinBytes || huge_pages_off()) return;
    const auto p = reinterpret_cast<uintptr_t>(ptr);
    const uintptr_t a = (p + kHugePageBytes - 1) & ~uintptr_t(kHugePageBytes - 1);
    const uintptr_t e = (p + bytes) & ~uintptr_t(kHugePageBytes - 1);
    if (e <= a) return;
    if (madvise(reinterpret_cast<void*>(a), e - a, MADV_HUGEPAGE) != 0) return;
    // Fault the huge pages in here, on one thread, before the parallel
    // kernel writes: when several threads fault in the same fresh region at
    // once the kernel serialises them behind huge-page allocation and
    // zeroing (measured: [32,144,56,56] 3x3 forward at 2 threads, 121 ms
    // with concurrent faults, 14 ms pre-faulted). The output is overwritten.
    const bool timed = huge_pages_mode() == HugePages::Adaptive;
    for (uintptr_t q = a; q < e; q += kHugePageBytes) {
      const auto t0 = timed ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
      *reinterpret_cast<volatile char*>(q) = 0;
      if (!timed || std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
                            .count() <= kSlowHugeFaultNs)
        continue;
      // slow: no more huge pages, from the next page of this buffer on
      g_huge_pages_slow.store(true, std::memory_order_relaxed);
      const uintptr_t next = q + kHugePageBytes;
      if (next < e) madvise(reinterpret_cast<void*>(next), e - next, MADV_NOHUGEPAGE);
      break;
    }
#else
    (void)ptr;
    (void)bytes;
#endif
  }

  static void release_ctx(void* ctx);

  void release(Block* b) {
    report(b->ptr, -static_cast<int64_t>(b->bytes));
    FreeList drop;
    {
      std::lock_guard<std::mutex> g(mu_);
      in_use_ -= static_cast<int64_t>(b->bytes);
      if (static_cast<int64_t>(b->bytes) <= limit_) {
        free_.push_front(b);
        by_size_.emplace(b->bytes, free_.begin());
        cached_ += static_cast<int64_t>(b->bytes);
        evict_locked(0, drop);
      } else {
        drop.push_back(b);
      }
    }
    free_blocks(drop);
  }

  // Moves the oldest free blocks to `drop` until cached_ + extra <= limit_.
  void evict_locked(int64_t extra, FreeList& drop) {
    while (!free_.empty() && cached_ + extra > limit_) {
      Block* b = free_.back();
      auto range = by_size_.equal_range(b->bytes);
      for (auto it = range.first; it != range.second; ++it)
        if (*it->second == b) {
          by_size_.erase(it);
          break;
        }
      free_.pop_back();
      cached_ -= static_cast<int64_t>(b->bytes);
      ++evictions_;
      drop.push_back(b);
    }
  }

  static void free_blocks(FreeList& drop) {
    for (Block* b : drop) {
      system_free(b);
      delete b;
    }
    drop.clear();
  }

  void report(void* ptr, int64_t delta) {
    if (!c10::memoryProfilingEnabled()) return;
    int64_t in_use, reserved;
    {
      std::lock_guard<std::mutex> g(mu_);
      in_use = in_use_;
      reserved = in_use_ + cached_;
    }
    c10::reportMemoryUsageToProfiler(ptr, delta, static_cast<size_t>(in_use), static_cast<size_t>(reserved),
                                     c10::Device(c10::DeviceType::CPU));
  }

  std::mutex mu_;
  int64_t limit_;
  FreeList free_;
  std::multimap<size_t, FreeList::iterator> by_size_;
  int64_t in_use_ = 0, cached_ = 0, peak_reserved_ = 0;
  int64_t hits_ = 0, misses_ = 0, evictions_ = 0;
};

// Never destroyed: tensors may be freed during static destruction at exit.
OutputCache& cache() {
  static OutputCache* c = new OutputCache();
  return *c;
}

void OutputCache::release_ctx(void* ctx) { cache().release(static_cast<Block*>(ctx)); }

}  // namespace

at::Tensor empty_cpu_output(at::IntArrayRef sizes, const at::TensorOptions& opts) {
  const auto dtype = c10::typeMetaToScalarType(opts.dtype());
  int64_t numel = 1;
  for (int64_t d : sizes) numel *= d;
  if (numel * static_cast<int64_t>(c10::elementSize(dtype)) < kCachedMinBytes) return at::empty(sizes, opts);
  return at::detail::empty_generic(sizes, &cache(), c10::DispatchKeySet(c10::DispatchKey::CPU), dtype,
                                   opts.memory_format_opt());
}

CpuCacheStats cpu_cache_stats() { return cache().stats(); }
int64_t cpu_cache_clear() { return cache().clear(); }
int64_t cpu_cache_set_limit(int64_t bytes) { return cache().set_limit(bytes); }

}  // namespace glue
}  // namespace mnx
