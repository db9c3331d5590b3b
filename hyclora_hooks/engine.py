"""``compress(policy)``: the saved-tensor hooks that classify, deduplicate, encode and account.

NOTE [Lifetimes]
  1. ``pack`` returns an :class:`Entry` (a parameter comes back as itself). Only autograd's saved variables hold
     entries strongly, so an entry, and the payload it owns, dies with the last node that saved it.
  2. Dedupe: a table maps (storage, offset, shape, strides, dtype) to a *weak* reference to the entry, for the
     forward (dropped on exit). Its key holds a weak reference to the storage (``lineage.StorageKey``), which keeps
     the storage's address from being reused while the key exists: a new tensor can never be taken for a freed one.
  3. Entries reach the context only through a weak reference to the accountant, which an entry's ``__del__``
     tells its tokens are gone. A graph kept after the context neither keeps the context alive nor needs it:
     decoding needs only codec and payload. (Not ``weakref.finalize``: five objects per entry, ~345 entries a
     step for 8 Llama layers, fed Python's cyclic GC, whose collections set the slowest steps' host time on the
     H200; docs/benchmarks.md session 13.)
  4. ``unpack`` is pure: it decodes the payload every time, never changes it, and returns the same values
     however often backward runs (``retain_graph=True``).
  5. On exit, normal or through an exception, the saved-tensor hooks, the op-tracking mode and the global module
     hooks are removed in reverse order of entry. Entries already handed to autograd stay valid (rule 3).
  6. Parameters, buffers and views of them (matched by storage) are returned unchanged and never counted.
  7. A pack while autograd runs a backward (reentrant checkpoint recomputing its region inside backward, or a
     double backward) returns the tensor unchanged and is only counted: such tensors live for one inner
     backward, and compressing a recomputed region would compress it a second time (docs/checkpointing.md).
  8. A decoded tensor has the saved tensor's strides when those were a permutation of a contiguous layout: the
     codec sees the memory-order view and decode permutes back. Some backward kernels read a saved tensor's
     layout, not only its values (CUDA flash attention's backward with a contiguous copy of its transposed
     output gave LoRA-gradient cosine 0.61 on an H100, bit-identical with every stream synchronised). The same
     holds for SDPA's output rebuilt by a recipe (``attention._with_strides``).
  9. A device encode does not wait for the device to count non-finite values: the count is read later, when
     its event has completed, while more than ``MAX_PENDING_BYTES`` of sources wait, or on exit (NOTE [Deferred
     non-finite check] in ``kernels/nonfinite.py``). A late find grows the entry's stored bytes. The queue is looked
     at after each admission (asking at every pack cost an event query per pack, ~470 a forward).
 10. Within one backward, the readers of one entry share one decode, kept from the first reader to the last
     (NOTE [Shared decodes] in ``sharing.py``); recipes that compute the same thing are one entry.
 11. A saved leaf that requires grad and is no parameter (a user's input; the embedding output Hugging Face makes
     require grad for gradient checkpointing), or a view of one, is kept as is: the graph's gradient accumulator
     holds it for the whole step, so a compressed copy would add bytes, and the accountant would miss the original.
     The same holds for such a leaf as a recipe's source (an RMSNorm's fp32 cast of it).
 12. A codec whose statistics are per channel over tokens (``Codec.channels_after_tokens``) sees, in the
     memory-order view of rule 8, every dim after the token dim (the saved tensor's dim -2) merged into channels.
     SDPA's q/k/v are ``(B, H, T, D)`` views of ``(B, T, H, D)`` memory: as rows x D, 64 consecutive rows were 7
     tokens of 9 heads, one step shared by heads of different scales (SmolLM2 q/k at 4 bits: relative error 0.071
     against 0.046 per head over 64 tokens). Decode reshapes back, then permutes.
 13. Encodes and decodes run with the saved tensor's CUDA device current. Triton kernels (and the direct launches of
     ``kernels/launch.py``) go to the current device's stream, and a forward runs on the caller's current device:
     with a model on another GPU than the current one (one process spreading a model over GPUs), an encode would
     run on the wrong device's stream, unordered with the work that made its input (``tools/check_multi_device.py``).
 14. While a step records or replays (NOTE [Replay] in ``replay.py``), the context also holds the entries it made,
     in order, until it exits: their creation order numbers a recipe template's placeholders. After the exit only
     autograd holds them (rule 1).
 15. An entry holds no tensor with autograd history: ``keep`` holds ``t.detach()`` (the same storage and version
     counter). An op's output saved by the op's own node (an ``exp``'s or ``rsqrt``'s result, SDPA's output) has that
     node as its ``grad_fn``, and the node holds the entry through its saved variable, a C++ reference Python's
     collector cannot see: held as is, a graph dropped without a backward was never freed, every entry of the
     step with it (session 34; ``tests/test_sharing.py``). Unpacking loses nothing: autograd gives the tensor the
     unpack hook returns its grad_fn itself (``SavedVariable::unpack``).
"""

from __future__ import annotations

import dataclasses
import weakref
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from . import gcpause, head, lineage, replay, sharing
from .accounting import Accountant, Report
from .attention import SdpaRecompute, sdpa_call_args
from .codecs import Codec
from .codecs.calibration import calibration_scope
from .codecs.keep import Keep
from .errors import HycloraTypeError, user_error
from .kernels.launch import cuda_device as _cuda_device  # the current CUDA device, cheaply
from .kernels.nonfinite import Nonfinite, PendingChecks, collecting
from .policy import KEEP, Policy, Route, load_policy
from .region_sums import RegionSums
from .sites import SaveSite, classify, is_trainable_module
from .tracking import FROZEN, FROZEN_ROPE, ModuleTracker, OpTracker, ParamRegistry, checkpoint_region
from .units import Units, plan_units

# Sources a device encode may keep alive while its non-finite count is still queued (NOTE [Lifetimes] rule 9).
MAX_PENDING_BYTES = 256 << 20

_MISS = object()  # a replayed pack's check failed (NOTE [Replay] rule 4)

_graph_task_id = sharing.graph_task_id
autocast_on = lineage.autocast_on
UNIT_PACKS = True  # False: a replayed unit's packs take the long way too (units.py rule 9 against its absence)


class Recompute(Codec):
    """Internal codec of recipe entries: the payload is a :class:`~hyclora_hooks.lineage.Node`; holds no bytes
    of its own (its leaves are entries, accounted where they were stored)."""

    name = "recompute"

    def decode(self, payload: lineage.Node) -> torch.Tensor:
        return lineage.evaluate(payload)

    def nbytes(self, payload: Any) -> int:
        return 0


RECOMPUTE = Recompute()


