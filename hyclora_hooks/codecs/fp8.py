"""``fp8``: float8 e4m3 with one bf16 scale per group of ``group_size`` consecutive elements.

Layout and bound in :mod:`hyclora_hooks.kernels.fp8`: ``|x - x_hat| <= max(|x| * 2^-4, scale * 2^-10)`` per
finite element plus one rounding to the source dtype; non-finite values exact. Stored bytes for ``n`` elements:
``ceil(n/G) * (G + 2)``, plus ``m * (8 + e)`` for ``m`` non-finite values of ``e`` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..kernels.fp8 import Fp8Groups, fp8_decode_ref, fp8_encode_ref
from .base import Codec, check_int, register_codec


@register_codec
@dataclass(frozen=True)
class Fp8(Codec):
    group_size: int = 128

    name = "fp8"
    lossless = False

    def __post_init__(self) -> None:
        check_int("fp8", "group_size", self.group_size, minimum=1)

    def encode(self, t: torch.Tensor, site=None) -> Fp8Groups:
        return fp8_encode_ref(t, self.group_size)

    def decode(self, payload: Fp8Groups) -> torch.Tensor:
        return fp8_decode_ref(payload)

    def nbytes(self, payload: Fp8Groups) -> int:
        return payload.nbytes

    def describe(self) -> str:
        return f"fp8e4m3/g{self.group_size}"
