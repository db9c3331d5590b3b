"""``quant``: uniform 2/4/8-bit quantization per group of consecutive elements (along the last dim), bit-packed.

Error bound per finite element: ``|x - x_hat| <= scale_g / 2`` (``scale_g`` the group's stored step) plus one
rounding to the source dtype; non-finite values come back exactly. See :mod:`hyclora_hooks.kernels.quant`
for the layout. Stored bytes for ``n`` elements at ``bits`` with group ``G`` (``k = ceil(n/G)`` groups):
``k*G*bits/8`` for the codes plus ``2*k`` per parameter tensor (scale; and zero point when asymmetric), plus
12 bytes per non-finite element.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..kernels.quant import QuantizedGroups, dequantize_ref, quantize_ref
from .base import Codec, check_int, register_codec


@register_codec
@dataclass(frozen=True)
class Quant(Codec):
    bits: int = 4
    group_size: int = 64
    symmetric: bool = False

    name = "quant"
    lossless = False

    def __post_init__(self) -> None:
        check_int("quant", "bits", self.bits, allowed=(2, 4, 8))
        check_int("quant", "group_size", self.group_size, minimum=8)
        if self.group_size % 8:
            check_int("quant", "group_size", self.group_size, allowed=tuple(range(8, 4097, 8)))
        if not isinstance(self.symmetric, bool):
            from ..errors import HycloraTypeError, user_error

            raise user_error("quant.symmetric must be a bool", self.symmetric, "true or false",
                             "pass symmetric=True/False", cls=HycloraTypeError)

    def encode(self, t: torch.Tensor, site=None) -> QuantizedGroups:
        return quantize_ref(t, self.bits, self.group_size, self.symmetric)

    def decode(self, payload: QuantizedGroups) -> torch.Tensor:
        return dequantize_ref(payload)

    def nbytes(self, payload: QuantizedGroups) -> int:
        return payload.nbytes

    def describe(self) -> str:
        return f"quant{self.bits}{'s' if self.symmetric else ''}/g{self.group_size}"
