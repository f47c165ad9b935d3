// The op surface of mobilenet_ext, declared once. Backends register their
// implementations in csrc/glue/{cpu,cuda}_ops.cpp; fake kernels and autograd
// are registered in mobilenet_ext/ops.py.
#include <Python.h>
#include <cstring>
#include <torch/library.h>

#include "cpu/cpu_kernels.h"

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
  m.def(
      "pointwise_conv2d_backward_input(Tensor grad_output, Tensor input, "
      "Tensor weight) -> Tensor");
  m.def(
      "pointwise_conv2d_backward_weight(Tensor grad_output, Tensor input, "
      "Tensor weight) -> Tensor");
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

PyMethodDef kMethods[] = {
    {"cpu_isa", py_cpu_isa, METH_NOARGS,
     "Instruction set of the float32 CPU kernels in use."},
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
