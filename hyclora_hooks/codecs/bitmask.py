"""``bitmask``: a dropout mask packed eight elements to a byte; any other tensor held as is. Exact.

On CUDA dropout saves its keep-mask as ``torch.bool``, a byte an element; on the CPU torch's dropout multiplies by a
noise tensor of the input's dtype whose elements are 0 or ``1 / (1 - p)``, and saves that. With peft's
``lora_dropout`` above 0 every LoRA projection's input gets one: on a tiny Llama under ``intra_inter`` at 2 bits on
the CPU the noise tensors were 80% of what a step stored (docs/codecs.md). Packed, a bool mask costs an eighth of
its bytes, a noise tensor the bits and its one nonzero value. The packing is kernels/bitmask.py's (one Triton pass
each way on CUDA); a noise tensor's check adds two passes, on the CPU only, where it costs no device sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..kernels import bitmask
from .base import Codec, held_nbytes, register_codec


class Bits(NamedTuple):
    """A packed mask: element ``i`` is bit ``i % 8`` of byte ``i // 8`` of the row-major order; ``value``, for a
    noise tensor, the 0-d tensor every set bit stands for (None for a bool mask)."""

    packed: torch.Tensor  # uint8, ceil(numel / 8)
    shape: tuple[int, ...]
    numel: int
    value: torch.Tensor | None


def _pack(mask: torch.Tensor, value: torch.Tensor | None) -> Bits:
    # the engine hands over the memory-order view: packed without a copy unless it has gaps
    return Bits(bitmask.pack(mask), tuple(mask.shape), mask.numel(), value)


@register_codec
@dataclass(frozen=True)
class Bitmask(Codec):
    name = "bitmask"
    # ``lossless`` tells the engine the payload *is* the saved storage; this one is exact but holds other bytes
    lossless = False
    accepts = ()  # every dtype: masks are packed, anything else held as is

    def encode(self, t: torch.Tensor, site=None) -> Bits | torch.Tensor:
        if t.dtype is torch.bool:
            return _pack(t, None)
        if t.is_floating_point() and t.device.type == "cpu" and t.numel():
            value = t.max()
            if value > 0 and torch.isfinite(value) and bool(((t == 0) | (t == value)).all()):
                return _pack(t != 0, value)
        return t

    def decode(self, payload: Bits | torch.Tensor) -> torch.Tensor:
        if isinstance(payload, torch.Tensor):
            return payload
        mask = bitmask.unpack(payload.packed, payload.numel).view(payload.shape)
        return mask if payload.value is None else mask.to(payload.value.dtype) * payload.value

    def nbytes(self, payload: Bits | torch.Tensor) -> int:
        if isinstance(payload, torch.Tensor):
            return held_nbytes(payload)
        return held_nbytes(payload.packed) + (0 if payload.value is None else held_nbytes(payload.value))
