"""A consistent low-bit path for SDPA: rebuild the attention output and logsumexp from the stored q, k, v.

Flash-style backward recomputes probabilities as ``exp(q·kᵀ·scale - lse)`` from the saved logsumexp. With q and k
quantized but ``lse`` exact those probabilities no longer sum to one, and the gradient collapses (REFERENCE
section 6: cosine 0.08 at 4 bits). Here ``out`` and ``lse`` are not stored at all: one recipe reruns the forward
kernel on the *decoded* q, k, v in backward, so backward sees a self-consistent attention (and the output's bytes
are saved too). The rerun costs one attention forward per layer in backward.

The recompute uses torch's own fused kernels where they apply (CPU flash; on CUDA cuDNN when the forward ran cuDNN,
else flash), so the replay matches the forward bit for bit on unchanged inputs; otherwise an fp32 math path in
query chunks. Replaying with the forward's own backend matters for time too: at 1 x 8192 tokens on an H200, flash's
forward took 1.7 ms a Llama-2-7B layer where cuDNN's took 0.9 ms (docs/benchmarks.md, session 10).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .lineage import ENV, Node

_MATH_CHUNK_BYTES = 256 << 20  # fp32 score block per chunk of the math fallback


class SdpaRecompute:
    """Shared by the ``output`` and ``logsumexp`` recipes of one SDPA call; computes both once per backward."""

    def __init__(self, q: Node, k: Node, v: Node, mask: Node | None, is_causal: bool, scale: float | None,
                 enable_gqa: bool, out_meta: tuple | None = None, lse_meta: tuple | None = None):
        self.q, self.k, self.v, self.mask = q, k, v, mask
        self.is_causal, self.scale, self.enable_gqa = is_causal, scale, enable_gqa
        self.out_meta, self.lse_meta = out_meta, lse_meta
        self._cache: dict[str, torch.Tensor] = {}
        self.lossless = False

    def node(self, role: str, meta: tuple) -> Node:
        """The recipe node of ``role`` (``output`` or ``logsumexp``); ``meta``: the saved tensor's ``(shape, dtype,
        strides)``, which the recomputed one is given (strides None: as the kernel writes them)."""
        if role == "output":
            self.out_meta = meta
        else:
            self.lse_meta = meta
        return _SdpaPart(self, role)

    def get(self, role: str, memo: dict) -> torch.Tensor:
        # o_proj's backward asks for the output, SDPA's backward then for logsumexp and output: compute the pair
        # once and keep it while this object lives, i.e. until autograd frees the last entry that refers to it
        # (right after SDPA's backward, or with the graph under retain_graph=True).
        # A replayed step's parts read a plan's template: their Bound holds that step's cache (NOTE [Replay]).
        bound = memo.get(ENV)
        cache = self._cache if bound is None else bound.caches.setdefault(id(self), {})
        if not cache:
            cache["output"], cache["logsumexp"] = self._compute(memo)
        return cache[role]

    def _compute(self, memo: dict) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v = self.q.eval(memo), self.k.eval(memo), self.v.eval(memo)
        mask = self.mask.eval(memo) if self.mask is not None else None
        cudnn = self.lse_meta is not None and saved_by_cudnn(tuple(self.lse_meta[0]))
        out, lse = sdpa_with_lse(q, k, v, mask, self.is_causal, self.scale, self.enable_gqa, cudnn=cudnn)
        if self.out_meta is not None:
            out = _with_strides(out.to(self.out_meta[1]).reshape(self.out_meta[0]), self.out_meta)
        if self.lse_meta is not None:
            lse = _with_strides(fit_logsumexp(lse.to(self.lse_meta[1]), tuple(self.lse_meta[0])), self.lse_meta)
        return out, lse


class _SdpaPart(Node):
    def __init__(self, shared: SdpaRecompute, role: str):
        self.shared, self.role = shared, role
        self.lossless = False
        # one attention forward: q, k and v are decoded for SDPA's own backward anyway (shared decodes), so a
        # reader of the output (o_proj's input) replays only this op, not their recipes again
        self.cost = 1

    def eval(self, memo: dict) -> torch.Tensor:
        return self.shared.get(self.role, memo)

    def key(self) -> tuple:
        return ("sdpa", id(self.shared), self.role)


def _with_strides(t: torch.Tensor, meta: tuple) -> torch.Tensor:
    """``t`` in the saved tensor's strides (``meta[2]``; kept as is where None or equal). SDPA's backward kernels
    read the layout they wrote, not only the values (NOTE [Lifetimes] rule 8 in engine.py): cuDNN's output is a
    (B, H, L, D) view of (B, L, H, D) memory, and the fp32 math replay's contiguous output read back under a
    padding mask gave LoRA-gradient cosines of 0.85-0.94 against exact autograd on an H200. Strides that differ only
    where a dim has one element (a batch of one) address the same memory: ``t`` is then viewed with the saved
    strides, not copied (a 64 MiB copy a layer at 1 x 8192 tokens of Llama-2-7B's attention, session 31)."""
    stride = meta[2]
    if stride is None or t.stride() == tuple(stride):
        return t
    if all(a == b for n, a, b in zip(t.shape, t.stride(), stride) if n > 1):
        return t.as_strided(t.shape, tuple(stride), t.storage_offset())
    return torch.empty_strided(t.shape, stride, dtype=t.dtype, device=t.device).copy_(t)


def fit_logsumexp(lse: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The recomputed ``(B, H, L)`` logsumexp in the saved one's shape: cuDNN's ``(B, H, L, 1)``, or efficient
    attention's ``(B, H, L')`` with ``L`` padded up to a multiple of 32 (rows past ``L`` are never read: zeros)."""
    if lse.numel() == math.prod(shape):
        return lse.reshape(shape)
    if len(shape) == lse.dim() and tuple(lse.shape[:-1]) == shape[:-1] and shape[-1] > lse.shape[-1]:
        out = lse.new_zeros(shape)
        out[..., :lse.shape[-1]] = lse
        return out
    raise RuntimeError(f"hyclora_hooks: SDPA saved a logsumexp of shape {shape}, the recompute gives "
                       f"{tuple(lse.shape)}; please report the SDPA backend and shapes")


def saved_by_cudnn(lse_shape: tuple[int, ...]) -> bool:
    """Did cuDNN's SDPA save this logsumexp? Only cuDNN's has a trailing dim of 1, ``(B, H, L, 1)``."""
    return len(lse_shape) == 4 and lse_shape[-1] == 1


def _expand_kv(q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
    if kv.shape[-3] != q.shape[-3]:
        kv = kv.repeat_interleave(q.shape[-3] // kv.shape[-3], dim=-3)
    return kv


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean mask (True = attend; transformers' padding masks) as the additive one of ``dtype`` that
    F.scaled_dot_product_attention makes of it before dispatch (0 and -inf): the fused kernels take only that."""
    if mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))


