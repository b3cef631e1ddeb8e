"""One decoder per Struct type, trying its strategies in order and saying which one took the value.

1. ``EXACT``: the Struct itself, whose ``forbid_unknown_fields`` makes it fail on anything
   unexpected (one msgspec call);
2. ``TWIN``: lenient twins of the Struct (``bridge.core.twins``): integer ids, then also the
   other timestamp forms Canvas sends, still in one msgspec call;
3. ``LENIENT``: the general lenient decode (``bridge.core.lenient``): carries unknown fields
   through to the output and a malformed secondary timestamp as it came.

Strategies 2 and 3 run only with ``decode.mode = "lenient"`` (the default). Whichever strategy
takes a value, the output is the same. ``GENERIC``: an event type with no Struct at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from bridge.core.lenient import _coerce, _encode, _Lenience, _loads, _path_text, _put, _TypeFacts
from bridge.core.outputs import R_INVALID_BODY, R_INVALID_JSON, Rejected
from bridge.core.plans import (
    _build_plan,
    _compile_normalizer,
    _missing_detail,
    _MissingFields,
    _normalize,
    _NormalizeState,
    _Plan,
)
from bridge.core.twins import _Twins
from bridge.timestamps import TimestampError

#: The strategies, in the order they are tried (indexes into ``Core.strategy_counts``).
EXACT, TWIN, LENIENT, GENERIC = range(4)
STRATEGIES = ("exact", "twin", "lenient", "generic")


class _Slow(Exception):
    """Internal: the exact or twin strategy met something unusual; ``general`` decides (same result)."""


@dataclass(slots=True)
class _Decoded:
    """One typed part (metadata, body or Caliper event), normalized.

    ``out`` is what the published value holds: the Struct itself, or a plain JSON tree when
    fields outside the Struct (unknown, malformed) are carried through.
    """

    obj: Any
    out: Any
    unknown: tuple[str, ...] = ()
    malformed: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    strategy: int = EXACT  # which strategy took it


class _TypedDecoder:
    """Decodes one Struct type, its strategies in order: exact, twins, general lenient (if allowed).

    ``decode`` tries them all and says in ``_Decoded.strategy`` which took the value; ``exact_decode``
    and ``twin_decode`` are the first two on their own, for the formats' ``take``.
    """

    __slots__ = ("_facts", "_info", "_lenient", "_plan", "_type", "depth", "exact_decode", "missing",
                 "normalize_aware", "tiers")  # fmt: skip

    def __init__(
        self, typ: type, plans: dict[type, _Plan], lenient: bool, twins: Sequence[_Twins] = ()
    ) -> None:
        """``twins``: also build these lenient twins (lenient mode only), tried in this order."""
        self._type = typ
        self.exact_decode: Callable[[bytes], Any] = msgspec.json.Decoder(typ).decode
        info = msgspec.inspect.type_info(typ)
        assert isinstance(info, msgspec.inspect.StructType)
        self._info = info
        self._facts: dict[int, _TypeFacts] = {}  # for _coerce: the types of this Struct only
        self._plan = _build_plan(info, plans)
        self.normalize_aware = _compile_normalizer(self._plan)
        #: None when the Struct has no ``Expected`` field (nothing can be UNSET).
        self.missing = _MissingFields(self._plan) if self._plan.expected or self._plan.nested else None
        self.depth = self._plan.depth
        self._lenient = lenient
        #: (twin type, its decode, its fix-up) for each twin that differs from the Struct.
        self.tiers: list[tuple[type, Callable[[bytes], Any], Callable[[Any], None]]] = []
        for maker in twins if lenient else ():
            twin = maker.twin(typ)
            if twin is not None:
                self.tiers.append((twin, msgspec.json.Decoder(twin).decode, maker.fixer(twin)))

    def twin_decode(self, raw: bytes) -> Any:
        """The twin strategy: the first twin that decodes ``raw``, fixed up."""
        for _, decode, fix in self.tiers:
            try:
                obj = decode(raw)
            except msgspec.ValidationError:
                continue
            fix(obj)
            return obj
        raise _Slow

    def fill_missing(self, obj: Any, root: str, bad_reason: str = R_INVALID_BODY) -> tuple[str, ...]:
        """``UNSET`` fields -> ``None``; their paths. ``strict`` mode: a missing field is ``Rejected``."""
        missing = self.missing
        if missing is None or not missing.check(obj):
            return ()
        paths = missing.fill(obj, root)
        if not self._lenient:
            raise Rejected(bad_reason, _missing_detail(root, paths[0]))
        return paths

    def decode_strict(
        self, raw: bytes, root: str, state: _NormalizeState, bad_reason: str = R_INVALID_BODY
    ) -> _Decoded:
        obj = self.exact_decode(raw)
        missing = self.fill_missing(obj, root, bad_reason)
        _normalize(obj, self._plan, root, state)
        return _Decoded(obj, obj, missing=missing)

    def decode_twin(self, raw: bytes, root: str, state: _NormalizeState) -> _Decoded:
        """Through a lenient twin (integer ids, other timestamp forms); no unknown field.

        Raises ``_Slow``, ``TimestampError`` or a msgspec error when no twin takes ``raw``,
        ``Rejected`` when one does but a timestamp is not acceptable (naive, out of range).
        """
        obj = self.twin_decode(raw)
        missing = self.fill_missing(obj, root)
        _normalize(obj, self._plan, root, state)
        return _Decoded(obj, obj, missing=missing, strategy=TWIN)

    def decode(self, raw: bytes, root: str, state: _NormalizeState, bad_reason: str) -> _Decoded:
        """Every strategy in order; ``Rejected`` (saying why) when none takes ``raw``."""
        try:
            return self.decode_strict(raw, root, state, bad_reason)
        except msgspec.ValidationError as exc:
            if not self._lenient:
                raise Rejected(bad_reason, f"{root}: {exc}") from None
            if self.tiers:
                try:
                    return self.decode_twin(raw, root, state)
                except (_Slow, TimestampError, msgspec.MsgspecError):
                    pass  # unknown fields, malformed timestamps...: the full lenient decode
            return self._decode_lenient(raw, root, state, bad_reason)
        except msgspec.DecodeError as exc:
            raise Rejected(R_INVALID_JSON, f"{root}: {exc}") from None

    def _decode_lenient(self, raw: bytes, root: str, state: _NormalizeState, bad_reason: str) -> _Decoded:
        data: Any = _loads(raw, root, bad_reason)
        if not isinstance(data, dict):
            raise Rejected(bad_reason, f"{root} is not a JSON object")
        acc = _Lenience(self._facts)
        fixed = _coerce(data, self._info, (), acc)
        try:
            obj: Any = msgspec.convert(fixed, self._type, strict=False)
        except msgspec.ValidationError as exc:
            raise Rejected(bad_reason, f"{root}: {exc}".replace("`$", f"`{root}")) from None
        missing = self.fill_missing(obj, root, bad_reason)
        _normalize(obj, self._plan, root, state)
        if not acc.extras and not acc.malformed:
            return _Decoded(obj, obj, missing=missing, strategy=LENIENT)
        tree = msgspec.json.decode(_encode.encode(obj))
        for path, value in acc.malformed:
            _put(tree, path, value)
        for path, value in acc.extras:
            _put(tree, path, value)
        return _Decoded(
            obj,
            tree,
            unknown=tuple(_path_text(root, p) for p, _ in acc.extras),
            malformed=tuple(_path_text(root, p) for p, _ in acc.malformed),
            missing=missing,
            strategy=LENIENT,
        )


def _key_sets(cls: type) -> tuple[frozenset[str], frozenset[str] | None]:
    """The JSON keys a Struct requires (its identifiers), and those it allows (None: it ignores unknown keys)."""
    fields = msgspec.structs.fields(cls)
    required = frozenset(f.encode_name for f in fields if f.required)
    forbid = cls.__struct_config__.forbid_unknown_fields  # type: ignore[attr-defined]
    return required, frozenset(f.encode_name for f in fields) if forbid else None
