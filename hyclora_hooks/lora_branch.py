"""A lean body's LoRA branch and sum as one autograd node whose backward reads the 16-bit gradient (NOTE
[LoRA branch]).

NOTE [LoRA branch]
  peft keeps a 16-bit model's adapters in fp32: autograd's backward of ``lora_B(lora_A(x.float()))`` and of the sum
  (NOTE [LoRA sum]) writes ``grad * s`` in fp32, runs four skinny fp32 GEMMs over it and the fp32 input, and casts the
  input's gradient back, ~22 ms of a 4x1024 step of 8 Llama-2-7B-shaped layers on an H200, where kernels reading the
  16-bit gradient take ~12 (docs/benchmarks.md session 44). Inside a replayed unit (NOTE [Replay units] rule 10) a
  LoRA linear's branch and sum are instead one node, :class:`_LoraBranch`:
  1. Its forward computes what peft's ops compute: with the same kernels (the cast, the two products, the fused
     sum) where ``FORWARD`` is ``"ref"`` (and on the CPU), so the output has peft's bits; on CUDA by default in one
     kernel pass (rule 6), to within fp32 rounding.
  2. It saves the tensors peft's ops save, in their order, with their shapes, strides, dtypes and ``requires_grad``
     (``lora_A``'s product saves ``Aᵀ`` where the input needs a gradient and the fp32 input where ``A`` does, mat2
     first as torch's ``mm`` does (probed at import); ``lora_B``'s ``Bᵀ`` and ``h``), so a replayed
     unit's packs meet their records (rule 3 there) and the engine stores them as it did; less the adapters' views
     (``PASS_PARAMETERS``): the node holds the adapters itself, and while it saves (``Compressor.lean_node``, set by
     the lean body to :func:`passed_parameters`; ``Compressor.end_lean_node`` after it) a replay passes over that
     many parameter records, each counted as a parameter pack would be (two packs fewer a LoRA linear, ~110 a
     replayed Llama forward of 8 layers: session 45). The fp32 input is made as peft makes it, a cast with a node
     to the input's (a saved leaf that requires grad would be held by its gradient accumulator, which the saved
     tensor keeps, until the backward: every LoRA linear's fp32 input); ``h`` (T x R) is such a leaf, as small as
     its kept entry. Neither is a view here; their records take no view's base (a recipe of earlier entries, a kept
     ``h``).
  3. Its backward (``BACKWARD``): ``"auto"`` runs ``kernels.lora_branch.branch_grads`` on CUDA (two passes over the
     16-bit ``grad``, one over the input; fp32 accumulation: the adapters' gradients equal autograd's to within fp32
     rounding, not bit for bit) and elsewhere the products autograd's backward of peft's ops calls, in its order and
     layouts (``"ref"``: peft's bits, which ``tools/check_replay.py`` compares with the deciding copy; ``"triton"``
     forces the kernels, under ``TRITON_INTERPRET=1`` on the CPU). The base's gradient is the incoming one, and the
     input's reaches the input's node before the base layer's, as peft's branch did (the same sums, in the same order).
  4. Only for :func:`fits`: one active adapter behind ``nn.Identity`` (no dropout), no adapter bias, a 16-bit input
     cast to fp32 adapters (peft's default for a 16-bit model), a contiguous input and adapters, and the fused sum's case
     (``lora_sum.fits``); else the lean body's ops as before. ``ENABLED`` off gives those back.
  5. Its backward reads the input in 16 bits where it can (``NARROW_INPUT``): under an ``inter`` policy the fp32
     input it saves is a recipe that widens a 16-bit tensor (the norm's output, the attention's, SwiGLU's product),
     which the backward decoded in fp32 (4 bytes an element written, then read by the input pass: ~3.9 GB of a
     4x1024 step of the benchmark's model, session 46). While the node saves, the engine counts each replayed recipe
     entry it saves as read ``narrow`` (``Compressor.narrow_input``); an entry whose readers are all such nodes
     (q, k and v share one) decodes as the recipe without its widening (``lineage.narrowed``: the 16-bit value under
     the same views), and the node widens it itself, exactly (a cast of 16-bit values to fp32 is exact): the same
     products, the same bits. An entry any other reader takes (peft's ops in a deciding step or outside a unit, a
     recipe reading it) decodes in fp32 as before, and so does one whose recipe has no such widening.
  6. Its forward (``FORWARD``): ``"auto"`` runs ``kernels.lora_branch.branch_forward`` on CUDA, one launch for the
     two products and the sum (``h`` and the output to within fp32 rounding of peft's, not its bits) where peft's ops
     are four host calls, two of them cuBLAS's (a fifth of a replayed 4x1024 forward's host time on an H200, session
     46); ``"ref"`` and the CPU run peft's ops (rule 1's bits); ``"triton"`` forces the kernel, which widens ``x``
     itself: peft's fp32 copy is made only for the saved input's pack (rule 2), and not at all where rule 7 holds.
  7. With the forward kernel, the node saves ``x`` (a 2-D view, ``requires_grad`` as the copy's) in place of peft's
     fp32 copy where the engine's record of that pack is a recipe widening a 16-bit value that reads op outputs
     only (``Compressor.narrow_save_due``: rule 5's recipes; ``SAVE_16BIT_INPUT``): the pack meets the record as the
     fp32 copy (``Compressor.narrow_save``), stores what it stored, and counts the copy's bytes as saved, a storage
     of its own as each of peft's copies was, so the report does not change; the saved value decodes as rule 5 says
     (16 bits, or the fp32 widening where another reader takes it). The copy cost a cast a LoRA linear (T x I x 6
     bytes of memory traffic, ~7 GB a 4x1024 step of the benchmark's model, and one op's host work). Where the
     record is any other (an intra-only policy's codes of the fp32 copy), the copy is made as before.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from .kernels import lora_branch as _kernels
from .kernels import lora_sum as _sum
from .kernels.quant import use_triton
from .lora_sum import c_apply

ENABLED = True  # False: a lean body's branch as peft's ops, summed by lora_sum (rule 4)
PASS_PARAMETERS = True  # False: the node saves the adapters' views too, as peft's ops (rule 2)
NARROW_INPUT = True  # False: the node's saved input always decodes in fp32 (rule 5)
BACKWARD = "auto"  # rule 3: "auto", "ref" (peft's bits) or "triton"
FORWARD = "auto"  # rule 6: "auto", "ref" (peft's ops and bits) or "triton"
SAVE_16BIT_INPUT = True  # False: with the forward kernel, the fp32 copy is still made for the saved input (rule 7)


def _mm_saves_mat2_first() -> bool:
    """Does ``torch.mm`` save its second operand before its first (rule 2)? Probed on two tiny CPU tensors at import,
    outside any step (the op tracker would count the probe as an op of one)."""
    seen: list = []
    with torch.inference_mode(False), torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(
            lambda t: seen.append(t.shape[1]) or t, lambda t: t):  # (an import inside inference_mode saves nothing)
        torch.mm(torch.ones(2, 2, requires_grad=True), torch.ones(2, 3, requires_grad=True))
    return seen == [3, 2]


_MAT2_FIRST = _mm_saves_mat2_first()


def fits(m: nn.Module, x: torch.Tensor, base: torch.Tensor, a: nn.Module, b: nn.Module, drop: nn.Module,
         scaling: object) -> bool:
    """Rule 4: may this LoRA linear's branch and sum be one node? ``a``, ``b``: its ``lora_A`` / ``lora_B`` linears."""
    if not ENABLED or type(drop) is not nn.Identity or not getattr(m, "cast_input_dtype_enabled", True):
        return False
    pa, pb = a._parameters, b._parameters
    w_a, w_b = pa["weight"], pb["weight"]
    return (pa.get("bias") is None and pb.get("bias") is None and w_a.dtype == w_b.dtype == torch.float32
            and w_a.is_contiguous() and w_b.is_contiguous()  # (the kernels read them row by row)
            and x.dtype in (torch.bfloat16, torch.float16) and type(x) is torch.Tensor and x.is_contiguous()
            and x.device == base.device and x.shape[:-1] == base.shape[:-1]
            and w_a.shape[1] == x.shape[-1] and w_b.shape == (base.shape[-1], w_a.shape[0])
            and _sum.base_fits(base, scaling))


