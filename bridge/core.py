"""The pure pipeline: one raw Kafka value in, typed records or one dead letter out.

    raw bytes -> limits -> decode (Structs) -> normalize (UTC) -> dedupe key -> route
              -> [Publish(topic, key, headers, value, timestamp_ms), ...]  or  [DeadLetter(...)]

No I/O, no clock (the caller passes ``now_ms``), no globals that change. The service and the
offline ``transform`` command run this same code. Nothing here raises on input: whatever the
bytes, ``Core.process`` returns either typed records or exactly one dead letter.

Decoding is tried in this order, each step only when the one before fails:

1. the Struct itself, whose ``forbid_unknown_fields`` makes it fail on anything unexpected
   (``Core._canvas_fast`` / ``_caliper_fast``: the fewest msgspec calls, generated
   normalizers, one encode per record);
2. lenient *twins* of the Struct (``_Twins``): integer ids, then also the other timestamp
   forms Canvas sends, still in one msgspec call;
3. the full lenient path (``_TypedDecoder._decode_lenient``): carries unknown fields through
   to the output and a malformed secondary timestamp as it came, flagged in the
   ``malformed_fields`` header.

Steps 2 and 3 run only with ``decode.mode = "lenient"`` (the default); in ``strict`` mode any
such deviation dead-letters the event. Whichever step takes an event, the output is the same
(the fuzz tests compare the fast paths with the general one on every case).

Missing is not invalid: a body field other than the event's identifier may be absent
(Canvas's ``compact_live_events`` drops null fields; versions add and remove fields). Each
step decodes it as ``UNSET`` (``Expected`` fields) or ``None``; ``_MissingFields`` then writes
``None`` in place of ``UNSET`` and names those fields in the ``missing_fields`` header, so an
absent field is published exactly as an explicit ``null`` (``strict`` mode dead-letters them).
"""

from __future__ import annotations

import functools
import hashlib
import operator
import re
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from bridge.config import Config, DecodeSettings, LimitsSettings, TopicsSettings
from bridge.events import CANVAS_EVENTS, CanvasMetadata
from bridge.events._base import CANVAS_ID
from bridge.events.caliper import (
    CALIPER_EVENTS,
    CaliperEnvelope,
    CaliperEventHead,
    caliper_event_name,
)
from bridge.pii import PiiPolicy
from bridge.timestamps import TimestampError, epoch_ms, parse_lenient, to_utc_text, utc_json

Headers = list[tuple[str, bytes]]  # a list: aiokafka's record builder takes lists only

# Header names, shared by the service, the transform command and the tests.
H_DEDUPE_KEY = "dedupe_key"
H_EVENT_NAME = "event_name"
H_FORMAT = "event_format"
H_GENERIC = "generic_body"
H_UNKNOWN_FIELDS = "unknown_fields"
H_MALFORMED = "malformed_fields"
H_MISSING = "missing_fields"
H_DECLARED_NAME = "declared_event_name"
H_REASON = "dlq_reason"
H_REASON_DETAIL = "dlq_detail"
H_SOURCE_TOPIC = "dlq_source_topic"
H_SOURCE_PARTITION = "dlq_source_partition"
H_SOURCE_OFFSET = "dlq_source_offset"
H_DLQ_TIME = "dlq_time"


class Source(msgspec.Struct, frozen=True, gc=False):
    """Where a raw value came from (a frozen Struct: built once per consumed record)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None = None


class Publish(msgspec.Struct, frozen=True, gc=False):
    """A typed record for a typed topic (a frozen Struct: much cheaper to build than a dataclass)."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers
    timestamp_ms: int
    event_name: str
    dedupe_key: str
    format: str = "canvas"
    generic: bool = False
    unknown_fields: tuple[str, ...] = ()
    malformed_fields: tuple[str, ...] = ()
    declared_event_name: str | None = None
    missing_fields: tuple[str, ...] = ()


class DeadLetter(msgspec.Struct, frozen=True, gc=False):
    """The original bytes, unchanged, with why they could not be published typed."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    reason: str
    detail: str


Output = Publish | DeadLetter

# Dead-letter reasons: a small fixed set, so that they can be metric labels.
R_TOO_LARGE = "too_large"
R_TOO_DEEP = "too_deep"
R_STRING_TOO_LONG = "string_too_long"
R_EMPTY = "empty_value"
R_INVALID_UTF8 = "invalid_utf8"
R_INVALID_JSON = "invalid_json"
R_NOT_OBJECT = "not_an_object"
R_UNKNOWN_ENVELOPE = "unknown_envelope"
R_INVALID_METADATA = "invalid_metadata"
R_INVALID_EVENT_NAME = "invalid_event_name"
R_INVALID_BODY = "invalid_body"
R_INVALID_TIMESTAMP = "invalid_timestamp"
R_NAIVE_TIMESTAMP = "naive_timestamp"
R_INVALID_CALIPER = "invalid_caliper_event"
R_INTERNAL = "internal_error"
DEAD_LETTER_REASONS = (
    R_TOO_LARGE,
    R_TOO_DEEP,
    R_STRING_TOO_LONG,
    R_EMPTY,
    R_INVALID_UTF8,
    R_INVALID_JSON,
    R_NOT_OBJECT,
    R_UNKNOWN_ENVELOPE,
    R_INVALID_METADATA,
    R_INVALID_EVENT_NAME,
    R_INVALID_BODY,
    R_INVALID_TIMESTAMP,
    R_NAIVE_TIMESTAMP,
    R_INVALID_CALIPER,
    R_INTERNAL,
)


class Rejected(Exception):
    """Internal: the event cannot be published typed; becomes a dead letter."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class CanvasRecord(msgspec.Struct, gc=False):
    """The value published for a Canvas-format event, without its ``dedupe_key``.

    Its canonical encoding is what the dedupe key hashes; the published value is that
    encoding with ``"dedupe_key"`` inserted first (see ``Core._canvas_publish``). ``metadata`` and
    ``body`` hold the normalized Structs (or, for a generic body or carried unknown fields,
    plain JSON values), so the whole value is encoded in one call.
    """

    event_name: str
    event_time: str | msgspec.Raw  # Raw: the fast path's UTC text, already a JSON string
    event_time_ms: int
    format: str
    metadata: Any
    body: Any
    generic: bool


class CaliperRecord(msgspec.Struct, gc=False):
    """The value published on a typed topic for one event of a Caliper envelope."""

    dedupe_key: str
    event_name: str
    event_time: str | msgspec.Raw  # Raw: the fast path's UTC text, already a JSON string
    event_time_ms: int
    format: str
    sensor: str
    send_time: str | msgspec.Raw
    data_version: str
    event: Any
    generic: bool


# ---------------------------------------------------------------------------
# Normalization plans: which attributes of a Struct hold timestamps, computed once per type.
# ---------------------------------------------------------------------------

_KIND_DT, _KIND_STRUCT, _KIND_LIST_STRUCT, _KIND_LIST_DT, _KIND_DICT_STRUCT = range(5)


@dataclass(slots=True)
class _Plan:
    steps: list[tuple[str, str, int, _Plan | None]] = field(default_factory=list)


