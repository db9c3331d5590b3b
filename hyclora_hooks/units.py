"""Replay units: a peft LoRA linear's, an RMSNorm's or Llama attention's call, or a decoder layer's or MLP's made
of them, carried out as one step of a replay (NOTE [Replay units]).

NOTE [Replay units]
  Half of a Llama layer's tracked ops are peft's LoRA linears (seven each: the base ``linear``, the cast to the
  adapter's dtype, ``lora_A``, ``lora_B``, the ``mul`` by the scaling, the ``add``, the cast back), and a replayed
  forward's host time is per op and per pack (docs/replay.md, session 23). A replay may take such a call as one
  unit: the op tracker steps off the function-mode stack for the call's body, the step's op count jumps by the
  recorded number of ops, and the body's packs are matched by order and layout alone.
  1. Only where the body's ops are a function of what is checked at the call's entry: the module is exactly
     peft's ``lora.Linear`` on the plain path (no variant such as DoRA, not merged, adapters enabled), its base
     layer and adapters plain ``nn.Linear`` with ``nn.Identity`` or ``nn.Dropout`` before them, no module hook but
     ours anywhere (local hooks on it or its parts, other global hooks, backward hooks), one positional argument
     and no keyword (peft's ``adapter_names`` picks other ops), no autocast. The *state* compared at entry
     (:func:`unit_state`) is everything else peft's forward reads: training flags, active adapters, scalings,
     dropout settings, the weights' storages and layouts, the input-cast switch, grad mode (peft's adapter settings
     read through the fields behind its properties where those are plain reads of them: ``_plain_properties``).
     The input must be the recorded step's op output of the same slot (equal signatures so far give it the same
     layout).
  2. The recorded call must be repeatable without its body's tensors: its output is the body's last op's output
     (tagged with that slot on exit), no pack of the body reads a body tensor other than the one it saves (source
     ``"saved"``) or the one that is a view of (``"saved_base"``), nor a frozen-term mark the tracker set in the
     body (but rule 5's), no later pack reads a body tensor, the body met no tensor from outside the step and did
     not return its input as is (which tags the input anew: a norm's cast to the dtype it has). Its output's
     frozen-term mark (NOTE [Frozen term] in tracking.py) must be the base layer's output, which a replay takes
     from the base layer's exit.
  3. A body pack that misses its record ends the unit there (the tracker comes back for the rest of the body) and
     the replay, as any missed pack does (NOTE [Replay] rule 4); packs that do not all happen end it on exit.
  4. An RMSNorm is a unit too (two a Llama layer, eight ops each) when its class's forward reads nothing but its
     input and the names of Llama's (``weight``, ``variance_epsilon``, ``torch.rsqrt`` and the tensor methods it
     calls: ``_NORM_NAMES``), it has that one parameter, no buffer, no submodule, no forward of its own set on the
     instance and no hook; the state is that forward function, the weight and the epsilon. Gemma's (``1 + weight``,
     through ``self._norm``) reads other names: no unit.
  5. Llama's attention is a unit too (the glue around its four projections: ~34 tracked ops a layer, RoPE and
     SDPA among them; docs/replay.md session 28) where its call reads nothing the state does not hold. Its
     forward and the functions it reaches (``apply_rotary_pos_emb``, ``rotate_half``, the attention interface
     the config names and its ``use_gqa_in_sdpa``, ``repeat_kv``) must be plain functions whose code reads only
     the names of transformers' Llama and SDPA code (``_ATTENTION_NAMES``); the state holds each of them with its
     code, defaults and the values of the globals it loads, the module's and its config's values of those names,
     the config's attention implementation, each projection's state (a unit-able peft LoRA linear or a plain
     ``nn.Linear``, no other submodule), and the call's arguments: plain values as they are, tensors by slot
     (HF passes them all as keywords; a ``past_key_values`` cache, which HF makes where ``use_cache`` is on, or
     any other object makes the call no unit; a context turns the config's off for training forwards, kv_cache.py).
     Its packs may read frozen terms (q and k the terms RoPE carried, v heads of v_proj's: NOTE [Frozen term]), and
     its output has o_proj's mark: with the body untracked no mark is set, so a unit instead records which of its
     projections' base-layer outputs each one was and a replay takes them from those layers' exits
     (:meth:`Units.term`; a view of one as the saved tensor views its base, for v). A unit may hold
     units (its projections): a recording step records both; a replay takes the outermost whose entry matches.
  6. A module whose forward does nothing with ``self`` but call its submodules by name (Llama's decoder layer and
     MLP) is a unit too where each submodule it names is one of the kinds above, a composite itself, or an
     activation whose forward reads only ``nn.functional.silu`` (``_ACTIVATION_NAMES``); checked on the code: no
     global, no closure, no nested code, every use of ``self`` an attribute read of a submodule name, no other
     name. Its state is its forward (code, defaults), training flag and grad mode, those submodules' states and
     the call's arguments as in rule 5; its frozen terms come from the exits of every LoRA projection below it,
     and the base layers are kept in the record (the submodules' states name them). A recipe of the body may read
     a tensor made inside the call by its slot (under ``intra_inter`` the post-attention norm's input, down_proj's;
     in a first decoder layer, whose input needs no grad, the input norm's output, which q, k and v all take)
     where it is the input of unit-kind calls inside the body, the first of which the body makes once: a replay
     takes it at that call's entry (:meth:`Units.source`), as it takes base outputs at exits. Any other slot read
     of a body tensor, or one by a later pack, still makes the call no unit (rule 2).
  7. While a replayed unit's body runs, the module tracker's two global hooks are off (``BYPASS``): with them, every
     module call of the body (~40 a Llama layer) took torch's hooked call path and two of our hooks, to find only
     that a unit was open. The replay reads three things of the body's calls, through local hooks for the body's
     length: the unit's own exit (``always_call``, so it also runs when the body raises; it puts the global hooks
     back and does what their exit would have), the exits of the base layers whose outputs are frozen terms
     (rule 5), and the entries of the calls whose inputs are read (rule 6). A pack that misses (rule 3) puts the
     global hooks back at once: the calls the body makes from then on are tracked as without replay, while those
     entered before it are not on the module stack, so a pack in them is named after the unit's module (a policy
     rule matched by module name may then pick another codec for that step; never a wrong gradient). The output
     embedding's input (NOTE [Fused head] in head.py) is noted at its call's entry, which a body holding that
     module would hide: its loss would then run unfused, unlike the recorded step's, and the replay would miss
     there (no Llama-like layer holds it).
  8. A step chooses to replay or record (NOTE [Replay] rule 2) at its first pack or, if earlier, at its first call
     of a unit's kind with grad on (``START_AT_UNITS``): LoRA freezes the embedding, so a Llama step's first pack
     comes inside its first decoder layer, which had started untracked by no plan and ran op by op every step.
  9. A pack in a replayed body goes straight to its record (``engine.UNIT_PACKS``): the tracker is off the stack
     there and autocast was off at the unit's entry, so the long way's steps off the tracker, out of autocast and
     onto the tensor's device have nothing to do (~1-3% of a replayed forward's host time on the dev CPU). A pack
     in a backward, on a device other than the current one, or under an autocast region the body entered takes
     the long way. A miss ends the replay as anywhere (rule 3), and the pack is then decided off the tracker, which
     the miss put back on the stack (``Compressor._missed``).
 10. Inside a replayed attention, decoder layer or MLP, each peft LoRA linear runs a lean body (``LEAN``,
     :meth:`Units._lean_lora` through :func:`lean_forward`, which a checkpointed layer's LoRA linears run too:
     NOTE [Region sums] in region_sums.py): the ops peft's ``forward`` makes on its plain path (rule 1), in its
     order and with its arguments, without its Python around them (the adapter and variant checks, four
     submodule calls and their ``ModuleDict`` lookups). On the H200's host peft's forward was ~60% of a plain
     4x1024 forward's host time (session 38, ``benchmarks/experiments/spy_step.py``). The lean body is the
     instance's ``forward`` from the unit's entry (its projections' calls come after it: a call reads ``forward``
     before its hooks run) until its exit, a miss (rule 3) or the context's exit, whichever comes first; it reads
     the weights, adapters and dropout settings live, where the entry's state check found them, and hands the base
     layer's output to the unit (rule 5) itself, so no local hook on a base layer is needed. Called from another
     thread, with arguments besides the input, or after the unit closed, it is peft's ``forward``. Only with rule
     7 (the module tracker sees no call the lean body skips). With one active adapter its branch and sum are one
     autograd node (NOTE [LoRA branch] in lora_branch.py: peft's kernels forward, peft's saved tensors, a backward
     from the 16-bit gradient) where that fits, else it ends with peft's LoRA sum as one autograd node (NOTE [LoRA
     sum] in lora_sum.py: one pass each way, peft's bits, no pack). A replayed decoder layer's or MLP's Llama
     RMSNorms run :func:`norm_node.lean_norm` the same way (``rec.norms``; NOTE [Norm node] in norm_node.py).
"""

