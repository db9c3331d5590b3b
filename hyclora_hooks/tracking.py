"""Who is running while autograd saves a tensor: the torch-level op, the innermost module, the parameters.

* :class:`OpTracker` is a ``TorchFunctionMode``. Autograd packs the tensors an op saves while that op's
  torch-function handler is on the stack, so the handler's ``func`` names the op that saved them (a
  ``TorchDispatchMode`` would see the save after the op returned). It also tags each output with the op that
  produced it (``t._hyclora_producer``), which classification uses to tell a SwiGLU product from a RoPE mul.
* :class:`ModuleTracker` keeps the stack of modules in their forward through global module hooks, with the
  qualified names of the outermost module's tree, and registers every parameter and buffer it meets.
* The tracker also marks a LoRA projection's output with its frozen term (NOTE [Frozen term]).
* :class:`ParamRegistry` answers "is this tensor a weight, or a view of one?" by storage, since autograd
  saves ``W.t()``, not ``W`` (see REFERENCE section 3).

NOTE [Autocast casts]
  Under ``torch.autocast`` a matmul-like op casts its floating arguments to the region's dtype below the
  torch-function level, so the tensors it saves are copies nothing here has seen: a frozen fp32 weight's bf16
  copy was classified as the op's input and quantized (a 4-bit weight in every input gradient, no error), and
  SDPA's q, k, v lost their roles. For the ops autocast runs in lower precision on both CPU and CUDA
  (``AUTOCAST_LOWER``) the tracker makes those casts itself, as autocast would (``x.to(dtype)`` of every floating
  tensor argument of the region's device that is not fp64), before calling the op, which then finds nothing to
  cast; only for functional calls, as autocast (an ``out=`` or in-place call's target must stay the caller's).
  A parameter's copy is registered as a parameter (returned unchanged, never counted, as plain autocast keeps
  it); an activation's copy gets its producer tag and lineage like any op's output.

NOTE [Frozen term]
  HyC-LoRA stores a LoRA projection's frozen term ``X·W`` quantized and adds the LoRA part back in backward (P3 in
  docs/inter.md). peft computes ``X·W`` (``base_layer(x)``) and drops it once ``X·W + s·(X·A)·B`` is made, before
  the consumer (SiLU, the SwiGLU ``mul``, SDPA) saves the output, so the engine used to form ``t - part`` again:
  one more pass over the tensor a projection (docs/benchmarks.md session 21).
  1. While ``frozen_terms`` is a list (the engine sets one under an ``inter`` policy), an ``add`` of a ``linear``
     output and a ``mul`` output (peft's ``result + lora_B(lora_A(x)) * scaling``) sets ``FROZEN`` on its output to
     the ``linear`` output, and a cast (``lineage.CASTS``) of a marked tensor passes the mark on (peft's
     ``result.to(dtype)``): the marked output keeps its frozen term alive. Views do not pass it on: a saved view
     of a marked tensor (SDPA's v, heads of v_proj's output) finds the mark on its ``_base`` and stores the same
     view of the term (``as_strided`` with the view's geometry: the term has the marked tensor's layout).
  2. The engine uses a mark only after checking it against the tensor's lineage (the add's other operand must be
     its LoRA branch) or, in a replayed step, against equal op signatures; then it removes it.
  3. Each marked tensor is listed (weakly) and its mark removed when the context exits, so a tensor that outlives
     the step (a LoRA'd head's logits, returned to the caller) does not keep its frozen term.
  4. RoPE passes a mark on as ``FROZEN_ROPE`` (q and k, which SDPA saves rotated): an ``add`` of two tensors, a
     ``cat`` of tensors, a ``neg`` or ``getitem`` of one, all carrying the same term, and a ``mul`` of one by a
     number or by a tensor that carries none and needs no gradient (cos, sin), where "carrying" is having either
     mark or being a view of a tensor marked ``FROZEN``. The engine stores the term (the projection's (B, T, H·D)
     output) and rebuilds q as ``rope(view(decoded + part))`` (``lineage.RopeRebuild``) once
     ``Planner.rope_frozen_part`` has checked that every LoRA sum under ``t`` had the term as its other operand.
"""

