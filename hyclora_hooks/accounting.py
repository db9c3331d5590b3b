"""The memory accountant: what was saved, what the codecs hold, and what the devices say.

Counting rules (see NOTE [Lifetimes] in :mod:`hyclora_hooks.engine`):

* ``activation_bytes``: bytes of every distinct non-parameter *storage* autograd saved in the context, each
  counted once, whatever the number of views or packs of it (x saved by q, k, v and LoRA A counts once).
  That is what autograd would hold without compression.
* ``stored_bytes``: bytes the codecs hold: a payload's exact size for lossy codecs; a kept storage once.
* ``host_bytes``: bytes payloads hold in host memory (the ``offload`` codec's pinned copies); not in ``stored_bytes``,
  which counts the device the tensors were saved from.
* ``backward_packs``: packs while autograd ran a backward (reentrant checkpoint recomputation), passed through
  uncounted (NOTE [Lifetimes] rule 7).
* ``live_*`` are the figures now (they fall to 0 when backward frees the graph); ``peak_*`` their maxima;
  the plain figures are totals since the context was entered.

Device figures come from torch's allocator (CUDA), NVML (``pynvml``) for the process and the device, and
psutil for host RSS. A figure that cannot be read on this machine is the string ``"unavailable: <why>"``.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from .sites import SaveSite


@dataclass
class Row:
    count: int = 0
    activation_bytes: int = 0
    stored_bytes: int = 0


class _StorageRecord:
    __slots__ = ("nbytes", "entries", "keep_entries", "counted")

    def __init__(self, nbytes: int):
        self.nbytes, self.entries, self.keep_entries, self.counted = nbytes, 0, 0, False


class Token:
    """One admitted entry, as :meth:`Accountant.release` and :meth:`Accountant.grow` need it, with what
    :meth:`Accountant.admit` was told until the accountant counts it (``row`` is None until then: NOTE [Deferred
    counting]). Slots, not a tuple of the arguments: one object an entry for Python's cyclic GC, as before."""

    __slots__ = ("storage_key", "stored", "holds_storage", "host_nbytes", "row", "layer", "live", "storage_nbytes",
                 "site", "codec_label", "kept_reason", "saved")

    def __init__(self, storage_key: Any, stored: int, holds_storage: bool, host_nbytes: int, storage_nbytes: int,
                 site: SaveSite, codec_label: str, kept_reason: str | None, saved: bool):
        self.storage_key, self.stored, self.holds_storage, self.host_nbytes = storage_key, stored, holds_storage, \
            host_nbytes
        self.storage_nbytes, self.site, self.codec_label, self.kept_reason, self.saved = storage_nbytes, site, \
            codec_label, kept_reason, saved
        self.row: Row | None = None
        self.layer: Row | None = None
        self.live = True