def _unwrap_optional(t: msgspec.inspect.Type) -> msgspec.inspect.Type:
    """``X | None`` -> ``X``; ``Annotated[X, Meta(...)]`` -> ``X``."""
    if isinstance(t, msgspec.inspect.UnionType):
        non_null = [x for x in t.types if not isinstance(x, msgspec.inspect.NoneType)]
        if len(non_null) == 1:
            t = non_null[0]
    if isinstance(t, msgspec.inspect.Metadata):
        t = t.type
    return t


def _is_canvas_id(t: msgspec.inspect.Type) -> bool:
    if isinstance(t, msgspec.inspect.UnionType):
        return any(_is_canvas_id(x) for x in t.types)
    return isinstance(t, msgspec.inspect.Metadata) and bool((t.extra or {}).get(CANVAS_ID))


def _build_plan(info: msgspec.inspect.StructType, cache: dict[type, _Plan]) -> _Plan:
    if info.cls in cache:
        return cache[info.cls]
    plan = _Plan()
    cache[info.cls] = plan  # before recursing: recursive Structs terminate
    for f in info.fields:
        t = _unwrap_optional(f.type)
        if isinstance(t, msgspec.inspect.DateTimeType):
            plan.steps.append((f.name, f.encode_name, _KIND_DT, None))
        elif isinstance(t, msgspec.inspect.StructType):
            sub = _build_plan(t, cache)
            if sub.steps:
                plan.steps.append((f.name, f.encode_name, _KIND_STRUCT, sub))
        elif isinstance(t, msgspec.inspect.ListType | msgspec.inspect.VarTupleType):
            item = _unwrap_optional(t.item_type)
            if isinstance(item, msgspec.inspect.DateTimeType):
                plan.steps.append((f.name, f.encode_name, _KIND_LIST_DT, None))
            elif isinstance(item, msgspec.inspect.StructType):
                sub = _build_plan(item, cache)
                if sub.steps:
                    plan.steps.append((f.name, f.encode_name, _KIND_LIST_STRUCT, sub))
        elif isinstance(t, msgspec.inspect.DictType):
            val = _unwrap_optional(t.value_type)
            if isinstance(val, msgspec.inspect.StructType):
                sub = _build_plan(val, cache)
                if sub.steps:
                    plan.steps.append((f.name, f.encode_name, _KIND_DICT_STRUCT, sub))
    return plan


def _static_depth(t: msgspec.inspect.Type, seen: frozenset[type] = frozenset()) -> int | None:
    """The deepest JSON nesting a value of type ``t`` can have (None: unbounded, e.g. ``Any``).

    A value that decoded into Structs forbidding unknown fields cannot be deeper than this,
    so the fast path skips scanning it for ``limits.max_depth`` when the bound is below it.
    """
    if isinstance(t, msgspec.inspect.Metadata):
        return _static_depth(t.type, seen)
    if isinstance(t, msgspec.inspect.UnionType):
        depths = [_static_depth(x, seen) for x in t.types]
        return None if None in depths else max(d for d in depths if d is not None)
    if isinstance(t, msgspec.inspect.StructType):
        if t.cls in seen:
            return None
        inner = [_static_depth(f.type, seen | {t.cls}) for f in t.fields]
        return None if None in inner else 1 + max((d for d in inner if d is not None), default=0)
    if isinstance(t, msgspec.inspect.ListType | msgspec.inspect.VarTupleType | msgspec.inspect.SetType
                  | msgspec.inspect.FrozenSetType):
        item = _static_depth(t.item_type, seen)
        return None if item is None else 1 + item
    if isinstance(t, msgspec.inspect.DictType):
        value = _static_depth(t.value_type, seen)
        return None if value is None else 1 + value
    if isinstance(t, msgspec.inspect.TupleType):
        items = [_static_depth(x, seen) for x in t.item_types]
        return None if None in items else 1 + max((d for d in items if d is not None), default=0)
    if isinstance(t, _SCALAR_TYPES):
        return 0
    return None  # Any, Raw, object, custom types...: unbounded


_SCALAR_TYPES = (
    msgspec.inspect.NoneType, msgspec.inspect.BoolType, msgspec.inspect.IntType, msgspec.inspect.FloatType,
    msgspec.inspect.StrType, msgspec.inspect.DateTimeType, msgspec.inspect.DateType, msgspec.inspect.TimeType,
    msgspec.inspect.LiteralType, msgspec.inspect.EnumType, msgspec.inspect.UUIDType, msgspec.inspect.DecimalType,
)  # fmt: skip


class _NormalizeState:
    __slots__ = ("assume_utc",)

    def __init__(self, assume_utc: bool) -> None:
        self.assume_utc = assume_utc


def _utc(value: datetime, path: str, wire: str, state: _NormalizeState) -> str:
    if value.tzinfo is None:
        if not state.assume_utc:
            raise Rejected(R_NAIVE_TIMESTAMP, f"{path}.{wire} has no UTC offset: {value.isoformat()}")
        value = value.replace(tzinfo=UTC)
    try:
        return to_utc_text(value)
    except TimestampError as exc:
        raise Rejected(R_INVALID_TIMESTAMP, f"{path}.{wire}: {exc}") from None


def _normalize(obj: Any, plan: _Plan, path: str, state: _NormalizeState) -> None:
    """Replace each timestamp attribute by its UTC wire text, in place, before encoding.

    After this the Struct is an output view: its datetime fields hold ``str``. msgspec does not
    validate on attribute assignment, and encodes the text as it is, which keeps the
    sub-second precision exactly as ``to_utc_text`` writes it (msgspec would write 6 digits).
    """
    for attr, wire, kind, sub in plan.steps:
        value = getattr(obj, attr)
        if value is None:
            continue
        if kind == _KIND_DT:
            if isinstance(value, datetime):
                setattr(obj, attr, _utc(value, path, wire, state))
        elif kind == _KIND_LIST_DT:
            setattr(obj, attr, [_utc(v, path, wire, state) if isinstance(v, datetime) else v for v in value])
        else:
            assert sub is not None
            for item, here in _sub_structs(value, kind, f"{path}.{wire}"):
                _normalize(item, sub, here, state)


def _sub_structs(value: Any, kind: int, here: str) -> Iterator[tuple[Any, str]]:
    """The Structs in a field of kind ``_KIND_STRUCT``/``_LIST_STRUCT``/``_DICT_STRUCT``, with their paths."""
    if kind == _KIND_STRUCT:
        yield value, here
    elif kind == _KIND_LIST_STRUCT:
        for i, item in enumerate(value):
            if item is not None:
                yield item, f"{here}[{i}]"
    else:  # _KIND_DICT_STRUCT
        for k, item in value.items():
            if item is not None:
                yield item, f"{here}.{k}"


class _Slow(Exception):
    """Internal: the fast path met something unusual; the general path decides (same result)."""