def forward_kernel(x: torch.Tensor) -> bool:
    """Rule 6: does the node's forward run the kernel for input ``x``?"""
    return FORWARD == "triton" or FORWARD == "auto" and use_triton(x)


def saves_16bit_input(x: torch.Tensor, a: torch.Tensor) -> bool:
    """Rule 7: may the node save ``x`` for peft's fp32 copy (its forward kernel does not read the copy; ``a``, the
    ``lora_A`` weight, needs a gradient, so the copy would be saved)? Where the engine's record agrees
    (``Compressor.narrow_save_due``)."""
    return SAVE_16BIT_INPUT and a.requires_grad and torch.is_grad_enabled() and forward_kernel(x)


def passed_parameters(x: torch.Tensor, a: torch.Tensor) -> int:
    """How many views of its adapters peft's products would save that the node does not (rule 2): ``Aᵀ`` where the
    input needs a gradient, ``Bᵀ`` where ``h`` does (the input or ``A``); none with grad off or ``PASS_PARAMETERS``
    off."""
    if not PASS_PARAMETERS or not torch.is_grad_enabled():
        return 0
    return x.requires_grad + (x.requires_grad or a.requires_grad)


class _LoraBranch(torch.autograd.Function):
    @staticmethod
    def forward(ctx, base: torch.Tensor, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scaling: float,
                narrow: bool):
        rg_x, rg_a, rg_b = x.requires_grad, a.requires_grad, b.requires_grad
        rg_h = rg_x or rg_a
        x2 = x.reshape(-1, x.shape[-1])
        kernel, xf = forward_kernel(x), None
        if rg_a or not kernel:  # (the kernel reads x2: the cast is made for lora_A's saved input alone)
            with torch.enable_grad():  # rule 2: the saved tensors' requires_grad as autograd's have it
                # rule 1: peft's cast (a node to x's, as peft's: no data); rule 7: x itself where it stands for it
                xf = x.reshape(x2.shape) if narrow else x2.to(a.dtype)
        if kernel:  # rule 6: one pass
            out, h = _kernels.branch_forward(x2, a, b, base, scaling)
        else:  # rule 1: lora_A's and lora_B's products, the fused sum (of the cast made above: no second one)
            out, h = _kernels.branch_forward_ref(xf, a, b, base, scaling)
        h.requires_grad_(rg_h)  # a leaf: held by its gradient accumulator, as by the kept entry (T x R)
        if PASS_PARAMETERS:  # rule 2: peft's saved tensors less the adapters' views
            first, i = ([xf], 0) if rg_a else ([], None)
            second, j = ([h], len(first)) if rg_b else ([], None)
        else:
            with torch.enable_grad():
                at, bt = a.t(), b.t()  # the parameters' views, as peft's products save them
            first, i = _mm_saves(xf, at, rg_a, rg_x, 0)
            second, j = _mm_saves(h, bt, rg_b, rg_h, len(first))
        ctx.save_for_backward(*first, *second)
        ctx.where = i, j
        ctx.params, ctx.scaling, ctx.x_shape, ctx.x_dtype = (a, b), scaling, x.shape, x.dtype
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple:
        need_base, need_x, need_a, need_b = ctx.needs_input_grad[:4]
        saved = ctx.saved_tensors
        xf, h = (None if i is None else saved[i] for i in ctx.where)  # the parameters' views are not read
        a, b = ctx.params
        s = ctx.scaling
        dx = ga = gb = None
        if need_x or need_a or need_b:
            if BACKWARD == "triton" or BACKWARD == "auto" and use_triton(grad):
                g2 = grad.reshape(-1, grad.shape[-1]).contiguous()
                dx, ga, gb = _kernels.branch_grads(g2, xf.contiguous() if need_a else g2, h if need_b else g2,
                                                   a, b, s, ctx.x_dtype, (need_x, need_a, need_b))
            else:  # (rule 5: a 16-bit input widened as peft's cast did, exactly)
                xf = xf.float() if need_a else xf
                dx, ga, gb = _autograd_products(grad, xf, h, a, b, s, ctx.x_dtype, (need_x, need_a, need_b))
        if dx is not None:
            dx = dx.view(ctx.x_shape)
        return grad if need_base else None, dx, ga, gb, None, None


