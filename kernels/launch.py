"""Launch a compiled Triton kernel through its own launcher, skipping ``JITFunction.run``'s per-call work.

NOTE [Direct launch]
  ``kernel[grid](*args, **meta)`` binds the arguments, builds Triton's specialisation of each, turns the options
  into a string for the cache key, asks the driver for the device and stream and builds launch metadata, at every
  call: ~22 us of host time on an H200's host against ~7 us for the compiled kernel's own launcher, ~13 us
  through :func:`launch` (docs/benchmarks.md session 8).
  A training step launches the same few kernels with the same compile-time values hundreds of times, and at 64 MiB
  a quantize's whole GPU time is ~27 us, so that host path, not the kernel, set the rate a caller saw.

  1. The caller keeps one ``cache`` dict per set of compile-time values and options (``meta``): its launch plan.
     Passing a different ``meta`` with the same ``cache`` is a bug in the caller.
  2. A cache entry is keyed by the current device and, for every runtime argument, Triton's own specialisation of
     it (``native_specialize_impl``: a tensor's dtype and 16-byte alignment; an int's type, divisibility by 16 and
     whether it is 1; a float's type only, as Triton). Same key, same compiled kernel: what ``JITFunction.run``
     would pick.
  3. A key's first call goes through ``kernel[grid]`` (which compiles, or finds the kernel in Triton's cache) and
     keeps the compiled kernel's launcher; later calls launch it on the device's current stream, with the
     arguments in signature order (compile-time values included: the launcher skips them).
  4. Everything goes through ``kernel[grid]`` when ``DIRECT`` is off, under ``TRITON_INTERPRET`` (no compiled
     kernel), when Triton's launch hooks are set (a profiler such as proton needs them called), or when Triton
     cannot specialise an argument.
  5. The compiled launcher is a Python object (Triton 3.x's ``CudaLauncher``) whose call makes scratch buffers
     the kernel may need, then calls its C function with a few settings of its own. Where the kernel needs no
     scratch (none of ours does), rule 3 calls that C function with those settings directly (``C_LAUNCHER``): one
     Python frame and two calls less a launch (~200 a Llama step). Only for a launcher whose class and fields are
     the ones read here (``_c_launch``); anything else is called as before.
  6. :func:`launch` is one Python frame: its checks and key are written out, not called, and the device is read
     without ``torch.cuda.current_device``'s lazy-init frames. That saved little (~0.4 us a launch warm, ~1-2 us
     with the host's caches cold; ``benchmarks/experiments/launch_pointers.py``, session 41): what a launch costs
     over the C launcher's own time (about as much again, warm and cold) is rule 2's key, Triton's specialisation
     of every argument. Passing tensors' addresses as ints instead of the tensors saved nothing either.
"""

from __future__ import annotations

from functools import partial
from itertools import repeat
from typing import Any

import torch

DIRECT = True  # False: every launch through kernel[grid] (benchmarks/experiments/launch_host_time.py compares)
C_LAUNCHER = True  # False: rule 3 calls the compiled launcher object, not its C function (rule 5)
_MAX_ENTRIES = 64  # per cache: argument alignments that keep changing must not pile up compiled launchers

_spec: Any = None  # triton's native_specialize_impl with its backend bound, on first use (False: unavailable)
_knobs: Any = None
_jit_type: Any = None
_NO, _YES = repeat(False), repeat(True)  # its other arguments: not const, specialise, specialise on alignment

# the current CUDA device (``torch.cuda.current_device`` less its lazy-init check), for callers with a CUDA tensor at
# hand: the engine's device guard at every pack and unpack, and kernels that launch only on the current device
cuda_device = getattr(torch._C, "_cuda_getDevice", None) or torch.cuda.current_device


def _bind() -> bool:
    global _spec, _knobs, _jit_type
    if _spec is None:
        try:
            from triton import knobs
            from triton._C.libtriton import native_specialize_impl
            from triton.backends.compiler import BaseBackend
            from triton.runtime.jit import JITFunction
        except ImportError:  # a Triton without them: always the JIT path
            _spec = False
            return False
        _knobs, _jit_type = knobs.runtime, JITFunction
        _spec = partial(native_specialize_impl, BaseBackend)
    return _spec is not False


