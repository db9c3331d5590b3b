"""The SwiGLU product ``silu(gate) * up`` rebuilt in backward: the plain-PyTorch reference and a Triton kernel that
writes SiLU's output and the product in one pass (HyC-LoRA's fused SiLU + Hadamard), with torch's bits.

Why: under ``intra_inter`` a Llama MLP's backward reads four rebuilt tensors: the gate (SiLU's input), SiLU's
output, up, and down_proj's LoRA input (the product, which peft upcasts to fp32). The product is read first
(down_proj's backward runs first), and in torch its recipe costs three passes: ``silu`` (read gate, write s),
``mul`` (read s and up, write p) and the cast (read p, write fp32): 16 bytes an element in bf16. The kernel reads
gate and up and writes s and the product in its final dtype: 10 bytes an element, one launch instead of three. The
SiLU output it writes is handed to that entry's other reader (``lineage.SwiGluProduct``), so it is not rebuilt.

Bits: torch computes ``silu`` of a 16-bit or fp32 tensor in fp32 as ``x / (1 + exp(-x))`` (CUDA's ``expf``, IEEE
division) and rounds to the tensor's dtype; ``mul`` multiplies the two fp32 values and rounds once; a cast to a
wider dtype is exact. The kernel runs the same operations: libdevice's ``expf``, ``div_rn``, no fp fusion, round to
nearest even (by the bits for bf16, as the interpreter's own bf16 cast breaks ties differently). Checked bit for bit
against torch on a GPU by ``tools/bench_swiglu.py`` (docs/benchmarks.md); under ``TRITON_INTERPRET=1`` the only
freedom is numpy's ``exp`` against torch's CPU one (tests/test_swiglu.py bounds it).
"""

from __future__ import annotations

import os

import torch

from . import quant
from .jit import build, once
from .quant import use_triton

KINDS = (torch.bfloat16, torch.float16, torch.float32)  # _round's KIND: the index of a dtype here
HALVES = KINDS[:2]  # the 16-bit dtypes: a kernel's KIND for one is its index here too
_BLOCK = 2048
_WARPS = 4


def silu_mul_ref(gate: torch.Tensor, up: torch.Tensor,
                 out_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(silu(gate), (silu(gate) * up).to(out_dtype))`` by torch's own ops (the CPU path and the oracle)."""
    s = torch.nn.functional.silu(gate)
    p = s * up
    return s, p if out_dtype is None or p.dtype == out_dtype else p.to(out_dtype)


def fusable(gate: torch.Tensor, up: torch.Tensor, out_dtype: torch.dtype | None) -> bool:
    """The kernel takes two contiguous tensors of one shape and one float dtype; the product's dtype may only
    widen (a narrowing cast would round twice, which the kernel does not do)."""
    if gate.shape != up.shape or gate.dtype != up.dtype or gate.dtype not in KINDS:
        return False
    if out_dtype is not None and out_dtype not in KINDS:
        return False
    if out_dtype is not None and torch.finfo(out_dtype).bits < torch.finfo(gate.dtype).bits:
        return False
    return gate.is_contiguous() and up.is_contiguous() and gate.device == up.device


def silu_mul(gate: torch.Tensor, up: torch.Tensor, out_dtype: torch.dtype | None = None,
             backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """SiLU's output and the SwiGLU product (cast to ``out_dtype``): one Triton pass on CUDA (``backend="auto"``)
    where :func:`fusable`, else :func:`silu_mul_ref`; the same values either way. ``backend="triton"`` forces the
    kernel (on CPU only under ``TRITON_INTERPRET=1``), ``"ref"`` the reference."""
    if backend == "ref" or (backend == "auto" and not use_triton(gate)) or not fusable(gate, up, out_dtype):
        return silu_mul_ref(gate, up, out_dtype)
    return silu_mul_triton(gate, up, out_dtype)


def silu_mul_triton(gate: torch.Tensor, up: torch.Tensor,
                    out_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel path of :func:`silu_mul` (the caller checks :func:`fusable`)."""
    _build()
    n = gate.numel()
    s = torch.empty_like(gate)
    p = torch.empty(gate.shape, dtype=out_dtype or gate.dtype, device=gate.device)
    if n:
        _silu_mul_kernel[(-(-n // _BLOCK),)](
            gate, up, s, p, n, KIND=KINDS.index(gate.dtype), INT64=n + _BLOCK > 2**31 - 1, BLOCK=_BLOCK,
            num_warps=_WARPS, enable_fp_fusion=False)
    return s, p


# ------------------------------------------------------------------------------------------ Triton kernel
# Plain functions until :func:`_build` (kernels/jit.py): the package imports without triton.
tl = None
libdevice = None


def _round(v, KIND: tl.constexpr):
    """fp32 -> the nearest value of dtype KIND (0 bf16, 1 fp16, 2 fp32), still fp32; NaN stays NaN."""
    if KIND == 0:
        return tl.where(v != v, v, _bf16_nearest(v))  # a NaN's payload could carry into the sign
    if KIND == 1:
        return v.to(tl.float16).to(tl.float32)
    return v


def _as_half(v, KIND: tl.constexpr):
    """An fp32 ``v`` holding a value of dtype KIND (0 bf16, 1 fp16: :func:`_round`'s) as that dtype, exactly: a bf16
    value's bits are the top half of its fp32 bits (the interpreter's cast flushes subnormals)."""
    if KIND == 0:  # an else, not a fall-through: Triton compiles the statements after a static if's return too
        return (v.to(tl.uint32, bitcast=True) >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return v.to(tl.float16)


def _silu_mul_kernel(g_ptr, u_ptr, s_ptr, p_ptr, N, KIND: tl.constexpr, INT64: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    if INT64:
        pid = pid.to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    m = offs < N
    g = tl.load(g_ptr + offs, mask=m, other=0.0).to(tl.float32)
    u = tl.load(u_ptr + offs, mask=m, other=0.0).to(tl.float32)
    s = _round(tl.math.div_rn(g, 1.0 + libdevice.exp(-g)), KIND)
    tl.store(s_ptr + offs, s.to(s_ptr.dtype.element_ty), mask=m)
    p = _round(s * u, KIND)
    tl.store(p_ptr + offs, p.to(p_ptr.dtype.element_ty), mask=m)


class _InterpretedLibdevice:
    """``libdevice`` under ``TRITON_INTERPRET=1``, which does not patch it: its ``exp`` and ``log`` are ``tl.exp`` and
    ``tl.log`` (numpy's)."""

    @staticmethod
    def exp(x):
        return tl.exp(x)

    @staticmethod
    def log(x):
        return tl.log(x)


_bf16_nearest = None  # kernels/quant.py's jitted bf16 rounding, bound by _build (``_round`` calls it)


def build_with_round(namespace: dict, names: tuple[str, ...]) -> None:
    """Jit ``names`` in the kernel module ``namespace`` (kernels/jit.py) after binding its ``_round`` to this
    module's jitted rounding (fp32 -> the nearest value of a dtype, KIND: 0 bf16, 1 fp16, 2 fp32, held in fp32) and
    its ``_as_half`` (such a value as the 16-bit dtype)."""
    _build()
    namespace["_round"], namespace["_as_half"] = _round, _as_half
    build(namespace, names)


@once
def _build() -> None:
    global libdevice, _bf16_nearest
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        libdevice = _InterpretedLibdevice
    else:
        from triton.language.extra import libdevice as _libdevice

        libdevice = _libdevice
    quant._build()  # one bf16 rounding for both kernel modules
    _bf16_nearest = quant._bf16_nearest
    build(globals(), ("_round", "_as_half", "_silu_mul_kernel"))
