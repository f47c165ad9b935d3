// The replay loop of a recorded forward (mobilenet_ext/_plan.py) in C++:
// a TorchScript custom class, torch.classes.mobilenet_ext.ReplayPlan.
//
// A plan is a list of op calls through the dispatcher (callBoxed), each with
// its arguments fixed at recording (parameters, packed weights, literals)
// except the positions that take the forward's input or an earlier call's
// result; each result is dropped after its last use. The Python loop did the
// same per call with a Python frame, a list copy and pybind's argument
// conversion against the schema (several microseconds per op, 31 ops in a
// mobilenet_v3_small forward); here the arguments are IValues converted once,
// when the plan is built. The ops, their arguments and their order are the
// Python loop's, so the results are bitwise the same.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/custom_class.h>
#include <torch/library.h>

#include <ATen/core/grad_mode.h>

#include <optional>
#include <string>
#include <vector>

namespace mnx {
namespace glue {
namespace {

class ReplayPlan : public torch::CustomClassHolder {
 public:
  // n_vals: result slots; result: the slot returned (-1: the input)
  ReplayPlan(int64_t n_vals, int64_t result) : n_vals_(n_vals), result_(result) {
    TORCH_CHECK(n_vals >= 0 && result >= -1 && result < n_vals, "ReplayPlan: bad slots (n_vals ", n_vals,
                ", result ", result, ")");
  }

  // One call of the op `name`.`overload`: `args` in schema order (the
  // patched positions hold anything), `pos[i]` takes slot `src[i]` (-1: the
  // input), the first return goes to slot `out` (-1: dropped), then the
  // slots in `frees` are released.
  void add_step(const std::string& name, const std::string& overload, c10::List<c10::IValue> args,
                std::vector<int64_t> pos, std::vector<int64_t> src, int64_t out, std::vector<int64_t> frees) {
    auto op = c10::Dispatcher::singleton().findSchemaOrThrow(name.c_str(), overload.c_str());
    const auto& schema = op.schema();
    TORCH_CHECK(args.size() == schema.arguments().size(), "ReplayPlan: ", name, " takes ",
                schema.arguments().size(), " arguments, got ", args.size());
    TORCH_CHECK(pos.size() == src.size(), "ReplayPlan: pos and src differ in length");
    TORCH_CHECK(out >= -1 && out < n_vals_, "ReplayPlan: bad output slot ", out);
    for (size_t i = 0; i < pos.size(); ++i)
      TORCH_CHECK(pos[i] >= 0 && pos[i] < static_cast<int64_t>(args.size()) && src[i] >= -1 && src[i] < n_vals_,
                  "ReplayPlan: bad patch (", pos[i], ", ", src[i], ")");
    for (int64_t f : frees) TORCH_CHECK(f >= 0 && f < n_vals_, "ReplayPlan: bad slot to free ", f);
    TORCH_CHECK(out < 0 || !schema.returns().empty(), "ReplayPlan: ", name, " returns nothing");
    Step s{op, {}, std::move(pos), std::move(src), out, std::move(frees)};
    s.args.reserve(args.size());
    for (const c10::IValue& a : args) s.args.push_back(a);
    steps_.push_back(std::move(s));
  }

  // run() gives None (and runs nothing) unless `t` is still at `version`
  // (not updated in place since the recording) and, with grad mode on, does
  // not require grad.
  void add_guard(const at::Tensor& t, int64_t version) { guards_.push_back({t, version}); }

  std::optional<at::Tensor> run(const at::Tensor& x) {
    const bool grad = at::GradMode::is_enabled();
    for (const Guard& g : guards_) {
      if (g.t._version() != g.version || (grad && g.t.requires_grad())) return std::nullopt;
    }
    std::vector<c10::IValue> vals(static_cast<size_t>(n_vals_));
    torch::jit::Stack stack;
    for (const Step& s : steps_) {
      stack.assign(s.args.begin(), s.args.end());
      for (size_t i = 0; i < s.pos.size(); ++i) stack[s.pos[i]] = s.src[i] < 0 ? c10::IValue(x) : vals[s.src[i]];
      s.op.callBoxed(&stack);
      if (s.out >= 0) vals[s.out] = std::move(stack[0]);
      stack.clear();  // the arguments' references go now, not at the next step
      for (int64_t f : s.frees) vals[f] = c10::IValue();
    }
    if (result_ < 0) return x;
    return vals[result_].toTensor();
  }

  int64_t num_steps() const { return static_cast<int64_t>(steps_.size()); }

 private:
  struct Step {
    c10::OperatorHandle op;
    std::vector<c10::IValue> args;
    std::vector<int64_t> pos, src;
    int64_t out;
    std::vector<int64_t> frees;
  };
  struct Guard {
    at::Tensor t;
    int64_t version;
  };
  int64_t n_vals_, result_;
  std::vector<Step> steps_;
  std::vector<Guard> guards_;
};

}  // namespace
}  // namespace glue
}  // namespace mnx

TORCH_LIBRARY_FRAGMENT(mobilenet_ext, m) {
  m.class_<mnx::glue::ReplayPlan>("ReplayPlan")
      .def(torch::init<int64_t, int64_t>())
      .def("add_step", &mnx::glue::ReplayPlan::add_step)
      .def("add_guard", &mnx::glue::ReplayPlan::add_guard)
      .def("run", &mnx::glue::ReplayPlan::run)
      .def("num_steps", &mnx::glue::ReplayPlan::num_steps);
}
