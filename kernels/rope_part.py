"""A LoRA branch's part carried through rotary embedding, ``rope(P @ W.T)``, in one pass: a Triton kernel, its
plain-PyTorch reference, and the op-by-op replay it replaces (still the path on CPU and for other shapes).

Why: under ``intra_inter`` the query and key SDPA saves are stored as ``q - part`` and rebuilt as ``stored + part``
(NOTE [LoRA part] in ``hyclora_hooks/lineage.py``), where ``part`` is peft's LoRA branch ``(x·A)·(s·B)`` carried
through Hugging Face's rotary embedding ``y * cos + rotate_half(y) * sin``. Replayed op by op that is a K = r
matmul writing ``y``, two products, a negation and a concatenation of halves and a sum: about ten passes over a
T x N tensor, once in the forward and once in the backward, for q and for k of every layer (8.7 ms of a 170 ms
backward at 1 x 8192 tokens, 8 Llama-2-7B-shaped layers, H200). ``rotate_half`` only moves and negates columns
within a head, so ``rotate_half(P @ W.T) = P @ W_rot.T`` with ``W_rot`` the rows of ``W`` moved and negated the
same way: each output tile is two K = r dot products and one write. Since session 22 q and k store their
projections' frozen term ``X·W`` instead (NOTE [Frozen term] in ``hyclora_hooks/tracking.py``), and the kernel's
third use, :func:`rope_rebuild`, reads that term's decode, adds the part and rotates the sum in the same pass; the
part alone and ``rope_combine`` remain for a key a KV cache copied.

Values: the kernel and its reference compute in fp32 (products of the inputs' values, fp32 sums) and round once to
the output dtype, so they agree to the order of the K = r sums and that rounding; the op-by-op replay rounds at
every op. The part need not be one or the other (NOTE [LoRA part]: any part rebuilds the tensor exactly, as long
as the forward and the backward evaluate the same one, and the path is chosen by devices, dtypes and shapes).

Layout: ``y`` is ``P @ W.T`` (M x N, M = B·T, N = H·D) viewed as (B, T, H, D) and transposed to (B, H, T, D), as
Hugging Face's attention does with a projection's output; the result has that layout too.
"""

from __future__ import annotations


import torch

from . import jit, swiglu
from .jit import once
from .launch import launch
from .quant import use_triton

_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
# 32 rows x 2 heads a program, 4 warps: the fastest of 18 variants at 1x8192 and 4x1024 on the H200 (0.076 / 0.044
# ms a subtraction against 0.100 / 0.053 for 64 x 1, the same bits; docs/benchmarks.md session 20)
_BLOCK_M = 32
_WARPS = 4
_HEADS = 2  # heads a program walks, reusing its x·A, cos and sin tiles (where cos and sin are the same for every head)
_launches: dict = {}


