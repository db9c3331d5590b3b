"""The whole-model half of the GPU kernel checks: a tiny Llama's LoRA gradients under a lossless ``inter`` policy,
which must be exact autograd's bit for bit whichever kernels rebuild its recipes (``check_cast_into.py``,
``check_norm_tail.py``, ``check_log_softmax.py``, ``check_fused_head.py``)."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator


def lossless_grads(vocab: int = 256, device: str = "cuda") -> Callable[[Any], Any]:
    """``grads(policy, scale=1)``: the LoRA gradients of one step (its loss times ``scale``) of a tiny Llama (bf16, SDPA, LoRA on every linear; batch 2 x
    64) on ``device``, exact autograd for ``policy=None``, else under ``compress(policy)``, which must have stored less
    than the step saved (its recipes ran). ``grads.keep_all`` is an all-``keep`` ``inter`` policy."""
    import torch

    import hyclora_hooks as hy
    from hyclora_hooks import models
    from hyclora_hooks.policy import Policy, Rule

    model = models.add_lora(models.tiny_llama(attn="sdpa", dtype=torch.bfloat16, vocab=vocab)).to(device)
    batch = {k: v.to(device) for k, v in models.random_batch(vocab, batch=2, seq=64).items()}

    def grads(policy=None, scale: float = 1.0):
        model.zero_grad(set_to_none=True)
        if policy is None:
            loss = model(**batch).loss
        else:
            with hy.compress(policy) as ctx:
                loss = model(**batch).loss
            assert ctx.report().stored_bytes < ctx.report().activation_bytes  # recipes ran
        (loss * scale if scale != 1.0 else loss).backward()
        return models.lora_grads(model)

    grads.keep_all = Policy(name="inter_keep_all", rules=(Rule(codec="keep", op_class=("*", "unknown")),), inter=True)
    return grads


@contextlib.contextmanager
def counting(module: Any, name: str) -> Iterator[list]:
    """Count the calls of ``module.name`` while the block runs (the list it yields grows by one a call)."""
    calls: list = []
    real = getattr(module, name)
    setattr(module, name, lambda *a, **k: calls.append(1) or real(*a, **k))
    try:
        yield calls
    finally:
        setattr(module, name, real)
