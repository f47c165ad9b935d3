// The op surface of mobilenet_ext, declared once. Backends register their
// implementations in csrc/glue/{cpu,cuda}_ops.cpp; fake kernels and autograd
// are registered in mobilenet_ext/ops.py.
#include <Python.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>
#include <torch/library.h>

#include "cpu/cpu_kernels.h"
#include "glue/cpu_output_cache.h"

TORCH_LIBRARY(mobilenet_ext, m) {
  // Depthwise: weight [C*m, 1, kh, kw]; equals F.conv2d(..., groups=C).
  m.def(
      "depthwise_conv2d(Tensor input, Tensor weight, Tensor? bias, "
      "int[2] stride, int[2] padding, int[2] dilation) -> Tensor");
  // Inference form with a fused activation (0 none, 1 relu, 2 relu6,
  // 3 hardswish) applied after the bias.
  m.def(
      "depthwise_conv2d_fused(Tensor input, Tensor weight, Tensor? bias, "
      "int[2] stride, int[2] padding, int[2] dilation, int activation) -> "
      "Tensor");
  m.def(
      "depthwise_conv2d_backward_input(Tensor grad_output, Tensor input, "
      "Tensor weight, int[2] stride, int[2] padding, int[2] dilation) -> "
      "Tensor");
  m.def(
      "depthwise_conv2d_backward_weight(Tensor grad_output, Tensor input, "
      "Tensor weight, int[2] stride, int[2] padding, int[2] dilation) -> "
      "Tensor");
  // Pointwise: weight [C_out, C_in, 1, 1]; equals a 1x1 stride-1 F.conv2d.
  m.def("pointwise_conv2d(Tensor input, Tensor weight, Tensor? bias) -> Tensor");
  // Inference form: act(conv + bias) + residual.
  m.def(
      "pointwise_conv2d_fused(Tensor input, Tensor weight, Tensor? bias, "
      "int activation, Tensor? residual) -> Tensor");
  // Inference with the weight packed once (CPU, float32): packed is
  // pointwise_pack_weight(weight, panel), [ceil(C_out / panel), C_in, panel];
  // the result equals pointwise_conv2d_fused's, bit for bit.
  m.def("pointwise_pack_weight(Tensor weight, int panel) -> Tensor");
  // Dense conv with few input channels (groups = 1, dilation 1; the stem),
  // act(conv + bias); CPU only, inference (no backward). The output in the
  // input's layout, or channels_last with channels_last_output (a fused
  // network's NCHW input reordered as the stem reads it).
  m.def(
      "conv2d_small_cin_fused(Tensor input, Tensor weight, Tensor? bias, "
      "int[2] stride, int[2] padding, int activation, "
      "bool channels_last_output=False) -> Tensor");
  // Its weight and bias gradients (training the stem; CPU only): returns
  // (grad_weight [C_out, C_in, kh, kw], grad_bias [C_out]).
  m.def(
      "conv2d_small_cin_backward_weight(Tensor grad_output, Tensor input, "
      "Tensor weight, int[2] stride, int[2] padding) -> (Tensor, Tensor)");
  // A linear layer on the 1x1 GEMM (the classifier): input [N, in], weight
  // [out, in]; act(input @ weight^T + bias). CPU only, inference. The
  // packed form reads pointwise_pack_weight(weight[:, :, None, None], panel)
  // and gives the same bits.
  m.def("linear_fused(Tensor input, Tensor weight, Tensor? bias, int activation) -> Tensor");
  m.def(
      "linear_packed(Tensor input, Tensor weight, Tensor packed, Tensor? bias, "
      "int activation) -> Tensor");
  m.def(
      "pointwise_conv2d_packed(Tensor input, Tensor weight, Tensor packed, "
      "Tensor? bias, int activation, Tensor? residual) -> Tensor");
  m.def(
      "pointwise_conv2d_backward_input(Tensor grad_output, Tensor input, "
      "Tensor weight) -> Tensor");
  m.def(
      "pointwise_conv2d_backward_weight(Tensor grad_output, Tensor input, "
      "Tensor weight) -> Tensor");
  // Fused BatchNorm + activation (csrc/glue/batchnorm_ops.cpp): returns
  // (y, save_mean, save_invstd); functional, the running statistics are
  // updated by the caller (mobilenet_ext/ops.py).
  m.def(
      "batch_norm_act(Tensor input, Tensor? weight, Tensor? bias, "
      "Tensor? running_mean, Tensor? running_var, bool training, float eps, "
      "int activation) -> (Tensor, Tensor, Tensor)");
  m.def(
      "batch_norm_act_backward(Tensor grad_output, Tensor input, "
      "Tensor? weight, Tensor? bias, Tensor save_mean, Tensor save_invstd, "
      "bool training, int activation) -> (Tensor, Tensor, Tensor)");
  // Squeeze-excitation (csrc/glue/squeeze_excitation_ops.cpp), CPU:
  //   input * gate(fc2(act(fc1(mean over H, W of input))))
  // weight1 [S, C] or [S, C, 1, 1], weight2 [C, S] or [C, S, 1, 1];
  // activation as above, gate 0 hardsigmoid / 1 sigmoid. The backward
  // returns the gradients of (input, weight1, bias1, weight2, bias2), the
  // bias gradients also when a bias is absent.
  m.def(
      "squeeze_excitation(Tensor input, Tensor weight1, Tensor? bias1, "
      "Tensor weight2, Tensor? bias2, int activation, int gate) -> Tensor");
  // In place (inference: no autograd), input *= the same scale.
  m.def(
      "squeeze_excitation_(Tensor(a!) input, Tensor weight1, Tensor? bias1, "
      "Tensor weight2, Tensor? bias2, int activation, int gate) -> ()");
  // A channels_last MobileNet block in one pass (csrc/glue/inverted_residual_ops.cpp),
  // CPU, float32, inference: y = act_p(pointwise(act_d(depthwise(act_e(
  // pointwise(input, expand_weight) + expand_bias)) + dw_bias)) +
  // project_bias) (+ input when residual); expand and project optional
  // (weight and its pointwise_pack_weight form given together), square
  // depthwise kernel, dilation 1. Equals the three ops in that order.
  m.def(
      "inverted_residual_fused(Tensor input, Tensor? expand_weight, Tensor? expand_packed, "
      "Tensor? expand_bias, int expand_activation, Tensor dw_weight, Tensor? dw_bias, "
      "int stride, int padding, int dw_activation, Tensor? project_weight, "
      "Tensor? project_packed, Tensor? project_bias, int project_activation, "
      "bool residual) -> Tensor");
  // The backward from the forward's output and the channel means of its
  // input (squeeze_excitation_means: [N, C], the forward's own means), so
  // autograd keeps the output (which the next layer keeps anyway) instead
  // of the input.
  m.def(
      "squeeze_excitation_backward(Tensor grad_output, Tensor output, Tensor means, "
      "Tensor weight1, Tensor? bias1, Tensor weight2, Tensor? bias2, "
      "int activation, int gate) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("squeeze_excitation_means(Tensor input) -> Tensor");
}

#ifndef MNX_TORCH_VERSION
#define MNX_TORCH_VERSION "unknown"
#endif

namespace {

// The selected family, plus "+avx512" when AVX-512 kernels run inside it.
PyObject* py_cpu_isa(PyObject*, PyObject*) {
  const char* isa = mnx::cpu::selected_isa();
  if (std::strcmp(isa, "avx2") == 0 && mnx::cpu::cpu_use_avx512())
    return PyUnicode_FromString("avx2+avx512");
  return PyUnicode_FromString(isa);
}

// gemm_tile() -> (mr, nr): the float32 GEMM kernel's register tile, the
// panel widths pointwise_conv2d_packed reads in place (NCHW: mr, NHWC: nr);
// (0, 0) for the portable kernel.
PyObject* py_gemm_tile(PyObject*, PyObject*) {
  const auto& k = mnx::cpu::gemm_kernels_f32();
  return Py_BuildValue("(LL)", (long long)k.mr, (long long)k.nr);
}

PyObject* py_cuda_built(PyObject*, PyObject*) {
#ifdef MNX_WITH_CUDA
  Py_RETURN_TRUE;
#else
  Py_RETURN_FALSE;
#endif
}

PyObject* py_torch_version(PyObject*, PyObject*) {
  return PyUnicode_FromString(MNX_TORCH_VERSION);
}

// fma_peak_gflops(threads, seconds) -> (GFLOP/s, isa): the FMA probe
// (cpu/generic/fma_peak.h) on `threads` threads started together, each
// running for about `seconds`; the best of three such runs.
PyObject* py_fma_peak_gflops(PyObject*, PyObject* args) {
  int threads = 1;
  double seconds = 0.05;
  if (!PyArg_ParseTuple(args, "|id", &threads, &seconds)) return nullptr;
  if (threads < 1 || threads > 4096) {
    PyErr_Format(PyExc_ValueError, "fma_peak_gflops: threads must be in [1, 4096], got %d", threads);
    return nullptr;
  }
  if (!(seconds > 0.0 && seconds <= 10.0)) {
    char msg[96];  // PyErr_Format has no float conversion
    std::snprintf(msg, sizeof msg, "fma_peak_gflops: seconds must be in (0, 10], got %g", seconds);
    PyErr_SetString(PyExc_ValueError, msg);
    return nullptr;
  }
  using clock = std::chrono::steady_clock;
  double best = 0.0;
  Py_BEGIN_ALLOW_THREADS
  for (int rep = 0; rep < 3; ++rep) {
    std::atomic<int> ready{0};
    std::vector<int64_t> flops(threads, 0);
    std::vector<float> sink(threads, 0.f);
    clock::time_point t0;
    std::vector<clock::time_point> t1(threads);
    auto body = [&](int t) {
      ready.fetch_add(1);
      while (ready.load() < threads) {
      }
      const clock::time_point start = clock::now();
      if (t == 0) t0 = start;
      int64_t done = 0;
      clock::time_point now;
      do {
        done += mnx::cpu::fma_peak_f32(1 << 14, &sink[t]);
        now = clock::now();
      } while (std::chrono::duration<double>(now - start).count() < seconds);
      flops[t] = done;
      t1[t] = now;
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(body, t);
    body(0);
    for (auto& th : pool) th.join();
    int64_t total = 0;
    clock::time_point end = t1[0];
    for (int t = 0; t < threads; ++t) {
      total += flops[t];
      end = std::max(end, t1[t]);
    }
    const double s = std::chrono::duration<double>(end - t0).count();
    if (s > 0) best = std::max(best, static_cast<double>(total) / s / 1e9);
  }
  Py_END_ALLOW_THREADS
  return Py_BuildValue("(ds)", best, mnx::cpu::fma_peak_isa());
}

// The CPU output cache (glue/cpu_output_cache.cpp). C++ errors (a bad
// MOBILENET_EXT_CPU_CACHE_MB) become ValueError.
template <typename F>
PyObject* cache_call(F f) {
  try {
    return f();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_ValueError, e.what());
    return nullptr;
  }
}

PyObject* py_cpu_cache_stats(PyObject*, PyObject*) {
  return cache_call([] {
    const auto s = mnx::glue::cpu_cache_stats();
    return Py_BuildValue("{sLsLsLsLsLsLsL}", "limit_bytes", (long long)s.limit_bytes, "in_use_bytes",
                         (long long)s.in_use_bytes, "cached_bytes", (long long)s.cached_bytes,
                         "peak_reserved_bytes", (long long)s.peak_reserved_bytes, "hits", (long long)s.hits,
                         "misses", (long long)s.misses, "evictions", (long long)s.evictions);
  });
}

PyObject* py_cpu_cache_clear(PyObject*, PyObject*) {
  return cache_call([] { return PyLong_FromLongLong(mnx::glue::cpu_cache_clear()); });
}

PyObject* py_cpu_cache_set_limit(PyObject*, PyObject* args) {
  long long bytes = 0;
  if (!PyArg_ParseTuple(args, "L", &bytes)) return nullptr;
  if (bytes < 0) {
    PyErr_Format(PyExc_ValueError, "set_cpu_cache_limit: bytes must be >= 0, got %lld", bytes);
    return nullptr;
  }
  return cache_call([bytes] { return PyLong_FromLongLong(mnx::glue::cpu_cache_set_limit(bytes)); });
}

// _same_items(dicts, keys, objs) -> bool: dicts[i].get(keys[i]) is objs[i]
// for every i (the replay's validity check, mobilenet_ext/_plan.py: the
// submodules, parameters and training flags of a recorded forward still in
// place). Identity only: no Python code runs, no object is made.
PyObject* py_same_items(PyObject*, PyObject* args) {
  PyObject *dicts = nullptr, *keys = nullptr, *objs = nullptr;
  if (!PyArg_ParseTuple(args, "O!O!O!", &PyList_Type, &dicts, &PyList_Type, &keys, &PyList_Type, &objs))
    return nullptr;
  const Py_ssize_t n = PyList_GET_SIZE(dicts);
  if (PyList_GET_SIZE(keys) != n || PyList_GET_SIZE(objs) != n) {
    PyErr_SetString(PyExc_ValueError, "_same_items: dicts, keys and objs must have the same length");
    return nullptr;
  }
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* d = PyList_GET_ITEM(dicts, i);
    if (!PyDict_Check(d)) {
      PyErr_Format(PyExc_TypeError, "_same_items: dicts[%zd] is a %s, not a dict", i, Py_TYPE(d)->tp_name);
      return nullptr;
    }
    PyObject* v = PyDict_GetItemWithError(d, PyList_GET_ITEM(keys, i));  // borrowed
    if (v == nullptr && PyErr_Occurred()) return nullptr;
    if (v != PyList_GET_ITEM(objs, i)) Py_RETURN_FALSE;
  }
  Py_RETURN_TRUE;
}

PyMethodDef kMethods[] = {
    {"_same_items", py_same_items, METH_VARARGS,
     "_same_items(dicts, keys, objs) -> bool: dicts[i].get(keys[i]) is objs[i] for every i."},
    {"fma_peak_gflops", py_fma_peak_gflops, METH_VARARGS,
     "fma_peak_gflops(threads=1, seconds=0.05) -> (GFLOP/s, isa): float32 FMA "
     "throughput of the CPU on that many threads."},
    {"cpu_isa", py_cpu_isa, METH_NOARGS,
     "Instruction set of the float32 CPU kernels in use."},
    {"gemm_tile", py_gemm_tile, METH_NOARGS,
     "(mr, nr) of the float32 GEMM kernel: the packed weight panels it reads in place."},
    {"cpu_cache_stats", py_cpu_cache_stats, METH_NOARGS,
     "Counters of the CPU output cache (bytes in use, cached, limit; hits, misses, evictions)."},
    {"cpu_cache_clear", py_cpu_cache_clear, METH_NOARGS,
     "Gives the CPU output cache's free buffers back to the system; returns the bytes released."},
    {"cpu_cache_set_limit", py_cpu_cache_set_limit, METH_VARARGS,
     "Sets the most free bytes the CPU output cache keeps (0: off); returns the previous limit."},
    {"cuda_built", py_cuda_built, METH_NOARGS,
     "Whether the CUDA kernels were compiled in."},
    {"torch_version", py_torch_version, METH_NOARGS,
     "torch version this extension was built against."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C",
                                          "mobilenet_ext native ops", -1,
                                          kMethods};
  return PyModule_Create(&module_def);
}
}
