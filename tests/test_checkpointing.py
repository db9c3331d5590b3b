"""compress() around gradient checkpointing: Hugging Face (both modes) and torch.utils.checkpoint directly.

What checkpointing keeps of a region is its inputs; they reach our hooks as op class ``checkpoint``, role
``input`` (see docs/checkpointing.md for what each torch version does).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

import hyclora_hooks as hyclora
from hyclora_hooks.models import add_lora, lora_grads, random_batch, tiny_llama

VOCAB = 256


def _model(dtype: torch.dtype, reentrant: bool | None) -> nn.Module:
    model = add_lora(tiny_llama(layers=2, vocab=VOCAB, dtype=dtype))
    model.train()
    if reentrant is not None:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    return model


def _grads(dtype, reentrant, policy=None, backward_inside=False, **knobs):
    model = _model(dtype, reentrant)
    batch = random_batch(VOCAB, batch=2, seq=48)
    if policy is None:
        model(**batch).loss.backward()
        return lora_grads(model), None
    with hyclora.compress(policy, **knobs) as ctx:
        loss = model(**batch).loss
        if backward_inside:
            loss.backward()
    if not backward_inside:
        loss.backward()
    return lora_grads(model), ctx.report()


@pytest.fixture(scope="module", params=[torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def exact(request):
    """Exact autograd, no checkpointing and no hooks: the reference every variant is held to."""
    return request.param, _grads(request.param, None)[0]


@pytest.mark.parametrize("reentrant", [False, True], ids=["nonreentrant", "reentrant"])
@pytest.mark.parametrize("backward_inside", [False, True], ids=["bw-after", "bw-inside"])
def test_baseline_is_bit_exact_under_checkpointing(exact, reentrant, backward_inside):
    dtype, ref = exact
    grads, report = _grads(dtype, reentrant, "baseline", backward_inside)
    assert torch.equal(grads, ref)
    rows = [r for r in report.by_op if r["op"] == "checkpoint"]
    hidden_bytes = 2 * 48 * 128 * torch.finfo(dtype).bits // 8
    # one region input per layer; torch < 2.13 also saves a 0-element dummy per region (_NoopSaveInputs)
    assert rows and rows[0]["role"] == "input" and rows[0]["count"] in (2, 4)
    assert sum(r["activation_bytes"] for r in rows) == 2 * hidden_bytes
    assert rows[0]["module"].endswith("layers.*")  # attributed to the checkpointed layer
    assert {r["layer"] for r in report.by_layer} >= {"base_model.model.model.layers.0",
                                                     "base_model.model.model.layers.1"}
    # reentrant checkpoint recomputes inside backward: with backward inside the context our hooks see those
    # saves and pass them through (NOTE [Lifetimes] rule 7); they are never counted as activations
    assert (report.backward_packs > 0) == (reentrant and backward_inside)


@pytest.mark.parametrize("reentrant", [False, True], ids=["nonreentrant", "reentrant"])
def test_lossy_policy_compresses_region_inputs(exact, reentrant):
    """``intra`` at 4 bits quantizes the region inputs; gradients stay close to exact.

    Measured cosine: 0.9909 (fp32) / 0.9904 (bf16) with checkpointing, 0.9936 without. Floor 0.97: the
    measurement less a margin for BLAS differences between machines.
    """
    dtype, ref = exact
    grads, report = _grads(dtype, reentrant, "intra", bits=4)
    assert F.cosine_similarity(grads, ref, dim=0) > 0.97
    rows = {r["codec"].split("/")[0]: r for r in report.by_op if r["op"] == "checkpoint" and r["count"]}
    assert rows["quant4"]["stored_bytes"] * 3 < rows["quant4"]["activation_bytes"]  # layer 1's input
    # layer 0's input is the embedding output, which Hugging Face makes require grad for checkpointing: a leaf
    # the graph holds anyway, so it is kept (NOTE [Lifetimes] rule 11)
    assert rows["keep"]["stored_bytes"] == rows["keep"]["activation_bytes"] > 0
    assert any("leaf" in k["reason"] for k in report.kept)


@pytest.mark.parametrize("reentrant", [False, True], ids=["nonreentrant", "reentrant"])
def test_torch_utils_checkpoint_directly(reentrant):
    """A plain module under torch.utils.checkpoint: the region input is what we see, counted once."""
    torch.manual_seed(0)
    block = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 64))
    x = torch.randn(2, 40, 64, requires_grad=True)

    def step(policy):
        block.zero_grad()
        leaf = x.detach().clone().requires_grad_(True)
        with hyclora.compress(policy, model=block) as ctx:
            xi = leaf * 1.0  # not a leaf: a leaf the graph holds anyway is never compressed (rule 11)
            out = checkpoint(block, xi, use_reentrant=reentrant).sum()
        out.backward()
        return torch.cat([leaf.grad.flatten()] + [p.grad.flatten() for p in block.parameters()]), ctx.report()

    block.zero_grad()
    xe = x.detach().clone().requires_grad_(True)
    block(xe).sum().backward()
    exact_grads = torch.cat([xe.grad.flatten()] + [p.grad.flatten() for p in block.parameters()])

    grads, report = step("baseline")
    assert torch.equal(grads, exact_grads)
    assert [(r["op"], r["role"], r["activation_bytes"]) for r in report.by_op] == [("checkpoint", "input",
                                                                                     x.numel() * 4)]
    grads, report = step("intra")
    assert F.cosine_similarity(grads, exact_grads, dim=0) > 0.99  # measured 0.9995 at 4 bits
    assert report.stored_bytes < report.activation_bytes


def test_lowrank_preset_with_checkpointing(exact):
    dtype, ref = exact
    grads, report = _grads(dtype, False, "lowrank")
    row = next(r for r in report.by_op if r["op"] == "checkpoint" and r["codec"] != "keep")  # layer 1's input
    assert row["codec"].startswith("lowrank")
    assert torch.isfinite(grads).all() and F.cosine_similarity(grads, ref, dim=0) > 0.5


def test_ops_inside_a_region_with_its_own_hooks_are_not_tracked():
    """Non-reentrant checkpoint saves through hooks of its own inside the region: nothing there reaches ours, so
    the op tracker does no work for it (no producer tags, no lineage); before and after the region it does."""
    torch.manual_seed(0)
    x = torch.randn(8, 16, requires_grad=True)
    w = torch.randn(16, 16, requires_grad=True)
    inner = {}

    def region(a):
        inner["h"] = F.silu(a)  # silu is replayable: it would get lineage if tracked
        return inner["h"] * 2

    with hyclora.compress("intra_inter", bits=4) as ctx:
        before = F.silu((x * 1.5) @ w)
        y = checkpoint(region, before, use_reentrant=False)
        after = torch.cos(y)
    after.sum().backward()
    assert hasattr(before, "_hyclora_producer") and hasattr(before, "_hyclora_lineage")
    assert not hasattr(inner["h"], "_hyclora_producer") and not hasattr(inner["h"], "_hyclora_lineage")
    assert hasattr(after, "_hyclora_producer")
    assert any(r["op"] == "checkpoint" for r in ctx.report().by_op)  # the region's input reached our hook


def _count_tracker_calls(monkeypatch) -> dict:
    """Counts the op tracker's ``__torch_function__`` calls (the real method still runs)."""
    from hyclora_hooks.tracking import OpTracker

    calls = {"n": 0}
    real = OpTracker.__torch_function__

    def counted(self, *a, **k):
        calls["n"] += 1
        return real(self, *a, **k)

    monkeypatch.setattr(OpTracker, "__torch_function__", counted)
    return calls