class Accountant:
    """Live and cumulative bytes per op class, role, module and codec, and per layer.

    NOTE [Deferred counting]
      ``admit``, ``note_duplicate`` and ``release`` only queue what they were told (a released token goes into the
      queue a second time); :meth:`flush` counts the queue, in order, and every method that reads the figures or
      changes them otherwise (``grow``, ``report``) flushes first, as does the context's ``accountant`` attribute.
      So the counting leaves the step: the forward, whose host time bounds a step at 4 x 1024 tokens on the H200
      (``baseline``'s forward on the dev CPU 28.6 -> 27.6 ms; docs/benchmarks.md session 14), and since session 41
      the backward, where every entry's death released its token at once (~300 releases a replayed Llama step, the
      first of them counting every admit). A step whose figures are never read never counts them. The figures are
      the same as when counted at once: nothing reads them between an event and the flush, which takes the events
      in their order. Read the public attributes of an accountant you hold yourself only after :meth:`flush`.
    """

    def __init__(self) -> None:
        self.by_op: dict[tuple[str, str, str, str], Row] = {}
        self.by_layer: dict[str, Row] = {}
        self.kept: dict[str, Row] = {}
        self._records: dict[Any, _StorageRecord] = {}
        self.activation_bytes = self.stored_bytes = 0
        self.live_activation_bytes = self.live_stored_bytes = 0
        self.peak_activation_bytes = self.peak_stored_bytes = 0
        self.packs = self.parameter_packs = self.duplicate_packs = 0
        self.host_bytes = self.live_host_bytes = self.peak_host_bytes = 0
        self.backward_packs = 0
        # tokens of uncounted admits and (a token's second place) releases; (storage key, site, codec label) of
        # duplicates
        self._queue: list = []
        self._counted = 0  # how many of the queue a flush has taken

    def flush(self) -> None:
        """Count what ``admit``, ``note_duplicate`` and ``release`` queued, in order (NOTE [Deferred counting]): a
        token not counted yet is an admit, a counted one (its ``row`` set) a release. Counting makes objects, so the
        cyclic GC may run an entry's ``__del__`` midway: its release joins the queue's end, and a flush that runs
        meanwhile goes on from the same place (the position is the accountant's, not this call's)."""
        queue = self._queue
        while self._counted < len(queue):
            item = queue[self._counted]
            self._counted += 1
            if type(item) is tuple:
                self._count_duplicate(*item)
            elif item.row is None:
                self._count(item)
            else:
                self._release(item)
        queue.clear()
        self._counted = 0

    def note_parameter(self) -> None:
        self.packs += 1
        self.parameter_packs += 1

    def note_duplicate(self, storage_key: Any, site: SaveSite, codec_label: str) -> None:
        """A pack that found its data already stored; it may be the first *save* of a stored recipe source."""
        self.packs += 1
        self.duplicate_packs += 1
        self._queue.append((storage_key, site, codec_label))

    def _count_duplicate(self, storage_key: Any, site: SaveSite, codec_label: str) -> None:
        rec = self._records.get(storage_key)
        if rec is not None and not rec.counted:
            self._count_activation(rec, *self._rows(site, codec_label))

    def _rows(self, site: SaveSite, codec_label: str) -> tuple[Row, Row]:
        """``site``'s row of ``by_op`` and of ``by_layer``, made on first use."""
        key = (site.op_class, site.role, site.module_pattern, codec_label)
        row = self.by_op.get(key)  # not setdefault: that builds a Row on every call
        if row is None:
            row = self.by_op[key] = Row()
        layer = self.by_layer.get(site.layer)
        if layer is None:
            layer = self.by_layer[site.layer] = Row()
        return row, layer

    def _count_activation(self, rec: _StorageRecord, row: Row, layer: Row) -> None:
        rec.counted = True
        self.activation_bytes += rec.nbytes
        self.live_activation_bytes += rec.nbytes
        row.activation_bytes += rec.nbytes
        layer.activation_bytes += rec.nbytes
        self.peak_activation_bytes = max(self.peak_activation_bytes, self.live_activation_bytes)

    def note_backward_pack(self) -> None:
        self.backward_packs += 1

    def admit(self, storage_key: Any, storage_nbytes: int, site: SaveSite, codec_label: str, payload_nbytes: int,
              holds_storage: bool, kept_reason: str | None, saved: bool = True, host_nbytes: int = 0) -> Token:
        """Count a new entry (queued: NOTE [Deferred counting]); returns the token :meth:`release` needs when
        autograd drops the entry.

        ``saved=False`` for a recipe's source: stored by us, but not (yet) saved by autograd, so its storage is
        not an activation until some op saves it. ``host_nbytes``: bytes the entry holds in host memory.
        """
        if saved:
            self.packs += 1
        token = Token(storage_key, payload_nbytes, holds_storage, host_nbytes, storage_nbytes, site, codec_label,
                      kept_reason, saved)
        self._queue.append(token)
        return token

    def admit_replaced(self, storage_key: Any, storage_nbytes: int, site: SaveSite, codec_label: str,
                       kept_reason: str) -> Token:
        """Count bytes an op saved that its replacement holds in less (NOTE [Fused head] in head.py): activation
        bytes, nothing stored, no pack of ours; released like :meth:`admit`'s tokens."""
        token = Token(storage_key, 0, False, 0, storage_nbytes, site, codec_label, kept_reason, True)
        self._queue.append(token)
        return token

    def _count(self, token: Token) -> None:
        storage_key, storage_nbytes, site, host_nbytes = token.storage_key, token.storage_nbytes, token.site, \
            token.host_nbytes
        row, layer = token.row, token.layer = self._rows(site, token.codec_label)
        row.count += 1
        layer.count += 1
        rec = self._records.get(storage_key)
        if rec is None:
            rec = self._records[storage_key] = _StorageRecord(storage_nbytes)
        if token.saved and not rec.counted:
            self._count_activation(rec, row, layer)
        rec.entries += 1
        stored = token.stored  # the payload's bytes
        if token.holds_storage:  # a kept view holds its whole storage, once however many views are kept
            rec.keep_entries += 1
            stored = token.stored = storage_nbytes if rec.keep_entries == 1 else 0
        if token.kept_reason is not None:
            k = self.kept.setdefault(token.kept_reason, Row())
            k.count += 1
            k.stored_bytes += stored
        row.stored_bytes += stored
        layer.stored_bytes += stored
        self.stored_bytes += stored
        self.live_stored_bytes += stored
        self.peak_stored_bytes = max(self.peak_stored_bytes, self.live_stored_bytes)
        if host_nbytes:
            self.host_bytes += host_nbytes
            self.live_host_bytes += host_nbytes
            self.peak_host_bytes = max(self.peak_host_bytes, self.live_host_bytes)

    def grow(self, token: Token, nbytes: int) -> None:
        """An admitted payload now holds ``nbytes`` more (non-finite values found after its pack: see
        NOTE [Deferred non-finite check] in ``kernels/nonfinite.py``)."""
        self.flush()
        token.stored += nbytes
        token.row.stored_bytes += nbytes
        token.layer.stored_bytes += nbytes
        self.stored_bytes += nbytes
        if token.live:
            self.live_stored_bytes += nbytes
            self.peak_stored_bytes = max(self.peak_stored_bytes, self.live_stored_bytes)

    def release(self, token: Token) -> None:
        """The entry holding ``token`` died (queued: NOTE [Deferred counting])."""
        self._queue.append(token)

    def _release(self, token: Token) -> None:
        token.live = False
        storage_key, stored, holds_storage, host_nbytes = token.storage_key, token.stored, token.holds_storage, \
            token.host_nbytes
        self.live_host_bytes -= host_nbytes
        rec = self._records.get(storage_key)
        if rec is None:
            return
        rec.entries -= 1
        if holds_storage:  # the storage is held until the last kept view of it goes
            rec.keep_entries -= 1
            stored = rec.nbytes if rec.keep_entries == 0 else 0
        self.live_stored_bytes -= stored
        if rec.entries == 0:
            del self._records[storage_key]
            if rec.counted:
                self.live_activation_bytes -= rec.nbytes

    def report(self, policy_name: str = "", device: torch.device | None = None) -> Report:
        self.flush()
        return Report(
            policy=policy_name,
            activation_bytes=self.activation_bytes,
            stored_bytes=self.stored_bytes,
            live_activation_bytes=self.live_activation_bytes,
            live_stored_bytes=self.live_stored_bytes,
            peak_activation_bytes=self.peak_activation_bytes,
            peak_stored_bytes=self.peak_stored_bytes,
            packs=self.packs,
            parameter_packs=self.parameter_packs,
            duplicate_packs=self.duplicate_packs,
            by_op=[dict(op=k[0], role=k[1], module=k[2], codec=k[3], **vars(r)) for k, r in self.by_op.items()],
            by_layer=[dict(layer=k, **vars(r)) for k, r in self.by_layer.items()],
            kept=[dict(reason=k, count=r.count, stored_bytes=r.stored_bytes) for k, r in self.kept.items()],
            memory=memory_snapshot(device),
            host_bytes=self.host_bytes,
            live_host_bytes=self.live_host_bytes,
            peak_host_bytes=self.peak_host_bytes,
            backward_packs=self.backward_packs,
        )


