"""Hugging Face's KV cache, turned off for the training forwards a context wraps.

With ``config.use_cache`` on (the default of HF's configs) every forward builds a ``DynamicCache``, and each
attention copies its keys and values into it (``torch.cat`` onto an empty tensor) before SDPA saves them. A training
forward never reads that cache back, but the copies cost here: SDPA's key and value are then copies that carry no
frozen term (NOTE [Frozen term] in tracking.py), so under ``intra_inter`` their LoRA parts are formed and subtracted
in the forward (and on a tiny Llama the value took 7% more stored bytes at ``bits=2``), and an attention whose call
reads a cache is no replay unit (NOTE [Replay units] rule 5 in units.py). Llama-2-7B-shaped, 8 layers, H200
(docs/benchmarks.md session 29): the same bytes, but a step 0.92x / 0.95x as long at 4x1024 (``bits`` 2 / 4) and
0.98x / 0.97x at 1x8192 with the cache off. Hugging Face turns the cache off itself under gradient checkpointing.
A context does the same for every forward whose outermost module is in training mode with gradients on, and puts
each config back when it exits; a call that passes ``use_cache=True`` keeps its cache (the argument wins over the
config in HF's models).
"""

from __future__ import annotations

import warnings
from typing import Iterable

import torch
from torch import nn


def configs_of(modules: Iterable[nn.Module]) -> tuple:
    """The distinct configs with a boolean ``use_cache`` held by ``modules`` (HF models keep theirs as
    ``self.config``; a causal LM and its base model share one)."""
    found: dict = {}
    for m in modules:
        cfg = m.__dict__.get("config")
        if cfg is not None and isinstance(getattr(cfg, "use_cache", None), bool):
            found.setdefault(id(cfg), cfg)
    return tuple(found.values())


class CacheSwitch:
    """``use_cache`` off in the configs of the trees a context walked, for its training forwards, until
    :meth:`restore` (the context's exit)."""

    _warned = False  # once a process: the user learns why ``past_key_values`` is None inside a context

    def __init__(self) -> None:
        self.configs: tuple = ()
        self._off: list = []

    def add(self, configs: tuple) -> None:
        self.configs += tuple(c for c in configs if all(c is not k for k in self.configs))

    def forward_starts(self, root: nn.Module) -> None:
        """Called as the outermost module's forward starts."""
        if not root.training or not torch.is_grad_enabled():
            return
        for cfg in self.configs:
            if cfg.use_cache is True:
                cfg.use_cache = False
                self._off.append(cfg)
                if not CacheSwitch._warned:
                    CacheSwitch._warned = True
                    warnings.warn("hyclora_hooks: config.use_cache is off inside compress() for training forwards "
                                  "(a training step never reads the KV cache, and its copies of keys and values "
                                  "cost memory and time here); it is back on when the context exits. Pass "
                                  "use_cache=True to the model call to keep a cache.", UserWarning)

    def restore(self) -> None:
        off, self._off = self._off, []
        for cfg in off:
            cfg.use_cache = True
