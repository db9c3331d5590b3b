"""A LoRA branch's forward in one pass, and its backward from the 16-bit output gradient: two passes over ``grad``
and one over the input.

Why: peft keeps a 16-bit model's adapters in fp32, so autograd's backward of ``lora_B(lora_A(x.float())) * s`` writes
``grad * s`` in fp32, runs four skinny fp32 GEMMs over it and over the fp32 input, and casts the input's gradient
back: 14 bytes an element of the branch's output and 20 of its input, ~22 ms of a 4x1024 Llama-2-7B-shaped step of
8 layers on an H200 against ~7 for the same products read in 16 bits (docs/benchmarks.md session 44). Here:

* ``_rows_kernel``: ``gh = s * grad @ B`` (T x R), each program a block of rows over a fixed run of columns;
* ``_cols_kernel``: ``gB = s * gradᵀ @ h`` (O x R), each program a block of columns over a fixed run of rows;
* ``_input_kernel``: ``dx = gh @ A`` rounded to the input's dtype and ``gA = ghᵀ @ xf`` (R x I), each program a
  block of columns over a fixed run of rows: the input read once (fp32, or the 16-bit values peft's cast widened,
  widened here: the same products), ``dx`` written once.

Forward (``branch_forward``, session 46): ``_forward_kernel`` computes ``h = x·Aᵀ`` for a block of rows over the
whole input width (the 16-bit input widened in registers, exactly) and then, for the same rows, ``base + (h·Bᵀ) * s``
rounded once to the base's dtype (peft's sum, as ``kernels/lora_sum.py`` computes it), writing ``h`` and the output:
one launch where peft's ops take four (the fp32 cast, two cuBLAS products, the sum), whose host time was a fifth of
a replayed forward's on an H200 (``benchmarks/results/2026-12-04-h200-session46/spy/``).

Each partial sum of the backward has its own slot, summed after by torch (no atomics: the same bits every run).
Products accumulate in fp32 through ``tl.dot`` at ``tf32x3`` precision (three TF32 products, fp32's accuracy on tensor
cores; ``ieee`` before Ampere and under the interpreter): the values are autograd's to within fp32 rounding, not its
bits (another summation order). A run of tiles (``TILES``) is compiled in, so a new sequence length needs no new
kernel (the forward compiles in the widths instead).
"""

from __future__ import annotations

import torch

from . import lora_sum as _lora_sum
from . import swiglu
from .jit import once
from .launch import launch

# Each pass's tiles: (rows of a tile, its columns, tiles a program sums along its reduction, warps, pipeline stages).
# ``benchmarks/experiments/lora_branch_tiles.py`` sweeps them pass by pass (device time through CUDA graphs): on an
# H200 these were the fastest of 18 settings at 4096 and 8192 tokens, by 2-5% of the three passes (session 46's
# tiles/ and narrow/; a run of 4 had beaten 8 and 16 in session 44).
# The forward's run is its whole width (``iters`` unused); (32, 128) with 4 warps was the fastest of 9 settings
# (session 46's forward/: 8.58 ms a 4x1024 step; the 15.54 of peft's ops there counted one fp32 cast too many), and
# (64, 128) with 8 warps failed there with an illegal address (not taken apart: a setting to leave alone).
TILES = {"rows": (64, 64, 2, 4, 3), "cols": (64, 64, 4, 4, 3), "input": (32, 64, 4, 4, 3),
         "forward": (32, 128, 1, 4, 3)}
_launches: dict = {}  # a launch plan per pass and every compile-time value it keys on (NOTE [Direct launch] rule 1)


def branch_grads_ref(grad: torch.Tensor, xf: torch.Tensor, h: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                     scaling: float, dx_dtype: torch.dtype) -> tuple:
    """``(dx, gA, gB)`` of ``lora = (xf @ aᵀ) @ bᵀ * scaling`` for the output gradient ``grad`` (T x O), the fp32 input
    ``xf`` (T x I; or the 16-bit values it widens), ``h = xf @ aᵀ`` (T x R), ``a`` (R x I) and ``b`` (O x R), by
    torch's fp32 matmuls: the oracle."""
    xf = xf.float()
    gl = grad.float() * scaling
    gh = gl @ b
    return (gh @ a).to(dx_dtype), gh.t() @ xf, gl.t() @ h