class Entry:
    """What autograd holds for one saved tensor: the codec and its payload (see NOTE [Lifetimes]).

    ``lossless`` says whether decoding gives back the exact data (a recipe is lossless when all its leaves are).
    ``readers``: saved-variable slots and recipes the entry was handed to (NOTE [Shared decodes]); ``narrow``: how
    many of them take a replayed recipe's value before its widening to fp32 (NOTE [LoRA branch] rule 5), which a
    decode gives where all of them do.
    """

    __slots__ = ("codec", "payload", "site", "lossless", "cost", "perm", "shape", "readers", "narrow", "device",
                 "_release", "_gc", "__weakref__")

    def __init__(self, codec: Codec, payload: Any, site: SaveSite, lossless: bool | None = None, cost: int = 0,
                 perm: tuple[int, ...] | None = None, shape: tuple[int, ...] | None = None,
                 device: int | None = None):
        self.codec, self.payload, self.site = codec, payload, site
        self.device = device  # the saved tensor's CUDA device index, None off CUDA (NOTE [Lifetimes] rule 13)
        self.lossless = codec.lossless if lossless is None else lossless
        self.cost = cost  # ops a decode replays (0 for stored data; see lineage.MAX_COST)
        self.perm = perm  # NOTE [Lifetimes] rule 8: the permutation that restores the saved tensor's strides
        self.shape = shape  # rule 12: the memory-order shape, where the codec saw trailing dims merged
        self.readers = self.narrow = 0
        self._release: tuple | None = None  # (weak reference to the accountant, its tokens...): rule 3

    def hold(self, acct_ref: weakref.ref, token: Any) -> None:
        """Release ``token`` with the accountant when this entry dies (a recipe entry may carry several)."""
        self._release = (acct_ref, token) if self._release is None else self._release + (token,)

    def __del__(self) -> None:
        release = self._release
        if release is not None:
            acct = release[0]()
            if acct is not None:
                for token in release[1:]:
                    acct.release(token)

    def _restore(self, out: torch.Tensor) -> torch.Tensor:
        """A codec's output in the saved tensor's shape and strides (rules 8 and 12)."""
        if self.shape is not None:
            out = out.view(self.shape)
        return out if self.perm is None else out.permute(self.perm)

    def decode(self) -> torch.Tensor:
        if self.narrow and self.narrow == self.readers and type(self.payload) is lineage.Bound:  # NOTE [LoRA branch]
            node = lineage.narrowed(self.payload.template)  # rule 5: every reader widens the 16-bit value itself
            if node is not None:
                return lineage.evaluate(lineage.Bound(node, self.payload.entries, self.payload.caches))
        return self._restore(self.codec.decode(self.payload))

    def decode_add(self, add: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
        """``decode()`` plus ``add`` (same shape), summed in fp32 and rounded once to ``dtype``, in one pass where
        the codec can fuse it (``Codec.decode_add``); None where it cannot (the caller adds)."""
        if getattr(self.payload, "dtype", None) != dtype:  # the sum is rounded to the stored tensor's dtype
            return None
        if self.perm is not None:  # the codec holds the memory-order layout: give it the branch in that order
            add = add.permute(_inverse(self.perm))
        if self.shape is not None:
            add = add.reshape(self.payload.shape)
        out = self.codec.decode_add(self.payload, add)
        return None if out is None else self._restore(out)

    def decode_to(self, dtype: torch.dtype) -> torch.Tensor | None:
        """``decode().to(dtype)``, the same bits and layout, in one pass where the codec has one
        (``Codec.decode_to``); None where not (the caller decodes and casts)."""
        out = self.codec.decode_to(self.payload, dtype)
        return None if out is None else self._restore(out)

    def value(self) -> torch.Tensor:
        """The decoded tensor, shared with this entry's other readers in one backward (NOTE [Lifetimes] rule 10)."""
        return self.decode() if self.readers < 2 else sharing.read(self, self.decode)


def memory_order(t: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...] | None]:
    """A dense but permuted tensor (a transposed view such as SDPA's output) as its contiguous memory-order view,
    and the permutation that turns a contiguous decode back into the saved strides (NOTE [Lifetimes] rule 8)."""
    if t.is_contiguous() or t.dim() < 2:
        return t, None
    order = sorted(range(t.dim()), key=lambda i: (-t.stride(i), -t.shape[i]))
    mem = t.permute(order)
    if not mem.is_contiguous():
        return t, None  # not dense (a slice, an expanded view): the codec copies what it shows
    return mem, _inverse(order)


def codec_view(t: torch.Tensor, codec: Codec) -> tuple[torch.Tensor, tuple[int, ...] | None,
                                                     tuple[int, ...] | None]:
    """What a lossy codec encodes for the saved ``t``: its memory-order view (NOTE [Lifetimes] rule 8) with, for
    a codec with ``channels_after_tokens``, the dims after the token dim merged (rule 12); the permutation and the
    memory-order shape that :meth:`Entry._restore` undoes (None where nothing is to undo)."""
    mem, perm = memory_order(t)
    if not codec.channels_after_tokens or t.dim() < 3 or (perm is None and not t.is_contiguous()):
        return mem, perm, None
    order = _inverse(perm) if perm is not None else tuple(range(t.dim()))  # mem = t.permute(order)
    tokens = order.index(t.dim() - 2)
    if tokens >= t.dim() - 2:  # at most one dim after the tokens: already rows x channels
        return mem, perm, None
    return mem.reshape(*mem.shape[:tokens + 1], -1), perm, tuple(mem.shape)


