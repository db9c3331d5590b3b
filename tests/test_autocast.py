"""Mixed precision: a forward under ``torch.autocast`` (fp32 weights, bf16 compute: Hugging Face Trainer's
``bf16=True`` on an fp32 model) gives exact gradients wherever the policy is lossless, and the gradients of
plain autocast within codec error where it is not (NOTE [Recipes under autocast] in lineage.py).

CPU autocast here; on the GPU machine the same tests run under CUDA autocast with
``TRITON_INTERPRET=0 HYCLORA_TEST_DEVICE=cuda python -m pytest tests/test_autocast.py`` (results in
docs/benchmarks.md; tests/test_inter.py, imported here, sets TRITON_INTERPRET=1 unless it is set)."""

from __future__ import annotations

import os

import pytest
import torch

import hyclora_hooks as hyclora
from conftest import cosine
from hyclora_hooks.models import add_lora, lora_grads, random_batch, tiny_gpt2, tiny_llama
from hyclora_hooks.policy import Policy, Rule

DEVICE = os.environ.get("HYCLORA_TEST_DEVICE", "cpu")
KEEP_WITH_RECIPES = Policy(name="inter_keep_all", rules=(Rule(codec="keep", op_class=("*", "unknown")),), inter=True)
MODELS = {"llama-sdpa": lambda: tiny_llama(attn="sdpa", dtype=torch.float32),
          "llama-eager": lambda: tiny_llama(attn="eager", dtype=torch.float32),
          "gpt2": lambda: tiny_gpt2(dtype=torch.float32)}


def _autocast_step(model, batch, policy=None, **knobs):
    """One forward under bf16 autocast on ``DEVICE`` (inside ``compress(policy)`` when given), backward outside it."""
    model.zero_grad(set_to_none=True)
    report = None
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        if policy is None:
            loss = model(**batch).loss
        else:
            with hyclora.compress(policy, **knobs) as ctx:
                loss = model(**batch).loss
            report = ctx.report()
    loss.backward()
    return loss.detach(), lora_grads(model), report


@pytest.fixture(scope="module", params=list(MODELS))
def exact(request):
    model = add_lora(MODELS[request.param]()).to(DEVICE)
    batch = {k: v.to(DEVICE) for k, v in random_batch(model.config.vocab_size, batch=2, seq=32).items()}
    return model, batch, _autocast_step(model, batch)


def test_lossless_recipes_are_bit_exact_under_autocast(exact):
    model, batch, (loss0, grads0, _) = exact
    loss, grads, report = _autocast_step(model, batch, KEEP_WITH_RECIPES)
    assert any(r["codec"] == "recompute" and r["count"] for r in report.by_op)  # recipes were used
    assert torch.equal(loss, loss0)
    assert torch.equal(grads, grads0)


@pytest.mark.parametrize("bits,min_cos", [(8, 0.999), (4, 0.97)])
def test_intra_inter_under_autocast(exact, bits, min_cos):
    model, batch, (loss0, grads0, _) = exact
    loss, grads, report = _autocast_step(model, batch, "intra_inter", bits=bits)
    assert torch.equal(loss, loss0)  # compression changes no forward value
    assert report.stored_bytes < report.activation_bytes / 2
    assert cosine(grads, grads0) > min_cos
    assert abs(grads.norm() / grads0.norm() - 1) < 0.05


def test_weight_copies_pass_through_like_weights(exact):
    """Autocast's bf16 copy of a weight is a weight (NOTE [Autocast casts] in tracking.py): returned unchanged
    and never counted, as many as the weights passed through without autocast. Before, the frozen weights'
    copies were quantized as the op's input."""
    model, batch, _ = exact
    model.zero_grad(set_to_none=True)
    with hyclora.compress("intra_inter", bits=2) as ctx:
        model(**batch).loss.backward()
    _, _, report = _autocast_step(model, batch, "intra_inter", bits=2)
    assert report.parameter_packs == ctx.report().parameter_packs > 0


def test_sdpa_keeps_its_roles_under_autocast():
    """SDPA saves the copies autocast made of q, k, v; the tracker makes them itself, so they keep their roles
    and q/k stay on the consistent low-bit path (output and logsumexp rebuilt)."""
    model = add_lora(MODELS["llama-sdpa"]()).to(DEVICE)
    batch = {k: v.to(DEVICE) for k, v in random_batch(model.config.vocab_size, batch=2, seq=32).items()}
    _, _, report = _autocast_step(model, batch, "intra_inter", bits=2)
    roles = {(r["role"], r["codec"]) for r in report.by_op if r["op"] == "attention" and r["count"]}
    assert {("output", "recompute"), ("logsumexp", "recompute")} <= roles
    assert any(role == "query" and not codec.startswith(("keep", "recompute")) for role, codec in roles)


ANY_MODEL = ["llama", "qwen2", "mistral", "gpt2", "roberta", "phi3", "gemma", "gpt_neox"]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("name", ANY_MODEL)
def test_any_model_under_autocast(name, attn):
    """Every model family of tests/test_inter.py, padded batches: lossless recipes bit-exact and ``intra_inter``
    at 4 bits within 0.99 cosine under autocast. Gemma's eager attention (multi-query: k/v expanded, then cast
    by autocast) failed here: a skipped cast in a LoRA part had also skipped the copy that made it contiguous."""
    from test_inter import BUILDERS

    model = add_lora(BUILDERS[name](attn=attn, dtype=torch.float32)).to(DEVICE)
    batch = random_batch(model.config.vocab_size, batch=2, seq=32, pad=7, pad_id=model.config.pad_token_id or 0)
    batch = {k: v.to(DEVICE) for k, v in batch.items()}
    loss0, grads0, _ = _autocast_step(model, batch)
    loss, grads, _ = _autocast_step(model, batch, KEEP_WITH_RECIPES)
    assert torch.equal(loss, loss0) and torch.equal(grads, grads0)
    _, grads, _ = _autocast_step(model, batch, "intra_inter", bits=4)
    assert cosine(grads, grads0) > 0.99


def test_model_families_check_runs_and_holds_on_cpu():
    """tools/check_model_families.py (the GPU check of layout-reading kernels) runs end to end here too; at 8
    bits every row is within 0.999 of exact autograd."""
    from tools.check_model_families import main

    rows = main(["--device", "cpu", "--models", "llama,gpt2", "--bits", "8"])
    assert len(rows) == 2 * 2 * 2 * 2  # models x attention x (bf16, autocast) x (padded, not)
    assert min(r["cosine"] for r in rows) > 0.999


@pytest.mark.parametrize("call", ["out", "inplace"])
def test_out_and_inplace_calls_behave_as_under_plain_autocast(call):
    """Autocast casts only functional calls; so must the tracker (a cast of the tensor written to would be a copy:
    ``matmul(out=c)`` and ``c.addmm_(a, b)`` left ``c`` unwritten, with no error)."""
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    plain, ours = torch.zeros(4, 4), torch.zeros(4, 4)

    def run(c):
        torch.matmul(a, b, out=c) if call == "out" else c.addmm_(a, b)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        run(plain)
        with hyclora.compress("intra_inter"):
            run(ours)
    assert plain.abs().sum() > 0 and torch.equal(ours, plain)
