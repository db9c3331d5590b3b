"""Policies: which codec each saved tensor gets, as a frozen, validated, TOML-round-trippable object.

A :class:`Policy` is an ordered list of :class:`Rule` s plus the paper's :class:`Knobs`. The first rule whose
``op_class``, ``role`` and ``module`` patterns all match a :class:`~hyclora_hooks.sites.SaveSite` picks the
codec; no match means ``keep``. Patterns are ``fnmatch`` globs; ``"*"`` as an op class matches every class but
``unknown``, which only a rule naming ``"unknown"`` itself can route (unknown producers stay lossless by default).
A codec parameter written ``"$bits"`` takes the knob's value, so ``compress("intra", bits=2)`` reaches every rule.

Presets live in ``policies/*.toml`` (installed as ``hyclora_hooks.policies``); files validate with errors that
name the file, line and field.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from .codecs import Codec, make_codec
from .codecs.keep import Keep
from .errors import HycloraError, HycloraTypeError, HycloraValueError, PolicyFileError, user_error
from .sites import OP_CLASSES, SaveSite

KEEP = Keep()


# ----------------------------------------------------------------------------------------------- knobs
@dataclass(frozen=True)
class Knobs:
    """The papers' knobs, with HyC-LoRA's defaults, plus ``min_bytes``.

    ``min_bytes``: tensors smaller than this are kept as is; their bytes are negligible and per-pack Python
    work would dominate (1 KiB keeps tiny test models compressible; real layers save megabytes a tensor).
    """

    bits: int = 4
    layernorm_outlier_ratio: float = 0.005
    softmax_outlier_ratio: float = 0.05
    iteration_threshold: int = 5
    min_bytes: int = 1024

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            validate_knob(f.name, getattr(self, f.name))


_KNOB_RULES: dict[str, tuple[type, Any]] = {
    "bits": (int, (2, 4, 8)),
    "layernorm_outlier_ratio": (float, (0.0, 0.5)),
    "softmax_outlier_ratio": (float, (0.0, 1.0)),
    "iteration_threshold": (int, (0, None)),
    "min_bytes": (int, (0, None)),
}
KNOB_NAMES = tuple(_KNOB_RULES)


def validate_knob(name: str, value: Any) -> None:
    """Raise a :class:`HycloraTypeError`/:class:`HycloraValueError` naming the knob if it is unknown or bad."""
    if name not in _KNOB_RULES:
        raise user_error(f"unknown knob {name!r}", name, f"one of {list(KNOB_NAMES)}", "fix the knob's name",
                         cls=HycloraTypeError)
    kind, allowed = _KNOB_RULES[name]
    ok_type = isinstance(value, (int, float)) if kind is float else isinstance(value, int)
    if isinstance(value, bool) or not ok_type:
        raise user_error(f"knob {name!r} must be {kind.__name__}", value, f"a {kind.__name__}",
                         f"pass {name}=<{kind.__name__}>", cls=HycloraTypeError)
    if isinstance(allowed, tuple) and len(allowed) == 2 and (allowed[1] is None or kind is float):
        lo, hi = allowed
        if value < lo or (hi is not None and value > hi):
            rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise user_error(f"knob {name!r} out of range", value, rng, f"pick {name} {rng}")
    elif value not in allowed:
        raise user_error(f"knob {name!r} out of range", value, f"one of {list(allowed)}", f"pick {name} from those")


# ----------------------------------------------------------------------------------------------- rules
def _as_patterns(what: str, value: Any) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items or not all(isinstance(v, str) for v in items):
        raise user_error(f"rule field {what!r}", value, "a string or a non-empty list of strings",
                         f"write {what} = \"*\" or a list", cls=HycloraTypeError)
    return tuple(items)


@dataclass(frozen=True)
class Rule:
    """Route saved tensors matching all three pattern lists to ``codec`` with ``params``; ``for_bits`` (empty:
    always) limits the rule to policies whose ``bits`` knob is one of those widths."""

    codec: str = "keep"
    op_class: tuple[str, ...] = ("*",)
    role: tuple[str, ...] = ("*",)
    module: tuple[str, ...] = ("*",)
    params: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""
    for_bits: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("op_class", "role", "module"):
            object.__setattr__(self, name, _as_patterns(name, getattr(self, name)))
        for oc in self.op_class:
            if oc != "*" and not any(fnmatch.fnmatchcase(c, oc) for c in OP_CLASSES):
                raise user_error("rule field 'op_class' names no op class", oc, f"'*' or one of {list(OP_CLASSES)}",
                                 "fix the op class")
        if not isinstance(self.params, Mapping):
            raise user_error("rule field 'params'", self.params, "a table of codec parameters",
                             "write params as a table", cls=HycloraTypeError)
        if not isinstance(self.reason, str):
            raise user_error("rule field 'reason'", self.reason, "a string", "quote it", cls=HycloraTypeError)
        widths = (self.for_bits,) if isinstance(self.for_bits, int) else self.for_bits
        if not isinstance(widths, (list, tuple)) or any(isinstance(b, bool) or b not in (2, 4, 8) for b in widths):
            raise user_error("rule field 'for_bits'", self.for_bits, "a list of bit widths from 2, 4, 8",
                             "write for_bits = [4, 8]", cls=HycloraTypeError)
        object.__setattr__(self, "for_bits", tuple(widths))
        object.__setattr__(self, "params", dict(self.params))

    def matches(self, site: SaveSite) -> bool:
        if site.op_class == "unknown" and "unknown" not in self.op_class:
            return False
        return (any(fnmatch.fnmatchcase(site.op_class, p) for p in self.op_class)
                and any(fnmatch.fnmatchcase(site.role, p) for p in self.role)
                and any(fnmatch.fnmatchcase(site.module, p) for p in self.module))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"codec": self.codec, "op_class": list(self.op_class), "role": list(self.role),
                             "module": list(self.module)}
        if self.reason:
            d["reason"] = self.reason
        if self.for_bits:
            d["for_bits"] = list(self.for_bits)
        d.update(self.params)
        return d


_RULE_FIELDS = ("codec", "op_class", "role", "module", "reason", "for_bits")


def _at(err: HycloraError, section: str, index: int | None, fld: str) -> HycloraError:
    """Note where in a policy ``err`` happened (``top``/``knobs``/``rule``, rule index, field) for file reports."""
    err.where = (section, index, fld)  # type: ignore[attr-defined]
    return err


def _resolve_params(params: Mapping[str, Any], knobs: Knobs, index: int) -> dict[str, Any]:
    out = {}
    for k, v in params.items():
        if isinstance(v, str) and v.startswith("$"):
            if v[1:] not in KNOB_NAMES:
                raise _at(user_error(f"rule {index} parameter {k!r} refers to an unknown knob", v,
                                     f"one of {['$' + n for n in KNOB_NAMES]}", "fix the reference"), "rule", index, k)
            v = getattr(knobs, v[1:])
        out[k] = v
    return out


# ---------------------------------------------------------------------------------------------- policy
@dataclass(frozen=True)
class Route:
    """The decision for one saved tensor: the codec, the rule that chose it, and why (for the accountant)."""

    codec: Codec
    rule: int | None
    reason: str


_SWITCHES = ("inter", "fuse", "fuse_head")  # a policy's top-level true/false fields


@dataclass(frozen=True)
class Policy:
    """An ordered rule list and the knobs; build with :func:`load_policy`, :meth:`from_dict` or directly."""

    name: str = "custom"
    rules: tuple[Rule, ...] = ()
    knobs: Knobs = Knobs()
    description: str = ""
    inter: bool = False  # inter-operator recipes (lineage, recompute, LoRA compensation): hyclora_hooks.lineage
    fuse: bool = False  # decode a compensated tensor and add its LoRA branch back in one kernel (same numbers)
    fuse_head: bool = False  # the loss's gradient for the lm_head's input formed in the forward (NOTE [Fused head])

    def __post_init__(self) -> None:
        for fld in _SWITCHES:
            if not isinstance(getattr(self, fld), bool):
                raise _at(user_error(f"policy field {fld!r}", getattr(self, fld), "true or false",
                                     f"write {fld} = true", cls=HycloraTypeError), "top", None, fld)
        if not isinstance(self.name, str) or not self.name:
            raise user_error("policy name", self.name, "a non-empty string", "give the policy a name",
                             cls=HycloraTypeError)
        object.__setattr__(self, "rules", tuple(self.rules))
        for i, r in enumerate(self.rules):
            if not isinstance(r, Rule):
                raise user_error(f"policy rule {i}", type(r).__name__, "a Rule", "build rules with Rule(...)",
                                 cls=HycloraTypeError)
        if not isinstance(self.knobs, Knobs):
            raise user_error("policy knobs", type(self.knobs).__name__, "a Knobs", "use Knobs(...)",
                             cls=HycloraTypeError)
        codecs = []
        for i, r in enumerate(self.rules):
            params = _resolve_params(r.params, self.knobs, i)
            try:
                codecs.append(make_codec(r.codec, params))
            except HycloraError as e:
                bad = next((k for k in params if repr(k) in str(e) or f".{k} " in str(e)), "codec")
                raise _at(e, "rule", i, bad) from None
        object.__setattr__(self, "_codecs", tuple(codecs))
        object.__setattr__(self, "_cache", {})
        object.__setattr__(self, "_variants", {})

    @property
    def codecs(self) -> tuple[Codec, ...]:
        """The codec of each rule, in rule order, built with the knobs resolved."""
        return self._codecs  # type: ignore[attr-defined]

    # routing ---------------------------------------------------------------------------------------
    def route(self, site: SaveSite, nbytes: int, is_float: bool) -> Route:
        """Pick the codec for one saved tensor of ``nbytes`` bytes."""
        key = (site.op_class, site.role, site.module)
        hit = self._cache.get(key)  # type: ignore[attr-defined]
        if hit is None:
            bits = self.knobs.bits
            hit = next((i for i, r in enumerate(self.rules)
                        if (not r.for_bits or bits in r.for_bits) and r.matches(site)), None)
            self._cache[key] = hit  # type: ignore[attr-defined]
        if hit is None:
            return Route(KEEP, None, "unknown op" if site.op_class == "unknown" else "no rule")
        codec = self._codecs[hit]  # type: ignore[attr-defined]
        if codec.lossless:
            return Route(codec, hit, self.rules[hit].reason or "rule keeps it")
        if codec.accepts and not is_float:
            return Route(KEEP, hit, "not floating point")
        if nbytes < self.knobs.min_bytes:
            return Route(KEEP, hit, "below min_bytes")
        return Route(codec, hit, "")

    def with_knobs(self, **knobs: Any) -> Policy:
        """A copy with some knobs changed; unknown names and bad values raise, naming the knob."""
        if not knobs:
            return self
        for k, v in knobs.items():
            validate_knob(k, v)
        key = tuple(sorted((k, type(v).__name__, v) for k, v in knobs.items()))
        variant = self._variants.get(key)  # type: ignore[attr-defined]
        if variant is None:  # one per knob setting: a step's compress() reuses its codecs and routing cache
            variant = dataclasses.replace(self, knobs=dataclasses.replace(self.knobs, **knobs))
            self._variants[key] = variant  # type: ignore[attr-defined]
        return variant

    # round trips -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "inter": self.inter, "fuse": self.fuse,
                "fuse_head": self.fuse_head,
                "knobs": dataclasses.asdict(self.knobs), "rule": [r.to_dict() for r in self.rules]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Policy:
        """Inverse of :meth:`to_dict`; a rule's codec parameters sit beside its fields (as in TOML).

        ``base = "<preset>"`` starts from that preset: its rules come after this policy's own (the first match
        wins, so own rules override), its knobs, ``inter``, ``fuse`` and ``fuse_head`` apply unless this policy
        sets them.
        """
        if not isinstance(d, Mapping):
            raise user_error("policy", type(d).__name__, "a table", "pass a dict", cls=HycloraTypeError)
        top = {"name", "description", "base", "knobs", "rule", *_SWITCHES}
        for k in d:
            if k not in top:
                raise _at(user_error(f"unknown policy field {k!r}", k, f"one of {sorted(top)}",
                                             "remove it or fix its spelling"), "top", None, k)
        parent = None
        if "base" in d:
            if not isinstance(d["base"], str) or d["base"] not in preset_names():
                raise _at(user_error("policy field 'base'", d["base"], f"a preset name, one of {preset_names()}",
                                     "fix the name"), "top", None, "base")
            parent = load_policy(d["base"])
        knob_table = d.get("knobs", {})
        if not isinstance(knob_table, Mapping):
            raise _at(user_error("policy field 'knobs'", knob_table, "a table", "write [knobs]",
                                         cls=HycloraTypeError), "top", None, "knobs")
        for k, v in knob_table.items():
            try:
                validate_knob(k, v)
            except HycloraError as e:
                raise _at(e, "knobs", None, k) from None
        rules = []
        for i, rd in enumerate(d.get("rule", [])):
            if not isinstance(rd, Mapping):
                raise _at(user_error(f"rule {i}", rd, "a table", "write [[rule]]", cls=HycloraTypeError),
                                  "rule", i, "rule")
            kw = {k: rd[k] for k in _RULE_FIELDS if k in rd}
            params = {k: v for k, v in rd.items() if k not in _RULE_FIELDS}
            if isinstance(params.get("params"), Mapping):  # accept an explicit params table too
                params = {**params.pop("params"), **params}
            for fld in ("op_class", "role", "module", "codec", "reason", "for_bits"):
                if fld in kw:
                    try:
                        Rule(**{fld: kw[fld]}) if fld != "codec" else make_codec_name_check(kw[fld])
                    except HycloraError as e:
                        raise _at(e, "rule", i, fld) from None
            rules.append(Rule(params=params, **kw))
        name = d.get("name", "custom")
        desc = d.get("description", "")
        for fld, val in (("name", name), ("description", desc)):
            if not isinstance(val, str):
                raise _at(user_error(f"policy field {fld!r}", val, "a string", "quote it",
                                             cls=HycloraTypeError), "top", None, fld)
        if parent is not None:
            rules += parent.rules
            knob_table = {**dataclasses.asdict(parent.knobs), **knob_table}
        switches = {f: d.get(f, getattr(parent, f) if parent is not None else False) for f in _SWITCHES}
        return cls(name=name, description=desc, rules=tuple(rules), knobs=Knobs(**knob_table), **switches)

    def to_toml(self) -> str:
        import tomli_w  # only writing TOML needs it (a declared dependency); loading uses the standard library

        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_toml(cls, text: str, source: str = "<string>") -> Policy:
        """Parse and validate TOML; errors name ``source``, the line and the field."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise PolicyFileError(f"hyclora_hooks: {source}: not valid TOML ({e}); fix the syntax there") from None
        try:
            return cls.from_dict(data)
        except HycloraError as e:
            section, index, fld = getattr(e, "where", ("top", None, "?"))
            line = _locate(text, section, index, fld)
            raise PolicyFileError(f"{source}:{line}: field {fld!r}: {e}") from None

    def summary(self) -> str:
        lines = [f"policy {self.name!r} ({self.description})" if self.description else f"policy {self.name!r}"]
        for i, c in enumerate(self._codecs):  # type: ignore[attr-defined]
            r = self.rules[i]
            when = f" (at {'/'.join(map(str, r.for_bits))} bits)" if r.for_bits else ""
            lines.append(f"  {i}: {','.join(r.op_class)}/{','.join(r.role)} @ {','.join(r.module)}{when} -> "
                         f"{c.describe()}")
        return "\n".join(lines)


