"""Replay units (NOTE [Replay units] in hyclora_hooks/units.py): a peft LoRA linear's, an RMSNorm's or Llama
attention's call, or a decoder layer's or MLP's made of them, replayed as one step.

As in test_replay.py, two copies of a model train side by side on the same batches, one replaying (the default),
one deciding every pack afresh (``replay=False``): a replayed step must give the deciding copy's LoRA gradients
bit for bit, whether its LoRA linears ran as units or, after something that changes their ops, op by op.
"""

from __future__ import annotations

import copy
from collections import Counter

import pytest
import torch
from torch import nn

import hyclora_hooks as hyclora
from hyclora_hooks import replay
from hyclora_hooks.models import add_lora, lora_grads, random_batch, tiny_llama
from hyclora_hooks.units import unit_state

from conftest import replay_step as _step  # noqa: E402,I001 - seeded: the same dropout masks in both copies

VOCAB = 256


def _pair(dtype=torch.float32, dropout=0.0, use_cache=True, layers=2):
    model = add_lora(tiny_llama(vocab=VOCAB, dtype=dtype, use_cache=use_cache, layers=layers), dropout=dropout)
    model.train()
    return model, copy.deepcopy(model)


def _lora_linears(model):
    from peft.tuners.lora.layer import Linear

    return [m for m in model.modules() if type(m) is Linear]


def _kinds(plan):
    """How many units of each module class the plan holds."""
    return Counter(type(u.module()).__name__ for u in plan.units.values())


def _is_unit(plan, module):
    return any(u.module() is module for u in plan.units.values())


def _same_steps(on, off, policy, batch, steps, **knobs):
    """``steps`` steps of both copies; the replaying copy's contexts."""
    ctxs = []
    for step in range(steps):
        g_on, ctx = _step(on, policy, batch, True, seed=step, **knobs)
        g_off, ref = _step(off, policy, batch, False, seed=step, **knobs)
        assert torch.equal(g_on, g_off), f"step {step}"
        assert ctx.report().stored_bytes == ref.report().stored_bytes, f"step {step}"
        ctxs.append(ctx)
    return ctxs


