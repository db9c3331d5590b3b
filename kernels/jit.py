"""Deferred ``triton.jit`` for the kernel modules.

A kernel module defines its kernels and their ``@triton.jit`` helpers as plain functions and binds them here on
first use. So the package imports where triton is missing, and ``TRITON_INTERPRET`` is read when a kernel first
runs, not when hyclora_hooks is imported (tests set it late).
"""

from __future__ import annotations

import os
from functools import wraps
from typing import Callable, Iterable


def once(fn: Callable[[], None]) -> Callable[[], None]:
    """``fn`` (a kernel module's build: jit its kernels, bind what they use) run at the first call only; a call
    that raised runs it again next time. The kernel paths call it before every launch, so a later call is one
    check."""
    done: list = []

    @wraps(fn)
    def first_only() -> None:
        if not done:
            fn()
            done.append(True)

    return first_only


def build(namespace: dict, names: Iterable[str], no_specialize: dict[str, list[str]] | None = None) -> None:
    """Bind ``tl`` (triton.language) in the module ``namespace`` and replace each function in ``names`` by its
    ``triton.jit`` (helpers first, so kernels resolve them as globals); ``no_specialize``: a function's arguments
    that must not be specialised (an int argument equal to 1 would otherwise become a compile-time constant)."""
    import triton
    import triton.language as tl

    namespace["tl"] = tl
    for name in names:
        namespace[name] = triton.jit(namespace[name], do_not_specialize=(no_specialize or {}).get(name))


def dots_in_fp32() -> bool:
    """Must a kernel's 16-bit ``tl.dot`` run in fp32? Under ``TRITON_INTERPRET=1``, whose bf16 dot is wrong (numpy
    has no bf16). Read at each launch; ``tools/check_compile.py`` answers no while it records launches, so it
    compiles the dots the device runs."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"
