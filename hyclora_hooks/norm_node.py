"""A replayed decoder layer's Llama RMSNorms as one autograd node each, one pass forward and one backward (NOTE
[Norm node]).

NOTE [Norm node]
  Hugging Face's ``LlamaRMSNorm`` is eight ops forward and seven nodes of autograd's graph backward, ~36 and ~60 bytes
  of memory traffic an element where one pass each way moves 4 and 6-8 (``kernels/rms_norm.py``), and each op is
  host work; 17 of them a step of the benchmark's model. Inside a replayed decoder layer or MLP (NOTE [Replay units]
  rule 6 in units.py) each such norm runs :func:`lean_norm` instead of its class's forward:
  1. Only a norm whose class's ``forward`` compiles to Llama's (the same bytecode, names and constants: Mistral's and
     Qwen2's copies do), with ``torch`` its module's torch, a frozen weight of the input's dtype and a contiguous
     16-bit input (``kernels.rms_norm.fits``), and only where the step's plan shows the packs Llama's ops make under
     an ``inter`` policy (``Compressor.norm_records_due``): ``pow``'s fp32 copy of the input stored as a recipe
     widening a 16-bit value (NOTE [LoRA branch] rule 7's kind), ``rsqrt``'s output, the product's two saves of
     both (duplicates), the weight. Anything else (another policy, a trainable weight, a miss so far) runs the
     class's forward, as before.
  2. Its forward (``FORWARD``): ``"auto"`` one kernel pass on CUDA (``rstd`` and the output to within fp32 rounding of
     Llama's ops: the squares summed in another order); on the CPU and with ``"ref"``, Llama's own ops (its bits).
  3. The records of Llama's ops are met in their order: the node saves the 16-bit input for the fp32 copy
     (``Compressor.narrow_save``: the pack stands for the copy, accounted as the copy was) and ``rstd`` (a leaf that
     requires grad, as the kept entry holds it); ``Compressor.pass_saves`` then carries out the product's duplicates
     of the two and the weight's record as their packs would, without saved slots (three packs fewer a norm). The
     input's save counts as read narrow, but the recipes of the norm's output (``NormTail``: the LoRA inputs after
     it) read its entry too, so it decodes in fp32, once, as for Llama's ops (NOTE [LoRA branch] rule 5); the kernel
     reads either. ``rstd`` is the value the forward used, which those recipes read too.
  4. Its backward (``BACKWARD``): ``"auto"`` one kernel pass on CUDA (the input's gradient to within fp32 rounding of
     autograd's); on the CPU and with ``"ref"``, autograd's chain through Llama's ops written out
     (``rms_norm_backward_ref``: its bits). No gradient for the weight (frozen: rule 1).
  5. A norm whose input needs no gradient (a first layer's, after a frozen embedding) saves nothing: its forward alone.
  ``ENABLED`` off runs every norm's class forward, as before this NOTE.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from .kernels import rms_norm as _kernels
from .kernels.quant import use_triton
from .lora_sum import c_apply

ENABLED = True  # False: replayed norms run their class's forward (Llama's eight ops)
FORWARD = "auto"  # rule 2: "auto", "ref" (Llama's ops and bits) or "triton"
BACKWARD = "auto"  # rule 4: "auto", "ref" (autograd's chain, its bits) or "triton"

_LLAMAS: dict = {}  # a norm class's forward function -> whether it is Llama's (rule 1), asked once per function


def _is_llamas(fn: object) -> bool:
    """Does ``fn`` compile to transformers' ``LlamaRMSNorm.forward`` (bytecode, names, constants) and read this
    torch?"""
    try:
        from transformers.models.llama.modeling_llama import LlamaRMSNorm
        llama = LlamaRMSNorm.forward.__code__
    except (ImportError, AttributeError):
        return False
    code = getattr(fn, "__code__", None)
    return (code is not None and code.co_code == llama.co_code and code.co_names == llama.co_names
            and code.co_consts == llama.co_consts and fn.__globals__.get("torch") is torch)


def fits(m: nn.Module, x: torch.Tensor) -> bool:
    """Rule 1's checks of the module and its input (the plan's records are the engine's: ``norm_records_due``)."""
    fn = type(m).forward  # (a class's forward set anew is another function: asked again)
    llama = _LLAMAS.get(fn)
    if llama is None:
        llama = _LLAMAS[fn] = _is_llamas(fn)
    w = m._parameters.get("weight")
    return ENABLED and llama and type(x) is torch.Tensor and w is not None and _kernels.fits(x, w)


def _backend(setting: str, t: torch.Tensor) -> str:
    return "triton" if setting == "triton" or setting == "auto" and use_triton(t) else "ref"


class _NormNode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, eps: float, held: list):
        out, rstd = _kernels.rms_norm(x, w, eps, _backend(FORWARD, x))
        rstd.requires_grad_(True)  # rule 3: as Llama's rsqrt output (a leaf, held as its kept entry holds it)
        ctx.save_for_backward(x, rstd)  # (the duplicates and the weight: ``pass_saves``)
        ctx.w = w
        held.append(rstd)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor) -> tuple:
        x, rstd = ctx.saved_tensors
        dx = _kernels.rms_norm_backward(g.contiguous(), x.contiguous(), rstd.detach(), ctx.w, _backend(BACKWARD, g))
        return dx, None, None, None


_apply = c_apply(_NormNode)


def lean_norm(m: nn.Module, x: torch.Tensor, engine) -> torch.Tensor:
    """A replayed body's call of the norm ``m`` (rules 1-5); ``engine``: the step's ``Compressor``."""
    if not fits(m, x):
        return type(m).forward(m, x)
    w, eps = m._parameters["weight"], m.variance_epsilon
    if not (x.requires_grad and torch.is_grad_enabled()):  # rule 5
        return _kernels.rms_norm(x, w, eps, _backend(FORWARD, x))[0]
    if not engine.norm_records_due(x):
        return type(m).forward(m, x)
    engine.narrow_save, engine.narrow_input, held = 1, True, []  # rule 3: the input stands for its fp32 copy
    try:
        out = _apply(x, w, eps, held)
    finally:
        engine.narrow_save, engine.narrow_input = 0, False
    engine.pass_saves(((held[0], False), (x, True), (w, False)))  # rule 3: the duplicates, the weight
    return out
