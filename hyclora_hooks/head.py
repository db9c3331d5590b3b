"""The loss head's gradient formed in the forward (NOTE [Fused head]).

NOTE [Fused head]
  Cross-entropy keeps ``log_softmax(logits)``: fp32, tokens x vocab (1 GiB at 8192 tokens and 32000 words), the
  largest tensor of a LoRA step. The ``inter`` recipes rebuild it in backward from the lm_head's input (one more
  lm_head matmul and log-softmax a step: ~1.5% of a Llama-2-7B-shaped step's GPU work, docs/benchmarks.md session
  30). Where a policy sets ``fuse_head``, the engine instead forms the loss's gradient with respect to the lm_head's
  input ``h`` while the forward runs and keeps that (``h``'s size, bf16 for a bf16 model), as Liger-Kernel's fused
  linear cross-entropy does; backward then only scales it. The backward's own head work (the log-softmax backward,
  the cast, the matmul with the head's weight) moves into the forward and the rebuild goes.
  1. Only a call whose output is a scalar, and whose only differentiable input on the way back to ``h`` is ``h``
     (every path of its autograd graph from the op's input ends at ``h``'s edge; no leaf that requires grad, such
     as a LoRA'd or trainable head, within 64 nodes), is taken: the gradient it forms is then the whole gradient the
     loss sends anywhere. ``h`` is the input of the model's output embedding (``get_output_embeddings()``) in this
     forward.
  2. The gradient is torch's own: the op runs as called (its saved tensors under identity hooks, so nothing is
     compressed), then ``torch.autograd.grad(loss, h)`` runs the graph's own backward nodes, the ones a backward
     would run, with an incoming gradient of one. The graph is retained: the logits, returned to the caller, can
     still be backpropagated through.
  3. Backward multiplies the kept gradient by the incoming one. Plain autograd scales before it rounds the
     logits' gradient to the model's dtype, so the two agree bit for bit where the incoming gradient is a power of
     two (``loss.backward()`` on a mean loss: one), and otherwise to within that rounding (Hugging Face's
     ``num_items_in_batch`` division, gradient accumulation by a factor that is not a power of two).
  4. Hooks on the graph between the loss and ``h`` (a tensor hook on the logits, a module's backward hook) would
     run in the forward, with that gradient of one: a caller who registers them should not set ``fuse_head``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

_MAX_NODES = 64  # the head's graph is a handful of nodes (view, cast, view, mm, view); more means a model's body


def output_linear(root: nn.Module) -> nn.Module | None:
    """``root.get_output_embeddings()`` (peft models forward it to the model they wrap), or None."""
    get = getattr(root, "get_output_embeddings", None)
    if not callable(get):
        return None
    try:
        head = get()
    except (AttributeError, NotImplementedError):
        return None
    return head if isinstance(head, nn.Module) else None


def only_through(node: Any, h: torch.Tensor) -> bool:
    """Does every path back from ``node`` end at ``h``'s own edge, with no leaf that requires grad (rule 1)?"""
    stop, nr = h.grad_fn, h.output_nr
    seen, todo, reached = {node}, [node], False
    while todo:
        n = todo.pop()
        if n is stop:
            return False  # the op's input is h itself: nothing to fuse (and no edge number to check)
        for nxt, k in n.next_functions:
            if nxt is None:
                continue
            if nxt is stop:
                if k != nr:
                    return False  # another output of h's node: its gradient would be left out
                reached = True
                continue
            if type(nxt).__name__ == "AccumulateGrad":
                return False
            if nxt not in seen:
                if len(seen) >= _MAX_NODES:
                    return False
                seen.add(nxt)
                todo.append(nxt)
    return reached


def _scalar_call(args: tuple, kwargs: dict) -> bool:
    """A ``cross_entropy(input, target, ...)`` call that returns a scalar: reduced by mean or sum, by keywords."""
    return (len(args) <= 2 and kwargs.get("reduction", "mean") in ("mean", "sum")
            and kwargs.get("size_average") is None and kwargs.get("reduce") is None)


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


class _ScaledGrad(torch.autograd.Function):
    """The loss's value, with the gradient kept for ``h`` scaled by the incoming one in backward (rule 3)."""

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, value: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(grad)
        return value.clone()

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple:
        (grad,) = ctx.saved_tensors
        return grad * g, None, None


def fused_loss(func: Callable, args: tuple, kwargs: dict, h: torch.Tensor | None,
               keeping: Callable[[torch.Tensor, int], Any]) -> torch.Tensor | None:
    """``func(*args, **kwargs)`` (``cross_entropy`` of the logits) with its gradient for ``h`` formed now, or None
    where rule 1 does not hold (the caller then runs the op as usual). ``keeping(grad, nbytes)`` is a context in which
    the gradient is saved, given the bytes the op itself saved (kept as they are, then dropped with its graph): the
    engine keeps the gradient exactly and counts those bytes as what plain autograd would hold (rule 2)."""
    x = args[0] if args else kwargs.get("input")
    if (h is None or not torch.is_grad_enabled() or not _scalar_call(args, kwargs) or not isinstance(x, torch.Tensor)
            or x.grad_fn is None or h.grad_fn is None or not only_through(x.grad_fn, h)):
        return None
    saved: dict[int, int] = {}  # the op's saved storages, by address: their bytes

    def note(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return t.detach()  # an output saved as itself would hold its own node: a cycle that outlives the step

    with torch.autograd.graph.saved_tensors_hooks(note, _same):
        loss = func(*args, **kwargs)
    if loss.grad_fn is None:
        return loss
    (grad,) = torch.autograd.grad(loss, h, retain_graph=True)
    with keeping(grad, sum(saved.values())):
        return _ScaledGrad.apply(h, loss.detach(), grad)