def _compile_normalizer(root: _Plan) -> Callable[[Any], None]:
    """The plan as straight-line Python: one generated function per Struct type, no dispatch.

    Same effect as ``_normalize`` for Structs whose timestamps are all aware; anything else
    raises (``_Slow``, ``OverflowError``...) and the caller takes the general path, which
    reports the precise field. Attribute names are Struct field names: valid identifiers.
    """
    plans: dict[int, _Plan] = {}

    def collect(plan: _Plan) -> None:
        if id(plan) not in plans:
            plans[id(plan)] = plan
            for *_, sub in plan.steps:
                if sub is not None:
                    collect(sub)

    collect(root)
    lines: list[str] = []
    for pid, plan in plans.items():
        lines.append(f"def n{pid}(o):")
        lines.append("    pass")
        for attr, _wire, kind, sub in plan.steps:
            lines += [f"    v = o.{attr}", "    if v is not None:"]
            if kind == _KIND_DT:
                lines.append(f"        o.{attr} = T(v)")
            elif kind == _KIND_LIST_DT:
                lines.append(f"        o.{attr} = [None if x is None else T(x) for x in v]")
            elif kind == _KIND_STRUCT:
                lines.append(f"        n{id(sub)}(v)")
            else:
                items = "v" if kind == _KIND_LIST_STRUCT else "v.values()"
                lines += [f"        for x in {items}:", "            if x is not None:"]
                lines.append(f"                n{id(sub)}(x)")
    namespace: dict[str, Any] = {"T": utc_json}
    exec(compile("\n".join(lines), "<bridge.core normalizer>", "exec"), namespace)  # our own generated code
    fn: Callable[[Any], None] = namespace[f"n{id(root)}"]
    return fn


# ---------------------------------------------------------------------------
# Missing fields: UNSET -> None, and the names of the fields an event lacked.
# ---------------------------------------------------------------------------


@dataclass(slots=True)
class _MissingPlan:
    """The ``Expected`` fields of a Struct (default ``UNSET``) and its nested Structs that have some."""

    expected: list[tuple[str, str]] = field(default_factory=list)  # (attribute, JSON name)
    nested: list[tuple[str, str, int, _MissingPlan]] = field(default_factory=list)


def _build_missing_plan(info: msgspec.inspect.StructType, cache: dict[type, _MissingPlan]) -> _MissingPlan:
    if info.cls in cache:
        return cache[info.cls]
    plan = cache[info.cls] = _MissingPlan()  # before recursing: recursive Structs terminate
    # msgspec.inspect shows an UNSET default as NODEFAULT: the defaults come from the Struct.
    unset = {f.name for f in msgspec.structs.fields(info.cls) if f.default is msgspec.UNSET}
    for f in info.fields:
        if f.name in unset:
            plan.expected.append((f.name, f.encode_name))
        t = _unwrap_optional(f.type)
        kind, sub_info = _KIND_STRUCT, t
        if isinstance(t, msgspec.inspect.ListType | msgspec.inspect.VarTupleType):
            kind, sub_info = _KIND_LIST_STRUCT, _unwrap_optional(t.item_type)
        elif isinstance(t, msgspec.inspect.DictType):
            kind, sub_info = _KIND_DICT_STRUCT, _unwrap_optional(t.value_type)
        if isinstance(sub_info, msgspec.inspect.StructType):
            sub = _build_missing_plan(sub_info, cache)
            if sub.expected or sub.nested:
                plan.nested.append((f.name, f.encode_name, kind, sub))
    return plan


class _MissingFields:
    """For one Struct type: are some fields ``UNSET``, and which (replaced by ``None``)?

    ``check`` is the per-event cost, so it is generated code: one ``is UNSET`` test per
    ``Expected`` field, chained with ``or``. An interleaved A/B (benchmarks/missing_fields_ab.py)
    measured it against a closure over ``operator.attrgetter`` (one C call, then ``UNSET in``
    the tuple) and against ``None`` defaults with a key scan when a value is ``None``; the
    generated check was the cheapest. ``fill`` runs only when ``check`` found something.
    """

    __slots__ = ("check", "plan")

    def __init__(self, plan: _MissingPlan) -> None:
        self.plan = plan
        self.check = self._compile(plan)

    @staticmethod
    def _compile(root: _MissingPlan) -> Callable[[Any], bool]:
        plans: dict[int, _MissingPlan] = {}

        def collect(plan: _MissingPlan) -> None:
            if id(plan) not in plans:
                plans[id(plan)] = plan
                for *_, sub in plan.nested:
                    collect(sub)

        collect(root)
        lines: list[str] = []
        for pid, plan in plans.items():
            terms = [f"o.{attr} is U" for attr, _ in plan.expected]
            for attr, _wire, kind, sub in plan.nested:
                if kind == _KIND_STRUCT:
                    terms.append(f"(o.{attr} is not None and m{id(sub)}(o.{attr}))")
                else:
                    items = f"o.{attr}" if kind == _KIND_LIST_STRUCT else f"o.{attr}.values()"
                    terms.append(f"(o.{attr} is not None and any(m{id(sub)}(x) for x in {items} if x is not None))")
            lines += [f"def m{pid}(o):", f"    return {' or '.join(terms) or 'False'}"]
        namespace: dict[str, Any] = {"U": msgspec.UNSET}
        exec(compile("\n".join(lines), "<bridge.core missing fields>", "exec"), namespace)  # our own generated code
        fn: Callable[[Any], bool] = namespace[f"m{id(root)}"]
        return fn

    def fill(self, obj: Any, root: str) -> tuple[str, ...]:
        """Every ``UNSET`` field of ``obj`` (nested ones too) becomes ``None``; their paths."""
        out: list[str] = []
        _fill_missing(obj, self.plan, root, out)
        return tuple(out)


def _fill_missing(obj: Any, plan: _MissingPlan, path: str, out: list[str]) -> None:
    for attr, wire in plan.expected:
        if getattr(obj, attr) is msgspec.UNSET:
            setattr(obj, attr, None)
            out.append(f"{path}.{wire}")
    for attr, wire, kind, sub in plan.nested:
        value = getattr(obj, attr)
        if value is not None and value is not msgspec.UNSET:
            for item, here in _sub_structs(value, kind, f"{path}.{wire}"):
                _fill_missing(item, sub, here, out)


def _missing_detail(root: str, path: str) -> str:
    """What strict mode says of a missing field, in msgspec's words (``- at`` a nested object)."""
    parent, _, name = path.rpartition(".")
    where = "" if parent == root else f" - at `{parent}`"
    return f"{root}: Object missing required field `{name}`{where}"


# ---------------------------------------------------------------------------
# Lenient twins: integer ids and Ruby-form timestamps at the speed of a typed decode.
# ---------------------------------------------------------------------------


