"""``bitmask``: a dropout mask packed eight elements to a byte; any other tensor held as is. Exact.

On CUDA dropout saves its keep-mask as ``torch.bool``, a byte an element; on the CPU torch's dropout multiplies by a
noise tensor of the input's dtype whose elements are 0 or ``1 / (1 - p)``, and saves that. With peft's
``lora_dropout`` above 0 every LoRA projection's input gets one: on a tiny Llama under ``intra_inter`` at 2 bits on
the CPU the noise tensors were 80% of what a step stored (docs/codecs.md). Packed, a bool mask costs an eighth of
its bytes, a noise tensor the bits and its one nonzero value. Plain torch: a multiply of int64 words and a shift to
pack, a broadcast ``&`` and a compare to unpack (a noise tensor's check adds two passes: on the CPU only, where it
costs no device sync).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from .base import Codec, held_nbytes, register_codec

_WEIGHTS: dict = {}  # device -> the bit of each of a byte's eight elements, uint8


def _weights(device: torch.device) -> torch.Tensor:
    w = _WEIGHTS.get(device)
    if w is None:
        w = _WEIGHTS[device] = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8, device=device)
    return w


class Bits(NamedTuple):
    """A packed mask: element ``i`` is bit ``i % 8`` of byte ``i // 8`` of the row-major order; ``value``, for a
    noise tensor, the 0-d tensor every set bit stands for (None for a bool mask)."""

    packed: torch.Tensor  # uint8, ceil(numel / 8)
    shape: tuple[int, ...]
    numel: int
    value: torch.Tensor | None


# Eight 0/1 bytes read as one little-endian int64 ``w`` (byte i at bit 8i): in ``w * _GATHER`` byte i's bit lands
# at bit 56 + i, every other product bit below 56 or past 64 (wrapped off), at distinct places, so no carry reaches
# the top byte, which is the packed byte. One multiply a word where a multiply by each bit's weight and a sum of
# bytes took 7x longer on an H200 (144 against 21 us for a 4096 x 4096 mask: benchmarks/experiments/bitmask_speed.py).
_GATHER = 0x0102040810204080


def _pack(mask: torch.Tensor, value: torch.Tensor | None) -> Bits:
    flat = mask.reshape(-1)  # the engine hands over the memory-order view: no copy unless it has gaps
    n = flat.numel()
    if n % 8 or flat.storage_offset() % 8:  # whole, aligned words: a fresh buffer padded with zeros
        flat = torch.cat((flat, flat.new_zeros(-n % 8)))
    packed = ((flat.view(torch.int64) * _GATHER) >> 56).to(torch.uint8)
    return Bits(packed, tuple(mask.shape), n, value)


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
        bits = (payload.packed.unsqueeze(1) & _weights(payload.packed.device)) != 0
        mask = bits.view(-1)[:payload.numel].view(payload.shape)
        return mask if payload.value is None else mask.to(payload.value.dtype) * payload.value

    def nbytes(self, payload: Bits | torch.Tensor) -> int:
        if isinstance(payload, torch.Tensor):
            return held_nbytes(payload)
        return held_nbytes(payload.packed) + (0 if payload.value is None else held_nbytes(payload.value))
