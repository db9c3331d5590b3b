"""Dropout masks as bits: a bool mask packed eight elements to a byte, unpacked, and applied to dropout's input
(``x * keep * scale``) straight from the bits; one Triton pass each on CUDA, plain PyTorch elsewhere.

Why: peft's ``lora_dropout`` gives every LoRA projection a bool mask a token and channel, which the ``bitmask``
codec packs (hyclora_hooks/codecs/bitmask.py), and a dropped input that ``intra_inter`` rebuilds from its input and
that mask (NOTE [Dropout recipe] in hyclora_hooks/lineage.py). In plain PyTorch the pack is three passes (a multiply
of int64 words, a shift, a narrowing copy: 20.7 us for a 4096 x 4096 mask on an H200 where a copy of the mask
takes 5.7), the unpack two (a broadcast ``&`` and a compare, ~56 us), and the rebuild two more on a decoded mask
(``x * mask`` through ATen's unvectorized kernel for mixed dtypes, then ``* scale``: ~115 us for fp32 x); 53 masks
a step on 8 Llama-2-7B-shaped layers (docs/benchmarks.md session 30).

Layout: element ``i`` of the mask's row-major order is bit ``i % 8`` of byte ``i // 8``; the last byte's unused
bits are zero.

Bits: packing and unpacking are exact. ``apply`` computes ``x * keep * scale`` in fp32 with ``keep`` 0.0 or 1.0,
two multiplies in that order, as CUDA's dropout and the replayed ``x * mask * scale`` do: the same values, signed
zeros and NaNs (``inf * 0``) included. A 16-bit ``x`` is widened first, exactly, as peft's cast to its fp32
adapters' dtype does before the dropout.
"""

from __future__ import annotations

import torch

from . import jit
from .launch import launch
from .quant import use_triton

# Eight 0/1 bytes read as one little-endian int64 ``w`` (byte i at bit 8i): in ``w * _GATHER`` byte i's bit lands
# at bit 56 + i, every other product bit below 56 or past 64 (wrapped off), at distinct places, so no carry reaches
# the top byte, which is the packed byte (the reference pack: one multiply a word, 7x faster on an H200 than a
# multiply by each bit's weight and a sum of bytes; session 29).
_GATHER = 0x0102040810204080
_WEIGHTS: dict = {}  # device -> the bit of each of a byte's eight elements, uint8 (the reference unpack)

_FLOATS = (torch.float32, torch.bfloat16, torch.float16)  # what ``apply`` reads
_BYTES = 1024  # bytes a pack program writes
_BLOCK = 4096  # elements an unpack or apply program writes
_WARPS = 4
_launches: dict = {}


def packed_size(numel: int) -> int:
    return -(-numel // 8)


# ------------------------------------------------------------------------------------------- references
def pack_ref(flat: torch.Tensor) -> torch.Tensor:
    """A 1-D bool tensor packed to ``ceil(n / 8)`` bytes, by torch's ops."""
    n = flat.numel()
    if n % 8 or flat.storage_offset() % 8:  # whole, aligned words: a fresh buffer padded with zeros
        flat = torch.cat((flat, flat.new_zeros(-n % 8)))
    return ((flat.view(torch.int64) * _GATHER) >> 56).to(torch.uint8)


def unpack_ref(packed: torch.Tensor, numel: int) -> torch.Tensor:
    """``numel`` bools from packed bytes, by torch's ops."""
    w = _WEIGHTS.get(packed.device)
    if w is None:
        w = _WEIGHTS[packed.device] = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8,
                                                   device=packed.device)
    return ((packed.unsqueeze(1) & w) != 0).view(-1)[:numel]


def apply_ref(x: torch.Tensor, packed: torch.Tensor, scale: float) -> torch.Tensor:
    """``x.float() * keep * scale`` with ``keep`` the unpacked bits in ``x``'s shape (row-major), by torch's ops."""
    return x.float() * unpack_ref(packed, x.numel()).view(x.shape) * scale


# ------------------------------------------------------------------------------------------- entry points
def pack(mask: torch.Tensor) -> torch.Tensor:
    """A bool tensor's row-major elements packed to ``ceil(n / 8)`` bytes (a contiguous mask is not copied)."""
    flat = mask.reshape(-1)
    if not use_triton(flat) or not flat.is_contiguous():
        return pack_ref(flat)
    _build()
    n = flat.numel()
    out = torch.empty(packed_size(n), dtype=torch.uint8, device=flat.device)
    if n:
        _run(_pack_kernel, "pack", out.numel(), _BYTES, n, (flat.view(torch.uint8), out, n, out.numel()), "BYTES")
    return out