def _id_like(encode_name: str) -> bool:
    """Named like an identifier, as ``_coerce`` reads it."""
    return encode_name == "id" or encode_name.endswith(("_id", "_ids"))


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
            t, did = self._rewrite(f.type, _id_like(f.encode_name))
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

    def _rewrite(self, t: Any, id_like: bool) -> tuple[Any, bool]:
        origin = typing.get_origin(t)
        if origin is typing.Annotated:
            base, *metas = typing.get_args(t)
            if base is str and any(isinstance(m, msgspec.Meta) and (m.extra or {}).get(CANVAS_ID) for m in metas):
                return str | int, True
            new, did = self._rewrite(base, id_like)
            return (typing.Annotated[(new, *metas)], True) if did else (t, False)
        if t is str and id_like:
            return str | int, True
        if t is datetime and self._times:
            return typing.Annotated[str, _TIME_TEXT], True
        if origin in (typing.Union, types.UnionType):
            args = typing.get_args(t)
            members = [self._rewrite(x, id_like) for x in args]
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
            new, did = self._rewrite(item, id_like)
            return (list[new], True) if did else (t, False)  # type: ignore[valid-type]
        if origin is dict:
            key, value = typing.get_args(t)
            new, did = self._rewrite(value, False)
            return (dict[key, new], True) if did else (t, False)  # type: ignore[valid-type]
        if isinstance(t, type) and issubclass(t, msgspec.Struct) and origin is None:
            twin = self.twin(t)
            return (twin, True) if twin is not None else (t, False)
        return t, False

    def fixer(self, twin: type) -> Callable[[Any], None]:
        """Generated code: in ``twin`` and nested twins, integer ids -> ``str``, texts -> datetimes.

        It follows the types ``_rewrite`` produced, so every place where a twin accepts an
        integer id is fixed (the tests compare the result with the general path's).
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


# ---------------------------------------------------------------------------
# The lenient path: fix what a careful operator would accept, remember what was carried.
# ---------------------------------------------------------------------------

_PLACEHOLDER_TIME = _EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
PathT = tuple[str | int, ...]


#: What ``_coerce`` reads of a type: (the type, kept alive; Canvas id?; without ``| None``;
#: the fields of a Struct by JSON name).
_TypeFacts = tuple[Any, bool, Any, "dict[str, msgspec.inspect.Field] | None"]


@dataclass(slots=True)
class _Lenience:
    facts: dict[int, _TypeFacts]  # by id(type): the decoder's memo, built on first use
    extras: list[tuple[PathT, Any]] = field(default_factory=list)
    malformed: list[tuple[PathT, Any]] = field(default_factory=list)


def _type_facts(t: msgspec.inspect.Type, memo: dict[int, _TypeFacts]) -> _TypeFacts:
    facts = memo.get(id(t))
    if facts is None:
        bare = _unwrap_optional(t)
        known = {f.encode_name: f for f in bare.fields} if isinstance(bare, msgspec.inspect.StructType) else None
        facts = memo[id(t)] = (t, _is_canvas_id(t), bare, known)
    return facts


def _path_text(root: str, path: PathT) -> str:
    out = root
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _coerce(value: Any, t: msgspec.inspect.Type, path: PathT, acc: _Lenience, id_like: bool = False) -> Any:
    """Prepare decoded JSON for ``msgspec.convert`` into the Struct described by ``t``.

    ``id_like``: the field is an identifier (``Id``, or named ``id``/``*_id``) typed as a string.
    Canvas sends some of those as JSON integers: they are published as their decimal strings.
    """
    if value is None:
        return None
    _, canvas_id, t, known = _type_facts(t, acc.facts)
    if (id_like or canvas_id) and isinstance(value, int) and not isinstance(value, bool):
        return str(value) if isinstance(t, msgspec.inspect.StrType) else value
    if known is not None:
        if not isinstance(value, dict):
            return value
        out: dict[str, Any] = {}
        for k, v in value.items():
            f = known.get(k)
            if f is None:
                acc.extras.append(((*path, k), v))
            else:
                out[k] = _coerce(v, f.type, (*path, k), acc, k == "id" or k.endswith(("_id", "_ids")))
        return out
    if isinstance(t, msgspec.inspect.DateTimeType):
        if isinstance(value, str):
            try:
                return parse_lenient(value)
            except TimestampError:
                acc.malformed.append((path, value))
                return _PLACEHOLDER_TIME
        return value
    if isinstance(t, msgspec.inspect.ListType | msgspec.inspect.VarTupleType):
        if isinstance(value, list):
            return [_coerce(v, t.item_type, (*path, i), acc, id_like) for i, v in enumerate(value)]
        return value
    if isinstance(t, msgspec.inspect.DictType):
        if isinstance(value, dict):
            return {k: _coerce(v, t.value_type, (*path, k), acc) for k, v in value.items()}
        return value
    return value


def _put(tree: Any, path: PathT, value: Any) -> None:
    for p in path[:-1]:
        tree = tree[p]
    tree[path[-1]] = value


_json_decode = msgspec.json.Decoder().decode


def _loads(raw: bytes, root: str, bad_reason: str) -> Any:
    """Untyped decode of a part; a number out of range (``1e999``) is the part's fault."""
    try:
        return _json_decode(raw)
    except msgspec.ValidationError as exc:
        raise Rejected(bad_reason, f"{root}: {exc}".replace("`$", f"`{root}")) from None
    except msgspec.DecodeError as exc:
        raise Rejected(R_INVALID_JSON, f"{root}: {exc}") from None


_encode = msgspec.json.Encoder()
#: Published values: Structs in their field order, dict keys sorted, so the bytes of an event
#: do not depend on the JSON key order or whitespace it arrived with (the dedupe key hashes them).
_record_encode = msgspec.json.Encoder(order="deterministic").encode


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


class _TypedDecoder:
    """Decodes one Struct type: fast strict path, then the lenient path if allowed."""

    __slots__ = ("_facts", "_info", "_lenient", "_plan", "_type", "depth", "fast_decode", "fast_normalize",
                 "missing", "tiers")  # fmt: skip

    def __init__(
        self, typ: type, plans: dict[type, _Plan], lenient: bool, twins: Sequence[_Twins] = ()
    ) -> None:
        """``twins``: also build these lenient twins (lenient mode only), tried in this order."""
        self._type = typ
        self.fast_decode: Callable[[bytes], Any] = msgspec.json.Decoder(typ).decode
        info = msgspec.inspect.type_info(typ)
        assert isinstance(info, msgspec.inspect.StructType)
        self._info = info
        self._facts: dict[int, _TypeFacts] = {}  # for _coerce: the types of this Struct only
        self._plan = _build_plan(info, plans)
        self.fast_normalize = _compile_normalizer(self._plan)
        missing_plan = _build_missing_plan(info, {})
        #: None when the Struct has no ``Expected`` field (nothing can be UNSET).
        self.missing = _MissingFields(missing_plan) if missing_plan.expected or missing_plan.nested else None
        self.depth = _static_depth(info)
        self._lenient = lenient
        #: (twin type, its decode, its fix-up) for each twin that differs from the Struct.
        self.tiers: list[tuple[type, Callable[[bytes], Any], Callable[[Any], None]]] = []
        for maker in twins if lenient else ():
            twin = maker.twin(typ)
            if twin is not None:
                self.tiers.append((twin, msgspec.json.Decoder(twin).decode, maker.fixer(twin)))

    def lenient_fast_decode(self, raw: bytes) -> Any:
        """The fast path's second chance: the first twin that decodes ``raw``, fixed up."""
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
        obj = self.fast_decode(raw)
        missing = self.fill_missing(obj, root, bad_reason)
        _normalize(obj, self._plan, root, state)
        return _Decoded(obj, obj, missing=missing)

    def decode_twin(self, raw: bytes, root: str, state: _NormalizeState) -> _Decoded:
        """Through a lenient twin (integer ids, other timestamp forms); no unknown field.

        Raises ``_Slow``, ``TimestampError`` or a msgspec error when no twin takes ``raw``,
        ``Rejected`` when one does but a timestamp is not acceptable (naive, out of range).
        """
        obj = self.lenient_fast_decode(raw)
        missing = self.fill_missing(obj, root)
        _normalize(obj, self._plan, root, state)
        return _Decoded(obj, obj, missing=missing)

    def decode(self, raw: bytes, root: str, state: _NormalizeState, bad_reason: str) -> _Decoded:
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
            return _Decoded(obj, obj, missing=missing)
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
        )


_TOPIC_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_STRING_RE = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def _snake(name: str) -> str:
    return _CAMEL_BOUNDARY.sub("_", name).lower()