from __future__ import annotations

import dis
import sys
import threading
import types
import weakref
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules import module as _module

from . import lora_branch, lora_sum, norm_node
from .lineage import autocast_on
from .sharing import graph_task_id
from .tracking import FROZEN, FROZEN_ROPE

_LORA_LINEAR: list = []  # [peft's lora.Linear class or None, whether its fields are read directly], looked up once

# peft's properties that rule 1 reads, each with the names its code reads: where peft's are these, the state reads
# the fields behind them (the properties made five Python calls a LoRA linear's check and three a lean body: ~450 of
# a replayed Llama forward's ~11,800)
_ADAPTER_PROPERTIES = {"disable_adapters": ("_disable_adapters",), "merged": ("bool", "merged_adapters"),
                       "active_adapter": ("_active_adapter",),
                       "active_adapters": ("isinstance", "active_adapter", "str")}


def _lora_linear() -> type | None:
    if not _LORA_LINEAR:
        try:
            from peft.tuners.lora.layer import Linear
        except Exception:  # noqa: BLE001 - peft missing or changed: no units, every op tracked as before
            Linear = None
        _LORA_LINEAR.extend((Linear, Linear is not None and _plain_properties(Linear)))
    return _LORA_LINEAR[0]


def _plain_properties(cls: type) -> bool:
    """Are ``cls``'s adapter properties peft's plain reads of one field each (``_ADAPTER_PROPERTIES``)?"""
    for name, reads in _ADAPTER_PROPERTIES.items():
        code = getattr(getattr(getattr(cls, name, None), "fget", None), "__code__", None)
        if code is None or code.co_names != reads:
            return False
    return True


def _active_adapters(m: nn.Module) -> Any:
    """``m.active_adapters`` of a peft LoRA linear (through its field where :func:`_plain_properties`)."""
    if not _LORA_LINEAR[1]:
        return m.active_adapters
    active = m._active_adapter
    return [active] if isinstance(active, str) else active


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_pre_hooks or m._forward_hooks or m._backward_hooks or m._backward_pre_hooks)


def _weight(p: torch.Tensor | None) -> tuple | None:
    if p is None:
        return None
    return (p.data_ptr(), p.shape, p.stride(), p.dtype, p.device, p.requires_grad)


