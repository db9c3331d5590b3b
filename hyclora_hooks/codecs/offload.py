"""``offload``: move a saved CUDA tensor to (pinned) host memory on a side stream, and back before it is used.

Lossless: decode returns the same bits. The tensor's own elements are copied (a view with a storage offset, a
transposed or otherwise strided view copies what it shows, into a contiguous host buffer of its shape), so the
device memory autograd would hold is freed once the copy has read it. Stored bytes: 0 on the device (``nbytes``);
``host_nbytes`` is the host buffer (``numel * element_size``), reported by the accountant as ``host_bytes``.

NOTE [Offload streams] (why each step is there; the code cites these rules)
  1. Copy out on the device's *d2h* side stream after it waits for the current stream: the tensor's producer
     may still be queued there.
  2. ``t.record_stream(d2h)``: autograd drops the tensor as soon as pack returns; without this the allocator
     could hand its memory to the next kernel on the current stream while the copy still reads it (garbage or
     NaN in the host copy).
  3. Copy back on the *h2d* side stream after it waits for the d2h stream (a copy out may still be writing the
     host buffer when backward starts), into memory allocated on the h2d stream; the current stream then waits
     for the h2d stream before any kernel reads the result.
  4. ``out.record_stream(current)``: the result is freed by the current stream's last use, so the h2d stream must
     not reuse its memory before that use has run.
  5. Pinned buffers come from torch's caching host allocator, which records an event for every asynchronous
     copy that touches them: a buffer dropped while a copy is in flight (an exception in forward, a graph freed
     early) is not reused before the copy completes. Nothing else is held: when the graph dies, so do the
     buffers (NOTE [Lifetimes] rule 1); there is no queue to drain on exit.
Tensors not on a CUDA device are held as is (there is nothing to move), as are expanded views whose elements
outnumber their storage (a host copy would be larger than the device memory it frees).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

from ..errors import HycloraTypeError, UnsupportedError, user_error
from .base import Codec, held_nbytes, register_codec


@dataclass
class HostCopy:
    """A saved tensor's elements in host memory, contiguous, with the device they came from."""

    host: torch.Tensor
    device: torch.device

    @property
    def nbytes(self) -> int:
        return self.host.untyped_storage().nbytes()


_streams: dict[tuple[str, int], torch.cuda.Stream] = {}
_streams_lock = threading.Lock()  # backward runs on autograd's device threads


def side_stream(kind: str, device: torch.device) -> torch.cuda.Stream:
    """The process-wide ``kind`` (``"d2h"`` or ``"h2d"``) side stream of ``device``; created on first use."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    key = (kind, index)
    stream = _streams.get(key)
    if stream is None:
        with _streams_lock:
            stream = _streams.get(key)
            if stream is None:
                stream = _streams[key] = torch.cuda.Stream(device=index)
    return stream


def offload(t: torch.Tensor, pin_memory: bool = True) -> HostCopy:
    """Start copying ``t`` (a CUDA tensor) to a new host buffer; returns at once when ``pin_memory``."""
    current = torch.cuda.current_stream(t.device)
    d2h = side_stream("d2h", t.device)
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=pin_memory)
    d2h.wait_stream(current)  # NOTE [Offload streams] rule 1
    with torch.cuda.stream(d2h):
        host.copy_(t, non_blocking=pin_memory)
    t.record_stream(d2h)  # rule 2
    return HostCopy(host, t.device)


def fetch(copy: HostCopy) -> torch.Tensor:
    """A new device tensor with ``copy``'s values, safe to use on the current stream when this returns."""
    current = torch.cuda.current_stream(copy.device)
    h2d = side_stream("h2d", copy.device)
    h2d.wait_stream(side_stream("d2h", copy.device))  # rule 3
    with torch.cuda.stream(h2d):
        out = torch.empty(copy.host.shape, dtype=copy.host.dtype, device=copy.device)
        out.copy_(copy.host, non_blocking=copy.host.is_pinned())
    current.wait_stream(h2d)  # rule 3
    out.record_stream(current)  # rule 4
    return out


@register_codec
@dataclass(frozen=True)
class Offload(Codec):
    """Saved CUDA tensors to host memory and back, bit for bit (NOTE [Offload streams]).

    ``pin_memory``: page-locked host buffers (asynchronous copies that overlap compute). ``False`` uses pageable
    memory and synchronous copies: slower, but no pinned memory is taken from the system.
    """

    pin_memory: bool = True

    name = "offload"
    # `lossless` tells the engine the payload *is* the saved storage (kept as is, counted on the device). Offload
    # returns the same values but holds none of the device storage, so it routes and counts as a compressor.
    lossless = False
    accepts = ()  # every dtype: integer indices and masks move as well as activations

    def __post_init__(self) -> None:
        if not isinstance(self.pin_memory, bool):
            raise user_error("offload.pin_memory must be a bool", self.pin_memory, "true or false",
                             "pass pin_memory=True/False", cls=HycloraTypeError)

    def check_available(self) -> None:
        if not torch.cuda.is_available():
            raise user_error("codec 'offload' needs a CUDA device", "torch.cuda.is_available() is False",
                             "a machine with a CUDA GPU", "on CPU saved tensors already live in host memory: use "
                             "'baseline', or a compressing policy such as 'intra' or 'lowrank'",
                             cls=UnsupportedError)

    def encode(self, t: torch.Tensor, site=None) -> HostCopy | torch.Tensor:
        if t.device.type != "cuda" or t.numel() * t.element_size() > t.untyped_storage().nbytes():
            return t
        return offload(t.detach(), self.pin_memory)  # never let the host copy join the autograd graph

    def decode(self, payload: HostCopy | torch.Tensor) -> torch.Tensor:
        return payload if isinstance(payload, torch.Tensor) else fetch(payload)

    def nbytes(self, payload: HostCopy | torch.Tensor) -> int:
        return held_nbytes(payload) if isinstance(payload, torch.Tensor) else 0

    def host_nbytes(self, payload: HostCopy | torch.Tensor) -> int:
        return 0 if isinstance(payload, torch.Tensor) else payload.nbytes

    def describe(self) -> str:
        return "offload" if self.pin_memory else "offload(pageable)"
