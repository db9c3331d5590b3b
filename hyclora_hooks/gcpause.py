"""Python's cyclic garbage collector held off over a step's forward, until its backward's host work is done.

NOTE [GC pause]
  A compressed forward makes thousands of small Python objects that live until its backward (entries, accounting
  tokens, recipe nodes), so the collector's young generation fills every ~700 of them and is collected inside the
  forward, on the host, while the device waits for the forward's next kernel: at 4 x 1024 tokens on an H200 the
  forward is bound by the host. Held off as below, `intra_inter` steps took 4.0 ms (`@2`) and 7.5 ms (`@4`) less,
  the forward's host work 3.6 and 4.3 ms less, at 1 x 8192 (bound by the device) the same time
  (docs/benchmarks.md session 34). So:

  1. A context's entry turns the collector off if it is on (:func:`hold`); a collector already off is left off,
     and :data:`ENABLED` off leaves it alone altogether.
  2. The hold ends when the step's entries are gone: each entry refers to it (``Entry._gc``), so it dies, and ends,
     with the last of them: at the end of the backward's host work (which at 4 x 1024 runs ahead of the device, so
     what the collector then does costs no device time), or when the graph is dropped without a backward (its
     entries die at once: NOTE [Lifetimes] rule 15 in engine.py). It ends at the context's exit where the step made
     no entry or the forward raised, and, at the latest, at the next context's entry: one hold at a time,
     process-wide, as the collector is. A graph kept alive without a backward keeps the collector off until then.
  3. Ending it turns the collector on, and nothing more: the next allocation collects what the young generation
     then holds, as it would have, once instead of several times inside the forward: cyclic garbage a step makes
     (none of ours: ``tests/test_sharing.py``) waits for the end of the hold. A collector the user turns off during
     a held step is turned on again when the hold ends.
"""

from __future__ import annotations

import gc
import threading
import weakref

ENABLED = True  # off: contexts leave the collector alone (benchmarks/experiments/step_exposure.py's A/B)
_lock = threading.RLock()  # RLock: a hold dropped while the lock is held ends itself (``__del__``) on this thread
_current: weakref.ref | None = None  # the hold in force, weakly: the step's entries keep it alive (rule 2)


class Hold:
    """The collector off for one step; :meth:`release` (or this object's death) turns it on again."""

    __slots__ = ("active", "__weakref__")

    def __init__(self) -> None:
        self.active = True

    def release(self) -> None:
        global _current
        with _lock:
            if not self.active:
                return
            self.active = False
            if _current is not None and _current() in (self, None):
                _current = None
            gc.enable()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # noqa: BLE001 - at interpreter shutdown the module's globals may be gone already
            pass


def hold() -> Hold | None:
    """End the current hold, if any; then, if the collector is on, turn it off and return the new hold (None when
    the collector was off already: the user's choice, left alone)."""
    global _current
    with _lock:
        last = current()
        if last is not None:
            last.release()
        if not ENABLED or not gc.isenabled():
            return None
        gc.disable()
        new = Hold()
        _current = weakref.ref(new)
        return new


def current() -> Hold | None:
    """The hold in force now, if a step holds the collector off."""
    return _current() if _current is not None else None
