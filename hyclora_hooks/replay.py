"""Replay: a step carries out the decisions a recorded step took, instead of planning them again.

NOTE [Replay]
  A training loop runs the same forward every step, and the engine reached the same decisions every step: on an
  H200's host, planning recipes and recording lineage were ~half of an ``intra_inter`` forward's host time, and a
  forward of 8 Llama-2-7B-shaped layers at 4 x 1024 tokens was bound by its host (docs/replay.md,
  docs/benchmarks.md session 12).
  1. Every op the tracker sees adds its *signature* to the step's :class:`Trace`: its name, the grad mode, and each
     argument as a plain value or, for a tensor, its *slot*: the index of the op of this step that made it (the
     trace tags outputs with ``_hyclora_slot``), a parameter's storage and layout, or, for a tensor from outside
     the step (the batch), the order in which the step first met it (tagged too), with its shape, strides, dtype,
     device and ``requires_grad`` at that first use.
  2. At the first pack of a step, or before it at the first call that may be a unit (NOTE [Replay units] rule 8),
     the engine looks up a plan for its (model root, policy). With none, or with one
     whose signatures differ from the step's so far, the step *records*: it decides as always, and each pack notes
     what the engine did: the op it came in, the tensor's layout, the entries it admitted and from which tensor
     (the saved one or the one it views, found again from the pack's tensor, with their slot, or for a view's base
     made inside an op, no op output, with its layout; a tagged op output; the ``t - part`` of a LoRA
     compensation; or the frozen term the tracker marked the saved tensor with: NOTE [Frozen term] in
     tracking.py), the recipes it made as
     *templates* (:func:`rebind`: entries replaced by placeholders numbered in creation order), and which entry it
     returned. A step that recorded every pack stores its plan on exit.
  3. With a matching plan the step *replays*: lineage is no longer recorded, nothing is classified or planned;
     each op's signature is compared with the plan's as the op runs (and not kept: ``Trace.follow``), and each
     pack checks that no op so far differed and that the pack comes in the recorded op with the recorded layout
     and dedupe outcome, then repeats the recorded actions on this step's tensors and entries. Equal signatures
     mean the same ops, in the same order, on the same data flow from the same parameters and outside tensors of
     the same layouts, so a recorded recipe computes this step's tensor as it computed the recorded one.
  4. The first failed check ends the replay (the plan is dropped; the next step records): the rest of the step is
     decided as without replay, but ops that ran during the replay left no lineage, so their tensors get codecs,
     not recipes (correct; less compression for that step).
  5. A template holds entries of the step (as placeholders), parameters and plain values. A recipe that would hold
     any other tensor, or a source that is no tagged op output, makes the recorded step unreplayable: no plan.
  6. Codecs run as they do without replay (calibration included: NOTE [Outlier calibration]); only the search for
     a recipe and the classification are skipped, never an encode or the accounting.
  7. A replayed recipe is not a copy of its template: it stores the plan's template itself with the step's
     entries it names (``lineage.Bound``; copying took 13 ms of a 130 ms replayed forward's host time, 8 layers
     on the H200, session 12). So template nodes hold no state of a step: an evaluation keeps values in its own
     memo, and an SDPA call's result (computed once for its output and logsumexp) is kept in a cache the Bounds
     of that call's two recipes share.
  8. Signatures are the model's ops alone: the engine's own tensor calls run off the tracker (inside an op torch
     has taken it off already; a pack outside any op and the exit's settling of pending non-finite checks take it
     off). How many checks are still pending on exit depends on the device's progress, and while that settling
     was traced a replayed step could end with more ops than its plan: the plan was dropped and the next step
     recorded again (on the H200 every other ``intra_inter`` step at 1 x 8192; docs/benchmarks.md session 14).
  9. A replay may take a LoRA linear's, an RMSNorm's or a Llama attention's call, or a decoder layer's or MLP's
     made of them, as one unit, its ops untracked, where the call's entry shows the state the recorded call had
     (NOTE [Replay units] in units.py).
"""

from __future__ import annotations

import copy
import weakref
from typing import Any, Callable

import torch

from . import lineage
from .attention import SdpaRecompute, _SdpaPart

SLOT = "_hyclora_slot"  # (trace token, op index) on every tensor a tracked op returned


class Unreplayable(Exception):
    """A recorded step did something a replay could not repeat (NOTE [Replay] rule 5)."""