def make_codec_name_check(name: Any) -> None:
    from .codecs import codec_names

    if not isinstance(name, str) or name not in codec_names():
        raise user_error("unknown codec", name, f"one of {codec_names()}", "fix the rule's `codec` field")


def _locate(text: str, section: str, index: int | None, fld: str) -> int:
    """1-based line of ``fld`` in ``section`` (``top``, ``knobs`` or the ``index``-th ``[[rule]]``)."""
    lines = text.splitlines()
    start, seen = 0, -1
    if section in ("knobs", "rule"):
        header = re.compile(r"^\s*\[\s*knobs\s*\]" if section == "knobs" else r"^\s*\[\[\s*rule\s*\]\]")
        for n, ln in enumerate(lines):
            if header.match(ln):
                seen += 1
                if section == "knobs" or seen == index:
                    start = n
                    break
    key = re.compile(rf"^\s*\"?{re.escape(fld)}\"?\s*=")
    for n in range(start + (1 if section != "top" else 0), len(lines)):
        if section != "top" and lines[n].lstrip().startswith("["):
            break
        if section == "top" and lines[n].lstrip().startswith("["):
            break
        if key.match(lines[n]):
            return n + 1
    return start + 1


# ---------------------------------------------------------------------------------------------- presets
def preset_names() -> list[str]:
    return list(_preset_names())