from __future__ import annotations

import sys
import threading
import weakref
from typing import Any, Callable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode, _get_current_function_mode, _pop_mode, _push_mode

from . import kv_cache
from .head import output_linear
from .lineage import AUTOCAST_DEVICES, CASTS, autocast_on, autocast_state


_OP_NAMES: dict = {}  # func -> op_name(func): asked for every op a tracked forward runs


def op_name(func: Any) -> str:
    """``torch._C._nn.linear`` -> ``linear``; ``Tensor.__mul__`` -> ``mul``; ``Tensor.__rmatmul__`` -> ``matmul``."""
    try:
        return _OP_NAMES[func]
    except (KeyError, TypeError):  # TypeError: an unhashable callable
        pass
    name = _op_name(func)
    if len(_OP_NAMES) > 4096:  # callables made on the fly (bound methods of objects) must not pile up
        _OP_NAMES.clear()
    try:
        _OP_NAMES[func] = name
    except TypeError:
        pass
    return name


def _op_name(func: Any) -> str:
    name = getattr(func, "__name__", None) or type(func).__name__
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
        if name.startswith(("r", "i")) and name[1:] in _DUNDER_BINARY:
            name = name[1:]
    return name.rstrip("_") or name


FROZEN = "_hyclora_frozen"  # NOTE [Frozen term]
FROZEN_ROPE = "_hyclora_frozen_rope"  # NOTE [Frozen term] rule 4
_ROPE_OPS = {"add", "mul", "neg", "getitem", "cat"}  # ops that pass a mark on by rule 4
_DUNDER_BINARY = {"mul", "matmul", "add", "sub", "truediv", "div", "pow"}
# ops that autocast runs in its lower-precision dtype on CPU and on CUDA alike (torch's autocast op lists)
AUTOCAST_LOWER = frozenset({"linear", "matmul", "mm", "bmm", "addmm", "baddbmm", "scaled_dot_product_attention"})


def _functional(func: Any, kwargs: dict) -> bool:
    """Not an in-place (``addmm_``, ``__iadd__``) or ``out=`` call: autocast casts only functional calls, and a cast
    of the tensor written to would be a copy, the caller's tensor left unwritten with no error."""
    fname = getattr(func, "__name__", "")
    return "out" not in kwargs and not fname.startswith("__i") and not (fname.endswith("_")
                                                                        and not fname.endswith("__"))


# ops whose output is the input re-typed or re-shaped: it keeps its input's producer (softmax -> .to() -> matmul)
_LINEAGE_PRESERVING = {"to", "type", "float", "half", "bfloat16", "contiguous", "view", "reshape", "transpose",
                       "permute", "dropout", "clone", "detach", "expand", "flatten", "unsqueeze", "squeeze"}


class OpFrame:
    """The torch-level call running now; ``args`` is held only for the call's duration. Slotted (one is made
    for every op a tracked forward runs), with a weak-reference slot (the engine keys an SDPA call by it)."""

    __slots__ = ("name", "args", "kwargs", "parent", "__weakref__")

    def __init__(self, name: str, args: tuple, kwargs: dict, parent: OpFrame | None):
        self.name, self.args, self.kwargs, self.parent = name, args, kwargs, parent


_ATTRIBUTE_READ = type(torch.Tensor.shape.__get__)  # what a torch-function mode gets for ``t.shape``: a method-wrapper

# the innermost saved-tensor hooks (pack, unpack), or None; private, present since torch 2.1 (None if it goes)
_top_hooks = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)