def _linear(m: Any) -> tuple | None:
    """A plain ``nn.Linear``'s part of the state; read through the module's own dicts (``nn.Module.__getattr__``
    took ~1.5 us a name, most of a unit's check)."""
    if type(m) is not nn.Linear or _hooked(m):
        return None
    params = m._parameters
    bias = params.get("bias")  # (none in a LoRA linear's A and B, nor in Llama's base layers: no call for it)
    return (id(m), m.training, _weight(params["weight"]), None if bias is None else _weight(bias))


def unit_state(m: nn.Module) -> tuple | None:
    """What besides its input chooses the ops of a call of ``m`` (rules 1 and 4), or None when the call is no unit."""
    kind = _kind_of(m)
    return kind(m) if kind is not None else None


def _kind_of(m: nn.Module) -> Any:
    """The state function of ``m``'s class, or None for a class whose calls are never units."""
    cls = type(m)
    kind = _KINDS.get(cls, _MISSING)
    if kind is _MISSING:
        kind = _KINDS[cls] = _kind(cls)
    if not ENABLED or (kind is _attention_state and not ATTENTION) or (kind is _composite_state and not COMPOSITE):
        return None
    return kind


def _kind(cls: type) -> Any:
    if cls is _lora_linear():
        return _lora_state
    if not issubclass(cls, nn.Module):
        return None
    if cls.__name__.endswith("RMSNorm"):
        return _norm_state
    if _ATTENTION_LOADS.issubset(_loads(cls.forward) or ()):  # rule 5; what it reaches is checked at each call
        return _attention_state
    if _composite_names(cls.forward):  # rule 6
        return _composite_state
    return None


ENABLED = True  # False: no call is a unit (for measuring units against their absence: units_ab.py)
ATTENTION = True  # False: no attention call is a unit (rule 5 against its absence: units_ab.py --attention)
COMPOSITE = True  # False: no decoder layer or MLP is a unit (rule 6 against its absence: units_ab.py --composite)
BYPASS = True  # False: replayed bodies keep the global module hooks (rule 7 against its absence: step_exposure.py)
LEAN = True  # False: LoRA linears in a replayed body run peft's forward (rule 10 against its absence: ditto)
START_AT_UNITS = True  # False: a step chooses to replay at its first pack only (rule 8 against its absence: ditto)
_MISSING = object()
_KINDS: dict = {}  # module class -> its state function, or None (weak enough: classes live as long as their module)


def _lora_state(m: nn.Module) -> tuple | None:
    """Rule 1: peft's LoRA linear on its plain path."""
    if _hooked(m) or "forward" in m.__dict__ or m.lora_variant:
        return None
    if (m._disable_adapters or m.merged_adapters) if _LORA_LINEAR[1] else (m.disable_adapters or m.merged):
        return None
    mods = m._modules
    base = _linear(mods["base_layer"])
    if base is None:
        return None
    lora_a, lora_b, dropouts = mods["lora_A"]._modules, mods["lora_B"]._modules, mods["lora_dropout"]._modules
    parts = []
    for name in _active_adapters(m):
        if name not in lora_a:
            continue
        a, b, drop = _linear(lora_a[name]), _linear(lora_b[name]), dropouts[name]
        if a is None or b is None or type(drop) not in (nn.Identity, nn.Dropout) or _hooked(drop):
            return None
        settings = drop.__dict__  # Dropout's p and inplace; a missing name through getattr raised and cost ~3 us
        parts.append((name, a, b, type(drop), drop.training, settings.get("p"), settings.get("inplace"),
                      m.scaling[name]))
    return (m.training, m.__dict__.get("cast_input_dtype_enabled", True), base, tuple(parts), torch.is_grad_enabled())


def on_plain_path(m: nn.Module) -> bool:
    """Rule 1 for a peft LoRA linear ``m``: its call would take peft's plain path (what a lean body reproduces)."""
    return _lora_state(m) is not None


# What Llama's RMSNorm forward reads (``hidden_states.to(torch.float32)``, ``.pow(2).mean(-1, keepdim=True)``,
# ``torch.rsqrt(variance + self.variance_epsilon)``, ``self.weight * hidden_states.to(input_dtype)``), and every
# model family's copy of it
_NORM_NAMES = frozenset({"dtype", "to", "torch", "float32", "pow", "mean", "rsqrt", "variance_epsilon", "weight"})


def _norm_state(m: nn.Module) -> tuple | None:
    """Rule 4: an RMSNorm whose forward reads nothing but its input, ``weight`` and ``variance_epsilon``."""
    forward = type(m).forward
    code = getattr(forward, "__code__", None)
    if (code is None or "forward" in m.__dict__ or _hooked(m) or code.co_argcount != 2 or code.co_freevars
            or not _NORM_NAMES.issuperset(code.co_names) or m._buffers or m._modules
            or list(m._parameters) != ["weight"]):
        return None
    return (forward, m.training, _weight(m._parameters["weight"]), m.__dict__.get("variance_epsilon"),
            torch.is_grad_enabled())


# Rule 5: every name the code of Llama's attention reads (transformers 5.x: ``LlamaAttention.forward``,
# ``apply_rotary_pos_emb``, ``rotate_half``, ``sdpa_attention_forward``, ``use_gqa_in_sdpa``, ``repeat_kv``). Code that
# reads any other name (a sliding window, q/k norms, another interface) makes no unit.
_ATTENTION_NAMES = frozenset({
    "shape", "head_dim", "q_proj", "view", "transpose", "k_proj", "v_proj", "apply_rotary_pos_emb", "update",
    "layer_idx", "ALL_ATTENTION_FUNCTIONS", "get_interface", "config", "_attn_implementation",
    "eager_attention_forward", "training", "attention_dropout", "scaling", "reshape", "contiguous", "o_proj",
    "unsqueeze", "rotate_half", "torch", "cat", "get", "logger", "warning_once", "hasattr", "num_key_value_groups",
    "use_gqa_in_sdpa", "repeat_kv", "getattr", "jit", "is_tracing", "isinstance", "Tensor", "item",
    "_is_torch_npu_available", "dtype", "bool", "logical_not", "to", "device", "create_position_bias_mask", "nn",
    "functional", "scaled_dot_product_attention", "_is_torch_xpu_available", "_is_torch_greater_or_equal_than_2_8",
    "expand"})
