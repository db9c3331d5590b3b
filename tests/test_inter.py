"""Inter-operator compression (issue 4): recipes, LoRA compensation and the SDPA recompute, on any model.

Every floor below is a number measured on this CPU (torch 2.13, transformers 5.17, peft 0.21) with some margin;
the comment beside it gives the measurement. Models are tiny and random (hyclora_hooks.models), with peft LoRA
(fp32 adapters, random non-zero B so that every LoRA gradient is a real number).
"""

from __future__ import annotations

import copy
import functools
import gc
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # the fused kernel of intra_inter_full_fuse runs on CPU (jitted lazily)

import pytest  # noqa: E402
import torch  # noqa: E402

import hyclora_hooks as hyclora  # noqa: E402
from conftest import build, cosine, step, zero_frozen  # noqa: E402
from hyclora_hooks.models import (add_lora, lora_grads, random_batch, tiny_gemma, tiny_gpt2, tiny_gpt_neox,
                                  tiny_llama, tiny_mistral, tiny_phi3, tiny_qwen2, tiny_roberta)
from hyclora_hooks import engine, lineage  # noqa: E402
from hyclora_hooks.policy import Policy, Rule, load_policy

BF16, FP32 = torch.bfloat16, torch.float32


# ------------------------------------------------------------------------------------------------- helpers
def seeded_step(model, batch, ctx_factory=None, seed: int = 1234):
    """One forward+backward with the RNG at ``seed`` (same LoRA-dropout masks run to run): (loss, grads, report)."""
    return step(model, batch, ctx_factory, seed)


def replayed_steps(model, batch, policy, steps: int = 3):
    """``steps`` seeded steps under ``compress(policy, model=model)``, yielding ``(step, grads)`` after each: the first
    records its decisions, the others replay them (NOTE [Replay]), which is checked before each yield."""
    for i in range(steps):
        holder = []

        def ctx():
            holder.append(hyclora.compress(policy, model=model))
            return holder[-1]

        _, grads, _ = seeded_step(model, batch, ctx)
        assert (holder[0].replayed_packs > 0) == (i > 0), i
        yield i, grads


def recomputed(report) -> set[tuple[str, str]]:
    """(op class, role) of every saved tensor the report says is rebuilt by a recipe."""
    return {(r["op"], r["role"]) for r in report.by_op if r["codec"] == "recompute" and r["count"] > 0}


def loss_grad_bytes(report) -> int:
    """Bytes of the loss's gradient a fused head keeps (NOTE [Fused head])."""
    return sum(r["activation_bytes"] for r in report.by_op if r["role"] == "loss_grad")


# ---------------------------------------------------------------------------------------- 1. tiny Llama targets
# The setting: tiny bf16 Llama (hidden 128, GQA 4/2 heads, 2 layers), peft LoRA r8 on all linears, 2 x 32.
@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_intra_inter_stores_at_most_0p8x_of_intra(attn, bits):
    # measured intra_inter / intra stored bytes (session 6): sdpa 0.317 (2 bits), 0.335 (4 bits); eager 0.383 (2),
    # 0.441 (4). (Until session 6 intra_inter kept eager attention's maps whole: eager 0.728 / 0.667.)
    model, batch = build(f"llama-{attn}")
    _, _, intra = step(model, batch, lambda: hyclora.compress("intra", bits=bits))
    _, _, inter = step(model, batch, lambda: hyclora.compress("intra_inter", bits=bits))
    # the same saved tensors, only stored differently, and the loss's gradient the fused head keeps (NOTE [Fused head])
    assert inter.activation_bytes == intra.activation_bytes + loss_grad_bytes(inter)
    assert inter.stored_bytes <= 0.8 * intra.stored_bytes, (inter.stored_bytes, intra.stored_bytes)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_intra_inter_2bit_saves_10x(attn):
    # measured (session 6): sdpa 12.74x; eager 10.72x (5.70x until its maps were kept whole; now q/k^T at 4 bits
    # and the softmax output at 4 bits, the probabilities the value matmul saves replayed as its cast)
    model, batch = build(f"llama-{attn}")
    _, _, report = step(model, batch, lambda: hyclora.compress("intra_inter", bits=2))
    assert report.activation_bytes / report.stored_bytes >= 10, (report.activation_bytes, report.stored_bytes)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_intra_inter_4bit_llama_cosine(attn):
    # measured LoRA-gradient cosine to exact autograd: sdpa 0.9972, eager 0.9978 (the target: 0.99).
    model, batch = build(f"llama-{attn}")
    _, exact, _ = step(model, batch)
    _, grads, _ = step(model, batch, lambda: hyclora.compress("intra_inter", bits=4))
    assert cosine(grads, exact) >= 0.99


# -------------------------------------------------------------------------------------------- 2. any model
# Odd-ish shapes: Qwen2 hidden 96 / 6 heads over 2 kv heads (GQA 3:1, biased q/k/v), Mistral hidden 80 / 5 heads of
# 16 (MHA), RoBERTa hidden 96 / 4 heads of 24 (LayerNorm, GELU, absolute positions, bidirectional), GPT-2 hidden 128
# (Conv1D, GELU-tanh). Every batch right-pads its last row by 7 tokens (attention_mask 0, labels -100), so every
# model runs its padding-mask path (a boolean mask into SDPA instead of is_causal).
BUILDERS = {
    "llama": tiny_llama,
    "qwen2": tiny_qwen2,
    "mistral": tiny_mistral,
    "gpt2": tiny_gpt2,
    "roberta": tiny_roberta,
    # beyond the list (session 6): fused qkv / gate_up (Phi-3), multi-query + GeGLU (Gemma), fused qkv +
    # partial rotary + parallel residual (GPT-NeoX)
    "phi3": tiny_phi3,
    "gemma": tiny_gemma,
    "gpt_neox": tiny_gpt_neox,
}
ANY = [(m, a, d) for m in BUILDERS for a in ("sdpa", "eager") for d in (BF16, FP32)]
ANY_IDS = [f"{m}-{a}-{'bf16' if d is BF16 else 'fp32'}" for m, a, d in ANY]