# ------------------------------------------------------------------------------------------- device memory
def memory_snapshot(device: torch.device | None = None) -> dict[str, Any]:
    """Allocator, NVML and host figures; unreadable ones are ``"unavailable: <why>"``, never an exception."""
    out: dict[str, Any] = {}
    if torch.cuda.is_available() and (device is None or device.type == "cuda"):
        idx = torch.cuda.current_device() if device is None or device.index is None else device.index
        out["allocator"] = {"allocated": torch.cuda.memory_allocated(idx),
                            "reserved": torch.cuda.memory_reserved(idx),
                            "peak_allocated": torch.cuda.max_memory_allocated(idx)}
        out["nvml"] = _nvml(idx)
    else:
        out["allocator"] = "unavailable: no CUDA device in use"
        out["nvml"] = _nvml(None)
    try:
        import psutil

        out["host_rss"] = psutil.Process(os.getpid()).memory_info().rss
    except Exception as e:  # noqa: BLE001 - any failure is reported, not raised
        out["host_rss"] = f"unavailable: {type(e).__name__}: {e}"
    return out


def _nvml(index: int | None) -> dict[str, Any] | str:
    try:
        import pynvml
    except ImportError:
        return "unavailable: pynvml not installed (pip install nvidia-ml-py)"
    try:
        pynvml.nvmlInit()
    except Exception as e:  # noqa: BLE001 - NVMLError_LibraryNotFound on machines without a GPU
        return f"unavailable: {type(e).__name__}"
    try:
        if index is None:
            return "unavailable: no CUDA device in use"
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
        proc: int | str = "unavailable: this process is not listed by NVML"
        for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if p.pid == os.getpid() and p.usedGpuMemory is not None:
                proc = int(p.usedGpuMemory)
        return {"device_used": int(mem.used), "device_total": int(mem.total), "process_used": proc}
    except Exception as e:  # noqa: BLE001
        return f"unavailable: {type(e).__name__}: {e}"
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