def launch(kernel: Any, grid: tuple, cache: dict, args: tuple, meta: dict) -> None:
    """``kernel[grid](*args, **meta)``, through the compiled kernel's launcher once ``cache`` holds it (NOTE
    [Direct launch]). ``args``: the runtime arguments, in the kernel's signature order, before its compile-time
    parameters; ``meta``: compile-time values by name plus launch options (``num_warps``, ...).

    Rule 6: one Python frame. Triton 3.6 keeps an empty ``HookChain`` (its ``calls`` list) as a launch hook where
    none is set, older versions None or the hook itself; the key is rule 2's, a ``map`` over Triton's C
    specialisation (no Python frame per argument), None where Triton cannot specialise an argument."""
    if _spec is None:
        _bind()
    if not DIRECT or _spec is False or type(kernel) is not _jit_type:  # (under TRITON_INTERPRET: no JITFunction)
        kernel[grid](*args, **meta)
        return
    enter, leave = _knobs.launch_enter_hook, _knobs.launch_exit_hook  # rule 4: a hook set takes Triton's path
    if enter is not None and getattr(enter, "calls", True) or leave is not None and getattr(leave, "calls", True):
        kernel[grid](*args, **meta)
        return
    device = cuda_device()  # a CUDA kernel's launch: CUDA is initialised (its tensors exist)
    try:
        key = (device, *map(_spec, args, _NO, _YES, _YES))
    except Exception:  # noqa: BLE001 (whatever Triton refuses, its own path reports)
        key = None
    hit = cache.get(key) if key is not None else None
    if hit is None:
        compiled = kernel[grid](*args, **meta)
        if key is not None:
            _remember(cache, key, kernel, compiled, len(args), meta)
        return
    run, c_run, settings, function, metadata, tail = hit
    n = len(grid)
    if c_run is not None and C_LAUNCHER:  # rule 5
        c_run(grid[0], grid[1] if n > 1 else 1, grid[2] if n > 2 else 1, torch._C._cuda_getCurrentRawStream(device),
              function, *settings, metadata, None, None, None, *args, *tail)
        return
    run(grid[0], grid[1] if n > 1 else 1, grid[2] if n > 2 else 1, torch._C._cuda_getCurrentRawStream(device),
        function, metadata, None, None, None, *args, *tail)


def _c_launch(run: Any) -> tuple:
    """(the C function, its settings before the metadata) of a compiled launcher that needs no scratch buffer,
    as Triton 3.6's ``CudaLauncher`` calls it (NOTE [Direct launch] rule 5); (None, ()) for any other."""
    fields = getattr(run, "__dict__", {})
    if (type(run).__name__ != "CudaLauncher" or fields.get("global_scratch_size") != 0
            or fields.get("profile_scratch_size") != 0 or not callable(fields.get("launch"))
            or "launch_cooperative_grid" not in fields or "launch_pdl" not in fields):
        return None, ()
    return fields["launch"], (fields["launch_cooperative_grid"], fields["launch_pdl"], None, None)


def _remember(cache: dict, key: tuple, kernel: Any, compiled: Any, nargs: int, meta: dict) -> None:
    """Keep ``compiled``'s launcher under ``key`` (rule 3), when it is a compiled kernel and ``meta`` names every
    parameter after the runtime ones."""
    names = getattr(kernel, "arg_names", None)
    if compiled is None or names is None or not hasattr(compiled, "packed_metadata"):  # interpreter, or unknown
        return
    try:
        tail = tuple(meta[n] for n in names[nargs:])
    except KeyError:  # a parameter left to its default: leave such launches to kernel[grid]
        return
    if len(cache) >= _MAX_ENTRIES:
        cache.clear()
    cache[key] = (compiled.run, *_c_launch(compiled.run), compiled.function, compiled.packed_metadata, tail)