_ATTENTION_NAMES_ORDER = tuple(sorted(_ATTENTION_NAMES))  # the order a state holds their values in
_ATTENTION_LOADS = frozenset({"apply_rotary_pos_emb", "ALL_ATTENTION_FUNCTIONS"})  # what makes a forward Llama's
_ACTIVATION_NAMES = frozenset({"nn", "functional", "silu"})  # rule 6: what SiLUActivation's forward reads
_LOADS: dict = {}  # (code object, whitelist) -> the global names it loads, or None where it reads another name
_PLAIN: dict = {}  # code object -> whether :func:`_plain_code` takes it (code objects are immutable)


def _plain_code(fn: Any) -> Any:
    """``fn``'s code if ``fn`` is a plain function with no closure and no nested code (a comprehension, say)."""
    if type(fn) is not types.FunctionType:
        return None
    code = fn.__code__
    plain = _PLAIN.get(code)
    if plain is None:  # asked at every unit's entry (~350 generator steps a replayed Llama forward): once per code
        plain = _PLAIN[code] = not (code.co_freevars or code.co_cellvars
                                    or any(isinstance(c, types.CodeType) for c in code.co_consts))
    return code if plain else None


def _loads(fn: Any, allowed: frozenset = _ATTENTION_NAMES) -> tuple | None:
    """The global names ``fn``'s code loads, if ``fn`` is a plain function (:func:`_plain_code`) whose code reads
    no name outside ``allowed``; else None."""
    code = _plain_code(fn)
    if code is None:
        return None
    names = _LOADS.get((code, allowed), _MISSING)
    if names is _MISSING:
        names = tuple(sorted({i.argval for i in dis.get_instructions(code) if i.opname == "LOAD_GLOBAL"})) \
            if allowed.issuperset(code.co_names) else None
        _LOADS[(code, allowed)] = names
    return names


def _code_state(fn: Any, parts: list, allowed: frozenset = _ATTENTION_NAMES) -> bool:
    """Append what of ``fn`` chooses its ops (itself, its code, defaults, the globals it loads): False if it may
    read other names (rules 5 and 6)."""
    names = _loads(fn, allowed)
    if names is None:
        return False
    g = fn.__globals__
    parts.append((fn, fn.__code__, fn.__defaults__, fn.__kwdefaults__, tuple([g.get(n, _MISSING) for n in names])))
    return True


def _attention_state(m: nn.Module) -> tuple | None:
    """Rule 5: Llama's attention, its projections and every function its call reaches."""
    forward = type(m).forward
    if "forward" in m.__dict__ or _hooked(m) or m._parameters or m._buffers:
        return None
    subs = []
    for sub in m._modules.values():
        kind = _kind_of(sub)
        state = kind(sub) if kind is _lora_state else _linear(sub)
        if state is None:
            return None
        subs.append(state)
    parts: list = []
    g = forward.__globals__
    rope = g.get("apply_rotary_pos_emb")
    config = m.__dict__.get("config")
    if not (_code_state(forward, parts) and _code_state(rope, parts)
            and _code_state(getattr(rope, "__globals__", {}).get("rotate_half"), parts)):
        return None
    try:
        impl = config._attn_implementation
        interface = g["ALL_ATTENTION_FUNCTIONS"].get_interface(impl, g["eager_attention_forward"])
    except Exception:  # noqa: BLE001 - another transformers, or no config: no unit, every op tracked
        return None
    ig = getattr(interface, "__globals__", {})
    if not (_code_state(interface, parts) and _code_state(ig.get("use_gqa_in_sdpa"), parts)
            and _code_state(ig.get("repeat_kv"), parts)):
        return None
    own, settings = m.__dict__, getattr(config, "__dict__", {})
    return (tuple(parts), tuple(subs), impl, config, tuple([own.get(n, _MISSING) for n in _ATTENTION_NAMES_ORDER]),
            tuple([settings.get(n, _MISSING) for n in _ATTENTION_NAMES_ORDER]), torch.is_grad_enabled())


_NAMES: dict = {}  # code object -> the submodule names a composite's forward reads, or () (rule 6)
_SELF_READS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})


def _composite_names(fn: Any) -> tuple:
    """The names a forward reads off ``self``, if that is all it does with ``self`` and all the names it reads, it
    loads no global and holds no closure or nested code (rule 6); else ()."""
    code = _plain_code(fn)
    if code is None or not code.co_argcount:
        return ()
    names = _NAMES.get(code)
    if names is None:
        names = _NAMES[code] = _self_reads(code)
    return names


def _self_reads(code: Any) -> tuple:
    this, reads = code.co_varnames[0], []
    ops = list(dis.get_instructions(code))
    for i, ins in enumerate(ops):
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF", "LOAD_CLASSDEREF"):
            return ()
        mentions = ins.argval == this if isinstance(ins.argval, str) else (
            isinstance(ins.argval, tuple) and this in ins.argval)
        if not mentions or ins.opname in _SELF_READS:
            continue
        after = ops[i + 1] if i + 1 < len(ops) else None
        if ins.opname not in ("LOAD_FAST", "LOAD_FAST_CHECK") or after is None or after.opname not in _SELF_READS:
            return ()  # ``self`` stored, passed on, iterated or indexed: what it calls is not in the names
        reads.append(after.argval)
    if not reads or set(code.co_names) != set(reads):
        return ()
    return tuple(dict.fromkeys(reads))


