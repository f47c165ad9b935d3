// The activation epilogue, one definition for the CPU kernels (csrc/cpu,
// through cpu_kernels.h) and the CUDA kernels (csrc/cuda, through
// cuda_common.cuh), on the accumulator type (float or double). Torch-free.
//
// NaN-propagating: ReLU / ReLU6 / Hardswish return a NaN input unchanged
// (torch's relu / relu6 / hardswish do the same). An activation value
// outside the enum returns v unchanged.
#pragma once

#include "host_device.h"
#include "params.h"

namespace mnx {

template <typename T>
MNX_HD T apply_activation(T v, Activation act) {
  switch (act) {
    case Activation::None:
      return v;
    case Activation::ReLU:
      return v > T(0) ? v : (v != v ? v : T(0));
    case Activation::ReLU6: {
      if (v != v) return v;
      T r = v > T(0) ? v : T(0);
      return r < T(6) ? r : T(6);
    }
    case Activation::Hardswish: {
      if (v != v) return v;
      T t = v + T(3);
      t = t > T(0) ? t : T(0);
      t = t < T(6) ? t : T(6);
      return v * t / T(6);
    }
  }
  return v;
}

}  // namespace mnx