class Trace:
    """The signatures of one step's ops, in order (NOTE [Replay] rule 1), and weak references to their outputs.

    While a step replays (:meth:`follow`), each signature is compared with the plan's as the op runs and not kept:
    ``diverged`` then says whether an op so far differed, ``count`` how many ran. Only the outputs a plan reads as
    sources are referenced then (a step's ~800 signatures and weak references would otherwise live until its
    exit, feeding Python's cyclic GC; docs/benchmarks.md session 13)."""

    __slots__ = ("token", "sigs", "outs", "count", "diverged", "_expect", "_keep", "_is_param", "_outside")

    def __init__(self, is_param: Callable[[torch.Tensor], bool]):
        self.token = object()
        self.sigs: list[tuple] = []
        self.outs: dict[Any, Any] = {}  # slot -> weak reference to the tensor (op outputs and outside tensors)
        self.count = 0  # ops so far
        self.diverged = False  # while following a plan: an op's signature differed from the plan's
        self._expect: list | None = None  # the plan's signatures, while following it
        self._keep: frozenset | None = None  # while following: the op outputs a replay may read
        self._is_param = is_param
        self._outside = 0  # outside tensors met so far: the next one's slot is ("outside", this)

    def follow(self, plan: Plan) -> bool:
        """Compare the signatures so far with ``plan``'s; if equal, compare every later op's as it runs instead of
        keeping it. False (and nothing changed) if they differ."""
        n = len(self.sigs)
        if n > len(plan.sigs) or not same_sigs(self.sigs, plan.sigs[:n]):
            return False
        self._expect, self._keep, self.sigs = plan.sigs, plan.sources, []
        return True

    def stop_following(self) -> None:
        """The replay ended (NOTE [Replay] rule 4): signatures are no longer needed; outputs no longer kept."""
        self._expect, self._keep = None, frozenset()

    def op(self, name: str, args: tuple, kwargs: dict) -> None:
        token, values = self.token, []
        for a in args:  # the two commonest kinds inline: a tensor this step made, a plain number
            t = type(a)
            if t is torch.Tensor:
                s = getattr(a, SLOT, None)
                if s is not None and s[0] is token:
                    values.append(s[1])
                    continue
            elif t is int or t is float or t is bool or a is None:
                values.append(a)
                continue
            values.append(self._value(a))
        sig = (name, torch.is_grad_enabled(), tuple(values), self._value(kwargs) if kwargs else None)
        expect, n = self._expect, self.count
        self.count = n + 1
        if expect is None:
            if self._keep is None:  # recording (or deciding): keep it
                self.sigs.append(sig)
            return
        if not self.diverged:
            try:
                same = n < len(expect) and sig == expect[n]
            except Exception:  # noqa: BLE001 - a value torch compares elementwise, say: not provably equal
                same = False
            if not same:
                self.diverged = True

    def tag(self, out: Any) -> None:
        """Tag the current op's tensor outputs with their slot, and keep a weak reference to a tensor output."""
        k = self.count - 1
        if isinstance(out, torch.Tensor):
            try:
                setattr(out, SLOT, (self.token, k))
            except (AttributeError, RuntimeError):  # some tensor subclasses refuse attributes
                return
            if self._keep is None or k in self._keep:
                self.outs[k] = weakref.ref(out)
        elif isinstance(out, (tuple, list)):
            for j, o in enumerate(out):
                if isinstance(o, torch.Tensor):
                    try:
                        setattr(o, SLOT, (self.token, (k, j)))
                    except (AttributeError, RuntimeError):
                        pass

    def slot(self, t: torch.Tensor) -> Any:
        """``t``'s slot in this step, or None when no op of this step made it."""
        s = getattr(t, SLOT, None)
        return s[1] if s is not None and s[0] is self.token else None

    def output(self, slot: Any) -> torch.Tensor | None:
        ref = self.outs.get(slot)
        return ref() if ref is not None else None

    def _value(self, a: Any) -> Any:
        t = type(a)
        if t is int or t is float or t is bool or a is None:  # most arguments that are no tensor
            return a
        if t is torch.Tensor or isinstance(a, torch.Tensor):
            s = self.slot(a)
            if s is not None:
                return s
            if self._is_param(a):
                return ("param", a.untyped_storage().data_ptr(), a.storage_offset(), tuple(a.shape), a.stride(),
                        a.dtype)
            # a tensor from outside the step (the batch): numbered when first met, so later uses name it
            slot = ("outside", self._outside)
            try:
                setattr(a, SLOT, (self.token, slot))
            except (AttributeError, RuntimeError):
                return ("outside", None, tuple(a.shape), a.stride(), a.dtype, a.device, a.requires_grad)
            self._outside += 1
            self.outs[slot] = weakref.ref(a)
            return slot + (tuple(a.shape), a.stride(), a.dtype, a.device, a.requires_grad)
        if t is tuple or t is list:  # a shape, mostly: its ints without a call each
            return tuple([x if type(x) is int else self._value(x) for x in a])
        if t is dict:
            return tuple([(k, self._value(v)) for k, v in a.items()])
        return a


