"""``sparse``: keep the top ``ratio`` entries of each row (by magnitude) of an attention map, zero the rest.

For eager attention's softmax probabilities (SDPA and flash never store the map). Layout and bound in
:mod:`hyclora_hooks.kernels.sparse`: kept entries exact, each dropped entry ``<=`` its row's smallest kept
magnitude. Stored bytes for ``R`` rows of length ``L``, ``k = min(L, ceil(ratio * L))``, ``e`` bytes per source
element: ``R * k * (e + w)`` with ``w`` = 1 (``L <= 256``), 2 (``L <= 32767``) or 4, plus ``m * (8 + e)`` for ``m``
non-finite entries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..kernels.sparse import SparseRows, densify_ref, sparsify_ref
from .base import Codec, check_float, register_codec


@register_codec
@dataclass(frozen=True)
class Sparse(Codec):
    ratio: float = 0.05

    name = "sparse"
    lossless = False

    def __post_init__(self) -> None:
        check_float("sparse", "ratio", self.ratio, 1e-6, 1.0)

    def encode(self, t: torch.Tensor, site=None) -> SparseRows:
        return sparsify_ref(t, self.ratio)

    def decode(self, payload: SparseRows) -> torch.Tensor:
        return densify_ref(payload)

    def nbytes(self, payload: SparseRows) -> int:
        return payload.nbytes

    def describe(self) -> str:
        return f"sparse/top{self.ratio:g}"