class OpTracker(TorchFunctionMode):
    """Note the outermost torch-level op that is running, and tag each output tensor with its producer."""

    def __init__(self, modules: ModuleTracker, lineage: Callable | None = None, pack_hook: Any = None):
        super().__init__()
        self.current: OpFrame | None = None
        self._modules = modules
        self._lineage = lineage  # lineage.record-like callable, or None when the policy stores no recipes
        self.pack_hook = pack_hook  # the saved-tensor pack hook this tracker serves (see _ours)
        self.suspended = False  # off the mode stack (suspend), until resume
        self._producers: dict[tuple, tuple] = {}  # the producer tags handed out, each once
        self.trace: Any = None  # replay.Trace of the step (NOTE [Replay]), or None
        self.frozen_terms: list | None = None  # weak references to the tensors marked (NOTE [Frozen term]), or off
        self.replaced: dict[str, Callable] = {}  # op name -> its replacement, which may decline (returns None)
        modules.ops = self  # NOTE [Untracked regions]

    def _ours(self) -> bool:
        """Would a tensor saved now reach ``pack_hook``? Not inside a region with saved-tensor hooks of its own
        (non-reentrant checkpoint's forward): there nothing reaches us, so frames, producer tags and lineage would
        be host time for nothing (on an H100 the region's forward became bound by it)."""
        if self.pack_hook is None or _top_hooks is None:
            return True
        top = _top_hooks(False)
        return top is None or top[0] is self.pack_hook

    def suspend(self) -> bool:
        """Leave torch's function-mode stack until :meth:`resume` (NOTE [Untracked regions]); only when this mode
        is on top of it. True if it left."""
        if self.suspended or _get_current_function_mode() is not self:
            return False
        _pop_mode()
        self.suspended = True
        return True

    def resume(self) -> None:
        if self.suspended:
            _push_mode(self)
            self.suspended = False

    def outside(self, fn: Callable, *args: Any) -> Any:
        """``fn(*args)`` with this tracker off the mode stack where it is on it (inside an op's handler torch has
        taken it off already): our own tensor calls are no ops of the model (NOTE [Untracked regions])."""
        left = self.current is None and self.suspend()
        try:
            return fn(*args)
        finally:
            if left:
                self.resume()

    def __exit__(self, *exc: Any) -> Any:
        self.resume()  # a region left by an exception that skipped its module's hook: back on the stack to be popped
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if type(func) is _ATTRIBUTE_READ:
            # ``t.shape``, ``t.dtype``: a quarter of the calls a Llama forward makes here, each a fresh callable
            # (``op_name``'s cache would only churn), and none saves anything. A tensor one returns (``t.T``,
            # ``t.data``) is tagged like any op's output.
            out = func(*args, **kwargs)
            if isinstance(out, torch.Tensor) and self._ours():
                if self.trace is not None:
                    self.trace.op("get", args, kwargs)
                    self.trace.tag(out)
                self._tag("get", func, args, kwargs, out)
            return out
        if not self._ours():
            return func(*args, **kwargs)
        name = op_name(func)
        trace = self.trace
        if trace is not None:
            trace.op(name, args, kwargs)
        if name in AUTOCAST_LOWER and autocast_on() and _functional(func, kwargs):
            args, kwargs = self._autocast_casts(args, kwargs)
        frame = OpFrame(name, args, kwargs, self.current)
        self.current = frame
        try:
            out = self.replaced[name](func, args, kwargs) if name in self.replaced else None
            if out is None:
                out = func(*args, **kwargs)
        finally:
            self.current = frame.parent
        if trace is not None:
            trace.tag(out)
        if isinstance(out, torch.Tensor):
            self._tag(frame.name, func, args, kwargs, out)
        return out

    def _autocast_casts(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """The op's arguments cast as autocast would cast them (NOTE [Autocast casts])."""
        def cast(a: Any) -> Any:
            if not isinstance(a, torch.Tensor) or not a.is_floating_point() or a.dtype == torch.float64:
                return a
            state = autocast_state(a)
            if state is None or state[0] not in AUTOCAST_DEVICES or a.dtype == state[1]:
                return a
            dtype = state[1]
            out = a.to(dtype)
            if self._modules.params.is_param(a):
                self._modules.params.add(out)
            else:
                self._tag("to", torch.Tensor.to, (a, dtype), {}, out)
            return out

        return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}

    def _tag(self, name: str, func: Any, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
        """Producer tag and lineage record of an op's output (under autograd only: nothing is saved without it)."""
        if not torch.is_grad_enabled():
            return
        producer = (name, self._modules.current_class())
        if name in _LINEAGE_PRESERVING and args and isinstance(args[0], torch.Tensor):
            producer = getattr(args[0], "_hyclora_producer", producer)
        else:  # one tuple per (op, module class), not one per output: fewer objects for Python's cyclic GC
            producer = self._producers.setdefault(producer, producer)
        try:
            out._hyclora_producer = producer
        except (AttributeError, RuntimeError):  # some tensor subclasses refuse attributes
            pass
        if self.frozen_terms is not None and args and (name in _ROPE_OPS or name in CASTS):
            self._mark_frozen(name, args, kwargs, out)
        if self._lineage is not None:
            self._lineage(func, name, args, kwargs, out)

    def _mark_frozen(self, name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
        """NOTE [Frozen term] rules 1 and 4."""
        mark = FROZEN
        if name == "add":
            frozen = _frozen_operand(args)
            if frozen is None and not kwargs:
                frozen, mark = _rope_term(args), FROZEN_ROPE
        elif name in CASTS:
            frozen = getattr(args[0], FROZEN, None)
        elif name == "mul":
            frozen, mark = _rope_term(args, product=True), FROZEN_ROPE
        elif name == "cat":
            frozen, mark = _rope_term(args[0]), FROZEN_ROPE
        else:  # neg, getitem
            frozen, mark = _carried(args[0]) if isinstance(args[0], torch.Tensor) else None, FROZEN_ROPE
        if frozen is not None and frozen is not out and not any([a is out for a in args]):  # not in place
            try:
                setattr(out, mark, frozen)
            except (AttributeError, RuntimeError):
                return
            self.frozen_terms.append(weakref.ref(out))

    def drop_frozen_marks(self) -> None:
        """NOTE [Frozen term] rule 3."""
        marked, self.frozen_terms = self.frozen_terms, ([] if self.frozen_terms is not None else None)
        for ref in marked or ():
            t = ref()
            if t is not None:
                marks = getattr(t, "__dict__", {})
                marks.pop(FROZEN, None)
                marks.pop(FROZEN_ROPE, None)


def _frozen_operand(args: tuple) -> torch.Tensor | None:
    """The ``linear`` output of an ``add`` of a ``linear`` and a ``mul`` output (peft's LoRA sum), else None."""
    if len(args) != 2:
        return None
    a, b = args
    pa, pb = getattr(a, "_hyclora_producer", None), getattr(b, "_hyclora_producer", None)
    if pa is None or pb is None or not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        return None
    if pa[0] == "linear" and pb[0] == "mul":
        return a
    if pb[0] == "linear" and pa[0] == "mul":
        return b
    return None


def _carried(a: Any) -> torch.Tensor | None:
    """The frozen term the tensor ``a`` carries into RoPE (NOTE [Frozen term] rule 4), or None."""
    marks = getattr(a, "__dict__", None)
    if marks:
        term = marks.get(FROZEN_ROPE)
        if term is None:
            term = marks.get(FROZEN)
        if term is not None:
            return term
    base = a._base
    return getattr(base, "__dict__", {}).get(FROZEN) if base is not None else None


def _rope_term(args: Any, product: bool = False) -> torch.Tensor | None:
    """The term that every tensor of ``args`` carries (one tensor may carry none in a ``product``: a factor that
    needs no gradient, or a number), or None."""
    if not isinstance(args, (tuple, list)):
        return None
    term = None
    for a in args:
        if not isinstance(a, torch.Tensor):
            if product and isinstance(a, (int, float)):
                continue
            return None
        got = _carried(a)
        if got is None:
            if not product or a.requires_grad:
                return None
            product = False  # one factor only
        elif term is None:
            term = got
        elif got is not term:
            return None
    return term


def module_tree(root: nn.Module) -> tuple[list[tuple[str, nn.Module]], list[torch.Tensor]]:
    """Every module under ``root`` with its qualified name, in ``named_modules(remove_duplicate=False)``'s order,
    and every parameter and buffer, in one walk over the modules' own dicts. ``named_modules`` plus
    ``parameters()`` and ``buffers()`` took ~2 ms a step for two 7B-shaped LoRA layers on an H200 host (session
    7), paid at every ``compress()``; this loop skips empty dicts and makes no generator per module (8 tiny peft
    layers, 673 modules, dev CPU: 0.90 -> 0.35 ms, session 14)."""
    modules: list[tuple[str, nn.Module]] = []
    tensors: list[torch.Tensor] = []
    stack = [("", root)]
    pop, push, add, extend = stack.pop, stack.extend, modules.append, tensors.extend
    while stack:
        prefix, m = pop()
        add((prefix, m))
        if m._parameters:
            extend([t for t in m._parameters.values() if t is not None])
        if m._buffers:
            extend([t for t in m._buffers.values() if t is not None])
        if m._modules:  # pre-order, children in registration order (pushed last first)
            dot = prefix + "." if prefix else ""
            push([(dot + name, sub) for name, sub in reversed(m._modules.items()) if sub is not None])
    return modules, tensors


class TreeWalk:
    """What one walk of a model's tree found: qualified module names and the storages of its parameters and
    buffers. Kept between ``compress()`` calls (:func:`walk_tree`); holds the model only weakly."""

    __slots__ = ("paths", "modules", "tensors", "ptrs", "names", "by_ptr", "configs", "__weakref__")

    def __init__(self, modules: list[tuple[str, nn.Module]], tensors: list[torch.Tensor], ptrs: list[int]):
        self.paths = [name for name, _ in modules]
        self.modules = [weakref.ref(m) for _, m in modules]
        self.tensors = [weakref.ref(t) for t in tensors]
        self.ptrs = ptrs
        names: dict = {}
        for name, sub in modules:
            names.setdefault(sub, name)  # a module reached twice keeps its first name
        self.names: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary(names)
        self.by_ptr = {ptr: ref for ref, ptr in zip(self.tensors, ptrs) if ptr}
        self.configs = kv_cache.configs_of(m for _, m in modules)  # HF configs with ``use_cache`` (kv_cache.py)

    def matches(self, modules: list[tuple[str, nn.Module]], tensors: list[torch.Tensor], ptrs: list[int]) -> bool:
        """The same modules under the same names, the same tensors on the same storages, in the same order."""
        # equal ptrs and paths (one per tensor, one per module) mean equal lengths: the zips below see everything
        # (lists of ids compared in C took twice as long: ~1,700 ``id`` calls against ~860 generator resumes)
        return (self.ptrs == ptrs and self.paths == [name for name, _ in modules]
                and all(r() is m for r, (_, m) in zip(self.modules, modules))
                and all(r() is t for r, t in zip(self.tensors, tensors)))


# root module -> its last walk. A training loop's compress() walks the same tree every step; building the names
# and the registry's weak references again made ~860 objects a step for Python's cyclic GC and ~1 ms of host time
# (8 tiny layers, dev CPU), so an unchanged tree reuses them (docs/benchmarks.md session 13).
_WALKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

# NOTE [Unchecked walk]
#   Checking that the tree is unchanged is itself a walk over every module and parameter (~0.34 ms for 8 tiny peft
#   layers, 673 modules, on the dev CPU; most of ``compress()``'s construction, ~1.3 ms of a step's host time on an
#   H200's host). What a walk gives is read only where a pack is decided: the qualified names (a site's module
#   name, which a policy rule may match) and the storages of parameters and buffers (``ParamRegistry.is_param``).
#   A replayed step decides nothing, so ``add_tree(check=False)`` takes the tree's last walk as it is and the
#   context checks it (``check_tree``) before its first decision (``Compressor._decide``); a changed tree's walk
#   then joins the names, storages and configs in use. Until then a stale registry can only fail to know a
#   storage that is new since the walk (``is_param`` checks that the weak reference it finds is alive and still on
#   that storage), which makes a replayed check miss (an op's signature, a parameter record) or a recipe keep what it
#   reads: a decision or a slower step, never another gradient. ``CHECK_EVERY_STEP`` walks at construction as before.
CHECK_EVERY_STEP = False


def walk_tree(root: nn.Module) -> TreeWalk:
    """Walk ``root`` (:func:`module_tree`); the last walk's names and registry where nothing changed."""
    modules, tensors = module_tree(root)
    ptrs = [t.untyped_storage().data_ptr() for t in tensors]
    last = _WALKS.get(root)
    if last is not None and last.matches(modules, tensors, ptrs):
        return last
    walk = _WALKS[root] = TreeWalk(modules, tensors, ptrs)
    return walk


def _maybe_param(t: torch.Tensor | None) -> bool:
    return t is not None and type(t) is not torch.Tensor and isinstance(t, nn.Parameter)


class ParamRegistry:
    """Storages of parameters and buffers, held weakly; matched by storage so views of a weight match too."""

    def __init__(self) -> None:
        self._by_ptr: dict[int, weakref.ref] = {}
        self._seen_modules: weakref.WeakSet = weakref.WeakSet()

    def add_module_tree(self, root: nn.Module, walk: TreeWalk | None = None) -> None:
        """Register ``root``'s parameters and buffers (``walk``: the tree's walk, when the caller has it)."""
        if root in self._seen_modules:
            return
        self._seen_modules.add(root)
        self.add_walk(walk or walk_tree(root))

    def add_walk(self, walk: TreeWalk) -> None:
        """Register the parameters and buffers ``walk`` found (a later walk of a tree already added)."""
        self._by_ptr.update(walk.by_ptr)

    def add(self, t: torch.Tensor) -> None:
        """Count ``t`` (and its views) as a parameter: a weight or buffer, or a weight's autocast copy made for
        one op (NOTE [Autocast casts])."""
        ptr = t.untyped_storage().data_ptr()
        if ptr:
            self._by_ptr[ptr] = weakref.ref(t)

    def is_param(self, t: torch.Tensor) -> bool:
        # ``isinstance(x, nn.Parameter)`` runs Parameter's Python ``__instancecheck__`` (it also accepts tensor
        # subclasses flagged ``_is_param``), asked of every saved tensor and op argument: ask it only of tensors
        # that are not plain ``torch.Tensor`` (a Parameter never is). ~3% of a host-bound forward on the dev CPU.
        if _maybe_param(t) or _maybe_param(t._base):
            return True
        ptr = t.untyped_storage().data_ptr()
        ref = self._by_ptr.get(ptr)
        if ref is None:
            return False
        p = ref()
        if p is None or p.untyped_storage().data_ptr() != ptr:  # the weight died; its address was reused
            del self._by_ptr[ptr]
            return False
        return True


class ModuleTracker:
    """Stack of modules inside their forward, on the thread that entered the context.

    NOTE [Untracked regions]
      A module entered while saved-tensor hooks other than ours are innermost (non-reentrant checkpoint's region:
      Hugging Face checkpoints each decoder layer) saves nothing that reaches our pack hook, so the op tracker
      has nothing to do there; yet as a torch-function mode it would still be called for every op of the region
      (on the dev CPU, 8 tiny checkpointed layers: 1306 calls a forward, the forward 13.5 -> 26.4 ms). At such a
      module's entry the tracker leaves the function-mode stack (when it is on top: modes entered after it stay
      untouched), and comes back when that module's forward ends, normally or not (``always_call``), or at the
      context's exit. Regions that are not modules (``checkpoint(fn)`` on a function) keep the per-op check.
      Our own code run outside any op (a pack of a region's inputs, the module-tree walk) runs outside the tracker
      too (``OpTracker.outside``).
    """

    def __init__(self, params: ParamRegistry) -> None:
        self.params = params  # the registry it fills (the op tracker registers autocast copies in it too)
        self._names: list[weakref.WeakKeyDictionary] = []  # module -> qualified name, one map per tree added
        self.unchecked: list = []  # (weak root, its walk) of each tree taken unchecked (NOTE [Unchecked walk])
        self._stack: list[nn.Module] = []
        self._thread = threading.get_ident()
        self._handles: list = []
        self.paused = False  # the global hooks are off for a replayed unit's body (``pause``)
        self._root: weakref.ref | None = None
        self.ops: OpTracker | None = None  # set by the OpTracker serving this context
        self._region: nn.Module | None = None  # the module whose forward the op tracker sits out
        self.units: Any = None  # units.Units told of every call (NOTE [Replay units]), or None
        self.regions: Any = None  # region_sums.RegionSums told of every region's start and end, or None
        self.cache = kv_cache.CacheSwitch()  # HF's KV cache off for training forwards (kv_cache.py)
        self.find_head = False  # note the output embedding's input each forward (NOTE [Fused head] in head.py)
        self._head: nn.Module | None = None  # the root's output embedding in this forward
        self.head_input: Any = None  # its input in this forward

    def root(self) -> nn.Module | None:
        """The outermost module whose forward ran most recently (the model, when none was named)."""
        return self._root() if self._root is not None else None

    def add_tree(self, root: nn.Module, check: bool = True) -> None:
        """Qualified names of ``root``'s modules, and its parameters and buffers registered: one walk of the tree.
        Names are relative to the latest root added (the outermost module that runs, or the ``model`` given to
        ``compress``: usually the same one, walked once); a module reached twice in one tree keeps its first name.
        Without ``check``, the tree's last walk where there is one, checked by :meth:`check_tree` (NOTE
        [Unchecked walk])."""
        walk = None if check or CHECK_EVERY_STEP else _WALKS.get(root)
        if walk is None:
            walk = walk_tree(root)
        else:
            self.unchecked.append((weakref.ref(root), walk))
        self._use(walk)
        self.params.add_module_tree(root, walk)

    def _use(self, walk: TreeWalk) -> None:
        """A walk's configs and names in use; its names are read newest first (name_of): the latest root's win."""
        self.cache.add(walk.configs)
        self._names.append(walk.names)

    def check_tree(self) -> None:
        """Walk the tree ``add_tree`` took unchecked; if it changed, the new walk's names, storages and configs join
        those in use (NOTE [Unchecked walk]). Called off the op tracker: the walk reads every parameter's storage."""
        pending, self.unchecked = self.unchecked, []
        for ref, used in pending:
            root = ref()
            walk = walk_tree(root) if root is not None else used
            if walk is not used:
                self._use(walk)
                self.params.add_walk(walk)

    def _name(self, module: nn.Module) -> str | None:
        for names in reversed(self._names):
            name = names.get(module)
            if name is not None:
                return name
        return None

    def start(self) -> None:
        self._handles = [
            nn.modules.module.register_module_forward_pre_hook(self._enter),
            nn.modules.module.register_module_forward_hook(self._leave, always_call=True),
        ]
        self.paused = False

    def pause(self) -> None:
        """Take the global hooks off while a replayed unit's body runs (NOTE [Replay units] rule 7): its module
        calls then take torch's hook-free path. The stack is kept; calls made while paused are not stacked."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self.paused = True

    def unpause(self) -> None:
        if self.paused:
            self.start()

    def stop(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self.paused = False
        if self.units is not None:
            self.units.close()
        self._stack.clear()
        self._head = self.head_input = None
        self._end_region()
        self.cache.restore()

    def _end_region(self) -> None:
        if self._region is not None:
            self._region = None
            if self.regions is not None:
                self.regions.leave()
            if self.ops is not None:
                self.ops.resume()

    def _enter(self, module: nn.Module, args: Any) -> None:
        if self._region is not None or threading.get_ident() != self._thread:
            return  # inside an untracked region its modules are not stacked either: nothing there packs for us
        if not self._stack:
            self._root = weakref.ref(module)
            if self._name(module) is None:
                self.ops.outside(self.add_tree, module, False) if self.ops is not None else self.add_tree(module, False)
            self.cache.forward_starts(module)
            if self.find_head:
                self._head, self.head_input = output_linear(module), None
        elif module is self._head:
            self.head_input = args[0] if args else None
        self._stack.append(module)
        ops = self.ops
        if self._region is None and ops is not None and not ops._ours() and ops.suspend():
            self._region = module  # NOTE [Untracked regions]
            if self.regions is not None:  # NOTE [Region sums] in region_sums.py
                self.regions.enter(module)
        elif self.units is not None:
            self.units.enter(module, args)

    def _leave(self, module: nn.Module, args: Any, output: Any) -> None:
        if (self._region is not None and module is not self._region) or threading.get_ident() != self._thread:
            return
        if self.units is not None:
            self.units.leave(module, output)
        # pop back to this module even if an inner forward raised before its own hook ran
        while self._stack:
            top = self._stack.pop()
            if top is self._region:
                self._end_region()
            if top is module:
                break

    def current(self) -> nn.Module | None:
        return self._stack[-1] if self._stack else None

    def current_class(self) -> str:
        stack = self._stack  # the producer tag of every op's output reads it
        return type(stack[-1]).__name__ if stack else ""

    def name_of(self, module: nn.Module | None) -> str:
        if module is None:
            return ""
        name = self._name(module)
        if name is None:  # a module outside the first tree (e.g. built during forward)
            name = f"<{type(module).__name__}>"
        return name


# ------------------------------------------------------------------------------------- checkpoint regions
_CHECKPOINT_MODULE = "torch.utils.checkpoint"
_PASS_THROUGH = ("hyclora_hooks", "torch.autograd")  # our own frames, and Function.apply between C++ and caller


def checkpoint_region(max_depth: int = 12) -> tuple[bool, nn.Module | None]:
    """Is the running pack saving a ``torch.utils.checkpoint`` region's inputs, and which module is the region?

    Called from a pack that no torch-level op is running (see docs/checkpointing.md): non-reentrant checkpoint
    saves its inputs from ``torch.utils.checkpoint`` itself (``_make_saved_tensor`` in ``save_inputs`` on torch
    2.13, ``_NoopSaveInputs.apply`` before), reentrant checkpoint through ``CheckpointFunction.apply``
    (``torch.autograd.function``) called by ``checkpoint``. The first frame outside this package and
    ``torch.autograd`` decides. The region's module is the one whose bound ``__call__``/``forward`` is the
    checkpointed function (Hugging Face passes ``partial(layer.__call__, **kwargs)``), when there is one.
    """
    f = sys._getframe(1)
    for _ in range(max_depth):
        if f is None:
            return False, None
        name = f.f_globals.get("__name__", "")
        if name == _CHECKPOINT_MODULE:
            return True, _region_module(f)
        if not name.startswith(_PASS_THROUGH):
            return False, None
        f = f.f_back
    return False, None


def _region_module(f: Any) -> nn.Module | None:
    for _ in range(4):  # save_inputs (+ its comprehension) -> the generator or checkpoint() itself
        if f is None or f.f_globals.get("__name__", "") != _CHECKPOINT_MODULE:
            return None
        fn = f.f_locals.get("function", f.f_locals.get("fn"))
        if fn is not None:
            while hasattr(fn, "func"):  # functools.partial, possibly nested
                fn = fn.func
            owner = getattr(fn, "__self__", fn)
            return owner if isinstance(owner, nn.Module) else None
        f = f.f_back
    return None
