"""The loss head's gradient formed in the forward (NOTE [Fused head] in hyclora_hooks/head.py).

Every model family's bits at an incoming gradient of one are checked in test_inter.py
(``test_lossless_recipes_are_bit_exact``, policy ``fused-head``); here: other incoming gradients, what is kept and
counted, when the fusion must not happen, and that nothing of the loss op outlives the step.
"""

from __future__ import annotations

import dataclasses
import weakref

import pytest
import torch

import hyclora_hooks as hyclora
from hyclora_hooks import head, models
from hyclora_hooks.errors import HycloraError
from hyclora_hooks.policy import Policy, Rule, load_policy

from conftest import cosine, replay_step, step

KEEP_ALL = (Rule(codec="keep", op_class=("*", "unknown")),)
FUSED = Policy(name="keep_fused_head", rules=KEEP_ALL, inter=True, fuse_head=True)
VOCAB = 512


@pytest.fixture(scope="module")
def llama():
    torch.manual_seed(0)
    return models.add_lora(models.tiny_llama(attn="sdpa", dtype=torch.bfloat16, vocab=VOCAB)), \
        models.random_batch(VOCAB, batch=2, seq=32)


def _grads(model, batch, policy=None, **kw):
    """conftest's ``step`` under ``compress(policy, model=model)``, or plain autograd for ``policy=None``."""
    return step(model, batch, policy and (lambda: hyclora.compress(policy, model=model)), **kw)


def test_a_power_of_two_incoming_gradient_gives_plain_bits_and_others_a_rounding(llama):
    model, batch = llama
    for scale in (0.5, 4.0):
        _, want, _ = _grads(model, batch, scale=scale)
        _, got, _ = _grads(model, batch, FUSED, scale=scale)
        assert torch.equal(got, want), scale
    _, want, _ = _grads(model, batch, scale=1 / 3)
    _, got, report = _grads(model, batch, FUSED, scale=1 / 3)
    assert not torch.equal(got, want)  # plain rounds the logits' gradient after scaling, the fused head before
    assert cosine(got, want) > 0.9999
    assert any(r["role"] == "loss_grad" for r in report.by_op)


def test_what_is_kept_and_what_is_counted(llama):
    model, batch = llama
    _, _, report = _grads(model, batch, FUSED)
    rows = {(r["role"], r["codec"]): r for r in report.by_op if r["op"] == "cross_entropy" and r["count"]}
    tokens, hidden = batch["input_ids"].numel(), model.config.hidden_size
    kept = rows[("loss_grad", "keep")]  # the gradient for the lm_head's input: its size, the model's dtype
    assert kept["activation_bytes"] == kept["stored_bytes"] == tokens * hidden * 2
    # what the loss op saved (its fp32 log-probabilities, the targets, ...): counted as plain would hold it, not stored
    replaced = rows[("log_softmax", "fused head")]
    assert replaced["activation_bytes"] >= tokens * VOCAB * 4 and replaced["stored_bytes"] == 0


def test_the_loss_ops_saved_tensors_die_with_the_forward(llama, monkeypatch):
    """Saved under identity hooks, the log-probabilities (an output saved by its own node) held that node and
    themselves: 1 GiB a step at 8192 tokens that was never freed, until they were saved detached."""
    model, batch = llama
    seen = []
    real = torch.autograd.graph.saved_tensors_hooks

    class Spy(real):
        def __init__(self, pack, unpack):
            if getattr(pack, "__qualname__", "").startswith("fused_loss"):
                inner = pack

                def pack(t):
                    seen.append(weakref.ref(t))
                    return inner(t)
            super().__init__(pack, unpack)

    monkeypatch.setattr(torch.autograd.graph, "saved_tensors_hooks", Spy)
    with hyclora.compress(FUSED, model=model):
        loss = model(**batch).loss
    assert len(seen) >= 2 and all(r() is None for r in seen)
    loss.backward()


def test_the_logits_can_still_be_backpropagated(llama):
    model, batch = llama

    def both(out):  # a second loss on the logits the model returns (the head's graph is kept for it)
        return out.loss + out.logits.float().square().mean()

    _, want, _ = _grads(model, batch, loss_of=both)
    _, got, _ = _grads(model, batch, FUSED, loss_of=both)
    assert cosine(got, want) > 0.9999  # two matmuls summed at the head's input instead of one of the summed grads


def test_a_trainable_head_is_not_fused(llama):
    model, batch = llama
    head_weight = model.get_output_embeddings().weight
    head_weight.requires_grad_(True)
    try:
        _, want, _ = _grads(model, batch)
        _, got, report = _grads(model, batch, FUSED)
    finally:
        head_weight.requires_grad_(False)
    assert torch.equal(got, want)  # the head's own gradient included, through the replayed head
    assert not any(r["role"] == "loss_grad" for r in report.by_op)


def test_an_unreduced_loss_is_not_fused(llama):
    model, batch = llama

    labels = batch["labels"][:, 1:].reshape(-1)
    inputs = {k: v for k, v in batch.items() if k != "labels"}  # the model computes no loss of its own

    def per_token(out):
        logits = out.logits[:, :-1].float().reshape(-1, VOCAB)
        return torch.nn.functional.cross_entropy(logits, labels, reduction="none").mean()

    _, want, _ = _grads(model, inputs, loss_of=per_token)
    _, got, report = _grads(model, inputs, FUSED, loss_of=per_token)
    assert torch.equal(got, want)
    assert not any(r["role"] == "loss_grad" for r in report.by_op)


def test_replayed_steps_carry_the_fusion_out(llama):
    model, batch = llama
    model.zero_grad(set_to_none=True)
    decided = [replay_step(model, FUSED, batch, False)[0] for _ in range(2)]
    assert torch.equal(decided[0], decided[1])
    for i in range(3):
        grads, ctx = replay_step(model, FUSED, batch, True)
        assert torch.equal(grads, decided[0])
        if i:
            assert 0 < ctx.replayed_packs == ctx.accountant.packs  # every pack, the kept gradient's too


def test_only_through_sees_other_inputs():
    w = torch.randn(4, 3, requires_grad=True)  # a leaf that wants its gradient
    h = (torch.randn(2, 4, requires_grad=True) * 2).view(2, 4)
    frozen = torch.randn(4, 3)
    assert head.only_through((h @ frozen).float().grad_fn, h)
    assert not head.only_through((h @ w).grad_fn, h)  # the leaf's gradient would be left out
    other = torch.randn(2, 3, requires_grad=True) * 3
    assert not head.only_through((h @ frozen + other).grad_fn, h)  # a path that never reaches h
    assert not head.only_through((other * 2).grad_fn, h)
    a, b = (torch.randn(2, 8, requires_grad=True) * 1).split(4, dim=1)
    assert not head.only_through((b @ frozen).grad_fn, a)  # another output of a's node: not a's gradient
    deep = h
    for _ in range(80):
        deep = deep + 1
    assert not head.only_through((deep @ frozen).grad_fn, h)  # more than a head's few nodes: no


def test_the_policy_switch():
    assert load_policy("intra_inter").fuse_head and load_policy("intra_inter_full_fuse").fuse_head
    assert not load_policy("intra").fuse_head and not load_policy("baseline").fuse_head
    own = Policy.from_dict({"base": "intra_inter", "fuse_head": False})
    assert own.inter and not own.fuse_head and Policy.from_toml(own.to_toml()) == own
    with pytest.raises(HycloraError, match="fuse_head"):
        Policy(name="x", fuse_head="yes")
    off = dataclasses.replace(load_policy("intra_inter"), fuse_head=False)
    assert off.rules == load_policy("intra_inter").rules
