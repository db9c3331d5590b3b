"""Dropout under a context: the ``bitmask`` codec for its masks (exact, an eighth of a bool mask's bytes), and the
dropped LoRA input rebuilt from its input and mask (NOTE [Dropout recipe] in lineage.py)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hyclora_hooks as hyclora
from hyclora_hooks.codecs import make_codec
from hyclora_hooks.models import add_lora, random_batch, tiny_gpt2, tiny_llama
from hyclora_hooks.policy import Policy, Rule

from conftest import replay_step, step


@settings(max_examples=80, deadline=None)
@given(shape=st.lists(st.integers(0, 13), min_size=1, max_size=3), p=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
       transposed=st.booleans(), offset=st.integers(0, 9), seed=st.integers(0, 999))
def test_a_bool_mask_comes_back_exactly_in_an_eighth_of_its_bytes(shape, p, transposed, offset, seed):
    gen = torch.Generator().manual_seed(seed)
    n = math.prod(shape)
    mask = (torch.rand(n + offset, generator=gen) >= p)[offset:].view(shape)  # a storage offset: unaligned words
    if transposed and mask.dim() > 1:
        mask = mask.transpose(0, -1)
    codec = make_codec("bitmask", {})
    payload = codec.encode(mask)
    out = codec.decode(payload)
    assert out.dtype == torch.bool and out.shape == mask.shape and torch.equal(out, mask)
    assert codec.nbytes(payload) == -(-mask.numel() // 8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_dropout_noise_comes_back_exactly_as_bits_and_its_value(dtype):
    """torch's CPU dropout saves ``bernoulli(1 - p) / (1 - p)`` in the input's dtype: packed to bits and one value."""
    torch.manual_seed(0)
    x = torch.randn(37, 19, dtype=dtype, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        torch.nn.functional.dropout(x, 0.3, training=True)
    (noise,) = saved
    codec = make_codec("bitmask", {})
    payload = codec.encode(noise)
    assert codec.nbytes(payload) == -(-noise.numel() // 8) + noise.element_size()
    assert torch.equal(codec.decode(payload), noise)


@pytest.mark.parametrize("t", [torch.randn(4, 5), torch.tensor([0.0, 2.0, 3.0]), torch.tensor([0.0, float("inf")]),
                               torch.arange(6)])
def test_anything_else_is_held_as_is(t):
    codec = make_codec("bitmask", {})
    payload = codec.encode(t)
    assert payload is t and codec.decode(payload) is t and codec.nbytes(payload) == t.untyped_storage().nbytes()


@pytest.mark.parametrize("build", [lambda: add_lora(tiny_llama(dtype=torch.float32), dropout=0.2),
                                   lambda: add_lora(tiny_gpt2(), dropout=0.2)], ids=["llama_lora_dropout", "gpt2"])
def test_a_step_with_packed_dropout_masks_gives_autograds_gradients(build):
    """Only the masks packed (everything else kept): the same LoRA gradients as plain autograd, bit for bit, with
    the same masks (seeded); GPT-2 also has dropout in its attention, residual and embedding."""
    model = build()
    model.train()
    batch = random_batch(model.config.vocab_size, batch=2, seq=16)
    policy = Policy(name="masks", rules=(Rule(codec="bitmask", op_class="dropout"),
                                         Rule(codec="bitmask", op_class="attention", role="dropout"),
                                         Rule(codec="keep", op_class=("*",))))
    _, exact, _ = step(model, batch, seed=3)
    _, got, report = step(model, batch, lambda: hyclora.compress(policy, model=model), seed=3)
    assert torch.equal(got, exact)
    rows = [r for r in report.by_op if r["codec"] == "bitmask"]
    assert rows and all(r["stored_bytes"] * 8 <= r["activation_bytes"] for r in rows)


def test_intra_inter_with_lora_dropout_stores_what_it_does_without():
    """With peft's lora_dropout > 0, dropout's masks were most of what ``intra_inter`` stored (2.7x less memory than
    plain on this model, against 16.2x without dropout) and each dropped LoRA input was quantized on its own (7.4x
    with the masks packed); packed and rebuilt from the masks, the step stores as little as without dropout."""
    ratios = {}
    for p in (0.0, 0.05):
        model = add_lora(tiny_llama(vocab=256, dtype=torch.bfloat16, hidden=256, intermediate=512), dropout=p)
        model.train()
        batch = random_batch(256, batch=2, seq=64)
        _, _, report = step(model, batch, lambda: hyclora.compress("intra_inter", model=model, bits=2), seed=0)
        ratios[p] = report.activation_bytes / report.stored_bytes
    assert ratios[0.05] > 0.95 * ratios[0.0], ratios


_REBUILT = Policy(name="rebuilt", inter=True, rules=(  # dropped inputs lossy: P1 (a recipe) is tried before the codec
    Rule(codec="bitmask", op_class="dropout"),
    Rule(codec="quant", op_class="linear", role="lora_a_input", params={"bits": 2}),
    Rule(codec="keep", op_class=("*",))))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_dropped_lora_input_is_rebuilt_from_its_mask_bit_for_bit(dtype):
    """Every LoRA input would be quantized at 2 bits if stored; rebuilt from the undropped input (itself a recipe)
    and the mask, the step's gradients are plain autograd's, bit for bit, recorded and replayed. (down_proj's input,
    the SwiGLU product, is a recipe of recipes over the cost bound, ``lineage.MAX_COST``: stored by the codec
    whether dropped or not, so it is left out here.)"""
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"]
    model = add_lora(tiny_llama(dtype=dtype), dropout=0.3, targets=targets)
    model.train()
    model.enable_input_require_grads()  # else layer 0's dropouts save no mask (their input needs no gradient)
    batch = random_batch(model.config.vocab_size, batch=2, seq=16)
    for seed in range(3):  # the first step records its decisions, the next replay them (NOTE [Replay])
        got, ctx = replay_step(model, _REBUILT, batch, True, seed=seed)
        _, exact, _ = step(model, batch, seed=seed)
        model.zero_grad(set_to_none=True)  # (replay_step adds to what is there)
        assert torch.equal(got, exact), seed
        rows = {(r["role"], r["codec"]) for r in ctx.report().by_op if r["op"] == "linear"}
        assert ("lora_a_input", "recompute") in rows and not any(c.startswith("quant") for _, c in rows), rows
    assert ctx.replayed_packs == ctx.report().packs


def test_intra_inter_with_lora_dropout_keeps_its_fidelity():
    """LoRA-gradient cosine to exact autograd, the same masks (seeded): with dropout as without."""
    cos = {}
    for p in (0.0, 0.1):
        model = add_lora(tiny_llama(dtype=torch.bfloat16), dropout=p)
        model.train()
        batch = random_batch(model.config.vocab_size, batch=2, seq=32)
        _, exact, _ = step(model, batch, seed=1)
        _, got, _ = step(model, batch, lambda: hyclora.compress("intra_inter", model=model, bits=4), seed=1)
        cos[p] = torch.nn.functional.cosine_similarity(got, exact, dim=0).item()
    assert cos[0.1] > 0.99 and cos[0.1] > cos[0.0] - 0.005, cos


def test_dropped_lora_inputs_take_the_fused_norm_tail():
    """A dropped LoRA input after an RMSNorm is ``dropout(w * h cast to fp32)``: its recipe has the RMSNorm tail
    fused below the dropout (NOTE [Dropout recipe]), as an undropped one has it at its top. Without dropout q/k/v
    read one rebuilt copy and gate/up another, two a layer (less layer 0's attention norm: it normalises the
    embeddings, which no recipe reaches); with dropout each projection has its own: five a layer, less layer 0's
    three."""
    from test_norm_tail import _tail_recipes

    counts = {}
    for p in (0.0, 0.1):
        model = add_lora(tiny_llama(dtype=torch.bfloat16), dropout=p)
        model.train()
        batch = random_batch(model.config.vocab_size, batch=2, seq=16)
        counts[p] = _tail_recipes(model, batch, "intra_inter")
    layers = model.config.num_hidden_layers
    assert counts == {0.0: 2 * layers - 1, 0.1: 5 * layers - 3}, counts
