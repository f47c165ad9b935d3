// MNX_HD marks a function of the torch-free headers that runs on the host
// and, when nvcc compiles it, on the device too (__host__ __device__,
// force-inlined); plain `inline` for host compilers.
#pragma once

// MNX_UNROLL asks nvcc to unroll the loop that follows (fully, where its
// trip count is a compile-time constant after inlining); nothing for host
// compilers.
#if defined(__CUDACC__)
#define MNX_HD __host__ __device__ __forceinline__
#define MNX_UNROLL _Pragma("unroll")
#else
#define MNX_HD inline
#define MNX_UNROLL
#endif
