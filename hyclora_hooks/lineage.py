"""Tensor lineage and recompute recipes: store *how* a saved tensor was made instead of its data.

While a compressed forward runs, :class:`~hyclora_hooks.tracking.OpTracker` calls :func:`record` for each
output of a cheap, deterministic op (casts, views, elementwise ops, activations, linear layers): the output
gets a ``_hyclora_lineage`` attribute naming the op and its arguments. Arguments are held *weakly*, except
parameters and inputs sharing the output's storage (views), whose memory the output pins anyway; so lineage
keeps no activation alive.

Versions (NOTE [Recipes and in-place changes]): a recipe is only right for the data its lineage describes. A
lineage notes its output's version counter, and :func:`lineage_of` drops it once the tensor was changed in place
(``s.mul_(3)`` after ``s = silu(g)``: rebuilt as ``silu(g)``, ``s`` would come back a third of itself, with no
error). An argument's lineage is taken, and checked, when the op reads it. A storage key holds the version too,
so an entry stored after an in-place change never stands in for the data an earlier op read.

NOTE [Recipes under autocast]
  Under ``torch.autocast`` an op's result depends on the region it ran in: ``linear`` of fp32 tensors gives bf16,
  ``rsqrt`` of bf16 gives fp32. Backward runs outside that region, so a replay there would compute something else
  (peft's LoRA branch replayed in fp32 where the forward ran bf16 stopped backward with a dtype error). A lineage
  notes the autocast region of its op (:func:`autocast_state`), its replay runs inside the same one, and every
  evaluation (the forward's LoRA part inside the user's region, backward's decodes) starts outside any, so
  forward and backward compute the same values.

When autograd saves a tensor, :class:`Planner` tries, in order (NOTE [Recipes]):

  P1 *free recipe*: every leaf of the lineage is an entry already stored (or a parameter): store nothing new.
     SiLU output from the saved gate, the SwiGLU product from its stored operands, a LoRA input's fp32 copy from
     the stored normalised input, o_proj's input from the stored attention output.
  P3 *LoRA compensation*: the tensor is a linear function L of LoRA-adapted outputs ``base + lora`` (casts and
     views: q, k, v, gate, up themselves; RoPE's ``q*cos + rotate_half(q)*sin``: q/k as SDPA saves them), each
     LoRA branch a free recipe (from the kept ``x·A`` and the parameter ``B``): store ``tensor - L(lora)`` (the
     frozen part) with the codec and add the exact ``L(lora)`` back when decoding; or, where the forward's sum
     still holds it, the frozen term ``X·W`` itself (NOTE [Frozen term] in tracking.py; q/k: before RoPE, and
     :class:`RopeRebuild` rotates it with the part).
  P2 *source*: a chain of casts and views back to a live source no larger than the tensor: encode the source
     once (every fp32 upcast of one bf16 input shares it) and replay the chain. Not for a tensor the policy keeps
     that views its source's own storage (``engine._kept_view``: peft's ``x·A`` as ``lora_B`` saves it): keeping
     the tensor holds the same bytes in one entry, without a recipe to replay and decode every step.

A recipe whose tensor the policy wants lossless may only use lossless leaves. Replays run under ``no_grad``,
outside any hooks, and are pure: decoding twice gives the same values.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import weakref
from typing import Any, Callable

import torch

from . import sharing
from .codecs.bitmask import Bits
from .kernels import bitmask, log_softmax, lora_part, norm_tail, rope_part, swiglu, widen

# ops cheap enough to replay in backward (elementwise, views, casts; linear only with a thin weight)
UNARY = {"to", "type", "float", "half", "bfloat16", "double", "type_as", "contiguous", "view", "reshape",
         "transpose", "permute", "flatten", "unsqueeze", "squeeze", "expand", "t", "view_as", "reshape_as",
         "as_strided", "getitem", "narrow", "select"}
REPLAYABLE = UNARY | {"mul", "add", "sub", "neg", "div", "truediv", "rsqrt", "cat", "getitem", "silu", "gelu",
                      "relu", "tanh", "sigmoid", "linear", "pow", "softmax", "log_softmax", "narrow"}
MAX_REPLAY_LINEAR_RANK = 256  # a linear replays only through a weight this thin (LoRA A/B), never a base layer
MAX_DEPTH = 12
# Most ops one decode may replay, nested recipes included. The recipes we aim at cost 2-12 (a LoRA input's fp32
# copy from the stored norm input ~5, down_proj's input from gate and up ~12); without a bound a chain of free
# recipes can run through the whole residual stream, and every unpack would replay it.
MAX_COST = 24


class ParamRef:
    """A parameter argument: held strongly (it lives as long as the model)."""

    __slots__ = ("value",)

    def __init__(self, value: torch.Tensor):
        self.value = value


class TensorRef:
    """A weak handle on an op's tensor argument that outlives the tensor.

    Temporaries die before their consumers are saved (peft's ``base + lora`` sum is dropped once cast back to
    bf16), so a handle keeps what recipes need without the data: the argument's own lineage, and its storage key
    (a :class:`StorageKey` plus view geometry) to find its entry if autograd saved it.
    """

    __slots__ = ("ref", "version", "lineage", "key")

    def __init__(self, t: torch.Tensor, lineage: Lineage | None):
        self.ref, self.version, self.lineage = weakref.ref(t), t._version, lineage
        self.key = storage_key(t)

    def tensor(self) -> torch.Tensor | None:
        t = self.ref()
        return t if t is not None and t._version == self.version else None


AUTOCAST_DEVICES = ("cuda", "cpu")


def _each_device_autocast() -> bool:
    return any(torch.is_autocast_enabled(d) for d in AUTOCAST_DEVICES)


# Is any autocast region active now? Asked at every tracked op and every pack: torch's own one-call check of every
# device's flag, called directly (private; if it goes, each device is asked)
autocast_on: Callable[[], bool] = getattr(torch._C, "_is_any_autocast_enabled", None) or _each_device_autocast


def autocast_state(t: torch.Tensor) -> tuple[str, torch.dtype] | None:
    """``(device type, dtype)`` of the autocast region active now for ``t``'s device, or None (NOTE [Recipes under
    autocast])."""
    if not autocast_on():
        return None
    device_type = t.device.type
    if not torch.is_autocast_enabled(device_type):
        return None
    return device_type, torch.get_autocast_dtype(device_type)


def outside_autocast(fn: Callable, *args: Any) -> Any:
    """``fn(*args)`` with every autocast region switched off: our own tensor work (encodes, the LoRA part, replays)
    must not depend on the user's region."""
    if not autocast_on():
        return fn(*args)
    with contextlib.ExitStack() as stack:
        for d in AUTOCAST_DEVICES:
            if torch.is_autocast_enabled(d):
                stack.enter_context(torch.autocast(d, enabled=False))
        return fn(*args)


def storage_key(t: torch.Tensor, refs: dict | None = None) -> tuple:
    """Identity of a tensor's data: storage (held weakly, so its address is not reused), view geometry, dtype, and
    version (an in-place change makes other data of the same storage). ``refs``: see :func:`storage_ref` (whose
    cache hit, most keys of a step, is read here: a Python call less a key)."""
    storage = t.untyped_storage()
    key = refs.get(storage._cdata) if refs is not None else None
    if key is None:
        key = _new_storage_key(storage, refs)
    return (key, t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype, t._version)


class StorageKey(int):
    """A storage's identity as a dict key: its C++ address, an ``int`` (hashed and compared in C: a key with a
    ``StorageWeakRef`` in it called that class's Python ``__hash__`` at every dict use, ~2,000 times a replayed
    Llama step), holding a weak reference to the storage (``weak``, the C++ handle ``_weak_ref()`` gives), which keeps
    the storage's C++ object allocated, so no other storage can take its address while the key exists (NOTE
    [Lifetimes] rule 2 in engine.py). The handle is freed here, in C, when the key dies: ``StorageWeakRef`` made
    two Python calls more a key (~240 keys a replayed Llama forward)."""

    weak: int | None = None  # (None if making the handle failed)

    def __del__(self, _free: Callable[[int], None] = torch.UntypedStorage._free_weak_ref) -> None:
        if self.weak is not None:
            _free(self.weak)


def storage_ref(storage: torch.UntypedStorage, refs: dict | None = None) -> StorageKey:
    """The :class:`StorageKey` of ``storage``; with ``refs`` (a cache by storage), the one made before for it."""
    if refs is not None:
        key = refs.get(storage._cdata)
        if key is not None:
            return key
    return _new_storage_key(storage, refs)


def _new_storage_key(storage: torch.UntypedStorage, refs: dict | None) -> StorageKey:
    """A new :class:`StorageKey` of ``storage``, cached in ``refs`` (its callers looked there first)."""
    cdata = storage._cdata
    key = StorageKey(cdata)
    key.weak = storage._weak_ref()
    if refs is not None:
        refs[cdata] = key
    return key


class Lineage:
    """How a tensor was made: the op and its arguments (tensors as :class:`TensorRef` / :class:`ParamRef`, a list
    of tensors as a tuple of those), the output's version when it was made, and the autocast region it ran in
    (NOTE [Recipes under autocast]). Read-only by convention; a plain slotted class because one is built for every
    recorded op (0.26 us to build against a frozen dataclass's 0.73 us, on the dev machine's CPU)."""

    __slots__ = ("func", "name", "args", "kwargs", "version", "autocast")

    def __init__(self, func: Callable, name: str, args: tuple, kwargs: dict, version: int,
                 autocast: tuple | None = None):
        self.func, self.name, self.args, self.kwargs, self.version = func, name, args, kwargs, version
        self.autocast = autocast


