"""Shared fixtures: tiny random models with peft LoRA, and exact-autograd references."""

from __future__ import annotations

import pytest
import torch

from hyclora_hooks.models import add_lora, lora_grads, random_batch, tiny_gpt2, tiny_llama

MODELS = {
    "llama-sdpa": lambda dtype: tiny_llama(attn="sdpa", dtype=dtype),
    "llama-eager": lambda dtype: tiny_llama(attn="eager", dtype=dtype),
    "gpt2": lambda dtype: tiny_gpt2(dtype=dtype),
}


def build(name: str, dtype: torch.dtype = torch.bfloat16):
    model = add_lora(MODELS[name](dtype))
    return model, random_batch(model.config.vocab_size, batch=2, seq=32)


def step(model, batch, ctx_factory=None, seed=None):
    """One forward+backward; returns (loss, LoRA grads, report or None). ``seed`` re-seeds the RNG first (same
    LoRA-dropout masks from run to run)."""
    model.zero_grad(set_to_none=True)
    if seed is not None:
        torch.manual_seed(seed)
    report = None
    if ctx_factory is None:
        loss = model(**batch).loss
    else:
        with ctx_factory() as ctx:
            loss = model(**batch).loss
        report = ctx.report()
    loss.backward()
    return loss.detach(), lora_grads(model), report


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0).item()


@pytest.fixture
def llama():
    return build("llama-sdpa")