def branch_grads(grad: torch.Tensor, xf: torch.Tensor, h: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                 scaling: float, dx_dtype: torch.dtype, need: tuple = (True, True, True)) -> tuple:
    """:func:`branch_grads_ref` in three kernel passes (contiguous 2-D operands: a 16-bit ``grad``, the input ``xf``
    in fp32 or as the 16-bit values it widens, fp32 ``h``, ``a``, ``b``); ``need``: which of ``(dx, gA, gB)`` to
    compute (None for the others; their operands are then not read). A rank that is no power of two from 16 up
    (``tl.dot``'s smallest) runs zero-padded to one."""
    _build()
    t, o = grad.shape
    r, i = a.shape
    rp = max(16, 1 << (r - 1).bit_length())
    if rp != r:  # zero rows of A, columns of B and h: the padded products' extra entries are zero, and dropped
        a, b = torch.nn.functional.pad(a, (0, 0, 0, rp - r)), torch.nn.functional.pad(b, (0, rp - r))
        h = torch.nn.functional.pad(h, (0, rp - r)) if need[2] else h
        dx, ga, gb = branch_grads(grad, xf, h, a, b, scaling, dx_dtype, need)
        return dx, None if ga is None else ga[:r], None if gb is None else gb[:, :r]
    dev = grad.device
    prec = _precision(dev)
    dx = ga = gb = None
    if need[0] or need[1]:
        bt, bc, iters, warps, stages = tiles = TILES["rows"]
        parts = torch.empty((-(-o // (bc * iters)), t, r), dtype=torch.float32, device=dev)
        int64 = _int64(t, o, tiles)
        launch(_rows_kernel, (-(-t // bt), parts.shape[0]),
               _launches.setdefault(("rows", r, tiles, int64, prec), {}),
               (grad, b, parts, t, o, float(scaling)),
               dict(R=r, BT=bt, BC=bc, ITERS=iters, INT64=int64, PREC=prec, num_warps=warps, num_stages=stages))
        gh = parts.sum(0) if parts.shape[0] > 1 else parts[0]
        kind = swiglu.KINDS.index(dx_dtype)
        bt, bc, iters, warps, stages = tiles = TILES["input"]
        if need[0]:
            dx = torch.empty((t, i), dtype=dx_dtype, device=dev)
        if need[1]:
            ga_parts = torch.empty((-(-t // (bt * iters)), r, i), dtype=torch.float32, device=dev)
        int64 = _int64(t, i, tiles)
        launch(_input_kernel, (-(-i // bc), -(-t // (bt * iters))),
               _launches.setdefault(("input", r, tiles, int64, prec, kind, need[0], need[1]), {}),
               (xf, gh, a, dx if need[0] else gh, ga_parts if need[1] else gh, t, i),
               dict(R=r, BT=bt, BC=bc, ITERS=iters, KIND=kind, NEED_DX=need[0], NEED_GA=need[1], INT64=int64,
                    PREC=prec, num_warps=warps, num_stages=stages))
        if need[1]:
            ga = ga_parts.sum(0) if ga_parts.shape[0] > 1 else ga_parts[0]
    if need[2]:
        bt, bc, iters, warps, stages = tiles = TILES["cols"]
        parts = torch.empty((-(-t // (bt * iters)), o, r), dtype=torch.float32, device=dev)
        int64 = _int64(t, o, tiles)
        launch(_cols_kernel, (-(-o // bc), parts.shape[0]),
               _launches.setdefault(("cols", r, tiles, int64, prec), {}),
               (grad, h, parts, t, o, float(scaling)),
               dict(R=r, BT=bt, BC=bc, ITERS=iters, INT64=int64, PREC=prec, num_warps=warps, num_stages=stages))
        gb = parts.sum(0) if parts.shape[0] > 1 else parts[0]
    return dx, ga, gb


def branch_forward_ref(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, base: torch.Tensor,
                       scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(out, h)``: peft's ops for ``base + lora_B(lora_A(x.float())) * scaling`` in ``base``'s dtype, with ``h =
    x.float() @ aᵀ`` (2-D ``x`` (T x I), 16-bit or already cast to fp32; ``base`` of T rows of O): the oracle, and the
    node's ``"ref"`` forward (NOTE [LoRA branch] rule 1)."""
    h = x.to(a.dtype).mm(a.t())
    return _lora_sum.lora_sum(base, h.mm(b.t()).view(base.shape), scaling), h


def branch_forward(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, base: torch.Tensor,
                   scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`branch_forward_ref` in one kernel pass (contiguous operands: a 16-bit 2-D ``x``, fp32 ``a`` (R x I) and
    ``b`` (O x R), ``base`` of T rows of O in a 16-bit dtype or fp32, any number of dims): the same values to within
    fp32 rounding (``tl.dot`` at the backward's precision), not peft's bits; the output in ``base``'s shape (a tensor
    of its own, no view: an autograd node's output that viewed another tensor would carry that base into the views
    later packs save). Any rank: the kernel's is padded to a power of two from 16 up."""
    _build()
    t, i = x.shape
    o, r = b.shape
    dev = x.device
    prec = _precision(dev)
    bt, bc, _, warps, stages = tiles = TILES["forward"]
    rp = max(16, 1 << (r - 1).bit_length())
    out = torch.empty_like(base)
    h = torch.empty((t, r), dtype=torch.float32, device=dev)
    if t:
        int64 = _int64(t, max(i, o), tiles)
        kind = swiglu.KINDS.index(base.dtype)
        launch(_forward_kernel, (-(-t // bt),),
               _launches.setdefault(("forward", rp, i, o, tiles, int64, prec, kind), {}),
               (x, a, b, base, out, h, t, r, float(scaling)),
               dict(I=i, O=o, R=rp, BT=bt, BC=bc, KIND=kind, INT64=int64, PREC=prec, STAGES=stages, num_warps=warps,
                    enable_fp_fusion=False))
    return out, h


def _int64(t: int, width: int, tiles: tuple) -> bool:
    """Do a pass's offsets need 64 bits (a T x ``width`` operand, indexed up to a run of whole tiles past its end)?"""
    bt, bc, iters = tiles[:3]
    return t * width + max(bt, bc) * iters * width >= 2**31


def dot_precision(capability: tuple[int, int] | None) -> str:
    """``tl.dot``'s input precision for fp32 operands on a GPU of this compute capability (None: no GPU, the
    interpreter): ``tf32x3`` from Ampere on, else ``ieee``."""
    return "tf32x3" if capability is not None and capability >= (8, 0) else "ieee"


def _precision(dev: torch.device) -> str:
    """:func:`dot_precision` for ``dev``, read once a device (a backward calls this for every LoRA linear)."""
    key = dev.index if dev.type == "cuda" else None
    prec = _PRECISION.get(key)
    if prec is None:
        prec = _PRECISION[key] = dot_precision(torch.cuda.get_device_capability(dev) if dev.type == "cuda" else None)
    return prec


_PRECISION: dict = {}


# ------------------------------------------------------------------------------------------ Triton kernels
# Plain functions until :func:`_build` (kernels/jit.py): the package imports without triton.
tl = None
_round = None  # kernels/swiglu.py's jitted rounding, bound by _build


def _rows_kernel(g_ptr, b_ptr, out_ptr, T, O, S, R: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr,
                 ITERS: tl.constexpr, INT64: tl.constexpr, PREC: tl.constexpr):
    """out[split, rows] = S * g[rows, split's columns] @ b[split's columns] (program: row block, column split)."""
    pt, po = tl.program_id(0), tl.program_id(1)
    rows = pt * BT + tl.arange(0, BT)
    if INT64:
        rows = rows.to(tl.int64)
    r = tl.arange(0, R)
    acc = tl.zeros((BT, R), tl.float32)
    for k in tl.static_range(ITERS):
        cols = (po * ITERS + k) * BC + tl.arange(0, BC)
        gt = tl.load(g_ptr + rows[:, None] * O + cols[None, :], mask=(rows[:, None] < T) & (cols[None, :] < O),
                     other=0.0)
        bt = tl.load(b_ptr + cols[:, None] * R + r[None, :], mask=cols[:, None] < O, other=0.0)
        acc += tl.dot(gt.to(tl.float32), bt, input_precision=PREC)
    tl.store(out_ptr + po * T * R + rows[:, None] * R + r[None, :], acc * S, mask=rows[:, None] < T)


def _cols_kernel(g_ptr, h_ptr, out_ptr, T, O, S, R: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr,
                 ITERS: tl.constexpr, INT64: tl.constexpr, PREC: tl.constexpr):
    """out[split, cols] = S * g[split's rows, cols]ᵀ @ h[split's rows] (program: column block, row split)."""
    po, pt = tl.program_id(0), tl.program_id(1)
    cols = po * BC + tl.arange(0, BC)
    r = tl.arange(0, R)
    acc = tl.zeros((BC, R), tl.float32)
    for k in tl.static_range(ITERS):
        rows = (pt * ITERS + k) * BT + tl.arange(0, BT)
        if INT64:
            rows = rows.to(tl.int64)
        gt = tl.load(g_ptr + rows[:, None] * O + cols[None, :], mask=(rows[:, None] < T) & (cols[None, :] < O),
                     other=0.0)
        ht = tl.load(h_ptr + rows[:, None] * R + r[None, :], mask=rows[:, None] < T, other=0.0)
        acc += tl.dot(tl.trans(gt.to(tl.float32)), ht, input_precision=PREC)
    tl.store(out_ptr + pt * O * R + cols[:, None] * R + r[None, :], acc * S, mask=cols[:, None] < O)


def _input_kernel(x_ptr, gh_ptr, a_ptr, dx_ptr, ga_ptr, T, I, R: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr,
                  ITERS: tl.constexpr, KIND: tl.constexpr, NEED_DX: tl.constexpr, NEED_GA: tl.constexpr,
                  INT64: tl.constexpr, PREC: tl.constexpr):
    """dx[split's rows, cols] = round_KIND(gh @ a[:, cols]) and ga[split, :, cols] = gh[split's rows]ᵀ @
    x[split's rows, cols] (program: column block, row split)."""
    pi, pt = tl.program_id(0), tl.program_id(1)
    cols = pi * BC + tl.arange(0, BC)
    r = tl.arange(0, R)
    at = tl.load(a_ptr + r[:, None] * I + cols[None, :], mask=cols[None, :] < I, other=0.0)
    acc = tl.zeros((R, BC), tl.float32)
    for k in tl.static_range(ITERS):
        rows = (pt * ITERS + k) * BT + tl.arange(0, BT)
        if INT64:
            rows = rows.to(tl.int64)
        m = (rows[:, None] < T) & (cols[None, :] < I)
        ght = tl.load(gh_ptr + rows[:, None] * R + r[None, :], mask=rows[:, None] < T, other=0.0)
        if NEED_GA:
            xt = tl.load(x_ptr + rows[:, None] * I + cols[None, :], mask=m, other=0.0).to(tl.float32)
            acc += tl.dot(tl.trans(ght), xt, input_precision=PREC)
        if NEED_DX:
            v = _round(tl.dot(ght, at, input_precision=PREC), KIND)
            tl.store(dx_ptr + rows[:, None] * I + cols[None, :], v, mask=m)
    if NEED_GA:
        tl.store(ga_ptr + pt * R * I + r[:, None] * I + cols[None, :], acc, mask=cols[None, :] < I)


def _forward_kernel(x_ptr, a_ptr, b_ptr, base_ptr, out_ptr, h_ptr, T, RR, S, I: tl.constexpr, O: tl.constexpr,
                    R: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, KIND: tl.constexpr, INT64: tl.constexpr,
                    PREC: tl.constexpr, STAGES: tl.constexpr):
    """h[rows] = x[rows] @ aᵀ, then out[rows] = round_KIND(base[rows] + (h[rows] @ bᵀ) * S) (program: a block of
    rows over the whole input, then the whole output; ``RR`` the rank, ``R`` it padded). The widths compile in (the
    interpreter loops to no runtime bound; a model has a few)."""
    rows = tl.program_id(0) * BT + tl.arange(0, BT)
    if INT64:
        rows = rows.to(tl.int64)
    rmask = rows < T
    r = tl.arange(0, R)
    h = tl.zeros((BT, R), tl.float32)
    for start in tl.range(0, I, BC, num_stages=STAGES):
        cols = start + tl.arange(0, BC)
        xt = tl.load(x_ptr + rows[:, None] * I + cols[None, :], mask=rmask[:, None] & (cols[None, :] < I),
                     other=0.0).to(tl.float32)
        at = tl.load(a_ptr + r[None, :] * I + cols[:, None], mask=(cols[:, None] < I) & (r[None, :] < RR), other=0.0)
        h += tl.dot(xt, at, input_precision=PREC)
    tl.store(h_ptr + rows[:, None] * RR + r[None, :], h, mask=rmask[:, None] & (r[None, :] < RR))
    for start in tl.range(0, O, BC, num_stages=STAGES):
        cols = start + tl.arange(0, BC)
        bt = tl.load(b_ptr + cols[None, :] * RR + r[:, None], mask=(cols[None, :] < O) & (r[:, None] < RR), other=0.0)
        m = rmask[:, None] & (cols[None, :] < O)
        base = tl.load(base_ptr + rows[:, None] * O + cols[None, :], mask=m, other=0.0).to(tl.float32)
        lora = tl.dot(h, bt, input_precision=PREC)
        tl.store(out_ptr + rows[:, None] * O + cols[None, :], _round(base + lora * S, KIND), mask=m)


@once
def _build() -> None:
    swiglu.build_with_round(globals(), ("_rows_kernel", "_cols_kernel", "_input_kernel", "_forward_kernel"))
