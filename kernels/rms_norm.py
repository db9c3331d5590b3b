"""A Llama-style RMSNorm with a frozen weight, forward and its input's gradient, each one pass over rows: the
plain-PyTorch references (Hugging Face's formula, autograd's chain through it) and Triton kernels.

Why: Hugging Face's ``LlamaRMSNorm`` is ``w * (x32 * rsqrt(mean(x32 ** 2) + eps)).to(half)`` with ``x32 = x.float()``:
eight ops forward, whose passes move ~36 bytes an element (the cast writes 4, ``pow`` reads and writes 4 each, the
mean reads 4, the product reads 4 and writes 4, the cast back reads 4 and writes 2, the weight's product reads and
writes 2), and autograd's backward through them ~60 more, where one pass each way moves 4 (read ``x``, write the
output) and 8 (read the gradient and ``x``, write ``dx``). On the benchmark's model (17 norms of 4096 a step) that is
~10 GB forward and ~17 GB backward at 4096 tokens, against ~1 and ~2. Plain autograd pays it too.

Used by a replayed decoder layer's norms (``hyclora_hooks/norm_node.py``, NOTE [Norm node]). Not yet timed on a
GPU: ``benchmarks/experiments/rms_norm_cost.py`` is the measurement to make; ``tools/check_compile.py`` compiles them
for sm_90 (session 48 found them not compiling, through ``swiglu._as_half``, and fixed that).

Bits: the forward rounds as torch does (``x32 * rstd`` to ``half``, ``w * h`` computed in fp32 and rounded to
``half``), but sums the squares in another order, so ``rstd`` and the output are torch's to within fp32 rounding of
``rstd`` (an output a ``half`` step apart where that moves it past a tie); the backward follows autograd's chain (the
weight's product rounded to ``half``, then ``gy * rstd + 2 x * mean-gradient``) with its sums in another order.
"""

from __future__ import annotations

import torch

from . import swiglu
from .jit import once
from .launch import launch
from .quant import use_triton

MAX_WIDTH = 16384  # a row is one block of registers: wider norms take the reference
_launches: dict = {}