def test_checkpointed_modules_leave_the_op_tracker_alone(monkeypatch):
    """NOTE [Untracked regions]: a Hugging Face layer checkpointed without reentrance runs outside the op tracker
    (before: the tracker was called for each of its ops, and only then found the hooks were not ours); the ops
    after the regions are tracked again (the cross-entropy head's fusion), gradients as before, and the mode
    stack is left as found."""
    from torch.overrides import _get_current_function_mode

    calls = _count_tracker_calls(monkeypatch)
    batch = random_batch(VOCAB, batch=2, seq=48)
    counts, grads = {}, {}
    for reentrant in (None, False):
        model = _model(torch.bfloat16, reentrant)
        calls["n"] = 0
        with hyclora.compress("intra_inter", bits=4) as ctx:
            loss = model(**batch).loss
        loss.backward()
        counts[reentrant], grads[reentrant] = calls["n"], lora_grads(model)
        assert any(r["op"] == "cross_entropy" and r["role"] == "loss_grad" for r in ctx.report().by_op)  # fused
        assert _get_current_function_mode() is None
    # measured 321 calls unchecked, 68 checkpointed (372 and 319 before: the regions' ops, and our own encodes of
    # the region inputs, which run outside any op, went through the tracker)
    assert counts[False] < 0.4 * counts[None], counts
    assert F.cosine_similarity(grads[False], grads[None], dim=0) > 0.99