@functools.lru_cache(maxsize=None)
def padded(name: str, attn: str, dtype: torch.dtype):
    """(model, batch, exact loss, exact LoRA grads), built once per configuration for this module's tests."""
    model = add_lora(BUILDERS[name](attn=attn, dtype=dtype))
    batch = random_batch(model.config.vocab_size, batch=2, seq=32, pad=7, pad_id=model.config.pad_token_id or 0)
    loss, grads, _ = step(model, batch)
    return model, batch, loss, grads


@pytest.mark.parametrize("name,attn,dtype", ANY, ids=ANY_IDS)
def test_baseline_is_bit_identical_on_any_model(name, attn, dtype):
    model, batch, loss0, exact = padded(name, attn, dtype)
    loss, grads, report = step(model, batch, lambda: hyclora.compress("baseline"))
    assert torch.equal(loss, loss0)
    assert torch.equal(grads, exact)
    assert report.activation_bytes == report.stored_bytes > 0


# activation / stored at 4 bits, measured with session 4's preset (q/k at 8 bits; sdpa bf16, sdpa fp32, eager bf16,
# eager fp32):
#   llama 8.62 7.24 5.15 3.97 | qwen2 7.62 6.25 4.04 3.15 | mistral 7.74 6.64 4.29 3.50 | gpt2 6.39 8.42 4.64 5.10
#   roberta 7.70 6.54 3.94 2.97 (lowest: sdpa 6.25, eager 2.97); session 6: phi3 7.53 8.34 4.40 4.00 | gemma 7.78
#   6.37 4.99 3.89 | gpt_neox 5.71 6.32 3.36 2.95
# Eager stored its attention maps whole until session 6 (now 4-8 bits), hence the lower eager floor.
RATIO_FLOOR = {"sdpa": 5.5, "eager": 2.5}
# LoRA-gradient cosine at 4 bits, measured (same order):
#   llama 0.99793 0.99776 0.99775 0.99779 | qwen2 0.99808 0.99816 0.99829 0.99830 | mistral 0.99703 0.99713 0.99713
#   0.99713 | gpt2 0.99826 0.99816 0.99808 0.99816 | roberta 0.99768 0.99772 0.99755 0.99772. Lowest 0.9970.
#   Session 6: phi3 0.99726 0.99743 0.99666 0.99677 | gemma 0.99740 0.99768 0.99700 0.99758 | gpt_neox 0.99804
#   0.99807 0.99778 0.99779.
COSINE_FLOOR_4BIT = 0.99


@pytest.mark.parametrize("name,attn,dtype", ANY, ids=ANY_IDS)
def test_intra_inter_4bit_on_any_model(name, attn, dtype):
    model, batch, loss0, exact = padded(name, attn, dtype)
    loss, grads, report = step(model, batch, lambda: hyclora.compress("intra_inter", bits=4))
    assert torch.equal(loss, loss0)  # the forward is never changed
    assert torch.isfinite(grads).all()
    ratio = report.activation_bytes / report.stored_bytes
    assert ratio >= RATIO_FLOOR[attn], ratio
    assert cosine(grads, exact) >= COSINE_FLOOR_4BIT, cosine(grads, exact)
    assert report.live_stored_bytes > 0 and any(op == "linear" for op, _ in recomputed(report))


# ----------------------------------------------------------------------------------- 3. LoRA dropout and scaling
# (r, alpha, dropout, rslora) -> peft scaling: alpha / r, or alpha / sqrt(r) with rsLoRA.
LORA_VARIANTS = {
    "dropout0.1-a16-r8": (8, 16, 0.1, False),  # scaling 2.0
    "rslora-a24-r8": (8, 24, 0.0, True),  # scaling 8.485
    "dropout0.1-rslora-a5-r6": (6, 5, 0.1, True),  # scaling 2.041
    "a3-r8": (8, 3, 0.0, False),  # scaling 0.375
}


@functools.lru_cache(maxsize=None)
def lora_variant(attn: str, variant: str):
    r, alpha, dropout, rslora = LORA_VARIANTS[variant]
    model = add_lora(tiny_llama(attn=attn), r=r, alpha=alpha, dropout=dropout, rslora=rslora)
    model.train()
    batch = random_batch(model.config.vocab_size, batch=2, seq=32, pad=5)
    return model, batch


def test_lora_variants_are_what_they_claim():
    """Guards the test itself: dropout really draws masks, and rsLoRA really changes peft's scaling."""
    model, batch = lora_variant("eager", "dropout0.1-a16-r8")
    _, a, _ = seeded_step(model, batch, seed=1)
    _, b, _ = seeded_step(model, batch, seed=1)
    _, c, _ = seeded_step(model, batch, seed=2)
    assert torch.equal(a, b) and cosine(a, c) < 0.9  # measured 0.520 between two seeds
    model, _ = lora_variant("eager", "rslora-a24-r8")
    scales = [m.scaling["default"] for m in model.modules() if hasattr(m, "lora_A")]
    assert scales and all(s == pytest.approx(24 / 8 ** 0.5) for s in scales)


def _qk_kept(policy: Policy) -> Policy:
    """``policy`` with SDPA's query/key kept exact: isolates the LoRA part from the attention's q/k error."""
    rules = tuple(Rule(codec="keep", op_class="attention", role=("query", "key"), reason="diagnostic")
                  if r.op_class == ("attention",) and "query" in r.role else r for r in policy.rules)
    return Policy(name=policy.name + "_qk_kept", rules=rules, knobs=policy.knobs, inter=True)


# LoRA-gradient cosine at 8 bits. With q/k fixed at 4 bits the SDPA rslora-a24 case measured 0.806: scaling 8.5 with
# a random B makes logits up to ~50, where 4-bit q/k break the attention gradient. The preset now gives q/k
# `$bits` (never under 4): measured 0.9981 there (8-bit q/k still shift ~50-sized logits), so that one case has the
# floor 0.997; every other case keeps 0.999. With q/k kept exact the same case measures 0.99982 (next test): the
# LoRA part and its scaling are exact.
_FLOOR_8BIT = {("sdpa", "rslora-a24-r8"): 0.997}
@pytest.mark.parametrize("variant", list(LORA_VARIANTS))
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_intra_inter_8bit_with_lora_dropout_and_scaling(attn, variant):
    model, batch = lora_variant(attn, variant)
    loss0, exact, _ = seeded_step(model, batch)
    loss, grads, _ = seeded_step(model, batch, lambda: hyclora.compress("intra_inter", bits=8))
    assert torch.equal(loss, loss0)  # same dropout masks
    assert cosine(grads, exact) >= _FLOOR_8BIT.get((attn, variant), 0.999), cosine(grads, exact)