def _mm_saves(self_: torch.Tensor, mat2: torch.Tensor, need_self: bool, need_mat2: bool, at: int) -> tuple:
    """(what ``torch.mm(self_, mat2)`` saves, in its order: ``self_`` where ``mat2`` needs a gradient (``need_self``),
    ``mat2`` where ``self_`` does (``need_mat2``); ``self_``'s index counted from ``at``, or None)."""
    if not need_self:
        return ([mat2] if need_mat2 else []), None
    if not need_mat2:
        return [self_], at
    return ([mat2, self_], at + 1) if _MAT2_FIRST else ([self_, mat2], at)


def _autograd_products(grad: torch.Tensor, xf: torch.Tensor, h: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                       s: float, x_dtype: torch.dtype, need: tuple) -> tuple:
    """Rule 3's ``"ref"``: the products autograd's backward of peft's ops computes (``MmBackward0``'s for a row-major
    ``self`` and a column-major ``mat2``, the parameters' ``.t()`` undone), in its order: peft's bits."""
    gl = _sum.scaled_grad(grad, s)  # the fused sum's backward for the branch
    gl2 = gl.reshape(-1, gl.shape[-1])
    need_x, need_a, need_b = need
    gb = gl2.t().mm(h) if need_b else None
    dx = ga = None
    if need_x or need_a:
        gh = gl2.mm(b)
        if need_x:
            dx = gh.mm(a).to(x_dtype)
        if need_a:
            ga = gh.t().mm(xf)
    return dx, ga, gb


_apply = c_apply(_LoraBranch)  # (lora_sum.py rule 4)


def apply(base: torch.Tensor, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scaling: float,
          narrow: bool = False) -> torch.Tensor:
    """``(base + lora_B(lora_A(x.float())) * scaling).to(base.dtype)`` as one node, for a call that :func:`fits`;
    ``narrow``: save ``x`` for peft's fp32 copy of it (rule 7, where :func:`saves_16bit_input`)."""
    return _apply(base, x, a, b, scaling, narrow)