def _wrap(a: Any, is_param: Callable) -> Any:
    if isinstance(a, torch.Tensor):
        return ParamRef(a) if is_param(a) else TensorRef(a, lineage_of(a))
    if isinstance(a, (list, tuple)) and a and all(isinstance(x, torch.Tensor) for x in a):
        return tuple(_wrap(x, is_param) for x in a)
    return a


def record(func: Callable, name: str, args: tuple, kwargs: dict, out: Any, is_param: Callable,
           mask_of: Callable | None = None) -> None:
    """Attach lineage to ``out`` if ``name`` is a replayable op and ``out`` is a new floating-point tensor;
    ``mask_of(args)``: the entry of the mask the dropout call with these arguments saved (NOTE [Dropout recipe])."""
    if name == "dropout" and mask_of is not None:
        _record_dropout(args, kwargs, out, mask_of(args), is_param)
        return
    if name not in REPLAYABLE or not isinstance(out, torch.Tensor) or not out.is_floating_point():
        return
    if any(a is out for a in args) or any(v is out for v in kwargs.values()):  # op returned its input
        return
    try:
        out._hyclora_lineage = Lineage(func, name, tuple(_wrap(a, is_param) for a in args),
                                       {k: _wrap(v, is_param) for k, v in kwargs.items()}, out._version,
                                       autocast_state(out))
    except (AttributeError, RuntimeError):
        pass