def same_sigs(a: list, b: list) -> bool:
    """Signature lists equal (an argument whose ``==`` is not a plain truth value counts as a difference)."""
    try:
        return a == b
    except Exception:  # noqa: BLE001 - a value torch compares elementwise, say: not provably equal
        return False


Placeholder = lineage.Placeholder  # the ``index``-th entry a step made, in a template (rule 2)

_HOLDERS = (lineage.Node, SdpaRecompute, tuple, list, torch.Tensor)  # what may hold an entry or a tensor


def rebind(node: Any, entry_of: Callable[[Any], Any], is_param: Callable[[torch.Tensor], bool],
           memo: dict) -> Any:
    """A copy of the recipe node (or argument) ``node`` that reads ``entry_of(e)`` wherever it read entry ``e``.

    ``memo`` maps the id of each node copied so far to ``(node, copy)`` (holding ``node``, so the id stays its
    own): a sub-expression shared in the original is shared in the copy, across all recipes of a step (SDPA's
    output and logsumexp share one call). Raises :class:`Unreplayable` for a tensor that is no parameter, or a
    node kind it does not know.
    """
    if isinstance(node, (tuple, list)):
        return type(node)(rebind(a, entry_of, is_param, memo) for a in node)
    if isinstance(node, torch.Tensor):
        if is_param(node):
            return node
        raise Unreplayable("a recipe holds a tensor that is no parameter")
    if not isinstance(node, (lineage.Node, SdpaRecompute)):
        return node  # numbers, dtypes, shapes, None, callables
    hit = memo.get(id(node))
    if hit is not None:
        return hit[1]
    if isinstance(node, lineage.EntryRef):
        new: Any = lineage.EntryRef(entry_of(node.entry))
    elif isinstance(node, lineage.Const):
        if isinstance(node.value, torch.Tensor) and not is_param(node.value):
            raise Unreplayable("a recipe holds a tensor that is no parameter")
        new = node
    elif isinstance(node, lineage.Shared):
        new = lineage.Shared(rebind(node.inner, entry_of, is_param, memo))
    elif isinstance(node, lineage.Replay):
        new = copy.copy(node)
        new.__dict__.pop("_key", None)
        new.args = tuple(rebind(a, entry_of, is_param, memo) if isinstance(a, _HOLDERS) else a for a in node.args)
        if node.kwargs:
            new.kwargs = {k: rebind(v, entry_of, is_param, memo) for k, v in node.kwargs.items()}
        if isinstance(node, lineage.SwiGluProduct):
            new.gate = rebind(node.gate, entry_of, is_param, memo)
    elif isinstance(node, SdpaRecompute):  # the parts set the saved tensors' layouts, as each is packed
        new = SdpaRecompute(*(rebind(n, entry_of, is_param, memo) for n in (node.q, node.k, node.v, node.mask)),
                            node.is_causal, node.scale, node.enable_gqa)
    elif isinstance(node, _SdpaPart):
        meta = node.shared.out_meta if node.role == "output" else node.shared.lse_meta
        new = rebind(node.shared, entry_of, is_param, memo).node(node.role, meta)
    else:
        raise Unreplayable(f"a recipe node of kind {type(node).__name__}")
    memo[id(node)] = (node, new)
    return new


class Template:
    """A recipe (or P3's LoRA branch) of a recorded step with its entries as placeholders (rules 2 and 7).

    ``refs``: the placeholder indices it reads (a replay binds those entries of its step); ``sdpas``: the SDPA
    calls in it, each ``(call, leaf indices)``: a replayed step gives each call one cache, shared by its output and
    logsumexp recipes, and its leaves one more reader (as ``Compressor._sdpa_recipe``)."""

    __slots__ = ("node", "refs", "sdpas", "end")

    def __init__(self, node: Any, refs: tuple[int, ...], sdpas: tuple):
        self.node, self.refs, self.sdpas = node, refs, sdpas
        self.end = max(refs, default=-1) + 1  # a step must have made this many entries to bind it


def template(node: Any, entry_of: Callable[[Any], Placeholder], is_param: Callable[[torch.Tensor], bool],
             memo: dict) -> Template:
    """``node`` with placeholders (:func:`rebind`), and what a replay binds."""
    tpl = rebind(node, entry_of, is_param, memo)
    refs: dict[int, None] = {}
    sdpas: dict[int, tuple] = {}
    _walk(tpl, refs, sdpas, set())
    return Template(tpl, tuple(refs), tuple(sdpas.values()))


