"""A LoRA branch's part in its cheap form, ``linear(x.to(dtype), (b * scale).to(dtype))``, alone or added to or
subtracted from a tensor, in one pass: a Triton kernel and the torch ops it replaces (still the path on CPU and for
operands the kernel does not take).

Why: under ``intra_inter`` the value, gate and up tensors are stored as ``t - part`` and rebuilt as
``stored + part`` (NOTE [LoRA part] in ``hyclora_hooks/lineage.py``), ``part`` being peft's branch ``(x·A)·(s·B)``
with ``x·A`` and ``s·B`` cast to ``t``'s 16-bit dtype. In torch that is five calls a part (cast ``x·A``; scale and
cast ``B``; the K = r matmul; the subtraction or sum), ~140 us of an H200 host's time a part more than its
quantize call, for 24 parts a forward on 8 Llama-2-7B-shaped layers (docs/benchmarks.md session 14), and the part
is written and read back once. Here each output tile forms its part in registers (one K = r dot of the rounded
factors) and adds or subtracts it: one launch, ``t`` read once and the result written once.

Values: the factors are rounded as torch rounds them (``x·A`` to the 16-bit dtype; ``b * scale`` an fp32 product
rounded once); the dot sums exact products in fp32 and rounds once to the dtype, as a 16-bit matmul does, in its
own order of the K = r terms; the sum or difference is then computed in fp32 and rounded once, as torch's 16-bit
``add``/``sub`` is. The part alone (mode 0) is the same bits as the part the other modes add or subtract, so a
forward that subtracts it and a backward that materialises it (for a fused decode-and-add) agree. Which path runs
depends only on devices, dtypes and shapes, so a forward and a backward evaluating one part take the same one.
"""

from __future__ import annotations


import torch

from . import jit, rope_part, swiglu
from .jit import build, once
from .launch import launch
from .quant import use_triton

_MODES = {"part": 0, "add": 1, "sub": 2}
_BLOCK_M = 64
_BLOCK_N = 128
_MAX_R = 128  # larger ranks: the factor tiles would not fit registers; torch's path
_WARPS = 4
_launches: dict = {}


def part_ref(x: torch.Tensor, b: torch.Tensor, scale: float, dtype: torch.dtype) -> torch.Tensor:
    """The cheap part by torch's ops (lineage.cheap_branch's value): ``linear(x.to(dtype), (b * scale).to(dtype))``."""
    return torch.nn.functional.linear(x.to(dtype), (b * scale).to(dtype))


def combine_ref(t: torch.Tensor, part: torch.Tensor, subtract: bool) -> torch.Tensor:
    """``t - part`` or ``t + part`` as torch computes it for one 16-bit dtype (fp32, rounded once)."""
    return torch.sub(t, part) if subtract else torch.add(t, part)


def fusable(x: torch.Tensor, b: torch.Tensor, dtype: torch.dtype, t: torch.Tensor | None = None) -> bool:
    """The kernel's case: fp32 factors, ``x`` (..., r) and ``b`` (n, r) contiguous, r <= 128, a 16-bit ``dtype``;
    ``t``, if given, a contiguous (..., n) tensor of ``dtype`` with ``x``'s leading dims; all on one device."""
    if dtype not in swiglu.HALVES or x.dtype != torch.float32 or b.dtype != torch.float32 or x.dim() < 1 \
            or b.dim() != 2:
        return False
    r = x.shape[-1]
    if not (0 < r <= _MAX_R and b.shape[1] == r and x.is_contiguous() and b.is_contiguous() and x.device == b.device):
        return False
    if t is None:
        return True
    return (t.dtype == dtype and t.is_contiguous() and t.shape == x.shape[:-1] + (b.shape[0],)
            and t.device == x.device)


