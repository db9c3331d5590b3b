"""Non-finite elements of an encoded tensor: stored exactly, and on a GPU found without waiting for the GPU.

Every lossy codec keeps NaN and +-Inf out of its statistics and stores them beside the payload (int64 row-major
positions + values in the source dtype). How many there are is only known once the device has looked: asking at
once (``count.item()``) would make every encode wait for all the work queued before it, and the host would stop
running ahead of the GPU (on an H100 that serialised the hooks' Python with the model's kernels).

NOTE [Deferred non-finite check]
  1. :meth:`Nonfinite.find` takes a device-side count (a kernel's, or one it computes) and, when a collector is
     active on this thread (:func:`collecting`, entered by ``compress()``), returns a *pending* record holding
     the source tensor, a pinned host copy of the count (copied asynchronously) and an event recorded after that
     copy; the collector is told of it.
  2. On CPU, and for a device count (not a host flag) outside a collector, the record settles at once: the
     pre-deferral behaviour.
  3. :meth:`Nonfinite.settle` reads the host copy (a wait for that event only) and, when it is not zero, runs
     the encoder's ``repair`` (a kernel that assumed finite data re-runs with masks into the same payload) and
     gathers positions and values from the source; then the source is dropped. A pending record keeps its
     source alive, so the collector settles records whose event has completed at every admission, settles the
     oldest while more than a byte cap is pending, and settles everything when the context exits
     (:class:`PendingChecks`, the queue rule 6 uses too).
  4. Decoding settles first, before it reads the codes (a repair rewrites them), so a payload is correct whoever
     forgot to settle it.
  5. A kernel that only *raises* a flag (the quantize kernels) raises one in pinned host memory
     (:func:`host_flag`), written by the device through its mapped address: no memset before the kernel and no
     copy after it join the device's queue (~5 us a call, a tenth of a 64 MiB encode's GPU time on an H200), and
     the record needs only its event. The flag returns to the pool, cleared, when its record is dropped, which
     happens only once the event has completed (the kernel has written whatever it writes).
  6. Outside a collector, a host-flag record (rule 5) is not settled at once either (that waited for the device
     at every call of ``quantize()``: a caller timing it saw the wait, not the kernel): it joins a queue of this
     module, settled like ``compress()``'s, at later encodes once their events have completed, the oldest at once
     while more than ``BACKGROUND_MAX_BYTES`` of sources wait, or all by :func:`settle_background`. Such a record
     also settles when its payload's size is read (``nbytes``), so a size read outside ``compress()`` is exact.
"""

from __future__ import annotations

from collections import deque
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator

import torch

_COLLECTOR: ContextVar[Callable[[Nonfinite], None] | None] = ContextVar("hyclora_nonfinite_collector", default=None)

# Pinned one-element buffers (by dtype) and CUDA events of settled records, reused: allocating both for every
# encode cost about a third of an encode's host time on an H100 (docs/benchmarks.md, session 3).
_FREE_PINNED: dict[torch.dtype, list[torch.Tensor]] = {}
_FREE_EVENTS: list = []

# Rule 5: host flags, one every 16 bytes (a kernel specialises on a pointer's 16-byte alignment: one variant).
HOST_FLAGS = True  # off: device flags, zeroed by a memset and copied to the host after the kernel
_FLAG_STRIDE = 4
_FLAG_SLOTS = 1024


