"""The compress() context: exactness under baseline, independent byte counts, lifetimes, nesting, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hyclora_hooks as hyclora
from conftest import MODELS, build, cosine, step


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
@pytest.mark.parametrize("name", list(MODELS))
def test_baseline_is_bit_identical(name, dtype):
    model, batch = build(name, dtype)
    loss0, g0, _ = step(model, batch)
    loss1, g1, report = step(model, batch, lambda: hyclora.compress("baseline"))
    assert torch.equal(loss0, loss1)
    assert torch.equal(g0, g1)
    assert report.activation_bytes == report.stored_bytes > 0


@pytest.mark.parametrize("name", list(MODELS))
def test_activation_bytes_match_an_independent_count(name):
    model, batch = build(name)
    param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}
    held = []

    def count(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in param_ptrs:
            seen[ptr] = t.untyped_storage().nbytes()
            held.append(t)  # keep storages alive so no address is reused during the count
        return t

    with torch.autograd.graph.saved_tensors_hooks(count, lambda t: t):
        model(**batch).loss
    with hyclora.compress("intra", model=model) as ctx:
        loss = model(**batch).loss  # the graph, and so every entry, alive while they are read below
        entries = [e for e in (ref() for ref in ctx._dedupe.values()) if e is not None]  # the exit drops the table
    report = ctx.report()
    assert report.activation_bytes == sum(seen.values())
    # no parameter storage is ever held by a codec
    assert entries
    for entry in entries:
        payload = entry.payload
        tensors = [payload] if isinstance(payload, torch.Tensor) else [
            v for v in vars(payload).values() if isinstance(v, torch.Tensor)]
        assert not any(t.untyped_storage().data_ptr() in param_ptrs for t in tensors)
    assert report.parameter_packs > 0
    del loss


def test_intra_4bit_stores_under_30_percent_with_faithful_gradients(llama):
    model, batch = llama
    _, exact, _ = step(model, batch)
    _, grads, report = step(model, batch, lambda: hyclora.compress("intra", bits=4))
    assert report.stored_bytes <= 0.30 * report.activation_bytes
    assert cosine(grads, exact) >= 0.95


def test_lossy_bits_order_fidelity(llama):
    """More bits, closer gradients: a check that the codec really runs at the requested width."""
    model, batch = llama
    _, exact, _ = step(model, batch)
    cos = {b: cosine(step(model, batch, lambda b=b: hyclora.compress("intra", bits=b))[1], exact) for b in (2, 4, 8)}
    assert cos[8] > cos[4] > cos[2]
    assert cos[8] >= 0.999


def test_no_packs_under_no_grad(llama):
    model, batch = llama
    with torch.no_grad(), hyclora.compress("intra") as ctx:
        model(**batch)
    assert ctx.report().packs == 0


def _global_state():
    return (len(nn.modules.module._global_forward_pre_hooks), len(nn.modules.module._global_forward_hooks),
            len(torch.overrides._get_current_function_mode_stack()))


def test_state_is_gone_after_an_exception(llama):
    model, batch = llama
    before = _global_state()
    ctx = hyclora.compress("intra")
    with pytest.raises(RuntimeError, match="boom"):
        with ctx:
            model(**batch).loss
            raise RuntimeError("boom")
    assert _global_state() == before
    packs = ctx.report().packs
    model(**batch).loss.backward()  # outside: our hooks must not see these packs
    assert ctx.report().packs == packs


def test_nested_contexts_inner_wins(llama):
    model, batch = llama
    with hyclora.compress("baseline") as outer:
        with hyclora.compress("intra", bits=2) as inner:
            loss = model(**batch).loss
    loss.backward()
    assert outer.report().packs == 0
    assert inner.report().packs > 0
    assert inner.report().stored_bytes < inner.report().activation_bytes


def test_retain_graph_gives_identical_gradients(llama):
    model, batch = llama
    model.zero_grad(set_to_none=True)
    with hyclora.compress("intra", bits=2):
        loss = model(**batch).loss
    loss.backward(retain_graph=True)
    first = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad(set_to_none=True)
    loss.backward()
    second = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_dedupe_holds_a_storage_once_and_frees_it_with_the_graph():
    x = torch.randn(64, 96, requires_grad=True)
    with hyclora.compress("intra", bits=8) as ctx:
        h = x * 2.0
        y = (h * h).sum()  # mul saves h twice
    r = ctx.report()
    assert r.duplicate_packs == 1
    assert r.activation_bytes == h.untyped_storage().nbytes()
    assert r.live_activation_bytes == r.activation_bytes
    del h
    y.backward()
    # d/dx (2x)^2 = 8x; each decoded h is off by at most scale/2 (~0.03 at 8 bits over |h| < 10), times 4
    assert torch.allclose(x.grad, 8 * x.detach(), rtol=0, atol=0.15)
    del y
    r = ctx.report()
    assert r.live_activation_bytes == 0 and r.live_stored_bytes == 0
    assert r.peak_stored_bytes == r.stored_bytes > 0


def test_parameter_views_pass_through_uncounted():
    lin = nn.Linear(64, 32).requires_grad_(False)  # frozen: only the weight view is saved, for x's gradient
    x = torch.randn(16, 64, requires_grad=True)
    with hyclora.compress("intra", bits=2) as ctx:
        y = torch.matmul(x, lin.weight.t()).sum() + (x @ lin.weight.t()).sum()  # no module: matched by storage
    r = ctx.report()
    assert r.parameter_packs == 2
    assert r.activation_bytes == 0
    y.backward()
    # fp32 summation order differs from the closed form; a 2-bit weight would be off by ~1e-1, not 1e-6
    torch.testing.assert_close(x.grad, 2 * lin.weight.sum(0).expand(16, 64), rtol=1e-5, atol=1e-6)


def test_non_float_tensors_pass_through_losslessly():
    emb = nn.Embedding(50, 16)
    idx = torch.randint(0, 50, (8, 40))
    with hyclora.compress("intra", bits=2) as ctx:
        out = emb(idx).sum()
    rows = {(r["op"], r["role"]): r for r in ctx.report().to_dict()["by_op"]}
    assert rows[("embedding", "indices")]["codec"] == "keep"
    out.backward()
    ref = torch.zeros(50).index_add_(0, idx.flatten(), torch.ones(idx.numel()))
    assert torch.equal(emb.weight.grad.sum(1), ref * 16)


def test_trainable_linear_input_is_classified_and_compressed():
    lin = nn.Linear(128, 64)
    x = torch.randn(32, 128, requires_grad=True)
    with hyclora.compress("intra", bits=8) as ctx:
        lin(x).square().sum().backward()
    rows = {(r["op"], r["role"]) for r in ctx.report().to_dict()["by_op"]}
    assert ("linear", "trainable_input") in rows


def test_context_cannot_be_entered_twice():
    ctx = hyclora.compress("baseline")
    with ctx:
        with pytest.raises(hyclora.HycloraError, match="entered twice"):
            ctx.__enter__()


class _SaveAndRecord(torch.autograd.Function):
    """Saves its input; backward records the unpacked tensor as autograd handed it back (values and strides)."""

    seen: list = []

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * 1.0

    @staticmethod
    def backward(ctx, g):
        _SaveAndRecord.seen.append(ctx.saved_tensors[0].detach())
        return g


@pytest.mark.parametrize("codec", [{"codec": "quant", "bits": 8}, {"codec": "lowrank", "rank": 8}])
def test_decoded_tensors_keep_permuted_strides(codec):
    """NOTE [Lifetimes] rule 8: a transposed (dense) saved tensor comes back with its strides, whatever the codec.
    CUDA flash attention's backward reads its output's layout: a contiguous copy gave wrong gradients on an H100."""
    from hyclora_hooks.policy import Policy, Rule

    params = {k: v for k, v in codec.items() if k != "codec"}
    policy = Policy(name="all_lossy", rules=(Rule(codec=codec["codec"], op_class=("unknown",), params=params),))
    base = torch.randn(3, 40, 5, 32)
    x = base.transpose(1, 2).requires_grad_()  # shape (3, 5, 40, 32), strides of a (3, 40, 5, 32) layout
    _SaveAndRecord.seen.clear()
    with hyclora.compress(policy, min_bytes=0):
        y = _SaveAndRecord.apply(x)
    y.sum().backward()
    assert [(tuple(t.shape), t.stride()) for t in _SaveAndRecord.seen] == [(tuple(x.shape), x.stride())]


@pytest.mark.parametrize("granularity", ["token_group", "channel"])
def test_per_channel_codecs_see_heads_as_channels(granularity):
    """NOTE [Lifetimes] rule 12: a (B, H, T, D) view of (B, T, H, D) memory (SDPA's q/k/v) is quantized per
    (head, channel) over tokens. As rows x D, a group of rows would mix heads: a quiet head would take the step of
    a loud one. Decoded values equal the reference quantizer's on the (B, T, H*D) layout."""
    from hyclora_hooks.kernels.quant import dequantize_ref, quantize_ref
    from hyclora_hooks.policy import Policy, Rule

    policy = Policy(name="t", rules=(Rule(codec="quant", op_class=("unknown",),
                                          params={"bits": 4, "group_size": 8, "granularity": granularity}),))
    torch.manual_seed(0)
    mem = torch.randn(2, 32, 4, 16)  # (B, T, H, D)
    mem[:, :, 0] *= 100.0  # one loud head
    x = mem.transpose(1, 2).requires_grad_()  # (B, H, T, D) with (B, T, H, D) strides
    _SaveAndRecord.seen.clear()
    with hyclora.compress(policy, min_bytes=0):
        y = _SaveAndRecord.apply(x)
    y.sum().backward()
    (got,) = _SaveAndRecord.seen
    want = dequantize_ref(quantize_ref(mem.reshape(2, 32, 64), 4, 8, granularity=granularity))
    assert torch.equal(got, want.view(2, 32, 4, 16).transpose(1, 2))
    quiet = (got - x.detach())[:, 1:].abs().max() / x.detach()[:, 1:].abs().max()
    assert quiet < 0.15, quiet  # a step of 1/15 of the quiet heads' range (mixed with the loud head: ~1.5)


def test_accountant_grow_after_a_late_nonfinite_find():
    """NOTE [Lifetimes] rule 9: non-finite values found after a pack grow that entry's stored bytes, totals and
    live figures alike; a find after the entry was released changes the totals only."""
    from hyclora_hooks.accounting import Accountant
    from hyclora_hooks.sites import SaveSite

    site = SaveSite("sin", "unknown", "sin", "model.layers.0.mlp", "MLP", "", torch.float32, (8, 8))
    acct = Accountant()
    a = acct.admit(("id", 1), 256, site, "quant4/g64", 40, False, None)
    b = acct.admit(("id", 2), 256, site, "quant4/g64", 40, False, None)
    acct.grow(a, 24)
    assert (acct.stored_bytes, acct.live_stored_bytes, acct.peak_stored_bytes) == (104, 104, 104)
    assert acct.by_layer["model.layers.0"].stored_bytes == 104
    acct.release(b)
    acct.grow(b, 12)  # released already (grow counts the queue first): in the totals, never in the live bytes
    assert (acct.stored_bytes, acct.live_stored_bytes) == (116, 64)
    acct.release(a)
    acct.flush()
    assert acct.live_stored_bytes == 0 and acct.live_activation_bytes == 0


def test_accountant_counts_queued_admits_in_order_when_read():
    """NOTE [Deferred counting]: admits, duplicates and releases are counted when the figures are read or changed,
    in the order they came: a recipe source (not saved) whose storage a later pack saves counts as an activation
    once, a kept view holds its whole storage once, and a release before any read counts first, then releases."""
    from hyclora_hooks.accounting import Accountant
    from hyclora_hooks.sites import SaveSite

    site = SaveSite("mul", "mul", "other", "model.layers.1.mlp", "MLP", "", torch.float32, (8, 8))
    acct = Accountant()
    src = acct.admit(("s", 1), 1000, site, "quant4/g64", 100, False, None, saved=False)
    acct.note_duplicate(("s", 1), site, "quant4/g64")  # the source's storage saved by an op: an activation now
    kept_a = acct.admit(("k", 2), 512, site, "keep", 0, True, "small")
    kept_b = acct.admit(("k", 2), 512, site, "keep", 0, True, "small")  # a second view of the same storage
    assert acct.packs == 3 and acct.duplicate_packs == 1  # counters at once
    acct.release(kept_b)  # before anything was read: counted first, then released
    assert (acct.activation_bytes, acct.live_stored_bytes) == (0, 0)  # nothing counted before a read
    acct.flush()
    assert (acct.activation_bytes, acct.stored_bytes) == (1000 + 512, 100 + 512)
    assert acct.live_stored_bytes == 100 + 512  # the storage is held until its last kept view goes
    assert acct.peak_stored_bytes == 612 and acct.kept["small"].count == 2
    rep = acct.report()
    assert rep.by_layer[0]["layer"] == "model.layers.1" and rep.by_layer[0]["activation_bytes"] == 1512
    acct.release(kept_a)
    acct.release(src)
    assert acct.live_stored_bytes == 100 + 512  # releases wait in the queue too
    assert acct.report().live_stored_bytes == 0 and acct.live_activation_bytes == 0


def test_a_release_while_the_accountant_counts_goes_on_from_the_same_place():
    """An entry's ``__del__`` can run midway through a flush (counting makes objects; the cyclic GC may collect an
    entry then). Its release must be counted after its token's admit: here a site whose layer, read while the first
    admit is counted, releases the second admit's token, which the same flush then counts and releases in order
    (NOTE [Deferred counting])."""
    from hyclora_hooks.accounting import Accountant
    from hyclora_hooks.sites import SaveSite

    acct = Accountant()
    later = []

    class ReleasingSite(SaveSite):
        def __getattribute__(self, name: str):
            if name == "layer":
                while later:
                    acct.release(later.pop())
            return super().__getattribute__(name)

    site = SaveSite("sin", "unknown", "sin", "model.layers.0.mlp", "MLP", "", torch.float32, (8, 8))
    first = ReleasingSite("sin", "unknown", "sin", "model.layers.0.mlp", "MLP", "", torch.float32, (8, 8))
    a = acct.admit(("id", 1), 256, first, "quant4/g64", 40, False, None)
    later.append(acct.admit(("id", 2), 256, site, "quant4/g64", 24, False, None))
    acct.flush()
    assert (acct.stored_bytes, acct.live_stored_bytes) == (64, 40)
    assert (acct.activation_bytes, acct.live_activation_bytes) == (512, 256)
    acct.release(a)
    acct.flush()
    assert acct.live_stored_bytes == 0 and acct.live_activation_bytes == 0


def test_a_leaf_that_requires_grad_is_kept_not_compressed():
    """NOTE [Lifetimes] rule 11: the graph holds a non-parameter leaf that requires grad (and its views) for the
    whole step, so the lossy rule is overridden: a copy would add bytes, and the accountant would miss the leaf."""
    from hyclora_hooks.policy import Policy, Rule

    policy = Policy(name="all_quant", rules=(Rule(codec="quant", op_class=("*", "unknown"), params={"bits": 4}),))
    torch.manual_seed(0)
    x = torch.randn(64, 128, requires_grad=True)  # a leaf: kept
    w = torch.randn(128, 128, requires_grad=True)
    with hyclora.compress(policy, min_bytes=0) as ctx:
        h = x @ w  # saves x and w (two leaves)
        y = torch.sin(h)  # saves h: not a leaf, compressed
        z = torch.cos(x.t())  # saves a view of x: kept
    (y.sum() + z.sum()).backward()
    rep = ctx.report()
    kept = [r for r in rep.kept if "leaf" in r["reason"]]
    assert sum(r["count"] for r in kept) >= 2, rep.kept
    assert rep.stored_bytes >= x.numel() * 4 + w.numel() * 4  # x and w whole; h's payload on top
    assert any(r["codec"].startswith("quant") and r["count"] for r in rep.by_op)
    # a gradient through a kept view of a leaf is exact
    gz = -torch.sin(x.detach().t()).t()
    x3 = x.detach().clone().requires_grad_()
    with hyclora.compress(policy, min_bytes=0):
        z3 = torch.cos(x3.t())
    z3.sum().backward()
    assert torch.equal(x3.grad, gz)


def test_attribute_reads_skip_the_op_tracker_but_tensor_attributes_are_tagged(llama):
    """``t.shape``/``t.dtype`` reach the op tracker as a fresh callable at every read; naming each one filled
    ``op_name``'s cache with dead entries (cleared, real ops included, every 4096). ``t.T`` is still tagged."""
    from hyclora_hooks import tracking

    model, batch = llama
    tracking._OP_NAMES.clear()
    with hyclora.compress("intra_inter", bits=4):
        loss = model(**batch).loss
        x = torch.randn(4, 3, requires_grad=True) * 2
        xt = x.T
    loss.backward()
    assert tracking._OP_NAMES  # the real ops were named
    assert not [f for f in tracking._OP_NAMES if type(f) is tracking._ATTRIBUTE_READ]
    assert xt._hyclora_producer[0] == "get" and x._hyclora_producer[0] == "mul"


def test_a_leaf_that_requires_grad_is_kept_as_a_recipe_source_too():
    """Rule 11 for a recipe's source: the fp32 cast an RMSNorm saves is a recipe over its input, and with Hugging
    Face's ``enable_input_require_grads`` that input is a leaf the graph holds anyway. Stored as a lossy source it
    was a compressed copy next to the original the accountant never counted (acct/alloc 0.956 for 8 Llama-2-7B-shaped
    layers at 2 bits, session 15) and an inexact gradient where the exact value was at hand."""
    from hyclora_hooks.policy import Policy, Rule

    policy = Policy(name="all_quant_inter", inter=True,
                    rules=(Rule(codec="quant", op_class=("*", "unknown"), params={"bits": 2}),))
    torch.manual_seed(0)
    x = torch.randn(64, 256, dtype=torch.bfloat16).requires_grad_()  # a leaf, as HF's hook makes the embedding
    with hyclora.compress(policy, min_bytes=0) as ctx:
        y = x.to(torch.float32).pow(2).sum()  # pow saves the cast: a recipe whose source is x
    y.backward()
    assert torch.equal(x.grad, (2 * x.detach().float()).to(torch.bfloat16))
    rep = ctx.report()
    assert any("leaf" in k["reason"] for k in rep.kept), rep.kept
    assert not any(r["codec"].startswith("quant") and r["count"] for r in rep.by_op), rep.by_op
    assert rep.stored_bytes == x.numel() * x.element_size()  # the leaf, counted once


def test_a_storage_key_keeps_its_address_from_other_storages_until_it_dies():
    """NOTE [Lifetimes] rule 2: a dedupe key names a storage by its C++ address, so while the key lives no storage
    made after the first one's death may have that address (a pack of new data would find the old entry)."""
    from hyclora_hooks import lineage

    def address_after_death():
        t = torch.empty(16)
        address = t.untyped_storage()._cdata
        del t
        return address

    def addresses(n):  # of n storages alive at once
        held = [torch.empty(16) for _ in range(n)]
        return {t.untyped_storage()._cdata for t in held}

    assert address_after_death() in addresses(200)  # the control: without a key the address comes back at once
    t = torch.empty(16)
    key = lineage.storage_ref(t.untyped_storage())
    del t
    assert int(key) not in addresses(200)
    del key  # the handle is freed with the key: the address is free again
    assert address_after_death() in addresses(200)
