"""Replayed steps (NOTE [Replay] in hyclora_hooks/replay.py): the same gradients as deciding every pack afresh.

Each test trains two copies of one model side by side on the same batches: one with ``replay=True`` (the default),
one with ``replay=False``. A replayed step must give the deciding copy's LoRA gradients bit for bit (same entries,
same recipes, same codecs); a step that cannot replay must say so and still give correct gradients.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import hyclora_hooks as hyclora
from hyclora_hooks import replay
from hyclora_hooks.models import add_lora, lora_grads, random_batch, tiny_gpt2, tiny_llama

from conftest import replay_step as _step  # noqa: E402,I001

VOCAB = 256


def _pair(make=tiny_llama, **kw) -> tuple[nn.Module, nn.Module]:
    model = add_lora(make(vocab=VOCAB, dtype=torch.float32, **kw))
    model.train()
    return model, copy.deepcopy(model)


@pytest.mark.parametrize("policy", ["intra_inter", "intra_inter_full_fuse", "intra", "baseline", "lowrank"])
def test_replayed_steps_give_the_deciding_steps_gradients_bit_for_bit(policy):
    on, off = _pair()
    batch = random_batch(VOCAB, batch=2, seq=24)
    for step in range(4):
        g_on, ctx = _step(on, policy, batch, True, bits=2)
        g_off, ref = _step(off, policy, batch, False, bits=2)
        assert torch.equal(g_on, g_off), f"step {step}"
        assert ctx.report().stored_bytes == ref.report().stored_bytes
        # weights (and the views of them a linear saves) counted as parameter packs either way
        assert ctx.report().parameter_packs == ref.report().parameter_packs > 0
        # the first step records; every later one replays every pack
        assert ctx.replayed_packs == (0 if step == 0 else ctx.report().packs), f"step {step}"
    assert ref.replayed_packs == 0


def test_eager_attention_and_gpt2_replay_too():
    for make, kw in ((tiny_llama, {"attn": "eager"}), (tiny_gpt2, {})):
        on, off = _pair(make, **kw)
        batch = random_batch(VOCAB, batch=2, seq=16)
        for _ in range(3):
            g_on, ctx = _step(on, "intra_inter", batch, True, bits=4)
            g_off, _ = _step(off, "intra_inter", batch, False, bits=4)
            assert torch.equal(g_on, g_off)
        assert ctx.replayed_packs == ctx.report().packs > 0


@pytest.mark.parametrize("reentrant", [False, True], ids=["nonreentrant", "reentrant"])
def test_checkpointed_layers_replay_too(reentrant):
    """A checkpointed region's inputs are packed outside any op (and, reentrant, its forward runs without grad):
    replayed steps keep the deciding copy's gradients, stored bytes and parameter packs, and replay every pack."""
    on, off = _pair(layers=2)
    for model in (on, off):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    batch = random_batch(VOCAB, batch=2, seq=24)
    for step in range(3):
        g_on, ctx = _step(on, "intra_inter", batch, True, bits=2)
        g_off, ref = _step(off, "intra_inter", batch, False, bits=2)
        assert torch.equal(g_on, g_off), f"step {step}"
        assert ctx.report().parameter_packs == ref.report().parameter_packs
        assert ctx.report().stored_bytes == ref.report().stored_bytes
        assert ctx.replayed_packs == (0 if step == 0 else ctx.report().packs), f"step {step}"
    assert ctx.replayed_packs > 0


