"""One decode per backward for an entry that several consumers read, as plain autograd shares one saved tensor.

NOTE [Shared decodes]
  Several readers often want the same entry in one backward: ``nll_loss`` and ``log_softmax`` the same
  log-probabilities, SDPA's backward and the attention replay the same q/k/v, every recipe of a layer its
  residual input. Decoding afresh for each reader repeats the dequantize and the replay (on an H100 the repeated
  work was most of the GPU time the hooks add to backward). So a decode made during a backward is kept for the
  entry's other readers:

  * ``Entry.readers`` counts, in the forward, the readers an entry was handed to: each saved-variable slot pack
    returned it to, and each recipe whose expression reads it (once per recipe, as one evaluation decodes a leaf
    once).
  * The first read inside a backward decodes and keeps the tensor with ``readers - 1`` reads left; each later read
    returns it and counts down; the last one drops it. A count can only be too low (a recipe read twice, after its
    own kept decode was dropped), which costs a second decode, never memory.
  * Kept tensors are dropped when the backward ends (a callback queued on the autograd engine), oldest first while
    more than ``MAX_SHARED_BYTES`` are kept (a reader that never runs: a pruned graph), and never reused once their
    version counter moved (someone wrote into the returned tensor).
  * Nothing is kept outside a backward (a read through ``grad_fn._saved_*``), nor for an entry with one reader.

  A kept decode lives from its first reader to its last, within the time plain autograd would keep the original
  tensor alive; decoding stays pure (NOTE [Lifetimes] rule 4): a second backward (``retain_graph=True``) decodes
  again and gets the same values.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Any, Callable

import torch

# Most bytes of decoded tensors kept at once per backward (a bound for readers that never come).
MAX_SHARED_BYTES = 2 << 30

# -1 outside a backward; torch.utils.checkpoint relies on the same private call (torch >= 2.0).
graph_task_id: Callable[[], int] = getattr(torch._C, "_current_graph_task_id", lambda: -1)


class _Kept:
    """Decodes kept within one backward (one autograd graph task)."""

    def __init__(self) -> None:
        self.items: OrderedDict[int, list] = OrderedDict()  # id(entry) -> [weakref(entry), tensor, version, left]
        self.nbytes = 0

    def drop(self, key: int) -> None:
        item = self.items.pop(key, None)
        if item is not None:
            self.nbytes -= item[1].nbytes


_tasks: dict[int, _Kept] = {}
_lock = threading.Lock()  # CUDA backward runs on one engine thread per device


def _end_of_backward(task: int) -> None:
    with _lock:
        _tasks.pop(task, None)


def read(entry: Any, decode: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``decode()``, or the tensor an earlier reader of ``entry`` decoded in this backward (``Entry.value`` calls
    this only for entries with more than one reader)."""
    task = graph_task_id()
    if task == -1:
        return decode()
    with _lock:
        t = _count_read(task, entry)
    if t is not None:
        return t
    t = decode()
    if t.nbytes <= MAX_SHARED_BYTES:
        _keep(task, entry, t)
    return t


def _count_read(task: int, entry: Any) -> torch.Tensor | None:
    """(Under ``_lock``.) ``entry``'s decode kept in backward ``task``, counted as one read (dropped at the last),
    or None; a kept tensor that is stale (another entry at that id, or written into) is dropped."""
    kept = _tasks.get(task)
    key = id(entry)
    item = kept.items.get(key) if kept is not None else None
    if item is None:
        return None
    ref, t, version, left = item
    if ref() is entry and t._version == version:
        if left <= 1:
            kept.drop(key)
        else:
            item[3] = left - 1
        return t
    kept.drop(key)
    return None


def _keep(task: int, entry: Any, t: torch.Tensor) -> None:
    """Keep ``t`` for ``entry``'s ``readers - 1`` other readers in backward ``task``."""
    key, nbytes = id(entry), t.nbytes
    with _lock:
        kept = _tasks.get(task)
        if kept is None:
            kept = _tasks[task] = _Kept()
            torch.autograd.Variable._execution_engine.queue_callback(lambda: _end_of_backward(task))
        kept.drop(key)
        kept.items[key] = [weakref.ref(entry), t, t._version, entry.readers - 1]
        kept.nbytes += nbytes
        while kept.nbytes > MAX_SHARED_BYTES:
            kept.drop(next(iter(kept.items)))


def share(entry: Any, t: torch.Tensor) -> None:
    """``t`` is ``entry``'s value, made as a by-product of another decode (the fused SwiGLU kernel writes SiLU's
    output): keep it for the entry's other readers as if one reader had decoded it. Only inside a backward and
    for entries with more than one reader, as :func:`read`; an entry kept already counts one read instead."""
    task = graph_task_id()
    if task == -1 or entry.readers < 2 or t.nbytes > MAX_SHARED_BYTES:
        return
    with _lock:
        if _count_read(task, entry) is not None:
            return
    _keep(task, entry, t)


def kept_bytes() -> int:
    """Bytes of decoded tensors kept now, over all running backwards (for tests and reports)."""
    with _lock:
        return sum(k.nbytes for k in _tasks.values())
