"""Replay units: a peft LoRA linear's or an RMSNorm's call carried out as one step of a replay (NOTE [Replay units]).

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
     dropout settings, the weights' storages and layouts, the input-cast switch, grad mode. The input must be the
     recorded step's op output of the same slot (equal signatures so far give it the same layout).
  2. The recorded call must be repeatable without its body's tensors: its output is the body's last op's output
     (tagged with that slot on exit), no pack of the body reads a body tensor other than the one it saves (source
     ``"saved"``) or the one that is a view of (``"saved_base"``), nor a frozen-term mark the tracker set in the
     body, no later pack reads a body tensor, the body met no tensor from outside the step and did not return its
     input as is (which tags the input anew: a norm's cast to the dtype it has). Its output's frozen-term mark
     (NOTE [Frozen term] in tracking.py) must be the base layer's output, which a replay takes from the base
     layer's exit.
  3. A body pack that misses its record ends the unit there (the tracker comes back for the rest of the body) and
     the replay, as any missed pack does (NOTE [Replay] rule 4); packs that do not all happen end it on exit.
  4. An RMSNorm is a unit too (two a Llama layer, eight ops each) when its class's forward reads nothing but its
     input and the names of Llama's (``weight``, ``variance_epsilon``, ``torch.rsqrt`` and the tensor methods it
     calls: ``_NORM_NAMES``), it has that one parameter, no buffer, no submodule, no forward of its own set on the
     instance and no hook; the state is that forward function, the weight and the epsilon. Gemma's (``1 + weight``,
     through ``self._norm``) reads other names: no unit.
"""

from __future__ import annotations

import sys
import weakref
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as _module

from .lineage import autocast_on
from .tracking import FROZEN, FROZEN_ROPE

_LORA_LINEAR: list = []  # [peft's lora.Linear class or None], looked up once


def _lora_linear() -> type | None:
    if not _LORA_LINEAR:
        try:
            from peft.tuners.lora.layer import Linear
        except Exception:  # noqa: BLE001 - peft missing or changed: no units, every op tracked as before
            Linear = None
        _LORA_LINEAR.append(Linear)
    return _LORA_LINEAR[0]


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
    return (id(m), m.training, _weight(params["weight"]), _weight(params.get("bias")))


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
    return kind if ENABLED else None


def _kind(cls: type) -> Any:
    if cls is _lora_linear():
        return _lora_state
    if cls.__name__.endswith("RMSNorm") and issubclass(cls, nn.Module):
        return _norm_state
    return None


ENABLED = True  # False: no call is a unit (for measuring units against their absence: units_ab.py)
_MISSING = object()
_KINDS: dict = {}  # module class -> its state function, or None (weak enough: classes live as long as their module)


def _lora_state(m: nn.Module) -> tuple | None:
    """Rule 1: peft's LoRA linear on its plain path."""
    if _hooked(m) or m.disable_adapters or m.merged or m.lora_variant:
        return None
    mods = m._modules
    base = _linear(mods["base_layer"])
    if base is None:
        return None
    lora_a, lora_b, dropouts = mods["lora_A"]._modules, mods["lora_B"]._modules, mods["lora_dropout"]._modules
    parts = []
    for name in m.active_adapters:
        if name not in lora_a:
            continue
        a, b, drop = _linear(lora_a[name]), _linear(lora_b[name]), dropouts[name]
        if a is None or b is None or type(drop) not in (nn.Identity, nn.Dropout) or _hooked(drop):
            return None
        settings = drop.__dict__  # Dropout's p and inplace; a missing name through getattr raised and cost ~3 us
        parts.append((name, a, b, type(drop), drop.training, settings.get("p"), settings.get("inplace"),
                      m.scaling[name]))
    return (m.training, m.__dict__.get("cast_input_dtype_enabled", True), base, tuple(parts), torch.is_grad_enabled())


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


def _only_our_global_hooks() -> bool:
    """The module tracker's two global hooks and nothing else (another global hook may change any call)."""
    return (len(_module._global_forward_pre_hooks) == 1 and len(_module._global_forward_hooks) == 1
            and not _module._global_backward_hooks and not _module._global_backward_pre_hooks)


def _no_keywords(module: nn.Module, max_depth: int = 4) -> bool:
    """Did the call of ``module`` get no keyword arguments? Global forward pre-hooks are not given them, so this
    reads the frame of ``Module._call_impl`` (its ``inner`` closure since torch 2.0) a few frames up from the hook;
    where there is none, or it has another shape, the answer is False (no unit: every op tracked, as without)."""
    f = sys._getframe(1)
    for _ in range(max_depth):
        if f is None:
            return False
        if f.f_code.co_name in ("inner", "_call_impl") and f.f_globals.get("__name__") == _module.__name__:
            local = f.f_locals
            return local.get("self") is module and local.get("kwargs", None) == {}
        f = f.f_back
    return False


def _same(state: tuple | None, recorded: tuple) -> bool:
    """Equal states (a value torch compares elementwise, a tensor scaling say, counts as a difference)."""
    try:
        return state == recorded
    except Exception:  # noqa: BLE001 - not provably equal
        return False


class UnitRecord:
    """One unit of a recorded step: ops ``start..end-1`` and packs ``pack_start..pack_end-1`` of the plan."""

    __slots__ = ("module", "start", "end", "x_slot", "state", "pack_start", "pack_end", "producer", "frozen")

    def __init__(self, module: nn.Module, start: int, x_slot: Any, state: tuple, pack_start: int):
        self.module = weakref.ref(module)
        self.start, self.x_slot, self.state, self.pack_start = start, x_slot, state, pack_start
        self.end = self.pack_end = -1
        self.producer: Any = None
        self.frozen = False


