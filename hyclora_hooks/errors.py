"""The one family of errors users see.

Every message reads ``hyclora_hooks: <what> (got X, expected Y); <how to fix>``. The classes subclass the
built-in type a Python user would catch (``ValueError`` for a bad value, ``TypeError`` for a bad type), so
``except ValueError`` keeps working. Internal invariants go through :func:`internal_assert` instead.
"""

from __future__ import annotations


class HycloraError(Exception):
    """Base class of every error this library raises on purpose."""


class HycloraValueError(HycloraError, ValueError):
    """A knob, field or argument has a value outside what is allowed."""


class HycloraTypeError(HycloraError, TypeError):
    """A knob, field or argument has the wrong type."""


class PolicyFileError(HycloraValueError):
    """A policy file is malformed; the message names the file, the line and the field."""


class UnsupportedError(HycloraError, RuntimeError):
    """A request this machine cannot serve (for example CPU offload on a machine without CUDA)."""


def user_error(what: str, got: object, expected: str, fix: str, *, cls: type = HycloraValueError) -> HycloraError:
    """Build a user error in the library's one message format."""
    return cls(f"hyclora_hooks: {what} (got {got!r}, expected {expected}); {fix}")


def internal_assert(cond: bool, msg: str = "") -> None:
    """Fail loudly on a broken internal invariant: a bug in hyclora_hooks, never in user input."""
    if not cond:
        raise AssertionError(f"hyclora_hooks internal error: {msg}. Please report this with the traceback.")