def _key_sets(cls: type) -> tuple[frozenset[str], frozenset[str] | None]:
    """The JSON keys a Struct requires (its identifiers), and those it allows (None: it ignores unknown keys)."""
    fields = msgspec.structs.fields(cls)
    required = frozenset(f.encode_name for f in fields if f.required)
    forbid = cls.__struct_config__.forbid_unknown_fields  # type: ignore[attr-defined]
    return required, frozenset(f.encode_name for f in fields) if forbid else None


def _caliper_key(event_id: bytes, name: bytes, object_id: bytes) -> str:
    """sha256 over the parts' lengths, then the parts (``"caliper"``, id, name, object id): 32 hex."""
    data = b"7,%d,%d,%d;caliper%s%s%s" % (len(event_id), len(name), len(object_id), event_id, name, object_id)
    return hashlib.sha256(data).hexdigest()[:32]


class _Envelope(msgspec.Struct):
    """The top level of a Canvas-format value; the body is decoded once its type is known."""

    metadata: msgspec.Raw
    body: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))


_NULL = msgspec.Raw(b"null")


class _CaliperIn(CaliperEnvelope, forbid_unknown_fields=True):
    """The fast path's view of a Caliper envelope (unknown fields: the general path)."""


class _CanvasIn(msgspec.Struct, forbid_unknown_fields=True):
    """The fast path's view of a Canvas-format value: the metadata typed in the same pass.

    Unknown top-level fields send the value to the general path, which ignores them too but
    also checks the depth of what it skips.
    """

    metadata: CanvasMetadata
    body: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))


#: What the Canvas fast path needs of an event type: its body decoder, its topic, whether its
#: Structs bound the depth within limits.max_depth, its event_name / event_format headers, and
#: the check for UNSET fields (None: the Struct has no ``Expected`` field).
_CanvasRoute = tuple[
    "_TypedDecoder", str, bool, tuple[tuple[str, bytes], tuple[str, bytes]], Callable[[Any], bool] | None
]