def unpack(packed: torch.Tensor, numel: int) -> torch.Tensor:
    """``numel`` bools (1-D) from bytes :func:`pack` wrote."""
    if not use_triton(packed):
        return unpack_ref(packed, numel)
    _build()
    out = torch.empty(numel, dtype=torch.bool, device=packed.device)
    if numel:
        _run(_unpack_kernel, "unpack", numel, _BLOCK, numel, (packed, out.view(torch.uint8), numel), "BLOCK")
    return out


def apply_fits(x: torch.Tensor, packed: torch.Tensor) -> bool:
    """The kernel's case for :func:`apply`: contiguous fp32, bf16 or fp16 ``x`` with ``ceil(numel / 8)`` packed
    bytes beside it on one CUDA device."""
    return (x.dtype in _FLOATS and x.is_contiguous() and packed.dtype == torch.uint8
            and packed.numel() == packed_size(x.numel()) and packed.device == x.device and use_triton(x))


def apply(x: torch.Tensor, packed: torch.Tensor, scale: float) -> torch.Tensor:
    """Dropout's fp32 output again, ``x.float() * keep * scale``, from its input (fp32, or 16-bit widened in the
    same pass: peft's fp32 copy of a LoRA input) and its packed keep-mask; one pass where :func:`apply_fits`, else
    the reference."""
    if not apply_fits(x, packed):
        return apply_ref(x, packed, scale)
    _build()
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    n = x.numel()
    if n:
        _run(_apply_kernel, "apply", n, _BLOCK, n, (x, packed, out, n, float(scale)), "BLOCK")
    return out


def _run(kernel, name: str, n: int, per_program: int, elements: int, args: tuple, size_name: str) -> None:
    """``n`` outputs, ``per_program`` a program; element offsets in int64 where ``elements`` (and the last
    program's overhang) pass int32."""
    int64 = elements + 8 * per_program > 2**31 - 1
    launch(kernel, (-(-n // per_program),), _launches.setdefault((name, int64), {}), args,
           {"INT64": int64, size_name: per_program, "num_warps": _WARPS})


# ------------------------------------------------------------------------------------------ Triton kernels
# Plain functions until :func:`build` (kernels/jit.py): the package imports without triton.
tl = None


def _pack_kernel(m_ptr, o_ptr, N, NB, INT64: tl.constexpr, BYTES: tl.constexpr):
    pid = tl.program_id(0)
    if INT64:
        pid = pid.to(tl.int64)
    b = pid * BYTES + tl.arange(0, BYTES)
    lane = tl.arange(0, 8)
    e = b[:, None] * 8 + lane[None, :]
    v = tl.load(m_ptr + e, mask=e < N, other=0).to(tl.int32)
    tl.store(o_ptr + b, tl.sum(v << lane[None, :], axis=1).to(tl.uint8), mask=b < NB)


def _bit(p_ptr, e, m):
    """Bit ``e % 8`` of packed byte ``e // 8`` (0 or 1, int32) for each element offset ``e`` where ``m``."""
    byte = tl.load(p_ptr + (e >> 3), mask=m, other=0).to(tl.int32)
    return (byte >> (e & 7).to(tl.int32)) & 1


def _unpack_kernel(p_ptr, o_ptr, N, INT64: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    if INT64:
        pid = pid.to(tl.int64)
    e = pid * BLOCK + tl.arange(0, BLOCK)
    m = e < N
    tl.store(o_ptr + e, _bit(p_ptr, e, m).to(tl.uint8), mask=m)


def _apply_kernel(x_ptr, p_ptr, o_ptr, N, scale, INT64: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    if INT64:
        pid = pid.to(tl.int64)
    e = pid * BLOCK + tl.arange(0, BLOCK)
    m = e < N
    x = tl.load(x_ptr + e, mask=m, other=0.0).to(tl.float32)
    tl.store(o_ptr + e, x * _bit(p_ptr, e, m).to(tl.float32) * scale, mask=m)


@jit.once
def _build() -> None:
    """Jit this module's kernels and helpers, once (kernels/norm_tail.py binds ``_bit`` too)."""
    jit.build(globals(), ("_bit", "_pack_kernel", "_unpack_kernel", "_apply_kernel"))