def test_a_region_that_raises_leaves_the_mode_stack_clean():
    from torch.overrides import _get_current_function_mode

    model = _model(torch.float32, False)
    batch = random_batch(VOCAB, batch=2, seq=48)
    layer = model.base_model.model.model.layers[1].mlp

    def boom(module, args):
        raise RuntimeError("boom")

    handle = layer.register_forward_pre_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            with hyclora.compress("intra_inter", bits=4):
                model(**batch)
    finally:
        handle.remove()
    assert _get_current_function_mode() is None
    with hyclora.compress("intra_inter", bits=4) as ctx:  # and the next context works as usual
        loss = model(**batch).loss
    loss.backward()
    assert any(r["op"] == "checkpoint" for r in ctx.report().by_op)


def test_a_mode_entered_after_compress_stays_on_top_and_sees_every_op():
    """The op tracker leaves the mode stack only from its top: a user's torch-function mode entered inside
    ``compress()`` keeps its place and still sees the checkpointed layers' ops; gradients are those without it."""
    from torch.overrides import TorchFunctionMode, _get_current_function_mode

    class Count(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.n = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.n += 1
            return func(*args, **(kwargs or {}))

    batch = random_batch(VOCAB, batch=2, seq=48)
    grads = []
    for with_mode in (False, True):
        torch.manual_seed(0)
        model = _model(torch.float32, False)
        counter = Count()
        with hyclora.compress("intra_inter", bits=4):
            if with_mode:
                with counter:
                    loss = model(**batch).loss
            else:
                loss = model(**batch).loss
        loss.backward()
        grads.append(lora_grads(model))
        assert _get_current_function_mode() is None
    alone, model = Count(), _model(torch.float32, False)
    with alone:  # the same forward without compress(): every op the user's mode can see
        model(**batch)
    assert counter.n >= alone.n > 200, (counter.n, alone.n)  # nothing was hidden from it
    assert torch.equal(grads[0], grads[1])


def _graph_names(t: torch.Tensor) -> list[str]:
    """The class names of every node of ``t``'s graph."""
    seen, stack, names = set(), [t.grad_fn], []
    while stack:
        f = stack.pop()
        if f is None or f in seen:
            continue
        seen.add(f)
        names.append(type(f).__name__)
        stack.extend(n for n, _ in f.next_functions)
    return names


def _dropout_model(dtype: torch.dtype, dropout: float) -> nn.Module:
    """``_model`` (non-reentrant checkpointing) with peft's LoRA dropout ``dropout``."""
    model = add_lora(tiny_llama(layers=2, vocab=VOCAB, dtype=dtype), dropout=dropout)
    model.train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


@pytest.mark.parametrize("dtype,dropout", [(torch.float32, 0.0), (torch.bfloat16, 0.0), (torch.bfloat16, 0.1)],
                         ids=["fp32", "bf16", "bf16-dropout"])
@pytest.mark.parametrize("enabled", [True, False], ids=["region-sums", "peft-sums"])
def test_a_checkpointed_regions_lora_sums_are_one_node_with_plains_bits(dtype, dropout, enabled, monkeypatch):
    """NOTE [Region sums]: in a non-reentrant checkpointed layer's forward each peft LoRA linear ends with the fused
    sum's node (peft's three ops with ``ENABLED`` off); the recomputation runs peft's forward (the same dropout
    masks: checkpoint restores the RNG), and the gradients are plain checkpointing's bit for bit; no LoRA linear
    keeps an instance ``forward`` after the context."""
    from hyclora_hooks import region_sums

    monkeypatch.setattr(region_sums, "ENABLED", enabled)
    batch = random_batch(VOCAB, batch=2, seq=48)
    torch.manual_seed(0)
    model = _dropout_model(dtype, dropout)
    torch.manual_seed(5)
    with hyclora.compress("baseline"):
        loss = model(**batch).loss
    loras = [m for m in model.modules() if hasattr(m, "lora_A")]
    assert _graph_names(loss).count("_LoraSumBackward") == (len(loras) if enabled else 0)
    assert not [m for m in model.modules() if "forward" in m.__dict__]
    loss.backward()
    torch.manual_seed(0)
    plain = _dropout_model(dtype, dropout)
    torch.manual_seed(5)
    plain(**batch).loss.backward()
    assert torch.equal(lora_grads(model), lora_grads(plain))


def test_region_sums_keep_a_replayed_compressed_steps_bits(monkeypatch):
    """``intra_inter`` with checkpointing, recorded then replayed (``model=``): the same gradients with the fused
    sums in the regions as with peft's, step by step."""
    from hyclora_hooks import region_sums

    batch = random_batch(VOCAB, batch=2, seq=48)
    got = {}
    for enabled in (True, False):
        monkeypatch.setattr(region_sums, "ENABLED", enabled)
        torch.manual_seed(0)
        model = _model(torch.bfloat16, reentrant=False)
        got[enabled] = []
        for _ in range(3):
            model.zero_grad(set_to_none=True)
            with hyclora.compress("intra_inter", model=model, bits=2):
                loss = model(**batch).loss
            assert _graph_names(loss).count("_LoraSumBackward") == (14 if enabled else 0)
            loss.backward()
            got[enabled].append(lora_grads(model))
    assert all(torch.equal(a, b) for a, b in zip(got[True], got[False]))


def test_a_global_module_hook_keeps_pefts_forward_in_regions():
    """NOTE [Region sums] rule 1: a global forward hook besides the tracker's must see every call, so a region's LoRA
    linears keep peft's forward (the lean body would skip ``lora_A``'s and ``lora_B``'s calls)."""
    seen = []
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda m, args, out: seen.append(type(m).__name__))
    try:
        torch.manual_seed(0)
        model = _model(torch.bfloat16, reentrant=False)
        with hyclora.compress("baseline"):
            loss = model(**random_batch(VOCAB, batch=2, seq=48)).loss
    finally:
        handle.remove()
    assert _graph_names(loss).count("_LoraSumBackward") == 0
    assert seen.count("Linear") >= 3 * len([m for m in model.modules() if hasattr(m, "lora_A")])


def test_check_region_sums_tool_on_cpu():
    """tools/check_region_sums.py at toy widths on the CPU (the fused sum's kernel under the interpreter): every
    configuration's step with region sums equals the one without, bit for bit, and ``baseline``'s equals plain
    checkpointing's, with LoRA dropout (the GPU run of the same tool is in docs/benchmarks.md, session 42)."""
    from tools import check_region_sums

    rows = check_region_sums.main([
        "--device", "cpu", "--layers", "2", "--shape", "2x16", "--warmup", "2", "--noise-steps", "1",
        "--lora-dropout", "0.1", "--presets", "baseline,intra_inter@2",
        "--model-args", "--hidden 64 --intermediate 128 --heads 4 --kv-heads 4 --vocab 128"])
    assert [r["preset"] for r in rows] == ["baseline", "intra_inter@2"]
    for row in rows:
        assert row["bitwise"] and row["ok"] and row["grad tensors"] == 28, row
    assert rows[0]["= plain checkpointing"] is True