class _BiasedSlice(nn.Module):
    """Full fine-tuning of plain linears: the first one's 3-D output is a view of the 2-D product ATen made inside
    the op (no op output of the step), and the next linear saves a slice of it."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 32)
        self.b = nn.Sequential(nn.Linear(16, 16), nn.SiLU(), nn.Linear(16, 16))

    def forward(self, x):
        return self.b(self.a(x)[..., :16]).pow(2).mean()


def _replayed_against_deciding(make: type[nn.Module], steps: int) -> tuple[int, object]:
    """Train a ``make()`` model replaying and a copy deciding every pack on the same random inputs, checking their
    gradients are equal at every step; the last step's replayed packs and report of the replaying one."""
    torch.manual_seed(0)
    on = make()
    off = copy.deepcopy(on)
    for step in range(steps):
        x = torch.randn(2, 8, 16)
        grads = []
        for model, replay_on in ((on, True), (off, False)):
            with hyclora.compress("intra_inter", replay=replay_on, bits=4) as ctx:
                loss = model(x)
            loss.backward()
            grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
            model.zero_grad(set_to_none=True)
            if replay_on:
                replayed, report = ctx.replayed_packs, ctx.report()
        assert torch.equal(grads[0], grads[1]), f"step {step}"
    return replayed, report


def test_sources_made_inside_an_op_replay_too():
    replayed, report = _replayed_against_deciding(_BiasedSlice, 6)
    assert replayed == report.packs > 0  # once the outlier channels are calibrated, every pack


class _CheckpointedWeightView(nn.Module):
    """A reentrant checkpoint of a function (no module: the op tracker stays on the mode stack) whose inputs
    include a view of a weight: ``save_for_backward`` packs that view outside any op."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 16, bias=False)
        self.b = nn.Linear(16, 16)

    def forward(self, x):
        h = checkpoint(lambda x, w: nn.functional.silu(x @ w), x, self.a.weight.t(), use_reentrant=True)
        return self.b(h).pow(2).mean()


def test_a_weight_view_packed_outside_any_op_keeps_the_replay():
    """The parameter fast path reads a view's ``_base`` only off the op tracker's stack: read on it, the read is
    traced as an op of the step, the signatures differ from the plan and no step replays to its end."""
    replayed, report = _replayed_against_deciding(_CheckpointedWeightView, 5)
    assert report.parameter_packs > 0
    assert replayed == report.packs  # once the outlier channels are calibrated, every pack


def test_a_new_shape_records_at_once_and_the_next_step_replays_it():
    on, off = _pair()
    short, long = random_batch(VOCAB, batch=2, seq=16), random_batch(VOCAB, batch=2, seq=20, seed=1)
    for batch, replayed in ((short, False), (short, True), (long, False), (long, True), (short, False)):
        g_on, ctx = _step(on, "intra_inter", batch, True, bits=2)
        g_off, _ = _step(off, "intra_inter", batch, False, bits=2)
        # a different sequence length differs at the first op (the batch's shape), before anything was replayed:
        # the step decides and records, with lineage for every op, so it is the deciding step exactly
        assert torch.equal(g_on, g_off)
        assert (ctx.replayed_packs > 0) is replayed


class _Branchy(nn.Module):
    """A LoRA-style block whose forward takes an extra op on odd calls, after the first saves."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.base = nn.Linear(64, 64).requires_grad_(False)
        self.a = nn.Linear(64, 4, bias=False)
        self.b = nn.Linear(4, 64, bias=False)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        h = torch.nn.functional.silu(self.base(x) + self.b(self.a(x)))
        if self.calls % 2 == 0:
            h = h * 1.5
        y = torch.nn.functional.silu(self.base(h) + self.b(self.a(h)))
        return (y * y).mean()


