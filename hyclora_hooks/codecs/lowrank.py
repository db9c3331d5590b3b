"""``lowrank``: a saved tensor as two thin factors, by a sampled orthogonal decomposition (LoRAct).

The tensor is viewed as ``A``, ``M x n``: ``n`` the last dimension (features), ``M`` every other dimension
flattened (tokens). With ``k`` the rank (``rank`` as an int, or ``ceil(rank * n)`` for a fraction):

1. *Outliers* (``outlier_ratio > 0``): the ``o = ceil(outlier_ratio * n)`` columns of largest L2 norm over
   tokens are taken out and stored dense, in the tensor's own dtype; the rest ``A_r`` (``M x (n - o)``) is
   decomposed. Column sampling misses a strong channel that no sampled column correlates with; taking the
   strongest channels out first removes that failure where it costs most.
2. *Range*: draw ``k`` distinct columns ``idx`` of ``A_r`` (a private generator seeded by ``seed``, so the
   caller's RNG stream is untouched and encoding is reproducible); ``Y = A_rᵀ · A_r[:, idx]`` is ``k`` columns of
   the Gram matrix ``A_rᵀA_r``, whose range leans towards the top right-singular vectors (squared singular
   values: one step of subspace iteration for free).
3. ``Q = qr(Y)`` (reduced, fp32, Householder, so ``QᵀQ = I`` even when ``Y`` is rank deficient);
   store ``P = A_r·Q`` (``M x k``) and ``Qᵀ`` (``k x (n - o)``). Decode is ``P·Qᵀ``, with the outlier columns
   put back; it runs in fp32 and is rounded once to the saved dtype, so it is deterministic and repeatable.

Stored bytes, exactly: ``k*(M + n - o) * s_f`` for the factors (``s_f`` the factor dtype's size: ``factor_dtype =
"source"`` stores them in the saved tensor's dtype, or ``"float32"``/``"bfloat16"``) + ``M*o*s`` for the dense
outlier columns (``s`` the saved dtype's size) + ``8*o`` for their int64 indices.

Error behaviour. ``Â = A_r Q Qᵀ`` is the orthogonal projection of the rows of ``A_r`` onto a ``k``-dimensional
subspace, so (before rounding the factors):

* never better than the optimum: ``||A_r - Â||_F >= sqrt(sum_{i>k} σ_i(A_r)^2)`` (Eckart-Young), and each row's
  error is at most that row's norm (``||a - aQQᵀ|| <= ||a||``: a projection never amplifies);
* exact (to fp32 round-off) when ``rank(A_r) <= k`` and the sampled columns span ``A_r``'s column space
  (generic for a low-rank matrix with spread-out factors);
* close to the optimum for low-rank-plus-noise inputs (see ``tests/test_lowrank.py`` for the measured factor);
  no worst-case bound beyond the projection one: a direction no sampled column correlates with is lost whole.
* the outlier columns come back exactly; a bf16 factor adds a relative error of about ``2^-8`` per factor entry;
  the result is rounded once to the saved dtype.

Kept as is (the payload is the tensor itself, lossless, counted as its storage) when the stored bytes above would
not be fewer than the tensor's ``M*n*s`` (e.g. few tokens, ``k`` near ``n``, or fp32 factors of a bf16 tensor), and when
the tensor or its factors hold a non-finite value (a low-rank fit of NaN/Inf is meaningless; fp16 factors that
would overflow are stored in fp32 instead). On a GPU inside ``compress()`` those two checks are read later, not at
the encode (:class:`FactorCheck`): the payload holds the tensor until then, and switches when they fail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import HycloraTypeError, user_error
from ..kernels.nonfinite import Nonfinite
from .base import Codec, check_float, held_nbytes, register_codec

_FACTOR_DTYPES = {"source": None, "float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class LowRankPayload:
    """``p @ qt`` rebuilds the non-outlier columns; ``outliers`` (``M x o``) sit at columns ``outlier_index``.

    ``check``: the factors' check, pending on a GPU (:class:`FactorCheck`); ``fallback``: the tensor itself, where
    the check found the factors unusable (then ``p`` and ``qt`` are None)."""

    p: torch.Tensor | None  # M x k, factor dtype
    qt: torch.Tensor | None  # k x (n - o), factor dtype
    outlier_index: torch.Tensor | None  # o int64 column indices, ascending
    outliers: torch.Tensor | None  # M x o, the saved dtype
    shape: torch.Size
    dtype: torch.dtype
    check: FactorCheck | None = None
    fallback: torch.Tensor | None = None

    @property
    def nbytes(self) -> int:
        """Bytes held, exactly: each tensor here owns a compact storage of its own (a pending check is not read:
        ``compress()`` accounts what it changes when it settles)."""
        if self.fallback is not None:
            return held_nbytes(self.fallback)
        return sum(t.untyped_storage().nbytes() for t in (self.p, self.qt, self.outlier_index, self.outliers)
                   if t is not None)


class FactorCheck(Nonfinite):
    """Whether the factors are usable, found on the device and read later (NOTE [Deferred non-finite check] in
    ``kernels/nonfinite.py``; reading it at once made every encode wait for the GPU). Raised when the tensor or its
    factors hold a non-finite value, or when fp16 factors would overflow; settling then changes the payload
    (:meth:`_resolve`) and reports the change of its bytes, which ``compress()`` adds to the accountant."""

    __slots__ = ("payload", "factors", "delta")

    @classmethod
    def find(cls, src: torch.Tensor, flag: torch.Tensor, payload: LowRankPayload,
             factors: tuple[torch.Tensor, torch.Tensor]) -> FactorCheck:
        """The check of ``payload``'s factors (``factors``: fp32 P and Q before their cast), ``flag`` a device int:
        settled at once on CPU and outside ``compress()`` (then ``payload.fallback`` says the verdict), else
        pending."""
        rec = cls()
        rec._source, rec.payload, rec.factors, rec.delta = src, payload, factors, 0
        rec._begin(flag)
        return rec

    def _resolve(self, flagged: bool) -> None:
        if flagged:  # rare: the waits below are for this record alone
            payload, before = self.payload, self.payload.nbytes
            p, q = self.factors
            src = self._source
            finite = bool(torch.isfinite(p).all()) and bool(torch.isfinite(q).all())
            if finite:  # then fp16 P overflows: fp32 factors
                payload.p, payload.qt = p.contiguous(), q.t().contiguous()
            if not finite or payload.nbytes >= src.numel() * src.element_size():  # or fp32 ones do not pay
                payload.fallback, payload.p, payload.qt = src, None, None
            self.delta = payload.nbytes - before
        self.payload = self.factors = None
        self._drop()

    @property
    def nbytes(self) -> int:
        """The change of the payload's bytes that settling made (0 before, and when the factors were usable)."""
        return self.delta