# The same with SDPA q/k kept exact, measured (sdpa, eager): dropout0.1-a16-r8 0.99996 0.99997; rslora-a24-r8
# 0.99982 0.99988; dropout0.1-rslora-a5-r6 0.99996 0.99995; a3-r8 0.99997 0.99997. A wrong scaling in LoRA
# compensation would leave the frozen part stored with the LoRA part's error in it; at 8 bits that error is the
# only thing between these and 1.
@pytest.mark.parametrize("variant", list(LORA_VARIANTS))
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_lora_part_is_exact_with_dropout_and_scaling(attn, variant):
    model, batch = lora_variant(attn, variant)
    loss0, exact, _ = seeded_step(model, batch)
    policy = _qk_kept(load_policy("intra_inter").with_knobs(bits=8))
    loss, grads, report = seeded_step(model, batch, lambda: hyclora.compress(policy))
    assert torch.equal(loss, loss0)
    assert cosine(grads, exact) >= 0.9995, cosine(grads, exact)
    assert report.stored_bytes < report.activation_bytes


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_lora_compensation_reaches_q_k_through_rope_and_the_kv_cache(attn, monkeypatch):
    """P3 through linear ops: SDPA's q is ``q*cos + rotate_half(q)*sin`` of a LoRA output, k and v also pass
    Hugging Face's KV-cache ``cat`` with an empty past. With the frozen q/k/v weights zeroed, each of them is its
    LoRA part only, so what the codec stores is ~0 and even 2-bit q/k/v give near-exact gradients (0.99999);
    with compensation through casts and views only (before session 6) q/k/v were quantized themselves: 0.989
    (SDPA) and 0.998 (eager, where only v is lossy)."""
    # as at real widths, only the LoRA factors (rank 8) are thin enough to replay; k/v_proj (64 x 128) are not
    monkeypatch.setattr("hyclora_hooks.lineage.MAX_REPLAY_LINEAR_RANK", 16)
    model, batch = build(f"llama-{attn}")
    zero_frozen(model, "q_proj", "k_proj", "v_proj")
    _, exact, _ = seeded_step(model, batch)
    two_bits = {"bits": 2, "group_size": 64, "granularity": "token_group"}
    policy = Policy(name="qkv2", inter=True, rules=(  # only q, k, v lossy: their own error is all there is
        Rule(codec="quant", op_class="attention", role=("query", "key", "value"), params=two_bits),
        Rule(codec="keep", op_class=("*",))))
    _, grads, report = seeded_step(model, batch, lambda: hyclora.compress(policy))
    want = {("attention", "value")} | ({("attention", "query"), ("attention", "key")} if attn == "sdpa" else set())
    assert want <= recomputed(report), sorted(recomputed(report))
    assert cosine(grads, exact) >= 0.999, cosine(grads, exact)


def _base_outputs(model) -> tuple[dict, list]:
    """Forward hooks keeping every LoRA projection's frozen output ``X·W`` (its ``base_layer``'s) and its own
    output, by projection name."""
    bases, outputs, handles = {}, {}, []
    for name, m in model.named_modules():
        if hasattr(m, "base_layer") and hasattr(m, "lora_A"):
            handles.append(m.base_layer.register_forward_hook(
                lambda mod, a, out, n=name: bases.setdefault(n, []).append(out)))
            handles.append(m.register_forward_hook(lambda mod, a, out, n=name: outputs.setdefault(n, []).append(out)))
    return {"bases": bases, "outputs": outputs}, handles


@pytest.mark.parametrize("dtype", [BF16, FP32])
def test_q_k_v_gate_up_store_their_frozen_term_itself(dtype, monkeypatch):
    """NOTE [Frozen term]: HyC-LoRA stores a projection's ``X·W``. q's, k's, v's, gate's and up's sources are the
    very tensors their base layers returned (v's viewed as SDPA's heads; q's and k's as made, before RoPE; no
    ``t - part`` formed: ``lineage.lora_subtract`` never runs), in the step that records and in the steps that
    replay; the marks are gone when the context exits, also from the outputs the caller still holds."""
    from hyclora_hooks import engine
    from hyclora_hooks.tracking import FROZEN, FROZEN_ROPE
    monkeypatch.setattr("hyclora_hooks.lineage.MAX_REPLAY_LINEAR_RANK", 16)  # as at real widths: only LoRA replays
    model = add_lora(tiny_llama(attn="sdpa", dtype=dtype, use_cache=False))
    batch = random_batch(model.config.vocab_size, batch=2, seq=32)
    sources, subtracted = [], []
    real_source, real_subtract = engine.Compressor._source, lineage.lora_subtract
    monkeypatch.setattr(engine.Compressor, "_source",
                        lambda self, src, *a: sources.append(src) or real_source(self, src, *a))
    monkeypatch.setattr(lineage, "lora_subtract", lambda t, part: subtracted.append(t) or real_subtract(t, part))
    layers = model.config.num_hidden_layers
    for step_no, _ in replayed_steps(model, batch, load_policy("intra_inter").with_knobs(bits=2)):
        pass
    # one more step with the hooks on: what the replayed step stored, and what the caller holds after it
    kept, handles = _base_outputs(model)
    sources.clear(), subtracted.clear()
    with hyclora.compress(load_policy("intra_inter").with_knobs(bits=2), model=model) as ctx:
        loss = model(**batch).loss
    assert ctx.replayed_packs > 0
    for h in handles:
        h.remove()
    for proj in ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"):
        bases = [b for n, bs in kept["bases"].items() if n.endswith(proj) for b in bs]
        assert len(bases) == layers
        # v: SDPA saves v_proj's output viewed as heads; its source is X·W viewed so
        assert all(any(s is b or s._base is b for s in sources) for b in bases), proj
    assert not subtracted
    held = [t for ts in kept["outputs"].values() for t in ts]
    assert held and not any(hasattr(t, FROZEN) or hasattr(t, FROZEN_ROPE) for t in held)
    loss.backward()


