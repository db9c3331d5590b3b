"""Row-wise top-k sparsification of attention maps: the plain-PyTorch reference (also the GPU path).

Layout, for ``x`` seen as ``R x L`` (``L`` = the last dim, the keys) and ``k = min(L, ceil(ratio * L))``:

* ``value``: ``R x k`` in the source dtype, the ``k`` entries of largest magnitude of each row;
* ``column``: ``R x k`` column offsets inside the row: uint8 when ``L <= 256``, int16 up to 32767, else int32
  (1-4 bytes an entry instead of COO's 8-byte flat index);
* non-finite entries (rare): int64 flat positions and their values, outside the top-k selection
  (:mod:`~hyclora_hooks.kernels.nonfinite`).

Error bound: each dropped entry has magnitude ``<=`` the smallest kept magnitude of its row, and comes back as 0;
kept entries and non-finite values come back exactly. For a probability row, the dropped mass is ``1 - sum(kept)``.
A top-k over a whole row is a sort-like op that torch runs well on the GPU (no custom kernel needed: its cost is
the read of the map, the same as a copy's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .nonfinite import Nonfinite


@dataclass
class SparseRows:
    value: torch.Tensor
    column: torch.Tensor
    nonfinite: Nonfinite | None
    shape: torch.Size
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        nf = Nonfinite.nbytes_of(self.nonfinite)
        return nf + sum(t.untyped_storage().nbytes() for t in (self.value, self.column))


def column_dtype(length: int) -> torch.dtype:
    return torch.uint8 if length <= 256 else torch.int16 if length <= 32767 else torch.int32


def keep_count(ratio: float, length: int) -> int:
    return max(1, min(length, math.ceil(ratio * length - 1e-9)))


def sparsify_ref(x: torch.Tensor, ratio: float) -> SparseRows:
    shape, dtype = x.shape, x.dtype
    length = shape[-1] if x.dim() else 1
    x2 = x.reshape(-1, length)
    k = keep_count(ratio, length)
    finite = torch.isfinite(x2)
    nonfinite = Nonfinite.find(x2, (~finite).sum())
    if nonfinite is not None:  # may be pending on a GPU (kernels/nonfinite.py): zero them without asking
        x2 = torch.where(finite, x2, torch.zeros((), dtype=dtype, device=x.device))
    col = torch.topk(x2.abs(), k, dim=-1, sorted=False).indices
    value = torch.gather(x2, 1, col).contiguous()
    return SparseRows(value, col.to(column_dtype(length)).contiguous(), nonfinite, shape, dtype)


def densify_ref(s: SparseRows) -> torch.Tensor:
    length = s.shape[-1] if len(s.shape) else 1
    out = torch.zeros((s.value.shape[0], length), dtype=s.dtype, device=s.value.device)
    out.scatter_(1, s.column.long(), s.value)
    if s.nonfinite is not None:
        s.nonfinite.restore(out)
    return out.view(s.shape)
