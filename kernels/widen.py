"""Widening passes of the backward's rebuilds, one Triton pass each with torch's bits: a 16-bit tensor cast to
fp32, and ``op(a, b)`` (mul, add, sub) of two 16-bit tensors rounded to their dtype and written as fp32.

Why: ATen runs an elementwise op whose output dtype is not its inputs' through its unrolled, unvectorized kernel.
On the H200 a bf16 -> fp32 cast of 8192 x 4096 took ~0.099 ms where its bytes take ~0.055 at copy rate, and
``mul(a, b, out=fp32)`` of 8192 x 11008 ~0.255 ms where they take ~0.195 (docs/benchmarks.md session 20). The
backward's recipes make fp32 tensors so: o_proj's LoRA input (SDPA's rebuilt output cast), down_proj's LoRA input
(``(silu(g) * u).to(fp32)`` written into fp32, NOTE [Casts into outputs] in hyclora_hooks/lineage.py) where the
SwiGLU kernel does not write it, and the lm_head replay's logits (``logits.float()``) where kernels/log_softmax.py
does not read them as they are.

Bits: a 16-bit float widens to fp32 exactly. ATen's ``op(a, b, out=fp32)`` of 16-bit ``a`` and ``b`` computes in
fp32, rounds to their dtype, then casts into the output; the kernel does the same, rounding by the bits
(``swiglu._round``: the GPU's nearest even, which the interpreter's own casts do not give).
"""

from __future__ import annotations

import torch

from . import swiglu
from .jit import once
from .launch import launch
from .quant import use_triton

OPS = {"mul": 0, "add": 1, "sub": 2}  # the kernel's OP; -1: the cast alone
_BLOCK = 1024  # 1024 elements a program at 4 warps: the fastest of 5 variants at every case (session 20)
_WARPS = 4
_launches: dict = {}


def fits(dtype: torch.dtype, *tensors: torch.Tensor) -> bool:
    """The kernel's case: one or two tensors of one 16-bit dtype, shape and device, contiguous, on the Triton path
    (CUDA), widened to fp32."""
    a = tensors[0]
    if dtype != torch.float32 or not isinstance(a, torch.Tensor) or a.dtype not in swiglu.HALVES or not use_triton(a):
        return False
    return all(isinstance(t, torch.Tensor) and t.dtype == a.dtype and t.shape == a.shape and t.device == a.device
               and t.is_contiguous() for t in tensors)


def cast(x: torch.Tensor) -> torch.Tensor:
    """``x.to(torch.float32)`` for a tensor that :func:`fits` (the caller checks)."""
    return _run(-1, x, x)


def binary(op: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``op(a, b).to(torch.float32)`` (``op`` in :data:`OPS`) for tensors that :func:`fits` (the caller checks)."""
    return _run(OPS[op], a, b)


def _run(op: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    _build()
    out = torch.empty(a.shape, dtype=torch.float32, device=a.device)
    n = a.numel()
    if n:
        int64 = n + _BLOCK > 2**31 - 1
        kind = swiglu.KINDS.index(a.dtype)
        launch(_widen_kernel, (-(-n // _BLOCK),), _launches.setdefault((op, kind, int64), {}), (a, b, out, n),
               dict(OP=op, KIND=kind, INT64=int64, BLOCK=_BLOCK, num_warps=_WARPS))
    return out


# ------------------------------------------------------------------------------------------ Triton kernel
# A plain function until :func:`_build` (kernels/jit.py): the package imports without triton.
tl = None
_round = None  # kernels/swiglu.py's jitted rounding, bound by _build


def _widen_kernel(a_ptr, b_ptr, o_ptr, N, OP: tl.constexpr, KIND: tl.constexpr, INT64: tl.constexpr,
                  BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    if INT64:
        pid = pid.to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    m = offs < N
    v = tl.load(a_ptr + offs, mask=m, other=0.0).to(tl.float32)
    if OP >= 0:
        w = tl.load(b_ptr + offs, mask=m, other=0.0).to(tl.float32)
        if OP == 0:
            v = v * w
        elif OP == 1:
            v = v + w
        else:
            v = v - w
        v = _round(v, KIND)  # ATen rounds to the inputs' dtype before it casts into the output
    tl.store(o_ptr + offs, v, mask=m)


@once
def _build() -> None:
    swiglu.build_with_round(globals(), ("_widen_kernel",))
