"""``compress(policy)``: the saved-tensor hooks that classify, deduplicate, encode and account.

NOTE [Lifetimes]
  1. ``pack`` returns an :class:`Entry` (a parameter comes back as itself). Only autograd's saved variables hold
     entries strongly, so an entry, and the payload it owns, dies with the last node that saved it.
  2. Dedupe: a table maps (storage, offset, shape, strides, dtype) to a *weak* reference to the entry. Its key
     holds a weak reference to the storage (``StorageWeakRef``), which keeps the storage's address from being
     reused while the key exists: a new tensor can never be taken for a freed one.
  3. Entries reach the context only through finalizers holding a weak reference to the accountant. A graph kept
     after the context neither keeps the context alive nor needs it: decoding needs only codec and payload.
  4. ``unpack`` is pure: it decodes the payload every time, never changes it, and returns the same values
     however often backward runs (``retain_graph=True``).
  5. On exit, normal or through an exception, the saved-tensor hooks, the op-tracking mode and the global module
     hooks are removed in reverse order of entry. Entries already handed to autograd stay valid (rule 3).
  6. Parameters, buffers and views of them (matched by storage) are returned unchanged and never counted.
"""

from __future__ import annotations

import weakref
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef

from .accounting import Accountant, Report
from .codecs import Codec
from .codecs.calibration import calibration_scope
from .errors import HycloraTypeError, user_error
from .policy import Policy, load_policy
from .sites import SaveSite, classify, is_trainable_module
from .tracking import ModuleTracker, OpTracker, ParamRegistry


class Entry:
    """What autograd holds for one saved tensor: the codec and its payload (see NOTE [Lifetimes])."""

    __slots__ = ("codec", "payload", "site", "__weakref__")

    def __init__(self, codec: Codec, payload: Any, site: SaveSite):
        self.codec, self.payload, self.site = codec, payload, site

    def decode(self) -> torch.Tensor:
        return self.codec.decode(self.payload)


def _unpack(packed: Any) -> torch.Tensor:
    return packed.decode() if isinstance(packed, Entry) else packed


def _release(acct_ref: weakref.ref, token: tuple) -> None:
    acct = acct_ref()
    if acct is not None:
        acct.release(token)


class Compressor:
    """The context manager returned by :func:`compress`. Use once per forward (one training step)."""

    def __init__(self, policy: Policy, model: nn.Module | None = None):
        self.policy = policy
        self.accountant = Accountant()
        self._params = ParamRegistry()
        if model is not None:
            if not isinstance(model, nn.Module):
                raise user_error("compress(model=...)", type(model).__name__, "an nn.Module or None",
                                 "pass the model being trained", cls=HycloraTypeError)
            self._params.add_module_tree(model)
        self._modules = ModuleTracker(self._params)
        self._ops = OpTracker(self._modules)
        self._dedupe: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._trainable: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._stack: ExitStack | None = None
        self._device: torch.device | None = None
        self._model = weakref.ref(model) if model is not None else None

    def _root(self) -> nn.Module | None:
        """The model root that keys persistent codec state (NOTE [Outlier calibration] in codecs.calibration)."""
        return self._model() if self._model is not None else self._modules.root()

    # context protocol ------------------------------------------------------------------------------
    def __enter__(self) -> Compressor:
        if self._stack is not None:
            raise user_error("compress context entered twice", "re-entry", "one `with` per context",
                             "create a new compress(...) for each forward pass", cls=HycloraTypeError)
        stack = ExitStack()
        try:
            self._modules.start()
            stack.callback(self._modules.stop)
            stack.enter_context(self._ops)
            stack.enter_context(calibration_scope(self._root))
            stack.enter_context(torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack))
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def __exit__(self, *exc: Any) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()

    def report(self) -> Report:
        """Accounting of everything saved under this context so far (see :mod:`hyclora_hooks.accounting`)."""
        return self.accountant.report(self.policy.name, self._device)

    # pack ------------------------------------------------------------------------------------------
    def _pack(self, t: torch.Tensor) -> Any:
        acct = self.accountant
        if self._params.is_param(t):  # NOTE [Lifetimes] rule 6
            acct.note_parameter()
            return t
        if t.layout != torch.strided or t.is_nested or type(t) is not torch.Tensor and not isinstance(t, nn.Parameter):
            return self._admit(t, self._site(t), reason="not a plain strided tensor")
        storage = t.untyped_storage()
        skey = StorageWeakRef(storage)
        key = (skey, t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        entry = self._dedupe.get(key)
        if entry is not None:
            acct.note_duplicate()
            return entry
        if self._device is None:
            self._device = t.device
        site = self._site(t)
        route = self.policy.route(site, t.numel() * t.element_size(), t.is_floating_point())
        entry = self._admit(t, site, route.codec, None if not route.codec.lossless else route.reason,
                            skey, storage.nbytes())
        self._dedupe[key] = entry
        return entry

    def _admit(self, t: torch.Tensor, site: SaveSite, codec: Codec | None = None, reason: str | None = None,
               skey: Any = None, storage_nbytes: int | None = None) -> Entry:
        from .policy import KEEP

        codec = codec or KEEP
        payload = codec.encode(t, site)
        if skey is None:  # not a strided tensor: count its own bytes, keyed by identity
            skey, storage_nbytes = ("id", id(t)), t.numel() * t.element_size()
        entry = Entry(codec, payload, site)
        token = self.accountant.admit(skey, storage_nbytes, site, codec.describe(),
                                      0 if codec.lossless else codec.nbytes(payload), codec.lossless, reason)
        weakref.finalize(entry, _release, weakref.ref(self.accountant), token)
        return entry

    def _site(self, t: torch.Tensor) -> SaveSite:
        frame = self._ops.current
        module = self._modules.current()
        op, args = (frame.name, frame.args) if frame is not None else ("", ())
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


def compress(policy: str | Path | Policy = "baseline", *, model: nn.Module | None = None, **knobs: Any) -> Compressor:
    """Compress what autograd saves for backward inside the ``with`` block.

    ``policy`` is a preset name (``hyclora_hooks.preset_names()``), a path to a ``.toml`` policy file, or a
    :class:`~hyclora_hooks.policy.Policy`. ``knobs`` override the policy's knobs by the papers' names: ``bits``
    (2, 4 or 8), ``layernorm_outlier_ratio``, ``softmax_outlier_ratio``, ``iteration_threshold``, and
    ``min_bytes``. ``model`` is optional: parameters are found from the modules that run, but naming the model
    registers its weights up front.

    >>> with compress("intra", bits=4) as ctx:      # doctest: +SKIP
    ...     loss = model(**batch).loss
    >>> print(ctx.report()); loss.backward()        # doctest: +SKIP
    """
    return Compressor(load_policy(policy).with_knobs(**knobs), model=model)