def _activation_state(m: nn.Module) -> tuple | None:
    """Rule 6: an activation module whose forward reads only ``nn.functional.silu`` and its input."""
    parts: list = []
    if ("forward" in m.__dict__ or _hooked(m) or m._parameters or m._buffers or m._modules
            or not _code_state(type(m).forward, parts, _ACTIVATION_NAMES)):
        return None
    return tuple(parts)


def _composite_state(m: nn.Module) -> tuple | None:
    """Rule 6: a module that calls its submodules by name and does nothing else with ``self``."""
    forward = type(m).forward
    names = _composite_names(forward)
    own, mods = m.__dict__, m._modules
    if not names or "forward" in own or _hooked(m) or m._parameters or m._buffers:
        return None
    subs = []
    for name in names:
        sub = mods.get(name)
        if sub is None or name in own:  # (an instance attribute would shadow the submodule)
            return None
        kind = _kind_of(sub)
        state = kind(sub) if kind is not None else _activation_state(sub)
        if state is None:
            return None
        subs.append(state)
    return (forward, forward.__code__, forward.__defaults__, forward.__kwdefaults__, m.training, tuple(subs),
            torch.is_grad_enabled())


def _call_values(args: tuple, kwargs: dict, slot: Any) -> tuple | None:
    """A call's arguments as a unit's state holds them (rule 5): plain values, tensors by slot (``slot``), tuples
    of those; None where one is anything else (a cache, a tensor made outside the step's ops)."""
    def value(v: Any) -> Any:
        t = type(v)
        if v is None or t is bool or t is int or t is float or t is str:
            return v
        if t is torch.Tensor:
            s = slot(v)
            if s is None:
                raise LookupError
            return ("tensor", s)
        if t is tuple or t is list:
            return tuple([value(x) for x in v])
        raise LookupError

    try:
        return tuple([value(a) for a in args]), tuple([(k, value(v)) for k, v in kwargs.items()])
    except LookupError:
        return None


def only_our_global_hooks() -> bool:
    """The module tracker's two global hooks and nothing else (another global hook may change any call)."""
    return (len(_module._global_forward_pre_hooks) == 1 and len(_module._global_forward_hooks) == 1
            and not _module._global_backward_hooks and not _module._global_backward_pre_hooks)


def _call_kwargs(module: nn.Module, max_depth: int = 5) -> dict | None:
    """The keyword arguments of the running call of ``module``. Global forward pre-hooks are not given them, so
    this reads the frame of ``Module._call_impl`` (its ``inner`` closure since torch 2.0) a few frames up from the
    hook; where there is none, or it has another shape, None (no unit: every op tracked, as without)."""
    f = sys._getframe(1)
    for _ in range(max_depth):
        if f is None:
            return None
        if f.f_code.co_name in ("inner", "_call_impl") and f.f_globals.get("__name__") == _module.__name__:
            local = f.f_locals
            kwargs = local.get("kwargs")
            return kwargs if local.get("self") is module and type(kwargs) is dict else None
        f = f.f_back
    return None


def _same(state: tuple | None, recorded: tuple) -> bool:
    """Equal states (a value torch compares elementwise, a tensor scaling say, counts as a difference)."""
    try:
        return state == recorded
    except Exception:  # noqa: BLE001 - not provably equal
        return False


class UnitRecord:
    """One unit of a recorded step: ops ``start..end-1`` and packs ``pack_start..pack_end-1`` of the plan.

    ``terms``: pack index -> the base layer (its index in the unit's ``bases``) whose output was the frozen term
    that pack stored (rule 5); ``frozen``: the base layer whose output is the output's frozen-term mark, or None."""

    __slots__ = ("module", "start", "end", "x_slot", "state", "pack_start", "pack_end", "producer", "frozen",
                 "terms", "bases", "slots", "inputs", "loras", "norms")

    def __init__(self, module: nn.Module, start: int, x_slot: Any, state: tuple, pack_start: int):
        self.module = weakref.ref(module)
        self.start, self.x_slot, self.state, self.pack_start = start, x_slot, state, pack_start
        self.end = self.pack_end = -1
        self.producer: Any = None
        self.frozen: int | None = None
        self.terms: dict[int, int] = {}
        self.bases: list = []  # weak references to the base layers whose outputs may be terms, in index order
        self.slots: dict[int, int] = {}  # pack index -> the call (index in ``inputs``) whose input it reads (rule 6)
        self.inputs: list = []  # weak references to the modules whose call inputs packs of the body read
        self.loras: list = []  # weak references to the LoRA linears of an attention's or composite's body (rule 10)
        self.norms: list = []  # weak references to the RMSNorms of a composite's body (NOTE [Norm node])