class Core:
    """The bridge's pipeline, configured once. ``process`` is pure and never raises."""

    @classmethod
    def from_config(cls, config: Config) -> Core:
        return cls(config.topics, config.decode, config.limits, PiiPolicy(config.pii))

    def __init__(
        self,
        topics: TopicsSettings,
        decode: DecodeSettings,
        limits: LimitsSettings,
        pii: PiiPolicy | None = None,
        fast_paths: bool = True,
    ) -> None:
        """``fast_paths=False`` sends every value through the general path (tests compare both)."""
        self.topics = topics
        self._fast_paths = fast_paths
        self._pii = pii if pii is not None and pii.active else None
        self.limits = limits
        self._assume_utc = decode.naive_timestamps == "assume_utc"
        self._lenient = lenient = decode.mode == "lenient"
        plans: dict[type, _Plan] = {}
        twins = (_Twins(times=False), _Twins(times=True))  # integer ids, then also Ruby-form times
        self._metadata = _TypedDecoder(CanvasMetadata, plans, lenient, twins)
        self._bodies = {name: _TypedDecoder(t, plans, lenient, twins) for name, t in CANVAS_EVENTS.items()}
        self._caliper = {name: _TypedDecoder(t, plans, lenient) for name, t in CALIPER_EVENTS.items()}
        # The envelope's twin reads sendTime in the other forms too (its data stays raw).
        self._caliper_envelope = _TypedDecoder(CaliperEnvelope, plans, lenient, (_Twins(times=True),))
        self._head = msgspec.json.Decoder(CaliperEventHead).decode
        self._body_keys = {name: _key_sets(t) for name, t in CANVAS_EVENTS.items()}
        self._top = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
        self._canvas_in = msgspec.json.Decoder(_CanvasIn).decode
        self._canvas_in_tiers: list[tuple[Callable[[bytes], Any], Callable[[Any], None]]] = []
        for twin, _, fix in self._metadata.tiers:
            twin_in = msgspec.defstruct(f"_CanvasIn{twin.__name__}", [
                ("metadata", twin),
                ("body", msgspec.Raw, msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))),
            ], forbid_unknown_fields=True)  # fmt: skip
            self._canvas_in_tiers.append((msgspec.json.Decoder(twin_in).decode, fix))
        self._fast_metadata = self._metadata.fast_normalize
        self._caliper_in = msgspec.json.Decoder(_CaliperIn).decode
        meta_depth = self._metadata.depth
        # Event names whose Structs bound a Canvas value's depth within limits.max_depth.
        self._depth_bounded = frozenset(
            name
            for name, d in self._bodies.items()
            if meta_depth is not None and d.depth is not None and 1 + max(meta_depth, d.depth) <= limits.max_depth
        )
        self._header_memo: dict[tuple[str, str], tuple[tuple[str, bytes], tuple[str, bytes]]] = {}
        # The fast paths' per-value constants, read once here instead of through the settings.
        self._max_bytes = limits.max_message_bytes
        self._fast_limit = limits.max_string_length if fast_paths else -1
        self._entity_keys = topics.key == "entity"
        self._canvas_topics: dict[str, str] = {}
        self._canvas_routes: dict[str, _CanvasRoute] = {}  # catalog event names only: bounded
        self._caliper_topics: dict[str, str] = {}

    # -- public ---------------------------------------------------------------------------

    def process(self, value: bytes | None, source: Source, now_ms: int) -> list[Output]:
        """Turn one raw value into typed records, or into exactly one dead letter."""
        try:
            return self._process(value, source)
        except Rejected as rej:
            return [self.dead_letter(value, source, now_ms, rej.reason, rej.detail)]
        except UnicodeDecodeError as exc:  # msgspec checks UTF-8 lazily, inside strings
            return [self.dead_letter(value, source, now_ms, R_INVALID_UTF8, str(exc))]
        except Exception as exc:  # a bug must not lose the event either
            detail = f"{type(exc).__name__}: {exc}"
            return [self.dead_letter(value, source, now_ms, R_INTERNAL, detail)]

    def dead_letter(
        self, value: bytes | None, source: Source, now_ms: int, reason: str, detail: str
    ) -> DeadLetter:
        headers: Headers = [
            (H_REASON, reason.encode()),
            (H_REASON_DETAIL, detail[:1000].encode("utf-8", "replace")),
            (H_SOURCE_TOPIC, source.topic.encode()),
            (H_SOURCE_PARTITION, str(source.partition).encode()),
            (H_SOURCE_OFFSET, str(source.offset).encode()),
            (H_DLQ_TIME, str(now_ms).encode()),
        ]
        return DeadLetter(self.topics.dead_letter, source.key, value, headers, reason, detail)

    # -- pipeline -------------------------------------------------------------------------

    def _check_size(self, value: bytes | None) -> bytes:
        if not value:
            raise Rejected(R_EMPTY, "the record has no value")
        if len(value) > self.limits.max_message_bytes:
            raise Rejected(
                R_TOO_LARGE, f"{len(value)} bytes > limits.max_message_bytes={self.limits.max_message_bytes}"
            )
        return value

    def _check_shape(self, value: bytes) -> None:
        limits = self.limits
        # Cheap bounds first: depth <= number of brackets; a string <= the whole value.
        if value.count(b"{") + value.count(b"[") > limits.max_depth:
            depth = _max_depth(value)
            if depth > limits.max_depth:
                raise Rejected(R_TOO_DEEP, f"nesting depth {depth} > limits.max_depth={limits.max_depth}")
        if len(value) > limits.max_string_length:
            for m in _STRING_RE.finditer(value):
                if m.end() - m.start() - 2 > limits.max_string_length:
                    raise Rejected(
                        R_STRING_TOO_LONG,
                        f"a string of {m.end() - m.start() - 2} bytes at byte {m.start()}"
                        f" > limits.max_string_length={limits.max_string_length}",
                    )

    def _depth_ok(self, value: bytes) -> bool:
        """For the fast path, when the Structs do not bound the depth: within ``limits.max_depth``?"""
        return value.count(b"{") + value.count(b"[") <= self.limits.max_depth or (
            _max_depth(value) <= self.limits.max_depth
        )

    def _process(self, value: bytes | None, source: Source) -> list[Output]:
        if not value or len(value) > self._max_bytes:
            value = self._check_size(value)  # raises: empty, or too large
        # The fast paths take the events that fit their Structs exactly (most traffic), in as
        # few msgspec calls as possible; whatever they do not take, the general path below
        # handles, with the same result for what both could take. (A value longer than
        # limits.max_string_length may hold a too long string: the general path checks it.)
        if len(value) <= self._fast_limit:
            # Which format: the first key usually tells (Canvas writes "metadata" and "sensor"
            # first); a scan only otherwise (a full scan costs ~1 us on a 2 kB Caliper envelope).
            if value.startswith(b'{"metadata"'):
                caliper = False
            elif value.startswith(b'{"sensor"'):
                caliper = True
            else:
                caliper = b'"metadata"' not in value and b'"sensor"' in value
            if caliper:
                many = self._caliper_fast(value, source)
                if many is not None:
                    return many
            else:
                fast = self._canvas_fast(value, source)
                if fast is not None:
                    return [fast]
        self._check_shape(value)
        try:
            top = self._top(value)
        except msgspec.ValidationError:
            raise Rejected(R_NOT_OBJECT, "the value is JSON but not an object") from None
        except msgspec.DecodeError as exc:
            reason = R_INVALID_JSON
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                reason = R_INVALID_UTF8
            raise Rejected(reason, str(exc)) from None
        if "metadata" in top:
            return [self._canvas(top, source)]
        if "data" in top and "sensor" in top:
            return list(self._caliper_events(value, source))
        keys = ", ".join(sorted(top)[:10])
        raise Rejected(R_UNKNOWN_ENVELOPE, f"neither Canvas (metadata, body) nor Caliper (sensor, data): {keys}")

    def _state(self) -> _NormalizeState:
        return _NormalizeState(self._assume_utc)

    # -- Canvas format ----------------------------------------------------------------------

    def _canvas_fast(self, value: bytes, source: Source) -> Publish | None:
        """Metadata and body fit their Structs exactly and every timestamp has an offset."""
        try:
            try:
                env = self._canvas_in(value)
            except msgspec.ValidationError:  # integer ids, Ruby times? (else: the general path)
                env = self._canvas_in_lenient(value)
            m = env.metadata
            event_name = m.event_name
            route = self._canvas_routes.get(event_name)
            if route is None:
                route = self._canvas_route(event_name)
                if route is None:
                    return None
            decoder, topic, bounded, name_headers, has_missing = route
            if not bounded and not self._depth_ok(value):
                return None
            try:
                body = decoder.fast_decode(env.body)
            except msgspec.ValidationError:
                body = decoder.lenient_fast_decode(env.body)
            missing: tuple[str, ...] = ()
            if has_missing is not None and has_missing(body):  # an Expected field is UNSET
                if not self._lenient:
                    return None  # the general path says which field is missing
                missing = decoder.fill_missing(body, "body")
            event_time = m.event_time
            event_ms = (event_time - _EPOCH) // _MS  # TypeError when naive
            if event_ms < 0:
                return None
            self._fast_metadata(m)
            decoder.fast_normalize(body)
        except Exception:  # msgspec errors, naive or out-of-range timestamps...: the general path
            return None
        event_text: Any = m.event_time  # normalized: its UTC text, as the JSON string
        if self._pii is not None or missing:
            return self._canvas_publish(source, topic, m, body, event_name, event_text, event_ms, False,
                                        missing=missing)
        # _canvas_publish without what only the other paths need (see there).
        canonical = _record_encode(CanvasRecord(event_name, event_text, event_ms, "canvas", m, body, False))
        key = hashlib.sha256(canonical).hexdigest()[:32]
        key_bytes = key.encode()
        if self._entity_keys:
            if m.context_id is not None:
                record_key: bytes | None = f"{m.context_type or 'context'}:{m.context_id}".encode()
            elif m.user_id is not None:
                record_key = f"user:{m.user_id}".encode()
            else:
                record_key = source.key if source.key is not None else key_bytes
        else:
            record_key = self._record_key(source, key, None)
        return Publish(
            topic,
            record_key,
            b'{"dedupe_key":"' + key_bytes + b'",' + canonical[1:],
            [(H_DEDUPE_KEY, key_bytes), *name_headers],
            event_ms,
            event_name,
            key,
        )

    def _canvas_route(self, event_name: str) -> _CanvasRoute | None:
        """The fast path's view of a catalog event type, once its topic is known (memoized).

        None until the general path has named the topic (``_canvas_topic`` validates it once).
        """
        decoder = self._bodies.get(event_name)
        topic = self._canvas_topics.get(event_name)
        if decoder is None or topic is None:
            return None
        route = self._canvas_routes[event_name] = (
            decoder, topic, event_name in self._depth_bounded, self._name_headers(event_name, "canvas"),
            decoder.missing.check if decoder.missing is not None else None,
        )
        return route

    def _canvas_in_lenient(self, value: bytes) -> Any:
        for decode, fix in self._canvas_in_tiers:
            try:
                env = decode(value)
            except msgspec.ValidationError:
                continue
            fix(env.metadata)
            return env
        raise _Slow

    def _canvas(self, top: dict[str, msgspec.Raw], source: Source) -> Publish:
        env = _Envelope(top["metadata"], top.get("body", _NULL))  # the value is parsed once
        state = self._state()
        meta = self._metadata.decode(env.metadata, "metadata", state, R_INVALID_METADATA)
        m: CanvasMetadata = meta.obj
        if meta.malformed:
            raise Rejected(R_INVALID_TIMESTAMP, f"{meta.malformed[0]} is not a timestamp")
        event_name = declared = m.event_name
        event_text, event_ms = _normalized_time(m.event_time, "metadata.event_time")
        decoder = self._bodies.get(event_name)
        topic = self._canvas_topic(event_name, known=decoder is not None)
        if decoder is None:
            tree = _loads(env.body, "body", R_INVALID_BODY)
            if not isinstance(tree, dict):
                raise Rejected(R_INVALID_BODY, f"body of {event_name!r} is not a JSON object")
            body = _Decoded(None, tree)
            generic = True
        else:
            generic = False
            try:
                body = decoder.decode(env.body, "body", state, R_INVALID_BODY)
            except Rejected as rej:
                rescued = self._misfiled(env.body, event_name, state) if self._lenient else None
                if rescued is None:
                    raise rej from None
                declared = event_name
                event_name, body = rescued
                topic = self._canvas_topic(event_name, known=True)
        return self._canvas_publish(
            source, topic, meta.out, body.out, event_name, event_text, event_ms, generic,
            meta.unknown + body.unknown, body.malformed, declared, m, meta.missing + body.missing,
        )

    def _canvas_publish(
        self,
        source: Source,
        topic: str,
        metadata: Any,
        body: Any,
        event_name: str,
        event_text: str | msgspec.Raw,
        event_ms: int,
        generic: bool,
        unknown: tuple[str, ...] = (),
        malformed: tuple[str, ...] = (),
        declared: str | None = None,
        m: CanvasMetadata | None = None,
        missing: tuple[str, ...] = (),
    ) -> Publish:
        """The typed record: the value is encoded once; the dedupe key hashes that encoding."""
        canonical = _record_encode(
            CanvasRecord(event_name, event_text, event_ms, "canvas", metadata, body, generic)
        )
        key = hashlib.sha256(canonical).hexdigest()[:32]
        key_bytes = key.encode()
        value = b'{"dedupe_key":"' + key_bytes + b'",' + canonical[1:]
        if self._pii is not None:  # after the dedupe key: redaction never changes it
            value = _encode.encode(self._pii.apply(_json_decode(value)))
        headers: Headers = [(H_DEDUPE_KEY, key_bytes), *self._name_headers(event_name, "canvas")]
        if generic or unknown or malformed or missing or (declared is not None and declared != event_name):
            headers += _extra_headers(generic, unknown, malformed, declared, event_name, missing)
        return Publish(
            topic,
            self._record_key(source, key, _canvas_entity(metadata if m is None else m)),
            value,
            headers,
            event_ms,
            event_name,
            key,
            "canvas",
            generic,
            unknown,
            malformed,
            declared if declared != event_name else None,
            missing,
        )

    def _misfiled(self, body: bytes, declared: str, state: _NormalizeState) -> tuple[str, _Decoded] | None:
        """A body that fits exactly one *other* event type was misfiled upstream.

        Canvas's own catalog has one: a ``grade_override`` body sent as ``grade_change``. Only a
        body with fields its declared type does not have, and an unambiguous match with no
        unknown field, is taken (integer ids, the accepted timestamp forms and missing fields
        other than the identifiers are fine, as for any body); anything else stays a dead
        letter. (A body whose fields all belong to its declared type is of that type, missing its
        identifier: re-filing it would guess, e.g. ``master_migration_completed`` without its id
        as ``master_template_created``.)
        """
        try:
            keys = self._top(body).keys()
        except msgspec.MsgspecError:
            return None  # not an object: it fits no body
        own = self._body_keys[declared][1]
        if own is not None and keys <= own:
            return None
        matches = []
        for name, decoder in self._bodies.items():
            required, allowed = self._body_keys[name]
            # Cheap necessary conditions first: every required field present, none unknown.
            if name == declared or not required <= keys or (allowed is not None and not keys <= allowed):
                continue
            try:
                matches.append((name, decoder.decode_strict(body, "body", state)))
            except (Rejected, msgspec.MsgspecError):
                try:  # integer ids and the other timestamp forms are fine; unknown fields are not
                    matches.append((name, decoder.decode_twin(body, "body", state)))
                except (Rejected, msgspec.MsgspecError, _Slow, TimestampError):
                    continue
            if len(matches) > 1:
                return None
        return matches[0] if matches else None

    # -- Caliper format ---------------------------------------------------------------------

    def _caliper_fast(self, value: bytes, source: Source) -> list[Output] | None:
        """Every event of the envelope fits its Struct exactly; every timestamp has an offset."""
        out: list[Output] = []
        try:
            env = self._caliper_in(value)
            send_time = utc_json(env.send_time)
            if not env.data:
                return None
            scanned = False
            for raw in env.data:
                head = self._head(raw)
                name = caliper_event_name(head) if head.id and head.type else None
                decoder = self._caliper.get(name) if name is not None else None
                topic = self._caliper_topics.get(name) if name is not None else None
                if decoder is None or topic is None or name is None:
                    return None
                if (decoder.depth is None or decoder.depth + 2 > self.limits.max_depth) and not scanned:
                    if not self._depth_ok(value):
                        return None
                    scanned = True
                event = decoder.fast_decode(raw)
                event_time = event.event_time
                event_ms = (event_time - _EPOCH) // _MS
                if event_ms < 0:
                    return None
                decoder.fast_normalize(event)
                if self._pii is not None:
                    out.append(self._caliper_publish(source, topic, env, send_time, head, name, event,
                                                     event.event_time, event_ms, event, False))
                    continue
                # _caliper_publish without what only the other paths need (see there).
                obj = head.object
                object_id = obj if isinstance(obj, str) else (obj.id if obj is not None else None)
                key = _caliper_key((head.id or "").encode(), name.encode(), (object_id or "").encode())
                key_bytes = key.encode()
                if self._entity_keys:  # the course (group) when there is one, else the actor
                    part = event.group if event.group is not None else event.actor
                    if part is not None:
                        record_key: bytes | None = part.id.encode()
                    else:
                        record_key = source.key if source.key is not None else key_bytes
                else:
                    record_key = self._record_key(source, key, None)
                value = _record_encode(CaliperRecord(key, name, event.event_time, event_ms, "caliper", env.sensor,
                                                     send_time, env.data_version, event, False))
                headers: Headers = [(H_DEDUPE_KEY, key_bytes), *self._name_headers(name, "caliper")]
                out.append(Publish(topic, record_key, value, headers, event_ms, name, key, "caliper"))
        except Exception:  # msgspec errors, naive or out-of-range timestamps...: the general path
            return None
        return out

    def _caliper_events(self, value: bytes, source: Source) -> list[Publish]:
        state = self._state()
        env_part = self._caliper_envelope.decode(value, "envelope", state, R_INVALID_CALIPER)
        env: CaliperEnvelope = env_part.obj
        send_time: str = env.send_time  # type: ignore[assignment]  # normalized to text
        if not env.data:
            raise Rejected(R_INVALID_CALIPER, "envelope.data is empty")
        out: list[Publish] = []
        for i, raw in enumerate(env.data):
            root = f"data[{i}]"
            try:
                head = self._head(raw)
            except msgspec.MsgspecError as exc:
                raise Rejected(R_INVALID_CALIPER, f"{root}: {exc}") from None
            if not head.id or not head.type:
                raise Rejected(R_INVALID_CALIPER, f"{root} has no id or no type")
            name = caliper_event_name(head)
            decoder = self._caliper.get(name) if name else None
            if name is None or decoder is None:
                generic = True
                name = f"{_snake(head.type)}_{_snake(head.action)}" if head.action else _snake(head.type)
                tree = _loads(raw, root, R_INVALID_CALIPER)
                event_time = _parse_required_time(tree.get("eventTime"), f"{root}.eventTime", state)
                event_text, event_ms = _text_and_ms(event_time, f"{root}.eventTime")
                part = _Decoded(tree, tree)
            else:
                generic = False
                part = decoder.decode(raw, root, state, R_INVALID_CALIPER)
                if part.malformed and any(p.endswith(".eventTime") for p in part.malformed):
                    raise Rejected(R_INVALID_TIMESTAMP, f"{root}.eventTime is not a timestamp")
                event_text, event_ms = _normalized_time(part.obj.event_time, f"{root}.eventTime")
            topic = self._caliper_topic(name, generic)
            out.append(self._caliper_publish(source, topic, env, send_time, head, name, part.obj, event_text,
                                             event_ms, part.out, generic, part.unknown, part.malformed))
        return out

    def _caliper_publish(
        self,
        source: Source,
        topic: str,
        env: CaliperEnvelope,
        send_time: str | msgspec.Raw,
        head: CaliperEventHead,
        name: str,
        event: Any,
        event_text: str | msgspec.Raw,
        event_ms: int,
        out: Any,
        generic: bool,
        unknown: tuple[str, ...] = (),
        malformed: tuple[str, ...] = (),
    ) -> Publish:
        obj = head.object
        object_id = obj if isinstance(obj, str) else (obj.id if obj is not None else None)
        key = _caliper_key((head.id or "").encode(), name.encode(), (object_id or "").encode())
        value = _record_encode(
            CaliperRecord(key, name, event_text, event_ms, "caliper", env.sensor, send_time, env.data_version,
                          out, generic)
        )
        if self._pii is not None:
            value = _encode.encode(self._pii.apply(_json_decode(value)))
        headers: Headers = [(H_DEDUPE_KEY, key.encode()), *self._name_headers(name, "caliper")]
        if generic or unknown or malformed:
            headers += _extra_headers(generic, unknown, malformed, None, name)
        return Publish(
            topic,
            self._record_key(source, key, _caliper_entity(event)),
            value,
            headers,
            event_ms,
            name,
            key,
            "caliper",
            generic,
            unknown,
            malformed,
        )

    def _name_headers(self, name: str, fmt: str) -> tuple[tuple[str, bytes], tuple[str, bytes]]:
        """The ``event_name`` and ``event_format`` headers, memoized for known names."""
        pair = self._header_memo.get((name, fmt))
        if pair is None:
            pair = ((H_EVENT_NAME, name.encode()), (H_FORMAT, fmt.encode()))
            if len(self._header_memo) < 10000:  # bounded, whatever the input
                self._header_memo[(name, fmt)] = pair
        return pair

    # -- routing --------------------------------------------------------------------------

    def _canvas_topic(self, event_name: str, known: bool) -> str:
        topic = self._canvas_topics.get(event_name)
        if topic is not None:
            return topic
        if not _TOPIC_SAFE.match(event_name) or event_name in (".", ".."):
            raise Rejected(R_INVALID_EVENT_NAME, f"event_name {event_name[:80]!r} cannot name a Kafka topic")
        if not known and self.topics.unknown_events == "catch_all":
            topic = self.topics.catch_all
        else:
            topic = self.topics.prefix + event_name
            if len(topic) > 249 or topic in (".", ".."):
                raise Rejected(R_INVALID_EVENT_NAME, "event_name too long for a Kafka topic name")
        if known or len(self._canvas_topics) < 10000:  # bounded memo, whatever the input
            self._canvas_topics[event_name] = topic
        return topic

    def _caliper_topic(self, name: str, generic: bool) -> str:
        if generic and self.topics.unknown_events == "catch_all":
            return self.topics.catch_all
        if not generic:  # known names only: the memo stays bounded
            topic = self._caliper_topics.get(name)
            if topic is None:
                topic = self._caliper_topics[name] = self._caliper_topic_checked(name)
            return topic
        return self._caliper_topic_checked(name)

    def _caliper_topic_checked(self, name: str) -> str:
        topic = self.topics.caliper_prefix + name
        if not _TOPIC_SAFE.match(name) or len(topic) > 249:
            raise Rejected(R_INVALID_EVENT_NAME, f"Caliper type/action {name[:80]!r} cannot name a Kafka topic")
        return topic

    def _record_key(self, source: Source, dedupe_key: str, entity: str | None) -> bytes | None:
        mode = self.topics.key
        if mode == "dedupe_key":
            return dedupe_key.encode()
        if mode == "source":
            return source.key
        if entity is not None:
            return entity.encode()
        return source.key if source.key is not None else dedupe_key.encode()


