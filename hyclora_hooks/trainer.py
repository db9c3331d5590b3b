"""Hugging Face ``Trainer`` integration: train under a policy by swapping one class.

>>> from hyclora_hooks.trainer import HycloraTrainer                                 # doctest: +SKIP
>>> trainer = HycloraTrainer(model=peft_model, args=args, train_dataset=ds,          # doctest: +SKIP
...                          eval_dataset=held_out, hyclora_policy="intra", hyclora_knobs={"bits": 4})
>>> trainer.train()                                                                  # doctest: +SKIP

Why a mixin and not a ``TrainerCallback``: callbacks run between steps and cannot wrap the forward pass, and the
hooks must be active exactly while the forward builds the graph. :class:`HycloraTrainerMixin` overrides
``compute_loss``, which ``Trainer.training_step`` calls once per micro-batch before it calls backward, so:

* gradient accumulation works: each micro-batch's forward gets its own ``compress`` context;
* evaluation and prediction run uncompressed: ``Trainer.prediction_step`` calls ``compute_loss`` under
  ``torch.no_grad()`` with the model in eval mode, and the mixin passes those calls straight through;
* other Trainer subclasses (trl's ``SFTTrainer``, your own) get it by listing the mixin first:
  ``class MyTrainer(HycloraTrainerMixin, SFTTrainer): ...``.

The policy is loaded once, so calibrated state a policy keeps across steps survives. The latest micro-batch's
figures are in ``trainer.hyclora_report()`` and in the training logs (``hyclora/activation_mib``,
``hyclora/stored_mib``, ``hyclora/ratio``). With ``gradient_checkpointing=True`` the hooks see only what the
checkpointed segments save (their inputs); see the README on checkpointing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from transformers import Trainer

from .accounting import Report
from .engine import Compressor, compress
from .policy import Policy, load_policy

_MIB = 1024 * 1024


class HycloraTrainerMixin:
    """Adds ``hyclora_policy`` (preset name, ``.toml`` path or :class:`Policy`) and ``hyclora_knobs`` to a Trainer."""

    def __init__(self, *args: Any, hyclora_policy: str | Path | Policy = "intra",
                 hyclora_knobs: Mapping[str, Any] | None = None, **kwargs: Any):
        self.hyclora_policy = load_policy(hyclora_policy).with_knobs(**dict(hyclora_knobs or {}))
        self.hyclora_compressed_forwards = 0
        self._hyclora_last: Compressor | None = None
        super().__init__(*args, **kwargs)

    def compute_loss(self, model: torch.nn.Module, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        if not (model.training and torch.is_grad_enabled()):  # evaluation / prediction: exact, no hooks
            return super().compute_loss(model, inputs, *args, **kwargs)  # type: ignore[misc]
        with compress(self.hyclora_policy, model=model) as ctx:
            out = super().compute_loss(model, inputs, *args, **kwargs)  # type: ignore[misc]
        self._hyclora_last = ctx
        self.hyclora_compressed_forwards += 1
        return out

    def hyclora_report(self) -> Report | None:
        """The accounting of the latest compressed micro-batch (``None`` before the first)."""
        return self._hyclora_last.report() if self._hyclora_last is not None else None

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        last = self._hyclora_last
        if last is not None and "loss" in logs:  # training logs only; eval logs carry eval_loss
            acct = last.accountant
            logs = {**logs, "hyclora/activation_mib": round(acct.activation_bytes / _MIB, 3),
                    "hyclora/stored_mib": round(acct.stored_bytes / _MIB, 3),
                    "hyclora/ratio": round(acct.activation_bytes / acct.stored_bytes, 3) if acct.stored_bytes
                    else float("nan")}
        return super().log(logs, *args, **kwargs)  # type: ignore[misc]


class HycloraTrainer(HycloraTrainerMixin, Trainer):
    """``transformers.Trainer`` training under a hyclora policy; see :mod:`hyclora_hooks.trainer`."""


__all__ = ["HycloraTrainerMixin", "HycloraTrainer"]