def lean_forward(m: nn.Module, x: torch.Tensor, bases: Any = None, leave: Any = None, engine: Any = None
                 ) -> torch.Tensor:
    """peft's ``lora.Linear.forward`` on its plain path (rule 1), op for op, ending with the LoRA sum as one node
    where it fits (NOTE [LoRA sum]), or in a replayed unit with its branch and sum as one node (NOTE [LoRA branch]):
    rule 10's lean body, and a checkpointed region's (:class:`RegionSums`).
    ``leave(base, output)`` is told the base layer's output where the base layer is in ``bases`` (rule 5); in a
    replayed unit, ``engine`` (the step's ``Compressor``) passes over the records of the adapters' views the branch
    node does not save, marks its input's entry as read in 16 bits and may take the 16-bit input for its fp32 copy
    (NOTE [LoRA branch] rules 2, 5 and 7)."""
    mods = m._modules
    base = mods["base_layer"]
    p = base._parameters
    result = F.linear(x, p["weight"], p["bias"])
    if bases is not None and base in bases:
        leave(base, result)
    dtype = result.dtype
    lora_a, lora_b, drops = mods["lora_A"]._modules, mods["lora_B"]._modules, mods["lora_dropout"]._modules
    cast = getattr(m, "cast_input_dtype_enabled", True)
    active = _active_adapters(m)
    for name in active:
        a = lora_a.get(name)
        if a is None:
            continue
        pa, pb = a._parameters, lora_b[name]._parameters
        w = pa["weight"]
        if (bases is not None and len(active) == 1 and lora_sum.FUSED  # a replayed unit's: NOTE [LoRA branch]
                and lora_branch.fits(m, x, result, a, lora_b[name], drops[name], m.scaling[name])):
            engine.lean_node = lora_branch.passed_parameters(x, w)
            engine.narrow_input = lora_branch.NARROW_INPUT
            narrow = lora_branch.saves_16bit_input(x, w) and engine.narrow_save_due()
            engine.narrow_save = int(narrow)
            try:
                return lora_branch.apply(result, x, w, pb["weight"], m.scaling[name], narrow)
            finally:
                engine.end_lean_node()
        if cast and x.dtype != w.dtype:
            x = x.to(dtype=w.dtype)
        drop = drops[name]
        h = x if type(drop) is nn.Identity else F.dropout(x, drop.p, drop.training, drop.inplace)
        lora, scaling = F.linear(F.linear(h, w, pa["bias"]), pb["weight"], pb["bias"]), m.scaling[name]
        if len(active) == 1 and lora_sum.FUSED and lora_sum.fits(result, lora, scaling):  # NOTE [LoRA sum]
            return lora_sum.apply(result, lora, scaling)
        result = result + lora * scaling
    return result.to(dtype)


def loras_below(module: nn.Module) -> list[nn.Module]:
    """The peft LoRA linears in ``module``'s tree (itself included)."""
    lora = _lora_linear()
    return [sub for sub in module.modules() if type(sub) is lora] if lora is not None else []


def _body_loras(module: nn.Module, kind: Any) -> list[nn.Module]:
    """The LoRA linears below an attention's or composite's call (rules 5, 6 and 10); none for other kinds (a LoRA
    unit's own forward was read before its entry hook ran: rule 10 cannot take it)."""
    return loras_below(module) if kind is _attention_state or kind is _composite_state else []


def _bases(module: nn.Module, kind: Any, loras: list[nn.Module]) -> list[nn.Module]:
    """The base layers whose outputs may be frozen terms of a call (rule 2: a LoRA linear's own; rules 5 and 6:
    those of the LoRA linears below it, ``loras``)."""
    if kind is _lora_state:
        return [module._modules["base_layer"]]
    return [sub._modules["base_layer"] for sub in loras]


_CALL_KINDS = (_attention_state, _composite_state)  # units whose state holds the call's arguments (rules 5, 6)


class _Open:
    """A unit call in progress: its record, the base layers whose outputs it takes (module -> index) and those
    outputs (weakly while recording; while replaying only those the record names, each dropped once used)."""

    __slots__ = ("rec", "bases", "outs", "outside", "x", "terms", "calls", "entered", "wanted", "ins")

    def __init__(self, rec: UnitRecord, bases: dict, outside: int = 0, x: Any = None, wanted: dict | None = None):
        self.rec, self.bases, self.outside, self.x = rec, bases, outside, x
        self.outs: list = [None] * (max(bases.values(), default=-1) + 1)
        self.terms: list[tuple[int, int]] = []  # while recording: (pack index, base index) of each term stored
        self.calls: dict = {}  # while recording: input slot -> the first unit-kind call of the body it entered
        self.entered: dict = {}  # while recording: module -> how many times the body called it (unit-kind calls)
        self.wanted = wanted or {}  # while replaying: module -> index of the call input a pack of the body reads
        self.ins: list = [None] * len(self.wanted)


def _main_output(out: Any) -> Any:
    """A call's output tensor: the output itself, or an attention's ``(output, None)``."""
    if type(out) is tuple and len(out) == 2 and out[1] is None:
        return out[0]
    return out