def _normalized_time(value: Any, path: str) -> tuple[str, int]:
    """A timestamp attribute the plan already turned into UTC text: the text and its epoch ms."""
    if isinstance(value, str):
        return value, epoch_ms(_kafka_time(datetime.fromisoformat(value), path))
    raise Rejected(R_INVALID_TIMESTAMP, f"{path} is missing")


def _text_and_ms(value: datetime, path: str) -> tuple[str, int]:
    try:
        return to_utc_text(value), epoch_ms(value)
    except TimestampError as exc:
        raise Rejected(R_INVALID_TIMESTAMP, f"{path}: {exc}") from None


def _kafka_time(value: datetime, path: str) -> datetime:
    """The event time becomes the Kafka record timestamp, which cannot be before 1970."""
    if value < _EPOCH:
        raise Rejected(R_INVALID_TIMESTAMP, f"{path} {value.isoformat()} is before 1970, not a Kafka timestamp")
    return value


def _parse_required_time(value: Any, path: str, state: _NormalizeState) -> datetime:
    if isinstance(value, str):
        try:
            parsed = parse_lenient(value)
        except TimestampError as exc:
            raise Rejected(R_INVALID_TIMESTAMP, f"{path}: {exc}") from None
        if parsed.tzinfo is None:
            if not state.assume_utc:
                raise Rejected(R_NAIVE_TIMESTAMP, f"{path} has no UTC offset: {value[:64]}")
            parsed = parsed.replace(tzinfo=UTC)
        return _kafka_time(parsed, path)
    raise Rejected(R_INVALID_TIMESTAMP, f"{path} is missing or not a string")