def test_a_forward_that_changes_mid_step_stops_the_replay_and_stays_correct():
    model = _Branchy()
    x = torch.randn(8, 16, 64)
    states = []
    for _ in range(4):
        with hyclora.compress("intra_inter", model=model, bits=8) as ctx:
            loss = model(x)
        loss.backward()
        got = [p.grad.clone() for p in (model.a.weight, model.b.weight)]
        model.zero_grad(set_to_none=True)
        model.calls -= 1  # the same branch again, without hooks: exact autograd's gradients
        model(x).backward()
        exact = [p.grad.clone() for p in (model.a.weight, model.b.weight)]
        model.zero_grad(set_to_none=True)
        for g, e in zip(got, exact):
            assert torch.nn.functional.cosine_similarity(g.flatten(), e.flatten(), dim=0) > 0.999
        states.append((ctx.replayed_packs, ctx.report().packs))
    # call 1 records; call 2 takes the extra op: the replay stops there and its plan is dropped; call 3 records
    # again, call 4 stops again. Nothing is replayed past the first different op.
    assert states[0][0] == 0 and states[2][0] == 0
    assert 0 < states[1][0] < states[1][1] and 0 < states[3][0] < states[3][1]


class _Swapped(nn.Module):
    """Two LoRA-style branches that trade places on even calls: the same ops, shapes, packs and dedupe outcomes in
    the same order; only which op output feeds which op differs."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.base = nn.Linear(64, 64).requires_grad_(False)
        self.other = nn.Linear(64, 64).requires_grad_(False)
        self.a, self.b = nn.Linear(64, 4, bias=False), nn.Linear(4, 64, bias=False)
        self.a2, self.b2 = nn.Linear(64, 4, bias=False), nn.Linear(4, 64, bias=False)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        p = self.base(x) + self.b(self.a(x))
        q = self.other(x) + self.b2(self.a2(x))
        if self.calls % 2 == 0:
            p, q = q, p
        h = torch.nn.functional.silu(p) * q
        return (h * h).mean()


def test_a_swapped_data_flow_with_the_same_packs_stops_the_replay():
    """Only the op signatures tell these steps apart (every pack check passes): a replay that ignored them would
    rebuild SiLU's input from the other branch (LoRA-gradient cosine ~0.3-0.6 against exact autograd)."""
    model = _Swapped()
    x = torch.randn(8, 16, 64)
    weights = (model.a.weight, model.b.weight, model.a2.weight, model.b2.weight)
    for call in range(4):
        with hyclora.compress("intra_inter", model=model, bits=8) as ctx:
            loss = model(x)
        loss.backward()
        got = [w.grad.clone() for w in weights]
        model.zero_grad(set_to_none=True)
        model.calls -= 1  # the same branch again, without hooks: exact autograd's gradients
        model(x).backward()
        exact = [w.grad.clone() for w in weights]
        model.zero_grad(set_to_none=True)
        for g, e in zip(got, exact):
            assert torch.nn.functional.cosine_similarity(g.flatten(), e.flatten(), dim=0) > 0.999, call
        # odd calls follow the previous call's plan only up to the swap
        assert (ctx.replayed_packs < ctx.report().packs) and (ctx.replayed_packs > 0) is (call % 2 == 1)


def test_gradient_accumulation_two_forwards_then_one_backward():
    on, off = _pair()
    batches = [random_batch(VOCAB, batch=2, seq=16, seed=s) for s in (0, 1)]
    for _ in range(3):
        for model, rp in ((on, True), (off, False)):
            losses = []
            for batch in batches:
                with hyclora.compress("intra_inter", replay=rp, bits=2):
                    losses.append(model(**batch).loss)
            sum(losses).backward()
        assert torch.equal(lora_grads(on), lora_grads(off))
        on.zero_grad(set_to_none=True)
        off.zero_grad(set_to_none=True)


def test_a_replayed_backward_reruns_each_attention_once(monkeypatch):
    """Replayed recipes share the plan's templates (NOTE [Replay] rule 7): an SDPA call's output and logsumexp
    recipes must still share one rerun per step, whichever of the two backward asks for first."""
    from hyclora_hooks import attention

    calls = []
    real = attention.sdpa_with_lse

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(attention, "sdpa_with_lse", counted)
    on, off = _pair()
    layers = on.config.num_hidden_layers
    batch = random_batch(VOCAB, batch=2, seq=16)
    for step in range(3):
        for model, rp in ((on, True), (off, False)):
            calls.clear()
            _, ctx = _step(model, "intra_inter", batch, rp, bits=2)
            assert len(calls) == layers, (step, rp)
            assert (ctx.replayed_packs > 0) is (rp and step > 0)