class _InPlaceLora(torch.nn.Module):
    """A LoRA-like layer summing in place (``h += B(A(x)) * s``): the sum is no longer ``X·W``, so nothing may take
    it for its own frozen term."""

    def __init__(self):
        super().__init__()
        self.base, self.A, self.B = torch.nn.Linear(64, 96), torch.nn.Linear(64, 4, bias=False), \
            torch.nn.Linear(4, 96, bias=False)
        self.base.requires_grad_(False)

    def forward(self, x):
        h = self.base(x)
        h += self.B(self.A(x)) * 0.5
        self.h = h
        return torch.nn.functional.silu(h).sum()


def test_an_in_place_lora_sum_is_no_frozen_term():
    torch.manual_seed(0)
    from hyclora_hooks.tracking import FROZEN
    m, x = _InPlaceLora(), torch.randn(8, 16, 64)
    m(x).backward()
    exact = torch.cat([m.A.weight.grad.flatten(), m.B.weight.grad.flatten()])
    m.zero_grad(set_to_none=True)
    eight = {"bits": 8, "group_size": 64, "granularity": "token_group"}
    policy = Policy(name="silu8", inter=True, rules=(
        Rule(codec="quant", op_class="activation", params=eight), Rule(codec="keep", op_class=("*",))))
    with hyclora.compress(policy, model=m):
        loss = m(x)
        assert not hasattr(m.h, FROZEN)  # not even while the step runs (it would hold itself)
    loss.backward()
    grads = torch.cat([m.A.weight.grad.flatten(), m.B.weight.grad.flatten()])
    assert cosine(grads, exact) >= 0.9999, cosine(grads, exact)


class _RopeLora(torch.nn.Module):
    """A LoRA projection viewed as 2 heads and rotated (Hugging Face's RoPE), then multiplied by a tensor that needs
    a gradient: what carries the projection's frozen term (NOTE [Frozen term] rule 4) is kept for the test."""

    def __init__(self):
        super().__init__()
        self.base, self.A, self.B = torch.nn.Linear(64, 64), torch.nn.Linear(64, 4, bias=False), \
            torch.nn.Linear(4, 64, bias=False)
        self.base.requires_grad_(False)
        self.gate = torch.nn.Linear(64, 32)
        angle = torch.randn(1, 1, 16, 32)
        self.cos, self.sin = angle.cos(), angle.sin()

    def forward(self, x):
        self.xw = self.base(x)
        q = (self.xw + self.B(self.A(x)) * 0.5).view(2, 16, 2, 32).transpose(1, 2)
        self.rot = q * self.cos + torch.cat((-q[..., 16:], q[..., :16]), dim=-1) * self.sin
        self.gated = self.rot * self.gate(x).view(2, 16, 1, 32).transpose(1, 2)  # a factor that needs a gradient
        self.shifted = self.rot + self.gate(x).view(2, 16, 1, 32).transpose(1, 2)  # a term carrying none
        return (self.gated + self.shifted).square().sum()


def test_rope_carries_the_frozen_term_and_nothing_else_does():
    from hyclora_hooks.tracking import FROZEN_ROPE
    m, x = _RopeLora(), torch.randn(2, 16, 64)
    with hyclora.compress(Policy(name="keep", inter=True, rules=(Rule(codec="keep", op_class=("*",)),)), model=m):
        loss = m(x)
        assert getattr(m.rot, FROZEN_ROPE) is m.xw
        assert not hasattr(m.gated, FROZEN_ROPE) and not hasattr(m.shifted, FROZEN_ROPE)
    assert not hasattr(m.rot, FROZEN_ROPE)  # rule 3: the marks go when the context exits
    loss.backward()


def test_frozen_term_reconstructs_gate_and_up_through_the_lora_part(monkeypatch):
    """With gate's and up's LoRA parts carrying most of their values (frozen weights scaled down 100x), a lossy
    frozen term must be met by the same part in backward: 4-bit gate/up alone keep the LoRA gradients within a
    cosine of 0.9999 of exact autograd (measured 0.99999 on this CPU), as the ``t - part`` path did."""
    monkeypatch.setattr("hyclora_hooks.lineage.MAX_REPLAY_LINEAR_RANK", 16)
    model, batch = build("llama-sdpa")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("gate_proj.base_layer.weight", "up_proj.base_layer.weight")):
                p.mul_(0.01)
    _, exact, _ = seeded_step(model, batch)
    four = {"bits": 4, "group_size": 64, "granularity": "token_group"}
    policy = Policy(name="gu4", inter=True, rules=(
        Rule(codec="quant", op_class=("activation", "mul"), params=four), Rule(codec="keep", op_class=("*",))))
    _, grads, report = seeded_step(model, batch, lambda: hyclora.compress(policy))
    assert {("activation", "silu"), ("mul", "swiglu")} <= recomputed(report), sorted(recomputed(report))
    assert cosine(grads, exact) >= 0.9999, cosine(grads, exact)