def _walk(a: Any, refs: dict, sdpas: dict, seen: set) -> None:
    """Collect the placeholder indices and SDPA calls a template reads."""
    if isinstance(a, (tuple, list)):
        for x in a:
            _walk(x, refs, sdpas, seen)
        return
    if not isinstance(a, (lineage.Node, SdpaRecompute)) or id(a) in seen:
        return
    seen.add(id(a))
    if isinstance(a, lineage.EntryRef):
        refs[a.entry.index] = None
    elif isinstance(a, lineage.Shared):
        _walk(a.inner, refs, sdpas, seen)
    elif isinstance(a, lineage.Replay):
        _walk(a.args, refs, sdpas, seen)
        _walk(tuple(a.kwargs.values()), refs, sdpas, seen)
        if isinstance(a, lineage.SwiGluProduct):
            _walk(a.gate, refs, sdpas, seen)
    elif isinstance(a, _SdpaPart):
        _walk(a.shared, refs, sdpas, seen)
    elif isinstance(a, SdpaRecompute):
        leaves = tuple(sorted({p.index for p in lineage.leaf_entries(a.q, a.k, a.v, a.mask)}))
        sdpas[id(a)] = (a, leaves)
        _walk((a.q, a.k, a.v, a.mask), refs, sdpas, seen)


class PackRecord:
    """What one pack of a recorded step did (NOTE [Replay] rule 2).

    ``kind``: ``"param"`` (returned the tensor), ``"dup"`` (returned entry ``result``, stored already),
    ``"entry"`` (ran ``actions``, then returned entry ``result``). ``actions``: ``(name, data, index, new)`` in
    order, where ``index`` is the entry the action gave and ``new`` whether it made that entry.
    """

    __slots__ = ("op", "meta", "kind", "site", "actions", "result", "narrow")

    def __init__(self, op: int, meta: tuple, kind: str, site: Any, actions: list, result: int | None):
        self.op, self.meta, self.kind, self.site, self.actions, self.result = op, meta, kind, site, actions, result
        self.narrow: bool | None = None  # may a 16-bit tensor stand for its fp32 one (engine._narrow_record)


def pack_meta(t: torch.Tensor) -> tuple:
    """What a replayed pack's tensor must have as recorded (rule 3); ``Compressor._unit_pack`` writes it out."""
    return (t.shape, t.stride(), t.dtype, t.requires_grad)


class Plan:
    """A recorded step: its op signatures and its packs; ``sources``: the op outputs its packs read as sources
    (a source that is the saved tensor or the tensor it views, ``"saved"`` / ``"saved_base"``, is found from the
    pack's tensor and is not kept); ``units``: the calls a replay may take as one (NOTE [Replay units])."""

    __slots__ = ("sigs", "packs", "sources", "units")

    def __init__(self, sigs: list, packs: list[PackRecord]):
        self.sigs, self.packs = sigs, packs
        self.sources = frozenset(data[0][1] for rec in packs for action, data, _, _ in rec.actions
                                 if action == "source" and data[0] is not None and data[0][0] == "slot")
        self.units: dict = {}  # first op -> units.UnitRecord, set by the engine when it stores the plan


# Plans by model root (weakly: a dropped model drops its plans), then by policy object (policies are cached per
# name and knobs, so a training loop's compress() gets the same object every step).
_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def find_plan(root: Any, policy: Any) -> Plan | None:
    if root is None:
        return None
    try:
        hit = _PLANS.get(root, {}).get(id(policy))
    except TypeError:  # a root that cannot be weakly referenced
        return None
    return hit[1] if hit is not None and hit[0] is policy else None


def store_plan(root: Any, policy: Any, plan: Plan | None) -> None:
    """Keep ``plan`` for ``(root, policy)``; None forgets it."""
    if root is None:
        return
    try:
        table = _PLANS.setdefault(root, {})
    except TypeError:
        return
    if plan is None:
        table.pop(id(policy), None)
    else:
        table[id(policy)] = (policy, plan)


def forget_plans(root: Any | None = None) -> None:
    """Drop the plans of ``root`` (of every model when None): the next step of each records again."""
    if root is None:
        _PLANS.clear()
    else:
        _PLANS.pop(root, None)


__all__ = ["Trace", "Plan", "PackRecord", "Placeholder", "Template", "Unreplayable", "rebind", "template",
           "find_plan", "store_plan", "forget_plans", "pack_meta", "same_sigs"]