# NOTE [Dropout recipe]
#   peft's LoRA branch with ``lora_dropout`` > 0 is ``lora_A(dropout(x))``: lora_A saves the dropped input, which is
#   no cast or view of anything stored, so it was stored on its own, a LoRA projection each (7 a Llama layer) where
#   the undropped input shares one source. Dropout saves its mask as it runs (a bool mask on CUDA, the noise tensor
#   ``bernoulli(1 - p) / (1 - p)`` on the CPU; ``codecs/bitmask.py`` packs either), and the engine tells ``record``
#   which entry that was (``mask_of``). The output's lineage is then ``_dropout_apply(x, mask, scale)``, a free
#   recipe (P1) once ``x`` has one: the same bits as the forward's. CUDA's kernel computes ``x * keep * scale`` in
#   fp32 with ``scale = 1.0 / float32(1 - p)`` rounded to fp32 (``x * 1`` is exact, so one rounding, as here); the
#   CPU's ``x * noise`` is replayed as it ran. A dropout call that saved no mask (its input needs no gradient) gets
#   no lineage.
#   On CUDA :class:`DropoutApply` reads a packed mask's bits in the pass that makes ``x`` (the RMSNorm tail kernel,
#   a widening cast) or in one of its own (kernels/bitmask.py), the same bits, where ``x * mask * scale`` on a
#   decoded mask took two ATen passes, one unvectorized; the fused tails (:func:`fuse_norm_tail`,
#   :func:`fuse_swiglu`) look through the dropout to the undropped input's recipe, as a LoRA input's recipe without
#   dropout has them at its top (session 30: a 4x1024 step's GPU work with ``lora_dropout`` 0.05 1.22x -> 1.10x).
def _dropout_apply(x: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    """Dropout's output again from its input and its saved mask (NOTE [Dropout recipe])."""
    return x * mask * scale if mask.dtype == torch.bool else x * mask


@functools.lru_cache(maxsize=64)
def _dropout_scale(p: float) -> float:
    """CUDA dropout's ``scale``: ``1.0 / float32(1 - p)``, computed in double and rounded to fp32."""
    keep = torch.tensor(1.0 - p, dtype=torch.float32).item()
    return torch.tensor(1.0 / keep, dtype=torch.float32).item()


def _record_dropout(args: tuple, kwargs: dict, out: Any, mask: Any, is_param: Callable) -> None:
    """The lineage of ``F.dropout(x, p, training, inplace)``'s output, given the entry of the mask it saved."""
    if mask is None or not isinstance(out, torch.Tensor) or not out.is_floating_point() or not args:
        return
    x = args[0]
    p = args[1] if len(args) > 1 else kwargs.get("p", 0.5)
    if not isinstance(x, torch.Tensor) or x is out or type(p) not in (int, float) or not 0 < p < 1 \
            or x.shape != out.shape or x.dtype != out.dtype:
        return
    try:
        out._hyclora_lineage = Lineage(_dropout_apply, "dropout_apply", (_wrap(x, is_param), EntryRef(mask),
                                                                         _dropout_scale(p)), {}, out._version,
                                       autocast_state(out))
    except (AttributeError, RuntimeError):
        pass


def view_lineage(t: torch.Tensor) -> Lineage | None:
    """Lineage of a view made *inside* an op (F.linear saves its 3-D input as a 2-D view): ``as_strided`` of its
    base, valid when the base is contiguous, so that a decoded (contiguous) base has the same layout."""
    base = t._base
    if base is None or not base.is_contiguous() or base.layout != torch.strided:
        return None
    args = (TensorRef(base, _own_lineage(base)), tuple(t.shape), tuple(t.stride()),
            t.storage_offset() - base.storage_offset())
    return Lineage(torch.as_strided, "as_strided", args, {}, t._version)


def _own_lineage(t: torch.Tensor) -> Lineage | None:
    """The lineage ``t``'s op recorded, while ``t`` is unchanged since (not changed in place)."""
    lin = getattr(t, "_hyclora_lineage", None)
    return lin if lin is not None and lin.version == t._version else None


def lineage_of(t: torch.Tensor) -> Lineage | None:
    """How ``t``'s data was made, or None: its own lineage while ``t`` is unchanged since its op, else a view's."""
    lin = _own_lineage(t)
    return lin if lin is not None else view_lineage(t)


# ------------------------------------------------------------------------------------------------ nodes
class Node:
    """A replayable expression: evaluates to a tensor in backward. ``cost``: ops replayed to evaluate it."""

    lossless: bool = True
    cost: int = 0

    def eval(self, memo: dict) -> Any:
        raise NotImplementedError

    def key(self) -> Any:
        """What the node computes, hashable (see :func:`recipe_key`); raises TypeError where it cannot say."""
        raise TypeError(type(self).__name__)


class Placeholder:
    """The ``index``-th entry of a step, in a replay plan's template (NOTE [Replay] in replay.py): an evaluation
    finds the entry in the :class:`Bound` it runs under."""

    __slots__ = ("index", "lossless", "cost")

    def __init__(self, index: int, entry: Any):
        self.index, self.lossless, self.cost = index, entry.lossless, entry.cost


ENV = "env"  # the memo key of the Bound whose template an evaluation runs (its entries and SDPA caches)


class EntryRef(Node):
    """A stored entry (decoded once per evaluation, however often it is used), or a template's placeholder."""

    def __init__(self, entry: Any):
        self.entry = entry
        self.lossless = entry.lossless
        self.cost = entry.cost

    def resolve(self, memo: dict) -> Any:
        """The entry: itself, or for a placeholder the one of the Bound this evaluation runs under."""
        e = self.entry
        return memo[ENV].entries[e.index] if type(e) is Placeholder else e

    def eval(self, memo: dict) -> torch.Tensor:
        entry = self.resolve(memo)
        key = id(entry)
        if key not in memo:
            memo[key] = entry.value()
        return memo[key]

    def key(self) -> Any:
        return ("entry", id(self.entry))


class Const(Node):
    """A parameter (held strongly; it lives as long as the model) or a plain Python value."""

    def __init__(self, value: Any):
        self.value = value

    def eval(self, memo: dict) -> Any:
        return self.value

    def key(self) -> Any:
        return ("tensor", id(self.value)) if isinstance(self.value, torch.Tensor) else _key(self.value)


class Shared(Node):
    """A sub-expression read more than once in one recipe (RoPE reads q twice: ``q*cos``, ``rotate_half(q)``):
    evaluated once per evaluation."""

    def __init__(self, inner: Node):
        self.inner, self.lossless, self.cost = inner, inner.lossless, inner.cost

    def eval(self, memo: dict) -> Any:
        key = id(self)
        if key not in memo:
            memo[key] = self.inner.eval(memo)
        return memo[key]

    def key(self) -> Any:
        k = self.__dict__.get("_key")
        if k is None:  # a shared node is read several times in one tree: its key is computed once
            k = self._key = ("shared", self.inner.key())
        return k


class Bound(Node):
    """A replay plan's template read with one step's entries (NOTE [Replay] rule 7 in replay.py): what a replayed
    recipe stores, instead of a copy of the template per step. ``entries[i]`` is the entry of placeholder ``i`` (a
    dict, or the step's list), ``caches`` the step's state of the template's SDPA calls (``SdpaRecompute.get``), by
    the calls' ids."""

    def __init__(self, template: Node, entries: Any, caches: dict | None = None):
        self.template, self.entries, self.caches = template, entries, caches if caches is not None else {}
        self.lossless, self.cost = template.lossless, template.cost

    def eval(self, memo: dict) -> Any:
        memo[ENV] = self
        return self.template.eval(memo)


class Replay(Node):
    """``func(*args, **kwargs)`` on the evaluated arguments; inside the autocast region ``autocast`` (``(device
    type, dtype)``) where the recorded op ran in one (NOTE [Recipes under autocast])."""

    def __init__(self, func: Callable, name: str, args: tuple, kwargs: dict, autocast: tuple | None = None):
        self.func, self.name, self.args, self.kwargs, self.autocast = func, name, args, kwargs, autocast
        inner = _nodes(args) + _nodes(tuple(kwargs.values()))
        self.lossless = all(a.lossless for a in inner)
        self.cost = 1 + sum(a.cost for a in inner)

    @classmethod
    def of(cls, lin: Lineage, args: tuple, kwargs: dict) -> Replay:
        """The recorded op ``lin`` on new arguments."""
        kind = DropoutApply if lin.func is _dropout_apply else cls
        return kind(lin.func, lin.name, args, kwargs, lin.autocast)

    def eval(self, memo: dict) -> torch.Tensor:
        if self.name in CASTS:
            out = _cast_into(self, memo)
            if out is not None:
                return out
        # ``_eval`` inlined for the commonest arguments (a node, a plain value), in a list comprehension (no generator
        # resumed per item): a replayed backward evaluates ~1,000 of them
        args = tuple([a.eval(memo) if isinstance(a, Node) else _eval(a, memo) if type(a) is tuple else a
                      for a in self.args])
        kwargs = {k: _eval(v, memo) for k, v in self.kwargs.items()} if self.kwargs else {}
        if self.autocast is None:
            if self.name in CASTS and args and widen.fits(_cast_of(self)[1], args[0]):  # NOTE [Casts into outputs]
                return widen.cast(args[0])
            return self.func(*args, **kwargs)
        with torch.autocast(self.autocast[0], dtype=self.autocast[1]):
            return self.func(*args, **kwargs)

    def key(self) -> Any:
        k = self.__dict__.get("_key")
        if k is None:  # nodes are not changed once built; a recipe's key is asked once per node, not per read
            k = self._key = (self.func, self.name, _key(self.args),
                             tuple(sorted((k, _key(v)) for k, v in self.kwargs.items())), self.autocast)
        return k


class DropoutApply(Replay):
    """``_dropout_apply(x, mask, scale)`` (NOTE [Dropout recipe]). Where the mask is stored packed on CUDA (the
    ``bitmask`` codec's bool mask, in ``x``'s layout), ``x * keep * scale`` is read from the bits without decoding
    the mask, in the pass that makes ``x`` where there is one: an RMSNorm's fused tail (kernels/norm_tail.py), a
    16-bit tensor widened to fp32 (kernels/bitmask.py); else a pass of its own on ``x``. Otherwise as recorded."""

    def eval(self, memo: dict) -> torch.Tensor:
        x_node, mask, scale = self.args
        entry = mask.resolve(memo) if isinstance(mask, EntryRef) and self.autocast is None else None
        bits = entry.payload if entry is not None else None
        if type(bits) is not Bits or bits.value is not None or entry.perm is not None \
                or not bitmask.use_triton(bits.packed):
            return super().eval(memo)
        packed, shape = bits.packed, tuple(entry.shape or bits.shape)
        if type(x_node) is NormTail:
            a, b, w, half, wide = [_eval(v, memo) for v in x_node.args]
            a, b = _tail_operands(a, b, w, half, wide)
            if a.shape == shape and wide == torch.float32 and norm_tail.fusable(a, b, w, half, wide) \
                    and packed.device == a.device \
                    and packed.numel() == bitmask.packed_size(a.numel()):
                return norm_tail.norm_tail_triton(a, b, w, half, packed, scale)
            x = norm_tail.norm_tail(a, b, w, half, wide)
        else:
            inner, dtype = _cast_of(x_node)
            if dtype == torch.float32 and x_node.autocast is None:  # ``x`` is a tensor widened to fp32
                src = _eval(inner, memo)
                if src.dtype in swiglu.HALVES and src.shape == shape and bitmask.apply_fits(src, packed):
                    return bitmask.apply(src, packed, scale)  # widened and dropped in one pass
                x = _widened(src)  # the cast's value, without evaluating ``inner`` again
            else:
                x = _eval(x_node, memo)
        if x.dtype == torch.float32 and x.shape == shape and bitmask.apply_fits(x, packed):  # fp32 in, fp32 out
            return bitmask.apply(x, packed, scale)
        return self.func(x, mask.eval(memo), scale)


# NOTE [Casts into outputs]
#   Recipes replay casts of fresh results: peft's fp32 copy of a LoRA input is ``(w * h).to(fp32)`` of an RMSNorm
#   replay whose ``h`` is ``(x * rstd).to(bf16)``, down_proj's is ``(silu(g) * u).to(fp32)``. Op by op each cast
#   writes the op's result once more and reads it back (9 ms of a 170 ms backward at 1 x 8192 tokens for these
#   copies, 8 Llama-2-7B-shaped layers, H200, session 11). ``op(a, b, out=<dtype>)`` computes in the inputs' result
#   type and casts into the output as it writes, one rounding each, the same values as ``op(a, b).to(dtype)``
#   (checked bit for bit on CPU in tests/test_inter.py and on the GPU by tools/check_cast_into.py). Used for
#   ``mul``/``add``/``sub``/``div`` of contiguous floating tensors (then both give a contiguous result, so views
#   replayed on it see the same layout); anything else is replayed op by op. A stored entry cast wider (RMSNorm's
#   fp32 input, ``hidden.to(fp32)`` of a bf16 hidden state stored at 2 bits) is decoded into the wider dtype where
#   its codec can (``Entry.decode_to``: the same bits, one pass instead of a decode and a cast; session 17) and
#   nothing else reads the entry's own decode. On CUDA a contiguous 16-bit tensor cast to fp32, and ``mul``/``add``/
#   ``sub`` of two such tensors of one shape into fp32, take ``kernels/widen.py``'s vectorized pass, the same bits
#   (ATen runs ops whose output dtype differs from the inputs' through its unvectorized kernel; session 20).
_OUT_OPS = {"mul": torch.mul, "add": torch.add, "sub": torch.sub, "div": torch.div, "truediv": torch.div}


def _cast_into(cast: Replay, memo: dict) -> torch.Tensor | None:
    """``cast``'s value by NOTE [Casts into outputs], or None where it does not apply (nothing evaluated yet)."""
    inner, dtype = _cast_of(cast)
    if type(inner) is EntryRef and cast.autocast is None:  # a stored tensor cast wider: decoded into the dtype
        entry = inner.resolve(memo)
        if entry.readers < 2 and id(entry) not in memo:  # no other reader wants the decode itself
            return entry.decode_to(dtype)
        return None
    if type(inner) is not Replay or inner.name not in _OUT_OPS or inner.kwargs or len(inner.args) != 2 \
            or inner.autocast is not None or cast.autocast is not None or not dtype.is_floating_point:
        return None
    args = tuple([_eval(a, memo) for a in inner.args])
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if len(tensors) == 2 and inner.name in widen.OPS and widen.fits(dtype, *args):
        return widen.binary(inner.name, *args)
    if tensors and all([t.is_floating_point() and t.is_contiguous() and t.device == tensors[0].device
                        for t in tensors]):
        return _OUT_OPS[inner.name](*args, out=torch.empty(0, dtype=dtype, device=tensors[0].device))
    rest = tuple([_eval(a, memo) for a in cast.args[1:]])
    return cast.func(inner.func(*args), *rest, **{k: _eval(v, memo) for k, v in cast.kwargs.items()})


def recipe_key(node: Node) -> Any:
    """A hashable key of what ``node`` computes, or None: two recipes with one key replay the same ops on the same
    entries and parameters, so give the same values (peft's q, k and v each cast one normalised input to fp32).

    Entries and tensors appear by ``id``: valid while the recipe holding the key lives, since its nodes hold them.
    """
    try:
        k = node.key()
        hash(k)
    except TypeError:
        return None
    return k


def _key(a: Any) -> Any:
    if isinstance(a, Node):
        return a.key()
    if isinstance(a, (tuple, list)):
        return (type(a).__name__,) + tuple(_key(x) for x in a)
    if isinstance(a, slice):
        return ("slice", _key(a.start), _key(a.stop), _key(a.step))
    if isinstance(a, torch.Tensor):
        raise TypeError("tensor argument")
    if isinstance(a, (bool, int, float)):
        return (type(a).__name__, a)  # 1, 1.0 and True hash alike but need not replay alike
    return a


def leaf_entries(*nodes: Any) -> list:
    """The distinct entries the expressions ``nodes`` read directly (one evaluation decodes each once)."""
    seen: dict[int, Any] = {}
    _walk_leaves(nodes, seen, set())
    return list(seen.values())


def _walk_leaves(a: Any, seen: dict, shared: set) -> None:
    # a module-level function: a recursive closure would be a reference cycle holding ``seen`` (and the
    # entries in it) until Python's cyclic GC runs. ``shared``: ids of Shared nodes walked already.
    if isinstance(a, EntryRef):
        seen.setdefault(id(a.entry), a.entry)
    elif isinstance(a, Replay):
        _walk_leaves(a.args, seen, shared)
        _walk_leaves(tuple(a.kwargs.values()), seen, shared)
    elif isinstance(a, Shared):
        if id(a) not in shared:
            shared.add(id(a))
            _walk_leaves(a.inner, seen, shared)
    elif isinstance(a, (tuple, list)):
        for x in a:
            _walk_leaves(x, seen, shared)


def _holds_tensors(xs: tuple) -> bool:
    return any(isinstance(x, (TensorRef, ParamRef)) or (isinstance(x, tuple) and _holds_tensors(x)) for x in xs)


def _one_input(lin: Lineage) -> bool:
    """The op's first argument is its only tensor (none among the other arguments, keywords or nested tuples)."""
    return (bool(lin.args) and isinstance(lin.args[0], TensorRef)
            and not _holds_tensors(lin.args[1:] + tuple(lin.kwargs.values())))


def _nodes(xs: tuple) -> list:
    out = []
    for x in xs:
        if isinstance(x, Node):
            out.append(x)
        elif isinstance(x, tuple):
            out.extend(_nodes(x))
    return out


def _eval(a: Any, memo: dict) -> Any:
    if isinstance(a, Node):
        return a.eval(memo)
    if isinstance(a, tuple) and a and all([isinstance(x, Node) for x in a]):  # a list: a recipe's hot path
        return [x.eval(memo) for x in a]
    return a


def evaluate(node: Node) -> torch.Tensor:
    """Replay ``node`` without building a graph (so nothing is saved, and no hook runs, whatever is active), outside
    any autocast region but the ones its ops ran in (NOTE [Recipes under autocast])."""
    grad = torch.is_grad_enabled()
    torch._C._set_grad_enabled(False)  # what ``torch.no_grad()`` does, without its three Python calls a recipe
    try:
        return outside_autocast(node.eval, {})
    finally:
        torch._C._set_grad_enabled(grad)


# ---------------------------------------------------------------------------------------------- planner
# dtype casts (also the ops that pass a frozen-term mark on: NOTE [Frozen term] in tracking.py)
CASTS = {"to", "type", "float", "half", "bfloat16", "double", "type_as"}


_FP = (torch.float32, torch.bfloat16, torch.float16)


def lora_combine(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype, subtract: bool = False) -> torch.Tensor:
    """``(a.float() +- b.float()).to(dtype)`` in one pass where it can: torch computes a mixed or half-precision
    add in fp32 (bf16 -> fp32 is exact) and rounds once, so the promoted op gives the same bits without the fp32
    copies of the operands (a full pass over a q/k/v/gate/up tensor each)."""
    if a.dtype in _FP and b.dtype in _FP and torch.promote_types(a.dtype, b.dtype) in (torch.float32, dtype):
        out = torch.sub(a, b) if subtract else torch.add(a, b)
        return out if out.dtype == dtype else out.to(dtype)
    af, bf = a.float(), b.float()
    return (af - bf if subtract else af + bf).to(dtype)


def _lora_rebuild(base: torch.Tensor, branch: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return lora_combine(base, branch, dtype)


class Planner:
    """Find a recipe for a saved tensor (NOTE [Recipes] above).

    ``lookup(key)`` returns a node reading the data of :func:`storage_key` ``key`` (version included) from a live
    entry (the entry itself, or a view of a stored tensor), or None; ``is_param(t)`` tells weights.
    """

    def __init__(self, lookup: Callable, is_param: Callable):
        self.lookup, self.is_param = lookup, is_param

    # P1 -------------------------------------------------------------------------------------------
    def free(self, t: torch.Tensor, lossless_only: bool) -> Node | None:
        """A recipe for the live tensor ``t`` from stored entries and parameters only, or None."""
        if self.is_param(t):
            return Const(t)
        return self._free(storage_key(t), lineage_of(t), lossless_only, MAX_DEPTH)

    def _free(self, key: tuple, lin: Lineage | None, lossless_only: bool, depth: int) -> Node | None:
        node = self.lookup(key)
        if node is not None:
            return node if (node.lossless or not lossless_only) else None
        if lin is None or depth == 0:
            return None
        if lin.name == "linear" and not self._thin_linear(lin):
            return None
        args = self._resolve(lin.args, lossless_only, depth - 1)
        kwargs = self._resolve(tuple(lin.kwargs.values()), lossless_only, depth - 1)
        if args is None or kwargs is None:
            return None
        node = Replay.of(lin, args, dict(zip(lin.kwargs, kwargs)))
        return node if node.cost <= MAX_COST else None

    @staticmethod
    def _thin_linear(lin: Lineage) -> bool:
        w = lin.args[1] if len(lin.args) > 1 else lin.kwargs.get("weight")
        return isinstance(w, ParamRef) and min(w.value.shape) <= MAX_REPLAY_LINEAR_RANK

    def _resolve(self, args: tuple, lossless_only: bool, depth: int) -> tuple | None:
        out: list = []
        for a in args:
            if isinstance(a, TensorRef):
                node = self._free(a.key, a.lineage, lossless_only, depth)
                if node is None:
                    return None
                out.append(node)
            elif isinstance(a, ParamRef):
                out.append(Const(a.value))
            elif isinstance(a, tuple) and a and all(isinstance(x, (TensorRef, ParamRef)) for x in a):
                sub = self._resolve(a, lossless_only, depth)
                if sub is None:
                    return None
                out.append(sub)
            else:
                out.append(a)
        return tuple(out)

    # P2 -------------------------------------------------------------------------------------------
    def chain(self, t: torch.Tensor) -> tuple[list[Lineage], torch.Tensor]:
        """Follow casts and views back from ``t`` while the inputs live: the ops (outermost first) and the live
        tensor they start from."""
        ops: list[Lineage] = []
        cur = t
        while True:
            lin = lineage_of(cur)
            if not self._unary(lin):
                return ops, cur
            src = lin.args[0].tensor()
            if src is None:
                return ops, cur
            ops.append(lin)
            cur = src
            if self.lookup(storage_key(cur)) is not None:
                return ops, cur

    def reach(self, ref: TensorRef) -> tuple[list[Lineage], torch.Tensor] | None:
        """From a (maybe dead) argument, follow casts and views back to a live tensor: ops and that tensor."""
        ops: list[Lineage] = []
        while True:
            t = ref.tensor()
            if t is not None:
                more, src = self.chain(t)
                return ops + more, src
            lin = ref.lineage
            if not self._unary(lin):
                return None
            ops.append(lin)
            ref = lin.args[0]

    @staticmethod
    def _unary(lin: Lineage | None) -> bool:
        """A cast or view (``UNARY``) of one tensor: what P2 chains and the loss head's input may pass through."""
        return lin is not None and lin.name in UNARY and _one_input(lin)

    @staticmethod
    def replay_chain(ops: list[Lineage], inner: Node) -> Node:
        node = inner
        for lin in reversed(ops):
            node = Replay.of(lin, (node,) + tuple(lin.args[1:]), dict(lin.kwargs))
        return node

    # P3 -------------------------------------------------------------------------------------------
    def lora_part(self, t: torch.Tensor, frozen: torch.Tensor | None = None) -> Node | None:
        """A node computing L(branches) in ``t``'s layout when ``t`` is a linear function L of tensors
        ``base + branch`` (each ``branch`` a lossless free recipe: peft's ``lora_B(lora_A(x)) * scaling`` from
        the kept ``x·A``); else None. L may be casts (skipped: the branch stays in its own dtype) and views,
        negation, ``getitem``, ``cat``, sums of carried terms and products with a lossless free factor: RoPE's
        ``q*cos + rotate_half(q)*sin`` carries q's LoRA part to the q that SDPA saves.

        Decoding ``stored + part`` gives back the tensor whatever ``part`` is (the engine stores ``t - part``), as
        long as forward and backward evaluate the same node; linearity is what makes the stored part the frozen
        one, whose range the LoRA part does not widen. So the part need not be the branch's exact value, and is
        made cheap (NOTE [LoRA part]): each branch is evaluated once however often L reads it, with peft's scaling
        folded into ``B``, and in bf16 for a bf16 ``t``.

        ``frozen``: a live operand of the LoRA sum (NOTE [Frozen term] in tracking.py) that must not be taken for
        the branch, whatever recipe it has."""
        return self._part(t, frozen)[0]

    def _part(self, t: torch.Tensor, frozen: torch.Tensor | None) -> tuple[Node | None, dict]:
        part_dtype = torch.bfloat16 if t.dtype == torch.bfloat16 else None
        memo = {_NOT_BRANCH: frozen} if frozen is not None else {}
        part = self._carry(lineage_of(t), MAX_DEPTH, memo, part_dtype, tuple(t.stride()))
        return (fuse_lora_parts(fuse_rope(part), {}) if part is not None else None), memo

    def rope_frozen_part(self, t: torch.Tensor, frozen: torch.Tensor) -> RopePart | None:
        """The :class:`RopePart` of ``t`` when ``t`` is RoPE of a projection's output ``frozen + branch`` viewed as
        heads (NOTE [Frozen term] in tracking.py, rule 4): every LoRA sum the part's walk passed had ``frozen`` as
        its other term, and ``frozen`` is the dense (B, T, H·D) buffer whose (B, H, T, D) view has ``t``'s layout,
        so :class:`RopeRebuild` of its decode gives ``t`` back; else None."""
        if t.dim() != 4 or frozen.dim() != 3 or frozen.dtype != t.dtype or not frozen.is_contiguous():
            return None
        b, h, n, d = t.shape
        if tuple(frozen.shape) != (b, n, h * d):
            return None
        heads = frozen.view(b, n, h, d).transpose(1, 2).stride()  # what the rebuild gives; a size-1 dim's is free
        if any(size > 1 and x != y for size, x, y in zip(t.shape, heads, t.stride())):
            return None
        part, memo = self._part(t, frozen)
        sums = memo.get(_FROZEN_SUMS)
        return part if type(part) is RopePart and sums and all(sums) else None

    def _carry(self, lin: Lineage | None, depth: int, memo: dict, part_dtype: torch.dtype | None,
               stride: tuple) -> Node | None:
        """The part of the tensor ``lin`` made, whose strides are ``stride`` (views replayed on a part must find
        the layout they were made on)."""
        if lin is None or depth == 0:
            return None
        name, args, kwargs = lin.name, lin.args, lin.kwargs
        if (name in UNARY or name == "neg") and _one_input(lin):  # through the memo: RoPE reads q twice
            inner = self._carried(args[0], depth, memo, part_dtype)  # views and casts cost no depth, as before
            if inner is None:
                return None
            if name in CASTS:
                return _cast_layout(inner, args[0].key, stride)
            return Replay.of(lin, (inner,) + tuple(args[1:]), dict(kwargs))
        split = self._lora_branch(lin, memo, part_dtype)
        if split is not None:
            return split
        if name == "cat" and args and isinstance(args[0], tuple) and all(isinstance(a, TensorRef) for a in args[0]) \
                and not _holds_tensors(args[1:] + tuple(kwargs.values())):
            # empty parts add nothing: Hugging Face's KV cache concatenates each new k/v to an empty past
            parts = [self._carried(a, depth - 1, memo, part_dtype) for a in args[0] if math.prod(a.key[2])]
            if not parts or any(p is None for p in parts):
                return None
            return Replay.of(lin, (tuple(parts),) + tuple(args[1:]), dict(kwargs))
        if len(args) != 2 or kwargs:
            return None
        if name in ("add", "sub"):  # both terms must carry: a term without a LoRA part would be an offset
            terms = [self._carried(a, depth - 1, memo, part_dtype) if isinstance(a, TensorRef) else None
                     for a in args]
            return None if None in terms else Replay.of(lin, tuple(terms), {})
        if name in ("mul", "div", "truediv"):
            for i in ((0, 1) if name == "mul" else (0,)):
                x, f = args[i], args[1 - i]
                factor = self._factor(f, x, depth - 1)
                inner = self._carried(x, depth - 1, memo, part_dtype) if factor is not None else None
                if inner is not None:
                    return Replay.of(lin, (inner, factor) if i == 0 else (factor, inner), {})
        return None

    def _carried(self, ref: Any, depth: int, memo: dict, part_dtype: torch.dtype | None) -> Node | None:
        """:meth:`_carry` of an argument; one shared node per tensor (RoPE reads q twice)."""
        if not isinstance(ref, TensorRef):
            return None
        if ref.key not in memo:
            node = self._carry(ref.lineage, depth, memo, part_dtype, ref.key[3])
            memo[ref.key] = node if node is None or isinstance(node, Shared) else Shared(node)
        return memo[ref.key]

    def _factor(self, f: Any, x: Any, depth: int) -> Any:
        """A product's other operand as a lossless node or number (None if it is neither, or is ``x`` itself)."""
        if isinstance(f, (int, float)) and not isinstance(f, bool):
            return f
        if isinstance(f, ParamRef):
            return Const(f.value)
        if isinstance(f, TensorRef) and isinstance(x, TensorRef) and f.key[0] != x.key[0]:
            return self._free(f.key, f.lineage, True, depth)
        return None

    def _lora_branch(self, lin: Lineage, memo: dict, part_dtype: torch.dtype | None) -> Node | None:
        """If ``lin`` is ``base + branch`` with ``branch`` a lossless free recipe, the branch made cheap
        (:func:`cheap_branch`); one node per branch tensor in ``memo``."""
        if lin.name != "add" or len(lin.args) < 2 or lin.kwargs:
            return None
        frozen = memo.get(_NOT_BRANCH)
        for other in lin.args[:2]:
            if isinstance(other, TensorRef) and other.lineage is not None \
                    and (frozen is None or other.tensor() is not frozen):
                key = ("branch", other.key)
                if key not in memo:
                    branch = self._free(other.key, other.lineage, True, MAX_DEPTH)
                    memo[key] = cheap_branch(branch, part_dtype) if isinstance(branch, Replay) else None
                if memo[key] is not None:
                    if frozen is not None:  # was the frozen term this sum's other operand? (rope_frozen_part)
                        memo.setdefault(_FROZEN_SUMS, []).append(
                            any(isinstance(a, TensorRef) and a.tensor() is frozen for a in lin.args[:2]))
                    return memo[key]
        return None

    @staticmethod
    def frozen_operand(t: torch.Tensor, frozen: torch.Tensor) -> bool:
        """Is ``t`` casts and views of a sum one of whose two operands is ``frozen`` (NOTE [Frozen term] rule 2;
        the caller has checked that ``frozen`` has the layout of the tensor ``t`` views)? ``frozen`` viewed as
        ``t`` then decodes to ``t`` minus the sum's other operand, as ``t - part`` would."""
        lin = lineage_of(t)
        for _ in range(MAX_DEPTH):
            if lin is None or lin.name not in UNARY or not _one_input(lin):
                break
            lin = lin.args[0].lineage
        return (lin is not None and lin.name == "add" and len(lin.args) == 2 and not lin.kwargs
                and any(isinstance(a, TensorRef) and a.tensor() is frozen for a in lin.args))

    @staticmethod
    def lora_rebuild(base: Node, branch: Node, dtype: torch.dtype, fused: bool = False) -> Node:
        return LoraRebuild(base, branch, dtype, fused)


_NOT_BRANCH = ("not a branch",)  # Planner.lora_part's memo key for the frozen operand
_FROZEN_SUMS = ("frozen sums",)  # ... and for whether each LoRA sum it passed had that operand


def _contiguous_strides(shape: tuple) -> tuple:
    out, step = [], 1
    for n in reversed(shape):
        out.append(step)
        step *= n
    return tuple(reversed(out))


def _cast_layout(inner: Node, src_key: tuple, stride: tuple) -> Node | None:
    """A skipped cast's part (the part keeps its own dtype) with the layout the cast gave: a cast copies a
    non-dense tensor (an expanded k/v) into a contiguous one, and views replayed after it expect that layout."""
    if src_key[3] == stride:
        return inner
    if stride == _contiguous_strides(src_key[2]):
        return Replay(torch.Tensor.contiguous, "contiguous", (inner,), {})
    return None


# NOTE [LoRA part]
#   P3 stores ``t - part`` and decodes ``stored + part``; any part does, as long as forward and backward evaluate the
#   same node, so the part is made cheap rather than exact. peft's branch ``lora_B(x·A) * s`` is fp32 (peft keeps the
#   adapters in fp32), T x N: evaluated as written it is a K = r matmul writing fp32 and a pass for the scaling,
#   and RoPE's ``q*cos + rotate_half(q)*sin`` read it three times (q, and each half). On 8 Llama-2-7B-shaped layers
#   at 4 x 1024 tokens these fp32 passes were most of the 49 ms of GPU work a step ``intra_inter`` added (H200,
#   session 9). Now the branch is one node per tensor however often L reads it, ``s`` is folded into ``B`` (an
#   N x r op), and for a bf16 ``t`` the matmul reads bf16 copies of ``x·A`` and ``s·B`` and writes bf16: the part
#   is then within bf16 rounding of the branch (what the stored frozen part keeps of the LoRA part), and L runs
#   on half the bytes. fp16 and fp32 tensors keep the branch's dtype: an fp16 part could overflow where fp32 does
#   not; what is rebuilt with it is cast back to the saved tensor's dtype (``LoraRebuild``'s dtype, ``_as_base`` for
#   q and k: session 47 found an fp16 model's q and k decoded in fp32, which stopped the CPU's SDPA replay).
def _scaled(w: torch.Tensor, s: float, dtype: torch.dtype | None) -> torch.Tensor:
    """``w * s`` in ``dtype`` (the weight's own when None): a LoRA factor with its scaling folded in."""
    out = w * s
    return out if dtype is None else out.to(dtype)


def _cast(x: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return x if dtype is None else x.to(dtype)


def cheap_branch(branch: Replay, dtype: torch.dtype | None) -> Node:
    """A P3 branch ``linear(x, W) * s`` (either order, ``s`` a number, ``W`` a parameter, no bias) as
    ``linear(x, s * W)``, in ``dtype`` when one is given (NOTE [LoRA part]); any other branch as it is."""
    if branch.name != "mul" or len(branch.args) != 2 or branch.kwargs:
        return branch
    for lin, s in (branch.args, branch.args[::-1]):
        if type(lin) is Replay and lin.name == "linear" and not lin.kwargs and isinstance(s, (int, float)) \
                and not isinstance(s, bool) and len(lin.args) in (2, 3) and isinstance(lin.args[1], Const) \
                and (len(lin.args) == 2 or lin.args[2] is None) and isinstance(lin.args[0], Node):
            x = lin.args[0] if dtype is None else Replay(_cast, "cast", (lin.args[0], dtype), {})
            w = Replay(_scaled, "scaled", (lin.args[1], s, dtype), {})
            return Replay(lin.func, "linear", (x, w), {}, lin.autocast)
    return branch


# NOTE [RoPE part]
#   For q and k, L is Hugging Face's rotary embedding ``y*cos + rotate_half(y)*sin`` of the projection's output
#   viewed as heads, ``y = (x·A)·(s·B)``: replayed op by op, ten passes over a T x N tensor a part (8.7 ms of a 170
#   ms backward at 1 x 8192 tokens on 8 Llama-2-7B-shaped layers, H200, session 11), once in the forward and once in
#   the backward. :func:`fuse_rope` finds that expression in a part and evaluates it as one kernel
#   on CUDA (``kernels/rope_part.py``: ``rotate_half`` moves and negates columns of ``B``'s rows, so both terms are
#   K = r dots), computed in fp32 and rounded once; on CPU, and for shapes the kernel does not take, as the same ops
#   as before. A part is anything the forward and the backward evaluate alike (NOTE [LoRA part]); the path is
#   chosen by devices, dtypes and shapes alone, so both take the same one. The cheap branch's casts of ``x·A`` and
#   ``s·B`` (:func:`cheap_branch`) go into the kernel too (``rope_part.rope_lora_part``: the same roundings as
#   torch's, so the same bits): three torch calls fewer a part, each ~30 us of the H200 host's time (session 14).
class RopePart(Replay):
    """``rope(p @ w.T)`` in one pass (NOTE [RoPE part]); ``view``: the (B, T, H, D) view the projection's output
    took, maybe with one -1. Where ``p`` and ``w`` are the cheap branch's casts of ``x·A`` and ``s·B``
    (:func:`cheap_branch`), the node reads ``x·A`` and ``B`` themselves and the kernel casts them, to the same bits
    (``rope_part.rope_lora_part``)."""

    def __init__(self, p: Node, w: Node, cos: Node, sin: Node, view: tuple):
        cast, scaled = _op(p, "cast", 2), _op(w, "scaled", 3)
        if cast is not None and scaled is not None and cast.args[1] is not None and cast.args[1] == scaled.args[2]:
            x, (b, s, dtype) = cast.args[0], scaled.args
            super().__init__(_rope_lora_part, "rope_part", (x, b, s, dtype, cos, sin, view), {})
        else:
            super().__init__(_rope_part, "rope_part", (p, w, cos, sin, view), {})


def _rope_shape(p: torch.Tensor, w: torch.Tensor, view: tuple) -> tuple:
    numel = p.numel() // max(p.shape[-1], 1) * w.shape[0]
    known = math.prod([n for n in view if n != -1])
    return tuple([numel // known if n == -1 else n for n in view]) if known else view


def _rope_part(p: torch.Tensor, w: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, view: tuple) -> torch.Tensor:
    return rope_part.rope_part(p, w, cos, sin, _rope_shape(p, w, view))


def _rope_lora_part(x: torch.Tensor, b: torch.Tensor, s: float, dtype: torch.dtype, cos: torch.Tensor,
                    sin: torch.Tensor, view: tuple) -> torch.Tensor:
    return rope_part.rope_lora_part(x, b, s, dtype, cos, sin, _rope_shape(x, b, view))


class RopeRebuild(Replay):
    """q or k rebuilt from its stored frozen term: ``rope(view(base + part))``, the :class:`RopePart`'s projection
    added to the decoded ``X·W`` before the rotation, as the forward rotated their sum (NOTE [Frozen term] in
    tracking.py; ``rope_part.rope_rebuild``, one pass on CUDA). Reads the part's own arguments."""

    def __init__(self, base: Node, part: RopePart):
        func = _rope_lora_rebuild if part.func is _rope_lora_part else _rope_rebuild
        super().__init__(func, "rope_rebuild", (base,) + part.args, {})


def _rope_rebuild(base: torch.Tensor, p: torch.Tensor, w: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                  view: tuple) -> torch.Tensor:
    return _as_base(rope_part.rope_rebuild(base, p, w, cos, sin, _rope_shape(p, w, view)), base)


def _rope_lora_rebuild(base: torch.Tensor, x: torch.Tensor, b: torch.Tensor, s: float, dtype: torch.dtype,
                       cos: torch.Tensor, sin: torch.Tensor, view: tuple) -> torch.Tensor:
    return _as_base(rope_part.rope_rebuild(base, x, b, cos, sin, _rope_shape(x, b, view), (dtype, s)), base)


def _as_base(out: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """A rebuilt q or k in the saved tensor's dtype, the frozen term's (``rope_frozen_part``): an fp16 model's part
    stays fp32 (NOTE [LoRA part]), which the sum and the rotation would otherwise carry into the decode."""
    return out if out.dtype == base.dtype else out.to(base.dtype)


def _unshared(n: Any) -> Any:
    while isinstance(n, Shared):
        n = n.inner
    return n


def _op(n: Any, name: str, nargs: int, kwargs: tuple = ()) -> Replay | None:
    """``n`` (through Shared) if it replays op ``name`` with ``nargs`` positional arguments and keywords among
    ``kwargs`` outside any autocast region; else None."""
    n = _unshared(n)
    if type(n) is Replay and n.name == name and len(n.args) == nargs and set(n.kwargs) <= set(kwargs) \
            and n.autocast is None:
        return n
    return None


def _heads_of_linear(y: Any) -> tuple[Node, Node, tuple] | None:
    """``(p, w, view)`` if ``y`` is ``linear(p, w).view(view).transpose(1, 2)`` with a 4-d ``view`` of a known head
    size: a projection's output as (B, H, T, D)."""
    tr = _op(y, "transpose", 3)
    if tr is None or set(tr.args[1:]) != {1, 2}:
        return None
    v = _op(tr.args[0], "view", 2)
    view = v.args[1] if v is not None else None
    if not isinstance(view, tuple) or len(view) != 4 or not all(type(n) is int for n in view) or view[3] <= 0:
        return None
    lin = _op(v.args[0], "linear", 2)
    if lin is None or not all(isinstance(a, Node) for a in lin.args):
        return None
    return lin.args[0], lin.args[1], view


def _is_rotate_half(rot: Any, y: Replay, d: int) -> bool:
    """``rot`` is ``cat((-y[..., d/2:], y[..., :d/2]), dim=-1)`` (Hugging Face's ``rotate_half``) of ``y`` itself."""
    cat = _op(rot, "cat", 1, ("dim",)) or _op(rot, "cat", 2)
    if cat is None or d % 2:
        return False
    dim = cat.args[1] if len(cat.args) == 2 else cat.kwargs.get("dim", 0)
    parts = cat.args[0]
    if dim not in (-1, 3) or not isinstance(parts, tuple) or len(parts) != 2:
        return False
    neg = _op(parts[0], "neg", 1)
    hi = _op(neg.args[0], "getitem", 2) if neg is not None else None
    lo = _op(parts[1], "getitem", 2)
    half = d // 2
    return (hi is not None and lo is not None and _unshared(hi.args[0]) is y and _unshared(lo.args[0]) is y
            and hi.args[1] == (Ellipsis, slice(half, None, None)) and lo.args[1] == (Ellipsis, slice(None, half, None)))


def fuse_rope(part: Node) -> Node:
    """``part`` as a :class:`RopePart` where it is ``y*cos + rotate_half(y)*sin`` of a projection's output ``y``
    (either operand order in each product and in the sum), maybe under views and casts (GQA's ``repeat_kv``
    expands and reshapes k) and a KV cache's ``cat`` to an empty past; else ``part`` itself (NOTE [RoPE part])."""
    top = _unshared(part)
    if type(top) is Replay and top.name in UNARY and top.args and isinstance(top.args[0], Node) \
            and not _nodes(top.args[1:] + tuple(top.kwargs.values())):
        inner = fuse_rope(top.args[0])
        if inner is top.args[0]:
            return part
        return Replay(top.func, top.name, (inner,) + top.args[1:], dict(top.kwargs), top.autocast)
    if type(top) is Replay and top.name == "cat" and top.args and isinstance(top.args[0], tuple) \
            and len(top.args[0]) == 1 and isinstance(top.args[0][0], Node):  # a KV cache's cat to an empty past
        inner = fuse_rope(top.args[0][0])
        if inner is top.args[0][0]:
            return part
        return Replay(top.func, top.name, ((inner,),) + top.args[1:], dict(top.kwargs), top.autocast)
    add = _op(part, "add", 2)
    if add is None or add.kwargs:
        return part
    for first, second in (add.args, add.args[::-1]):
        m1, m2 = _op(first, "mul", 2), _op(second, "mul", 2)
        if m1 is None or m2 is None or m1.kwargs or m2.kwargs:
            continue
        for y, cos in (m1.args, m1.args[::-1]):
            heads = _heads_of_linear(y)
            if heads is None or not isinstance(cos, Node):
                continue
            p, w, view = heads
            for rot, sin in (m2.args, m2.args[::-1]):
                if isinstance(sin, Node) and _is_rotate_half(rot, _unshared(y), view[3]):
                    return RopePart(p, w, cos, sin, view)
    return part


# NOTE [Fused LoRA part]
#   A plain part (v, gate, up: no RoPE) in its cheap form is ``linear(cast(x·A, dt), scaled(B, s, dt))`` for a 16-bit
#   ``dt``: on CUDA :class:`LoraPart` evaluates it by one kernel (kernels/lora_part.py), and where the forward
#   subtracts it from ``t`` (P3's source) or the backward adds it to the stored frozen part, the kernel forms the
#   part in registers and adds or subtracts it in the same pass (:func:`lora_subtract`, :class:`LoraRebuild`),
#   through the views the part took (SDPA's value is the projection's output viewed as heads and transposed). The
#   part is the same bits whichever of the three ways it is used, so forward and backward agree (NOTE [LoRA part]).
#   The fused combine runs only where ``t`` is those same views of a dense (..., N) buffer: the views replayed on
#   that buffer must give ``t``'s exact layout without copying, so each element meets its own part; anything else
#   materialises the part and combines as before. q/k's :class:`RopePart` combines the same way (session 17,
#   ``rope_part.rope_combine``): its buffer is the projection's (B·T, H·D) output, which the part views as heads,
#   transposed, as RoPE's output keeps; a KV cache's concatenated key is a copy, so it takes torch's sub/add.
def _lora_part(x: torch.Tensor, b: torch.Tensor, scale: float, dtype: torch.dtype) -> torch.Tensor:
    return lora_part.lora_part(x, b, scale, dtype)


class LoraPart(Replay):
    """A plain LoRA part in its cheap form, ``linear(x.to(dtype), (b * scale).to(dtype))`` (NOTE [Fused LoRA
    part]); made by :func:`fuse_lora_parts` from :func:`cheap_branch`'s nodes, with the same value on CPU."""

    def __init__(self, x: Node, b: Node, scale: float, dtype: torch.dtype):
        super().__init__(_lora_part, "lora_part", (x, b, scale, dtype), {})


_PURE_VIEWS = {"view", "transpose", "permute", "unsqueeze", "squeeze", "t", "view_as", "reshape", "flatten",
               "expand", "as_strided", "narrow", "select", "getitem"}  # checked at run time to have copied nothing


def fuse_lora_parts(node: Any, memo: dict) -> Any:
    """``node`` with every cheap plain part in it (``linear(cast(x, dt), scaled(b, s, dt))``, ``dt`` 16-bit)
    replaced by a :class:`LoraPart`; shared sub-expressions stay shared (``memo``: id -> replacement)."""
    if isinstance(node, tuple):  # ``cat``'s tensors
        out = tuple(fuse_lora_parts(a, memo) for a in node)
        return node if all(a is b for a, b in zip(out, node)) else out
    if not isinstance(node, (Replay, Shared)):
        return node
    hit = memo.get(id(node))
    if hit is not None:
        return hit[1]
    new: Any = node
    if isinstance(node, Shared):
        inner = fuse_lora_parts(node.inner, memo)
        new = node if inner is node.inner else Shared(inner)
    elif type(node) is Replay and node.name == "linear":
        cast = _op(node.args[0], "cast", 2) if len(node.args) == 2 else None
        scaled = _op(node.args[1], "scaled", 3) if cast is not None else None
        if scaled is not None and cast.args[1] in (torch.bfloat16, torch.float16) and cast.args[1] == scaled.args[2] \
                and isinstance(cast.args[0], Node) and not node.kwargs and node.autocast is None:
            new = LoraPart(cast.args[0], *scaled.args)
    elif type(node) is Replay:
        args = tuple(fuse_lora_parts(a, memo) for a in node.args)
        if any(a is not b for a, b in zip(args, node.args)):
            new = Replay(node.func, node.name, args, dict(node.kwargs), node.autocast)
    memo[id(node)] = (node, new)
    return new


def _combine_lora_part(t: torch.Tensor, part: Any, memo: dict, subtract: bool) -> torch.Tensor | None:
    """``t -/+ part`` in one kernel pass where ``part`` is (views of) a :class:`LoraPart` or a :class:`RopePart` and
    ``t`` has the layout those views give the kernel's dense buffer (NOTE [Fused LoRA part]); None where not (the
    caller materialises the part)."""
    views, n = [], _unshared(part)
    if type(n) is Bound:  # a replayed step's part: the plan's template, read with this step's entries
        memo[ENV] = n
        n = _unshared(n.template)
    while type(n) is Replay and n.name in _PURE_VIEWS and n.args and isinstance(n.args[0], Node) \
            and n.autocast is None:
        views.append(n)
        n = _unshared(n.args[0])
    fused = _fused_combine(n, t, memo, subtract)
    if fused is None:
        return None
    shape, head_view, run = fused
    numel = math.prod(shape)
    if t.untyped_storage().nbytes() < numel * t.element_size():
        return None
    flat = t.as_strided(shape, _contiguous_strides(tuple(shape)), 0)

    def viewed(y: torch.Tensor) -> torch.Tensor:
        y = head_view(y)
        for v in reversed(views):
            y = v.func(y, *(_eval(a, memo) for a in v.args[1:]), **{k: _eval(a, memo) for k, a in v.kwargs.items()})
        return y

    seen = viewed(flat)
    if seen.shape != t.shape or seen.stride() != t.stride() or seen.storage_offset() != t.storage_offset() \
            or seen.untyped_storage().data_ptr() != t.untyped_storage().data_ptr():
        return None
    return viewed(run(flat))


def _fused_combine(n: Any, t: torch.Tensor, memo: dict, subtract: bool) -> tuple | None:
    """For a part node the kernels combine: ``(shape, head_view, run)``, the dense buffer's shape, the view the part
    takes of it (identity for a plain part; heads, transposed, for a RoPE part) and ``run(buffer)``, the kernel's
    ``buffer -/+ part``; None for any other node, or operands the kernel does not take."""
    if type(n) is LoraPart and t.dtype == n.args[3]:
        xn, bn, scale, dtype = n.args
        x, b = _eval(xn, memo), _eval(bn, memo)
        if not lora_part.fusable(x, b, dtype) or not lora_part.use_triton(x):
            return None
        return (x.shape[:-1] + (b.shape[0],), lambda y: y,
                lambda flat: lora_part.lora_combine(flat, x, b, scale, dtype, subtract))
    if type(n) is not RopePart:
        return None
    args = [_eval(a, memo) for a in n.args]
    if n.func is _rope_lora_part:
        x, b, scale, dtype, cos, sin, view = args
        cast, shape = (dtype, scale), _rope_shape(x, b, view)
        takes = rope_part.lora_fusable(x, b, dtype, cos, sin, shape)
    else:
        x, b, cos, sin, view = args
        cast, shape = None, _rope_shape(x, b, view)
        takes = rope_part.fusable(x, b, cos, sin, shape)
    if not takes or not rope_part.use_triton(x) or t.dtype != rope_part.part_dtype(x, b, cos, sin, cast):
        return None
    bt, h, d = shape[0], shape[2], shape[3]
    return ((shape[0] * shape[1], h * d), lambda y: y.view(bt, shape[1], h, d).transpose(1, 2),
            lambda flat: rope_part.rope_combine(flat, x, b, cos, sin, shape, subtract, cast))


def lora_subtract(t: torch.Tensor, part: Node) -> torch.Tensor:
    """P3's stored frozen part, ``t - part`` (:func:`lora_combine`'s value, in one pass for a plain part on CUDA),
    evaluated as :func:`evaluate` does."""
    with torch.no_grad():
        return outside_autocast(_subtract, t, part)


def _subtract(t: torch.Tensor, part: Node) -> torch.Tensor:
    memo: dict = {}
    out = _combine_lora_part(t, part, memo, subtract=True)
    return out if out is not None else lora_combine(t, part.eval(memo), t.dtype, subtract=True)


class LoraRebuild(Replay):
    """P3's decode: the stored frozen part plus the LoRA part the forward subtracted (:func:`lora_combine`; NOTE
    [LoRA part]). ``fused``: let the frozen part's codec decode and add in one pass (``Entry.decode_add``; the
    policy's ``fuse``), same bits."""

    def __init__(self, base: Node, branch: Node, dtype: torch.dtype, fused: bool = False):
        super().__init__(_lora_rebuild, "lora_rebuild", (base, branch, dtype), {})
        self.fused = fused

    def eval(self, memo: dict) -> torch.Tensor:
        base, branch, dtype = self.args
        entry = base.resolve(memo) if self.fused and isinstance(base, EntryRef) else None
        if entry is not None and id(entry) not in memo:
            add = _eval(branch, memo)
            out = entry.decode_add(add, dtype)
            return out if out is not None else _lora_rebuild(base.eval(memo), add, dtype)
        stored = _eval(base, memo)
        out = _combine_lora_part(stored, branch, memo, subtract=False) if stored.dtype == dtype else None
        return out if out is not None else _lora_rebuild(stored, _eval(branch, memo), dtype)


# ------------------------------------------------------------------------------------- fused SwiGLU
def _swiglu_product(act: torch.Tensor, up: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    p = act * up
    return p if dtype is None or p.dtype == dtype else p.to(dtype)


class SwiGluProduct(Replay):
    """``(silu(gate) * up).to(dtype)`` where SiLU's output is itself a recipe entry (``silu`` of a stored gate):
    evaluated by one kernel that writes SiLU's output and the product (kernels/swiglu.py: HyC-LoRA's fused SiLU +
    Hadamard, the same bits as torch's ops). The SiLU output it wrote is handed to that entry's other readers
    (``sharing.share``), so MulBackward does not rebuild it. Made by :func:`fuse_swiglu` in every ``inter`` policy
    (since session 31; before, only where the policy set ``fuse``)."""

    def __init__(self, act: EntryRef, up: Node, dtype: torch.dtype | None):
        super().__init__(_swiglu_product, "swiglu", (act, up, dtype), {})
        self.gate = act.entry.payload.args[0]  # the SiLU recipe's input (see fuse_swiglu)

    def eval(self, memo: dict) -> torch.Tensor:
        act, up, dtype = self.args
        entry = act.resolve(memo)
        if id(entry) in memo:  # SiLU's output is at hand already: only the product is left
            return super().eval(memo)
        g, u = _eval(self.gate, memo), _eval(up, memo)
        s, p = swiglu.silu_mul(g, u, dtype)
        memo[id(entry)] = s
        sharing.share(entry, s)
        return p


_WIDEN = {"float": torch.float32, "double": torch.float64}


def fuse_swiglu(node: Node) -> Node:
    """``node`` with a SwiGLU product at its top (``mul(silu_out, up)``, maybe cast wider by ``to``/``float``,
    maybe under views) replaced by a :class:`SwiGluProduct`, where SiLU's output is a recipe entry ``silu(x)`` with no other
    arguments; else ``node`` itself. Same value, fewer passes (kernels/swiglu.py)."""
    return _under_views(node, _fuse_swiglu_top)


def _under_views(node: Node, fuse: Callable[[Node], Node]) -> Node:
    """``fuse(node)``, or, where ``node`` is a view of another node (F.linear saves a 2-D view of its input) or a
    dropout of one (NOTE [Dropout recipe]), the same view or dropout of ``fuse`` applied below it."""
    if (type(node) is Replay and node.name in UNARY and node.name not in CASTS or type(node) is DropoutApply) \
            and node.args and isinstance(node.args[0], Node):
        inner = _under_views(node.args[0], fuse)
        if inner is node.args[0]:
            return node
        return type(node)(node.func, node.name, (inner,) + node.args[1:], dict(node.kwargs), node.autocast)
    return fuse(node)


def _fuse_swiglu_top(node: Node) -> Node:
    inner, dtype = _cast_of(node)
    if inner is None:
        inner, dtype = node, None
    if not (type(inner) is Replay and inner.name == "mul" and len(inner.args) == 2 and not inner.kwargs):
        return node
    for i in (0, 1):
        act, up = inner.args[i], inner.args[1 - i]
        if isinstance(act, EntryRef) and isinstance(up, Node) and _is_silu_recipe(act.entry):
            return SwiGluProduct(act, up, dtype)
    return node


# ------------------------------------------------------------------------- a widened input read in 16 bits
def narrowed(node: Node) -> Node | None:
    """``node``, a recipe that widens a 16-bit tensor to fp32 under views (peft's fp32 copy of a LoRA input, as saved:
    ``as_strided(x.to(fp32))``, ``as_strided(NormTail(..., wide=fp32))``, ``as_strided(SwiGluProduct(..., fp32))``),
    without that widening: the same values in 16 bits, for a reader that widens them itself (NOTE [LoRA branch] rule
    5); None for any other recipe. Asked once per plan template (kept on the node, never changed once built)."""
    cached = node.__dict__.get("_narrowed", _MISSING)
    if cached is _MISSING:
        cached = node._narrowed = _narrowed(node)
    return cached


_MISSING = object()


def _narrowed(node: Any) -> Node | None:
    if type(node) is NormTail and node.autocast is None and node.args[4] == torch.float32:
        a, b, w, half, _ = node.args
        return NormTail(a, b, w, half, half)
    if type(node) is SwiGluProduct and node.autocast is None and node.args[2] == torch.float32:
        narrow = copy.copy(node)  # (its SiLU input as read from the recorded entry at its making)
        narrow.__dict__.pop("_key", None)
        narrow.__dict__.pop("_narrowed", None)
        narrow.args = node.args[:2] + (None,)
        return narrow
    if type(node) is not Replay or node.autocast is not None or not node.args or not isinstance(node.args[0], Node):
        return None
    inner, dtype = _cast_of(node)
    if inner is not None:
        return inner if dtype == torch.float32 and isinstance(inner, Node) else None
    if node.name not in _PURE_VIEWS or node.kwargs or any(isinstance(a, (Node, torch.dtype)) for a in node.args[1:]):
        return None
    below = _narrowed(node.args[0])
    if below is None:
        return None
    if node.name == "as_strided":  # indexes storage: the same elements only where the 16-bit value is laid as the
        return Replay(_as_strided_narrow, "as_strided_narrow", (below,) + node.args[1:], {})  # cast's output was
    return Replay(node.func, node.name, (below,) + node.args[1:], {})


def _as_strided_narrow(x: torch.Tensor, *args: Any) -> torch.Tensor:
    """``as_strided`` of a narrowed value (:func:`narrowed`): the recorded cast's output was a fresh dense tensor,
    so the recorded sizes, strides and offset index it as they index ``x`` where ``x`` is contiguous from its
    storage's start; otherwise ``x`` is widened first, as recorded (the reader then gets fp32)."""
    if not (x.is_contiguous() and x.storage_offset() == 0):
        x = x.to(torch.float32)
    return torch.as_strided(x, *args)


# ------------------------------------------------------------------------------------ fused RMSNorm tail
def _tail_operands(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor, half: torch.dtype,
                   wide: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, rstd)`` of a norm tail's ``a * b`` (the recorded ``mul`` may have had rstd first)."""
    return (b, a) if norm_tail.fusable(b, a, w, half, wide) else (a, b)


def _norm_tail(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor, half: torch.dtype,
               wide: torch.dtype) -> torch.Tensor:
    return norm_tail.norm_tail(*_tail_operands(a, b, w, half, wide), w, half, wide)


class NormTail(Replay):
    """``(w * (a * b).to(half)).to(wide)`` with ``w`` a parameter: an RMSNorm's tail (``a * b`` is ``x32 * rstd``)
    cast wider, as peft's fp32 copy of a LoRA input after a Llama RMSNorm is. Evaluated by one kernel on CUDA where
    the operands fit it (kernels/norm_tail.py, the same bits as torch's ops), else by the same ops as the
    expression it replaces. Made by :func:`fuse_norm_tail` in every ``inter`` policy, as :class:`RopePart` is."""

    def __init__(self, a: Node, b: Node, w: Const, half: torch.dtype, wide: torch.dtype):
        super().__init__(_norm_tail, "norm_tail", (a, b, w, half, wide), {})


def fuse_norm_tail(node: Node) -> Node:
    """``node`` with ``(w * (a * b).to(half)).to(wide)`` at its top (maybe under views; either operand order of
    each ``mul``; ``w`` a parameter, ``a`` and ``b`` nodes) replaced by a :class:`NormTail`; else ``node`` itself."""
    return _under_views(node, _fuse_norm_tail_top)


def _fuse_norm_tail_top(node: Node) -> Node:
    top, wide = _cast_of(node)
    top = _op(top, "mul", 2) if top is not None and node.autocast is None else None
    if top is None:
        return node
    for w, cast in (top.args, top.args[::-1]):
        if not (isinstance(w, Const) and isinstance(w.value, torch.Tensor)):
            continue
        prod, half = _cast_of(cast)
        prod = _op(prod, "mul", 2) if prod is not None and cast.autocast is None else None
        if prod is not None and all(isinstance(a, Node) for a in prod.args):
            return NormTail(*prod.args, w, half, wide)
    return node


# --------------------------------------------------------------------------- log-softmax of widened logits
def _widened(x: torch.Tensor) -> torch.Tensor:
    """``x.to(torch.float32)``: one vectorized pass on CUDA where kernels/widen.py takes ``x``, else torch's cast."""
    return widen.cast(x) if widen.fits(torch.float32, x) else x.to(torch.float32)


def _log_softmax_wide(x: torch.Tensor, dim: int) -> torch.Tensor:
    if log_softmax.fusable(x, dim):
        return log_softmax.log_softmax(x, dim)  # the kernel on CUDA, torch's ops elsewhere
    return torch.log_softmax(_widened(x), dim)


class LogSoftmaxWide(Replay):
    """``log_softmax(x.float(), dim)``: the cross-entropy head's rebuild from 16-bit logits in one pass that reads
    them as they are, with torch's bits (kernels/log_softmax.py), where the kernel takes them; else the cast (one
    widening pass on CUDA) and torch's ``log_softmax``. Made by :func:`fuse_log_softmax`."""

    def __init__(self, x: Node, dim: int):
        super().__init__(_log_softmax_wide, "log_softmax_wide", (x, dim), {})


_LOGICAL_VIEWS = _PURE_VIEWS - {"as_strided"}  # views that index elements, not storage: they commute with a cast


def fuse_log_softmax(node: Node) -> Node:
    """``log_softmax(c, dim)`` whose input ``c`` is an fp32 cast of a node ``x`` (under views that commute with it,
    maybe cast to fp32 again) replaced by a :class:`LogSoftmaxWide` of those views of ``x``; else ``node``."""
    if not (type(node) is Replay and node.name == "log_softmax" and len(node.args) == 2 and not node.kwargs
            and node.autocast is None and isinstance(node.args[1], int)):
        return node
    x = _below_widening(node.args[0])
    return LogSoftmaxWide(x, node.args[1]) if x is not None else node


def _below_widening(node: Any) -> Node | None:
    """``x`` with ``node``'s views where ``node`` is ``x`` cast to fp32 under those views (the deepest such ``x``:
    Hugging Face's ``logits.float().view(-1, V)``, cast to fp32 once more by the recipe), else None."""
    if type(node) is not Replay or node.autocast is not None:
        return None
    inner, dtype = _cast_of(node)
    if inner is not None:
        if dtype != torch.float32:
            return None
        below = _below_widening(inner)
        return below if below is not None else inner
    if node.name in _LOGICAL_VIEWS and node.args and isinstance(node.args[0], Node) and not node.kwargs \
            and not any(isinstance(a, torch.dtype) for a in node.args[1:]):
        below = _below_widening(node.args[0])
        if below is not None:
            return Replay(node.func, node.name, (below,) + node.args[1:], {}, None)
    return None


def _cast_of(node: Node) -> tuple[Node | None, torch.dtype | None]:
    """``(x, dtype)`` if ``node`` is ``x.to(dtype)`` (positional or keyword dtype, nothing else) or ``x.float()``
    / ``x.double()``; else ``(None, None)``."""
    if type(node) is not Replay or not node.args:
        return None, None
    args, kwargs = node.args, node.kwargs
    if node.name == "to":
        if len(args) == 2 and not kwargs and isinstance(args[1], torch.dtype):
            return args[0], args[1]
        if len(args) == 1 and set(kwargs) == {"dtype"} and isinstance(kwargs["dtype"], torch.dtype):
            return args[0], kwargs["dtype"]
    elif node.name in _WIDEN and len(args) == 1 and not kwargs:
        return args[0], _WIDEN[node.name]
    return None, None


def _is_silu_recipe(entry: Any) -> bool:
    """A recipe entry ``silu(x)`` (x a node; no other arguments), decoded in the layout it was saved in."""
    rec = entry.payload
    return (getattr(entry, "perm", None) is None and type(rec) is Replay and rec.name == "silu"
            and len(rec.args) == 1 and isinstance(rec.args[0], Node)
            and all(v is False for v in rec.kwargs.values()))
