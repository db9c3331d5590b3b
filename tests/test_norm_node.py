"""A replayed decoder layer's Llama RMSNorms as one node each (NOTE [Norm node] in hyclora_hooks/norm_node.py;
kernels/rms_norm.py under TRITON_INTERPRET=1): replayed steps against steps that run the norms' own ops, the same
gradients, packs and report; the node only where its checks hold."""

from __future__ import annotations

import copy
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from transformers.models.llama.modeling_llama import LlamaRMSNorm  # noqa: E402

import hyclora_hooks as hyclora  # noqa: E402
from hyclora_hooks import engine, norm_node  # noqa: E402
from hyclora_hooks.models import add_lora, graph_nodes, lora_grads, random_batch, tiny_llama  # noqa: E402

BF16 = torch.bfloat16
LAYERS = 3
NODES = 2 * LAYERS - 1  # every decoder layer's two norms but the first layer's input norm (its input needs no grad)


class _CountRsqrt(TorchDispatchMode):
    """Counts ``rsqrt`` calls: one for each norm Llama's ops run (the kernel's pass makes none)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += func is torch.ops.aten.rsqrt.default
        return func(*args, **(kwargs or {}))


def _pair(adjust=None, dtype=BF16):
    on = add_lora(tiny_llama(vocab=256, dtype=dtype, use_cache=False, layers=LAYERS), r=8)
    on.train()
    if adjust is not None:
        adjust(on)
    return on, copy.deepcopy(on), random_batch(256, batch=2, seq=16)


def _step(model, batch, enabled, monkeypatch, preset="intra_inter"):
    """One ``preset`` (a name: at 2 bits) step with the node on or off: (LoRA gradients, norm nodes in the graph, ``rsqrt`` calls of its
    forward, the context)."""
    monkeypatch.setattr(norm_node, "ENABLED", enabled)
    torch.manual_seed(0)
    with _CountRsqrt() as count:
        with hyclora.compress(preset, **({"bits": 2} if type(preset) is str else {})) as ctx:
            loss = model(**batch).loss
    nodes = graph_nodes(loss, "_NormNodeBackward")
    loss.backward()
    grads = lora_grads(model)
    model.zero_grad(set_to_none=True)
    return grads, nodes, count.calls, ctx


def _same_report(a, b) -> bool:
    ra, rb = a.report(), b.report()
    return (ra.packs, ra.activation_bytes, ra.stored_bytes, ra.by_op) == (rb.packs, rb.activation_bytes,
                                                                          rb.stored_bytes, rb.by_op)


@pytest.mark.parametrize("backend,dtype", [("ref", BF16), ("auto", BF16), ("triton", BF16), ("ref", torch.float16),
                                           ("triton", torch.float16)])
def test_replayed_layers_run_the_norm_node_with_the_norms_gradients(backend, dtype, monkeypatch):
    """From the first replayed step on, each decoder layer's norms whose input needs a gradient are one node each
    (bf16 and fp16 models), every pack is replayed, the report is a step's with Llama's ops, and so are the LoRA
    gradients: bit for bit by the reference (Llama's ops forward, autograd's chain backward); by the kernels as near
    exact autograd's as those of Llama's ops (their roundings, which 2-bit codes can turn into a code apart)."""
    monkeypatch.setattr(norm_node, "FORWARD", backend)
    monkeypatch.setattr(norm_node, "BACKWARD", backend)
    on, off, batch = _pair(dtype=dtype)
    exact = copy.deepcopy(off)
    exact(**batch).loss.backward()
    exact = lora_grads(exact)
    for step in range(3):  # records, then replays
        got, nodes, rsqrts, ctx = _step(on, batch, True, monkeypatch)
        want, none, theirs, ref = _step(off, batch, False, monkeypatch)
        assert none == 0 and nodes == (NODES if step else 0)
        assert ctx.replayed_packs == ref.replayed_packs and _same_report(ctx, ref)
        # the kernel's pass for Llama's eight ops, in the nodes and the first layer's input norm (rule 5); the
        assert theirs - rsqrts == (nodes + 1 if backend == "triton" and step else 0)  # reference runs those ops
        if backend == "triton":
            cos = torch.nn.functional.cosine_similarity
            assert cos(got, want, dim=0) > 0.999 and abs(cos(got, exact, dim=0) - cos(want, exact, dim=0)) < 1e-3
        else:
            assert torch.equal(got, want)
    assert ctx.replayed_packs == ctx.report().packs


def test_the_norms_input_decodes_once_for_all_its_readers(monkeypatch):
    """The node's save of its input stands for Llama's fp32 copy and counts as read narrow; the duplicate is no saved
    slot (one reader fewer than Llama's ops); the recipes of the norm's output (``NormTail``) read that entry too, so
    it decodes once, in fp32, as with Llama's ops."""
    seen, real = [], engine.Entry.decode

    def decode(self):
        out = real(self)
        site = self.site
        if self.codec is engine.RECOMPUTE and site.op_class == "norm" and site.role == "input" \
                and ".layers." in site.module:  # a decoder layer's norm's fp32 copy (not the final norm's)
            seen.append((self.narrow, self.readers, out.dtype))
        return out

    monkeypatch.setattr(engine.Entry, "decode", decode)
    on, off, batch = _pair()
    for step in range(3):
        seen.clear()
        _step(on, batch, True, monkeypatch)
        mine = list(seen)
        seen.clear()
        _step(off, batch, False, monkeypatch)
        assert len(seen) == NODES and all(n == 0 and r > 2 and d == torch.float32 for n, r, d in seen)
        assert mine == ([(1, r - 1, d) for _, r, d in seen] if step else seen)


def test_intra_keeps_the_norms_ops(monkeypatch):
    """Under ``intra`` the fp32 copy is coded, not a widening recipe: the records are not the node's, so the norms
    run their class's forward (rule 1), with the same bits."""
    on, off, batch = _pair()
    for _ in range(3):
        got, nodes, _, ctx = _step(on, batch, True, monkeypatch, "intra")
        want, _, _, ref = _step(off, batch, False, monkeypatch, "intra")
        assert nodes == 0 and torch.equal(got, want) and _same_report(ctx, ref)
    assert ctx.replayed_packs == ctx.report().packs


class _OtherRMSNorm(LlamaRMSNorm):
    """Another family's norm: the same names as Llama's, its weight's product before the cast back."""

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return (self.weight * hidden_states).to(input_dtype)


def _other_norms(model):
    for layer in model.base_model.model.model.layers:
        for name in ("input_layernorm", "post_attention_layernorm"):
            old = getattr(layer, name)
            new = _OtherRMSNorm(old.weight.shape[0], eps=old.variance_epsilon).to(BF16)
            new.weight = old.weight
            setattr(layer, name, new)


def _trainable_norms(model):
    for layer in model.base_model.model.model.layers:
        layer.post_attention_layernorm.weight.requires_grad_(True)


@pytest.mark.parametrize("adjust", [_other_norms, _trainable_norms])
def test_other_norms_run_their_own_forward(adjust, monkeypatch):
    """A norm whose forward is not Llama's code (though it reads the same names), or whose weight is trained, is no
    node (rule 1); replayed steps keep their bits and every pack."""
    on, off, batch = _pair(adjust)
    for _ in range(3):
        got, nodes, _, ctx = _step(on, batch, True, monkeypatch)
        want, _, _, _ = _step(off, batch, False, monkeypatch)
        assert torch.equal(got, want)
    assert ctx.replayed_units > 0 and ctx.replayed_packs == ctx.report().packs
    assert nodes == (0 if adjust is _other_norms else LAYERS - 1)  # the trained weights' norms take Llama's ops


def test_a_record_the_passed_saves_miss_ends_the_replay_with_exact_gradients(monkeypatch):
    """A record of a norm's duplicates that no longer matches (here its ``requires_grad`` altered in the plan) ends the
    replay where ``pass_saves`` meets it, after the node saved: the rest of the step is decided. Under a lossless
    ``inter`` policy (recipes, nothing coded) every step's LoRA gradients are then exact autograd's bits, that one's
    too, and the next steps record and replay again."""
    from hyclora_hooks import replay
    from hyclora_hooks.policy import Policy, Rule

    keep = Policy(name="keep_inter", inter=True, rules=(Rule(codec="keep", op_class=("*",)),))
    on, off, batch = _pair()
    (want,) = [lora_grads(off) for _ in [off(**batch).loss.backward()]]
    off.zero_grad(set_to_none=True)
    params = []
    for step in range(5):
        if step == 2:  # the plan recorded at step 0 and replayed at step 1: alter it
            plan = replay.find_plan(on, keep)
            dups = [r for r in plan.packs if r.kind == "dup" and r.site.op_class == "norm" and r.site.role == "input"
                    and ".layers." in r.site.module]  # a decoder layer's norm's duplicate of its fp32 copy
            assert len(dups) == NODES
            dups[1].meta = dups[1].meta[:3] + (False,)
            missed = plan.packs.index(dups[1])
        got, nodes, _, ctx = _step(on, batch, True, monkeypatch, keep)
        assert torch.equal(got, want), step
        assert nodes == [0, NODES, 2, 0, NODES][step]  # step 2: layer 0's post-attention norm, layer 1's input norm
        replayed, report = ctx.replayed_packs, ctx.report()
        assert replayed == (0 if step in (0, 3) else missed if step == 2 else report.packs)  # 2: up to the miss
        params.append(report.parameter_packs)  # the weight's record met, or decided after the miss: counted
    assert len(set(params)) == 1
