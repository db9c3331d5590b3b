"""Outlier-channel calibration that outlives one ``compress()`` context: the per-site state of HyC-LoRA.

NOTE [Outlier calibration]
  1. One ``compress()`` context is one training step. While it is entered, :func:`calibration_scope` makes a
     :class:`Step` current (a ``ContextVar``: hooks are thread-local, and so is this). It names the model root
     (weakly) and is itself the step's token.
  2. State lives in a module-level ``WeakKeyDictionary`` keyed by the model root, then by the save site's
     ``(module, op, role)``. Dropping the model drops its calibration; two models never share state.
  3. A site scores each tensor it sees by per-channel sum of squares. During its first ``iteration_threshold``
     steps (at least one) the scores add up and the current top-k channels are used; on the first call of a later
     step the top-k of the accumulated scores are frozen and every later call uses them without scoring (one pass
     over the tensor instead of two on the GPU).
  4. Without a current step (a codec called directly) or with ``mode="dynamic"``, channels are chosen per call.
  5. A change of channel count at a site (another model shape under the same root) restarts its calibration.
"""

from __future__ import annotations

import math
import weakref
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from ..kernels.quant import as_matrix_shape, outlier_scores, top_channels


class Step:
    """One compress() context (NOTE [Outlier calibration] rule 1)."""

    __slots__ = ("_root", "__weakref__")

    def __init__(self, root: Callable[[], Any]):
        self._root = root

    def root(self) -> Any:
        return self._root()


_CURRENT: ContextVar[Step | None] = ContextVar("hyclora_calibration_step", default=None)
_STORE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass
class SiteState:
    channels: int
    scores: torch.Tensor | None = None
    steps: int = 0
    last_step: Any = None  # weakref to the Step that last added scores
    frozen: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)


@contextmanager
def calibration_scope(root: Callable[[], Any]) -> Iterator[Step]:
    """Make a new step current for the ``with`` block; ``root()`` returns the model root (or None) lazily."""
    step = Step(root)
    token = _CURRENT.set(step)
    try:
        yield step
    finally:
        _CURRENT.reset(token)


def current_step() -> Step | None:
    return _CURRENT.get()


def site_state(site: Any, channels: int) -> tuple[SiteState | None, Step | None]:
    """The persistent state of ``site`` under the current step's root, or (None, None) when there is none."""
    step = _CURRENT.get()
    if step is None or site is None:
        return None, None
    root = step.root()
    if root is None:
        return None, None
    try:
        table = _STORE.setdefault(root, {})
    except TypeError:  # a root that cannot be weakly referenced: no persistence
        return None, None
    key = (getattr(site, "module", ""), getattr(site, "op", ""), getattr(site, "role", ""))
    st = table.get(key)
    if st is None or st.channels != channels:  # rule 5
        st = table[key] = SiteState(channels)
    return st, step


def n_outliers(ratio: float, channels: int) -> int:
    """``ceil(ratio * C)`` channels (so a small model still gets one), never all of them."""
    if ratio <= 0 or channels <= 1:
        return 0
    return min(channels - 1, math.ceil(ratio * channels - 1e-9))


def outlier_channels(x: torch.Tensor, site: Any, ratio: float, threshold: int, mode: str) -> torch.Tensor | None:
    """Channel indices (sorted, int16/int32) to keep dense for ``x`` at ``site``; None when there are none."""
    _, c = as_matrix_shape(x.shape)
    k = n_outliers(ratio, c)
    if k == 0 or x.numel() == 0:
        return None
    st, step = (None, None) if mode == "dynamic" else site_state(site, c)
    if st is None:  # rule 4
        return top_channels(outlier_scores(x), k)
    if st.frozen is not None:
        return st.frozen if st.frozen.device == x.device else st.frozen.to(x.device)
    new_step = st.last_step is None or st.last_step() is not step
    if new_step and st.steps >= max(1, threshold):  # rule 3: calibration over; freeze
        st.frozen = top_channels(st.scores, k)
        return st.frozen if st.frozen.device == x.device else st.frozen.to(x.device)
    s = outlier_scores(x)
    st.scores = s if st.scores is None else st.scores.to(s.device) + s
    if new_step:
        st.steps += 1
        st.last_step = weakref.ref(step)
    return top_channels(st.scores, k)


def reset_calibration(root: Any | None = None) -> None:
    """Forget the calibration of ``root`` (every model's when None)."""
    if root is None:
        _STORE.clear()
    else:
        _STORE.pop(root, None)


__all__ = ["calibration_scope", "current_step", "outlier_channels", "n_outliers", "reset_calibration", "SiteState"]