def resolve_rank(rank: int | float, n: int) -> int:
    """``rank`` as a count of directions for ``n`` features: an int as is, a fraction ``f`` as ``ceil(f*n)``."""
    k = rank if isinstance(rank, int) else math.ceil(rank * n)
    return max(1, min(k, n))


def kept_columns(outlier_index: torch.Tensor, n: int) -> torch.Tensor:
    """The ``n - o`` columns not in ``outlier_index``, ascending, found on the device (a boolean mask index
    would wait for the GPU to count them)."""
    keep = torch.ones(n, dtype=torch.uint8, device=outlier_index.device)
    keep.index_fill_(0, outlier_index, 0)  # (``keep[i] = 0`` copies the 0 from the host: a wait)
    return torch.sort(keep, descending=True, stable=True).indices[: n - outlier_index.numel()]


def lowrank_encode(a: torch.Tensor, rank: int | float, outlier_ratio: float = 0.0, seed: int = 0,
                   factor_dtype: torch.dtype | None = None) -> LowRankPayload | torch.Tensor:
    """Encode ``a`` (any float dtype, any shape and strides); returns ``a`` itself where factors would not pay."""
    n = a.shape[-1] if a.dim() else 1
    m = a.numel() // n if n else 0
    o = math.ceil(outlier_ratio * n) if outlier_ratio > 0 else 0
    o = min(o, n - 1)
    k = min(resolve_rank(rank, n), n - o, m)
    size = a.element_size()
    fsize = factor_dtype.itemsize if factor_dtype is not None else size
    if m == 0 or k * (m + n - o) * fsize + m * o * size + 8 * o >= m * n * size:
        return a
    src = a.detach()  # the factors must never join the autograd graph (packs run under no_grad; be sure)
    a32 = src.reshape(m, n).float()
    out_idx = outliers = None
    if o:
        out_idx = a32.square().sum(0).topk(o).indices.sort().values
        outliers = src.reshape(m, n)[:, out_idx]  # advanced indexing: a compact copy in the saved dtype
        a32 = a32.index_select(1, kept_columns(out_idx, n))
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(a32.shape[1], generator=gen)[:k]
    if a.is_cuda:  # from pinned memory: a copy from pageable memory makes the host wait
        idx = idx.pin_memory().to(a.device, non_blocking=True)
    y = a32.t() @ a32[:, idx]  # (n - o) x k: k columns of the Gram matrix
    q = torch.linalg.qr(y, mode="reduced").Q
    p = a32 @ q
    fd = factor_dtype or a.dtype
    payload = LowRankPayload(p.to(fd).contiguous(), q.t().to(fd).contiguous(), out_idx, outliers, a.shape, a.dtype)
    if payload.nbytes >= m * n * size:
        return a
    # unusable factors (a non-finite value, or fp16 P that overflows): found on the device, read later
    bad = ~(torch.isfinite(p).all() & torch.isfinite(q).all())
    if fd == torch.float16:
        bad = bad | (p.abs().max() > torch.finfo(torch.float16).max)
    check = FactorCheck.find(src, bad.to(torch.int32), payload, (p, q))
    if not check.pending:  # settled at once (CPU, or outside compress()): the verdict is known
        return a if payload.fallback is not None else payload
    payload.check = check
    return payload