class _CountMatmuls(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the matmuls of inner size ``k`` run under it (a LoRA branch's ``x·A @ B``, k = the rank; RoPE's
    ``inv_freq @ positions`` has k = 1)."""

    def __init__(self, k: int):
        super().__init__()
        self.k, self.mm = k, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.bmm) and args[0].shape[-1] == self.k:
            self.mm += 1
        elif func.overloadpacket is torch.ops.aten.addmm and args[1].shape[-1] == self.k:
            self.mm += 1
        return func(*args, **(kwargs or {}))


def test_lora_part_through_rope_evaluates_each_branch_once(monkeypatch):
    """NOTE [LoRA part]: RoPE reads q's LoRA part three times (``q*cos`` and both halves of ``rotate_half``); the
    part is one node, so decoding q replays the branch's matmul once (three times before session 9), and the part
    is bf16 for bf16 q, within bf16 rounding of the exact fp32 LoRA term carried through RoPE."""
    parts = []
    real = lineage.Planner._part  # what lora_part and rope_frozen_part (q's, from its frozen term) both ask

    def spy(self, t, frozen):
        node, memo = real(self, t, frozen)
        if node is not None:
            parts.append((t.dtype, tuple(t.shape), node))
        return node, memo

    monkeypatch.setattr(lineage.Planner, "_part", spy)
    monkeypatch.setattr("hyclora_hooks.lineage.MAX_REPLAY_LINEAR_RANK", 16)  # as at real widths: only LoRA replays
    model, batch = build("llama-sdpa")
    rank = next(m.lora_A["default"].weight.shape[0] for m in model.modules() if hasattr(m, "lora_A"))
    two_bits = {"bits": 2, "group_size": 64, "granularity": "token_group"}
    policy = Policy(name="q2", inter=True, rules=(
        Rule(codec="quant", op_class="attention", role=("query",), params=two_bits), Rule(codec="keep", op_class=("*",))))
    with hyclora.compress(policy):
        loss = model(**batch).loss
    q_parts = [(dtype, shape, node) for dtype, shape, node in parts if len(shape) == 4]
    assert len(q_parts) == model.config.num_hidden_layers
    for dtype, shape, node in q_parts:
        counter = _CountMatmuls(k=rank)
        with counter:
            value = lineage.evaluate(node)
        assert counter.mm == 1
        assert value.dtype == dtype == BF16 and tuple(value.shape) == shape
    loss.backward()


def test_cheap_branch_folds_the_scaling_and_casts():
    torch.manual_seed(0)
    x, w = torch.randn(64, 8), torch.randn(96, 8)
    for scale in (2.0, 0.37):
        for order in ((0, 1), (1, 0)):
            lin = lineage.Replay(torch.nn.functional.linear, "linear", (lineage.Const(x), lineage.Const(w)), {})
            args = (lin, scale) if order == (0, 1) else (scale, lin)
            branch = lineage.Replay(torch.mul, "mul", args, {})
            exact = lineage.evaluate(branch)
            same_dtype = lineage.cheap_branch(branch, None)
            assert same_dtype is not branch and same_dtype.name == "linear"
            got = lineage.evaluate(same_dtype)
            assert got.dtype == FP32
            if scale == 2.0:  # a power of two: folding it into the weight changes no bit
                assert torch.equal(got, exact)
            else:
                torch.testing.assert_close(got, exact, rtol=1e-5, atol=1e-5)
            half = lineage.evaluate(lineage.cheap_branch(branch, BF16))
            assert half.dtype == BF16
            torch.testing.assert_close(half.float(), exact, rtol=2e-2, atol=2e-2 * exact.abs().max().item())
    lin = lineage.Replay(torch.nn.functional.linear, "linear", (lineage.Const(x), lineage.Const(w)), {})
    not_scaled = lineage.Replay(torch.add, "add", (lin, 1.0), {})
    assert lineage.cheap_branch(not_scaled, BF16) is not_scaled  # only linear * number is rewritten


# ------------------------------------------------------------------------------------------ 4. pure recipes
PURE = [("llama", "sdpa", BF16), ("llama", "eager", BF16), ("gpt2", "sdpa", FP32), ("roberta", "sdpa", FP32),
        ("qwen2", "eager", FP32)]


@pytest.mark.parametrize("name,attn,dtype", PURE, ids=[f"{m}-{a}-{d}".replace("torch.", "") for m, a, d in PURE])
def test_recipes_are_pure_and_free_everything(name, attn, dtype):
    model, batch, _, _ = padded(name, attn, dtype)
    model.zero_grad(set_to_none=True)
    with hyclora.compress("intra_inter", bits=2) as ctx:
        loss = model(**batch).loss
    before = ctx.report()
    assert before.live_stored_bytes > 0 and before.live_activation_bytes == before.activation_bytes
    loss.backward(retain_graph=True)
    first = lora_grads(model)
    assert ctx.report().live_stored_bytes == before.live_stored_bytes  # a retained graph keeps its entries
    model.zero_grad(set_to_none=True)
    loss.backward()
    assert torch.equal(lora_grads(model), first)
    del loss
    gc.collect()
    after = ctx.report()
    # before the engine dropped its per-SDPA-call recipe on exit, SDPA models kept the last layer's q/k/v here:
    # tiny Llama 49152 activation / 13824 stored bytes after a retained double backward
    assert after.live_stored_bytes == 0
    assert after.live_activation_bytes == 0
    assert after.live_host_bytes == 0


# -------------------------------------------------------------------------------------------- 5. the report
@pytest.mark.parametrize("name,attn,dtype", [("llama", "sdpa", BF16), ("llama", "eager", BF16),
                                             ("gpt2", "sdpa", BF16), ("roberta", "sdpa", BF16)],
                         ids=["llama-sdpa", "llama-eager", "gpt2-sdpa", "roberta-sdpa"])
def test_report_shows_recipes_and_adds_up(name, attn, dtype):
    model, batch, _, _ = padded(name, attn, dtype)
    _, _, report = step(model, batch, lambda: hyclora.compress("intra_inter", bits=2))
    got = recomputed(report)
    want = {("linear", "lora_a_input")}
    if attn == "sdpa":
        want |= {("attention", "output"), ("attention", "logsumexp")}
    if name == "llama":
        want |= {("activation", "silu"), ("mul", "swiglu")}
    if name == "roberta":
        want |= {("activation", "gelu")}
    if name == "gpt2":  # GELU-tanh (NewGELUActivation) is a chain of muls, pow and tanh inside an activation module
        want |= {("activation", "mul"), ("activation", "pow")}
    assert want <= got, sorted(want - got)
    # the head's log-probabilities are neither stored nor rebuilt: the loss's gradient is kept (NOTE [Fused head])
    assert {(r["role"], r["codec"]) for r in report.by_op if r["op"] == "cross_entropy" and r["count"]} >= \
        {("log_softmax", "fused head"), ("loss_grad", "keep")}
    # every fp32 copy of a bf16 LoRA-A input is a recipe: no LoRA-A activation byte is stored as data
    assert all(r["codec"] == "recompute" for r in report.by_op
               if r["role"] == "lora_a_input" and r["activation_bytes"] > 0)
    # recipes hold no bytes of their own; their sources are counted where they are stored
    assert all(r["stored_bytes"] == 0 for r in report.by_op if r["codec"] == "recompute")
    # the accountant's totals are the sums of its rows
    assert report.activation_bytes == sum(r["activation_bytes"] for r in report.by_op)
    assert report.stored_bytes == sum(r["stored_bytes"] for r in report.by_op)
    assert report.activation_bytes == sum(r["activation_bytes"] for r in report.by_layer)
    assert report.stored_bytes == sum(r["stored_bytes"] for r in report.by_layer)
    assert "recompute" in str(report)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_a_kept_view_of_its_source_is_one_kept_entry(attn, monkeypatch):
    """peft's ``x·A`` as ``lora_B`` saves it (a view of ``lora_A``'s output, the policy keeps it) is kept as it is:
    one entry holding its storage, not P2's kept source plus a view recipe (``engine._kept_view``), with the same
    bytes counted and the same gradients bit for bit as that recipe gave."""
    model, batch, _, _ = padded("llama", attn, BF16)
    decide = functools.partial(hyclora.compress, "intra_inter", bits=2, replay=False)  # no plan of another step
    _, grads, report = step(model, batch, decide)
    rows = [r for r in report.by_op if r["role"] == "lora_b_input" and r["count"]]
    assert {r["codec"] for r in rows} == {"keep"}, rows
    assert sum(r["count"] for r in rows) == sum(1 for m in model.modules() if hasattr(m, "lora_A"))
    assert sum(r["stored_bytes"] for r in rows) == sum(r["activation_bytes"] for r in rows) > 0
    monkeypatch.setattr(engine, "_kept_view", lambda *args: False)  # P2 as before: a kept source and a view
    _, grads_recipe, report_recipe = step(model, batch, decide)
    assert ("linear", "lora_b_input") in recomputed(report_recipe)
    assert torch.equal(grads, grads_recipe)
    assert (report.activation_bytes, report.stored_bytes) == (report_recipe.activation_bytes,
                                                              report_recipe.stored_bytes)


# --------------------------------------------------------------------------------- 6. lossless recipes are exact
def _all_keep(policy: Policy) -> Policy:
    """``policy``'s rules with every codec replaced by keep, recipes on (inter = true)."""
    rules = tuple(Rule(codec="keep", op_class=r.op_class, role=r.role, module=r.module) for r in policy.rules)
    return Policy(name="inter_keep", rules=rules, inter=True)


