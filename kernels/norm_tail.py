"""The tail of an RMSNorm rebuilt to a wider dtype in backward, ``(w * (x * rstd).to(half)).to(wide)``: the
plain-PyTorch reference and a Triton kernel that reads ``x`` once and writes the result once, with torch's bits.

Why: peft casts a LoRA projection's input to its fp32 adapters' dtype, and autograd keeps that fp32 copy for
``lora_A``'s weight gradient. Under ``intra_inter`` the copy after a Llama RMSNorm (q/k/v's, gate/up's) is a
recipe: Hugging Face's ``weight * (x32 * rstd).to(bf16)`` replayed and cast to fp32. Even with each cast written
into its op's output (NOTE [Casts into outputs] in lineage.py) that is two broadcasting passes, ``x32 * rstd`` into
bf16 and ``w * h`` into fp32, which torch runs at ~1.4 TB/s on an H200 (0.142 + 0.138 ms at 8192 x 4096,
docs/benchmarks.md session 11): 16 of them a step on 8 Llama-2-7B-shaped layers. The kernel reads ``x32`` (which
the norm's own backward decodes anyway), ``rstd`` and ``w`` and writes the fp32 copy: 8 bytes an element, one
launch instead of two.

Bits: torch multiplies two fp32 values and rounds once to ``half`` (the cast into bf16/fp16); ``w * h`` of two
``half`` tensors is computed in fp32 and rounded to ``half``; the cast to fp32 is exact. The kernel does the same
operations, rounding to nearest even by the bits for bf16 (kernels/swiglu.py's ``_round``), no fp fusion.
"""

from __future__ import annotations

import torch

from . import bitmask, swiglu
from .jit import once
from .launch import launch
from .quant import use_triton

_BLOCK = 1024
_WARPS = 4
_launches: dict = {}


def norm_tail_ref(x: torch.Tensor, rstd: torch.Tensor, w: torch.Tensor, half: torch.dtype,
                  wide: torch.dtype) -> torch.Tensor:
    """``(w * (x * rstd).to(half)).to(wide)`` by torch's own ops (the CPU path and the oracle)."""
    h = (x * rstd).to(half)
    out = w * h
    return out if out.dtype == wide else out.to(wide)


def fusable(x: torch.Tensor, rstd: torch.Tensor, w: torch.Tensor, half: torch.dtype, wide: torch.dtype) -> bool:
    """The kernel's case: fp32 ``x`` (contiguous, ``[..., H]``), fp32 ``rstd`` of shape ``[..., 1]`` (contiguous),
    a contiguous ``[H]`` weight in ``half`` (bf16 or fp16), the result widened to fp32 or left in ``half`` (a LoRA
    branch node's 16-bit input: NOTE [LoRA branch] rule 5), all on one device."""
    if x.dtype != torch.float32 or rstd.dtype != torch.float32 or half not in swiglu.HALVES or w.dtype != half \
            or wide not in (torch.float32, half) or x.dim() < 1:
        return False
    n = x.shape[-1]
    return (w.dim() == 1 and w.shape[0] == n and rstd.shape == x.shape[:-1] + (1,) and x.is_contiguous()
            and rstd.is_contiguous() and w.is_contiguous() and x.device == rstd.device == w.device)


def norm_tail(x: torch.Tensor, rstd: torch.Tensor, w: torch.Tensor, half: torch.dtype, wide: torch.dtype,
              backend: str = "auto") -> torch.Tensor:
    """``(w * (x * rstd).to(half)).to(wide)``: one Triton pass on CUDA (``backend="auto"``) where :func:`fusable`,
    else :func:`norm_tail_ref`; the same values either way. ``backend="triton"`` forces the kernel (on CPU only
    under ``TRITON_INTERPRET=1``), ``"ref"`` the reference."""
    if backend == "ref" or (backend == "auto" and not use_triton(x)) or not fusable(x, rstd, w, half, wide):
        return norm_tail_ref(x, rstd, w, half, wide)
    return norm_tail_triton(x, rstd, w, half, out_dtype=wide)


def norm_tail_triton(x: torch.Tensor, rstd: torch.Tensor, w: torch.Tensor, half: torch.dtype,
                     keep: torch.Tensor | None = None, scale: float = 1.0,
                     out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The kernel path of :func:`norm_tail` (the caller checks :func:`fusable`); the result is ``out_dtype``, fp32
    or ``half`` (the values are ``half``'s either way). With ``keep`` (a dropout mask packed in ``x``'s row-major
    order, kernels/bitmask.py; fp32 results only) the result is dropped as it is written: ``out * keep * scale``,
    the bits of ``bitmask.apply`` on the undropped result, one pass instead of two."""
    _build()
    out = torch.empty(x.shape, dtype=out_dtype, device=x.device)
    n = x.shape[-1]
    rows = x.numel() // n if n else 0
    if rows:
        drop = keep is not None
        narrow = out_dtype != torch.float32
        meta = {"KIND": swiglu.HALVES.index(half), "DROP": drop, "NARROW": narrow, "BLOCK": _BLOCK,
                "num_warps": _WARPS, "enable_fp_fusion": False}
        launch(_norm_tail_kernel, (rows, -(-n // _BLOCK)), _launches.setdefault((meta["KIND"], drop, narrow), {}),
               (x, rstd, w, out, keep if drop else x, float(scale), n), meta)
    return out


# ------------------------------------------------------------------------------------------ Triton kernel
# A plain function until :func:`_build` (kernels/jit.py): the package imports without triton.
tl = None
_round = None  # kernels/swiglu.py's jitted rounding to a 16-bit dtype, bound by _build
_as_half = None  # kernels/swiglu.py's jitted exact narrowing of such a value, bound by _build
_bit = None  # kernels/bitmask.py's jitted bit read, bound by _build


def _norm_tail_kernel(x_ptr, r_ptr, w_ptr, o_ptr, p_ptr, scale, N, KIND: tl.constexpr, DROP: tl.constexpr,
                      NARROW: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = cols < N
    r = tl.load(r_ptr + row)
    x = tl.load(x_ptr + row * N + cols, mask=m, other=0.0)
    w = tl.load(w_ptr + cols, mask=m, other=0.0).to(tl.float32)
    h = _round(x * r, KIND)
    y = _round(w * h, KIND)
    if DROP:
        y = y * _bit(p_ptr, row * N + cols, m).to(tl.float32) * scale
    if NARROW:
        y = _as_half(y, KIND)
    tl.store(o_ptr + row * N + cols, y, mask=m)


@once
def _build() -> None:
    bitmask._build()
    globals()["_bit"] = bitmask._bit
    swiglu.build_with_round(globals(), ("_norm_tail_kernel",))