def lowrank_decode(payload: LowRankPayload | torch.Tensor) -> torch.Tensor:
    """Rebuild a contiguous tensor of the saved shape and dtype; pure, so every call returns the same values."""
    if isinstance(payload, torch.Tensor):
        return payload
    if payload.check is not None:  # settle first: it may replace the factors (rule 4)
        payload.check.settle()
    if payload.fallback is not None:
        return payload.fallback
    approx = payload.p.float() @ payload.qt.float()
    if payload.outlier_index is None:
        return approx.to(payload.dtype).view(payload.shape)
    m, n = approx.shape[0], payload.shape[-1] if len(payload.shape) else 1
    out = torch.empty(m, n, dtype=payload.dtype, device=approx.device)
    out.index_copy_(1, kept_columns(payload.outlier_index, n), approx.to(payload.dtype))
    out.index_copy_(1, payload.outlier_index, payload.outliers)
    return out.view(payload.shape)


@register_codec
@dataclass(frozen=True)
class LowRank(Codec):
    """Sampled orthogonal low-rank factors of a saved tensor (tokens x features); see the module docstring.

    ``rank``: an int ``k >= 1``, or a float in ``(0, 1]``, a fraction of the features (``ceil(rank * n)``).
    ``outlier_ratio``: fraction of feature channels (by L2 norm) kept dense, in ``[0, 0.5]``; 0 disables.
    ``factor_dtype``: ``"source"`` (the saved dtype), ``"float32"`` or ``"bfloat16"``. ``seed``: the column sample.
    """

    rank: int | float = 0.125
    outlier_ratio: float = 0.0
    factor_dtype: str = "source"
    seed: int = 0

    name = "lowrank"
    lossless = False

    def __post_init__(self) -> None:
        r = self.rank
        if isinstance(r, bool) or not isinstance(r, (int, float)):
            raise user_error("lowrank.rank must be a number", r, "an int >= 1 or a fraction in (0, 1]",
                             "pass rank=64 or rank=0.125", cls=HycloraTypeError)
        if isinstance(r, int) and r < 1 or isinstance(r, float) and not (0.0 < r <= 1.0):
            raise user_error("lowrank.rank out of range", r, "an int >= 1 or a fraction in (0, 1]",
                             "pass rank=64 or rank=0.125")
        check_float("lowrank", "outlier_ratio", self.outlier_ratio, 0.0, 0.5)
        if self.factor_dtype not in _FACTOR_DTYPES:
            raise user_error("lowrank.factor_dtype", self.factor_dtype, f"one of {list(_FACTOR_DTYPES)}",
                             "pick the dtype the two factors are stored in")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise user_error("lowrank.seed must be an int", self.seed, "an int", "pass seed=0",
                             cls=HycloraTypeError)

    def encode(self, t: torch.Tensor, site=None) -> LowRankPayload | torch.Tensor:
        return lowrank_encode(t, self.rank, self.outlier_ratio, self.seed, _FACTOR_DTYPES[self.factor_dtype])

    def decode(self, payload: LowRankPayload | torch.Tensor) -> torch.Tensor:
        return lowrank_decode(payload)

    def nbytes(self, payload: LowRankPayload | torch.Tensor) -> int:
        return held_nbytes(payload) if isinstance(payload, torch.Tensor) else payload.nbytes

    def describe(self) -> str:
        extra = f", outliers={self.outlier_ratio}" if self.outlier_ratio else ""
        fd = "" if self.factor_dtype == "source" else f", {self.factor_dtype}"
        return f"lowrank(rank={self.rank}{extra}{fd})"
