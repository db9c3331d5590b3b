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


@pytest.mark.parametrize("op, lse_shape", [
    ("_scaled_dot_product_flash_attention_for_cpu", (2, 3, 16)),  # flash and CPU flash: (B, H, L)
    ("_scaled_dot_product_cudnn_attention", (2, 3, 16, 1)),  # cuDNN (Hopper's default backend): (B, H, L, 1)
])
def test_sdpa_logsumexp_of_every_backend(op, lse_shape):
    """The logsumexp must be found whatever its backend's shape: kept exact beside lossy q/k it makes backward's
    softmax inconsistent (cuDNN on an H200, SmolLM2 with 4-bit q/k: LoRA-gradient cosine 0.992 instead of 0.999)."""
    import torch

    from hyclora_hooks.sites import classify

    q, k, v = (torch.randn(2, 3, 16, 8, dtype=torch.bfloat16) for _ in range(3))
    out = torch.randn(2, 3, 16, 8, dtype=torch.bfloat16)
    lse = torch.randn(lse_shape, dtype=torch.float32)
    never = lambda t: False  # noqa: E731
    args = (q, k, v)
    assert classify(lse, op, args, "model.layers.0.self_attn", "LlamaAttention", never) == ("attention", "logsumexp")
    assert classify(out, op, args, "model.layers.0.self_attn", "LlamaAttention", never) == ("attention", "output")
    assert classify(k, op, args, "model.layers.0.self_attn", "LlamaAttention", never) == ("attention", "key")


def test_module_tree_matches_torch_walks():
    """The tracker's one-pass walk names modules as ``named_modules(remove_duplicate=False)`` does (first name of a
    shared module wins: classification and accounting read it) and finds every parameter and buffer."""
    from torch import nn

    from hyclora_hooks.models import add_lora, tiny_gpt2
    from hyclora_hooks.tracking import module_tree

    model = add_lora(tiny_gpt2())
    model.shared = nn.ModuleDict({"again": model.base_model.model.transformer.h[0]})  # one module, two names
    modules, tensors = module_tree(model)
    expected = list(model.named_modules(remove_duplicate=False))
    assert [n for n, _ in modules] == [n for n, _ in expected]
    assert all(a is b for (_, a), (_, b) in zip(modules, expected))
    ids = {id(t) for t in tensors}
    assert ids == {id(t) for t in list(model.parameters()) + list(model.buffers())}


def test_an_unchanged_tree_is_walked_once_and_a_changed_one_again():
    """``walk_tree`` reuses the last walk's names and registry only for the same modules under the same names and
    the same tensors on the same storages: a replaced module gets its own name, a moved buffer is a parameter."""
    import torch
    from torch import nn

    from hyclora_hooks.models import random_batch, tiny_llama
    from hyclora_hooks.tracking import ModuleTracker, ParamRegistry, walk_tree

    model = tiny_llama(vocab=256, dtype=torch.float32)
    first = walk_tree(model)
    assert walk_tree(model) is first
    mlp = model.model.layers[0].mlp
    mlp.up_proj = nn.Linear(mlp.up_proj.in_features, mlp.up_proj.out_features, bias=False)
    second = walk_tree(model)
    assert second is not first and second.names[mlp.up_proj] == "model.layers.0.mlp.up_proj"
    model.to(torch.float64)  # new buffer tensors (rotary inv_freq), parameters on new storages
    assert walk_tree(model) is not second
    third = walk_tree(model)
    with torch.no_grad():
        for p in model.parameters():  # the same Parameter objects on new storages
            p.data = p.data.clone()
    tracker = ModuleTracker(ParamRegistry())
    tracker.add_tree(model)
    assert walk_tree(model) is not third
    # detached aliases are found by storage alone (no Parameter type, no view base): the registry must have the
    # parameters' new storages
    assert all(tracker.params.is_param(t.detach()) for t in list(model.buffers()) + list(model.parameters()))
    assert tracker.name_of(mlp.up_proj) == "model.layers.0.mlp.up_proj"
    # and under compress(): every saved tensor's module has its qualified name, none the "<Class>" fallback
    with hyclora.compress("baseline", model=model) as ctx:
        model(**random_batch(256, batch=1, seq=8)).loss.backward()
    assert not any(pattern.startswith("<") for _, _, pattern, _ in ctx.accountant.by_op)


@pytest.mark.parametrize("named_model", [True, False])
def test_a_replayed_step_does_not_walk_the_tree_and_a_deciding_one_does(named_model, monkeypatch):
    """NOTE [Unchecked walk]: a context takes the tree's last walk unchecked; a step that replays every pack never
    walks (the walk was ~1.3 ms of a step's host time on an H200), a step that decides walks before its first
    decision."""
    import torch

    from hyclora_hooks import tracking
    from hyclora_hooks.models import add_lora, random_batch, tiny_llama

    model = add_lora(tiny_llama(vocab=256, dtype=torch.float32))
    model.train()
    batch = random_batch(256, batch=2, seq=16)
    walks, module_tree = [], tracking.module_tree
    monkeypatch.setattr(tracking, "module_tree", lambda root: walks.append(root) or module_tree(root))
    for step in range(3):  # records, replays, replays
        walks.clear()
        with hyclora.compress("intra_inter", bits=2, model=model if named_model else None) as ctx:
            loss = model(**batch).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
        replayed_all = ctx.replayed_packs == ctx.report().packs
        assert replayed_all is (step > 0), step
        assert len(walks) == (0 if replayed_all else 1), step


def test_a_tree_changed_since_its_last_walk_is_walked_before_the_first_decision(monkeypatch):
    """A base layer replaced between steps: the step's replay misses at its changed op, and the packs it then
    decides see the new layer under its qualified name and its weight as a parameter (NOTE [Unchecked walk]); the
    gradients are those of a step that walked first (``CHECK_EVERY_STEP``)."""
    import copy

    import torch
    from torch import nn

    from hyclora_hooks import tracking
    from hyclora_hooks.models import add_lora, lora_grads, random_batch, tiny_llama

    lazy = add_lora(tiny_llama(vocab=256, dtype=torch.float32))
    lazy.train()
    eager = copy.deepcopy(lazy)
    batch = random_batch(256, batch=2, seq=16)

    def step(model):
        with hyclora.compress("intra", bits=4, model=model) as ctx:
            loss = model(**batch).loss
        loss.backward()
        grads = lora_grads(model)
        model.zero_grad(set_to_none=True)
        return grads, ctx

    for _ in range(2):
        step(lazy)
    new = {}
    for model in (lazy, eager):
        up = model.base_model.model.model.layers[1].mlp.up_proj
        old = up.base_layer
        up.base_layer = new[id(model)] = nn.Linear(old.in_features, old.out_features, bias=False)
        up.base_layer.weight = nn.Parameter(old.weight.detach().clone(), requires_grad=False)
    grads, ctx = step(lazy)
    assert ctx.replayed_packs < ctx.report().packs  # the replay missed and the rest was decided
    assert ctx._modules.name_of(new[id(lazy)]) == "base_model.model.model.layers.1.mlp.up_proj.base_layer"
    assert ctx._params.is_param(new[id(lazy)].weight.detach())
    monkeypatch.setattr(tracking, "CHECK_EVERY_STEP", True)
    reference, _ = step(eager)
    assert torch.equal(grads, reference)
