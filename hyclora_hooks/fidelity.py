"""Gradient fidelity of policies at one trained state: which saved tensors hurt, without a training run each.

:func:`hyclora_hooks.ab` trains under every policy; that is the end-to-end verdict, but it costs a fine-tuning run
per policy and mixes two effects (the error of one step, and where training under that error goes). A probe asks
only the first question, for many candidate policies at once:

NOTE [Fidelity probe]
  1. The LoRA weights are first trained *exactly* (no hooks) for ``train_steps`` AdamW steps, so the probe sees
     adapters as they are during fine-tuning (LoRA's B starts at zero, which hides every error that flows
     through B at step 0).
  2. Each policy then runs on its own deep copy of that model, so outlier-channel calibration (NOTE [Outlier
     calibration]) starts afresh for each: ``calibrate`` forward/backward passes under the policy on the batches
     after the training ones, gradients discarded, weights unchanged.
  3. On each of the next ``probe_batches`` batches: the exact gradients (no hooks), then the policy's, both after
     re-seeding the RNG (same dropout masks); their cosine and relative L2 error over all trainable parameters
     (:func:`~hyclora_hooks.abtest.grad_fidelity`), and the accountant's stored bytes.
"""

from __future__ import annotations

import copy
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from .abtest import _flat_grads, _loss, _model_device, _to, _trainable, grad_fidelity
from .engine import compress
from .errors import user_error
from .policy import Policy, load_policy


@dataclass
class ProbeResult:
    """One policy's fidelity at the trained state (NOTE [Fidelity probe] rule 3)."""

    policy: str
    grad_cosine: list[float] = field(default_factory=list)
    grad_rel_l2: list[float] = field(default_factory=list)
    activation_bytes: int = 0
    stored_bytes: int = 0

    @property
    def mean_cosine(self) -> float:
        return statistics.fmean(self.grad_cosine)

    @property
    def min_cosine(self) -> float:
        return min(self.grad_cosine)

    @property
    def ratio(self) -> float:
        return self.activation_bytes / self.stored_bytes if self.stored_bytes else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "grad_cosine": self.grad_cosine, "grad_rel_l2": self.grad_rel_l2,
                "mean_cosine": self.mean_cosine, "min_cosine": self.min_cosine,
                "activation_bytes": self.activation_bytes, "stored_bytes": self.stored_bytes}


def probe(model: nn.Module, batches: Sequence[Mapping[str, Any]], policies: Iterable[str | Path | Policy], *,
          train_steps: int = 20, calibrate: int | None = None, probe_batches: int = 2, lr: float = 1e-3,
          knobs: Mapping[str, Any] | None = None, seed: int = 0, loss_fn: Callable | None = None,
          on_policy: Callable[[ProbeResult], None] | None = None) -> list[ProbeResult]:
    """Train ``model``'s trainable parameters exactly for ``train_steps`` steps, then measure each policy's
    gradient fidelity there (NOTE [Fidelity probe]). ``batches`` must hold ``train_steps + calibrate +
    probe_batches`` batches; ``calibrate`` defaults to the largest ``iteration_threshold`` of the policies, so
    calibrated outlier channels are frozen before anything is measured. ``model`` is trained in place."""
    pols = [load_policy(p).with_knobs(**dict(knobs or {})) for p in policies]
    if not pols:
        raise user_error("probe(policies=...)", [], "one or more policies", "pass policies=['intra_inter']")
    calibrate = max(p.knobs.iteration_threshold for p in pols) if calibrate is None else calibrate
    for name, v, lo in (("train_steps", train_steps, 0), ("calibrate", calibrate, 0),
                        ("probe_batches", probe_batches, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise user_error(f"probe({name}=...)", v, f"an integer >= {lo}", f"pass {name}={max(lo, 1)}")
    need = train_steps + calibrate + probe_batches
    batches = list(batches)
    if len(batches) < need:
        raise user_error("probe(batches=...)", len(batches), f"at least {need} batches (train_steps + calibrate "
                         "+ probe_batches)", "pass more batches or fewer steps")
    params = _trainable(model)
    if not params:
        raise user_error("the model has no trainable parameters", 0, "LoRA adapters or other trainable parameters",
                         "wrap it with peft (hyclora_hooks.zoo.ensure_lora)")
    dev = _model_device(model)
    model.train()
    opt = torch.optim.AdamW([p for _, p in params], lr=lr, weight_decay=0.0)
    for i in range(train_steps):  # rule 1
        opt.zero_grad(set_to_none=True)
        torch.manual_seed(seed * 100_003 + i)
        _loss(model, _to(batches[i], dev), loss_fn).backward()
        opt.step()
    del opt
    model.zero_grad(set_to_none=True)
    calib = batches[train_steps:train_steps + calibrate]
    measured = batches[train_steps + calibrate:need]
    results = []
    for pol in pols:
        copy_ = copy.deepcopy(model)  # rule 2
        cparams = _trainable(copy_)
        res = ProbeResult(pol.name)
        for b in calib:
            with compress(pol, model=copy_):
                loss = _loss(copy_, _to(b, dev), loss_fn)
            loss.backward()
            copy_.zero_grad(set_to_none=True)
        for j, b in enumerate(measured):  # rule 3
            b = _to(b, dev)
            torch.manual_seed(seed * 100_003 + need + j)
            _loss(copy_, b, loss_fn).backward()
            exact = _flat_grads(cparams)
            copy_.zero_grad(set_to_none=True)
            torch.manual_seed(seed * 100_003 + need + j)
            with compress(pol, model=copy_) as ctx:
                loss = _loss(copy_, b, loss_fn)
            rep = ctx.report()
            loss.backward()
            cos, rel = grad_fidelity(_flat_grads(cparams), exact)
            copy_.zero_grad(set_to_none=True)
            res.grad_cosine.append(cos)
            res.grad_rel_l2.append(rel)
            res.activation_bytes = max(res.activation_bytes, rep.activation_bytes)
            res.stored_bytes = max(res.stored_bytes, rep.stored_bytes)
            del loss, ctx, rep, exact
        del copy_, cparams
        results.append(res)
        if on_policy is not None:
            on_policy(res)
    return results
