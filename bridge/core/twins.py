"""Lenient twins of the Structs: integer ids and Ruby-form timestamps at the speed of a typed decode."""

from __future__ import annotations

import functools
import operator
import types
import typing
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from bridge.events._base import CANVAS_ID
from bridge.timestamps import parse_lenient

# ---------------------------------------------------------------------------
# Lenient twins: integer ids and Ruby-form timestamps at the speed of a typed decode.
# ---------------------------------------------------------------------------


#: Marks a twin field that holds a timestamp as text (read by the generated fix-up).
_TIME_TEXT = msgspec.Meta(extra={"bridge_time_text": True})


#: The members of ``X | None`` / ``Expected[X]`` that carry no value of their own.
_NO_VALUE_TYPES = (type(None), msgspec.UnsetType)


class _Twins:
    """Builds, once per Struct type, lenient twins of the Struct, and their fix-ups.

    Canvas sends some ids as JSON integers, and some timestamps in Ruby's form
    (``2019-11-05 07:38:00 -0800``) that msgspec's RFC 3339 parser rejects. The general
    lenient path handles both in Python (decode to dicts, walk, ``msgspec.convert``), ~10x
    slower than a typed decode. A twin decodes such a value in one msgspec call: its id fields
    are ``str | int`` and, with ``times``, its timestamp fields are text. The generated fix-up
    then turns every integer id into its decimal string and parses every timestamp text the
    way the general lenient path does (``parse_lenient``), in place. A twin has the same fields,
    names, order and defaults, so it encodes exactly like the Struct. Anything else the
    Struct rejects, the twin rejects too (general path).
    """

    def __init__(self, times: bool) -> None:
        self._times = times
        self._types: dict[type, type | None] = {}

    def twin(self, cls: type) -> type | None:
        """The twin of ``cls``, or None when nothing in ``cls`` would change (nothing to do)."""
        if cls in self._types:
            return self._types[cls]
        self._types[cls] = None  # recursive Structs: a cycle does not get a twin
        fields = msgspec.structs.fields(cls)
        new_fields = []
        changed = False
        for f in fields:
            t, did = self._rewrite(f.type)
            changed |= did
            default: Any = msgspec.field(name=f.encode_name) if f.default is msgspec.NODEFAULT else (
                msgspec.field(default=f.default, name=f.encode_name))
            if f.default_factory is not msgspec.NODEFAULT:
                default = msgspec.field(default_factory=f.default_factory, name=f.encode_name)
            new_fields.append((f.name, t, default))
        if not changed:
            return None
        suffix = "Lenient" if self._times else "IntIds"
        twin = msgspec.defstruct(f"{cls.__name__}{suffix}", new_fields, kw_only=True, forbid_unknown_fields=True)
        self._types[cls] = twin
        return twin

    def _rewrite(self, t: Any) -> tuple[Any, bool]:
        origin = typing.get_origin(t)
        if origin is typing.Annotated:
            base, *metas = typing.get_args(t)
            if base is str and any(isinstance(m, msgspec.Meta) and (m.extra or {}).get(CANVAS_ID) for m in metas):
                return str | int, True
            new, did = self._rewrite(base)
            return (typing.Annotated[(new, *metas)], True) if did else (t, False)
        if t is datetime and self._times:
            return typing.Annotated[str, _TIME_TEXT], True
        if origin in (typing.Union, types.UnionType):
            args = typing.get_args(t)
            members = [self._rewrite(x) for x in args]
            if not any(did for _, did in members):
                return t, False
            # Only the shapes the fix-up reads unambiguously: ``X | None`` (``| UnsetType``)
            # with X rewritten. (``Id | int`` or ``Struct | str`` would leave ints it cannot
            # tell from ids.)
            if len([a for a in args if a not in _NO_VALUE_TYPES]) != 1:
                return t, False
            return functools.reduce(operator.or_, [m for m, _ in members]), True
        if origin is list:
            (item,) = typing.get_args(t)
            new, did = self._rewrite(item)
            return (list[new], True) if did else (t, False)  # type: ignore[valid-type]
        if origin is dict:
            key, value = typing.get_args(t)
            new, did = self._rewrite(value)
            return (dict[key, new], True) if did else (t, False)  # type: ignore[valid-type]
        if isinstance(t, type) and issubclass(t, msgspec.Struct) and origin is None:
            twin = self.twin(t)
            return (twin, True) if twin is not None else (t, False)
        return t, False

    def fixer(self, twin: type) -> Callable[[Any], None]:
        """Generated code: in ``twin`` and nested twins, integer ids -> ``str``, texts -> datetimes.

        It follows the types ``_rewrite`` produced, so every place where a twin accepts an
        integer id is fixed (the tests compare the result with the general path's). ``exec``
        stays because closures are slower: an interleaved A/B on the catalog's twin-decoded
        parts (``benchmarks/normalizer_ab.py``, 21 rounds) measured 612 ns per part here and
        1553 ns (x2.38) with one composed closure per type.
        """
        twins = {x for x in self._types.values() if x is not None}
        names: dict[type, str] = {}
        lines: list[str] = []

        def expr(t: Any, x: str, depth: int) -> str | None:
            """An expression giving the fixed value of ``x`` (of type ``t``), None if nothing to fix."""
            origin = typing.get_origin(t)
            if origin is typing.Annotated:
                base, *metas = typing.get_args(t)
                if _TIME_TEXT in metas:
                    return f"P({x})"
                return expr(base, x, depth)
            if origin in (typing.Union, types.UnionType):
                members = [a for a in typing.get_args(t) if a not in _NO_VALUE_TYPES]
                if int in members and str in members:
                    return f"(str({x}) if {x}.__class__ is int else {x})"
                if len(members) == 1:
                    inner = expr(members[0], x, depth)
                    return None if inner is None else f"({x} if {x} is None or {x} is U else {inner})"
                return None
            y = f"y{depth}"
            if origin is list:
                inner = expr(typing.get_args(t)[0], y, depth + 1)
                return None if inner is None else f"[{inner} for {y} in {x}]"
            if origin is dict:
                inner = expr(typing.get_args(t)[1], y, depth + 1)
                k = f"k{depth}"
                return None if inner is None else f"{{{k}: {inner} for {k}, {y} in {x}.items()}}"
            if isinstance(t, type) and t in twins:
                return f"{emit(t)}({x})"
            return None

        def emit(cls: type) -> str:
            if cls in names:
                return names[cls]
            name = names[cls] = f"f{len(names)}"
            body = []
            for f in msgspec.structs.fields(cls):
                e = expr(f.type, "v", 0)
                if e is not None:
                    body += [f"    v = o.{f.name}", f"    o.{f.name} = {e}"]
            lines.extend([f"def {name}(o):", *body, "    return o"])
            return name

        root = emit(twin)
        # parse_lenient as the general path parses: a malformed text raises (the caller then
        # takes the general path); a naive one stays naive for the normalizer to judge.
        namespace: dict[str, Any] = {"P": parse_lenient, "U": msgspec.UNSET}
        exec(compile("\n".join(lines), "<bridge.core id fix-up>", "exec"), namespace)  # our own generated code
        fn: Callable[[Any], None] = namespace[root]
        return fn
