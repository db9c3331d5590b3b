"""Uniform low-bit quantization with structured outlier channels: the plain-PyTorch reference and its Triton kernels.

NOTE [Quant layout]
  A tensor of ``n`` elements is seen as a matrix ``X`` of ``R x C`` (``C`` = the last dimension, the hidden
  channels; ``R = n / C`` tokens). Three granularities decide which elements share a step (``scale``) and an
  offset (``zero``):

  1. ``group`` (the default): groups of ``G`` consecutive elements in row-major order. When ``C`` is a multiple
     of ``G`` (every real hidden size) these are groups along the last dimension; a ragged ``C`` shares groups
     across rows instead of padding every row. ``packed`` is ``ceil(n/G) x G*bits/8``; ``scale``/``zero`` hold
     one entry per group.
  2. ``channel`` (HyC-LoRA's): one step per channel over all ``R`` tokens. ``packed`` is ``R x ceil(C*bits/8)``
     (a row is padded with zero codes to whole bytes); ``scale``/``zero`` are ``C``.
  3. ``token_group``: per channel, groups of ``G`` consecutive tokens. ``packed`` as for ``channel``;
     ``scale``/``zero`` are ``ceil(R/G) x C``. Per-channel quality in one pass (no reduction over all tokens).

  Codes: ``8 // bits`` codes a byte, code ``j`` of a byte in bits ``[j*bits, (j+1)*bits)``, along the rows of
  the packed matrix (so the ``group`` layout is also ``R x C*bits/8`` when ``G`` divides ``C``).

  Parameters (bf16, which keeps fp32's range): asymmetric ``zero`` = the group's minimum rounded *down* to bf16,
  ``scale`` = ``(max - zero) / (2^bits - 1)`` rounded *up*, so the grid covers ``[min, max]``; with ``inv = 1 /
  scale`` (one division a group) code ``clamp(floor((x - zero) * inv + r), 0, 2^bits - 1)``, ``x_hat = code *
  scale + zero``. Symmetric: ``qmax = 2^(bits-1) - 1``, ``scale = amax / qmax`` rounded up, code
  ``clamp(floor(x * inv + r), -qmax, qmax) + qmax``. A group with no finite value, or ``scale == 0``, gets
  ``scale = 1``; a step is never below ``2^-126`` (``MIN_STEP``, the smallest normal fp32, so that ``inv`` is
  finite: groups of denormal data decode near 0). ``r = 1/2`` (round to nearest) or ``u`` in ``[0, 1)`` from
  :func:`hash_uniform` of (seed, row-major index) for stochastic rounding: the same on every path, so the Triton
  kernel and this reference store the same bytes either way.

  Outliers: the channels in ``outlier_index`` (int16, or int32 when ``C > 32767``) are copied dense in the
  source dtype (``R x k``), count as 0 in their group's statistics and are coded 0. So they never widen a
  group's range; an asymmetric group along the row that holds one covers 0 (the same grid unless all its other
  values share a sign; per-channel and token groups are all outlier or none, and a symmetric range covers 0
  anyway). Counting them as 0 rather than leaving them out lets the word kernel clear them with one mask a word
  instead of a select per element (2-bit quantize with outliers 465 -> 403 us a GiB on an H200, session 5, with ITERS).
  Non-finite values (NaN, +-Inf) outside outlier channels: excluded from the statistics, coded 0, and stored
  exactly (int64 row-major positions + source-dtype values): they never disturb another element.

  Error bound for every other element: ``|x - x_hat| <= scale / 2`` (round to nearest) or ``< scale``
  (stochastic), up to fp32 arithmetic (``2^-23`` of the range and of ``|x_hat|``), plus one rounding of ``x_hat``
  to the output dtype (relative ``2^-8`` for bf16, ``2^-11`` for fp16; for a subnormal result half its step, ``2^-25``
  for fp16). Data within 1e38 of zero (bf16's range) only.

  Triton vs reference (see ``quantize``/``dequantize``): the same formulas in the same fp32 operations (IEEE
  division ``div_rn``; the quantize kernel is compiled without fp fusion, so ``(x - zero) * inv + r`` rounds
  three times, as in torch; ``code * scale`` is exact because a bf16 step times a code < 256 fits in fp32's
  mantissa, so a fused multiply-add rounds like a multiply then an add) give the same packed codes, parameters and
  decoded values, bit for bit. The one freedom: in dynamic outlier mode the channel L2 norms are summed in a
  different order, so near-ties may pick different channels; given the same channels, the bytes are equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .jit import build, once
from .launch import launch
from .nonfinite import Nonfinite, add_rounded, host_flag

PARAM_DTYPE = torch.bfloat16  # bf16 keeps fp32's range (no overflow for huge activations) at 2 bytes a group
MIN_STEP = 2.0**-126  # the smallest normal fp32: a step never below it keeps 1 / step finite
GRANULARITIES = ("group", "channel", "token_group")
_M32 = 0xFFFFFFFF


@dataclass
class QuantizedTensor:
    """What the quantizer keeps (see NOTE [Quant layout]); every tensor here is compact."""

    packed: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor | None
    nonfinite: Nonfinite | None  # NaN/Inf outside outlier channels, stored exactly (kernels/nonfinite.py)
    shape: torch.Size
    dtype: torch.dtype
    bits: int
    group_size: int
    granularity: str = "group"
    outlier_index: torch.Tensor | None = None  # channel indices (int16/int32), sorted
    outlier_value: torch.Tensor | None = None  # R x k, source dtype

    @property
    def nbytes(self) -> int:
        """Bytes held, exactly: the storages of every tensor referenced (each is compact, none a view)."""
        held = [self.packed, self.scale, self.zero, self.outlier_index, self.outlier_value]
        nf = Nonfinite.nbytes_of(self.nonfinite)
        return nf + sum([t.untyped_storage().nbytes() for t in held if t is not None])

    @property
    def nonfinite_index(self) -> torch.Tensor | None:
        """Flat int64 positions (row-major) of the non-finite values (settles a pending check)."""
        return getattr(Nonfinite.settled(self.nonfinite), "index", None)

    @property
    def nonfinite_value(self) -> torch.Tensor | None:
        return getattr(Nonfinite.settled(self.nonfinite), "value", None)


QuantizedGroups = QuantizedTensor  # the name the core engine's reference used


# --------------------------------------------------------------------------------------------- shared helpers
def as_matrix_shape(shape: torch.Size) -> tuple[int, int]:
    """``(R, C)``: tokens x channels (``C`` = last dim; a 0-d tensor is 1 x 1)."""
    n = math.prod(shape)
    c = shape[-1] if len(shape) else 1
    return (n // c if c else 0), c


def round_bf16(v: torch.Tensor, up: bool) -> torch.Tensor:
    """Round fp32 ``v`` to bf16 toward +inf (``up``) or -inf, by its bits: the grid still covers the data.

    Truncating the low 16 bits rounds toward zero; a non-zero remainder then moves one bf16 step away from zero
    when that is the requested direction. Same operations as the Triton kernel's ``_bf16_round``.
    """
    u = v.contiguous().view(torch.int32)
    t = u & -65536
    away = ((u & 0xFFFF) != 0) & ((v > 0) if up else (v < 0))
    return torch.where(away, t + 0x10000, t).view(torch.float32).to(PARAM_DTYPE)


def hash_uniform(index: torch.Tensor, seed: int) -> torch.Tensor:
    """``[0, 1)`` fp32 noise from a 32-bit integer hash of (seed, int64 index): the stochastic-rounding stream.

    The hash (a multiply-xorshift mixer) is written with int64 ops masked to 32 bits so that it equals the
    kernel's uint32 arithmetic exactly; 24 bits of it make the fraction (exact in fp32).
    """
    lo, hi = index & _M32, (index >> 32) & _M32
    h = (lo + hi * 0x9E3779B1 + (seed & _M32) * 0x85EBCA77) & _M32
    h = h ^ (h >> 16)
    h = (h * 0x7FEB352D) & _M32
    h = h ^ (h >> 15)
    h = (h * 0x846CA68B) & _M32
    h = h ^ (h >> 16)
    return (h >> 8).to(torch.float32) * (1.0 / 16777216)


def params_from_stats(lo: torch.Tensor, hi: torch.Tensor, amax: torch.Tensor, bits: int, symmetric: bool):
    """Turn masked group statistics (fp32; lo > hi marks a group with nothing to quantize) into bf16 params."""
    # Divide by a tensor, never a Python number: CUDA's tensor/scalar division multiplies by the rounded
    # reciprocal, which differs from the kernel's IEEE division (div_rn) in the last bit (seen on H100: 5% of
    # 4-bit scales one bf16 step apart before this).
    if symmetric:
        qmax = torch.tensor(float(2 ** (bits - 1) - 1), device=amax.device)
        scale = round_bf16(amax / qmax, up=True)
        zero = None
    else:
        empty = lo > hi
        lo = torch.where(empty, torch.zeros_like(lo), lo)
        hi = torch.where(empty, torch.zeros_like(hi), hi)
        zero = round_bf16(lo, up=False)
        levels = torch.tensor(float(2**bits - 1), device=hi.device)
        scale = round_bf16((hi - zero.float()) / levels, up=True)
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    return torch.clamp_min(scale, MIN_STEP), zero


def codes_from(xf: torch.Tensor, valid: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, bits: int,
               r: torch.Tensor | float) -> torch.Tensor:
    """Codes (int32) of fp32 ``xf`` given broadcastable fp32 ``scale``/``zero``; invalid elements get 0."""
    x = torch.where(valid, xf, torch.zeros((), device=xf.device))
    inv = torch.ones_like(scale) / scale  # one IEEE division a group, as the kernel does; then multiplies
    if zero is None:
        qmax = 2 ** (bits - 1) - 1
        q = torch.floor(x * inv + r).clamp(-qmax, qmax) + qmax
    else:
        q = torch.floor((x - zero) * inv + r).clamp(0, 2**bits - 1)
    return torch.where(valid, q, torch.zeros((), device=xf.device)).to(torch.int32)


def outlier_slots(outlier_index: torch.Tensor | None, c: int, device) -> torch.Tensor | None:
    """``C`` int32: the position of each channel in ``outlier_index``, -1 for ordinary channels."""
    if outlier_index is None:
        return None
    slot = torch.full((c,), -1, dtype=torch.int32, device=device)
    slot[outlier_index.long()] = torch.arange(outlier_index.numel(), dtype=torch.int32, device=device)
    return slot


def index_dtype(c: int) -> torch.dtype:
    return torch.int16 if c <= 32767 else torch.int32


def top_channels(sumsq: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` channels of largest L2 norm, sorted ascending, compact dtype (see NOTE [Quant layout])."""
    idx = torch.topk(sumsq.float(), k, sorted=False).indices if k else sumsq.new_zeros(0, dtype=torch.long)
    return torch.sort(idx).values.to(index_dtype(sumsq.numel()))


def channel_sumsq(x: torch.Tensor) -> torch.Tensor:
    """Per-channel sum of squares over the tokens (fp32, non-finite values ignored): the outlier score."""
    r, c = as_matrix_shape(x.shape)
    xf = x.reshape(r, c).float()
    xf = torch.where(torch.isfinite(xf), xf, torch.zeros((), device=xf.device))
    return (xf * xf).sum(0)