KEEP_POLICIES = {
    "intra_inter-rules": _all_keep(load_policy("intra_inter")),
    "one-rule": Policy(name="inter_keep_all", rules=(Rule(codec="keep", op_class=("*", "unknown")),), inter=True),
    # the loss's gradient formed in the forward (NOTE [Fused head]): plain's bits too, at an incoming gradient of one
    "fused-head": Policy(name="inter_keep_fused_head", rules=(Rule(codec="keep", op_class=("*", "unknown")),),
                         inter=True, fuse_head=True),
}


# lossless storage with recipes, activation / stored measured (sdpa bf16, sdpa fp32, eager bf16, eager fp32):
#   llama 4.18 2.00 3.62 1.93 | qwen2 4.14 1.97 3.25 1.82 | mistral 4.27 2.07 3.40 1.92 | gpt2 2.17 1.68 2.20 1.73
#   roberta 4.53 2.65 2.70 1.67. (bf16 gains most: every fp32 copy of a bf16 tensor is a recipe.)
@pytest.mark.parametrize("policy", list(KEEP_POLICIES))
@pytest.mark.parametrize("name,attn,dtype", ANY, ids=ANY_IDS)
def test_lossless_recipes_are_bit_exact(name, attn, dtype, policy):
    model, batch, loss0, exact = padded(name, attn, dtype)
    loss, grads, report = step(model, batch, lambda: hyclora.compress(KEEP_POLICIES[policy]))
    assert torch.equal(loss, loss0)
    assert report.stored_bytes * 1.5 <= report.activation_bytes  # recipes, not only data (at least 1.67x measured)
    assert recomputed(report)
    assert loss_grad_bytes(report) > 0 if KEEP_POLICIES[policy].fuse_head else not loss_grad_bytes(report)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    sizes = [p.numel() for p in model.parameters() if p.requires_grad]
    bad = [n for n, a, b in zip(names, grads.split(sizes), exact.split(sizes)) if not torch.equal(a, b)]
    assert not bad, f"lossless recipes changed the gradients of {len(bad)} tensors, e.g. {bad[:6]}"


# ------------------------------------------------------------------------------- SDPA replay with a boolean mask
@pytest.mark.parametrize("dtype", [BF16, FP32])
@pytest.mark.parametrize("gqa", [False, True])
def test_sdpa_replay_matches_forward_with_a_boolean_padding_mask(dtype, gqa):
    """transformers passes padding as a boolean mask; the recompute must run (it raised before) and match
    F.scaled_dot_product_attention bit for bit on the same inputs."""
    from hyclora_hooks.attention import sdpa_with_lse

    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 6, 19, 24, generator=g).to(dtype)
    k, v = (torch.randn(2, 2 if gqa else 6, 19, 24, generator=g).to(dtype) for _ in range(2))
    mask = torch.ones(2, 1, 19, 19, dtype=torch.bool)
    mask[1, ..., 13:] = False
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3, enable_gqa=gqa)
    out, lse = sdpa_with_lse(q, k, v, mask, False, 0.3, gqa)
    assert torch.equal(out, ref)
    assert lse.shape == (2, 6, 19) and torch.isfinite(lse).all()


@pytest.mark.parametrize("saved_shape", [(2, 6, 19), (2, 6, 19, 1), (2, 6, 32)],
                         ids=["flash", "cudnn", "efficient-padded"])
def test_recomputed_logsumexp_takes_each_backends_saved_shape(saved_shape):
    """Backends save the logsumexp differently: flash (B, H, L), cuDNN (B, H, L, 1), efficient attention
    (B, H, L) padded up to a multiple of 32. The recompute hands back exactly the saved shape, values in place."""
    from hyclora_hooks.attention import SdpaRecompute, sdpa_with_lse

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 6, 19, 24, generator=g) for _ in range(3))
    _, want = sdpa_with_lse(q, k, v, None, True, None)
    shared = SdpaRecompute(*(lineage.Const(t) for t in (q, k, v)), None, True, None, False)
    node = shared.node("logsumexp", (torch.Size(saved_shape), torch.float32, None))
    got = lineage.evaluate(node)
    assert tuple(got.shape) == saved_shape
    assert torch.equal(got.reshape(2, 6, -1)[..., :19], want)


