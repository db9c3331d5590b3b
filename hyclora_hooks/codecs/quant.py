"""``quant``: uniform 2/4/8-bit quantization, bit-packed, with optional dense outlier channels.

Layout and bound: NOTE [Quant layout] in :mod:`hyclora_hooks.kernels.quant`. In short, every finite element
outside the outlier channels satisfies ``|x - x_hat| <= scale / 2`` (``< scale`` with ``stochastic=True``) plus
one rounding to the source dtype; outlier channels and non-finite values come back exactly.

Stored bytes, for ``n`` elements seen as ``R x C`` (``C`` the last dim), ``k`` outlier channels, ``e`` bytes per
source element, ``p`` = 1 (symmetric) or 2 (asymmetric) bf16 parameters per group, ``m`` non-finite values:

* ``granularity="group"`` (``G`` consecutive elements): ``ceil(n/G) * (G*bits/8 + 2p)``
* ``"channel"`` (one step per channel, the paper's): ``R * ceil(C*bits/8) + 2p*C``
* ``"token_group"`` (per channel, ``G`` tokens): ``R * ceil(C*bits/8) + 2p*C*ceil(R/G)``

plus ``k*R*e`` for outlier values and ``2k`` (``4k`` when ``C > 32767``) for their indices, plus ``m*(8 + e)``.

``min_bits`` puts a floor under ``bits`` (codes take ``max(bits, min_bits)`` bits), so a policy can say "the knob's
width, but never under 4 bits" for a fragile tensor.

Outlier channels (``outlier_ratio > 0``): ``ceil(outlier_ratio * C)`` channels of largest L2 norm.
``outliers="calibrated"`` (default) picks them per save site over the first ``iteration_threshold`` steps, then
freezes them (NOTE [Outlier calibration] in :mod:`hyclora_hooks.codecs.calibration`); ``"dynamic"`` per call.
On CUDA the Triton kernels run (same bytes as the reference: see ``kernels/quant.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import HycloraTypeError, user_error
from ..kernels.quant import GRANULARITIES, QuantizedTensor, dequantize, dequantize_add, dequantize_to, quantize
from .base import Codec, check_float, check_int, register_codec
from .calibration import outlier_channels


def check_bool(owner: str, field: str, value: object) -> None:
    if not isinstance(value, bool):
        raise user_error(f"{owner}.{field} must be a bool", value, "true or false", f"pass {field}=True/False",
                         cls=HycloraTypeError)


def check_choice(owner: str, field: str, value: object, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str):
        raise user_error(f"{owner}.{field} must be a string", value, f"one of {list(choices)}",
                         f"pass {field}=\"{choices[0]}\"", cls=HycloraTypeError)
    if value not in choices:
        raise user_error(f"{owner}.{field} out of range", value, f"one of {list(choices)}", f"pick {field} from those")


@register_codec
@dataclass(frozen=True)
class Quant(Codec):
    bits: int = 4
    group_size: int = 64
    symmetric: bool = False
    granularity: str = "group"
    stochastic: bool = False
    seed: int = 0
    outlier_ratio: float = 0.0
    outliers: str = "calibrated"
    iteration_threshold: int = 5
    min_bits: int = 2  # a floor under ``bits`` for fragile tensors: ``bits = "$bits"`` with ``min_bits = 4``

    name = "quant"
    lossless = False

    def __post_init__(self) -> None:
        check_int("quant", "bits", self.bits, allowed=(2, 4, 8))
        check_int("quant", "group_size", self.group_size, minimum=8)
        if self.group_size % 8:
            check_int("quant", "group_size", self.group_size, allowed=tuple(range(8, 4097, 8)))
        check_bool("quant", "symmetric", self.symmetric)
        check_choice("quant", "granularity", self.granularity, GRANULARITIES)
        check_bool("quant", "stochastic", self.stochastic)
        check_int("quant", "seed", self.seed, minimum=0)
        check_float("quant", "outlier_ratio", self.outlier_ratio, 0.0, 0.5)
        check_choice("quant", "outliers", self.outliers, ("calibrated", "dynamic"))
        check_int("quant", "iteration_threshold", self.iteration_threshold, minimum=0)
        check_int("quant", "min_bits", self.min_bits, allowed=(2, 4, 8))

    @property
    def width(self) -> int:
        """The bits a code really takes: ``max(bits, min_bits)``."""
        return max(self.bits, self.min_bits)

    @property
    def channels_after_tokens(self) -> bool:
        return self.granularity != "group"

    def encode(self, t: torch.Tensor, site=None) -> QuantizedTensor:
        idx = None
        if self.outlier_ratio > 0:
            idx = outlier_channels(t, site, self.outlier_ratio, self.iteration_threshold, self.outliers)
        return quantize(t, self.width, self.group_size, self.symmetric, self.granularity, idx,
                        self.seed if self.stochastic else None)

    def decode(self, payload: QuantizedTensor) -> torch.Tensor:
        return dequantize(payload)

    def decode_add(self, payload: QuantizedTensor, add: torch.Tensor) -> torch.Tensor:
        return dequantize_add(payload, add)

    def decode_to(self, payload: QuantizedTensor, dtype: torch.dtype) -> torch.Tensor | None:
        # one pass only for bf16 payloads (the kernel's OUT_BF16 rounding); fp16 would be a decode then a cast
        # inside dequantize_to, which the caller does as well
        if dtype != torch.float32 or payload.dtype != torch.bfloat16:
            return None
        return dequantize_to(payload, dtype)

    def nbytes(self, payload: QuantizedTensor) -> int:
        return payload.nbytes

    def describe(self) -> str:
        gran = {"group": f"g{self.group_size}", "channel": "ch", "token_group": f"t{self.group_size}"}[self.granularity]
        extra = f"+o{self.outlier_ratio:g}" if self.outlier_ratio > 0 else ""
        return f"quant{self.width}{'s' if self.symmetric else ''}{'r' if self.stochastic else ''}/{gran}{extra}"