class Units:
    """Records units while a step records, carries them out while it replays (NOTE [Replay units]).

    The module tracker calls :meth:`enter` and :meth:`leave` for every module call; ``engine`` is the
    :class:`~hyclora_hooks.engine.Compressor` whose step this is (its mode, trace, plan and pack counters)."""

    def __init__(self, engine: Any):
        self._engine = engine
        self.recorded: list[UnitRecord] = []
        self.replayed = 0  # units carried out this step
        self._open: UnitRecord | None = None  # the unit being recorded or replayed now
        self._base_out: torch.Tensor | None = None  # its base layer's output
        self._outside = 0  # while recording: the trace's outside-tensor count at the unit's entry
        self._x: torch.Tensor | None = None  # while recording: the unit's input
        self._base: nn.Module | None = None  # the open unit's base layer (a LoRA linear's), whose output it marks
        self.replaying: UnitRecord | None = None  # the open unit while replayed, the tracker off the stack

    def enter(self, module: nn.Module, args: tuple) -> None:
        if self._open is not None:
            return
        engine = self._engine
        mode = engine._mode
        if mode not in ("record", "replay"):
            return
        kind = _kind_of(module)
        if kind is None:
            return
        trace, ops = engine._trace, engine._ops
        if len(args) != 1 or type(args[0]) is not torch.Tensor or autocast_on() or not _only_our_global_hooks() \
                or not ops._ours() or not _no_keywords(module):
            return
        x_slot = trace.slot(args[0])
        if x_slot is None:
            return
        # the base layer's output is a LoRA linear's frozen term (rule 2)
        self._base = module._modules.get("base_layer") if kind is _lora_state else None
        if mode == "record":
            state = ops.outside(kind, module)  # a weight's layout read on the tracker would be an op
            if state is not None:
                self._open = UnitRecord(module, trace.count, x_slot, state, len(engine._packs))
                self._outside, self._x = trace._outside, args[0]
            return
        rec = engine._replay_plan.units.get(trace.count)
        if (rec is None or trace.diverged or rec.module() is not module or rec.x_slot != x_slot
                or engine._next != rec.pack_start or not ops.suspend()):
            return
        if not _same(kind(module), rec.state):  # read off the stack, where the unit's body would run
            ops.resume()
            return
        self._open = self.replaying = rec

    def leave(self, module: nn.Module, output: Any) -> None:
        rec = self._open
        if rec is None:
            return
        if module is not rec.module():
            if module is self._base:
                self._base_out = output
            return
        base, self._open, self._base_out, x, self._x = self._base_out, None, None, self._x, None
        if self.replaying is not None:
            self._replayed(rec, output, base)
        elif self._engine._mode == "record":
            self._recorded(rec, output, base, x)

    def abort(self) -> None:
        """A pack of the unit being replayed missed (rule 3): the rest of its body is tracked."""
        if self.replaying is not None:
            self._open = self._base_out = self.replaying = None
            self._engine._ops.resume()

    def _recorded(self, rec: UnitRecord, out: Any, base: Any, x: torch.Tensor) -> None:
        engine = self._engine
        trace = engine._trace
        # an op of the body that returns its input as is (``x.to(x.dtype)``) tags it anew: skipping the body would
        # leave the old tag, and the next op reading it would differ from the plan
        if (type(out) is not torch.Tensor or trace.slot(out) != trace.count - 1 or trace._outside != self._outside
                or trace.slot(x) != rec.x_slot):
            return
        marks = out.__dict__
        frozen = marks.get(FROZEN)
        if frozen is not None and frozen is not base or marks.get(FROZEN_ROPE) is not None:
            return
        rec.end, rec.pack_end = trace.count, len(engine._packs)
        # a body tensor read as a source ("slot") is found by plan_units, which sees every pack's
        for pack in engine._packs[rec.pack_start:]:
            for action, data, _, _ in pack.actions:
                if action == "source" and data[0][0] in ("frozen", "frozen_rope"):
                    return
        rec.producer, rec.frozen = getattr(out, "_hyclora_producer", None), frozen is not None
        self.recorded.append(rec)

    def _replayed(self, rec: UnitRecord, out: Any, base: Any) -> None:
        engine = self._engine
        trace = engine._trace
        self.replaying = None
        engine._ops.resume()
        if engine._mode != "replay":
            return
        if type(out) is not torch.Tensor or engine._next != rec.pack_end or (rec.frozen and base is None):
            trace.diverged = True  # the next pack, or the step's exit, ends the replay (NOTE [Replay] rule 4)
            return
        trace.count = rec.end
        trace.tag(out)
        if rec.producer is not None:
            out._hyclora_producer = rec.producer
        if rec.frozen:
            setattr(out, FROZEN, base)
            engine._ops.frozen_terms.append(weakref.ref(out))
        self.replayed += 1


def _op_of(slot: Any) -> int:
    """The op that made a slot's tensor: a slot is an op's index, (index, output) for an op of several outputs, or
    ("outside", n) for a tensor from outside the step (-1)."""
    if type(slot) is int:
        return slot
    return slot[0] if type(slot[0]) is int else -1


def plan_units(recorded: list[UnitRecord], sources: frozenset) -> dict[int, UnitRecord]:
    """The recorded units a replay may take, by first op: none whose body makes a tensor a later pack reads."""
    body = [(u.start, u.end - 1) for u in recorded]
    read = [k for k in map(_op_of, sources) if k >= 0]
    return {u.start: u for u, (lo, hi) in zip(recorded, body) if not any(lo <= s < hi for s in read)}


__all__ = ["Units", "UnitRecord", "unit_state", "plan_units"]