# ----------------------------------------------------------------------------------------------- report
def fmt_bytes(n: int | float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


def _common_prefix(names: list[str]) -> str:
    """Longest dotted prefix shared by all names (peft's ``base_model.model.`` and the like), for short tables."""
    parts = [n.split(".") for n in names if n]
    if len(parts) < 2:
        return ""
    common = []
    for seg in zip(*parts):
        if len(set(seg)) != 1:
            break
        common.append(seg[0])
    common = common[: min(len(p) for p in parts) - 1]
    return ".".join(common) + "." if common else ""


def _ratio(a: int, s: int) -> str:
    return f"{a / s:.2f}x" if s else "-"


@dataclass
class Report:
    """What one compressed region saved. ``str(report)`` is a table; :meth:`to_dict` is for machines."""

    policy: str
    activation_bytes: int
    stored_bytes: int
    live_activation_bytes: int
    live_stored_bytes: int
    peak_activation_bytes: int
    peak_stored_bytes: int
    packs: int
    parameter_packs: int
    duplicate_packs: int
    by_op: list[dict[str, Any]] = field(default_factory=list)
    by_layer: list[dict[str, Any]] = field(default_factory=list)
    kept: list[dict[str, Any]] = field(default_factory=list)
    memory: dict[str, Any] = field(default_factory=dict)
    host_bytes: int = 0
    live_host_bytes: int = 0
    peak_host_bytes: int = 0
    backward_packs: int = 0

    @property
    def ratio(self) -> float:
        return self.activation_bytes / self.stored_bytes if self.stored_bytes else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items()}

    def __str__(self) -> str:
        from rich.console import Console
        from rich.table import Table

        buf = io.StringIO()
        console = Console(file=buf, width=132, color_system=None, force_terminal=False)
        prefix = _common_prefix([r["module"] for r in self.by_op] + [r["layer"] for r in self.by_layer])
        cut = len(prefix)
        t = Table(title=f"saved tensors by op class (policy {self.policy!r}"
                  + (f"; modules under {prefix.rstrip('.')}" if prefix else "") + ")", title_justify="left")
        for col, just in (("op", "left"), ("role", "left"), ("module", "left"), ("codec", "left"), ("count", "right"),
                          ("activation", "right"), ("stored", "right"), ("ratio", "right")):
            t.add_column(col, justify=just)  # type: ignore[arg-type]
        for r in sorted(self.by_op, key=lambda r: -r["activation_bytes"]):
            t.add_row(r["op"], r["role"], r["module"][cut:] or "(root)", r["codec"], str(r["count"]), fmt_bytes(r["activation_bytes"]),
                      fmt_bytes(r["stored_bytes"]), _ratio(r["activation_bytes"], r["stored_bytes"]))
        t.add_section()
        t.add_row("total", "", "", "", str(self.packs - self.parameter_packs - self.duplicate_packs),
                  fmt_bytes(self.activation_bytes), fmt_bytes(self.stored_bytes),
                  _ratio(self.activation_bytes, self.stored_bytes))
        console.print(t)
        lt = Table(title="by layer", title_justify="left")
        for col in ("layer", "count", "activation", "stored", "ratio"):
            lt.add_column(col, justify="left" if col == "layer" else "right")
        for r in self.by_layer:
            lt.add_row(r["layer"][cut:] or "(root)", str(r["count"]), fmt_bytes(r["activation_bytes"]), fmt_bytes(r["stored_bytes"]),
                       _ratio(r["activation_bytes"], r["stored_bytes"]))
        console.print(lt)
        console.print(
            f"packs {self.packs} (parameters passed through {self.parameter_packs}, duplicates {self.duplicate_packs}); "
            f"live now {fmt_bytes(self.live_activation_bytes)} -> {fmt_bytes(self.live_stored_bytes)}; "
            f"peak {fmt_bytes(self.peak_activation_bytes)} -> {fmt_bytes(self.peak_stored_bytes)}")
        if self.host_bytes:
            console.print(f"host (offloaded): total {fmt_bytes(self.host_bytes)}, live now "
                          f"{fmt_bytes(self.live_host_bytes)}, peak {fmt_bytes(self.peak_host_bytes)}")
        if self.backward_packs:
            console.print(f"packs during backward passed through uncounted: {self.backward_packs}")
        if self.kept:
            console.print("kept as is: " + "; ".join(f"{k['reason']} x{k['count']} ({fmt_bytes(k['stored_bytes'])})"
                                                     for k in self.kept))
        mem = self.memory
        console.print("memory: " + "; ".join(
            f"{k} " + (", ".join(f"{kk}={fmt_bytes(vv) if isinstance(vv, int) else vv}" for kk, vv in v.items())
                       if isinstance(v, dict) else (fmt_bytes(v) if isinstance(v, int) else str(v)))
            for k, v in mem.items()))
        return buf.getvalue().rstrip()