@pytest.mark.parametrize("policy", ["intra_inter", "intra", "baseline"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lora_linears_and_norms_replay_as_units_with_the_deciding_steps_gradients(policy, dtype):
    on, off = _pair(dtype)
    calls = len(_lora_linears(on))  # every LoRA linear and norm runs once a forward
    norms = sum(type(m).__name__ == "LlamaRMSNorm" for m in on.modules())
    cached = random_batch(VOCAB, batch=2, seq=24) | {"use_cache": True}  # a context turns the config's off (kv_cache)
    ctxs = _same_steps(on, off, policy, cached, 3, bits=2)
    assert ctxs[0].replayed_units == 0  # the first step records
    plan = replay.find_plan(on, ctxs[-1].policy)
    kinds = _kinds(plan)
    # Every call is a unit, the first layer's too: the step chooses to replay at its first decoder layer's entry,
    # before its first pack (rule 8). In fp32 a norm's cast to fp32 returns its input, tagged anew: no unit (rule
    # 2). HF's KV cache (asked for by the call here) keeps attention and decoder layers from being units (rules 5,
    # 6); the MLPs whose tensors no recipe reads by slot are.
    assert kinds["Linear"] == calls and kinds["LlamaRMSNorm"] == (norms if dtype == torch.bfloat16 else 0)
    assert set(kinds) <= {"Linear", "LlamaRMSNorm", "LlamaMLP"}
    for ctx in ctxs[1:]:
        assert ctx.replayed_units == len(_outermost(plan))
        assert ctx.replayed_packs == ctx.report().packs


def _outermost(plan):
    """The plan's units no other unit of it holds: those a replay takes (rules 5 and 6)."""
    units = list(plan.units.values())
    return [u for u in units if not any(v.start <= u.start and u.end <= v.end and v.end - v.start > u.end - u.start
                                        for v in units)]


def _attention(model, layer=1):
    return model.base_model.model.model.layers[layer].self_attn


@pytest.mark.parametrize("policy", ["intra_inter", "intra_inter_full_fuse", "intra", "baseline"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_llama_attention_replays_as_a_unit_with_the_deciding_steps_gradients(policy, dtype):
    layers = 3
    on, off = _pair(dtype, use_cache=False, layers=layers)  # HF's default cache is an object the call reads: no unit
    calls = len(_lora_linears(on))
    ctxs = _same_steps(on, off, policy, random_batch(VOCAB, batch=2, seq=24), 3, bits=2)
    plan = replay.find_plan(on, ctxs[-1].policy)
    kinds = _kinds(plan)
    # every attention (rule 8: layer 0's too); their projections are recorded as units too (taken where their
    # attention's entry does not match)
    assert kinds["LlamaAttention"] == layers and kinds["Linear"] == calls
    if policy.startswith("intra_inter"):  # q and k store the frozen terms RoPE carried, from q/k_proj's exits; in
        # bf16 the last layer's v stores heads of v_proj's (the others recompute v): each path is taken here
        terms = [sorted(u.terms.values()) for u in plan.units.values() if type(u.module()).__name__ == "LlamaAttention"]
        assert terms == ([[0, 1], [0, 1], [0, 1, 2]] if dtype == torch.bfloat16 else [[0, 1], [0, 1], [0, 1]])
    for ctx in ctxs[1:]:
        assert ctx.replayed_units == len(_outermost(plan))  # an attention holds four projections' units
        assert ctx.replayed_packs == ctx.report().packs


@pytest.mark.parametrize("policy", ["baseline", "intra", "intra_inter"])
def test_decoder_layers_and_mlps_replay_as_units_with_the_deciding_steps_gradients(policy):
    layers = 3
    on, off = _pair(torch.bfloat16, use_cache=False, layers=layers)
    ctxs = _same_steps(on, off, policy, random_batch(VOCAB, batch=2, seq=24), 3, bits=2)
    plan = replay.find_plan(on, ctxs[-1].policy)
    kinds = _kinds(plan)
    # layer 0's too, the step choosing to replay at its entry (rule 8); under intra_inter layer 0's input norm saves
    # nothing (the frozen embedding's output needs no gradient), so q_proj's first pack reads the norm's output, the
    # input of three calls of the body, by its slot: rule 6 takes it at the first of them, q_proj's entry
    assert kinds["LlamaDecoderLayer"] == layers and kinds["LlamaMLP"] == layers
    if policy == "intra_inter":  # a norm's recipe reads its input, made in the layer, by its slot: taken at its call
        assert all(u.slots for u in plan.units.values() if type(u.module()).__name__ == "LlamaDecoderLayer")
    for ctx in ctxs[1:]:
        assert ctx.replayed_units == len(_outermost(plan))
        assert ctx.replayed_packs == ctx.report().packs


@pytest.mark.parametrize("change", ["activation", "forward_hook", "shadowing_attribute"])
def test_a_changed_decoder_layer_is_no_unit_and_the_step_stays_correct(change):
    on, off = _pair(torch.bfloat16, use_cache=False)  # (in fp32 its norm's cast retags its input: no unit, rule 2)
    batch = random_batch(VOCAB, batch=2, seq=16)
    ctx = _same_steps(on, off, "intra", batch, 2, bits=8)[-1]
    assert _is_unit(replay.find_plan(on, ctx.policy), on.base_model.model.model.layers[1])
    for model in (on, off):
        layer = model.base_model.model.model.layers[1]
        if change == "activation":  # another activation: its own forward reads other names
            layer.mlp.act_fn = nn.GELU()
        elif change == "forward_hook":
            layer.register_forward_hook(lambda mod, args, out: out * 2)
        else:  # an instance attribute named like a submodule would be what the forward reads
            layer.__dict__["mlp"] = layer.mlp
    assert unit_state(on.base_model.model.model.layers[1]) is None
    for step in range(3):
        got, ctx = _step(on, "intra", batch, True, seed=5 + step, bits=8)
        exact, _ = _step(off, "baseline", batch, False, seed=5 + step)
        assert torch.nn.functional.cosine_similarity(got, exact, dim=0) > 0.99, f"step {step}"
    plan = replay.find_plan(on, ctx.policy)
    recorded = _is_unit(plan, on.base_model.model.model.layers[1])
    assert ctx.replayed_packs == ctx.report().packs
    if change == "shadowing_attribute":  # the same ops: the plan stays, the layer's entry never matches its record
        assert recorded and ctx.replayed_units == len(_outermost(plan)) + 3  # its attention, MLP and norms instead
    else:  # other ops: recorded again, without the layer as a unit, and replayed
        assert not recorded and ctx.replayed_units == len(_outermost(plan))


def test_only_forwards_that_just_call_submodules_by_name_are_composites():
    from hyclora_hooks.units import _composite_names

    class Calls(nn.Module):
        def forward(self, x):
            return self.b(self.a(x)) + x

    class Reads(nn.Module):
        def forward(self, x):
            return self.a(x) * self.scale

    class Passes(nn.Module):
        def forward(self, x):
            return self.a(x).add(self)  # ``self`` passed on: what it does there is in no name

    class Global(nn.Module):
        def forward(self, x):
            return torch.relu(self.a(x))

    assert _composite_names(Calls.forward) == ("b", "a")
    assert _composite_names(Reads.forward) == ("a", "scale")  # a name; the state then finds no submodule "scale"
    assert _composite_names(Passes.forward) == ()
    assert _composite_names(Global.forward) == ()
    assert _composite_names(nn.Sequential.forward) == ()  # iterates ``self``: what it calls is in no name
    m = Reads()
    m.a, m.scale = nn.Linear(2, 2), 2.0
    assert unit_state(m) is None


def test_an_attention_with_a_padding_mask_is_a_unit_too():
    on, off = _pair(torch.bfloat16, use_cache=False, layers=3)
    batch = random_batch(VOCAB, batch=2, seq=24)
    batch["attention_mask"] = torch.ones(2, 24, dtype=torch.long)
    batch["attention_mask"][1, 18:] = 0  # the mask reaches SDPA (no GQA kernel with one: repeat_kv in the body)
    ctxs = _same_steps(on, off, "intra_inter", batch, 3, bits=2)
    plan = replay.find_plan(on, ctxs[-1].policy)
    assert _kinds(plan)["LlamaAttention"] == 3
    assert ctxs[-1].replayed_packs == ctxs[-1].report().packs


def test_an_attention_called_with_a_cache_is_no_unit():
    on, off = _pair(use_cache=False)
    ctxs = _same_steps(on, off, "intra_inter", random_batch(VOCAB, batch=2, seq=16) | {"use_cache": True}, 2, bits=2)
    plan = replay.find_plan(on, ctxs[-1].policy)
    assert "LlamaAttention" not in _kinds(plan)
    assert ctxs[-1].replayed_packs == ctxs[-1].report().packs


def _other_rotate_half(x):
    """A rotation of RoPE's that reads only the names Llama's does (so only the witness can tell it apart)."""
    return torch.cat((x[..., x.shape[-1] // 2:], x[..., : x.shape[-1] // 2]), dim=-1)


@pytest.mark.parametrize("change", ["scaling", "training", "dropout", "eager", "rotate_half", "forward_hook",
                                    "projection"])
def test_a_changed_attention_is_no_unit_and_the_step_stays_correct(change, monkeypatch):
    from transformers.models.llama import modeling_llama

    on, off = _pair(use_cache=False)  # fp32: no decoder layer is a unit (rule 6), the attention is the outermost
    batch = random_batch(VOCAB, batch=2, seq=16)
    ctx = _same_steps(on, off, "intra_inter", batch, 2, bits=8)[-1]
    assert _is_unit(replay.find_plan(on, ctx.policy), _attention(on))
    for model in (on, off):
        attn = _attention(model)
        if change == "scaling":
            attn.scaling *= 0.9
        elif change == "training":  # the same ops (no dropout): only the witness sees it
            attn.training = False
        elif change == "dropout":  # SDPA with dropout: q/k kept, no SDPA replay
            attn.attention_dropout = 0.1
        elif change == "eager":
            model.config._attn_implementation = "eager"
        elif change == "forward_hook":
            attn.register_forward_hook(lambda mod, args, out: (out[0] * 2, out[1]))
        elif change == "projection":
            attn.q_proj.scaling["default"] *= 1.5
    if change == "rotate_half":  # a global the unit's code loads, changed for both copies
        monkeypatch.setattr(modeling_llama, "rotate_half", _other_rotate_half)
    never = change in ("eager", "forward_hook")  # no unit from now on
    assert (unit_state(_attention(on)) is None) == never
    for step in range(3):  # as for a LoRA linear: op by op, decided, then recorded again, then replayed
        got, ctx = _step(on, "intra_inter", batch, True, seed=5 + step, bits=8)
        exact, _ = _step(off, "baseline", batch, False, seed=5 + step)
        assert torch.nn.functional.cosine_similarity(got, exact, dim=0) > 0.999, f"step {step}"
    plan = replay.find_plan(on, ctx.policy)
    recorded = _is_unit(plan, _attention(on))
    assert ctx.replayed_packs == ctx.report().packs
    if change == "training":  # the same ops: the plan stays, the attention's entry never matches its record
        assert recorded and ctx.replayed_units == len(_outermost(plan)) + 3  # its four projections instead
    else:  # other ops: recorded again (with the attention as a unit where it can be one), and replayed
        assert recorded != never and ctx.replayed_units == len(_outermost(plan))


def test_lora_dropout_units_give_the_same_masks_and_gradients():
    on, off = _pair(dropout=0.1)
    ctxs = _same_steps(on, off, "intra_inter", random_batch(VOCAB, batch=2, seq=16), 3, bits=4)
    assert ctxs[-1].replayed_units > 0


def _first_lora(model):
    return _lora_linears(model)[1]  # one that runs as a unit


@pytest.mark.parametrize("change", ["scaling", "dropout", "eval", "merged", "disabled", "forward_hook", "weight"])
def test_a_changed_lora_linear_is_no_unit_and_the_step_stays_correct(change):
    on, off = _pair()
    batch = random_batch(VOCAB, batch=2, seq=16)
    _same_steps(on, off, "intra_inter", batch, 2, bits=8)
    calls = len(_lora_linears(on))
    for model in (on, off):
        m = _first_lora(model)
        if change == "scaling":
            m.scaling["default"] *= 1.5
        elif change == "dropout":
            m.lora_dropout["default"] = nn.Dropout(0.2)
        elif change == "eval":
            m.eval()
        elif change == "merged":
            m.merge()
        elif change == "disabled":
            m._disable_adapters = True
        elif change == "forward_hook":
            m.register_forward_hook(lambda mod, args, out: out * 2)
        else:  # a new weight of the same shape: other storage
            m.lora_A["default"].weight = nn.Parameter(m.lora_A["default"].weight.detach() + 0.01)
    if change in ("merged", "disabled", "forward_hook"):
        assert unit_state(_first_lora(on)) is None
    # The changed call's state differs from the plan's: it runs op by op, its signatures differ and the rest of the
    # step decides, with codecs where the replayed ops left no lineage: correct, not the deciding step's bits (and
    # outlier calibration has seen other tensors since: the copies no longer match bit for bit). The next step
    # records again, the one after replays.
    for step in range(3):
        got, ctx = _step(on, "intra_inter", batch, True, seed=5 + step, bits=8)
        exact, _ = _step(off, "baseline", batch, False, seed=5 + step)
        assert torch.nn.functional.cosine_similarity(got, exact, dim=0) > 0.999, f"step {step}"
        if step == 0:
            assert ctx.replayed_units < calls - 1
    assert ctx.replayed_packs == ctx.report().packs and ctx.replayed_units > 0


@pytest.mark.parametrize("change", ["eps", "weight", "instance_forward", "forward_pre_hook"])
def test_a_changed_norm_is_no_unit_and_the_step_stays_correct(change):
    on, off = _pair(torch.bfloat16)
    batch = random_batch(VOCAB, batch=2, seq=16)
    ctx = _same_steps(on, off, "intra_inter", batch, 2, bits=8)[-1]
    units = ctx.replayed_units
    for model in (on, off):
        norm = model.base_model.model.model.layers[1].input_layernorm
        if change == "eps":
            norm.variance_epsilon = 1e-2
        elif change == "weight":  # frozen like the one it replaces, so that only the witness can tell them apart
            scale = 1 + torch.rand(norm.weight.shape, generator=torch.Generator().manual_seed(0))
            norm.weight = nn.Parameter(norm.weight.detach() * scale.to(norm.weight.dtype), requires_grad=False)
        elif change == "instance_forward":
            norm.forward = lambda h, norm=norm: type(norm).forward(norm, h) * 0.5
        else:
            norm.register_forward_pre_hook(lambda mod, args: (args[0] * 2,))
    if change in ("instance_forward", "forward_pre_hook"):
        assert unit_state(on.base_model.model.model.layers[1].input_layernorm) is None
    else:
        assert unit_state(on.base_model.model.model.layers[1].input_layernorm) is not None
    for step in range(3):  # as for a LoRA linear: op by op, decided, then recorded again, then replayed
        got, ctx = _step(on, "intra_inter", batch, True, seed=5 + step, bits=8)
        exact, _ = _step(off, "baseline", batch, False, seed=5 + step)
        assert torch.nn.functional.cosine_similarity(got, exact, dim=0) > 0.999, f"step {step}"
        if step == 0:
            assert ctx.replayed_units < units
    never = change in ("instance_forward", "forward_pre_hook")  # no unit from now on; a new eps or weight is one
    plan = replay.find_plan(on, ctx.policy)  # recorded again (other ops, or a new weight's storage in them)
    norm = on.base_model.model.model.layers[1].input_layernorm
    assert _is_unit(plan, norm) != never
    assert ctx.replayed_packs == ctx.report().packs and ctx.replayed_units == len(_outermost(plan))


class _KeywordCaller(nn.Module):
    """Calls its LoRA linear with the keywords it is given (peft's ``adapter_names`` picks other ops)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.pre, self.fc, self.out = nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 16)
        self.kw: dict = {}

    def forward(self, x):
        h = torch.nn.functional.silu(self.pre(x))  # packs first: the step has chosen to replay by fc's call
        return self.out(torch.nn.functional.silu(self.fc(h, **self.kw))).square().mean()


def test_keywords_to_a_lora_linear_are_seen_and_it_runs_op_by_op():
    # imported here, not at collection: peft imports transformers, which imports a `kernels` package where it finds
    # one (from the checkout's root, ours), before the test modules that set TRITON_INTERPRET=1 when imported have
    # run; later interpreter runs then failed ("Cannot call @triton.jit'd outside of the scope of a kernel")
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["pre", "fc", "out"], init_lora_weights=False)
    on = get_peft_model(_KeywordCaller(), cfg)
    off = copy.deepcopy(on)
    x = torch.randn(6, 16)
    keywords = {"adapter_names": ["default"] * 6}
    for step, kw in enumerate(({}, {}, keywords, keywords, keywords)):
        grads = []
        for model, policy in ((on, "intra_inter"), (off, "baseline")):  # baseline keeps all: exact autograd
            model.base_model.model.kw = kw
            with hyclora.compress(policy, replay=policy != "baseline", bits=8) as ctx:
                loss = model(x)
            loss.backward()
            grads.append(lora_grads(model))
            model.zero_grad(set_to_none=True)
            if policy != "baseline":
                units = ctx.replayed_units
        assert torch.nn.functional.cosine_similarity(*grads, dim=0) > 0.999, f"step {step}"
        # step 1 replays fc and out as units; step 2's fc gets keywords: it runs op by op, its ops differ and the
        # rest of the step decides (out too op by op); step 3 records again, step 4 replays: fc op by op, out a unit
        assert units == (0, 2, 0, 0, 1)[step], f"step {step}"


def _o_proj_unit_set_to_miss(on, off, batch, projection="o_proj"):
    """Two recorded-and-replayed steps of ``intra_inter@2``, then o_proj's (or ``projection``'s) unit's last pack
    record changed to expect another layout, so that the next replay misses there; the unit's record."""
    _same_steps(on, off, "intra_inter", batch, 2, bits=2)
    plan = replay.find_plan(on, hyclora.compress("intra_inter", bits=2).policy)
    proj = getattr(on.base_model.model.model.layers[0].self_attn, projection)
    unit = next(u for u in plan.units.values() if u.module() is proj)
    rec = plan.packs[unit.pack_end - 1]
    rec.meta = (rec.meta[0], rec.meta[1], torch.float64, rec.meta[3])
    return unit


def test_a_unit_pack_that_misses_its_record_ends_the_unit_and_the_step_stays_exact():
    on, off = _pair()
    batch = random_batch(VOCAB, batch=2, seq=16)
    unit = _o_proj_unit_set_to_miss(on, off, batch)
    ctx = _same_steps(on, off, "intra_inter", batch, 1, bits=2)[0]
    # the miss ends the attention unit holding o_proj (the step's first unit, rule 8) and the replay; the rest of the
    # step decides, here storing what the deciding copy stores (a miss elsewhere may store less: NOTE [Replay] rule 4)
    assert ctx.replayed_units == 0
    assert ctx.replayed_packs == unit.pack_end - 1


@pytest.mark.parametrize("unit_packs", [True, False])
def test_a_pack_that_misses_in_a_unit_is_decided_off_the_op_tracker(unit_packs, monkeypatch):
    """The miss puts the tracker back on the stack for the rest of the body (rule 3); the missed pack's own tensor
    calls (its key, its site, its encode) must not reach it as ops of the step, whichever way the pack came
    (rule 9's short way or the long way). Before session 35 the long way let ~50 such calls through."""
    from hyclora_hooks import engine, tracking

    monkeypatch.setattr(engine, "UNIT_PACKS", unit_packs)
    on, off = _pair()
    batch = random_batch(VOCAB, batch=2, seq=16)
    unit = _o_proj_unit_set_to_miss(on, off, batch)
    deciding, seen = [0], []
    decide, handler = engine.Compressor._decide, tracking.OpTracker.__torch_function__

    def counted_decide(self, t):
        deciding[0] += 1
        try:
            return decide(self, t)
        finally:
            deciding[0] -= 1

    def watched_handler(self, func, types, args=(), kwargs=None):
        if deciding[0]:
            seen.append(getattr(func, "__name__", func))
        return handler(self, func, types, args, kwargs)

    monkeypatch.setattr(engine.Compressor, "_decide", counted_decide)
    monkeypatch.setattr(tracking.OpTracker, "__torch_function__", watched_handler)
    ctx = _same_steps(on, off, "intra_inter", batch, 1, bits=2)[0]
    assert ctx.replayed_units == 0 and ctx.replayed_packs == unit.pack_end - 1  # the miss happened in the unit
    assert seen == []


def test_the_unit_check_sees_keyword_arguments_global_hooks_do_not_get():
    from hyclora_hooks import units

    seen = []
    handle = nn.modules.module.register_module_forward_pre_hook(
        lambda module, args: seen.append(units._call_kwargs(module) == {}))
    try:
        fc = nn.Linear(4, 4)
        fc(torch.ones(2, 4))

        class Keyworded(nn.Module):
            def forward(self, x, scale=1.0):
                return x * scale

        Keyworded()(torch.ones(2), scale=2.0)
        Keyworded()(torch.ones(2), 2.0)
    finally:
        handle.remove()
    assert seen == [True, False, True]


def test_units_off_replays_op_by_op_with_the_same_gradients():
    from hyclora_hooks import units

    on, off = _pair(torch.bfloat16)
    units.ENABLED = False
    try:
        ctxs = _same_steps(on, off, "intra_inter", random_batch(VOCAB, batch=2, seq=16), 3, bits=2)
    finally:
        units.ENABLED = True
    assert [c.replayed_units for c in ctxs] == [0, 0, 0]
    assert ctxs[-1].replayed_packs == ctxs[-1].report().packs


def _global_module_hooks() -> int:
    from torch.nn.modules import module

    return len(module._global_forward_pre_hooks) + len(module._global_forward_hooks)


def _counting_enters(monkeypatch) -> list:
    """Calls of the module tracker's global entry hook, counted per step."""
    from hyclora_hooks.tracking import ModuleTracker

    calls, enter = [], ModuleTracker._enter

    def counted(self, module, args):
        calls.append(module)
        return enter(self, module, args)

    monkeypatch.setattr(ModuleTracker, "_enter", counted)
    return calls


@pytest.mark.parametrize("policy", ["intra_inter", "baseline"])
def test_a_replayed_body_runs_without_the_global_hooks_and_gives_the_same_gradients(policy, monkeypatch):
    from hyclora_hooks import units

    on, off = _pair(torch.bfloat16, use_cache=False, layers=3)
    batch = random_batch(VOCAB, batch=2, seq=24)
    calls = _counting_enters(monkeypatch)
    _same_steps(on, off, policy, batch, 2, bits=2)  # records, then replays
    counts, mine = {}, {id(m) for m in on.modules()}
    for bypass in (True, False, True):
        units.BYPASS = bypass
        try:
            calls.clear()
            ctx = _same_steps(on, off, policy, batch, 1, bits=2)[0]
        finally:
            units.BYPASS = True
        n_on = sum(id(m) in mine for m in calls)  # the replaying copy's calls alone
        assert ctx.replayed_packs == ctx.report().packs and ctx.replayed_units > 0
        assert _global_module_hooks() == 0
        counts.setdefault(bypass, []).append(n_on)
    # with the bodies bypassed only the calls outside the replayed units, and the units' own, reach the hook
    # (3 layers: 22 of 130 calls)
    assert 3 * max(counts[True]) < min(counts[False])


def test_a_body_that_raises_puts_the_global_hooks_back_and_the_next_steps_are_exact(monkeypatch):
    from hyclora_hooks import engine

    on, off = _pair(torch.bfloat16, use_cache=False, layers=3)
    batch = random_batch(VOCAB, batch=2, seq=16)
    _same_steps(on, off, "intra_inter", batch, 2, bits=2)
    replay_record, seen = engine.Compressor._replay_record, []

    def failing(self, t, rec, *narrow):
        seen.append(self._units.replaying is not None)
        if sum(seen) == 5:  # the fifth record carried out inside a replayed body
            raise RuntimeError("a pack failed")
        return replay_record(self, t, rec, *narrow)

    monkeypatch.setattr(engine.Compressor, "_replay_record", failing)
    with pytest.raises(RuntimeError, match="a pack failed"):
        _step(on, "intra_inter", batch, True, bits=2)
    monkeypatch.setattr(engine.Compressor, "_replay_record", replay_record)
    assert _global_module_hooks() == 0
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in on.modules())  # no local hook left behind
    ctxs = _same_steps(on, off, "intra_inter", batch, 3, bits=2)
    assert ctxs[-1].replayed_units > 0 and ctxs[-1].replayed_packs == ctxs[-1].report().packs


def _counting_peft_forwards(monkeypatch) -> list:
    """(module, whether it held an instance ``forward`` then) for each call of peft's own ``forward`` (peft's class
    patched, not ours)."""
    from peft.tuners.lora.layer import Linear

    calls, forward = [], Linear.forward

    def counted(self, x, *args, **kwargs):
        calls.append((self, "forward" in self.__dict__))
        return forward(self, x, *args, **kwargs)

    monkeypatch.setattr(Linear, "forward", counted)
    return calls


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_lora_linears_in_a_replayed_body_run_lean_with_pefts_bits(dropout, monkeypatch):
    """NOTE [Replay units] rule 10: inside replayed decoder layers no LoRA linear runs peft's forward, and the
    gradients are the deciding copy's (which runs peft's) bit for bit, dropout masks included; with ``LEAN`` off
    every LoRA linear runs peft's forward again. No instance ``forward`` is left after a step."""
    from hyclora_hooks import units

    on, off = _pair(torch.bfloat16, dropout=dropout, use_cache=False, layers=3)
    batch = random_batch(VOCAB, batch=2, seq=16)
    calls = _counting_peft_forwards(monkeypatch)
    _same_steps(on, off, "intra_inter", batch, 2, bits=2)  # records, then replays
    loras, seen = set(map(id, _lora_linears(on))), {}
    for lean in (True, False):
        units.LEAN = lean
        try:
            calls.clear()
            ctx = _same_steps(on, off, "intra_inter", batch, 1, bits=2)[0]
        finally:
            units.LEAN = True
        assert ctx.replayed_units > 0 and ctx.replayed_packs == ctx.report().packs
        seen[lean] = sum(id(m) in loras for m, _ in calls)  # the replaying copy's peft forwards
        assert not any("forward" in m.__dict__ for m in on.modules())
    assert seen == {True: 0, False: len(loras)}


def test_a_miss_in_a_lean_body_gives_peft_its_forward_back(monkeypatch):
    """A miss at q_proj's last pack, in the first layer's attention, ends the replay (rule 3): from there on every
    LoRA linear of the replaying copy, k, v and o_proj of that attention's body included, runs peft's forward as
    the class has it."""
    on, off = _pair()
    batch = random_batch(VOCAB, batch=2, seq=16)
    _o_proj_unit_set_to_miss(on, off, batch, "q_proj")
    calls = _counting_peft_forwards(monkeypatch)
    # the rest of the step decides, with codecs where the replayed ops left no lineage: not the deciding copy's
    # bits (unlike a miss at o_proj's), but near them
    got, _ = _step(on, "intra_inter", batch, True, seed=7, bits=2)
    decided, _ = _step(off, "intra_inter", batch, False, seed=7, bits=2)
    assert torch.nn.functional.cosine_similarity(got, decided, dim=0) > 0.99
    layers = len(on.base_model.model.model.layers)
    mine = [leaned for m, leaned in calls if any(m is x for x in _lora_linears(on))]
    assert len(mine) == 6 + 7 * (layers - 1) and not any(mine)
    assert not any("forward" in m.__dict__ for m in on.modules())


def test_a_lora_linear_with_a_forward_of_its_own_is_no_unit():
    on, _ = _pair()
    m = _first_lora(on)
    assert unit_state(m) is not None
    m.forward = lambda x: type(m).forward(m, x) * 2
    assert unit_state(m) is None


@pytest.mark.parametrize("variant", ["lora_bias", "two adapters", "bf16 adapters"])
def test_lean_bodies_keep_pefts_bits_with_biases_several_adapters_and_16_bit_adapters(variant, monkeypatch):
    """Rule 10's loop over active adapters, B's bias and the input cast (none where the adapters are bf16 too): the
    replaying copy runs no peft forward in its replayed steps and gives the deciding copy's gradients bit for bit."""
    from peft import LoraConfig, get_peft_model

    from hyclora_hooks.models import LLAMA_TARGETS

    torch.manual_seed(0)
    base = tiny_llama(vocab=VOCAB, dtype=torch.bfloat16, use_cache=False, layers=2)
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules=LLAMA_TARGETS, init_lora_weights=False,
                     lora_bias=variant == "lora_bias")
    on = get_peft_model(base, cfg, autocast_adapter_dtype=variant != "bf16 adapters")
    if variant == "two adapters":
        on.add_adapter("second", LoraConfig(r=4, lora_alpha=8, target_modules=LLAMA_TARGETS, init_lora_weights=False))
        on.base_model.set_adapter(["default", "second"])  # (peft freezes the adapters it does not set: all trained)
    on.train()
    off = copy.deepcopy(on)
    batch = random_batch(VOCAB, batch=2, seq=16)
    _same_steps(on, off, "intra_inter", batch, 2, bits=2)  # records, then replays
    calls = _counting_peft_forwards(monkeypatch)
    ctx = _same_steps(on, off, "intra_inter", batch, 1, bits=2)[0]
    assert ctx.replayed_units > 0 and ctx.replayed_packs == ctx.report().packs
    mine, theirs = {id(m) for m in on.modules()}, {id(m) for m in off.modules()}
    assert not any(id(m) in mine for m, _ in calls)  # every LoRA linear of the replaying copy ran lean
    assert sum(id(m) in theirs for m, _ in calls) == len(_lora_linears(off))  # (the count sees peft's forwards)


def test_adapter_fields_read_as_pefts_properties_do():
    """Rule 1 reads peft's adapter fields behind ``disable_adapters``, ``merged`` and ``active_adapters`` where the
    properties are peft's plain ones: the same states as through the properties, in every setting they read."""
    from peft import LoraConfig

    from hyclora_hooks import units
    from hyclora_hooks.models import LLAMA_TARGETS

    model = add_lora(tiny_llama(vocab=VOCAB, layers=1), dropout=0.0)
    model.add_adapter("second", LoraConfig(r=4, lora_alpha=8, target_modules=LLAMA_TARGETS))
    m = _first_lora(model)
    # the installed peft's properties are the plain ones: the fields are read
    assert unit_state(m) is not None and units._LORA_LINEAR[1]

    def both():
        fields = unit_state(m)
        units._LORA_LINEAR[1] = False
        try:
            return fields, unit_state(m)
        finally:
            units._LORA_LINEAR[1] = True

    seen = []
    for setting in ("default", "second", "both", "disabled", "merged"):
        if setting in ("default", "second"):
            m.set_adapter(setting)
        elif setting == "both":
            m.set_adapter(["default", "second"])
        elif setting == "disabled":
            m.enable_adapters(False)
        else:
            m.enable_adapters(True)
            m.set_adapter("default")
            m.merge()
        fields, props = both()
        assert fields == props, setting
        seen.append(fields)
    assert seen[0] != seen[1] != seen[2] and seen[3] is None and seen[4] is None


def test_adapter_properties_of_another_shape_are_read_as_properties():
    """A class whose adapter properties read anything else keeps the properties (rule 1's fields are peft's)."""
    from peft.tuners.lora.layer import Linear

    from hyclora_hooks import units

    class Other(Linear):
        @property
        def disable_adapters(self):
            return self._disable_adapters or getattr(self, "frozen_by_user", False)

    assert units._plain_properties(Linear) and not units._plain_properties(Other)
