"""``keep``: hold the saved tensor's data as is (detached from its autograd history: NOTE [Lifetimes] rule 15 in
engine.py). Lossless; costs exactly its storage."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Codec, held_nbytes, register_codec


@register_codec
@dataclass(frozen=True)
class Keep(Codec):
    name = "keep"
    lossless = True
    accepts = ()  # every dtype

    def encode(self, t: torch.Tensor, site=None) -> torch.Tensor:
        # without its autograd history: the same storage, and no cycle through the graph (NOTE [Lifetimes] rule 15)
        return t.detach() if t.requires_grad else t

    def decode(self, payload: torch.Tensor) -> torch.Tensor:
        return payload

    def nbytes(self, payload: torch.Tensor) -> int:
        return held_nbytes(payload)
