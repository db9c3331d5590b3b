"""Shared decodes within one backward (NOTE [Shared decodes] in hyclora_hooks/sharing.py).

Sharing is an optimisation: it must never change a gradient, keep a decode past its backward, or hand a reader
a tensor someone wrote into.
"""

from __future__ import annotations

import collections

import pytest
import torch

import hyclora_hooks as hyclora
from conftest import build, step
from hyclora_hooks import engine, sharing
from hyclora_hooks.codecs.base import make_codec
from hyclora_hooks.policy import Policy, Rule


@pytest.fixture
def decodes(monkeypatch):
    """Count real decodes per entry during backward (the codec still runs; only counted). The forward reads
    lossless entries too, to compute a LoRA part to subtract (P3 in lineage.py); those are not backward's."""
    counts: collections.Counter = collections.Counter()
    orig = engine.Entry.decode

    def counting(self):
        if sharing.graph_task_id() != -1:
            counts[id(self)] += 1
        return orig(self)

    monkeypatch.setattr(engine.Entry, "decode", counting)
    return counts


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("preset", ["intra", "intra_inter"])
def test_sharing_gives_the_same_gradients_as_decoding_per_reader(monkeypatch, attn, preset):
    model, batch = build(f"llama-{attn}")
    _, shared, _ = step(model, batch, lambda: hyclora.compress(preset, bits=2), seed=3)
    assert sharing.kept_bytes() == 0  # all dropped by the end of the backward
    monkeypatch.setattr(sharing, "MAX_SHARED_BYTES", 0)  # nothing kept: every reader decodes
    _, alone, _ = step(model, batch, lambda: hyclora.compress(preset, bits=2), seed=3)
    assert torch.equal(shared, alone)


def test_each_entry_is_decoded_once_per_backward(decodes):
    model, batch = build("llama-sdpa")
    step(model, batch, lambda: hyclora.compress("intra_inter", bits=4))
    assert decodes, "nothing decoded"
    assert max(decodes.values()) == 1, collections.Counter(decodes.values())


def test_without_sharing_entries_are_decoded_again(monkeypatch, decodes):
    # the counterpart of the test above: the same step decodes some entries several times when nothing is kept
    monkeypatch.setattr(sharing, "MAX_SHARED_BYTES", 0)
    model, batch = build("llama-sdpa")
    step(model, batch, lambda: hyclora.compress("intra_inter", bits=4))
    assert max(decodes.values()) > 1


def test_identical_recipes_are_one_entry():
    # peft casts the normalised input to fp32 once per adapter: q, k and v's LoRA inputs are one recipe
    model, batch = build("llama-sdpa")
    packed = []
    ctx = hyclora.compress("intra_inter", bits=4)
    orig = ctx._ops.pack_hook  # the hook __enter__ registers: record what it returns
    ctx._ops.pack_hook = lambda t: packed.append(orig(t)) or packed[-1]
    with ctx:
        loss = model(**batch).loss
    inputs = [e for e in packed if isinstance(e, engine.Entry) and e.site.role == "lora_a_input"
              and e.site.module.endswith(("q_proj.lora_A.default", "k_proj.lora_A.default", "v_proj.lora_A.default"))]
    assert len(inputs) == 6  # 2 layers x q, k, v
    assert len({id(e) for e in inputs}) == 2, [e.site.module for e in inputs]
    loss.backward()


def test_a_reader_never_gets_a_tensor_written_into(decodes):
    """A backward that writes into its saved tensor must not change what the next reader of that entry sees."""

    class Scale(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            ctx.save_for_backward(x)
            return x * w

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            gw = (g * x).sum()
            x.zero_()  # a badly behaved backward
            return None, gw

    quant_all = Policy(name="all4", rules=(Rule(codec="quant", op_class=("unknown",), params={"bits": 4}),))
    x = torch.randn(64, 64)
    w1, w2 = torch.tensor(1.5, requires_grad=True), torch.tensor(-0.5, requires_grad=True)
    with hyclora.compress(quant_all, min_bytes=0):
        y = Scale.apply(x, w1) + Scale.apply(x, w2)  # both save the same x: one entry, two readers
    y.sum().backward()
    codec = make_codec("quant", {"bits": 4})
    expect = codec.decode(codec.encode(x)).sum()
    assert expect.abs() > 0
    assert torch.equal(w1.grad, expect) and torch.equal(w2.grad, expect)
    assert sum(decodes.values()) == 2  # the second reader decoded afresh


def test_readers_that_never_run_release_at_the_end_of_backward():
    model, batch = build("llama-sdpa")
    with hyclora.compress("intra_inter", bits=4):
        loss = model(**batch).loss
    one = next(p for n, p in model.named_parameters() if p.requires_grad and "layers.1." in n)
    torch.autograd.grad(loss, [one])  # prunes the graph: many readers never run
    assert sharing.kept_bytes() == 0


def test_retain_graph_backward_twice_gives_the_same_gradients():
    model, batch = build("llama-sdpa")
    with hyclora.compress("intra_inter", bits=2):
        loss = model(**batch).loss
    params = [p for p in model.parameters() if p.requires_grad]
    first = torch.autograd.grad(loss, params, retain_graph=True)
    second = torch.autograd.grad(loss, params)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize("preset", ["intra", "intra_inter"])
def test_a_step_leaves_no_tensor_to_the_cyclic_gc(preset):
    """Saved data must be freed by reference counting when backward ends, not whenever Python's cyclic GC runs
    (a recursive closure once held entries in a cycle: 37 MiB a step on 7B-shaped layers until the next GC)."""
    import gc

    model, batch = build("llama-sdpa")
    step(model, batch, lambda: hyclora.compress(preset, bits=4))  # warm: calibration state, lazy imports
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        step(model, batch, lambda: hyclora.compress(preset, bits=4))
        gc.collect()
        leaked = [o for o in gc.garbage if isinstance(o, torch.Tensor)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert not leaked, [(tuple(t.shape), t.dtype) for t in leaked]


def _live_entries() -> int:
    import gc

    from hyclora_hooks.engine import Entry

    return sum(isinstance(o, Entry) for o in gc.get_objects())


@pytest.mark.parametrize("model_name", ["llama-sdpa", "llama-eager", "gpt2"])
@pytest.mark.parametrize("preset", ["baseline", "intra", "intra_inter"])
def test_a_graph_dropped_without_backward_frees_its_entries_at_once(model_name, preset):
    """NOTE [Lifetimes] rule 15: an output saved by its own op (``rsqrt``'s, softmax's, SDPA's) held with its
    autograd history made a cycle through C++ that not even Python's collector frees: every entry of a forward
    whose loss was dropped unused (an evaluation with grad on, a step skipped for a non-finite loss) leaked."""
    import gc

    model, batch = build(model_name)
    step(model, batch, lambda: hyclora.compress(preset, bits=4))  # warm: calibration state, lazy imports
    before = _live_entries()
    enabled = gc.isenabled()
    gc.disable()  # reference counting alone must free them
    try:
        with hyclora.compress(preset, bits=4):
            loss = model(**batch).loss
        made = _live_entries() - before
        del loss
        left = _live_entries() - before
    finally:
        if enabled:
            gc.enable()
    assert made > 0 and left == 0, (made, left)