def lora_part(x: torch.Tensor, b: torch.Tensor, scale: float, dtype: torch.dtype,
              backend: str = "auto") -> torch.Tensor:
    """The part (..., n): the kernel on CUDA (``backend="auto"``) where :func:`fusable`, else :func:`part_ref`.
    ``backend="triton"`` forces the kernel where fusable (on CPU only under ``TRITON_INTERPRET=1``)."""
    if (backend == "auto" and not use_triton(x)) or not fusable(x, b, dtype):
        return part_ref(x, b, scale, dtype)
    return _run(None, x, b, scale, dtype, "part")


def lora_combine(t: torch.Tensor, x: torch.Tensor, b: torch.Tensor, scale: float, dtype: torch.dtype,
                 subtract: bool, backend: str = "auto") -> torch.Tensor:
    """``t - part`` (``subtract``) or ``t + part`` in one pass where :func:`fusable` (the same part as
    :func:`lora_part`'s), else by torch's ops."""
    if (backend == "auto" and not use_triton(x)) or not fusable(x, b, dtype, t):
        return combine_ref(t, lora_part(x, b, scale, dtype, backend), subtract)
    return _run(t, x, b, scale, dtype, "sub" if subtract else "add")


def _run(t: torch.Tensor | None, x: torch.Tensor, b: torch.Tensor, scale: float, dtype: torch.dtype,
         mode: str) -> torch.Tensor:
    _build()
    r, n = x.shape[-1], b.shape[0]
    m = x.numel() // r
    out = torch.empty(x.shape[:-1] + (n,), dtype=dtype, device=x.device)
    if m and n:
        block_r = max(16, 1 << (r - 1).bit_length())
        ieee = jit.dots_in_fp32()
        key = (_MODES[mode], swiglu.HALVES.index(dtype), block_r, ieee)  # CAST: _to_half's and _round's KIND
        launch(_lora_part_kernel, (-(-m // _BLOCK_M), -(-n // _BLOCK_N)), _launches.setdefault(key, {}),
               (x, b, out if t is None else t, out, m, n, r, float(scale)),
               dict(MODE=key[0], CAST=key[1], BLOCK_M=_BLOCK_M, BLOCK_N=_BLOCK_N, BLOCK_R=block_r, IEEE=ieee,
                    num_warps=_WARPS))
    return out


# ------------------------------------------------------------------------------------------ Triton kernel
# A plain function until :func:`_build` (kernels/jit.py): the package imports without triton.
tl = None
_to_half = _round = None  # the jitted roundings of kernels/rope_part.py and kernels/swiglu.py, bound by _build


def _lora_part_kernel(x_ptr, b_ptr, t_ptr, o_ptr, M, N, R, scale, MODE: tl.constexpr, CAST: tl.constexpr,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr, IEEE: tl.constexpr):
    # one program: BLOCK_M rows x BLOCK_N columns; part = x_bf16 @ (b * scale)_bf16 ^T, K = R. (Tiles: the fastest
    # of 18 on the H200; programs walking several row tiles with one load of b were no faster: session 19.)
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask, cmask = rows < M, cols < N
    k = tl.arange(0, BLOCK_R)
    kmask = k < R
    x = tl.load(x_ptr + rows[:, None] * R + k[None, :], mask=rmask[:, None] & kmask[None, :], other=0.0)
    b = tl.load(b_ptr + cols[None, :] * R + k[:, None], mask=kmask[:, None] & cmask[None, :], other=0.0)
    x, b = _to_half(x, CAST), _to_half(b * scale, CAST)  # torch's casts: round to nearest even
    if IEEE:
        acc = tl.dot(x.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:  # 16-bit inputs: exact products, fp32 sums
        acc = tl.dot(x, b)
    part = _round(acc, CAST)
    offs = rows[:, None] * N + cols[None, :]
    mask = rmask[:, None] & cmask[None, :]
    if MODE != 0:
        t = tl.load(t_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        part = t + part if MODE == 1 else t - part
        part = _round(part, CAST)
    tl.store(o_ptr + offs, part.to(o_ptr.dtype.element_ty), mask=mask)


@once
def _build() -> None:
    global _to_half, _round
    rope_part._build()
    _to_half, _round = rope_part._to_half, rope_part._round
    build(globals(), ("_lora_part_kernel",))