def _canvas_entity(m: CanvasMetadata) -> str | None:
    """Per-entity ordering: events of one context (course, account...) share a key."""
    if m.context_id is not None:
        return f"{m.context_type or 'context'}:{m.context_id}"
    if m.user_id is not None:
        return f"user:{m.user_id}"
    return None


def _caliper_entity(event: Any) -> str | None:
    """Per-entity ordering for Caliper: the course (``group``) when there is one, else the actor."""
    for name in ("group", "actor"):
        part = event.get(name) if isinstance(event, dict) else getattr(event, name, None)
        ident = part.get("id") if isinstance(part, dict) else getattr(part, "id", None)
        if isinstance(ident, str):
            return ident
    return None


def _extra_headers(
    generic: bool,
    unknown: tuple[str, ...],
    malformed: tuple[str, ...],
    declared: str | None,
    event_name: str,
    missing: tuple[str, ...] = (),
) -> Headers:
    """The headers that only some records carry."""
    headers: Headers = []
    if generic:
        headers.append((H_GENERIC, b"true"))
    if unknown:
        headers.append((H_UNKNOWN_FIELDS, ",".join(unknown)[:1000].encode()))
    if malformed:
        headers.append((H_MALFORMED, ",".join(malformed)[:1000].encode()))
    if missing:
        headers.append((H_MISSING, ",".join(missing)[:1000].encode()))
    if declared is not None and declared != event_name:
        headers.append((H_DECLARED_NAME, declared.encode()))
    return headers


def _max_depth(value: bytes) -> int:
    """Exact JSON nesting depth, ignoring brackets inside strings."""
    depth = best = 0
    for m in _BRACKETS.finditer(_STRING_RE.sub(b'""', value)):
        if m.group() in (b"{", b"["):
            depth += 1
            if depth > best:
                best = depth
        else:
            depth -= 1
    return best


def now_ms() -> int:
    """Wall clock in ms, for callers (the core itself takes time as an argument)."""
    return int(datetime.now(UTC).timestamp() * 1000)