def sdpa_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, is_causal: bool,
                  scale: float | None, enable_gqa: bool = False,
                  cudnn: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention output and fp32 logsumexp (``(B, H, L)``; cuDNN's ``(B, H, L, 1)``) for ``(B, H, L, D)`` inputs.
    ``cudnn``: try cuDNN's kernel first on CUDA (the forward's backend, with or without a mask; flash, or the math
    path where it refuses)."""
    k, v = _expand_kv(q, k), _expand_kv(q, v)
    if q.device.type == "cpu" and q.dim() == 4:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, is_causal, attn_mask=None if mask is None else _additive(mask, q.dtype), scale=scale)
        return out, lse
    if q.is_cuda and q.dtype in (torch.float16, torch.bfloat16) and q.dim() == 4:
        if cudnn:
            try:
                bias = None if mask is None else _additive(mask, q.dtype)
                res = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, bias, True, 0.0, is_causal, False,
                                                                         scale=scale)
                return res[0], res[1]
            except RuntimeError:  # a shape or build cuDNN does not take: the others compute the same attention
                pass
        if mask is None:
            try:
                res = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, is_causal, False, scale=scale)
                return res[0], res[1]
            except RuntimeError:  # shape or device the flash kernel does not take
                pass
    return _math_sdpa(q, k, v, mask, is_causal, scale)


def _math_sdpa(q, k, v, mask, is_causal, scale):
    *batch, L, D = q.shape
    S = k.shape[-2]
    scale = scale if scale is not None else 1.0 / math.sqrt(D)
    out = torch.empty(*batch, L, v.shape[-1], dtype=q.dtype, device=q.device)
    lse = torch.empty(*batch, L, dtype=torch.float32, device=q.device)
    rows = max(1, _MATH_CHUNK_BYTES // max(1, 4 * S * math.prod(batch)))
    kf, vf = k.float(), v.float()
    for i in range(0, L, rows):
        j = min(L, i + rows)
        s = torch.matmul(q[..., i:j, :].float(), kf.transpose(-1, -2)) * scale
        if is_causal:
            keep = torch.ones(j - i, S, dtype=torch.bool, device=q.device).tril(diagonal=i)
            s = s.masked_fill(~keep, float("-inf"))
        if mask is not None:
            m = mask[..., i:j, :] if mask.shape[-2] == L else mask
            s = s.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else s + m.float()
        row_lse = torch.logsumexp(s, dim=-1)
        p = torch.exp(s - row_lse.unsqueeze(-1)).nan_to_num(0.0)
        out[..., i:j, :] = torch.matmul(p, vf).to(q.dtype)
        lse[..., i:j] = row_lse
    return out, lse


def sdpa_call_args(args: tuple, kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The SDPA call's settings, or None if it cannot be replayed (dropout draws random numbers)."""
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
    call = dict(zip(names, args))
    call.update(kwargs)
    if float(call.get("dropout_p", 0.0) or 0.0) != 0.0:
        return None
    return call