def test_the_recomputed_output_takes_the_saved_strides_without_a_copy_where_only_size_1_dims_differ():
    """SDPA's backward reads the layout its forward wrote, so the recompute hands back the saved strides. Where they
    differ from the recompute's only in a dim of one element (a batch of one), the memory is the same: a view with
    those strides, no copy; elsewhere a copy in that layout. Values are the recompute's either way."""
    from hyclora_hooks.attention import _with_strides

    t = torch.randn(1, 4, 6, 8).transpose(1, 2).contiguous().transpose(1, 2)  # (B, H, L, D) over (B, L, H, D)
    batch_one = (999,) + t.stride()[1:]  # another stride for the batch dim, which has one element
    got = _with_strides(t, (t.shape, t.dtype, batch_one))
    assert got.stride() == batch_one and got.data_ptr() == t.data_ptr() and torch.equal(got, t)
    contiguous = torch.empty(t.shape).stride()  # another layout of the same shape
    got = _with_strides(t, (t.shape, t.dtype, contiguous))
    assert got.stride() == contiguous and got.data_ptr() != t.data_ptr() and torch.equal(got, t)
    assert _with_strides(t, (t.shape, t.dtype, t.stride())) is t and _with_strides(t, (t.shape, t.dtype, None)) is t


# ------------------------------------------------------------------------------------ intra_inter_full_fuse
def _silu_decodes(monkeypatch) -> list:
    """Record each decode of a SiLU-output recipe entry (the codec still runs; only recorded)."""
    from hyclora_hooks import engine

    seen, orig = [], engine.Entry.decode

    def counting(self):
        if isinstance(self.payload, lineage.Replay) and self.payload.name == "silu":
            seen.append(id(self))
        return orig(self)

    monkeypatch.setattr(engine.Entry, "decode", counting)
    return seen


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("bits", [2, 4])
def test_fused_rebuilds_give_the_numbers_of_the_ops_they_replace(attn, bits, monkeypatch):
    """Fused rebuilds change how tensors are rebuilt, not their values: every ``inter`` policy rebuilds the SwiGLU
    product with SiLU's output in one pass (SiLU + Hadamard), and ``intra_inter_full_fuse`` also a compensated tensor
    (dequantize + LoRA re-add); both forced here onto the Triton kernels under the interpreter, as on CUDA. Gradients
    are bit-equal to the op-by-op rebuilds', and SiLU's output is never rebuilt on its own."""
    from hyclora_hooks.kernels import quant as Q
    from hyclora_hooks.kernels import swiglu

    full = load_policy("intra_inter_full_fuse")
    assert full.fuse and not load_policy("intra_inter").fuse and full.rules == load_policy("intra_inter").rules
    # the tiny model's base weights (128 wide) count as thin and are replayed outright; as at real widths, let
    # only the LoRA factors be thin, so q, k, v, gate and up are stored by LoRA compensation
    monkeypatch.setattr("hyclora_hooks.lineage.MAX_REPLAY_LINEAR_RANK", 64)
    model, batch = build(f"llama-{attn}")
    twin, _ = build(f"llama-{attn}")  # a replay plan is the model's: the op-by-op reference records its own
    silu_decodes = _silu_decodes(monkeypatch)
    with monkeypatch.context() as unfused:
        unfused.setattr(lineage, "fuse_swiglu", lambda node: node)
        _, ref, rep_ref = seeded_step(twin, batch, lambda: hyclora.compress("intra_inter", bits=bits))
    assert len(silu_decodes) >= 2  # op by op: each layer's SiLU output is rebuilt from the gate
    fused_calls, swiglu_calls = [], []
    orig, orig_swiglu = Q.dequantize_add, swiglu.silu_mul

    def on_kernel(q, add, backend="auto"):
        fused_calls.append(q.shape)
        return orig(q, add, backend="triton")  # TRITON_INTERPRET=1 (set above): the CUDA path, on CPU

    def on_swiglu(gate, up, out_dtype=None, backend="auto"):
        swiglu_calls.append(gate.shape)
        assert swiglu.fusable(gate, up, out_dtype)
        return orig_swiglu(gate, up, out_dtype, backend="triton")

    monkeypatch.setattr("hyclora_hooks.codecs.quant.dequantize_add", on_kernel)
    monkeypatch.setattr(swiglu, "silu_mul", on_swiglu)
    for preset in ("intra_inter", "intra_inter_full_fuse"):
        silu_decodes.clear()
        _, got, rep = seeded_step(model, batch, lambda: hyclora.compress(preset, bits=bits))
        assert torch.equal(got, ref), preset
        assert rep.stored_bytes == rep_ref.stored_bytes
        assert len(swiglu_calls) == 2, preset  # each layer's down_proj input: one SiLU + Hadamard kernel
        assert silu_decodes == [], preset  # SiLU's output came from that kernel, shared with MulBackward
        swiglu_calls.clear()
        assert (len(fused_calls) >= 4) == preset.endswith("full_fuse")  # gate and up of both layers at least


# ------------------------------------------------------------------ in-place changes (NOTE [Recipes] versions)
def _inplace_grads(f, policy=None):
    torch.manual_seed(0)
    w, u = (torch.nn.Parameter(torch.randn(256, 256) / 16) for _ in range(2))
    x = torch.randn(64, 256)
    if policy is None:
        f(x, w, u).backward()
    else:
        with hyclora.compress(policy, bits=8):
            loss = f(x, w, u)
        loss.backward()
    return torch.cat([w.grad.flatten(), u.grad.flatten()])


def _changed_after_its_op(x, w, u):
    s = torch.nn.functional.silu(torch.nn.functional.linear(x, w))  # silu saves its input: s is silu(stored)
    s.mul_(3.0)  # s's lineage no longer says what s holds
    return (s * torch.nn.functional.linear(x, u)).square().sum()


def _changed_before_its_save(x, w, u):
    g = torch.nn.functional.linear(x, w)
    a = g.double()  # a = double(g) of g as it was here
    g.mul_(3.0)
    h = torch.nn.functional.silu(g)  # silu saves g as it is now: an entry under g's storage key
    return (a * h.double() * torch.nn.functional.linear(x, u).double()).square().sum()


@pytest.mark.parametrize("f", [_changed_after_its_op, _changed_before_its_save])
def test_recipes_see_in_place_changes(f):
    """A tensor changed in place after the op that made it, or an argument changed after an op read it, must not
    be rebuilt from the lineage or entry of another version: the gradient would be wrong with no error."""
    want = _inplace_grads(f)
    got = _inplace_grads(f, "intra_inter")
    assert cosine(got, want) > 0.999
    assert abs(got.norm() / want.norm() - 1) < 0.01