@functools.cache
def _preset_names() -> tuple[str, ...]:
    files = resources.files("hyclora_hooks.policies")
    return tuple(sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml")))


def load_policy(spec: str | Path | Policy) -> Policy:
    """A preset name, a path to a ``.toml`` file, or a :class:`Policy` (returned as is).

    Policies are immutable, so a name or an unchanged file (same modification time and size) gives the same
    object every time: ``compress("intra_inter")`` in a training loop parses the TOML and builds the codecs
    once, not every step (which was ~0.5 ms of host time at the start of each forward, while the GPU waits)."""
    if isinstance(spec, Policy):
        return spec
    if not isinstance(spec, (str, Path)):
        raise user_error("policy", type(spec).__name__, "a preset name, a .toml path or a Policy",
                         f"use one of {preset_names()}", cls=HycloraTypeError)
    names = preset_names()
    if isinstance(spec, str) and spec in names:
        return _preset(spec)
    path = Path(spec)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise user_error("policy file not found", str(path), "an existing .toml file",
                             f"check the path, or use a preset: {names}")
        st = path.stat()
        return _policy_file(str(path), st.st_mtime_ns, st.st_size)
    raise user_error("unknown policy preset", str(spec), f"one of {names} or a path to a .toml file",
                     "fix the name")


@functools.cache
def _preset(name: str) -> Policy:
    res = resources.files("hyclora_hooks.policies").joinpath(f"{name}.toml")
    return Policy.from_toml(res.read_text(encoding="utf-8"), source=f"policies/{name}.toml")


@functools.lru_cache(maxsize=32)
def _policy_file(path: str, mtime_ns: int, size: int) -> Policy:
    """A policy file's parse, keyed by its modification time and size so that an edited file is read again."""
    return Policy.from_toml(Path(path).read_text(encoding="utf-8"), source=path)


__all__ = ["Knobs", "Rule", "Policy", "Route", "load_policy", "preset_names", "validate_knob", "KNOB_NAMES",
           "HycloraValueError"]