class Units:
    """Records units while a step records, carries them out while it replays (NOTE [Replay units]).

    The module tracker calls :meth:`enter` and :meth:`leave` for every module call; ``engine`` is the
    :class:`~hyclora_hooks.engine.Compressor` whose step this is (its mode, trace, plan and pack counters)."""

    def __init__(self, engine: Any):
        self._engine = engine
        self.recorded: list[UnitRecord] = []
        self.replayed = 0  # units carried out this step
        self._stack: list[_Open] = []  # the units open now: while recording, nested ones; while replaying, one
        self.replaying: UnitRecord | None = None  # the open unit while replayed, the tracker off the stack
        self._local: list = []  # handles of the local hooks of rule 7, while a replayed body runs
        self._leaned: list = []  # the LoRA linears running lean bodies (rule 10), while a replayed body runs

    def enter(self, module: nn.Module, args: tuple) -> None:
        if self.replaying is not None:  # a body's call, seen here where rule 7 is off (``BYPASS``)
            # (``_call_kwargs`` reads a fixed number of frames up: called here, not in the shared handler)
            kwargs = _call_kwargs(module) if not args and module in self._stack[-1].wanted else None
            self._wanted_entry(module, args, kwargs or {})
            return
        engine = self._engine
        mode = engine._mode
        if (mode is None and START_AT_UNITS and _kind_of(module) is not None and torch.is_grad_enabled()
                and graph_task_id() == -1):  # rule 8 (not in a backward's recomputation, as packs there are not)
            mode = engine._begin_step()
        if mode not in ("record", "replay"):
            return
        kind = _kind_of(module)
        if kind is None:
            return
        trace, ops = engine._trace, engine._ops
        if autocast_on() or not only_our_global_hooks() or not ops._ours():
            return
        kwargs = _call_kwargs(module)
        if kind in _CALL_KINDS:
            x = (args[0] if args else kwargs.get("hidden_states")) if kwargs is not None else None
            call = _call_values(args, kwargs, trace.slot) if type(x) is torch.Tensor else None
            if call is None:
                return
        elif len(args) != 1 or type(args[0]) is not torch.Tensor or kwargs != {}:
            return
        else:
            x, call = args[0], None
        x_slot = trace.slot(x)
        if x_slot is None:
            return
        if mode == "record":
            for unit in self._stack:  # rule 6: an input a recipe of the body may read by its slot
                unit.calls.setdefault(x_slot, module)
                unit.entered[module] = unit.entered.get(module, 0) + 1
            state = ops.outside(kind, module)  # a weight's layout read on the tracker would be an op
            if state is not None:
                rec = UnitRecord(module, trace.count, x_slot, (state, call), len(engine._packs))
                loras = _body_loras(module, kind)
                bases = _bases(module, kind, loras)
                rec.bases = [weakref.ref(b) for b in bases]
                rec.loras = [weakref.ref(m) for m in loras]
                if kind is _composite_state:
                    rec.norms = [weakref.ref(m) for m in module.modules() if _kind_of(m) is _norm_state]
                self._stack.append(_Open(rec, {b: j for j, b in enumerate(bases)}, trace._outside, x))
            return
        rec = engine._replay_plan.units.get((trace.count, id(module)))
        if (rec is None or trace.diverged or rec.module() is not module or rec.x_slot != x_slot
                or engine._next != rec.pack_start or not ops.suspend()):
            return
        if not _same((kind(module), call), rec.state):  # read off the stack, where the unit's body would run
            ops.resume()
            return
        # the state names the same base layers and calls (their ids), alive: the record's weak references reach them
        needed = set(rec.terms.values())
        if rec.frozen is not None:
            needed.add(rec.frozen)
        wanted = {ref(): j for j, ref in enumerate(rec.inputs)} if rec.inputs else None
        unit = _Open(rec, {rec.bases[j](): j for j in needed}, wanted=wanted)
        self._stack.append(unit)
        self.replaying = rec
        if BYPASS:
            self._bypass(module, unit)

    # rule 7 ----------------------------------------------------------------------------------------------------
    def _bypass(self, module: nn.Module, unit: _Open) -> None:
        """The body's calls without the global hooks; local hooks where the replay reads a call; lean LoRA bodies
        (rule 10), which hand their base layers' outputs over themselves."""
        local = [module.register_forward_hook(self._unit_exit, always_call=True)]
        loras = [ref() for ref in unit.rec.loras] if LEAN else []
        if not loras or None in loras:
            loras = []
            local += [m.register_forward_hook(self._base_exit) for m in unit.bases]
        local += [m.register_forward_pre_hook(self._wanted_entry, with_kwargs=True) for m in unit.wanted]
        for m in loras:
            m.__dict__["forward"] = partial(self._lean_lora, m)
        norms = [ref() for ref in unit.rec.norms] if LEAN and norm_node.ENABLED else []
        if None in norms:
            norms = []
        for m in norms:
            m.__dict__["forward"] = partial(self._lean_norm, m)
        self._local, self._leaned = local, loras + norms
        self._engine._modules.pause()

    def _unlean(self) -> None:
        """Give the LoRA linears of rule 10 and the norms of NOTE [Norm node] back their class's ``forward``."""
        for m in self._leaned:
            m.__dict__.pop("forward", None)
        self._leaned = []

    def _lean_lora(self, m: nn.Module, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Rule 10: peft's ``lora.Linear.forward`` on its plain path, op for op (:func:`lean_forward`)."""
        if (self.replaying is None or args or kwargs or not self._stack
                or threading.get_ident() != self._engine._modules._thread):
            return type(m).forward(m, x, *args, **kwargs)
        return lean_forward(m, x, self._stack[-1].bases, self.leave, self._engine)

    def _lean_norm(self, m: nn.Module, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """NOTE [Norm node]: a Llama RMSNorm as one node where the plan's records allow (``norm_node.lean_norm``)."""
        if (self.replaying is None or args or kwargs or not self._stack
                or threading.get_ident() != self._engine._modules._thread):
            return type(m).forward(m, x, *args, **kwargs)
        return norm_node.lean_norm(m, x, self._engine)

    def _unit_exit(self, module: nn.Module, args: Any, output: Any) -> None:
        modules = self._engine._modules
        if threading.get_ident() != modules._thread:
            return
        self.close()
        if modules.paused:  # else a miss in the body put the global hooks back, and their exit hook ran already
            modules.unpause()
            modules._leave(module, args, output)

    def _base_exit(self, module: nn.Module, args: Any, output: Any) -> None:
        if threading.get_ident() == self._engine._modules._thread:
            self.leave(module, output)

    def _wanted_entry(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """A call of the body whose input a recipe reads (rule 6) keeps that input for the replay."""
        if self.replaying is not None and threading.get_ident() == self._engine._modules._thread:
            unit = self._stack[-1]
            j = unit.wanted.get(module)
            if j is not None:
                unit.ins[j] = args[0] if args else kwargs.get("hidden_states")

    def close(self) -> None:
        """Remove rule 7's local hooks (at the unit's exit, or the context's)."""
        for h in self._local:
            h.remove()
        self._local = []
        self._unlean()

    def leave(self, module: nn.Module, output: Any) -> None:
        stack = self._stack
        if not stack:
            return
        for unit in stack:
            j = unit.bases.get(module)
            if j is not None:
                unit.outs[j] = output if self.replaying is not None else weakref.ref(output)
        unit = stack[-1]
        if module is not unit.rec.module():
            return
        stack.pop()
        if self.replaying is not None:
            self._replayed(unit, output)
        elif self._engine._mode == "record":
            self._recorded(unit, output)

    def abort(self) -> None:
        """A pack of the unit being replayed missed (rule 3): the rest of its body is tracked."""
        if self.replaying is not None:
            self._unlean()
            self._stack.clear()
            self.replaying = None
            self._engine._ops.resume()
            self._engine._modules.unpause()  # rule 7: the calls the body makes from here on are tracked

    def note_term(self, pack: int, term: torch.Tensor) -> None:
        """While recording: pack ``pack`` stores the frozen term ``term`` (rule 5)."""
        for unit in self._stack:
            for j, ref in enumerate(unit.outs):
                if ref is not None and ref() is term:
                    unit.terms.append((pack, j))

    def term(self, pack: int) -> torch.Tensor | None:
        """While replaying: the frozen term pack ``pack`` stores, taken from its base layer's exit (rule 5)."""
        j = self.replaying.terms.get(pack) if self.replaying is not None else None
        if j is None:
            return None
        outs = self._stack[-1].outs
        term, outs[j] = outs[j], None  # stored once: not held past its encode
        return term

    def source(self, pack: int) -> torch.Tensor | None:
        """While replaying: the body tensor pack ``pack`` reads, the input of a call of the body (rule 6)."""
        j = self.replaying.slots.get(pack) if self.replaying is not None else None
        return self._stack[-1].ins[j] if j is not None else None

    def _recorded(self, unit: _Open, out: Any) -> None:
        engine, rec = self._engine, unit.rec
        trace = engine._trace
        out = _main_output(out)
        # an op of the body that returns its input as is (``x.to(x.dtype)``) tags it anew: skipping the body would
        # leave the old tag, and the next op reading it would differ from the plan
        if (type(out) is not torch.Tensor or trace.slot(out) != trace.count - 1 or trace._outside != unit.outside
                or trace.slot(unit.x) != rec.x_slot):
            return
        marks = out.__dict__
        frozen = marks.get(FROZEN)
        if marks.get(FROZEN_ROPE) is not None:
            return
        if frozen is not None:
            rec.frozen = next((j for j, ref in enumerate(unit.outs) if ref is not None and ref() is frozen), None)
            if rec.frozen is None:
                return
        rec.end, rec.pack_end = trace.count, len(engine._packs)
        terms, index = dict(unit.terms), {}
        # a body tensor read by its slot is the input of a call the body makes once (the first of those it enters),
        # or plan_units finds the unit unsound
        for i, pack in enumerate(engine._packs[rec.pack_start:], rec.pack_start):
            for action, data, _, _ in pack.actions:
                if action != "source" or data[0] is None:
                    continue
                kind, what = data[0]
                if kind in ("frozen", "frozen_rope"):
                    if i not in terms:
                        return
                    rec.terms[i] = terms[i]
                elif kind == "slot" and type(what) is int and rec.start <= what < rec.end - 1:
                    module = unit.calls.get(what)
                    if module is not None and unit.entered[module] == 1:
                        if id(module) not in index:
                            index[id(module)] = len(rec.inputs)
                            rec.inputs.append(weakref.ref(module))
                        rec.slots[i] = index[id(module)]
        rec.producer = getattr(out, "_hyclora_producer", None)
        self.recorded.append(rec)

    def _replayed(self, unit: _Open, out: Any) -> None:
        engine, rec = self._engine, unit.rec
        trace = engine._trace
        self.replaying = None
        engine._ops.resume()
        if engine._mode != "replay":
            return
        out = _main_output(out)
        base = unit.outs[rec.frozen] if rec.frozen is not None else None
        if type(out) is not torch.Tensor or engine._next != rec.pack_end or (rec.frozen is not None and base is None):
            trace.diverged = True  # the next pack, or the step's exit, ends the replay (NOTE [Replay] rule 4)
            return
        trace.count = rec.end
        trace.tag(out)
        if rec.producer is not None:
            out._hyclora_producer = rec.producer
        if base is not None:
            setattr(out, FROZEN, base)
            engine._ops.frozen_terms.append(weakref.ref(out))
        self.replayed += 1


def _op_of(slot: Any) -> int:
    """The op that made a slot's tensor: a slot is an op's index, (index, output) for an op of several outputs, or
    ("outside", n) for a tensor from outside the step (-1)."""
    if type(slot) is int:
        return slot
    return slot[0] if type(slot[0]) is int else -1


def plan_units(recorded: list[UnitRecord], packs: list) -> dict[tuple, UnitRecord]:
    """The recorded units a replay may take, by first op and module (a unit and the first unit it holds start at
    the same op): none whose body makes a tensor a pack reads by its slot, but a pack of the body reading the input
    of a call of the body (rule 6)."""
    reads = [(i, k) for i, rec in enumerate(packs) for action, data, _, _ in rec.actions
             if action == "source" and data[0] is not None and data[0][0] == "slot"
             for k in (_op_of(data[0][1]),) if k >= 0]
    return {(u.start, id(u.module())): u for u in recorded
            if all(not u.start <= k < u.end - 1 or i in u.slots for i, k in reads)}


__all__ = ["Units", "UnitRecord", "unit_state", "plan_units"]