class _FlagPool:
    """Pinned int32 flags a device raises in place; taken per encode, cleared and returned when it settles."""

    def __init__(self) -> None:
        self._views: list[torch.Tensor] = []
        self._host = None  # numpy view of the pinned buffer (clearing a flag is a store, not a torch op); False: none
        self._free: list[int] = []

    def take(self) -> torch.Tensor | None:
        """A cleared flag, or None when the pool is empty or pinned memory cannot be had (then never again)."""
        if self._host is False:
            return None
        if not self._views:
            try:
                buf = torch.zeros(_FLAG_SLOTS * _FLAG_STRIDE, dtype=torch.int32, pin_memory=True)
            except RuntimeError:  # no pinned-memory allocator here: the caller falls back to device flags
                self._host = False
                return None
            self._views = [buf[i * _FLAG_STRIDE:i * _FLAG_STRIDE + 1] for i in range(_FLAG_SLOTS)]
            self._host = buf.numpy()
            self._free = list(range(_FLAG_SLOTS - 1, -1, -1))
        return self._views[self._free.pop()] if self._free else None

    def owns(self, t: torch.Tensor) -> bool:
        return bool(self._views) and t.untyped_storage().data_ptr() == self._views[0].untyped_storage().data_ptr()

    def read(self, flag: torch.Tensor) -> int:
        """The flag's value, read through the numpy view (indexing the tensor cost ~2 us a settle)."""
        return int(self._host[flag.storage_offset()])

    def give_back(self, flag: torch.Tensor) -> None:
        off = flag.storage_offset()
        self._host[off] = 0
        self._free.append(off // _FLAG_STRIDE)


_FLAGS = _FlagPool()


def host_flag(device: torch.device) -> torch.Tensor:
    """A zero int32 flag a kernel on ``device`` may raise (store a non-zero value to): in pinned host memory
    (rule 5) on CUDA, while the pool has one, else a zero tensor on ``device``. Pass it to :meth:`Nonfinite.find`
    as ``count``."""
    if device.type == "cuda" and HOST_FLAGS:
        flag = _FLAGS.take()
        if flag is not None:
            return flag
    return torch.zeros(1, dtype=torch.int32, device=device)


def _pinned(dtype: torch.dtype) -> torch.Tensor:
    free = _FREE_PINNED.get(dtype)
    return free.pop() if free else torch.empty(1, dtype=dtype, pin_memory=True)


def _event() -> torch.cuda.Event:
    return _FREE_EVENTS.pop() if _FREE_EVENTS else torch.cuda.Event()


_STREAMS: dict = {}  # (device index, raw stream handle) -> torch.cuda.Stream


def _record(event: torch.cuda.Event, device: torch.device) -> None:
    """``event.record(torch.cuda.current_stream(device))``, with the stream object looked up by its raw handle
    (building it took 4.6 us a call on an H200 host, a tenth of an encode's launch path; session 7)."""
    idx = device.index if device.index is not None else torch.cuda.current_device()
    key = (idx, torch._C._cuda_getCurrentRawStream(idx))
    stream = _STREAMS.get(key)
    if stream is None:
        stream = _STREAMS[key] = torch.cuda.current_stream(idx)
    event.record(stream)


class PendingChecks:
    """Pending records, oldest first, with the bytes of the sources each holds (counted when queued): ``settle``
    reads those whose events have completed, the oldest at once while more than ``max_bytes`` wait, and all of them
    with ``block`` (rules 3 and 6). ``grow(token, added)`` is told of each record that settled holding bytes."""

    def __init__(self, max_bytes: int, grow: Callable[[object, int], None] | None = None):
        self.max_bytes, self._grow = max_bytes, grow
        self.queue: deque = deque()  # (record, token, source bytes), oldest first
        self.nbytes = 0

    def __bool__(self) -> bool:
        return bool(self.queue)

    def add(self, rec: Nonfinite, token: object = None) -> None:
        n = rec.pending_nbytes
        self.queue.append((rec, token, n))
        self.nbytes += n

    def settle(self, block: bool = False) -> None:
        queue = self.queue
        while queue and (block or self.nbytes > self.max_bytes or queue[0][0].ready()):
            rec, token, n = queue.popleft()
            self.nbytes -= n
            added = rec.settle()
            if added and token is not None and self._grow is not None:
                self._grow(token, added)


# Rule 6: records of encodes outside a collector.
BACKGROUND_MAX_BYTES = 256 << 20
_BACKGROUND = PendingChecks(BACKGROUND_MAX_BYTES)


def _defer(rec: Nonfinite) -> None:
    """Queue ``rec`` (rule 6), then settle the queue's ready records and, while over the cap, its oldest."""
    _BACKGROUND.add(rec)
    _BACKGROUND.settle()


def settle_background(block: bool = False) -> None:
    """Settle the queued records of encodes made outside ``compress()`` whose events have completed (all of them,
    waiting for the device, with ``block``): NOTE [Deferred non-finite check] rule 6."""
    _BACKGROUND.settle(block)


@contextmanager
def collecting(on_pending: Callable[[Nonfinite], None]) -> Iterator[None]:
    """While entered, device encodes defer their non-finite check and pass the pending record to ``on_pending``."""
    token = _COLLECTOR.set(on_pending)
    try:
        yield
    finally:
        _COLLECTOR.reset(token)


def add_rounded(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``a + b`` computed in fp32 and rounded once to ``dtype`` (``a`` exact in fp32: a bf16/fp16/fp32 tensor):
    how a decode re-adds a LoRA branch (``kernels.quant.dequantize_add``), stored values included."""
    return (a.float() + b.float()).to(dtype)


class Nonfinite:
    """Positions (flat, row-major, int64) and values of the non-finite elements of a ``R x C`` tensor."""

    __slots__ = ("index", "value", "_count", "_source", "_skip", "_event", "_repair", "_queued", "_pooled", "_done")

    def __init__(self, index: torch.Tensor | None = None, value: torch.Tensor | None = None):
        self.index, self.value = index, value
        self._count = self._source = self._skip = self._event = self._repair = None
        self._queued = False  # in this module's queue (rule 6): settles when its size is read
        self._pooled = False  # the count is a flag of the pool (rule 5)
        self._done = False  # its event has completed (ready() said so): settling needs no wait

    def _drop(self) -> None:
        """Forget everything a pending record holds (the source above all); its buffer and event go back for reuse
        (only ever called once the event has completed, or before there was one)."""
        event, count = self._event, self._count
        self._count = self._source = self._skip = self._event = self._repair = None
        if event is not None:
            if self._pooled:
                _FLAGS.give_back(count)
            else:
                _FREE_PINNED.setdefault(count.dtype, []).append(count)
            _FREE_EVENTS.append(event)

    @classmethod
    def find(cls, x2: torch.Tensor, count: torch.Tensor | None = None, skip_columns: torch.Tensor | None = None,
             repair: Callable[[], None] | None = None) -> Nonfinite | None:
        """The non-finite elements of the matrix ``x2`` outside ``skip_columns`` (None when there are none).

        ``count``: their number, or a non-zero flag, as a device tensor if a kernel looked already (else counted
        here), or a :func:`host_flag` the kernel raises. ``repair``: called first when it is not zero (a kernel
        that assumed finite data re-runs checked).
        """
        rec = cls()
        rec._source, rec._skip, rec._repair = x2, skip_columns, repair
        return rec._begin(count)

    def _begin(self, count: torch.Tensor | None) -> Nonfinite | None:
        """Rules 1, 2, 5 and 6 for a record whose source (and repair) are set: the record, or None where it
        settled at once and found nothing."""
        x2 = self._source
        on_pending = _COLLECTOR.get()
        host = count is not None and x2.is_cuda and not count.is_cuda  # rule 5: raised in host memory
        if host:
            self._count, self._event, self._pooled = count, _event(), _FLAGS.owns(count)
            _record(self._event, x2.device)
            if on_pending is None:  # rule 6
                self._queued = True
                _defer(self)
            else:
                on_pending(self)
            return self
        if not x2.is_cuda or on_pending is None:  # rule 2
            self._resolve(count is None or bool(int(count.item())))
            return self if self.index is not None else None
        count = count if count is not None else self._bad().sum()
        # to pinned host memory behind the kernel: once the event has completed, reading it waits for nothing
        # (``count.item()`` would queue its copy behind all work issued since, and wait for that)
        self._count = _pinned(count.dtype)
        self._count.copy_(count.reshape(1), non_blocking=True)
        self._event = _event()
        _record(self._event, x2.device)
        on_pending(self)
        return self

    @property
    def pending(self) -> bool:
        """Not settled yet (the source is still held)."""
        return self._source is not None

    def _bad(self) -> torch.Tensor:
        bad = ~torch.isfinite(self._source)
        if self._skip is not None:
            bad[:, self._skip.long()] = False
        return bad

    def _resolve(self, flagged: bool) -> None:
        """Rule 3 once the count is known: repair and gather when it is not zero, then drop the source."""
        if flagged:
            if self._repair is not None:
                self._repair()
            bad = self._bad().reshape(-1)
            if bool(bad.any()):
                self.index = bad.nonzero().squeeze(1)
                self.value = self._source.reshape(-1)[self.index].clone()
        self._drop()

    @property
    def pending_nbytes(self) -> int:
        """Bytes of the source this record keeps alive until it settles."""
        s = self._source
        return s.numel() * s.element_size() if s is not None else 0

    def ready(self) -> bool:
        """True when settling will not wait for the device."""
        if self._event is None or self._done:
            return True
        self._done = self._event.query()
        return self._done

    def settle(self) -> int:
        """Resolve a pending record (rule 3); returns the bytes it now holds (0 when there was nothing)."""
        if self._source is not None:
            if self._event is not None and not self._done:
                self._event.synchronize()
            self._resolve(bool(_FLAGS.read(self._count) if self._pooled else int(self._count[0])))
        return self.nbytes

    @property
    def nbytes(self) -> int:
        if self._queued and self._source is not None:  # rule 6
            self.settle()
        if self.index is None:
            return 0
        return sum(t.untyped_storage().nbytes() for t in (self.index, self.value))

    @staticmethod
    def nbytes_of(rec: Nonfinite | None) -> int:
        """Bytes a payload's (maybe absent) record holds: what every payload's ``nbytes`` adds."""
        return rec.nbytes if rec is not None else 0

    @staticmethod
    def settled(rec: Nonfinite | None) -> Nonfinite | None:
        """``rec`` after :meth:`settle` (None stays None)."""
        if rec is not None:
            rec.settle()
        return rec

    def restore(self, out: torch.Tensor, add: torch.Tensor | None = None) -> None:
        """Write the values back into the contiguous decoded tensor ``out`` (rule 4: settles first); with ``add``
        (contiguous, ``out``'s shape), each value plus ``add`` there, in fp32, rounded to ``out``'s dtype."""
        self.settle()
        if self.index is not None:
            value = self.value
            if add is not None:
                value = add_rounded(value, add.reshape(-1)[self.index], out.dtype)
            out.view(-1)[self.index] = value.to(out.dtype)
