"""Classification of every pack on real (tiny) Hugging Face models, without model-specific code."""

from __future__ import annotations

import pytest

import hyclora_hooks as hyclora
from conftest import build


def _sites(name):
    model, batch = build(name)
    with hyclora.compress("baseline") as ctx:
        loss = model(**batch).loss
    loss.backward()
    return {(r["op"], r["role"]) for r in ctx.report().to_dict()["by_op"]}


EXPECTED = {
    "llama-sdpa": {("linear", "lora_a_input"), ("linear", "lora_b_input"), ("norm", "input"), ("norm", "stats"),
                   ("attention", "query"), ("attention", "key"), ("attention", "value"), ("attention", "output"),
                   ("attention", "logsumexp"), ("activation", "silu"), ("mul", "swiglu"), ("mul", "rope"),
                   ("cross_entropy", "log_softmax"), ("cross_entropy", "target")},
    "llama-eager": {("attention", "scores"), ("attention", "softmax"), ("attention", "probs"),
                    ("attention", "value"), ("mul", "swiglu"), ("linear", "lora_a_input")},
    "gpt2": {("norm", "input"), ("norm", "stats"), ("activation", "tanh"), ("attention", "scores"),
             ("attention", "softmax"), ("linear", "lora_a_input"), ("cross_entropy", "log_softmax")},
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_op_classes_and_roles(name):
    sites = _sites(name)
    missing = EXPECTED[name] - sites
    assert not missing, f"missing {missing}; got {sorted(sites)}"
    assert not any(op == "unknown" for op, _ in sites), sorted(sites)