def test_recomputed_output_takes_the_saved_strides():
    """The rebuilt SDPA output is laid out like the saved one (cuDNN's is a (B, H, L, D) view of (B, L, H, D)
    memory): backward kernels read the layout, and a contiguous replay under a padding mask gave cosines of
    0.85-0.94 on an H200."""
    from hyclora_hooks.attention import SdpaRecompute, sdpa_with_lse

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 6, 19, 24, generator=g) for _ in range(3))
    want, _ = sdpa_with_lse(q, k, v, None, True, None)
    saved = torch.empty(2, 19, 6, 24).transpose(1, 2)  # the layout cuDNN writes
    shared = SdpaRecompute(*(lineage.Const(t) for t in (q, k, v)), None, True, None, False)
    got = lineage.evaluate(shared.node("output", (saved.shape, saved.dtype, saved.stride())))
    assert got.stride() == saved.stride()
    assert torch.equal(got, want)


# ------------------------------------------------------------------------- casts into outputs (NOTE in lineage.py)
def _cast_of_op(op: str, a, b, dtype):
    inner = lineage.Replay(getattr(torch.Tensor, f"__{op}__"), op,
                           (lineage.Const(a), lineage.Const(b) if isinstance(b, torch.Tensor) else b), {})
    return lineage.Replay(torch.Tensor.to, "to", (inner, dtype), {})


@pytest.mark.parametrize("op", ["mul", "add", "sub", "truediv"])
@pytest.mark.parametrize("src,dst", [(BF16, FP32), (FP32, BF16), (torch.float16, FP32)])
def test_casts_into_outputs_give_the_op_by_op_bits(op, src, dst, monkeypatch):
    """``op(a, b).to(dtype)`` evaluated as ``op(a, b, out=...)`` (one write) gives the bits of the two ops, with a
    broadcast operand and with a number; a non-contiguous operand is replayed op by op (same layout as before)."""
    gen = torch.Generator().manual_seed(0)
    a = (torch.randn(6, 40, 24, generator=gen) * 5).to(src)
    cases = [(a, (torch.randn(6, 40, 24, generator=gen) * 3).to(src)), (a, torch.rand(6, 40, 1, generator=gen).to(src)),
             (a, 0.37), (a, torch.randn(24, generator=gen))]  # the last promotes a 16-bit a to fp32 first
    outs = []
    real = lineage._OUT_OPS[op]
    monkeypatch.setitem(lineage._OUT_OPS, op, lambda *x, **k: outs.append(k["out"]) or real(*x, **k))
    for x, y in cases:
        node = _cast_of_op(op, x, y, dst)
        got = lineage.evaluate(node)
        want = getattr(x, f"__{op}__")(y).to(dst)
        assert got.dtype == want.dtype and torch.equal(got, want)
    assert len(outs) == len(cases)  # every case went through out=
    t = a.transpose(0, 2)  # not contiguous: op by op, the op's own layout
    got = lineage.evaluate(_cast_of_op(op, t, t, dst))
    want = getattr(t, f"__{op}__")(t).to(dst)
    assert len(outs) == len(cases) and torch.equal(got, want) and got.stride() == want.stride()


def test_a_stored_tensor_cast_wider_is_decoded_into_the_dtype(monkeypatch):
    """RMSNorm's fp32 input rebuilt from the stored bf16 hidden state (``to(entry)``) is decoded straight into fp32
    (``Entry.decode_to``, the element kernel forced under the interpreter) where no other recipe reads the decode:
    the gradients are those of the decode then the cast, bit for bit, recorded and replayed."""
    from hyclora_hooks.codecs import quant as codec_quant
    from hyclora_hooks.kernels import quant as kq

    def run(wide: bool) -> tuple[list, int]:
        calls = []
        real = kq.dequantize_to if wide else None
        monkeypatch.setattr(codec_quant, "dequantize_to",
                            (lambda q, d: calls.append(d) or real(q, d, backend="triton")) if wide
                            else (lambda q, d: kq.dequantize(q).to(d)))
        model = add_lora(tiny_llama(attn="sdpa", dtype=BF16, layers=3))  # each run its own (replay plans)
        batch = random_batch(model.config.vocab_size, batch=2, seq=32)
        grads = [g for _, g in replayed_steps(model, batch, "intra_inter")]
        return grads, len(calls)

    fused, n = run(True)
    plain, _ = run(False)
    assert n >= 3 * 2  # at least two norm inputs a step, over three steps (the others share their decode)
    assert len(fused) == len(plain) == 3 and all(torch.equal(a, b) for a, b in zip(fused, plain))


def test_an_fp16_models_q_and_k_rebuild_in_fp16(monkeypatch):
    """NOTE [LoRA part] keeps an fp16 model's part in fp32: q's and k's rebuild from their frozen terms (``RopeRebuild``)
    must still decode in fp16, the dtype SDPA saved them in (an fp32 q beside an fp16 v stopped the backward's SDPA
    replay), and the LoRA gradients stay near exact autograd's in recorded and replayed steps."""
    from hyclora_hooks import engine
    model = add_lora(tiny_llama(attn="sdpa", dtype=torch.float16, use_cache=False, layers=2), r=8)
    model.train()
    exact = copy.deepcopy(model)
    batch = random_batch(model.config.vocab_size, batch=2, seq=16)
    exact(**batch).loss.backward()
    want = lora_grads(exact)
    seen, real = [], engine.Entry.decode

    def decode(self):
        out = real(self)
        if self.site.op_class == "attention" and self.site.role in ("query", "key"):
            seen.append(out.dtype)
        return out

    monkeypatch.setattr(engine.Entry, "decode", decode)
    for _ in range(3):  # records, then replays
        seen.clear()
        with hyclora.compress("intra_inter", bits=4) as ctx:
            loss = model(**batch).loss
        loss.backward()
        got = lora_grads(model)
        model.zero_grad(set_to_none=True)
        assert seen and set(seen) == {torch.float16} and cosine(got, want) > 0.99
    assert ctx.replayed_packs == ctx.report().packs