def test_a_replaced_weight_is_a_different_op_signature():
    on, off = _pair()
    batch = random_batch(VOCAB, batch=2, seq=16)
    for _ in range(2):
        _step(on, "intra", batch, True, bits=4)
        _step(off, "intra", batch, False, bits=4)
    for model in (on, off):  # a new frozen weight object (same values) for the first q_proj
        lin = model.base_model.model.model.layers[0].self_attn.q_proj.base_layer
        lin.weight = nn.Parameter(lin.weight.detach().clone(), requires_grad=False)
    g_on, ctx = _step(on, "intra", batch, True, bits=4)
    g_off, _ = _step(off, "intra", batch, False, bits=4)
    assert torch.equal(g_on, g_off)
    assert ctx.replayed_packs < ctx.report().packs


def test_replay_off_and_forget_plans():
    on, _ = _pair()
    batch = random_batch(VOCAB, batch=2, seq=16)
    _step(on, "intra", batch, True, bits=4)
    _, ctx = _step(on, "intra", batch, True, bits=4)
    assert ctx.replayed_packs > 0
    replay.forget_plans(on)
    _, ctx = _step(on, "intra", batch, True, bits=4)
    assert ctx.replayed_packs == 0  # recorded again
    _, ctx = _step(on, "intra", batch, False, bits=4)
    assert ctx.replayed_packs == 0
    _, ctx = _step(on, "intra", batch, True, bits=4)
    assert ctx.replayed_packs == ctx.report().packs


def test_signatures_tell_data_flow_apart():
    """Two forwards with the same ops on the same shapes but wired differently have different signatures."""
    w = nn.Parameter(torch.randn(8))
    x = torch.randn(4, 8)

    def sigs(swap: bool) -> list:
        trace = replay.Trace(lambda t: t is w)
        from hyclora_hooks.tracking import ModuleTracker, OpTracker, ParamRegistry

        ops = OpTracker(ModuleTracker(ParamRegistry()))
        ops.trace = trace
        with ops:
            a = torch.tanh(x)
            b = torch.sigmoid(x)
            torch.mul(a, w) if not swap else torch.mul(b, w)
        return trace.sigs

    assert replay.same_sigs(sigs(False), sigs(False))
    assert not replay.same_sigs(sigs(False), sigs(True))


def test_checks_still_pending_on_exit_leave_the_op_count_alone():
    """How many non-finite checks are still pending when the context exits depends on the device's progress (NOTE
    [Replay] rule 8). Settling one runs tensor calls; were they traced, a replayed step would end with more ops
    than its plan, the plan would be dropped and the next step would record again (every other step on the H200).
    A CPU encode settles at once, so the queue is given a real pending record here, on alternate steps."""
    from hyclora_hooks.kernels.nonfinite import Nonfinite

    model, _ = _pair()
    batch = random_batch(VOCAB, batch=2, seq=16)
    replayed = []
    for step in range(4):
        rec = Nonfinite()  # made outside the context: its tensors are no ops of the step
        rec._source = torch.tensor([[1.0, float("nan")]])
        rec._count = torch.ones(1, dtype=torch.int32)  # the kernel's count: one non-finite value
        with hyclora.compress("intra_inter", bits=2) as ctx:
            loss = model(**batch).loss
            if step % 2:  # queued as an encode queues it: off the op tracker (its size is read)
                ctx._ops.outside(ctx._pending.add, rec)
        loss.backward()
        model.zero_grad(set_to_none=True)
        replayed.append(ctx.replayed_packs == ctx.report().packs)
        if step % 2:
            assert rec.index is not None and rec.index.tolist() == [1]  # it was settled, on exit
    assert replayed == [False, True, True, True]