# ---------------------------------------------------------------------------------------------- reference
def quantize_ref(x: torch.Tensor, bits: int, group_size: int, symmetric: bool = False, granularity: str = "group",
                 outlier_index: torch.Tensor | None = None, seed: int | None = None) -> QuantizedTensor:
    """Quantize ``x`` (any float dtype, shape and strides); ``seed`` turns on stochastic rounding."""
    shape, dtype, g = x.shape, x.dtype, group_size
    r, c = as_matrix_shape(shape)
    n = r * c
    dev = x.device
    x2 = x.reshape(r, c)
    xf = x2.float()
    finite = torch.isfinite(xf)
    valid = finite
    outl_val = None
    if outlier_index is not None:
        ocol = torch.zeros(c, dtype=torch.bool, device=dev)
        ocol[outlier_index.long()] = True
        valid = valid & ~ocol
        outl_val = x2[:, outlier_index.long()].contiguous()
        bad = ~finite & ~ocol
    else:
        bad = ~finite
    nonfinite = Nonfinite.find(x2, bad.sum(), outlier_index)
    rnd: torch.Tensor | float = 0.5
    if seed is not None:
        rnd = hash_uniform(torch.arange(n, device=dev, dtype=torch.int64), seed).view(r, c)

    inf = torch.tensor(float("inf"), device=dev)
    if granularity == "group":
        ngroups = -(-n // g)
        pad = ngroups * g - n
        red = 1

        def group(t: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.pad(t.reshape(-1), (0, pad)).view(ngroups, g)
    elif granularity == "channel":
        red = 0

        def group(t: torch.Tensor) -> torch.Tensor:
            return t
    elif granularity == "token_group":
        nr = -(-r // g)
        pad = nr * g - r
        red = 1

        def group(t: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.pad(t, (0, 0, 0, pad)).view(nr, g, c)
    else:
        raise ValueError(f"granularity {granularity!r}")
    xg, vg = group(xf), group(valid)
    if seed is not None:
        rnd = group(rnd)
    # statistics: outlier channels count as 0 (NOTE [Quant layout]), non-finite values elsewhere not at all
    sg, xs = vg, torch.where(vg, xg, 0.0)
    if outlier_index is not None:
        sg = vg | group(ocol.expand(r, c))
    lo = torch.where(sg, xs, inf).amin(dim=red) if xg.numel() else xg.sum(dim=red)
    hi = torch.where(sg, xs, -inf).amax(dim=red) if xg.numel() else xg.sum(dim=red)
    amax = torch.where(vg, xg.abs(), 0.0).amax(dim=red) if xg.numel() else xg.sum(dim=red)
    scale, zero = params_from_stats(lo, hi, amax, bits, symmetric)
    s, z = scale.float().unsqueeze(red), (zero.float().unsqueeze(red) if zero is not None else None)
    codes = codes_from(xg, vg, s, z, bits, rnd)
    if granularity == "token_group":
        codes = codes.view(-1, c)[:r]
    per = 8 // bits
    if granularity != "group" and c % per:
        codes = torch.nn.functional.pad(codes, (0, per - c % per))
    packed = pack_codes(codes.to(torch.uint8), bits)
    oi = outlier_index.contiguous() if outlier_index is not None else None
    return QuantizedTensor(packed, scale, zero, nonfinite, shape, dtype, bits, g, granularity, oi, outl_val)


def dequantize_ref(q: QuantizedTensor) -> torch.Tensor:
    """Rebuild a contiguous tensor of the original shape and dtype from :class:`QuantizedTensor`."""
    Nonfinite.settled(q.nonfinite)  # a pending check may still rewrite the codes (its repair): settle first
    r, c = as_matrix_shape(q.shape)
    n = r * c
    codes = unpack_codes(q.packed, q.bits).float()
    if q.granularity == "group":
        s, z = q.scale.float().unsqueeze(-1), (q.zero.float().unsqueeze(-1) if q.zero is not None else None)
    else:
        codes = codes[:, :c]
        if q.granularity == "channel":
            s, z = q.scale.float(), (q.zero.float() if q.zero is not None else None)
        else:
            s = q.scale.float().repeat_interleave(q.group_size, dim=0)[:r]
            z = q.zero.float().repeat_interleave(q.group_size, dim=0)[:r] if q.zero is not None else None
    if z is None:
        vals = (codes - (2 ** (q.bits - 1) - 1)) * s
    else:
        vals = codes * s + z
    out = vals.reshape(-1)[:n].to(q.dtype).view(r, c)
    if q.outlier_index is not None:
        out[:, q.outlier_index.long()] = q.outlier_value
    if q.nonfinite is not None:
        q.nonfinite.restore(out)
    return out.view(q.shape)


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack ``rows x W`` uint8 codes (each < 2^bits, ``W`` a multiple of ``8 // bits``) into ``rows x W*bits/8``
    bytes, low bits first."""
    per = 8 // bits
    if per == 1:
        return codes.contiguous()
    c = codes.reshape(codes.shape[0], -1, per).to(torch.int32)
    shifts = torch.arange(per, device=codes.device, dtype=torch.int32) * bits
    return (c << shifts).sum(dim=-1).to(torch.uint8)


def unpack_codes(packed: torch.Tensor, bits: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`."""
    per = 8 // bits
    if per == 1:
        return packed
    shifts = torch.arange(per, device=packed.device, dtype=torch.int32) * bits
    c = (packed.to(torch.int32).unsqueeze(-1) >> shifts) & (2**bits - 1)
    return c.view(packed.shape[0], -1).to(torch.uint8)


# ------------------------------------------------------------------------------------------ Triton kernels
# The kernel sources below are plain functions until :func:`_build` applies ``triton.jit`` on first use
# (kernels/jit.py); ``tl`` is bound then too.
tl = None
_JIT_NAMES = ("_bf16_round", "_bf16_nearest", "_hash_uniform", "_group_params", "_program_rows", "_tile", "_elem",
              "_to_bits", "_round_to", "_min_nan", "_max_nan", "_word_tile", "_outlier_cols", "_packed_codes",
              "_token_block", "_token_params", "_quant_kernel", "_quant_tokens_kernel", "_quant_token_tile_kernel",
              "_colstats_kernel", "_dequant_kernel", "_quant_words_kernel", "_dequant_words_kernel")

# Tile sizes: 2048 elements a program at 4 warps (16 per thread: two 16-byte loads of bf16). Swept on an H100
# (tools/bench_quant.py --tiles, docs/benchmarks.md): 1024-4096 at 4-8 warps are within a few percent.
_TILE = 2048
_WARPS = 4
_TILE_DEQUANT_LAUNCHES: dict = {}  # the element dequantize kernel's direct-launch caches, by compile-time values
# The word kernels' groups (MODE 0) take 4096 elements a program at 4 warps (32 per thread: more bytes in flight
# per thread). Swept on an H200 (1 GiB bf16, 2 and 4 bits, with and without 0.5% outlier channels; 2048-8192
# elements at 4-16 warps): 4096 x 4 was the fastest in every group row (benchmarks/results/
# 2026-11-30-h200-bench_quant-tile-sweep2.json, docs/benchmarks.md session 4).
_WORD_TILE = 4096
# Row tiles a word-quantize program walks (its outlier lanes decoded once for all of them), where the grid keeps
# at least _WORD_ITERS_MIN_PROGRAMS programs. H200, by GPU time (benchmarks/results/
# 2026-11-30-h200-quant-words-iters.txt): with 0.5% outlier channels 8 tiles lift 1 GiB from 67% to 75% of copy
# (2 bits) and 256 MiB from 65% to 70%; at 64 MiB (1024 programs of 8 tiles) they cost 12 points without outliers.
_WORD_ITERS = 8
_WORD_ITERS_MIN_PROGRAMS = 4096
# With outlier channels, word-quantize programs take 8192 elements (two rows of 4096) and one tile each instead:
# H200, GPU time (benchmarks/results/2026-11-30-h200-quant-words-tiles-session7.txt): 64 MiB 64% -> 70% of copy
# (2 bits) and 67% -> 71% (4 bits), 256 MiB 70% -> 73% and 68% -> 75%, 1 GiB 75% -> 78% and 71% -> 79%; walking
# ITERS tiles of that size cost 10-20 points, 16384 elements or 8 warps 5-20.
_WORD_TILE_OUTLIERS = 8192
# Token-group decodes (MODE 1) take tiles one group tall and _WORD_TOKEN_COLS channels wide (256 bytes a row of
# bf16), up to _WORD_TOKEN_TILE elements. H200, 8192 x 11008 bf16 (benchmarks/results/2026-12-01-h200-session17/
# token_tiles/): groups of 128 at 4 bits 0.119 ms with the element tiles' 16 channels -> 0.069 ms at 128;
# groups of 32 at 8 bits 0.092 -> 0.080 ms at 128 (wider, 512, was slower again); the same bits.
_WORD_TOKEN_COLS = 128
_WORD_TOKEN_TILE = 16384
# The element dequantize kernel (decode-and-add, widened decodes) takes token-group tiles at least this wide too
# (its quantize keeps _tiles'): 8192 x 11008 decode-and-add at 4 bits, groups of 128, 0.185 -> 0.160 ms; at 8 bits,
# groups of 32, 0.167 -> 0.157 ms; the same bits (H200, token_tiles/element.txt).
_ELEMENT_TOKEN_COLS = 128


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def use_triton(t: torch.Tensor) -> bool:
    """The policy engine's choice: the Triton path for CUDA tensors (when triton imports), else the reference."""
    return t.is_cuda and triton_available()


def _bf16_round(v, UP: tl.constexpr):
    """fp32 -> the nearest bf16 value toward +inf (UP) or -inf, returned as fp32; see :func:`round_bf16`."""
    u = v.to(tl.int32, bitcast=True)
    t = u & -65536
    if UP:
        away = ((u & 0xFFFF) != 0) & (v > 0)
    else:
        away = ((u & 0xFFFF) != 0) & (v < 0)
    return tl.where(away, t + 0x10000, t).to(tl.float32, bitcast=True)


def _bf16_nearest(v):
    """fp32 -> the nearest bf16 (ties to even), still as fp32, by the bits (the interpreter's own bf16 cast breaks
    ties differently); finite and infinite inputs only."""
    u = v.to(tl.int32, bitcast=True)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & -65536
    return u.to(tl.float32, bitcast=True)


def _hash_uniform(index, seed):
    """See :func:`hash_uniform`: the same mixer in uint32 arithmetic (wraps mod 2^32)."""
    idx = index.to(tl.int64)
    lo = (idx & 0xFFFFFFFF).to(tl.uint32)
    hi = ((idx >> 32) & 0xFFFFFFFF).to(tl.uint32)
    h = lo + hi * 0x9E3779B1 + tl.cast(seed, tl.uint32) * 0x85EBCA77
    h = h ^ (h >> 16)
    h = h * 0x7FEB352D
    h = h ^ (h >> 15)
    h = h * 0x846CA68B
    h = h ^ (h >> 16)
    return (h >> 8).to(tl.float32) * (1.0 / 16777216)


def _group_params(lo, hi, SYM: tl.constexpr, BITS: tl.constexpr):
    """Masked statistics (fp32; lo > hi: nothing to quantize; SYM: ``hi`` is the absmax) -> (scale, zero), fp32
    holding bf16 values, as :func:`params_from_stats` computes them (``zero`` is unused when SYM)."""
    if SYM:
        sc = _bf16_round(tl.math.div_rn(hi, (2 ** (BITS - 1) - 1) * 1.0), True)
        zp = sc
    else:
        empty = lo > hi
        lo = tl.where(empty, 0.0, lo)
        hi = tl.where(empty, 0.0, hi)
        zp = _bf16_round(lo, False)
        sc = _bf16_round(tl.math.div_rn(hi - zp, (2**BITS - 1) * 1.0), True)
    sc = tl.maximum(tl.where(sc == 0.0, 1.0, sc), 2.0**-126)  # MIN_STEP
    return sc, zp


def _program_rows(ncb, INT64: tl.constexpr, BLOCK_R: tl.constexpr):
    """This program's (row block, column block) of a grid laid out column blocks first (``ncb`` of them a row
    block), and its BLOCK_R row indices (int64 when INT64)."""
    pid = tl.program_id(0)
    pid_c = pid % ncb
    pid_r = pid // ncb
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    if INT64:
        rows = rows.to(tl.int64)
    return pid_r, pid_c, rows


def _tile(R, C, N, RAGGED: tl.constexpr, EVEN: tl.constexpr, INT64: tl.constexpr, BLOCK_R: tl.constexpr,
          BLOCK_C: tl.constexpr):
    """This program's BLOCK_R x BLOCK_C tile of the R x C matrix: its row and column indices, the in-bounds mask
    (all true when EVEN: the tiles cover the matrix exactly) and the row-major flat index."""
    pid_r, pid_c, rows = _program_rows(tl.cdiv(C, BLOCK_C), INT64, BLOCK_R)
    cols = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    r2 = rows[:, None]
    c2 = cols[None, :]
    flat = r2 * C + c2
    if EVEN:
        mask = tl.full((BLOCK_R, BLOCK_C), 1, tl.int1)
    else:
        mask = (r2 < R) & (c2 < C)
        if RAGGED:
            mask = mask & (flat < N)
    return pid_r, pid_c, rows, cols, r2, c2, flat, mask


def _packed_codes(xv, valid, inv, z, flat, seed, BITS: tl.constexpr, SYM: tl.constexpr, STOCH: tl.constexpr,
                  ROWS: tl.constexpr, BLOCK_C: tl.constexpr):
    """The codes of the ROWS x BLOCK_C values ``xv`` (0 where not ``valid``, which are coded 0) with step ``1 /
    inv`` and zero ``z`` (unused when SYM), rounded as the reference rounds them, then packed 8 // BITS to a byte
    along the row (int32; ``flat``: the elements' row-major indices, for stochastic rounding)."""
    PER: tl.constexpr = 8 // BITS
    QMAX: tl.constexpr = 2 ** (BITS - 1) - 1
    LEVELS: tl.constexpr = 2**BITS - 1
    if STOCH:
        rnd = _hash_uniform(flat, seed)
    else:
        rnd = 0.5
    if SYM:  # launched without fp fusion: multiply, then add, each rounded (as the reference)
        q = tl.floor(xv * inv + rnd)
        q = tl.minimum(tl.maximum(q, -QMAX * 1.0), QMAX * 1.0) + QMAX
    else:
        q = tl.floor((xv - z) * inv + rnd)
        q = tl.minimum(tl.maximum(q, 0.0), LEVELS * 1.0)
    q = tl.where(valid, q, 0.0).to(tl.int32)
    if PER == 1:
        return q
    sh = tl.arange(0, PER) * BITS
    return tl.sum(tl.reshape(q, (ROWS, BLOCK_C // PER, PER)) << sh[None, None, :], axis=2)


def _quant_kernel(x_ptr, packed_ptr, scale_ptr, zero_ptr, slot_ptr, outl_ptr, nf_ptr,
                  R, C, s_r, s_c, N, CO, K, PW, seed,
                  MODE: tl.constexpr, BITS: tl.constexpr, SYM: tl.constexpr, HAS_OUTL: tl.constexpr,
                  STOCH: tl.constexpr, RAGGED: tl.constexpr, EVEN: tl.constexpr, INT64: tl.constexpr,
                  CHECKED: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """One read of a BLOCK_R x BLOCK_C tile: group statistics (MODE 0: along the row, one group per row of the
    tile; MODE 1: along the tokens; MODE 2: parameters given), codes, packed store. Outlier channels count as 0
    in the statistics and are coded 0 (their values were gathered before the launch), except for RAGGED groups,
    where this kernel stores them.

    Not CHECKED (the first launch) assumes finite data and raises ``nf_ptr`` if a row is not; the host then runs
    the launch again CHECKED, which keeps NaN/Inf out of the statistics (see ``quantize_triton``). Masking every
    element for a case that almost never happens cost ~35% of the kernel's bandwidth on an H100."""
    PER: tl.constexpr = 8 // BITS
    pid_r, pid_c, rows, cols, r2, c2, flat, mask = _tile(R, C, N, RAGGED, EVEN, INT64, BLOCK_R, BLOCK_C)
    if EVEN:
        x = tl.load(x_ptr + r2 * s_r + c2 * s_c)
    else:
        x = tl.load(x_ptr + r2 * s_r + c2 * s_c, mask=mask, other=0.0)
    xf = x.to(tl.float32)
    if CHECKED:
        valid = mask & (tl.abs(xf) < float("inf"))  # false for NaN and +-inf
    else:
        valid = mask
        probe = tl.sum(xf - xf, axis=1)  # NaN iff the row holds a NaN or an Inf (masked lanes loaded 0)
        tl.store(nf_ptr + rows * 0, 1, mask=probe != 0.0)
    if HAS_OUTL:
        if RAGGED:  # groups span rows: the channel of each element, and the store of outlier values, here
            slot = tl.load(slot_ptr + flat % CO, mask=mask, other=-1)
            tl.store(outl_ptr + (flat // CO) * K + slot, x, mask=mask & (slot >= 0))
        else:
            slot = tl.load(slot_ptr + cols, mask=cols < C, other=-1)[None, :]
        # statistics: an outlier lane counts as 0 (NOTE [Quant layout]); codes: it is skipped (coded 0)
        xs = tl.where(slot >= 0, 0.0, xf)
        svalid = valid | (mask & (slot >= 0))
        valid = valid & (slot < 0)
    else:
        xs = xf
        svalid = valid

    if MODE == 2:
        pmask = cols < C
        s = tl.load(scale_ptr + cols, mask=pmask, other=1.0).to(tl.float32)[None, :]
        inv = tl.math.div_rn(1.0, s)
        if not SYM:
            z = tl.load(zero_ptr + cols, mask=pmask, other=0.0).to(tl.float32)[None, :]
    else:
        AX: tl.constexpr = 1 - MODE  # MODE 0 reduces along the row, MODE 1 along the tokens
        if SYM:
            hi = tl.max(tl.where(valid, tl.abs(xf), 0.0), axis=AX)
            lo = hi
        else:
            lo = tl.min(tl.where(svalid, xs, float("inf")), axis=AX)
            hi = tl.max(tl.where(svalid, xs, float("-inf")), axis=AX)
        sc, zp = _group_params(lo, hi, SYM, BITS)
        isc = tl.math.div_rn(1.0, sc)  # one division a group; the elements multiply
        if MODE == 0:
            pidx = rows * (C // BLOCK_C) + pid_c
            pmask = rows < R
            s = sc[:, None]
            inv = isc[:, None]
            if not SYM:
                z = zp[:, None]
        else:
            pidx = pid_r * C + cols
            pmask = cols < C
            s = sc[None, :]
            inv = isc[None, :]
            if not SYM:
                z = zp[None, :]
        tl.store(scale_ptr + pidx, sc.to(tl.bfloat16), mask=pmask)
        if not SYM:
            tl.store(zero_ptr + pidx, zp.to(tl.bfloat16), mask=pmask)

    pk = _packed_codes(tl.where(valid, xf, 0.0), valid, inv, inv if SYM else z, flat, seed, BITS, SYM, STOCH,
                       BLOCK_R, BLOCK_C)
    pcols = pid_c * (BLOCK_C // PER) + tl.arange(0, BLOCK_C // PER)
    if EVEN:
        tl.store(packed_ptr + r2 * PW + pcols[None, :], pk.to(tl.uint8))
    else:
        tl.store(packed_ptr + r2 * PW + pcols[None, :], pk.to(tl.uint8), mask=(r2 < R) & (pcols[None, :] < PW))


def _token_block(slot_ptr, C, HAS_OUTL: tl.constexpr, INT64: tl.constexpr, G: tl.constexpr,
                 BLOCK_C: tl.constexpr):
    """A token-group program's place: (column block, group, first row, its BLOCK_C channels, their mask, and the
    mask of those that are not outlier channels)."""
    pid_c = tl.program_id(0)
    pid_g = tl.program_id(1)
    cols = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < C
    if INT64:
        r0 = pid_g.to(tl.int64) * G
    else:
        r0 = pid_g * G
    keep = cmask
    if HAS_OUTL:
        keep = cmask & (tl.load(slot_ptr + cols, mask=cmask, other=-1) < 0)
    return pid_c, pid_g, r0, cols, cmask, keep


def _token_params(lo, hi, scale_ptr, zero_ptr, at, cmask, SYM: tl.constexpr, BITS: tl.constexpr):
    """A token group's per-channel (scale, zero) from its statistics, stored at ``at`` (bf16) and returned."""
    sc, zp = _group_params(lo, hi, SYM, BITS)
    tl.store(scale_ptr + at, sc.to(tl.bfloat16), mask=cmask)
    if not SYM:
        tl.store(zero_ptr + at, zp.to(tl.bfloat16), mask=cmask)
    return sc, zp


def _quant_tokens_kernel(x_ptr, packed_ptr, scale_ptr, zero_ptr, slot_ptr, nf_ptr, R, C, s_r, s_c, PW, seed,
                         BITS: tl.constexpr, SYM: tl.constexpr, HAS_OUTL: tl.constexpr, STOCH: tl.constexpr,
                         INT64: tl.constexpr, G: tl.constexpr, RB: tl.constexpr, BLOCK_C: tl.constexpr,
                         STAGES: tl.constexpr):
    """``_quant_kernel``'s unchecked first pass for token groups (MODE 1): a program takes G tokens of BLOCK_C
    channels and walks them RB rows at a time, twice: first a running min/max per element of the RB x BLOCK_C
    slab (no reduction across threads until one at the end), then the codes from the same rows (cached by then).
    Each walk keeps STAGES rows' loads in flight (``tl.range``'s software pipelining: 44 -> 52% of the copy at
    1 GiB, 4 bits; without it every step waited for its row).
    ``_quant_kernel`` reduced a 64 x 32 tile across warps at every tile, at 23-25% of the copy (docs/benchmarks.md
    session 8). Outlier channels read 0 (their columns were gathered before the launch) and are coded 0; a row
    holding NaN/Inf raises ``nf_ptr`` (the CHECKED re-run is ``_quant_kernel``'s)."""
    PER: tl.constexpr = 8 // BITS
    pid_c, pid_g, r0, cols, cmask, keep = _token_block(slot_ptr, C, HAS_OUTL, INT64, G, BLOCK_C)
    c2 = cols[None, :]
    keep2 = keep[None, :]
    rr = tl.arange(0, RB)[:, None]
    lo = tl.full((RB, BLOCK_C), float("inf"), tl.float32)
    hi = tl.full((RB, BLOCK_C), float("-inf"), tl.float32)
    probe = tl.zeros((RB, BLOCK_C), tl.float32)
    for i in tl.range(0, G, RB, num_stages=STAGES):
        r = r0 + i + rr
        m = cmask[None, :] & (r < R)
        x = tl.load(x_ptr + r * s_r + c2 * s_c, mask=m, other=0.0).to(tl.float32)
        x = tl.where(keep2, x, 0.0)
        probe += x - x  # NaN from here on iff a NaN or an infinity was met
        if SYM:
            hi = tl.maximum(hi, tl.where(m, tl.abs(x), 0.0))
        else:
            lo = tl.minimum(lo, tl.where(m, x, float("inf")))
            hi = tl.maximum(hi, tl.where(m, x, float("-inf")))
    tl.store(nf_ptr + cols * 0, 1, mask=cmask & (tl.sum(probe, axis=0) != 0.0))
    hi1 = tl.max(hi, axis=0)
    lo1 = hi1 if SYM else tl.min(lo, axis=0)
    sc, zp = _token_params(lo1, hi1, scale_ptr, zero_ptr, pid_g * C + cols, cmask, SYM, BITS)
    inv = tl.math.div_rn(1.0, sc)[None, :]
    z = zp[None, :]
    pcols = (pid_c * (BLOCK_C // PER) + tl.arange(0, BLOCK_C // PER))[None, :]
    for i in tl.range(0, G, RB, num_stages=STAGES):
        r = r0 + i + rr
        m = cmask[None, :] & (r < R)
        xv = tl.load(x_ptr + r * s_r + c2 * s_c, mask=m, other=0.0).to(tl.float32)
        valid = m & keep2
        pk = _packed_codes(tl.where(valid, xv, 0.0), valid, inv, z, r * C + c2, seed, BITS, SYM, STOCH, RB, BLOCK_C)
        tl.store(packed_ptr + r * PW + pcols, pk.to(tl.uint8), mask=(r < R) & (pcols < PW))


def _quant_token_tile_kernel(x_ptr, packed_ptr, scale_ptr, zero_ptr, slot_ptr, nf_ptr, R, C, s_r, s_c, PW, seed,
                             BITS: tl.constexpr, SYM: tl.constexpr, HAS_OUTL: tl.constexpr, STOCH: tl.constexpr,
                             INT64: tl.constexpr, G: tl.constexpr, BLOCK_C: tl.constexpr):
    """``_quant_tokens_kernel``'s job in one read: a program loads its whole group (G tokens x BLOCK_C channels)
    into registers, reduces it along the tokens, then codes and packs the same registers. Narrow column blocks
    give a grid of many programs where the walk's 1024-channel blocks gave a few hundred (see
    ``_TOKEN_TILE_BITS``). Same statistics, codes and non-finite flag as the walk."""
    PER: tl.constexpr = 8 // BITS
    pid_c, pid_g, r0, cols, cmask, keep = _token_block(slot_ptr, C, HAS_OUTL, INT64, G, BLOCK_C)
    r = r0 + tl.arange(0, G)[:, None]
    c2 = cols[None, :]
    m = cmask[None, :] & (r < R)
    x = tl.load(x_ptr + r * s_r + c2 * s_c, mask=m, other=0.0).to(tl.float32)
    valid = m
    if HAS_OUTL:  # without outliers ``keep`` is ``cmask``, which the load's mask applied already; the select
        valid = m & keep[None, :]  # anyway cost 44 -> 57 us (8192 x 4096, 128 tokens; session 18 recheck/)
        x = tl.where(valid, x, 0.0)
    tl.store(nf_ptr + cols * 0, 1, mask=cmask & (tl.sum(x - x, axis=0) != 0.0))  # NaN iff a NaN or an inf
    if SYM:
        hi = tl.max(tl.where(m, tl.abs(x), 0.0), axis=0)
        lo = hi
    else:
        lo = tl.min(tl.where(m, x, float("inf")), axis=0)
        hi = tl.max(tl.where(m, x, float("-inf")), axis=0)
    sc, zp = _token_params(lo, hi, scale_ptr, zero_ptr, pid_g * C + cols, cmask, SYM, BITS)
    inv = tl.math.div_rn(1.0, sc)[None, :]
    pk = _packed_codes(x, valid, inv, zp[None, :], r * C + c2, seed, BITS, SYM, STOCH, G, BLOCK_C)
    pcols = (pid_c * (BLOCK_C // PER) + tl.arange(0, BLOCK_C // PER))[None, :]
    tl.store(packed_ptr + r * PW + pcols, pk.to(tl.uint8), mask=(r < R) & (pcols < PW))


def _colstats_kernel(x_ptr, lo_ptr, hi_ptr, amax_ptr, ss_ptr, R, C, s_r, s_c, ROWS_PER: tl.constexpr,
                     NEED_MM: tl.constexpr, NEED_SS: tl.constexpr, INT64: tl.constexpr,
                     BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """Partial per-channel min / max / absmax / sum of squares of finite values over ROWS_PER tokens."""
    pid_c = tl.program_id(0)
    pid_s = tl.program_id(1)
    cols = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < C
    lo = tl.full((BLOCK_C,), float("inf"), tl.float32)
    hi = tl.full((BLOCK_C,), float("-inf"), tl.float32)
    am = tl.zeros((BLOCK_C,), tl.float32)
    ss = tl.zeros((BLOCK_C,), tl.float32)
    r0 = pid_s * ROWS_PER
    if INT64:
        r0 = r0.to(tl.int64)
    for start in range(0, ROWS_PER, BLOCK_R):
        rows = r0 + start + tl.arange(0, BLOCK_R)
        m = ((rows < R) & (rows < r0 + ROWS_PER))[:, None] & cmask[None, :]
        xf = tl.load(x_ptr + rows[:, None] * s_r + cols[None, :] * s_c, mask=m, other=0.0).to(tl.float32)
        v = m & (tl.abs(xf) < float("inf"))
        if NEED_MM:
            lo = tl.minimum(lo, tl.min(tl.where(v, xf, float("inf")), axis=0))
            hi = tl.maximum(hi, tl.max(tl.where(v, xf, float("-inf")), axis=0))
            am = tl.maximum(am, tl.max(tl.where(v, tl.abs(xf), 0.0), axis=0))
        if NEED_SS:
            xv = tl.where(v, xf, 0.0)
            ss += tl.sum(xv * xv, axis=0)
    out = pid_s * C + cols
    if NEED_MM:
        tl.store(lo_ptr + out, lo, mask=cmask)
        tl.store(hi_ptr + out, hi, mask=cmask)
        tl.store(amax_ptr + out, am, mask=cmask)
    if NEED_SS:
        tl.store(ss_ptr + out, ss, mask=cmask)


def _dequant_kernel(packed_ptr, scale_ptr, zero_ptr, slot_ptr, outl_ptr, out_ptr, add_ptr,
                    R, C, N, CO, K, PW,
                    MODE: tl.constexpr, BITS: tl.constexpr, SYM: tl.constexpr, HAS_OUTL: tl.constexpr,
                    RAGGED: tl.constexpr, EVEN: tl.constexpr, INT64: tl.constexpr, OUT_BF16: tl.constexpr,
                    HAS_ADD: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """Unpack a tile of codes, apply its parameters (MODE as in ``_quant_kernel``; for MODE 1 the tile is one
    token group tall), store contiguous output. Outlier channels are scattered after the launch, except for
    RAGGED groups (HAS_OUTL), where this kernel writes them. HAS_ADD: add the contiguous tensor at ``add_ptr`` to
    the value rounded to the output dtype, in fp32, and round once more (:func:`dequantize_add`)."""
    PER: tl.constexpr = 8 // BITS
    QMAX: tl.constexpr = 2 ** (BITS - 1) - 1
    pid_r, pid_c, rows, cols, r2, c2, flat, mask = _tile(R, C, N, RAGGED, EVEN, INT64, BLOCK_R, BLOCK_C)
    pcols = pid_c * (BLOCK_C // PER) + tl.arange(0, BLOCK_C // PER)
    if EVEN:
        pk = tl.load(packed_ptr + r2 * PW + pcols[None, :])
    else:
        pk = tl.load(packed_ptr + r2 * PW + pcols[None, :], mask=(r2 < R) & (pcols[None, :] < PW), other=0)
    pk = pk.to(tl.int32)
    if PER == 1:
        q = pk
    else:
        sh = tl.arange(0, PER) * BITS
        q = tl.reshape((pk[:, :, None] >> sh[None, None, :]) & (2**BITS - 1), (BLOCK_R, BLOCK_C))
    qf = q.to(tl.float32)
    if MODE == 0:
        pidx = rows * (C // BLOCK_C) + pid_c
        pm = rows < R
        s = tl.load(scale_ptr + pidx, mask=pm, other=1.0).to(tl.float32)[:, None]
        if not SYM:
            z = tl.load(zero_ptr + pidx, mask=pm, other=0.0).to(tl.float32)[:, None]
    else:
        if MODE == 1:
            pidx = pid_r * C + cols
        else:
            pidx = cols
        pm = cols < C
        s = tl.load(scale_ptr + pidx, mask=pm, other=1.0).to(tl.float32)[None, :]
        if not SYM:
            z = tl.load(zero_ptr + pidx, mask=pm, other=0.0).to(tl.float32)[None, :]
    if SYM:
        v = (qf - QMAX) * s
    else:
        v = qf * s + z  # code * scale is exact (NOTE [Quant layout]): fused or not, one rounding
    if OUT_BF16:
        v = _bf16_nearest(v)
    y = v.to(out_ptr.dtype.element_ty)
    if HAS_OUTL:
        slot = tl.load(slot_ptr + flat % CO, mask=mask, other=-1)
        is_o = mask & (slot >= 0)
        ov = tl.load(outl_ptr + (flat // CO) * K + slot, mask=is_o, other=0.0)
        y = tl.where(is_o, ov, y)
    if HAS_ADD:
        if EVEN:
            a = tl.load(add_ptr + flat)
        else:
            a = tl.load(add_ptr + flat, mask=mask, other=0.0)
        w = y.to(tl.float32) + a.to(tl.float32)
        if OUT_BF16:
            w = tl.where(w == w, _bf16_nearest(w), w)  # NaN stays NaN (the bit trick could make it an infinity)
        y = w.to(out_ptr.dtype.element_ty)
    if EVEN:
        tl.store(out_ptr + flat, y)
    else:
        tl.store(out_ptr + flat, y, mask=mask)


# ------------------------------------------------------------------------------------- Triton word kernels
# The fast path for 16-bit data (bf16/fp16) whose channels are contiguous and a multiple of 8 // bits: every
# hidden state of a bf16 model; quantize for groups along the row, dequantize (without the re-add) for every
# granularity. A tile is loaded as integer *words* of PER = 8 // bits elements (int16/32/64), so that a word's codes
# are one packed byte: elements come out of a word, and codes go into a byte, by shifts in registers. (The other
# kernels pack with a reshape and a sum across lanes, a layout change through shared memory: on an H100 that
# packing kernel moved 64% of copy where writing unpacked codes moved 87%.) Outlier channels are gathered
# (quantize) and put back (dequantize) in the same pass, through per-block slot tables, instead of an
# ``index_select``/``index_copy_`` pass of their own. Same formulas, so the same bytes and values, as
# ``_quant_kernel``/``_dequant_kernel``, which remain the path for every other case and the checked re-run.
# (Per-token-group quantize on words ran at half the element kernel's rate on an H200, 13% of copy against 24%:
# benchmarks/results/2026-11-30-h200-bench_quant-word-v1.json; it stays on ``_quant_kernel``.)
_WORD = {1: torch.int16, 2: torch.int32, 4: torch.int64}
WORD_KERNELS = True  # False forces the element kernels everywhere (tools/bench_quant.py --element-kernels)
TOKEN_KERNEL = True  # False: token groups' first pass on ``_quant_kernel`` too (benchmarks compare)
# A widened decode (:func:`dequantize_to`) on the element kernel: its outlier channels written in the kernel (True) or
# scattered after it, and its tiles' size (None: _TILE). H200, 4096 and 8192 x 4096, 2 and 4 bits, 0.5% outlier
# channels (benchmarks/experiments/decode_to_tiles.py, docs/benchmarks.md session 31): these defaults (in the kernel,
# 2048 elements, 4 warps) were the fastest at 4096 x 4096 (0.038 ms) and within 20% of it at 8192 x 4096.
WIDE_OUTLIERS_IN_KERNEL = True
_WIDE_TILE: int | None = None
_TOKEN_BLOCK_C = 1024  # channels a program of ``_quant_tokens_kernel`` (8 a thread at 4 warps: 16-byte loads)
_TOKEN_ROWS = 1  # rows a step of its walk: slabs of 2-16 rows were slower (docs/benchmarks.md session 8)
_TOKEN_STAGES = 3  # software-pipelining stages of the walk (tl.range's num_stages): rows' loads kept in flight
# 4-bit token groups of 64 or 128 tokens take ``_quant_token_tile_kernel`` instead: a whole group of
# _TOKEN_TILE_C channels loaded once, at 2 warps. H200, bf16, GPU time, same bits (benchmarks/results/
# 2026-12-01-h200-session18/onepass/onepass2.txt; the library's kernel: recheck/onepass4.txt): 8192 x 4096 at 128
# tokens 89.1 -> 44.3 us (the walk had 256 programs there: 4 column blocks of 1024), at 64 tokens 58.8 -> 45.0;
# 8192 x 11008 142.6 -> 108.7 and 130.5 -> 112.7. At 8 bits the walk stays faster (60 against 68 us, 138 against
# 173), so it keeps them; other widths and group sizes were not measured and keep it too.
_TOKEN_TILE_BITS = (4,)
_TOKEN_TILE_GROUPS = (64, 128)
_TOKEN_TILE_C = 64
_TOKEN_TILE_WARPS = 2


def _elem(w, J: tl.constexpr, F16: tl.constexpr):
    """Element J of a word of 16-bit floats, as fp32 (a bf16's bits are the high half of its fp32's). Works on
    the 32-bit half that holds it: 64-bit shifts cost more instructions, and this kernel is bound by them."""
    if J >= 2:
        h = (w >> 32).to(tl.int32)
    else:
        h = w.to(tl.int32)
    if F16:
        return ((h >> (16 * (J % 2))) & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
    if J % 2 == 0:
        return (h << 16).to(tl.float32, bitcast=True)
    return (h & -65536).to(tl.float32, bitcast=True)


def _to_bits(y, F16: tl.constexpr):
    """fp32 ``y`` holding a value of the 16-bit dtype (bf16: already rounded) -> its 16 bits, as int32."""
    if F16:
        return y.to(tl.float16).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF
    return (y.to(tl.int32, bitcast=True) >> 16) & 0xFFFF


def _min_nan(a, b):
    return tl.minimum(a, b, propagate_nan=tl.PropagateNan.ALL)


def _max_nan(a, b):
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)


def _word_tile(R, CW, EVEN: tl.constexpr, INT64: tl.constexpr, BLOCK_R: tl.constexpr, NG: tl.constexpr,
               BLOCK_W: tl.constexpr, it, ITERS: tl.constexpr):
    """Tile ``it`` of this program's ITERS tiles (stacked down the rows) of BLOCK_R x NG x BLOCK_W of the R x CW
    word matrix: NG blocks of BLOCK_W words side by side along the row (MODE 0: NG groups; otherwise NG = 1).
    Returns the row and column-block ids, rows (BR), word columns (NG x BW), the 3-D row and column offsets and
    the in-bounds mask (all true when EVEN)."""
    pid_r, pid_c, rows = _program_rows(tl.cdiv(CW, NG * BLOCK_W), INT64, BLOCK_R)
    if ITERS > 1:
        rows = rows + (pid_r * (ITERS - 1) + it) * BLOCK_R
    gcol = pid_c * NG + tl.arange(0, NG)
    wcol = gcol[:, None] * BLOCK_W + tl.arange(0, BLOCK_W)[None, :]
    r3 = rows[:, None, None]
    w3 = wcol[None, :, :]
    if EVEN:
        mask = tl.full((BLOCK_R, NG, BLOCK_W), 1, tl.int1)
    else:
        mask = (r3 < R) & (w3 < CW)
    return pid_r, pid_c, rows, gcol, wcol, r3, w3, mask


def _outlier_cols(start_ptr, lanes_ptr, pid_c, KB: tl.constexpr):
    """The outlier channels inside column block ``pid_c``: their slots ``t`` (indices are sorted, so block ``b``
    holds slots ``start[b]...``), channels ``c_t`` and which of the KB lanes are real (``lanes`` is the block's
    channels padded with -1: two independent loads, not a chain through the index)."""
    t = tl.load(start_ptr + pid_c) + tl.arange(0, KB)
    c_t = tl.load(lanes_ptr + pid_c * KB + tl.arange(0, KB))
    return t, c_t, c_t >= 0


def _quant_words_kernel(w_ptr, x_ptr, packed_ptr, scale_ptr, zero_ptr, start_ptr, lanes_ptr, ocode_ptr, keep_ptr,
                        outl_ptr,
                        nf_ptr, R, CW, s_r, K, seed,
                        BITS: tl.constexpr, SYM: tl.constexpr, HAS_OUTL: tl.constexpr, STOCH: tl.constexpr,
                        F16: tl.constexpr, EVEN: tl.constexpr, INT64: tl.constexpr, BLOCK_R: tl.constexpr,
                        NG: tl.constexpr, BLOCK_W: tl.constexpr, KB: tl.constexpr, ITERS: tl.constexpr):
    """``_quant_kernel``'s unchecked first pass on words, for groups along the row (``granularity="group"``): NG
    groups of a row side by side (BLOCK_W words each), so the scales and codes a program writes are contiguous
    along the row (one group per program made scattered 2-byte scale writes the bottleneck: 68% of copy against
    93%).

    The kernel is bound by its instructions per element as much as by memory, so the codes path has none to
    spare: the statistics propagate NaN, so a group holding NaN/Inf shows in its range at no extra reduction and
    raises ``nf_ptr``; codes are not clamped (round to nearest provably stays in range, NOTE [Quant layout]'s
    parameters) and are truncated (their argument is >= 0, so truncation is the floor). Outlier channels
    (HAS_OUTL) read as +0 (NOTE [Quant layout]): one AND a word with a mask (a select per element to leave them
    out instead cost ~20% of the kernel's rate; replacing them by +-inf through two masked copies of the word, 714
    us a GiB, every element then extracted twice). At 4 and 8 bits the mask is read from ``keep_ptr`` (a table of
    one word per word of channels, made once per outlier index) where it is used, and so is ``ocode`` (the code
    bits of a word's outlier lanes, cleared to code 0): neither stays live across the statistics, +6-9 points of
    copy at 64 MiB-1 GiB on an H200 (session 8). At 2 bits (64-bit words) the table was slower (59-67% against
    70-79%): the mask is built once per program from ``ocode``, as are the outlier slots; a program walks ITERS
    row tiles so that they are made once. The outlier columns are copied to ``outl_ptr`` (R x K) by one masked
    gather of the block's KB slots."""
    PER: tl.constexpr = 8 // BITS
    QMAX: tl.constexpr = 2 ** (BITS - 1) - 1
    LEVELS: tl.constexpr = 2**BITS - 1
    C = CW * PER
    if HAS_OUTL:  # the program's columns are the same in every tile: their outlier lanes once
        _, pid_c0, _, _, _, _, w30, _ = _word_tile(R, CW, EVEN, INT64, BLOCK_R, NG, BLOCK_W, 0, ITERS)
        t, c_t, tm = _outlier_cols(start_ptr, lanes_ptr, pid_c0, KB)
        if PER == 4:
            oc = tl.load(ocode_ptr + w30, mask=w30 < CW, other=0).to(tl.int32)
            keep = tl.zeros(oc.shape, tl.int64)  # the word's bits outside its outlier lanes
            for j in tl.static_range(PER):
                keep = keep | ((1 - ((oc >> (BITS * j)) & 1)).to(tl.int64) * 0xFFFF) << (16 * j)
            keep = keep.to(w_ptr.dtype.element_ty)
    for it in tl.static_range(ITERS):  # unrolled: 70 -> 60 registers, +3-4 points of copy at 256 MiB-1 GiB
        pid_r, pid_c, rows, gcol, wcol, r3, w3, mask = _word_tile(R, CW, EVEN, INT64, BLOCK_R, NG, BLOCK_W, it,
                                                                  ITERS)
        if EVEN:
            w = tl.load(w_ptr + r3 * s_r + w3)
        else:
            w = tl.load(w_ptr + r3 * s_r + w3, mask=mask, other=0)
        if HAS_OUTL:  # outlier lanes read +0 from here on (their codes are cleared below)
            if PER == 4:
                w = w & keep
            elif EVEN:  # the table's word of each column, the same for every row
                w = w & tl.load(keep_ptr + (w3 + 0 * r3))
            else:
                w = w & tl.load(keep_ptr + (w3 + 0 * r3), mask=mask, other=0)
        # masked lanes: whole rows or groups, never stored
        lo = tl.full((BLOCK_R, NG, BLOCK_W), float("inf"), tl.float32)
        hi = -lo
        for j in tl.static_range(PER):
            e = _elem(w, j, F16)
            if SYM:
                e = tl.abs(e)
            else:
                lo = _min_nan(lo, e)
            hi = _max_nan(hi, e)
        hi = tl.reduce(hi, 2, _max_nan)
        if SYM:
            lo = hi
        else:
            lo = tl.reduce(lo, 2, _min_nan)
        d = hi - lo  # NaN or +inf iff the group holds a NaN or an infinity
        pm = (rows < R)[:, None] & (gcol < CW // BLOCK_W)[None, :]
        tl.store(nf_ptr + (rows[:, None] + gcol[None, :]) * 0, 1, mask=((d != d) | (d == float("inf"))) & pm)
        sc, zp = _group_params(lo, hi, SYM, BITS)
        pidx = rows[:, None] * (CW // BLOCK_W) + gcol[None, :]
        tl.store(scale_ptr + pidx, sc.to(tl.bfloat16), mask=pm)
        if not SYM:
            tl.store(zero_ptr + pidx, zp.to(tl.bfloat16), mask=pm)
        inv = tl.math.div_rn(1.0, sc)[:, :, None]
        z = zp[:, :, None]
        pk = tl.zeros((BLOCK_R, NG, BLOCK_W), tl.int32)
        for j in tl.static_range(PER):
            e = _elem(w, j, F16)
            if STOCH:
                rnd = _hash_uniform(r3 * C + w3 * PER + j, seed)
            else:
                rnd = 0.5
            # Launched without fp fusion, so each step rounds as the reference's. Outlier lanes read 0, inside
            # their group's range: an in-range code, cleared below. Lanes of masked rows or groups and (until the
            # checked re-run, which rewrites every byte) non-finite lanes may spill into their word's other codes.
            if SYM:
                q = tl.floor(e * inv + rnd).to(tl.int32) + QMAX
                if STOCH:
                    q = tl.minimum(tl.maximum(q, 0), 2 * QMAX)
            else:
                q = ((e - z) * inv + rnd).to(tl.int32)
                if STOCH:
                    q = tl.minimum(q, LEVELS)
            pk = pk | (q << (BITS * j))
        if HAS_OUTL:
            if PER == 4:
                pk = pk & ~oc
            else:
                pk = pk & ~tl.load(ocode_ptr + (w3 + 0 * r3), mask=w3 < CW, other=0).to(tl.int32)
        if EVEN:
            tl.store(packed_ptr + r3 * CW + w3, pk.to(tl.uint8))
        else:
            tl.store(packed_ptr + r3 * CW + w3, pk.to(tl.uint8), mask=mask)
        if HAS_OUTL:  # last: the tile's rows are in L1 by now, and the lanes long loaded
            rm = (rows < R)[:, None] & tm[None, :]
            col = tl.load(x_ptr + rows[:, None] * (s_r * PER) + c_t[None, :], mask=rm)
            tl.store(outl_ptr + rows[:, None] * K + t[None, :], col, mask=rm)


def _dequant_words_kernel(packed_ptr, scale_ptr, zero_ptr, start_ptr, lanes_ptr, outl_ptr, out_ptr, oute_ptr,
                          R, CW, K,
                          MODE: tl.constexpr, BITS: tl.constexpr, SYM: tl.constexpr, HAS_OUTL: tl.constexpr,
                          F16: tl.constexpr, EVEN: tl.constexpr, INT64: tl.constexpr,
                          BLOCK_R: tl.constexpr, NG: tl.constexpr, BLOCK_W: tl.constexpr, KB: tl.constexpr):
    """``_dequant_kernel`` on words (tiles as ``_quant_words_kernel``; MODE as ``_tiles``): each packed byte
    becomes one output word (``out_ptr``). A program whose columns hold outlier channels then writes their
    columns over its tile (``oute_ptr``: the same output, by element) after a barrier. (The fused LoRA re-add
    stays on ``_dequant_kernel``: loading the fp32 branch a lane of a word at a time made it 2.5x slower there.)"""
    PER: tl.constexpr = 8 // BITS
    QMAX: tl.constexpr = 2 ** (BITS - 1) - 1
    pid_r, pid_c, rows, gcol, wcol, r3, w3, mask = _word_tile(R, CW, EVEN, INT64, BLOCK_R, NG, BLOCK_W, 0, 1)
    C = CW * PER
    if EVEN:
        pk = tl.load(packed_ptr + r3 * CW + w3).to(tl.int32)
    else:
        pk = tl.load(packed_ptr + r3 * CW + w3, mask=mask, other=0).to(tl.int32)
    ch = w3 * PER
    if MODE == 0:
        pidx = rows[:, None] * (CW // BLOCK_W) + gcol[None, :]
        pm = (rows < R)[:, None] & (gcol < CW // BLOCK_W)[None, :]
        s = tl.load(scale_ptr + pidx, mask=pm, other=1.0).to(tl.float32)[:, :, None]
        if not SYM:
            z = tl.load(zero_ptr + pidx, mask=pm, other=0.0).to(tl.float32)[:, :, None]
    if PER == 4:
        acc = tl.zeros((BLOCK_R, NG, BLOCK_W), tl.int64)
    else:
        acc = tl.zeros((BLOCK_R, NG, BLOCK_W), tl.int32)
    for j in tl.static_range(PER):
        if MODE != 0:
            pidx = ch + j
            if MODE == 1:
                pidx += pid_r * C
            s = tl.load(scale_ptr + pidx, mask=w3 < CW, other=1.0).to(tl.float32)
            if not SYM:
                z = tl.load(zero_ptr + pidx, mask=w3 < CW, other=0.0).to(tl.float32)
        qf = ((pk >> (BITS * j)) & (2**BITS - 1)).to(tl.float32)
        if SYM:
            y = (qf - QMAX) * s
        else:
            y = qf * s + z  # exact product (NOTE [Quant layout]): one rounding, fused or not
        acc = acc | (_to_bits(_round_to(y, F16), F16).to(acc.dtype) << (16 * j))
    if PER == 1:
        acc = acc.to(tl.int16)
    if EVEN:
        tl.store(out_ptr + r3 * CW + w3, acc)
    else:
        tl.store(out_ptr + r3 * CW + w3, acc, mask=mask)
    if HAS_OUTL:
        t, c_t, tm = _outlier_cols(start_ptr, lanes_ptr, pid_c, KB)
        if tl.max(tm.to(tl.int32), axis=0) != 0:
            tl.debug_barrier()  # the tile's words are written: the outlier columns go over them
            rm = (rows < R)[:, None] & tm[None, :]
            ov = tl.load(outl_ptr + rows[:, None] * K + t[None, :], mask=rm)
            tl.store(oute_ptr + rows[:, None] * C + c_t[None, :], ov, mask=rm)


def _round_to(y, F16: tl.constexpr):
    """fp32 -> the nearest value of the 16-bit output dtype (still fp32)."""
    if F16:
        return y.to(tl.float16).to(tl.float32)
    return _bf16_nearest(y)


@once
def _build() -> None:
    """Apply ``triton.jit`` to the kernel sources, once (kernels/jit.py)."""
    build(globals(), _JIT_NAMES, {"_quant_kernel": ["seed"]})


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _pow2(v: int) -> bool:
    return v > 0 and v & (v - 1) == 0


def _next_pow2(v: int) -> int:
    return 1 << max(0, (v - 1).bit_length())


def _needs_int64(*extents: int) -> bool:
    """True when an element offset may pass int32 (tensors over 2^31 elements, or huge strides)."""
    return max(extents) >= 2**31 - 1


def _row_chunks(rows: int, device: torch.device) -> tuple[int, int]:
    """(rows per program, programs down the tokens) for the per-channel statistics pass: about 4 programs per
    SM over the tokens; rows per program a power of two >= 32 (a compile-time loop bound: few variants)."""
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1
    per = max(32, _next_pow2(_cdiv(rows, 4 * sms)))
    return per, _cdiv(rows, per)


def _tiles(granularity: str, g: int, c: int, bits: int, tile: int | None = None) -> tuple[int, int, int]:
    """(mode, BLOCK_R, BLOCK_C) for one granularity, tiles of up to ``tile`` elements (default ``_TILE``)."""
    per, tile = 8 // bits, tile or _TILE
    if granularity == "group":
        return 0, max(1, tile // g), g
    if granularity == "token_group":
        return 1, g, max(per, min(_next_pow2(c), tile // g))
    return 2, 32, max(per, min(_next_pow2(c), 128))


def _word_tiles(granularity: str, g: int, cw: int, per: int, tile: int | None = None) -> tuple[int, int, int, int]:
    """(mode, BLOCK_R, NG, BLOCK_W) of the word kernels. MODE 0 puts NG groups of a row side by side: the
    largest power of two up to ``_WORD_TILE / g`` that divides the groups of a row (masked tiles when that is
    below 4), then rows up to ``tile`` elements (default ``_WORD_TILE``). MODE 1 (token groups): one group tall and
    ``_WORD_TOKEN_COLS`` channels wide, up to ``_WORD_TOKEN_TILE`` elements. MODE 2: :func:`_tiles`' tiles, counted
    in words."""
    if granularity == "group":
        tile = tile or _WORD_TILE
        groups, cap = cw * per // g, max(1, min(_WORD_TILE, tile) // g)
        ng = min(cap, groups & -groups)  # the largest power of two dividing ``groups``
        if ng < min(4, cap, groups):
            ng = min(cap, _next_pow2(groups))
        return 0, max(1, tile // (g * ng)), ng, g // per
    if granularity == "token_group":
        cols = min(_WORD_TOKEN_COLS, max(per, _WORD_TOKEN_TILE // g))
        return 1, g, 1, max(1, min(_next_pow2(cw), cols // per))
    return 2, 32, 1, max(1, min(_next_pow2(cw), 128 // per))


def _word_iters(r: int, br: int, ncb: int) -> int:
    """ITERS of ``_quant_words_kernel``: tiles a program walks down the rows, so that a column block's outlier
    lanes are decoded once for that many tiles; 1 where the grid would get too small to keep the device busy
    (fewer than ``_WORD_ITERS_MIN_PROGRAMS`` programs)."""
    return _WORD_ITERS if _cdiv(r, br * _WORD_ITERS) * ncb >= _WORD_ITERS_MIN_PROGRAMS else 1


def _words_apply(dtype: torch.dtype, c: int, bits: int) -> bool:
    """The word kernels take 16-bit data whose rows hold whole words of PER = 8 // bits channels."""
    return WORD_KERNELS and dtype in (torch.bfloat16, torch.float16) and c % (8 // bits) == 0


def _as_words(x2: torch.Tensor, bits: int) -> torch.Tensor | None:
    """``x2`` (R x C) as R x C/PER integer words for the word kernels, or None where they do not apply: not a
    16-bit float, C not a multiple of PER = 8 // bits, channels not contiguous, rows or start not word-aligned."""
    if not _words_apply(x2.dtype, x2.shape[1], bits):
        return None
    try:
        return x2.view(_WORD[8 // bits])
    except RuntimeError:  # torch's own alignment rules for a dtype view (stride 1, divisible strides and offset)
        return None


def _outlier_table(outlier_index: torch.Tensor, kind: str, c: int, block: int = 0) -> torch.Tensor:
    """A table derived from the (calibrated, hence reused) outlier indices, built once instead of per call:
    ``"slot"``: :func:`outlier_slots`; ``"start"``: for each block of ``block`` channels, the number of outlier
    channels before it (``C / block + 1`` int32: block ``b`` holds slots ``start[b]:start[b+1]``); ``"lanes"``:
    each block's outlier channels, ``C / block`` x :func:`_outlier_lanes` int32 padded with -1; ``"words"``:
    one uint8 per word of ``block`` channels (8 // block bits a code): the code bits of its outlier channels;
    ``"keep"``: one int16 (``block`` 1) or int32 (2) word per word of channels, 0xFFFF in each 16-bit lane that
    is not an outlier channel."""
    tables = getattr(outlier_index, "_hyclora_tables", None)  # on the tensor: lives and dies with it
    if tables is None:
        tables = outlier_index._hyclora_tables = {}
    key = (kind, c, block, outlier_index._version)
    if key not in tables:
        dev = outlier_index.device
        if kind == "slot":
            tables[key] = outlier_slots(outlier_index, c, dev)
        elif kind == "start":
            edges = torch.arange(0, _cdiv(c, block) + 1, device=dev, dtype=torch.int64) * block
            tables[key] = torch.searchsorted(outlier_index.long(), edges).to(torch.int32)
        elif kind == "lanes":
            kb = _outlier_lanes(outlier_index.numel(), block)
            idx = outlier_index.long()
            start = _outlier_table(outlier_index, "start", c, block).long()
            lane = torch.arange(idx.numel(), device=dev) - start[idx // block]
            lanes = torch.full((_cdiv(c, block), kb), -1, dtype=torch.int32, device=dev)
            lanes[idx // block, lane] = idx.to(torch.int32)
            tables[key] = lanes
        elif kind == "keep":
            hit = torch.zeros(c, dtype=torch.int64, device=dev)
            hit.index_fill_(0, outlier_index.long(), 1)
            shift = torch.arange(block, device=dev, dtype=torch.int64) * 16
            keep = ((1 - hit.view(-1, block)) * 0xFFFF << shift).sum(1)
            top = 1 << (16 * block)  # the unsigned word as the signed integer of its bits
            tables[key] = torch.where(keep >= top // 2, keep - top, keep).to(_WORD[block])
        else:
            bits = 8 // block
            hit = torch.zeros(c, dtype=torch.int32, device=dev)
            hit.index_fill_(0, outlier_index.long(), 2**bits - 1)  # (``hit[i] = v`` copies v from the host: a wait)
            shift = torch.arange(block, device=dev, dtype=torch.int32) * bits
            tables[key] = (hit.view(-1, block) << shift).sum(1).to(torch.uint8)
    return tables[key]


def _outlier_lanes(k: int, block: int) -> int:
    """KB: lanes for one block's outlier channels (at most ``k`` of them, and at most ``block``)."""
    return _next_pow2(max(1, min(k, block)))


def triton_supports(granularity: str, group_size: int) -> bool:
    """Groups must be a power of two for the kernel's tiles (everything else takes the reference)."""
    return granularity == "channel" or (_pow2(group_size) and group_size <= _TILE)


def quantize_triton(x: torch.Tensor, bits: int, group_size: int, symmetric: bool = False,
                    granularity: str = "group", outlier_index: torch.Tensor | None = None,
                    seed: int | None = None, sumsq_out: list | None = None) -> QuantizedTensor:
    """The kernel path of :func:`quantize`: same :class:`QuantizedTensor`, same bytes (NOTE [Quant layout])."""
    shape, dtype, g = x.shape, x.dtype, group_size
    r, c = as_matrix_shape(shape)
    n = r * c
    if n == 0 or not triton_supports(granularity, g):
        return quantize_ref(x, bits, g, symmetric, granularity, outlier_index, seed)
    _build()
    dev = x.device
    x2 = x.reshape(r, c)  # a view when the leading dims collapse (any 2-D strides), else one copy
    if granularity == "group" and c % g == 0:
        words = _as_words(x2, bits)
        if words is not None:
            return _quantize_words(x, x2, words, bits, g, symmetric, outlier_index, seed)
    ragged = granularity == "group" and c % g != 0
    if ragged:  # groups span rows: the kernel walks the contiguous flat tensor as ngroups x g
        x2 = x2.contiguous()
    per = 8 // bits
    if granularity == "group":
        ngroups = -(-n // g)
        packed = torch.empty((ngroups, g * bits // 8), dtype=torch.uint8, device=dev)
        scale = torch.empty(ngroups, dtype=PARAM_DTYPE, device=dev)
    else:
        packed = torch.empty((r, -(-c // per)), dtype=torch.uint8, device=dev)
        scale = torch.empty((-(-r // g), c) if granularity == "token_group" else (c,), dtype=PARAM_DTYPE, device=dev)
    zero = None if symmetric else torch.empty_like(scale)
    outl = None
    if outlier_index is not None:  # a gather of k columns here; the ragged kernel stores them itself
        k = outlier_index.numel()
        outl = torch.empty((r, k), dtype=dtype, device=dev) if ragged else x2.index_select(1, outlier_index.long())
    nf = host_flag(dev)  # NOTE [Deferred non-finite check] rule 5

    if granularity == "channel":  # one reduction pass over all tokens, then the parameters as the reference does
        rows_per, split = _row_chunks(r, dev)
        parts = [torch.empty((split, c), dtype=torch.float32, device=dev) for _ in range(3)]
        sbc = max(per, min(_next_pow2(c), 128))
        _colstats_kernel[(_cdiv(c, sbc), split)](
            x2, parts[0], parts[1], parts[2], nf, r, c, x2.stride(0), x2.stride(1), rows_per,
            NEED_MM=True, NEED_SS=False, INT64=_needs_int64(n + c, r * max(x2.stride(0), 1) + c * max(x2.stride(1), 1)),
            BLOCK_R=32, BLOCK_C=sbc, num_warps=4)
        lo, hi, amax = parts[0].amin(0), parts[1].amax(0), parts[2].amax(0)
        if outlier_index is not None:  # outlier channels hold nothing to quantize (as in the reference)
            ol = outlier_index.long()
            lo[ol], hi[ol], amax[ol] = float("inf"), float("-inf"), 0.0
        s_, z_ = params_from_stats(lo, hi, amax, bits, symmetric)
        scale.copy_(s_)
        if zero is not None:
            zero.copy_(z_)

    def launch(checked: bool) -> None:
        if granularity == "token_group" and not checked and TOKEN_KERNEL:
            _launch_quant_tokens(x2, packed, scale, zero, nf, bits, g, symmetric, outlier_index, seed)
        else:
            _launch_quant_elements(x2, packed, scale, zero, outl, nf, bits, g, symmetric, granularity, outlier_index,
                                   seed, ragged, checked)

    launch(False)
    # The flag is read later: no wait for the GPU here. If it is raised, the settle re-runs the kernel CHECKED
    # into the same buffers before gathering the values (NOTE [Deferred non-finite check]).
    nonfinite = Nonfinite.find(x2, nf, outlier_index, repair=lambda: launch(True))
    oi = outlier_index.contiguous() if outlier_index is not None else None
    return QuantizedTensor(packed, scale, zero, nonfinite, shape, dtype, bits, g, granularity, oi, outl)


def _launch_quant_elements(x2: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None,
                           outl: torch.Tensor | None, nf: torch.Tensor, bits: int, g: int, symmetric: bool,
                           granularity: str, outlier_index: torch.Tensor | None, seed: int | None, ragged: bool,
                           checked: bool) -> None:
    """One launch of ``_quant_kernel`` over the R x C ``x2`` (contiguous when ``ragged``): the first, unchecked
    pass of the element path, or the CHECKED re-run of either path into the same buffers."""
    r, c = x2.shape
    n = r * c
    kr, kc, sr, sc = (-(-n // g), g, g, 1) if ragged else (r, c, x2.stride(0), x2.stride(1))
    mode, br, bc = _tiles(granularity, g, c, bits)
    pw = (c if not ragged else g) * bits // 8 if granularity == "group" else packed.shape[1]
    k = 0 if outlier_index is None else outlier_index.numel()
    slot = _outlier_table(outlier_index, "slot", c) if outlier_index is not None else nf
    _quant_kernel[(_cdiv(kc, bc) * _cdiv(kr, br),)](
        x2, packed, scale, zero if zero is not None else scale, slot, outl if outl is not None else x2, nf,
        kr, kc, sr, sc, n, c, k, pw, 0 if seed is None else seed & _M32,
        MODE=mode, BITS=bits, SYM=symmetric, HAS_OUTL=outlier_index is not None, STOCH=seed is not None,
        RAGGED=ragged, EVEN=not ragged and kr % br == 0 and kc % bc == 0,
        INT64=_needs_int64(n + kc, kr * max(sr, 1) + kc * max(sc, 1)), CHECKED=checked, BLOCK_R=br, BLOCK_C=bc,
        num_warps=_WARPS, enable_fp_fusion=False)


def _launch_quant_tokens(x2: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None,
                         nf: torch.Tensor, bits: int, g: int, symmetric: bool, outlier_index: torch.Tensor | None,
                         seed: int | None) -> None:
    """The unchecked first pass of token groups through its launch plan: ``_quant_token_tile_kernel`` for the widths
    and group sizes measured faster with it (``_TOKEN_TILE_BITS``), else ``_quant_tokens_kernel``."""
    r, c = x2.shape
    s_r, s_c = x2.stride(0), x2.stride(1)
    k = 0 if outlier_index is None else outlier_index.numel()
    tile = bits in _TOKEN_TILE_BITS and g in _TOKEN_TILE_GROUPS

    def make() -> tuple:
        block_c = max(8 // bits, min(_TOKEN_TILE_C if tile else _TOKEN_BLOCK_C, _next_pow2(c)))
        meta = dict(BITS=bits, SYM=symmetric, HAS_OUTL=k > 0, STOCH=seed is not None,
                    INT64=_needs_int64(r * c + c, r * max(s_r, 1) + c * max(s_c, 1)), G=g, BLOCK_C=block_c,
                    enable_fp_fusion=False)
        own = dict(num_warps=_TOKEN_TILE_WARPS) if tile else dict(RB=min(g, _TOKEN_ROWS), STAGES=_TOKEN_STAGES,
                                                                  num_warps=_WARPS)
        return (_cdiv(c, block_c), _cdiv(r, g)), dict(meta, **own)
    grid, meta, launches = _cached_plan(("quant_tokens", r, c, s_r, s_c, bits, g, symmetric, k > 0, seed is not None,
                                         tile, _TOKEN_TILE_C, _TOKEN_TILE_WARPS, _TOKEN_BLOCK_C, _TOKEN_ROWS,
                                         _TOKEN_STAGES, _WARPS), make)
    slot = _outlier_table(outlier_index, "slot", c) if k else nf
    launch(_quant_token_tile_kernel if tile else _quant_tokens_kernel, grid, launches,
           (x2, packed, scale, zero if zero is not None else scale, slot, nf, r, c, s_r, s_c, packed.shape[1],
            0 if seed is None else seed & _M32), meta)


# Launch plans by (kernel, shape, layout, codec, tile knobs): a training step quantizes the same shapes every step,
# and deciding tiles and flags again was a third of a call's host time (session 7). Each plan ends with its
# direct-launch cache (NOTE [Direct launch] in kernels/launch.py).
_PLANS: dict = {}


def _cached_plan(key: tuple, make: Callable[[], tuple]) -> tuple:
    """``make()`` plus an empty direct-launch cache, made once per ``key``."""
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) >= 4096:  # shapes that keep changing (variable sequence lengths) must not pile up
            _PLANS.clear()
        plan = _PLANS[key] = make() + ({},)
    return plan


def _word_quant_plan(r: int, cw: int, s_r: int, dtype: torch.dtype, bits: int, g: int, symmetric: bool, k: int,
                     stochastic: bool) -> tuple:
    """(grid, outlier block width, compile-time values and options, direct-launch cache) of
    ``_quant_words_kernel``."""
    def make() -> tuple:
        per = 8 // bits
        has = k > 0
        _, wbr, ng, wbw = _word_tiles("group", g, cw, per, _WORD_TILE_OUTLIERS if has else None)
        block = ng * wbw * per
        iters = 1 if has else _word_iters(r, wbr, _cdiv(cw, ng * wbw))
        meta = dict(BITS=bits, SYM=symmetric, HAS_OUTL=has, STOCH=stochastic, F16=dtype == torch.float16,
                    EVEN=r % (wbr * iters) == 0 and cw % (ng * wbw) == 0,
                    INT64=_needs_int64(r * cw * per + cw * per, r * max(s_r, 1) * per + cw * per),
                    BLOCK_R=wbr, NG=ng, BLOCK_W=wbw, KB=_outlier_lanes(k, block), ITERS=iters, num_warps=_WARPS,
                    enable_fp_fusion=False)
        return (_cdiv(cw, ng * wbw) * _cdiv(r, wbr * iters),), block, meta
    return _cached_plan(("quant_words", r, cw, s_r, dtype, bits, g, symmetric, k, stochastic, _WORD_TILE,
                         _WORD_TILE_OUTLIERS, _WORD_ITERS, _WORD_ITERS_MIN_PROGRAMS, _WARPS), make)


def _quantize_words(x: torch.Tensor, x2: torch.Tensor, words: torch.Tensor, bits: int, g: int, symmetric: bool,
                    outlier_index: torch.Tensor | None, seed: int | None) -> QuantizedTensor:
    """``quantize_triton`` for groups along the row of 16-bit data in whole words (every bf16 hidden state): one
    pass of ``_quant_words_kernel`` through its launch plan; outlier columns stored by the kernel."""
    r, cw = words.shape
    per = 8 // bits
    c = cw * per
    dev = x.device
    k = 0 if outlier_index is None else outlier_index.numel()
    grid, block, meta, launches = _word_quant_plan(r, cw, words.stride(0), x.dtype, bits, g, symmetric, k,
                                                   seed is not None)
    ngroups = r * c // g
    packed = torch.empty((ngroups, g * bits // 8), dtype=torch.uint8, device=dev)
    scale = torch.empty(ngroups, dtype=PARAM_DTYPE, device=dev)
    zero = None if symmetric else torch.empty(ngroups, dtype=PARAM_DTYPE, device=dev)
    nf = host_flag(dev)  # NOTE [Deferred non-finite check] rule 5
    if k:
        outl = torch.empty((r, k), dtype=x.dtype, device=dev)
        tables = (_outlier_table(outlier_index, "start", c, block), _outlier_table(outlier_index, "lanes", c, block),
                  _outlier_table(outlier_index, "words", c, per),
                  _outlier_table(outlier_index, "keep", c, per) if per < 4 else nf, outl)
    else:
        outl, tables = None, (nf,) * 5
    launch(_quant_words_kernel, grid, launches, (words, x2, packed, scale, zero if zero is not None else scale,
                                                 *tables, nf, r, cw, words.stride(0), k,
                                                 0 if seed is None else seed & _M32), meta)
    nonfinite = Nonfinite.find(x2, nf, outlier_index, repair=lambda: _launch_quant_elements(
        x2, packed, scale, zero, outl, nf, bits, g, symmetric, "group", outlier_index, seed, False, True))
    oi = outlier_index.contiguous() if outlier_index is not None else None
    return QuantizedTensor(packed, scale, zero, nonfinite, x.shape, x.dtype, bits, g, "group", oi, outl)


def channel_sumsq_triton(x: torch.Tensor) -> torch.Tensor:
    """:func:`channel_sumsq` in one kernel pass (fp32 partial sums: a different order than the reference)."""
    _build()
    r, c = as_matrix_shape(x.shape)
    x2 = x.reshape(r, c)
    dev = x.device
    rows_per, split = _row_chunks(r, dev)
    ss = torch.empty((split, c), dtype=torch.float32, device=dev)
    bc = min(_next_pow2(c), 128)
    int64 = _needs_int64(r * max(x2.stride(0), 1) + c * max(x2.stride(1), 1))
    _colstats_kernel[(_cdiv(c, bc), split)](
        x2, ss, ss, ss, ss, r, c, x2.stride(0), x2.stride(1), rows_per,
        NEED_MM=False, NEED_SS=True, INT64=int64, BLOCK_R=32, BLOCK_C=bc, num_warps=4)
    return ss.sum(0)


def dequantize_triton(q: QuantizedTensor, add: torch.Tensor | None = None,
                      dtype: torch.dtype | None = None) -> torch.Tensor:
    """The kernel path of :func:`dequantize` (same values as :func:`dequantize_ref`, bit for bit), or of
    :func:`dequantize_add` with ``add`` (contiguous, ``q.shape``); ``dtype`` (no ``add``): written widened to that
    dtype in the same pass, the bits of ``dequantize(q).to(dtype)`` (:func:`dequantize_to`)."""
    Nonfinite.settled(q.nonfinite)  # a pending check may still rewrite the codes (its repair): settle first
    r, c = as_matrix_shape(q.shape)
    n = r * c
    wide = dtype is not None and dtype != q.dtype
    if wide and q.dtype != torch.bfloat16:  # the kernel rounds to bf16 alone (OUT_BF16): decode, then cast
        return dequantize_triton(q).to(dtype)
    if n == 0 or not triton_supports(q.granularity, q.group_size):
        out = dequantize_ref(q) if add is None else add_rounded(dequantize_ref(q), add, q.dtype)
        return out.to(dtype) if wide else out
    _build()
    g = q.group_size
    dev = q.packed.device
    out = torch.empty(n, dtype=dtype if wide else q.dtype, device=dev)
    ragged = q.granularity == "group" and c % g != 0
    if add is None and not wide and not ragged and _words_apply(q.dtype, c, q.bits):
        _dequantize_words(q, out, r, c)
    else:
        _dequantize_tiles(q, out, add, r, c, ragged)
    if q.nonfinite is not None:
        q.nonfinite.restore(out, add)
    return out.view(q.shape)


def _dequantize_words(q: QuantizedTensor, out: torch.Tensor, r: int, c: int) -> None:
    """The word kernel's launch (see ``_dequant_words_kernel``): outlier channels in the same pass."""
    has = q.outlier_index is not None
    k = q.outlier_value.shape[1] if has else 0
    grid, block, meta, launches = _word_dequant_plan(r, c, q.dtype, q.bits, q.group_size, q.granularity,
                                                     q.zero is None, k)
    launch(_dequant_words_kernel, grid, launches, (
        q.packed, q.scale, q.zero if q.zero is not None else q.scale,
        _outlier_table(q.outlier_index, "start", c, block) if has else q.scale,
        _outlier_table(q.outlier_index, "lanes", c, block) if has else q.scale,
        q.outlier_value if has else q.scale, out.view(_WORD[8 // q.bits]), out, r, c // (8 // q.bits), k), meta)


def _word_dequant_plan(r: int, c: int, dtype: torch.dtype, bits: int, g: int, granularity: str, symmetric: bool,
                       k: int) -> tuple:
    """(grid, outlier block width, compile-time values and options, direct-launch cache) of
    ``_dequant_words_kernel``."""
    def make() -> tuple:
        per = 8 // bits
        cw = c // per
        mode, br, ng, bw = _word_tiles(granularity, g, cw, per)
        block = ng * bw * per
        meta = dict(MODE=mode, BITS=bits, SYM=symmetric, HAS_OUTL=k > 0, F16=dtype == torch.float16,
                    EVEN=r % br == 0 and cw % (ng * bw) == 0, INT64=_needs_int64(r * c + c),
                    BLOCK_R=br, NG=ng, BLOCK_W=bw, KB=_outlier_lanes(k, block), num_warps=_WARPS)
        return (_cdiv(cw, ng * bw) * _cdiv(r, br),), block, meta
    return _cached_plan(("dequant_words", r, c, dtype, bits, g, granularity, symmetric, k, _WORD_TILE, _TILE,
                         _WORD_TOKEN_COLS, _WORD_TOKEN_TILE, _WARPS), make)


def _dequantize_tiles(q: QuantizedTensor, out: torch.Tensor, add: torch.Tensor | None, r: int, c: int,
                      ragged: bool) -> None:
    """The element kernel's launch (any dtype and layout); outlier channels scattered after it unless ragged or
    widened (:data:`WIDE_OUTLIERS_IN_KERNEL`)."""
    n, g = r * c, q.group_size
    kr, kc = (-(-n // g), g) if ragged else (r, c)
    wide = out.dtype != q.dtype
    mode, br, bc = _tiles(q.granularity, g, c, q.bits, _WIDE_TILE if wide else None)
    if mode == 1:
        bc = max(bc, min(_next_pow2(c), _ELEMENT_TOKEN_COLS))
    pw = c * q.bits // 8 if q.granularity == "group" and not ragged else q.packed.shape[1]
    int64 = _needs_int64(n + kc)
    # outlier channels in the kernel for ragged groups and for a widened output (one pass; a scatter after the
    # kernel would be three more torch calls), else scattered after it
    in_kernel = (ragged or wide and WIDE_OUTLIERS_IN_KERNEL) and q.outlier_index is not None
    slot = _outlier_table(q.outlier_index, "slot", c) if in_kernel else None
    k = 0 if q.outlier_index is None else q.outlier_index.numel()
    even = not ragged and kr % br == 0 and kc % bc == 0
    grid = (_cdiv(kc, bc) * _cdiv(kr, br),)
    meta = dict(MODE=mode, BITS=q.bits, SYM=q.zero is None, HAS_OUTL=in_kernel, RAGGED=ragged, EVEN=even,
                INT64=int64, OUT_BF16=q.dtype == torch.bfloat16, HAS_ADD=add is not None, BLOCK_R=br, BLOCK_C=bc,
                num_warps=_WARPS)
    launch(_dequant_kernel, grid, _TILE_DEQUANT_LAUNCHES.setdefault(tuple(meta.values()), {}), (
        q.packed, q.scale, q.zero if q.zero is not None else q.scale, slot if slot is not None else q.scale,
        q.outlier_value if in_kernel else out, out, add if add is not None else out, kr, kc, n, c, k, pw), meta)
    if q.outlier_index is not None and not in_kernel:
        cols, vals = q.outlier_index.long(), q.outlier_value
        if add is not None:
            vals = add_rounded(vals, add.view(r, c).index_select(1, cols), q.dtype)
        out.view(r, c).index_copy_(1, cols, vals.to(out.dtype))


def dequantize_add(q: QuantizedTensor, add: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """``dequantize(q)`` plus ``add``, added in fp32 and rounded once to ``q.dtype``: how LoRA compensation puts
    the exact LoRA branch back on a stored frozen part (``lineage.lora_combine`` gives the same bits). On CUDA
    one kernel pass that reads the codes and ``add`` and never writes the dequantized tensor."""
    if tuple(add.shape) != tuple(q.shape):
        raise ValueError(f"dequantize_add: add has shape {tuple(add.shape)}, the quantized tensor {tuple(q.shape)}; "
                         "pass a tensor of the quantized tensor's shape")
    if backend == "ref" or (backend == "auto" and not use_triton(q.packed)):
        return add_rounded(dequantize_ref(q), add, q.dtype)
    return dequantize_triton(q, add.contiguous())


def quantize(x: torch.Tensor, bits: int, group_size: int, symmetric: bool = False, granularity: str = "group",
             outlier_index: torch.Tensor | None = None, seed: int | None = None,
             backend: str = "auto") -> QuantizedTensor:
    """The Triton kernel on CUDA (``backend="auto"``), else the reference; the same bytes either way.

    ``backend="triton"`` forces the kernel (on CPU only under ``TRITON_INTERPRET=1``), ``"ref"`` the reference.
    """
    if backend == "ref" or (backend == "auto" and not use_triton(x)):
        return quantize_ref(x, bits, group_size, symmetric, granularity, outlier_index, seed)
    return quantize_triton(x, bits, group_size, symmetric, granularity, outlier_index, seed)


def dequantize(q: QuantizedTensor, backend: str = "auto") -> torch.Tensor:
    """Inverse of :func:`quantize`; the Triton kernel on CUDA, else the reference."""
    if backend == "ref" or (backend == "auto" and not use_triton(q.packed)):
        return dequantize_ref(q)
    return dequantize_triton(q)


def dequantize_to(q: QuantizedTensor, dtype: torch.dtype, backend: str = "auto") -> torch.Tensor:
    """``dequantize(q).to(dtype)``, the same bits, for a wider float ``dtype``: on CUDA the element kernel rounds
    each value to ``q.dtype`` and stores it widened, one pass instead of a decode and a cast (peft's and RMSNorm's
    fp32 copies of a stored bf16 tensor)."""
    if backend == "ref" or (backend == "auto" and not use_triton(q.packed)):
        return dequantize_ref(q).to(dtype)
    return dequantize_triton(q, dtype=dtype)


def outlier_scores(x: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """Per-channel sum of squares (the outlier score): one kernel pass on CUDA, else :func:`channel_sumsq`."""
    if backend == "ref" or (backend == "auto" and not use_triton(x)) or x.numel() == 0:
        return channel_sumsq(x)
    return channel_sumsq_triton(x)
