"""Shared helpers for the pytest suite: reference computations in float64."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def make_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """Return x (4-D) as NCHW-contiguous, channels_last or a non-contiguous
    view with the same values."""
    if layout == "nchw":
        return x.contiguous()
    if layout == "nhwc":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "strided":
        # a view with a non-unit innermost stride
        big = torch.zeros(*x.shape[:3], x.shape[3] * 2, dtype=x.dtype, device=x.device)
        big[..., ::2] = x
        v = big[..., ::2]
        assert not v.is_contiguous() and not v.is_contiguous(memory_format=torch.channels_last)
        return v
    raise ValueError(layout)


def assert_close(got: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype, what: str = "") -> None:
    """float64 results must match to ~1e-10; float32 ones to 1e-4 of the
    reference's scale (fp32 accumulation over at most a few thousand terms)."""
    assert got.shape == ref.shape, f"{what}: shape {tuple(got.shape)} != {tuple(ref.shape)}"
    scale = 1.0 + (ref.abs().max().item() if ref.numel() else 0.0)
    if dtype == torch.float64:
        tol = 1e-10 * scale
    else:
        tol = 1e-4 * scale
    torch.testing.assert_close(got.to(torch.float64), ref.to(torch.float64), rtol=0, atol=tol, msg=lambda m: f"{what}: {m}")


def conv_reference(x, w, b, stride, padding, dilation, groups, grad_out=None):
    """F.conv2d in float64 and, when grad_out is given, its gradients
    (input, weight, bias)."""
    x64 = x.detach().to(torch.float64).requires_grad_(True)
    w64 = w.detach().to(torch.float64).requires_grad_(True)
    b64 = None if b is None else b.detach().to(torch.float64).requires_grad_(True)
    y = F.conv2d(x64, w64, b64, stride, padding, dilation, groups)
    if grad_out is None:
        return y.detach()
    inputs = [x64, w64] + ([b64] if b64 is not None else [])
    grads = torch.autograd.grad(y, inputs, grad_out.to(torch.float64))
    gb = grads[2] if b64 is not None else None
    return y.detach(), grads[0], grads[1], gb


def torchvision_eval_model(name: str, seed: int = 0) -> torch.nn.Module:
    """torchvision model ``name`` with random weights in eval mode, its
    BatchNorm running statistics randomised too (so folding them matters)."""
    import torchvision

    torch.manual_seed(seed)
    m = getattr(torchvision.models, name)().eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.3, 0.3)
            mod.running_var.uniform_(0.5, 1.5)
    return m
