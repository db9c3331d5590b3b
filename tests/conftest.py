"""Shared fixtures: tiny random models with peft LoRA, and exact-autograd references."""

from __future__ import annotations

import pytest
import torch

import hyclora_hooks as hyclora
from hyclora_hooks.models import add_lora, lora_grads, random_batch, tiny_gpt2, tiny_llama

MODELS = {
    "llama-sdpa": lambda dtype: tiny_llama(attn="sdpa", dtype=dtype),
    "llama-eager": lambda dtype: tiny_llama(attn="eager", dtype=dtype),
    "gpt2": lambda dtype: tiny_gpt2(dtype=dtype),
}


def build(name: str, dtype: torch.dtype = torch.bfloat16):
    model = add_lora(MODELS[name](dtype))
    return model, random_batch(model.config.vocab_size, batch=2, seq=32)


def step(model, batch, ctx_factory=None, seed=None, scale=1.0, loss_of=lambda out: out.loss):
    """One forward+backward; returns (loss, LoRA grads, report or None). ``seed`` re-seeds the RNG first (same
    LoRA-dropout masks from run to run); ``loss_of(output)`` is the loss, backpropagated times ``scale``."""
    model.zero_grad(set_to_none=True)
    if seed is not None:
        torch.manual_seed(seed)
    report = None
    if ctx_factory is None:
        loss = loss_of(model(**batch))
    else:
        with ctx_factory() as ctx:
            loss = loss_of(model(**batch))
        report = ctx.report()
    (loss * scale if scale != 1.0 else loss).backward()
    return loss.detach(), lora_grads(model), report


def replay_step(model, policy, batch, replay_on, seed=None, **knobs):
    """One step under ``compress(policy, replay=replay_on, **knobs)``: (LoRA grads, the context); grads zeroed
    after. ``seed`` as in :func:`step`."""
    if seed is not None:
        torch.manual_seed(seed)
    with hyclora.compress(policy, replay=replay_on, **knobs) as ctx:
        loss = model(**batch).loss
    loss.backward()
    grads = lora_grads(model)
    model.zero_grad(set_to_none=True)
    return grads, ctx


def zero_frozen(model, *projections: str) -> None:
    """Zero the frozen base weights of the named projections (``"v_proj"``, ...): their outputs are then their LoRA
    parts alone, so P3's stored ``t - part`` is ~0 and a lossy code of it costs nothing unless the forward and the
    backward form different parts."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(tuple(f"{proj}.base_layer.weight" for proj in projections)):
                p.zero_()


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0).item()


@pytest.fixture
def llama():
    return build("llama-sdpa")
