"""The codec interface: what every per-operator compressor of saved tensors provides.

A codec is a frozen dataclass (its fields are its parameters, validated in ``__post_init__``) with three
methods: :meth:`Codec.encode` turns a saved tensor into a payload, :meth:`Codec.decode` turns the payload back
into a tensor of the original dtype, shape and device, and :meth:`Codec.nbytes` says exactly how many bytes the
payload holds. Decoding is pure: it may run many times (``retain_graph=True``) and returns the same values.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch

from ..errors import HycloraTypeError, HycloraValueError, user_error


@dataclass(frozen=True)
class Codec:
    """Base class. Subclasses set ``name`` and ``lossless`` and implement the three methods."""

    name: ClassVar[str] = ""
    lossless: ClassVar[bool] = False
    # dtypes a codec can encode; anything else is kept as is, and the accountant records why.
    accepts: ClassVar[tuple[torch.dtype, ...]] = (torch.float32, torch.float16, torch.bfloat16)

    @property
    def channels_after_tokens(self) -> bool:
        """True when the codec keeps statistics per channel over tokens (rows): it is then given every dim after
        the token dim as channels (a ``(B, T, H, D)``-ordered attention tensor as ``(B, T, H*D)``), so that a
        group of rows is a run of tokens, not a mix of heads (NOTE [Lifetimes] rule 12 in ``engine.py``)."""
        return False

    def encode(self, t: torch.Tensor, site: Any = None) -> Any:
        raise NotImplementedError

    def decode(self, payload: Any) -> torch.Tensor:
        raise NotImplementedError

    def nbytes(self, payload: Any) -> int:
        raise NotImplementedError

    def decode_add(self, payload: Any, add: torch.Tensor) -> torch.Tensor | None:
        """``decode(payload)`` plus ``add`` (fp32 sum, rounded once to the decoded dtype) in one pass, or None if
        this codec has no fused path (the caller then decodes and adds)."""
        return None

    def decode_to(self, payload: Any, dtype: torch.dtype) -> torch.Tensor | None:
        """``decode(payload).to(dtype)``, the same bits, in one pass, or None if this codec has no such path (the
        caller then decodes and casts)."""
        return None

    def host_nbytes(self, payload: Any) -> int:
        """Bytes the payload holds in host memory on a machine whose saved tensors live on a device (offload)."""
        return 0

    def check_available(self) -> None:
        """Raise :class:`~hyclora_hooks.errors.UnsupportedError` if this machine cannot run the codec.

        ``compress()`` calls it for every codec of the policy, so a request that cannot be served fails at once.
        """

    def describe(self) -> str:
        """Short label for tables, e.g. ``quant(bits=4, group_size=64)``."""
        args = ", ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))
        return f"{self.name}({args})" if args else self.name


_REGISTRY: dict[str, type[Codec]] = {}


def register_codec(cls: type[Codec]) -> type[Codec]:
    """Class decorator: make ``cls`` available to policies under ``cls.name``."""
    if not cls.name:
        raise user_error("codec class without a name", cls.__name__, "a non-empty ClassVar `name`",
                         "set `name = \"...\"` on the class")
    _REGISTRY[cls.name] = cls
    return cls


def codec_names() -> list[str]:
    return sorted(_REGISTRY)


def make_codec(name: str, params: dict[str, Any] | None = None) -> Codec:
    """Build a registered codec from its name and parameters, with errors that name the bad field."""
    if not isinstance(name, str):
        raise user_error("codec name", name, "a string", f"use one of {codec_names()}", cls=HycloraTypeError)
    cls = _REGISTRY.get(name)
    if cls is None:
        raise user_error("unknown codec", name, f"one of {codec_names()}", "fix the rule's `codec` field")
    params = dict(params or {})
    allowed = {f.name for f in fields(cls)}
    extra = sorted(set(params) - allowed)
    if extra:
        raise user_error(f"unknown parameter {extra[0]!r} for codec {name!r}", extra[0],
                         f"one of {sorted(allowed)}", "remove it or fix its spelling")
    return cls(**params)


def check_int(owner: str, field: str, value: Any, allowed: tuple[int, ...] | None = None,
              minimum: int | None = None) -> None:
    """Validate an integer parameter; the error names ``owner.field``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise user_error(f"{owner}.{field} must be an int", value, "an int", f"pass {field}=<int>",
                         cls=HycloraTypeError)
    if allowed is not None and value not in allowed:
        raise user_error(f"{owner}.{field} out of range", value, f"one of {list(allowed)}", f"pick {field} from those")
    if minimum is not None and value < minimum:
        raise user_error(f"{owner}.{field} out of range", value, f">= {minimum}", f"raise {field}")


def check_float(owner: str, field: str, value: Any, lo: float, hi: float) -> None:
    """Validate a float parameter in ``[lo, hi]``; ints are accepted."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise user_error(f"{owner}.{field} must be a number", value, "a float", f"pass {field}=<float>",
                         cls=HycloraTypeError)
    if not (lo <= value <= hi):
        raise user_error(f"{owner}.{field} out of range", value, f"a value in [{lo}, {hi}]", f"pick {field} in range")


def held_nbytes(*tensors: torch.Tensor | None) -> int:
    """Bytes of the distinct storages behind ``tensors``: what holding them really costs."""
    seen: dict[int, int] = {}
    for t in tensors:
        if t is not None:
            s = t.untyped_storage()
            seen[s.data_ptr() or id(s)] = s.nbytes()
    return sum(seen.values())


__all__ = ["Codec", "register_codec", "make_codec", "codec_names", "HycloraValueError", "held_nbytes"]