def rms_norm_ref(x: torch.Tensor, w: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(Hugging Face's ``LlamaRMSNorm`` output, the fp32 ``rstd`` it multiplies by, shape ``[..., 1]``), by its ops."""
    x32 = x.to(torch.float32)
    rstd = torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return w * (x32 * rstd).to(x.dtype), rstd


def rms_norm_backward_ref(g: torch.Tensor, x: torch.Tensor, rstd: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The input's gradient as autograd's backward of :func:`rms_norm_ref` forms it (the weight frozen), op by op:
    the weight's product rounded to ``half``, widened; ``rstd``'s gradient ``sum(gy * x32)`` through ``rsqrt`` and
    the mean; the two gradients of ``x32`` summed and cast to ``g``'s dtype."""
    x32 = x.to(torch.float32)
    gy = (g * w).to(torch.float32)
    gv = (gy * x32).sum(-1, keepdim=True) * (-0.5) * rstd.pow(3)
    return (gy * rstd + (gv / x.shape[-1]).expand_as(x32) * 2 * x32).to(g.dtype)


def fits(x: torch.Tensor, w: torch.Tensor) -> bool:
    """The kernels' case: a contiguous 16-bit ``x`` ``[..., H]``, a contiguous ``[H]`` weight of its dtype (no
    gradient), ``H`` at most ``MAX_WIDTH``, one device."""
    return (x.dtype in swiglu.HALVES and w.dtype == x.dtype and x.dim() >= 1 and w.dim() == 1
            and w.shape[0] == x.shape[-1] <= MAX_WIDTH and x.is_contiguous() and w.is_contiguous()
            and not w.requires_grad and x.device == w.device)


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`rms_norm_ref`'s values, one Triton pass on CUDA where :func:`fits` (``backend="triton"`` forces it, on a
    CPU under ``TRITON_INTERPRET=1``; ``"ref"`` the reference)."""
    if backend == "ref" or (backend == "auto" and not use_triton(x)) or not fits(x, w):
        return rms_norm_ref(x, w, eps)
    _build()
    n = x.shape[-1]
    out = torch.empty_like(x)
    rstd = torch.empty(x.shape[:-1] + (1,), dtype=torch.float32, device=x.device)
    rows = x.numel() // n if n else 0
    if rows:
        meta = _meta(x, n)
        launch(_forward_kernel, (rows,), _launches.setdefault(("forward",) + tuple(meta.values()), {}),
               (x, w, out, rstd, n, float(eps)), meta)
    return out, rstd


def rms_norm_backward(g: torch.Tensor, x: torch.Tensor, rstd: torch.Tensor, w: torch.Tensor,
                      backend: str = "auto") -> torch.Tensor:
    """:func:`rms_norm_backward_ref`'s values, one Triton pass on CUDA where :func:`fits` and ``g`` and ``rstd`` are
    laid as ``x`` is (``x`` may be fp32: a saved copy decoded wide)."""
    if backend == "ref" or (backend == "auto" and not use_triton(g)) or not (
            fits(g, w) and g.shape == x.shape and x.is_contiguous() and x.dtype in (g.dtype, torch.float32)
            and rstd.dtype == torch.float32 and rstd.shape == x.shape[:-1] + (1,) and rstd.is_contiguous()):
        return rms_norm_backward_ref(g, x, rstd, w)
    _build()
    n = x.shape[-1]
    dx = torch.empty_like(g)
    rows = x.numel() // n if n else 0
    if rows:
        meta = _meta(g, n)
        launch(_backward_kernel, (rows,), _launches.setdefault(("backward",) + tuple(meta.values()), {}),
               (g, x, rstd, w, dx, n), meta)
    return dx


def _meta(t: torch.Tensor, n: int) -> dict:
    block = max(16, 1 << (n - 1).bit_length())
    return {"KIND": swiglu.HALVES.index(t.dtype), "BLOCK": block, "num_warps": min(16, max(4, block // 512)),
            "enable_fp_fusion": False}


# ------------------------------------------------------------------------------------------ Triton kernels
# Plain functions until :func:`_build` (kernels/jit.py): the package imports without triton.
tl = None
_round = None  # kernels/swiglu.py's jitted rounding to a 16-bit dtype, bound by _build
_as_half = None  # kernels/swiglu.py's jitted exact narrowing of such a value, bound by _build


def _forward_kernel(x_ptr, w_ptr, o_ptr, r_ptr, N, eps, KIND: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    m = cols < N
    x = tl.load(x_ptr + row * N + cols, mask=m, other=0.0).to(tl.float32)
    r = 1.0 / tl.sqrt_rn(tl.sum(x * x, axis=0) / N + eps)
    tl.store(r_ptr + row, r)
    w = tl.load(w_ptr + cols, mask=m, other=0.0).to(tl.float32)
    tl.store(o_ptr + row * N + cols, _as_half(_round(w * _round(x * r, KIND), KIND), KIND), mask=m)


def _backward_kernel(g_ptr, x_ptr, r_ptr, w_ptr, d_ptr, N, KIND: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    m = cols < N
    g = tl.load(g_ptr + row * N + cols, mask=m, other=0.0).to(tl.float32)
    x = tl.load(x_ptr + row * N + cols, mask=m, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + cols, mask=m, other=0.0).to(tl.float32)
    r = tl.load(r_ptr + row)
    gy = _round(g * w, KIND)
    gv = tl.sum(gy * x, axis=0) * -0.5 * (r * r * r)
    tl.store(d_ptr + row * N + cols, _as_half(_round(gy * r + (gv / N) * 2.0 * x, KIND), KIND), mask=m)


@once
def _build() -> None:
    swiglu.build_with_round(globals(), ("_forward_kernel", "_backward_kernel"))