def out_dtype(p: torch.Tensor, w: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.dtype:
    """The op-by-op replay's dtype: the matmul's, promoted with cos's and sin's by the products."""
    return torch.promote_types(torch.promote_types(torch.promote_types(p.dtype, w.dtype), cos.dtype), sin.dtype)


def rope_part_ref(p: torch.Tensor, w: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                  shape: tuple[int, int, int, int]) -> torch.Tensor:
    """``(y * cos + rotate_half(y) * sin)`` for ``y = (p @ w.T).view(shape).transpose(1, 2)``, in fp32, rounded once
    to :func:`out_dtype`: the kernel's oracle. ``shape`` is (B, T, H, D)."""
    return rope_part_ops(p.float(), w.float(), cos.float(), sin.float(), shape).to(out_dtype(p, w, cos, sin))


def rope_part_ops(p: torch.Tensor, w: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                  shape: tuple[int, int, int, int]) -> torch.Tensor:
    """The part as it was replayed before the kernel: Hugging Face's rotary embedding op by op, each op rounded to
    the inputs' dtype (what tests and ``tools/check_rope_part.py`` compare the kernel with)."""
    return _rotate(torch.nn.functional.linear(p, w).view(shape).transpose(1, 2), cos, sin)


def _rotate(y: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Hugging Face's rotary embedding of heads ``y`` (..., D), op by op: ``y * cos + rotate_half(y) * sin``."""
    half = y.shape[-1] // 2
    return y * cos + torch.cat((-y[..., half:], y[..., :half]), dim=-1) * sin


def fusable(p: torch.Tensor, w: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
            shape: tuple[int, int, int, int]) -> bool:
    """The kernel's cases: float inputs of one device, ``p`` (..., r) with r <= 64 over M = B·T rows, ``w`` (H·D, r),
    a head size of 32 to 256 and a power of two, cos and sin broadcastable to (B, H, T, D)."""
    b, t, h, d = shape
    r = p.shape[-1] if p.dim() else 0
    tensors = (p, w, cos, sin)
    if any(x.dtype not in _DTYPES or x.device != p.device for x in tensors):
        return False
    if p.numel() != b * t * r or tuple(w.shape) != (h * d, r) or not 1 <= r <= 64:
        return False
    if not 32 <= d <= 256 or d & (d - 1):  # halves of 16 columns or more: the dot's least
        return False
    return _expands_to(cos.shape, (b, h, t, d)) and _expands_to(sin.shape, (b, h, t, d))


def _expands_to(shape: tuple, target: tuple) -> bool:
    """``x.expand(*target)`` works for an ``x`` of ``shape`` (``torch.broadcast_shapes`` costs ~50 us of host time
    a call, and this is asked at every pack of q and k)."""
    if len(shape) > len(target):
        return False
    return all(n == 1 or n == m for n, m in zip(reversed(shape), reversed(target)))


def rope_part(p: torch.Tensor, w: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
              shape: tuple[int, int, int, int], backend: str = "auto") -> torch.Tensor:
    """The part: one Triton pass (:func:`rope_part_ref`'s value) on CUDA (``backend="auto"``) where :func:`fusable`,
    else :func:`rope_part_ops` (the op-by-op replay, on CPU and for shapes the kernel does not take: faster there
    than the fp32 reference). ``backend="triton"`` forces the kernel where fusable (on CPU only under
    ``TRITON_INTERPRET=1``). The choice depends only on the inputs' devices, dtypes and shapes, so a forward and a
    backward evaluating one part take the same path."""
    if (backend == "auto" and not use_triton(p)) or not fusable(p, w, cos, sin, shape):
        return rope_part_ops(p, w, cos, sin, shape)
    return rope_part_triton(p, w, cos, sin, shape)


def rope_lora_part(x: torch.Tensor, b: torch.Tensor, scale: float, dtype: torch.dtype, cos: torch.Tensor,
                   sin: torch.Tensor, shape: tuple[int, int, int, int], backend: str = "auto") -> torch.Tensor:
    """``rope_part(x.to(dtype), (b * scale).to(dtype), cos, sin, shape)``: a LoRA branch's part in its cheap form
    (NOTE [LoRA part] in lineage.py: ``x·A`` and ``s·B`` cast to the tensor's 16-bit dtype). On the kernel path,
    for fp32 factors, the scaling and the casts happen in the kernel with torch's roundings (an fp32 product, then
    round to nearest even), so the value is the same bits without three torch calls a part (each ~30 us of host
    time on the H200's host, docs/benchmarks.md session 14)."""
    if (backend == "auto" and not use_triton(x)) or not lora_fusable(x, b, dtype, cos, sin, shape):
        return rope_part(x.to(dtype), (b * scale).to(dtype), cos, sin, shape, backend)
    return rope_part_triton(x, b, cos, sin, shape, (dtype, scale))


def lora_fusable(x: torch.Tensor, b: torch.Tensor, dtype: torch.dtype, cos: torch.Tensor, sin: torch.Tensor,
                 shape: tuple[int, int, int, int]) -> bool:
    """:func:`rope_lora_part`'s kernel case: fp32 factors the kernel casts to a 16-bit ``dtype``, and :func:`fusable`."""
    return dtype in swiglu.HALVES and x.dtype == torch.float32 and b.dtype == torch.float32 \
        and fusable(x, b, cos, sin, shape)


def part_dtype(p: torch.Tensor, w: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
               cast: tuple[torch.dtype, float] | None = None) -> torch.dtype:
    """The part's dtype on the kernel path: :func:`out_dtype`, or with ``cast`` the cast factors' dtype promoted
    with cos's and sin's."""
    if cast is None:
        return out_dtype(p, w, cos, sin)
    return torch.promote_types(torch.promote_types(cast[0], cos.dtype), sin.dtype)


def rope_combine(t: torch.Tensor, p: torch.Tensor, w: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                 shape: tuple[int, int, int, int], subtract: bool,
                 cast: tuple[torch.dtype, float] | None = None) -> torch.Tensor:
    """``t - part`` (``subtract``) or ``t + part`` in one pass, for ``t`` the dense (B·T, H·D) buffer the part's
    (B, H, T, D) view is taken of and of the part's dtype (:func:`part_dtype`): the part is formed in registers,
    rounded to that dtype (the same bits :func:`rope_part_triton` writes), and combined in fp32 with one rounding,
    as torch's ``sub``/``add`` of two 16-bit tensors. The caller checks :func:`fusable` (and
    :func:`rope_lora_part`'s conditions for ``cast``); returns the (B·T, H·D) result."""
    return _run(p, w, cos, sin, shape, cast, (t, 2 if subtract else 1))


def rope_rebuild(base: torch.Tensor, p: torch.Tensor, w: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                 shape: tuple[int, int, int, int], cast: tuple[torch.dtype, float] | None = None,
                 backend: str = "auto") -> torch.Tensor:
    """``rope(y)`` for ``y = (base + P @ W.T).view(shape).transpose(1, 2)``: q or k rebuilt from its stored frozen
    term ``base`` (the projection's ``X·W``, (..., H·D) with B·T rows; NOTE [Frozen term] in tracking.py) and the
    LoRA part, rotated after the sum as the forward rotated it. ``cast = (dtype, scale)``: ``p`` and ``w`` are fp32
    ``x·A`` and ``B``, scaled and cast as :func:`rope_lora_part` does. One pass on CUDA (``backend="auto"``) where
    the kernel takes the operands (the sum and the rotation in fp32, one rounding: :func:`rope_rebuild_ref`), else
    op by op in the tensors' dtype (:func:`rope_rebuild_ops`); (B, H, T, D) in the (B, T, H, D) memory order the
    forward's RoPE output has."""
    kernel = use_triton(p) if backend == "auto" else backend == "triton"
    if cast is not None and not (kernel and lora_fusable(p, w, cast[0], cos, sin, shape)):
        p, w, cast = p.to(cast[0]), (w * cast[1]).to(cast[0]), None
    if not kernel or not fusable(p, w, cos, sin, shape) or not _rebuild_takes(base, p, w, cos, sin, shape, cast):
        return rope_rebuild_ops(base, p, w, cos, sin, shape)
    b, t, h, d = shape
    return _run(p, w, cos, sin, shape, cast, (base.reshape(b * t, h * d), 3)).view(b, t, h, d).transpose(1, 2)


def _rebuild_takes(base: torch.Tensor, p: torch.Tensor, w: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                   shape: tuple[int, int, int, int], cast: tuple[torch.dtype, float] | None) -> bool:
    """The kernel reads ``base`` as a dense (B·T, H·D) buffer of the part's dtype."""
    return base.is_contiguous() and base.numel() == shape[0] * shape[1] * shape[2] * shape[3] \
        and base.device == p.device and base.dtype == part_dtype(p, w, cos, sin, cast)


def rope_rebuild_ops(base: torch.Tensor, p: torch.Tensor, w: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                     shape: tuple[int, int, int, int]) -> torch.Tensor:
    """:func:`rope_rebuild` op by op, each op rounded to the tensors' dtype (the CPU path)."""
    b, t, h, d = shape
    y = base.reshape(b * t, h * d) + torch.nn.functional.linear(p.reshape(b * t, -1), w)
    return _rotate(y.view(shape).transpose(1, 2), cos, sin)


def rope_rebuild_ref(base: torch.Tensor, p: torch.Tensor, w: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                     shape: tuple[int, int, int, int]) -> torch.Tensor:
    """:func:`rope_rebuild_ops` in fp32, rounded once to the part's dtype: the kernel's oracle."""
    out = rope_rebuild_ops(base.float(), p.float(), w.float(), cos.float(), sin.float(), shape)
    return out.to(part_dtype(p, w, cos, sin))


def rope_part_triton(p: torch.Tensor, w: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                     shape: tuple[int, int, int, int], cast: tuple[torch.dtype, float] | None = None) -> torch.Tensor:
    """The kernel path of :func:`rope_part` (the caller checks :func:`fusable`); with ``cast = (dtype, scale)``,
    of :func:`rope_lora_part` (``p`` and ``w`` fp32, cast in the kernel)."""
    b, t, h, d = shape
    return _run(p, w, cos, sin, shape, cast, None).view(b, t, h, d).transpose(1, 2)


def _run(p: torch.Tensor, w: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, shape: tuple[int, int, int, int],
         cast: tuple[torch.dtype, float] | None, combine: tuple[torch.Tensor, int] | None) -> torch.Tensor:
    """One launch; ``combine = (t, mode)`` adds (1) or subtracts (2) the part from ``t``, or rotates ``t`` plus the
    part (3, :func:`rope_rebuild`). Returns (B·T, H·D)."""
    _build()
    b, t, h, d = shape
    m, r = b * t, p.shape[-1]
    p2, w2 = p.reshape(m, r).contiguous(), w.contiguous()
    c4 = cos.expand(b, h, t, d)
    s4 = sin.expand(b, h, t, d)
    dtype, scale = cast if cast is not None else (None, 1.0)
    out = torch.empty((m, h * d), dtype=part_dtype(p, w, cos, sin, cast), device=p.device)
    target, mode = combine if combine is not None else (out, 0)
    if m:
        heads = _HEADS if c4.stride(1) == 0 and s4.stride(1) == 0 and h % _HEADS == 0 else 1
        grid = (-(-m // _BLOCK_M), h // heads)
        block_r = max(16, 1 << (r - 1).bit_length())
        # tensor-core dots need one 16-bit dtype
        sixteen = dtype is not None or p2.dtype == w2.dtype != torch.float32
        ieee = not sixteen or jit.dots_in_fp32()
        cast_kind = -1 if dtype is None else swiglu.HALVES.index(dtype)
        key = (d, block_r, ieee, cast_kind, swiglu.KINDS.index(out.dtype), mode, heads)
        launch(_rope_part_kernel, grid, _launches.setdefault(key, {}),
               (p2, w2, c4, s4, target, out, m, t, h, r, *c4.stride(), *s4.stride(), float(scale)),
               dict(D=d, HALF=d // 2, BLOCK_M=_BLOCK_M, BLOCK_R=block_r, IEEE=ieee, CAST=key[3], KIND=key[4],
                    MODE=mode, HEADS=heads, num_warps=_WARPS))
    return out


# ------------------------------------------------------------------------------------------ Triton kernel
# A plain function until :func:`_build` (kernels/jit.py): the package imports without triton.
tl = None
_round = None  # kernels/swiglu.py's jitted rounding, bound by _build


def _rope_part_kernel(p_ptr, w_ptr, c_ptr, s_ptr, t_ptr, o_ptr, M, T, H, R,
                      c_sb, c_sh, c_st, c_sd, s_sb, s_sh, s_st, s_sd, scale,
                      D: tl.constexpr, HALF: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_R: tl.constexpr,
                      IEEE: tl.constexpr, CAST: tl.constexpr, KIND: tl.constexpr, MODE: tl.constexpr,
                      HEADS: tl.constexpr):
    # one program: BLOCK_M rows (tokens) of HEADS heads; y = P W_h^T and rotate_half(y) = P W_rot^T, both K = R
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < M
    k = tl.arange(0, BLOCK_R)
    kmask = k < R
    d = tl.arange(0, HALF)
    p = tl.load(p_ptr + rows[:, None] * R + k[None, :], mask=rmask[:, None] & kmask[None, :], other=0.0)
    if CAST >= 0:  # rope_lora_part: x·A and s·B to swiglu.HALVES[CAST] as torch casts them (fp32 product, rounded)
        p = _to_half(p, CAST)
    bi = rows // T
    ti = rows % T
    h0 = tl.program_id(1) * HEADS
    # cos and sin by halves; HEADS > 1 only where their head stride is 0
    c_at = c_ptr + bi[:, None] * c_sb + h0 * c_sh + ti[:, None] * c_st + d[None, :] * c_sd
    s_at = s_ptr + bi[:, None] * s_sb + h0 * s_sh + ti[:, None] * s_st + d[None, :] * s_sd
    c1 = tl.load(c_at, mask=rmask[:, None], other=0.0).to(tl.float32)
    c2 = tl.load(c_at + HALF * c_sd, mask=rmask[:, None], other=0.0).to(tl.float32)
    s1 = tl.load(s_at, mask=rmask[:, None], other=0.0).to(tl.float32)
    s2 = tl.load(s_at + HALF * s_sd, mask=rmask[:, None], other=0.0).to(tl.float32)
    for j in tl.static_range(HEADS):
        # rotate_half(y) = (-y2, y1) for y = (y1, y2) by halves: two K = R dots of HALF columns each, one per half
        col = (h0 + j) * D + d
        w1 = tl.load(w_ptr + col[None, :] * R + k[:, None], mask=kmask[:, None], other=0.0)  # (BLOCK_R, HALF)
        w2 = tl.load(w_ptr + (col + HALF)[None, :] * R + k[:, None], mask=kmask[:, None], other=0.0)
        if CAST >= 0:
            w1, w2 = _to_half(w1 * scale, CAST), _to_half(w2 * scale, CAST)
        if IEEE:
            y1 = tl.dot(p.to(tl.float32), w1.to(tl.float32), input_precision="ieee")
            y2 = tl.dot(p.to(tl.float32), w2.to(tl.float32), input_precision="ieee")
        else:  # 16-bit inputs: exact products, fp32 sums
            y1 = tl.dot(p, w1)
            y2 = tl.dot(p, w2)
        offs = rows[:, None] * (H * D) + col[None, :]
        if MODE == 3:  # rope_rebuild: the stored frozen term plus the part, rotated below, in fp32
            y1 = y1 + tl.load(t_ptr + offs, mask=rmask[:, None], other=0.0).to(tl.float32)
            y2 = y2 + tl.load(t_ptr + offs + HALF, mask=rmask[:, None], other=0.0).to(tl.float32)
        # the part in its dtype, exactly representable from here on: y * cos + rotate_half(y) * sin, by halves
        out1 = _round(y1 * c1 + -y2 * s1, KIND)
        out2 = _round(y2 * c2 + y1 * s2, KIND)
        if MODE == 1 or MODE == 2:  # rope_combine: t -/+ part in fp32, rounded once (torch's 16-bit sub/add)
            t1 = tl.load(t_ptr + offs, mask=rmask[:, None], other=0.0).to(tl.float32)
            t2 = tl.load(t_ptr + offs + HALF, mask=rmask[:, None], other=0.0).to(tl.float32)
            out1 = _round(t1 + out1 if MODE == 1 else t1 - out1, KIND)
            out2 = _round(t2 + out2 if MODE == 1 else t2 - out2, KIND)
        tl.store(o_ptr + offs, out1.to(o_ptr.dtype.element_ty), mask=rmask[:, None])
        tl.store(o_ptr + offs + HALF, out2.to(o_ptr.dtype.element_ty), mask=rmask[:, None])


def _to_bf16(v):
    """fp32 -> bf16, nearest with ties to even, by the bits (``swiglu._round``: the interpreter's own cast
    truncates, the GPU's rounds); NaN stays NaN."""
    return _round(v, 0).to(tl.bfloat16)


def _to_half(v, KIND: tl.constexpr):
    """fp32 -> ``swiglu.HALVES[KIND]`` as torch casts: bf16 by :func:`_to_bf16`, fp16 by the GPU's (and numpy's) nearest
    even."""
    if KIND == 0:  # one return: Triton checks the types of every return, even under a constexpr branch
        out = _to_bf16(v)
    else:
        out = v.to(tl.float16)
    return out


@once
def _build() -> None:
    swiglu.build_with_round(globals(), ("_to_bf16", "_to_half", "_rope_part_kernel"))
