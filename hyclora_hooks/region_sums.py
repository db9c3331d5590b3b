"""peft's LoRA sum as one node in a checkpointed region's forward (NOTE [Region sums]).

NOTE [Region sums]
  Under non-reentrant checkpointing (Hugging Face checkpoints each decoder layer) a region's forward saves nothing
  for us: checkpoint's own saved-tensor hooks are innermost (NOTE [Untracked regions] in tracking.py), and its
  backward recomputes the region to fill the saved slots of the graph that forward built, which is the graph the
  backward runs. So that forward's LoRA linears may end with the fused LoRA sum (NOTE [LoRA sum] in lora_sum.py)
  as a replayed unit's lean bodies do (NOTE [Replay units] rule 10): the sum's node saves nothing, as peft's
  ``mul``, ``add`` and cast do not, so the recomputation, which runs peft's own forward, saves the same tensors in
  the same order with the same bits (non-reentrant checkpoint checks their shapes, dtypes and devices), and the
  backward takes the node's one pass instead of peft's three. A checkpointed step has no replay units (its layers
  are regions), so this is where its LoRA linears get the fused sum. On an H200 a checkpointed ``intra_inter`` step
  takes 0.92-0.96x plain checkpointing's time with it, 1.00-1.01x without (docs/benchmarks.md, session 42).
  1. At a region's entry (the module tracker's, on the context's thread), outside autocast and with no global
     module hook but the tracker's two (the lean body skips its submodules' calls, as rule 10 of NOTE [Replay
     units] does under rule 7), every peft LoRA linear below the region's module whose call would be rule 1's
     plain path (``units.on_plain_path``: no local hook on it or its parts, no instance ``forward`` already) gets
     :func:`units.lean_forward` as its instance ``forward``; at the region's end (its module's exit, normal or
     not, or the context's exit) they get peft's back. The recomputation runs in the backward, after both.
  2. Called from another thread, or with more than the input, a LoRA linear runs peft's forward.
  3. ``ENABLED`` off: peft's forward throughout (``benchmarks/experiments/step_exposure.py`` A/Bs it).
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Any

import torch
from torch import nn

from . import units
from .lineage import autocast_on

ENABLED = True  # False: checkpointed regions keep peft's LoRA sum (rule 3)


class RegionSums:
    """Installs and removes the lean bodies of rule 1 for the regions of ``modules`` (a ``ModuleTracker``), whose
    thread is the context's."""

    def __init__(self, modules: Any):
        self._modules = modules
        self._lean: list[nn.Module] = []  # LoRA linears running lean bodies now

    def enter(self, region: nn.Module) -> None:
        """Rule 1 at a region's entry."""
        if not ENABLED or autocast_on() or not units.only_our_global_hooks():
            return
        for m in units.loras_below(region):
            if units.on_plain_path(m):
                m.__dict__["forward"] = partial(self._forward, m)
                self._lean.append(m)

    def leave(self) -> None:
        """Rule 1 at a region's end: peft's forward back."""
        for m in self._lean:
            m.__dict__.pop("forward", None)
        self._lean = []

    def _forward(self, m: nn.Module, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if args or kwargs or threading.get_ident() != self._modules._thread:  # rule 2
            return type(m).forward(m, x, *args, **kwargs)
        return units.lean_forward(m, x)
