"""peft's LoRA sum as one autograd node (NOTE [LoRA sum]).

NOTE [LoRA sum]
  A peft LoRA linear with fp32 adapters (peft's default for a 16-bit model) ends its forward with
  ``(base + lora_B(lora_A(x)) * scaling).to(base.dtype)``: three elementwise passes over its output and three
  autograd nodes, whose backward takes three more. On the benchmark's Llama that was 44 bytes an element of every
  projection's output, q to down, a step (docs/benchmarks.md session 40). A lean body (NOTE [Replay units] rule
  10 in units.py) whose branch is not one node with the sum already (NOTE [LoRA branch] in lora_branch.py: behind
  dropout, say), and a LoRA linear's forward in a checkpointed layer (NOTE [Region sums] in region_sums.py), ends
  with :func:`apply` instead, where ``kernels.lora_sum.fits``: one node, one pass forward
  (``kernels.lora_sum.lora_sum``) and one backward (``scaled_grad`` for the adapter branch; the base's gradient is
  the incoming one), with torch's bits both ways, so gradients are the deciding copy's (peft's own forward) bit for
  bit.
  1. Only for exactly one active adapter (peft sums several in fp32 and casts once: no fused pass does that), an
     fp32 branch (16-bit adapters round the product first), a Python number as scaling, and plain contiguous
     tensors of one shape on the CPU or the current CUDA device (``kernels.lora_sum.fits``); else peft's ops.
  2. The node saves nothing: the sum's packs are none, as with peft's ``mul``, ``add`` and cast (a scalar and
     dtypes), so a replay's pack records are the same either way.
  3. ``FUSED`` off gives peft's three ops back (the A/B of ``benchmarks/experiments/step_exposure.py``).
  4. :func:`apply` calls autograd's C entry point of ``Function.apply`` directly, outside functorch's transforms
     (where the public path is taken): its Python wrapper has nothing to do for this node.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.autograd.function import once_differentiable

from .kernels import lora_sum as _kernels

FUSED = True  # False: a lean body sums as peft does (rule 3)
fits = _kernels.fits


class _LoraSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, base: torch.Tensor, lora: torch.Tensor, scaling: float) -> torch.Tensor:
        ctx.scaling = scaling
        return _kernels.lora_sum(base, lora, scaling)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple:
        base_grad, lora_grad = ctx.needs_input_grad[:2]
        return (grad if base_grad else None, _kernels.scaled_grad(grad, ctx.scaling) if lora_grad else None, None)


# ``Function.apply`` is Python around autograd's C entry point: it binds ``setup_context``'s arguments (none here) and,
# outside functorch's transforms, unwraps dead functorch wrappers (none reach a lean body) before calling it: seven
# Python calls a LoRA linear. Rule 4 calls the C entry point itself, bound to the class as that wrapper does.
_functorch_active = torch._C._are_functorch_transforms_active


def c_apply(fn: type, doc: str | None = None) -> Callable[..., Any]:
    """``fn.apply`` for one of our ``Function`` classes, through the C entry point outside functorch's transforms
    (rule 4's call: this node's, the LoRA branch's and the norm nodes'); one Python frame a call."""
    entry = getattr(super(torch.autograd.Function, fn), "apply", None)

    def apply(*args: Any) -> Any:
        if entry is None or _functorch_active():
            return fn.apply(*args)
        return entry(*args)

    apply.__doc__ = doc
    return apply


apply = c_apply(_LoraSum, """``apply(base, lora, scaling)``: ``(base + lora * scaling).to(base.dtype)`` as one node,
    for tensors that :func:`fits`.""")