def _inverse(perm: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """The permutation that undoes ``perm``: ``x.permute(perm).permute(_inverse(perm))`` is ``x``."""
    return tuple(sorted(range(len(perm)), key=lambda i: perm[i]))


_LEAF_KEPT = "a leaf that requires grad: autograd's graph holds it anyway"
_FUSED_HEAD = "fused head"  # the accountant's label for what the loss op saved in place of the kept gradient
_LOSS_GRAD_KEPT = "the loss's gradient for the lm_head's input, formed in the forward (NOTE [Fused head])"


def _held_by_graph(t: torch.Tensor) -> bool:
    """A non-parameter leaf that requires grad (or a view of one): the graph's gradient accumulator holds it."""
    if not t.requires_grad:
        return False
    base = t._base if t._base is not None else t
    return base.is_leaf and base.requires_grad


def _unpack(packed: Any) -> torch.Tensor:
    if not isinstance(packed, Entry):
        return packed
    return _on_device(packed.device, packed.value)


_LAYOUT = "layout"


def _view_layout(base: torch.Tensor, view: torch.Tensor) -> tuple:
    """How a saved tensor sits in the tensor it views, for a base that is no op output of the step: a recorded
    source spec (NOTE [Replay] rule 2), compared again when replayed."""
    return (_LAYOUT, base.shape, base.stride(), base.storage_offset(), base.dtype, view.storage_offset())


def _param_view(t: torch.Tensor) -> bool:
    """A view of a tensor that is no plain tensor (a Parameter, mostly): worth trying as a parameter pack."""
    base = t._base
    return base is not None and type(base) is not torch.Tensor


def _kept_view(t: torch.Tensor, src: torch.Tensor, route: Route) -> bool:
    """A tensor the policy keeps that views a source's own storage (peft's ``x·A`` as ``lora_B`` saves it): P2
    would keep the same storage as a source and rebuild ``t`` by a view, two entries and a recipe for the bytes one
    kept entry holds, with a decode of its own in every backward. Kept as is instead (NOTE [Recipes])."""
    return type(route.codec) is Keep and t.untyped_storage().data_ptr() == src.untyped_storage().data_ptr()


def _narrow_record(rec: replay.PackRecord) -> bool:
    """Does ``rec`` store an fp32 tensor as a recipe widening a 16-bit value (``lineage.narrowed``) whose actions read
    only op outputs of the step (sources by slot, recipes), never the pack's tensor? Then a replay may give it the
    16-bit value in place of the copy (NOTE [LoRA branch] rule 7). Asked once per record (kept on it)."""
    narrow = rec.narrow
    if narrow is None:
        actions = rec.actions
        narrow = rec.narrow = (
            rec.kind == "entry" and rec.meta[2] is torch.float32 and bool(actions) and actions[-1][0] == "recipe"
            and all(a[0] == "recipe" or a[0] == "source" and a[1][0][0] == "slot" for a in actions[:-1])
            and lineage.narrowed(actions[-1][1][0].node) is not None)
    return narrow


def _cuda_index(t: torch.Tensor) -> int | None:
    return t.get_device() if t.is_cuda else None


def _on_device(index: int | None, fn: Callable, *args: Any) -> Any:
    """``fn(*args)`` with CUDA device ``index`` current where another one is (NOTE [Lifetimes] rule 13); called at
    every pack and unpack, so no context object where none is needed."""
    if index is None or index == _cuda_device():
        return fn(*args)
    with torch.cuda.device(index):
        return fn(*args)


def _twin(group: list, node: lineage.Node) -> Entry | None:
    """A live recipe entry of ``group`` that computes what ``node`` computes (equal ``lineage.recipe_key``)."""
    if not group:
        return None
    key = lineage.recipe_key(node)
    if key is None:
        return None
    for ref in group:
        entry = ref()
        if entry is not None and lineage.recipe_key(entry.payload) == key:
            return entry
    return None


def _frozen_mark(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The frozen term the op tracker marked ``t`` or the tensor ``t`` is a view of with (NOTE [Frozen term] in
    tracking.py), taken off it (it is stored once; the term may be freed as soon as it is encoded), if it has the
    marked tensor's layout: (the term, the term viewed as ``t`` views the marked tensor: what is stored)."""
    marked = t if FROZEN in getattr(t, "__dict__", ()) else t._base  # SDPA's v: heads of v_proj's output
    if marked is None:
        return None
    frozen = getattr(marked, "__dict__", {}).pop(FROZEN, None)
    view = _frozen_view(t, marked, frozen)
    return (frozen, view) if view is not None else None


def _frozen_view(t: torch.Tensor, marked: torch.Tensor, frozen: torch.Tensor | None) -> torch.Tensor | None:
    """``frozen`` viewed as ``t`` views ``marked`` (``t`` itself or its base), if it has ``marked``'s layout."""
    if frozen is None or frozen.shape != marked.shape or frozen.stride() != marked.stride() \
            or frozen.dtype != marked.dtype or frozen.device != marked.device:
        return None
    if marked is t:
        return frozen
    offset = frozen.storage_offset() + t.storage_offset() - marked.storage_offset()
    return frozen.as_strided(t.shape, t.stride(), offset)


def _frozen_rope_mark(t: torch.Tensor) -> torch.Tensor | None:
    """The frozen term RoPE carried to ``t`` (NOTE [Frozen term] rule 4), taken off it, or None."""
    return getattr(t, "__dict__", {}).pop(FROZEN_ROPE, None)


class Compressor:
    """The context manager returned by :func:`compress`. Use once per forward (one training step)."""

    def __init__(self, policy: Policy, model: nn.Module | None = None, replay_steps: bool = True):
        self.policy = policy
        self._acct = Accountant()  # counts when read (NOTE [Deferred counting] in accounting.py): see ``accountant``
        self._acct_ref = weakref.ref(self._acct)  # what entries hold (NOTE [Lifetimes] rule 3)
        self._gc_hold: gcpause.Hold | None = None  # the collector held off for the step (NOTE [GC pause])
        self._storage_refs: dict = {}  # storage's C++ address -> its StorageKey, for the step (lineage.storage_ref)
        self._params = ParamRegistry()
        self._modules = ModuleTracker(self._params)
        if model is not None:
            if not isinstance(model, nn.Module):
                raise user_error("compress(model=...)", type(model).__name__, "an nn.Module or None",
                                 "pass the model being trained", cls=HycloraTypeError)
            self._modules.add_tree(model, check=False)  # names too: the forward's first module hook then walks nothing
        for codec in policy.codecs:  # refuse what this machine cannot run now, not at the first pack
            codec.check_available()
        record = None
        if policy.inter:
            self._planner = lineage.Planner(self._lookup_node, self._params.is_param)
            self._by_storage: dict = {}
            self._sdpa: tuple = (None, None)  # (weakref to the SDPA call's OpFrame, its SdpaRecompute)
            self._recipes: dict = {}  # (cost, leaf entries' ids) -> weak references to recipe entries
            record = partial(lineage.record, is_param=self._params.is_param, mask_of=self._dropout_mask_of)
        self._ops = OpTracker(self._modules, record, pack_hook=self._pack)
        if policy.inter:
            self._ops.frozen_terms = []  # NOTE [Frozen term] in tracking.py
        # NOTE [Replay]: the step's op signatures; the mode is chosen at the first pack
        self._trace = replay.Trace(self._params.is_param) if replay_steps else None
        self._ops.trace = self._trace  # with weak references to op outputs: a replayed source may be any of them
        self._units = Units(self) if replay_steps else None  # NOTE [Replay units] in units.py
        self._modules.units = self._units
        self._modules.regions = RegionSums(self._modules)  # NOTE [Region sums]
        self._saving: torch.Tensor | None = None  # the tensor a recorded pack is deciding for
        self._mode: str | None = None if replay_steps else "off"  # "record", "replay", "missed" or "off"
        self.replayed_packs = 0  # packs this step carried out from a recorded plan
        self.lean_node = 0  # while a replayed unit's LoRA branch node saves: how many of its adapters' parameter
        # records are still to be passed over (NOTE [LoRA branch] rule 2, ``_pass_parameters``)
        self.narrow_input = False  # while it saves: its fp32 input's entry may decode in 16 bits (rule 5 there)
        self.narrow_save = 0  # how many of its next 16-bit packs stand for an fp32 copy of them (rule 7 there;
        # a norm node's two: NOTE [Norm node] rule 3)
        self._narrow_keys: dict = {}  # id of such a pack's tensor -> (its storage key, its entry): its duplicates
        self._made: list[Entry] = []  # entries made this step, in order (a template's placeholders number them)
        self._log: list | None = None  # the running pack's actions, while recording
        self._lora_base: tuple | None = None  # (stored term, part, source spec kind, mark) while P3 stores it
        self._dedupe: dict = {}  # storage key -> weak reference to its entry, for the forward (NOTE [Lifetimes] rule 2)
        self._labels: dict[int, str] = {id(KEEP): KEEP.describe()}
        self._trainable: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._stack: ExitStack | None = None
        self._fresh: list[Nonfinite] = []  # pending checks of the encode running now
        self._pending = PendingChecks(MAX_PENDING_BYTES, self._acct.grow)  # with their accountant tokens
        self._device: torch.device | None = None
        self._model = weakref.ref(model) if model is not None else None
        self._dropout_mask: tuple | None = None  # (a dropout call's arguments, its mask): NOTE [Dropout recipe]
        self._loss_grad: torch.Tensor | None = None  # the gradient head.fused_loss is saving now (NOTE [Fused head])
        if policy.fuse_head:
            self._modules.find_head = True
            self._ops.replaced["cross_entropy"] = self._fused_loss

    def _label(self, codec: Codec) -> str:
        """``codec.describe()``, once per codec (the policy holds its codecs for the context's life)."""
        label = self._labels.get(id(codec))
        if label is None:
            label = self._labels[id(codec)] = codec.describe()
        return label

    def _root(self) -> nn.Module | None:
        """The model root that keys persistent codec state (NOTE [Outlier calibration] in codecs.calibration)."""
        return self._model() if self._model is not None else self._modules.root()

    # context protocol ------------------------------------------------------------------------------
    def __enter__(self) -> Compressor:
        if self._stack is not None:
            raise user_error("compress context entered twice", "re-entry", "one `with` per context",
                             "create a new compress(...) for each forward pass", cls=HycloraTypeError)
        stack = ExitStack()
        self._gc_hold = gcpause.hold()
        try:
            self._modules.start()
            stack.callback(self._modules.stop)
            stack.enter_context(self._ops)
            stack.enter_context(calibration_scope(self._root))
            stack.enter_context(collecting(self._fresh.append))
            # off the op tracker: how many records are still pending on exit depends on the device's progress, and
            # settling one reads host tensors, so traced it made a step's op count vary (NOTE [Replay] rule 8)
            stack.callback(self._ops.outside, self._settle, True)
            stack.callback(self._ops.drop_frozen_marks)
            stack.enter_context(torch.autograd.graph.saved_tensors_hooks(self._ops.pack_hook, _unpack))
        except BaseException:
            stack.close()
            self._release_gc()
            raise
        self._stack = stack
        return self

    def __exit__(self, *exc: Any) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()
        try:
            self._end_step(exc[0] is None)
        finally:
            if exc[0] is not None:  # NOTE [GC pause] rule 2: no backward is coming for this forward
                self._release_gc()
            self._gc_hold = None  # held on by the step's entries, if it made any (rule 2)
        if self.policy.inter:
            # Only packs inside one SDPA call share its recipe; kept past the forward, the last call's recipe would
            # pin that layer's q/k/v entries (and its cached output) for as long as the context object lives.
            # Planning ends with the forward too: drop the view index (it pins storages' bookkeeping).
            self._sdpa = (None, None)
            self._by_storage = {}
            self._recipes = {}
        # no pack comes after the forward; the keys hold their storages' C++ objects (not data) until dropped
        self._storage_refs, self._dedupe = {}, {}
        self._dropout_mask = None  # a mask no dropout output took (NOTE [Dropout recipe]): not held past the forward

    @property
    def replayed_units(self) -> int:
        """Module calls this step carried out as one unit each: LoRA linears, RMSNorms, attentions, and decoder
        layers and MLPs made of them (NOTE [Replay units] in units.py; a unit held by another is not counted)."""
        return self._units.replayed if self._units is not None else 0

    @property
    def accountant(self) -> Accountant:
        """The context's accountant, with everything admitted and released so far counted (NOTE [Deferred counting])."""
        self._acct.flush()
        return self._acct

    def report(self) -> Report:
        """Accounting of everything saved under this context so far (see :mod:`hyclora_hooks.accounting`)."""
        return self._acct.report(self.policy.name, self._device)

    # pack ------------------------------------------------------------------------------------------
    def _key(self, t: torch.Tensor) -> tuple:
        """``lineage.storage_key`` with one weak reference per storage and step (fewer objects for the cyclic GC)."""
        return lineage.storage_key(t, self._storage_refs)

    def _lookup(self, t: torch.Tensor) -> Entry | None:
        if t.layout != torch.strided:
            return None
        return self._stored(self._key(t))

    def _stored(self, key: tuple) -> Entry | None:
        """The live entry stored for ``key`` this forward, or None (a plain dict of weak references: a
        ``WeakValueDictionary`` made three Python calls a store and one more as each entry died)."""
        ref = self._dedupe.get(key)
        return ref() if ref is not None else None

    def _lookup_node(self, key: tuple) -> lineage.Node | None:
        """Data of ``key`` (see ``lineage.storage_key``) as a node: its own entry, or a view of a stored
        contiguous tensor of the same storage."""
        entry = self._stored(key)
        if entry is not None:
            return lineage.EntryRef(entry)
        skey, offset, shape, stride, dtype, version = key
        for ref, e_offset, numel, e_version in self._by_storage.get(skey, ()):
            e = ref()
            if e is None or dtype != e.site.dtype or version != e_version or min(stride, default=1) < 0:
                continue
            lo = offset - e_offset
            hi = lo + sum((n - 1) * st for n, st in zip(shape, stride) if n > 0)
            if lo >= 0 and hi < numel:
                return lineage.Replay(torch.as_strided, "as_strided", (lineage.EntryRef(e), shape, stride, lo), {})
        return None

    def _remember(self, key: tuple, t: torch.Tensor, entry: Entry) -> None:
        self._dedupe[key] = weakref.ref(entry)
        if self.policy.inter and t.is_contiguous():  # decodes to the same layout: other views of this storage
            # can read from it (recipes' sources, planned only under an inter policy)
            self._by_storage.setdefault(key[0], []).append((weakref.ref(entry), key[1], t.numel(), key[5]))

    def _settle(self, block: bool = False) -> None:
        """Read the non-finite counts the device has produced (all of them if ``block``; NOTE [Lifetimes] rule 9)."""
        self._pending.settle(block)
        for rec in self._fresh:  # encoded outside _admit: nothing to account
            rec.settle()
        self._fresh.clear()

    # replay (NOTE [Replay] in replay.py) -----------------------------------------------------------
    def _begin_step(self) -> str:
        """At the first pack: replay a plan whose signatures match the ops so far, else record one."""
        plan = replay.find_plan(self._root(), self.policy)
        if plan is not None and self._trace.follow(plan):
            self._mode, self._replay_plan, self._next, self._memo = "replay", plan, 0, {}
            self._lineage, self._ops._lineage = self._ops._lineage, None  # rule 3: no lineage while replaying
        else:
            self._mode, self._packs, self._index, self._memo, self._recordable = "record", [], {}, {}, True
        return self._mode

    def _end_replay(self) -> None:
        """A failed check (rule 4): the rest of the step decides; lineage again for the ops still to come."""
        self._units.abort()
        self._mode = "missed"
        self._ops._lineage = self._lineage
        self._trace.stop_following()

    def _end_step(self, clean: bool) -> None:
        """On exit: keep a cleanly recorded plan, drop one a replay did not follow to its end."""
        mode, root = self._mode, self._root()
        if mode == "record" and clean and self._recordable:
            plan = replay.Plan(self._trace.sigs, self._packs)
            plan.units = plan_units(self._units.recorded, plan.packs)
            replay.store_plan(root, self.policy, plan)
        elif mode == "missed" or (mode == "replay" and (not clean or self._next != len(self._replay_plan.packs)
                                                       or self._trace.diverged
                                                       or self._trace.count != len(self._replay_plan.sigs))):
            replay.store_plan(root, self.policy, None)
        if self._mode is not None and self._mode != "off":
            self._mode = "done"
        self._made, self._memo, self._index = [], {}, {}  # the entries belong to autograd's graph alone now
        self._narrow_keys = {}

    def _release_gc(self) -> None:
        hold, self._gc_hold = self._gc_hold, None
        if hold is not None:
            hold.release()

    def _keep(self, entry: Entry) -> Entry:
        """A new entry, held in creation order while the step records or replays (NOTE [Lifetimes] rule 14); it
        holds the step's collector pause (NOTE [GC pause] rule 2)."""
        entry._gc = self._gc_hold
        if self._trace is not None:
            if self._mode == "record":
                self._index[id(entry)] = len(self._made)
            self._made.append(entry)
        return entry

    def _index_of(self, entry: Entry) -> int | None:
        """The creation index of an entry made this step (None for any other: the step is then unreplayable)."""
        index = self._index.get(id(entry))
        if index is None:
            self._recordable = False
        return index

    def _note(self, action: str, data: Any, entry: Entry, new: bool) -> None:
        """Log an action of the pack being recorded, with the index of the entry it gave."""
        if self._log is not None:
            self._log.append((action, data, self._index_of(entry), new))

    def _template(self, node: lineage.Node) -> replay.Template | None:
        """``node`` with this step's entries as placeholders (``replay.template``); None when it cannot be."""
        def placeholder(e: Entry) -> replay.Placeholder:
            index = self._index_of(e)
            if index is None:
                raise replay.Unreplayable("a recipe reads an entry this step did not make")
            return replay.Placeholder(index, e)
        try:
            return replay.template(node, placeholder, self._params.is_param, self._memo)
        except replay.Unreplayable:
            self._recordable = False
            return None

    def _source_spec(self, src: torch.Tensor) -> tuple | None:
        """Where a replay finds a recipe source: the saved tensor itself or the tensor it is a view of (``saved``,
        ``saved_base``: found from the pack's tensor, also inside a replay unit), another op output of this step
        (``slot``), P3's ``t - part`` (``base``), or the frozen term the saved tensor's mark holds (``frozen``,
        ``frozen_rope``: NOTE [Frozen term])."""
        saving = self._saving  # the saved tensor or the tensor it views: a replay finds it from the pack's tensor
        own = saving is not None and (src is saving or src is saving._base)
        slot = self._trace.slot(src)
        if own and slot is not None:
            return ("saved" if src is saving else "saved_base", slot)
        if self._lora_base is not None and src is self._lora_base[0]:
            if self._lora_base[2] != "base":  # "frozen", "frozen_rope": the term the forward's sum marked
                if self._units is not None:  # a unit's body may hold it (NOTE [Replay units] rule 5)
                    self._units.note_term(len(self._packs), self._lora_base[3])
                return (self._lora_base[2], None)
            branch = self._template(self._lora_base[1])
            return ("base", branch) if branch is not None else None
        if own:  # made inside an op, so no op output of the step (a biased linear's 2-D product under its 3-D
            # view): the pack's tensor names it all the same; a replay checks it has no slot either, and for the
            # tensor viewed, the layout the recipe's view geometry was read from
            return ("saved", None) if src is saving else ("saved_base", _view_layout(src, saving))
        if slot is None:
            self._recordable = False
            return None
        return ("slot", slot)

    def _record_pack(self, t: torch.Tensor) -> Any:
        op = self._trace.count
        strided = t.layout == torch.strided and not t.is_nested
        meta = replay.pack_meta(t) if strided else None
        self._log, self._saving = [], t
        try:
            out = self._decide(t)
        finally:
            log, self._log, self._saving = self._log, None, None
        if not strided:
            self._recordable = False
        elif not isinstance(out, Entry):
            self._packs.append(replay.PackRecord(op, meta, "param", None, [], None))
        elif log and log[0][0] == "dup":
            self._packs.append(replay.PackRecord(op, meta, "dup", log[0][1], [], self._index_of(out)))
        else:
            result = self._index_of(out)
            if result is None or any(a[2] is None for a in log):
                self._recordable = False
            self._packs.append(replay.PackRecord(op, meta, "entry", None, log, result))
        return out

    def _bound(self, tpl: replay.Template) -> lineage.Bound:
        """A plan's template read with this step's entries (NOTE [Replay] rule 7); ``Unreplayable`` if it names an
        entry the step has not made."""
        made = self._made
        if tpl.end > len(made):
            raise replay.Unreplayable("a template names an entry this step has not made")
        caches = {}
        for call, leaves in tpl.sdpas:  # one cache per SDPA call and step, shared by its output and logsumexp
            cache = self._memo.get(id(call))
            if cache is None:
                cache = self._memo[id(call)] = {}
                for i in leaves:  # as _sdpa_recipe: the parts read them through the call, once
                    made[i].readers += 1
            caches[id(call)] = cache
        return lineage.Bound(tpl.node, dict(zip(tpl.refs, map(made.__getitem__, tpl.refs))), caches)  # (no frame)

    def _next_record(self, t: torch.Tensor) -> replay.PackRecord | None:
        """The plan's record for this pack, if the checks of rule 3 pass (every op so far had the plan's signature:
        ``Trace.follow``; the pack comes in the recorded op, with the recorded layout). Inside a replayed unit the
        ops are not counted: the pack must be one of the unit's, in order (NOTE [Replay units])."""
        plan, trace, i = self._replay_plan, self._trace, self._next
        if i >= len(plan.packs) or trace.diverged:
            return None
        rec, unit = plan.packs[i], self._units.replaying
        if unit is not None:
            return rec if i < unit.pack_end and rec.meta == replay.pack_meta(t) else None
        return rec if rec.op == trace.count and rec.meta == replay.pack_meta(t) else None

    def _replay_parameter(self, t: torch.Tensor) -> Any:
        """A replayed parameter's pack, or a view of one, without the encode scaffolding of ``_pack``;
        ``_MISS`` sends it the long way (which also handles a miss and NOTE [Lifetimes] rule 7)."""
        rec = self._next_record(t) if _graph_task_id() == -1 else None
        if rec is None or self._replay_parameter_record(rec, t) is _MISS:
            return _MISS
        self._next += 1
        self.replayed_packs += 1
        return t

    def _replay_parameter_record(self, rec: replay.PackRecord, t: torch.Tensor) -> Any:
        """A ``"param"`` record carried out: ``t`` itself, counted (NOTE [Lifetimes] rule 6); ``_MISS`` if the
        record is another kind or ``t`` is no parameter."""
        if rec.kind != "param" or not self._params.is_param(t):
            return _MISS
        self._acct.note_parameter()
        return t

    def _replay_record(self, t: torch.Tensor, rec: replay.PackRecord, narrow: bool = False) -> Any:
        """The recorded pack ``rec``'s actions on ``t``, once the checks of rule 3 passed (``_next_record``), or
        ``_MISS``. ``narrow``: ``t`` is the 16-bit tensor a recorded fp32 copy of it widened (NOTE [LoRA branch] rule
        7; a record :func:`_narrow_record` takes): no dedupe by its storage (q, k and v each save it), and accounted
        as the copy its own storage, as peft's ops made one each."""
        self._next += 1
        acct, made, trace = self._acct, self._made, self._trace
        if rec.kind == "param":
            return self._replay_parameter_record(rec, t)
        if narrow:  # an entry's stand-in has a key of its own; a duplicate's is the stand-in's it repeats
            key, hit = self._narrow_keys.get(id(t), (None, None)) if rec.kind == "dup" else (None, None)
            if key is None:
                key = (object(),)
        else:
            key = lineage.storage_key(t, self._storage_refs)  # self._key and self._stored, two frames less
            hit = self._dedupe.get(key)
            if hit is not None:
                hit = hit()
        if rec.kind == "dup":
            if hit is None or rec.result >= len(made) or hit is not made[rec.result]:
                return _MISS
            acct.note_duplicate(key[0], rec.site, self._label(hit.codec))
            return hit
        if hit is not None:
            return _MISS
        for action, data, index, new in rec.actions:
            before = len(made)
            try:
                if action == "admit_t":
                    site, codec, reason = data
                    got = self._admit(t, site, codec, reason, key[0], t.untyped_storage().nbytes())
                elif action == "source":
                    (kind, what), site, route = data
                    if kind == "slot":  # inside a unit maybe the input of a call of its body (units.py rule 6)
                        src = self._units.source(self._next - 1) if self._units.replaying is not None else None
                        if src is None:
                            src = trace.output(what)
                        if src is None:
                            return _MISS
                    elif kind in ("saved", "saved_base"):  # the op output the pack saves, or the one it views
                        src = t if kind == "saved" else t._base
                        layout = type(what) is tuple and what[0] == _LAYOUT  # a base no op of the step made
                        if src is None or layout and _view_layout(src, t) != what:
                            return _MISS
                        if self._units.replaying is None and trace.slot(src) != (None if layout else what):
                            return _MISS  # outside a unit the tag must name it; inside one the body has none
                    elif kind == "frozen":  # equal signatures: the mark is the sum's frozen operand again
                        if self._units.replaying is None:
                            mark = _frozen_mark(t)
                            src = mark[1] if mark is not None else None
                        else:  # inside a unit, from its projection's exit (units.py rule 5); a mark is on no view
                            src = _frozen_view(t, t if t._base is None else t._base, self._units.term(self._next - 1))
                        if src is None:
                            return _MISS
                    elif kind == "frozen_rope":  # inside a unit, from its projection's exit (units.py rule 5)
                        src = _frozen_rope_mark(t) if self._units.replaying is None \
                            else self._units.term(self._next - 1)
                        if src is None:
                            return _MISS
                    else:
                        src = lineage.lora_subtract(t, self._bound(what))
                    got = self._source(src, site, route)
                else:  # a recipe: made as recorded (twin or new) without searching for a twin
                    template, site, leaves = data
                    if new:
                        if None in leaves or max(leaves, default=-1) >= len(made):  # (C calls: no frame)
                            return _MISS
                        got = self._recipe_entry(t, site, self._bound(template), list(map(made.__getitem__, leaves)))
                    else:
                        got = made[index] if index < len(made) else None
                    if got is not None:
                        self._account_recipe(t, site, got, key[0], t.numel() * 4 if narrow else None)
            except replay.Unreplayable:
                return _MISS
            if (len(made) > before) != new or index >= len(made) or got is not made[index]:
                return _MISS
        entry = made[rec.result]
        if narrow:
            self._narrow_keys[id(t)] = (key, entry)
        else:
            self._remember(key, t, entry)
        return entry

    def _pack(self, t: torch.Tensor) -> Any:
        # a Parameter is never a plain tensor; a linear saves its weight as a view (``weight.t()``): 36% of a
        # replayed Llama forward's packs, and the long way cost them ~16 us more each on an H200's host. ``_base``
        # is read only off the tracker's stack (in an op's handler or a unit): on it, a read that returns a tensor
        # would count as an op of the step (a pack outside any op: a checkpointed region's inputs)
        if self._mode == "replay":
            if self._units.replaying is not None and UNIT_PACKS:
                out = self._unit_pack(t)
                if out is not _MISS:
                    return out
            ops = self._ops
            if type(t) is not torch.Tensor or (ops.current is not None or ops.suspended) and _param_view(t):
                out = self._replay_parameter(t)
                if out is not _MISS:
                    return out
        # a pack outside any op (a checkpoint region's inputs) would otherwise run every tensor call of our encode
        # through the op tracker as an "op" (NOTE [Untracked regions])
        out = _on_device(_cuda_index(t), self._ops.outside, lineage.outside_autocast, self._pack_one, t)
        if isinstance(out, Entry):  # NOTE [Shared decodes]: one more reader of this entry
            out.readers += 1
        return out

    def _unit_pack(self, t: torch.Tensor) -> Any:
        """A pack in a replayed unit's body (NOTE [Replay units] rule 9): ``_MISS`` (no record taken) where it must go
        the long way (a backward's pack, another device, autocast on). ``_next_record``'s checks inside a unit and a
        parameter record's (``_replay_parameter_record``) are written out here: ~470 packs of a replayed Llama
        forward come this way, a parameter's (~180 of them) in 4 Python calls instead of 11."""
        if _graph_task_id() != -1 or autocast_on() or t.is_cuda and t.get_device() != _cuda_device():
            return _MISS
        i, dtype, narrow = self._next, t.dtype, False
        if self.narrow_save and dtype is not torch.float32:  # a node's 16-bit input for its fp32 copy (NOTE [LoRA
            dtype, narrow = torch.float32, True  # branch] rule 7, NOTE [Norm node] rule 3)
            self.narrow_save -= 1
        if i < self._units.replaying.pack_end and not self._trace.diverged:
            rec = self._replay_plan.packs[i]
            if rec.kind == "param" and self.lean_node and type(t) is torch.Tensor and (t._base is None or narrow):
                i, rec = self._pass_parameters(i, True)
            if rec.meta == (t.shape, t.stride(), dtype, t.requires_grad):  # replay.pack_meta(t), one frame less
                if rec.kind != "param":
                    out = self._replay_record(t, rec, narrow)
                    if out is not _MISS:
                        self.replayed_packs += 1
                        out.readers += 1  # NOTE [Shared decodes]
                        if self.narrow_input and dtype is torch.float32 and (
                                narrow or rec.actions and rec.actions[-1][0] == "recipe"):
                            out.narrow += 1  # a node's fp32 input (NOTE [LoRA branch] rule 5)
                        return out
                elif type(t._base) is nn.Parameter or self._params.is_param(t):
                    self._next = i + 1
                    self.replayed_packs += 1
                    self._acct.note_parameter()
                    return t
        out = self._missed(t)
        if isinstance(out, Entry):  # NOTE [Shared decodes]
            out.readers += 1
        return out

    def _pass_parameters(self, i: int, before_pack: bool) -> tuple[int, replay.PackRecord | None]:
        """Past up to ``lean_node`` parameter records from ``i`` on, each counted as carried out: the LoRA branch node
        holds its adapters itself where peft's products saved their views (NOTE [LoRA branch] rule 2). The index
        and record now due; ``before_pack``: for a pack that has come, which only a record after them can take
        (where none is left in the unit, nothing is passed and the pack misses)."""
        packs, end = self._replay_plan.packs, self._units.replaying.pack_end
        j, stop = i, min(end, i + self.lean_node)
        while j < stop and packs[j].kind == "param":
            j += 1
        if before_pack and j == end:
            return i, packs[i]
        self.lean_node -= j - i
        self.replayed_packs += j - i
        for _ in range(j - i):
            self._acct.note_parameter()
        self._next = j
        return j, packs[j] if j < end else None

    def end_lean_node(self) -> None:
        """The branch node's packs are over: pass its adapters' records left after its last saved tensor (a frozen
        ``lora_B``'s ``Bᵀ``, both of frozen adapters)."""
        if self.lean_node and self._mode == "replay" and self._units.replaying is not None \
                and not self._trace.diverged:
            self._pass_parameters(self._next, False)
        self.lean_node = self.narrow_save = 0
        self.narrow_input = False

    def _unit_end(self) -> int | None:
        """The end of the replayed unit's records where its packs go straight to them (``UNIT_PACKS``, a unit
        replaying on plan), else None: what the nodes' looks ahead at the records first ask."""
        if not UNIT_PACKS or self._mode != "replay" or self._units.replaying is None or self._trace.diverged:
            return None
        return self._units.replaying.pack_end

    def narrow_save_due(self) -> bool:
        """May the branch node about to save (``lean_node`` set) save its 16-bit input for peft's fp32 copy (NOTE
        [LoRA branch] rule 7)? Yes where the record its input's pack will meet, past the adapters' records it
        passes, is one :func:`_narrow_record` takes, and the pack will go straight to it (``UNIT_PACKS``)."""
        end = self._unit_end()
        if end is None:
            return False
        packs = self._replay_plan.packs
        j, stop = self._next, min(end, self._next + self.lean_node)
        while j < stop and packs[j].kind == "param":
            j += 1
        return j < end and _narrow_record(packs[j])

    def norm_records_due(self, x: torch.Tensor) -> bool:
        """Are the next records those Llama's RMSNorm ops make for input ``x`` under an ``inter`` policy (NOTE [Norm
        node] rule 1): ``pow``'s fp32 copy as a widening recipe (:func:`_narrow_record`), ``rsqrt``'s output, the
        product's duplicates of the two (the output first), the weight? Each pack's layout is checked as it comes
        (the node saves the first two, :meth:`pass_saves` carries out the others)."""
        end, i = self._unit_end(), self._next
        if end is None or i + 5 > end or x.is_cuda and x.get_device() != _cuda_device():
            return False
        copy, stats, dup_stats, dup_copy, weight = self._replay_plan.packs[i:i + 5]
        return (_narrow_record(copy) and copy.meta[0] == x.shape and stats.kind == "entry"
                and dup_stats.kind == dup_copy.kind == "dup" and dup_stats.result == stats.result
                and dup_copy.result == copy.result and weight.kind == "param")

    def pass_saves(self, saves: tuple) -> None:
        """Carry out the next records for tensors a node holds without saving them again (NOTE [Norm node] rule 3:
        the duplicates of what it saved, the weight), each as its pack would be (``_unit_pack``) but for the reader
        no saved slot adds; ``saves``: ``(tensor, narrow)`` pairs (``narrow``: the tensor stands for its fp32 copy). A
        record it does not meet ends the replay there (NOTE [Replay] rule 4) and the rest is decided, only counted."""
        for t, narrow in saves:
            rec, end = None, self._unit_end()  # (a miss ends the replay: read again for each)
            if end is not None and self._next < end:
                rec = self._replay_plan.packs[self._next]
                dtype = torch.float32 if narrow else t.dtype
                if rec.meta != (t.shape, t.stride(), dtype, t.requires_grad):
                    rec = None
            if rec is not None and self._replay_record(t, rec, narrow) is not _MISS:
                self.replayed_packs += 1
            elif self._mode == "replay":
                self._missed(t)
            else:
                self._ops.outside(self._decide, t)

    def _pack_one(self, t: torch.Tensor) -> Any:
        if _graph_task_id() != -1:  # NOTE [Lifetimes] rule 7
            self._acct.note_backward_pack()
            return t
        mode = self._mode or self._begin_step()
        if mode == "replay":
            rec = self._next_record(t)
            out = _MISS if rec is None else self._replay_record(t, rec)
            if out is not _MISS:
                self.replayed_packs += 1
                return out
            return self._missed(t)
        if mode == "record":
            return self._record_pack(t)
        return self._decide(t)

    def _missed(self, t: torch.Tensor) -> Any:
        """The pack whose check failed, decided once the replay has ended (NOTE [Replay] rule 4). A miss in a
        unit's body puts the tracker back on the stack (the rest of the body is tracked): the decision is made off
        it, or its own tensor calls would count as ops of the step (NOTE [Untracked regions])."""
        self._end_replay()
        return self._ops.outside(self._decide, t)

    def _decide(self, t: torch.Tensor) -> Any:
        """What to hold for ``t``: classify, route, plan a recipe or encode (NOTE [Lifetimes])."""
        if self._modules.unchecked:  # NOTE [Unchecked walk] (off the tracker here: _pack, _missed)
            self._modules.check_tree()
        acct = self._acct
        if self._params.is_param(t):  # NOTE [Lifetimes] rule 6
            acct.note_parameter()
            return t
        if t.layout != torch.strided or t.is_nested or type(t) is not torch.Tensor and not isinstance(t, nn.Parameter):
            return self._admit(t, self._site(t), reason="not a plain strided tensor")
        key = self._key(t)
        entry = self._stored(key)
        if entry is not None:
            site = self._site(t)
            if self._log is not None:
                self._log.append(("dup", site, None, False))
            acct.note_duplicate(key[0], site, self._label(entry.codec))
            return entry
        if self._device is None:
            self._device = t.device
        site = self._site(t)
        route = self.policy.route(site, t.numel() * t.element_size(), t.is_floating_point())
        if site.op_class == "attention" and site.role in ("query", "key") and not route.codec.lossless \
                and not self._sdpa_replayable():
            route = Route(KEEP, route.rule, "SDPA q/k need a replayable call (inter policy, no dropout)")
        if not route.codec.lossless and _held_by_graph(t):  # NOTE [Lifetimes] rule 11
            route = Route(KEEP, route.rule, _LEAF_KEPT)
        loss_grad = t is self._loss_grad
        if loss_grad:  # exact, whatever the policy's rules say of the loss op's tensors
            site, route = dataclasses.replace(site, role="loss_grad"), Route(KEEP, None, _LOSS_GRAD_KEPT)
        entry = None
        if self.policy.inter and t.is_floating_point() and not loss_grad:
            entry = self._plan(t, site, route)
        if entry is None:
            reason = None if not route.codec.lossless else route.reason
            entry = self._admit(t, site, route.codec, reason, key[0], t.untyped_storage().nbytes())
            self._note("admit_t", (site, route.codec, reason), entry, True)
        frame = self._ops.current  # NOTE [Dropout recipe] in lineage.py: only recipes read it
        if self.policy.inter and frame is not None and frame.name == "dropout" and site.op_class == "dropout":
            self._dropout_mask = (frame.args, entry)
        self._remember(key, t, entry)
        return entry

    def _fused_loss(self, func: Callable, args: tuple, kwargs: dict) -> torch.Tensor | None:
        """``cross_entropy`` with its gradient for the lm_head's input formed now (NOTE [Fused head] in head.py),
        or None where the call is not the head's."""
        return head.fused_loss(func, args, kwargs, self._modules.head_input, self._keeping_loss_grad)

    @contextmanager
    def _keeping_loss_grad(self, grad: torch.Tensor, op_saved: int):
        """Saves under it keep ``grad`` exactly (``_decide``); its entry then also counts the ``op_saved`` bytes
        the loss op saved, as activation bytes: what plain autograd would hold for the head."""
        self._loss_grad = grad
        try:
            yield
        finally:
            self._loss_grad = None
        entry = self._lookup(grad)
        if entry is not None and op_saved:
            site = dataclasses.replace(entry.site, role="log_softmax", dtype=torch.float32)  # what it saved
            entry.hold(self._acct_ref, self._acct.admit_replaced(("id", id(entry)), op_saved, site, _FUSED_HEAD,
                                                                 _LOSS_GRAD_KEPT))

    def _dropout_mask_of(self, args: tuple) -> Entry | None:
        """The entry of the mask the dropout call with ``args`` saved, once (NOTE [Dropout recipe] in lineage.py)."""
        got, self._dropout_mask = self._dropout_mask, None
        return got[1] if got is not None and got[0] is args else None

    def _sdpa_replayable(self) -> bool:
        """Lossy SDPA q/k are safe only if output and logsumexp will be recomputed from them (attention.py)."""
        frame = self._ops.current
        return (self.policy.inter and frame is not None and frame.name == "scaled_dot_product_attention"
                and sdpa_call_args(frame.args, frame.kwargs) is not None)

    def _admit(self, t: torch.Tensor, site: SaveSite, codec: Codec | None = None, reason: str | None = None,
               skey: Any = None, storage_nbytes: int | None = None, saved: bool = True) -> Entry:
        codec = codec or KEEP
        perm = shape = None
        if not codec.lossless:
            t, perm, shape = codec_view(t, codec)
        payload = codec.encode(t, site)
        if skey is None:  # not a strided tensor: count its own bytes, keyed by identity
            skey, storage_nbytes = ("id", id(t)), t.numel() * t.element_size()
        entry = self._keep(Entry(codec, payload, site, perm=perm, shape=shape, device=_cuda_index(t)))
        token = self._acct.admit(skey, storage_nbytes, site, self._label(codec),
                                 0 if codec.lossless else codec.nbytes(payload), codec.lossless, reason, saved,
                                 codec.host_nbytes(payload))
        if self._fresh:
            for rec in self._fresh:
                self._pending.add(rec, token)
            self._fresh.clear()
        if self._pending.queue:  # at each admission, not each pack: an event query a pack (rule 9)
            self._settle()
        entry.hold(self._acct_ref, token)
        return entry

    # recipes (NOTE [Recipes] in lineage.py) -------------------------------------------------------
    def _recipe(self, t: torch.Tensor, site: SaveSite, node: lineage.Node) -> Entry:
        """The recipe entry for ``t``: an existing one that computes the same (``lineage.recipe_key``), or new.

        Recipes are grouped by cost and leaf entries, which two recipes computing the same must share: the full
        key (a walk of the whole expression, ~6% of a compressed forward on the dev CPU when asked of every
        recipe) is asked only where a group has a recipe already (peft's q, k and v casting one input)."""
        if self._log is not None:
            made, tpl = len(self._made), self._template(node)
        leaves = lineage.leaf_entries(node)
        group = self._recipes.setdefault((node.cost, tuple(map(id, leaves))), [])
        entry = _twin(group, node)
        if entry is None:
            entry = self._recipe_entry(t, site, node, leaves)
            group.append(weakref.ref(entry))
        self._account_recipe(t, site, entry)
        if self._log is not None:
            self._note("recipe", (tpl, site, tuple(self._index_of(e) for e in leaves)), entry,
                       len(self._made) > made)
        return entry

    def _recipe_entry(self, t: torch.Tensor, site: SaveSite, node: lineage.Node, leaves: list) -> Entry:
        """A new recipe entry; its leaves get one more reader each (NOTE [Shared decodes])."""
        entry = self._keep(Entry(RECOMPUTE, node, site, lossless=node.lossless, cost=node.cost,
                                 device=_cuda_index(t)))
        for leaf in leaves:
            leaf.readers += 1
        return entry

    def _account_recipe(self, t: torch.Tensor, site: SaveSite, entry: Entry, key: Any = None,
                        nbytes: int | None = None) -> None:
        """Count ``t`` as saved, held by the recipe ``entry``; ``key``: ``t``'s storage key, where the caller has it;
        ``nbytes``: its storage's size where ``t`` stands for another tensor (NOTE [LoRA branch] rule 7)."""
        storage = t.untyped_storage()  # (a new Python object at each call)
        if key is None:
            key = lineage.storage_ref(storage, self._storage_refs)
        token = self._acct.admit(key, storage.nbytes() if nbytes is None else nbytes, site, "recompute", 0, False,
                                 None)
        entry.hold(self._acct_ref, token)

    def _source(self, src: torch.Tensor, site: SaveSite, route: Route) -> Entry:
        """Store a recipe's source with the saved tensor's codec (or find it stored already)."""
        if self._log is not None:
            made, spec = len(self._made), self._source_spec(src)
        key = self._key(src)  # (once: self._lookup would make it again)
        entry = self._stored(key) if src.layout == torch.strided else None
        if entry is None:
            codec, reason = route.codec, None
            if not codec.lossless and src.numel() * src.element_size() < self.policy.knobs.min_bytes:
                codec = KEEP
            elif not codec.lossless and _held_by_graph(src):  # NOTE [Lifetimes] rule 11, for sources too
                codec, reason = KEEP, _LEAF_KEPT
            entry = self._admit(src, site, codec, reason, key[0], src.untyped_storage().nbytes(), saved=False)
            self._remember(key, src, entry)
        if self._log is not None:
            self._note("source", (spec, site, route), entry, len(self._made) > made)
        return entry

    def _plan(self, t: torch.Tensor, site: SaveSite, route: Route) -> Entry | None:
        planner, lossless = self._planner, route.codec.lossless
        if site.op_class == "attention" and site.role in ("output", "logsumexp"):
            return self._sdpa_recipe(t, site, route)
        if site.op_class == "cross_entropy" and site.role == "log_softmax":
            return self._log_softmax_recipe(t, site, route)
        node = planner.free(t, lossless_only=lossless)  # P1
        if node is not None:
            return self._recipe(t, site, lineage.fuse_swiglu(lineage.fuse_norm_tail(node)))
        if not lossless and route.codec.lossless is False:  # P3: store tensor - LoRA branch, add it back
            term = _frozen_rope_mark(t)  # q/k: X·W, rotated with its LoRA part in backward (NOTE [Frozen term])
            part = planner.rope_frozen_part(t, term) if term is not None else None
            if part is not None:
                leaf = lineage.EntryRef(self._lora_source(term, part, "frozen_rope", site, route, term))
                return self._recipe(t, site, lineage.RopeRebuild(leaf, part))
            mark = _frozen_mark(t)  # X·W itself, when the forward's sum still holds it
            if mark is not None and not planner.frozen_operand(t, mark[0]):
                mark = None
            branch = planner.lora_part(t, mark[0] if mark is not None else None)  # the LoRA part in t's layout
            if branch is not None:
                if mark is not None:
                    base, spec = mark[1], "frozen"
                else:
                    base, spec = lineage.lora_subtract(t, branch), "base"
                leaf = lineage.EntryRef(self._lora_source(base, branch, spec, site, route,
                                                          mark[0] if mark is not None else None))
                return self._recipe(t, site, planner.lora_rebuild(leaf, branch, t.dtype, self.policy.fuse))
        ops, src = planner.chain(t)  # P2
        if ops and src.is_floating_point() and src.untyped_storage().nbytes() <= t.untyped_storage().nbytes() \
                and not _kept_view(t, src, route):
            leaf = lineage.EntryRef(self._source(src, site, route))
            return self._recipe(t, site, planner.replay_chain(ops, leaf))
        return None

    def _lora_source(self, base: torch.Tensor, part: lineage.Node, spec: str, site: SaveSite, route: Route,
                     mark: torch.Tensor | None = None) -> Entry:
        """P3's stored term, with what a recorded source says it was (``spec``; NOTE [Replay] rule 2) and the
        frozen term it is (``mark``: the tensor a mark held, which a replay unit finds again; units.py rule 5)."""
        self._lora_base = (base, part, spec, mark)
        try:
            return self._source(base, site, route)
        finally:
            self._lora_base = None

    def _log_softmax_recipe(self, t: torch.Tensor, site: SaveSite, route: Route) -> Entry | None:
        """cross-entropy keeps ``log_softmax(input)`` (fp32, tokens x vocab): keep the lm_head's input instead
        and replay the head (one extra lm_head matmul in backward), or else keep the (often bf16) logits."""
        frame = self._ops.current
        x = frame.args[0] if frame is not None and frame.args else None
        if not isinstance(x, torch.Tensor) or x.shape != t.shape or x.dim() < 1:
            return None
        lossless = route.codec.lossless
        node = self._planner.free(x, lossless_only=lossless)
        if node is None:
            ops, src = self._planner.chain(x)
            head = self._head_recipe(src, site, route)
            if head is not None:
                node = self._planner.replay_chain(ops, head)
            elif src.untyped_storage().nbytes() <= t.untyped_storage().nbytes():
                node = self._planner.replay_chain(ops, lineage.EntryRef(self._source(src, site, route)))
            else:
                return None
        dim = 1 if x.dim() > 1 else 0
        cast = lineage.Replay(torch.Tensor.to, "to", (node, t.dtype), {})
        node = lineage.Replay(torch.log_softmax, "log_softmax", (cast, dim), {})
        return self._recipe(t, site, lineage.fuse_log_softmax(node))  # fused only where the cast is to fp32

    def _head_recipe(self, logits: torch.Tensor, site: SaveSite, route: Route) -> lineage.Node | None:
        """``logits = linear(h, W)`` with ``h`` alive and smaller than the logits: store ``h``, replay the head."""
        lin = lineage.lineage_of(logits)
        if lin is None or lin.name != "linear" or len(lin.args) < 2 or not isinstance(lin.args[1], lineage.ParamRef):
            return None
        found = self._planner.reach(lin.args[0]) if isinstance(lin.args[0], lineage.TensorRef) else None
        if found is None:
            return None
        ops, h = found
        if h.untyped_storage().nbytes() * 2 > logits.untyped_storage().nbytes():
            return None
        h_node = self._lookup_node(self._key(h)) or lineage.EntryRef(self._source(h, site, route))
        h_node = self._planner.replay_chain(ops, h_node)
        if route.codec.lossless and not h_node.lossless:
            return None
        rest = tuple(lineage.Const(a.value) if isinstance(a, lineage.ParamRef) else a for a in lin.args[2:])
        if any(isinstance(a, lineage.TensorRef) for a in rest):
            return None
        return lineage.Replay.of(lin, (h_node, lineage.Const(lin.args[1].value)) + rest, dict(lin.kwargs))

    def _sdpa_recipe(self, t: torch.Tensor, site: SaveSite, route: Route) -> Entry | None:
        """Rebuild SDPA's output and logsumexp from the stored q, k, v (see attention.py)."""
        frame = self._ops.current
        call = sdpa_call_args(frame.args, frame.kwargs) if frame is not None else None
        if call is None:
            return None
        ref, shared = self._sdpa
        if ref is None or ref() is not frame:  # a frame's id alone may be a later call's (freed, address reused)
            shared = None
        if shared is None:
            nodes = [self._planner.free(call[n], lossless_only=False) if isinstance(call.get(n), torch.Tensor)
                     else None for n in ("query", "key", "value")]
            if any(n is None for n in nodes):
                return None
            exact = all(n.lossless for n in nodes)
            if exact and route.codec.lossless:
                return None  # q, k, v exact and the output wanted exact: store it
            mask = call.get("attn_mask")
            mask_node = None
            if isinstance(mask, torch.Tensor):
                mask_node = self._planner.free(mask, lossless_only=True) or lineage.EntryRef(
                    self._source(mask, site, Route(KEEP, None, "mask")))
            shared = SdpaRecompute(*nodes, mask_node, bool(call.get("is_causal", False)), call.get("scale"),
                                   bool(call.get("enable_gqa", False)))
            for leaf in lineage.leaf_entries(*nodes, mask_node):  # the parts read them through `shared`, once
                leaf.readers += 1
            self._sdpa = (weakref.ref(frame), shared)  # one SDPA call at a time
        return self._recipe(t, site, shared.node(site.role, (t.shape, t.dtype, t.stride())))

    def _site(self, t: torch.Tensor) -> SaveSite:
        frame = self._ops.current
        module = self._modules.current()
        op, args = (frame.name, frame.args) if frame is not None else ("", ())
        if frame is None:  # no torch-level op saves it: maybe torch.utils.checkpoint saving a region's inputs
            in_region, region = checkpoint_region()
            if in_region:
                op, module = "checkpoint", region or module
        module_class = type(module).__name__ if module is not None else ""
        trainable = False
        if module is not None and op in ("linear", "addmm", "mm", "matmul"):
            trainable = self._trainable.get(module)
            if trainable is None:
                trainable = self._trainable[module] = is_trainable_module(module)
        op_class, role = classify(t, op, args, self._modules.name_of(module), module_class,
                                  self._params.is_param, trainable)
        producer = getattr(t, "_hyclora_producer", ("", ""))[0]
        return SaveSite(op or "<none>", op_class, role, self._modules.name_of(module), module_class, producer,
                        t.dtype, tuple(t.shape))


def compress(policy: str | Path | Policy = "baseline", *, model: nn.Module | None = None, replay: bool = True,
             **knobs: Any) -> Compressor:
    """Compress what autograd saves for backward inside the ``with`` block.

    ``policy`` is a preset name (``hyclora_hooks.preset_names()``), a path to a ``.toml`` policy file, or a
    :class:`~hyclora_hooks.policy.Policy`. ``knobs`` override the policy's knobs by the papers' names: ``bits``
    (2, 4 or 8), ``layernorm_outlier_ratio``, ``softmax_outlier_ratio``, ``iteration_threshold``, and
    ``min_bytes``. ``model`` is optional: parameters are found from the modules that run, but naming the model
    registers its weights up front. ``replay``: from the second step of a model with one policy, carry out the
    decisions the previous step recorded instead of planning them again, while every op matches (NOTE [Replay]
    in ``hyclora_hooks/replay.py``); False decides every pack afresh. While a forward of a module in training mode
    with gradients on runs inside the block, Hugging Face configs' ``use_cache`` is off (``kv_cache.py``: training
    reads no KV cache); a call passing ``use_cache=True`` keeps its cache.

    >>> with compress("intra", bits=4) as ctx:      # doctest: +SKIP
    ...     loss = model(**batch).loss
    >>> print(ctx.report()); loss.backward()        # doctest: +SKIP
    """
    return Compressor(load_policy(policy).with_knobs(**knobs), model=model, replay_steps=replay)
