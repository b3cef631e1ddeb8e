"""The pure pipeline: one raw Kafka value in, typed records or one dead letter out.

    raw bytes -> limits -> decode (Structs) -> normalize (UTC) -> dedupe key -> route
              -> [Publish(topic, key, headers, value, timestamp_ms), ...]  or  [DeadLetter(...)]

No I/O, no clock (the caller passes ``now_ms``), no globals that change. The service and the
offline ``transform`` command run this same code. Nothing here raises on input: whatever the
bytes, ``Core.process`` returns either typed records or exactly one dead letter.

Decoding has a fast path and a lenient path. The fast path decodes with the event's Struct,
whose ``forbid_unknown_fields`` makes it fail on anything unexpected. Only then the lenient
path runs (``decode.mode = "lenient"``, the default): it carries unknown fields through to the
output, coerces integer ids to strings, parses the other timestamp forms Canvas sends, and
carries a malformed secondary timestamp as it came, flagged in the ``malformed_fields``
header. In ``strict`` mode any of these dead-letters the event instead.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
from bridge.timestamps import TimestampError, epoch_ms, parse_lenient, to_utc_text

Headers = list[tuple[str, bytes]]  # a list: aiokafka's record builder takes lists only

# Header names, shared by the service, the transform command and the tests.
H_DEDUPE_KEY = "dedupe_key"
H_EVENT_NAME = "event_name"
H_FORMAT = "event_format"
H_GENERIC = "generic_body"
H_UNKNOWN_FIELDS = "unknown_fields"
H_MALFORMED = "malformed_fields"
H_DECLARED_NAME = "declared_event_name"
H_REASON = "dlq_reason"
H_REASON_DETAIL = "dlq_detail"
H_SOURCE_TOPIC = "dlq_source_topic"
H_SOURCE_PARTITION = "dlq_source_partition"
H_SOURCE_OFFSET = "dlq_source_offset"
H_DLQ_TIME = "dlq_time"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a raw value came from."""

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


@dataclass(frozen=True, slots=True)
class DeadLetter:
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


class CanvasRecord(msgspec.Struct, kw_only=True):
    """The value published on a typed topic for a Canvas-format event."""

    event_name: str
    event_time: str
    event_time_ms: int
    dedupe_key: str
    format: str = "canvas"
    metadata: msgspec.Raw
    body: msgspec.Raw
    generic: bool = False


class CaliperRecord(msgspec.Struct, kw_only=True):
    """The value published on a typed topic for one event of a Caliper envelope."""

    event_name: str
    event_time: str
    event_time_ms: int
    dedupe_key: str
    format: str = "caliper"
    sensor: str
    send_time: str
    data_version: str
    event: msgspec.Raw
    generic: bool = False


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
            here = f"{path}.{wire}"
            if kind == _KIND_STRUCT:
                _normalize(value, sub, here, state)
            elif kind == _KIND_LIST_STRUCT:
                for i, item in enumerate(value):
                    if item is not None:
                        _normalize(item, sub, f"{here}[{i}]", state)
            else:  # _KIND_DICT_STRUCT
                for k, item in value.items():
                    if item is not None:
                        _normalize(item, sub, f"{here}.{k}", state)


# ---------------------------------------------------------------------------
# The lenient path: fix what a careful operator would accept, remember what was carried.
# ---------------------------------------------------------------------------

_PLACEHOLDER_TIME = _EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PathT = tuple[str | int, ...]


@dataclass(slots=True)
class _Lenience:
    extras: list[tuple[PathT, Any]] = field(default_factory=list)
    malformed: list[tuple[PathT, Any]] = field(default_factory=list)


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
    if (id_like or _is_canvas_id(t)) and isinstance(value, int) and not isinstance(value, bool):
        return str(value) if isinstance(_unwrap_optional(t), msgspec.inspect.StrType) else value
    t = _unwrap_optional(t)
    if isinstance(t, msgspec.inspect.StructType):
        if not isinstance(value, dict):
            return value
        known = {f.encode_name: f for f in t.fields}
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
_canonical = msgspec.json.Encoder(order="sorted")
_encode = msgspec.json.Encoder()


@dataclass(slots=True)
class _Decoded:
    """One typed part (metadata, body or Caliper event), encoded canonically."""

    obj: Any
    raw: bytes
    unknown: tuple[str, ...] = ()
    malformed: tuple[str, ...] = ()


class _TypedDecoder:
    """Decodes one Struct type: fast strict path, then the lenient path if allowed."""

    __slots__ = ("_decode", "_info", "_lenient", "_plan", "_type")

    def __init__(self, typ: type, plans: dict[type, _Plan], lenient: bool) -> None:
        self._type = typ
        self._decode: Callable[[bytes], Any] = msgspec.json.Decoder(typ).decode
        info = msgspec.inspect.type_info(typ)
        assert isinstance(info, msgspec.inspect.StructType)
        self._info = info
        self._plan = _build_plan(info, plans)
        self._lenient = lenient

    def decode_strict(self, raw: bytes, root: str, state: _NormalizeState) -> _Decoded:
        obj = self._decode(raw)
        _normalize(obj, self._plan, root, state)
        return _Decoded(obj, _canonical.encode(obj))

    def decode(self, raw: bytes, root: str, state: _NormalizeState, bad_reason: str) -> _Decoded:
        try:
            return self.decode_strict(raw, root, state)
        except msgspec.ValidationError as exc:
            if not self._lenient:
                raise Rejected(bad_reason, f"{root}: {exc}") from None
            return self._decode_lenient(raw, root, state, bad_reason)
        except msgspec.DecodeError as exc:
            raise Rejected(R_INVALID_JSON, f"{root}: {exc}") from None

    def _decode_lenient(self, raw: bytes, root: str, state: _NormalizeState, bad_reason: str) -> _Decoded:
        data: Any = _json_decode(raw)
        if not isinstance(data, dict):
            raise Rejected(bad_reason, f"{root} is not a JSON object")
        acc = _Lenience()
        fixed = _coerce(data, self._info, (), acc)
        try:
            obj: Any = msgspec.convert(fixed, self._type, strict=False)
        except msgspec.ValidationError as exc:
            raise Rejected(bad_reason, f"{root}: {exc}".replace("`$", f"`{root}")) from None
        _normalize(obj, self._plan, root, state)
        if not acc.extras and not acc.malformed:
            return _Decoded(obj, _canonical.encode(obj))
        tree = msgspec.json.decode(_encode.encode(obj))
        for path, value in acc.malformed:
            _put(tree, path, value)
        for path, value in acc.extras:
            _put(tree, path, value)
        return _Decoded(
            obj,
            _canonical.encode(tree),
            unknown=tuple(_path_text(root, p) for p, _ in acc.extras),
            malformed=tuple(_path_text(root, p) for p, _ in acc.malformed),
        )


_TOPIC_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_STRING_RE = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def _snake(name: str) -> str:
    return _CAMEL_BOUNDARY.sub("_", name).lower()


def _dedupe_key(*parts: bytes) -> str:
    """sha256 over the parts' lengths, then the parts: 32 hex characters (128 bits)."""
    lengths = ",".join([str(len(p)) for p in parts]).encode()
    return hashlib.sha256(b"".join((lengths, b";", *parts))).hexdigest()[:32]


class _Envelope(msgspec.Struct):
    """The top level of a Canvas-format value; the body is decoded once its type is known."""

    metadata: msgspec.Raw
    body: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))


_NULL = msgspec.Raw(b"null")


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
    ) -> None:
        self.topics = topics
        self._pii = pii if pii is not None and pii.active else None
        self.limits = limits
        self._assume_utc = decode.naive_timestamps == "assume_utc"
        self._lenient = lenient = decode.mode == "lenient"
        plans: dict[type, _Plan] = {}
        self._metadata = _TypedDecoder(CanvasMetadata, plans, lenient)
        self._bodies = {name: _TypedDecoder(t, plans, lenient) for name, t in CANVAS_EVENTS.items()}
        self._caliper = {name: _TypedDecoder(t, plans, lenient) for name, t in CALIPER_EVENTS.items()}
        self._caliper_envelope = _TypedDecoder(CaliperEnvelope, plans, lenient)
        self._head = msgspec.json.Decoder(CaliperEventHead).decode
        self._top = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
        self._canvas_topics: dict[str, str] = {}
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

    def _check_limits(self, value: bytes | None) -> bytes:
        if not value:
            raise Rejected(R_EMPTY, "the record has no value")
        limits = self.limits
        if len(value) > limits.max_message_bytes:
            raise Rejected(R_TOO_LARGE, f"{len(value)} bytes > limits.max_message_bytes={limits.max_message_bytes}")
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
        return value

    def _process(self, value: bytes | None, source: Source) -> list[Output]:
        value = self._check_limits(value)
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
            if not isinstance(_json_decode(env.body), dict):
                raise Rejected(R_INVALID_BODY, f"body of {event_name!r} is not a JSON object")
            body = _Decoded(None, _canonical.encode(_json_decode(env.body)))
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
        key = _dedupe_key(b"canvas", event_name.encode(), meta.raw, body.raw)
        record = CanvasRecord(
            event_name=event_name,
            event_time=event_text,
            event_time_ms=event_ms,
            dedupe_key=key,
            metadata=msgspec.Raw(meta.raw),
            body=msgspec.Raw(body.raw),
            generic=generic,
        )
        value = _encode.encode(record)
        if self._pii is not None:  # after the dedupe key: redaction never changes it
            value = _encode.encode(self._pii.apply(_json_decode(value)))
        unknown = meta.unknown + body.unknown
        malformed = body.malformed
        return Publish(
            topic=topic,
            key=self._record_key(source, key, _canvas_entity(m)),
            value=value,
            headers=_headers(key, event_name, "canvas", generic, unknown, malformed, declared),
            timestamp_ms=record.event_time_ms,
            event_name=event_name,
            dedupe_key=key,
            generic=generic,
            unknown_fields=unknown,
            malformed_fields=malformed,
            declared_event_name=declared if declared != event_name else None,
        )

    def _misfiled(self, body: bytes, declared: str, state: _NormalizeState) -> tuple[str, _Decoded] | None:
        """A body that fits exactly one *other* event type, strictly, was misfiled upstream.

        Canvas's own catalog has one: a ``grade_override`` body sent as ``grade_change``. Only an
        unambiguous, strict match (no unknown field, no coercion) is taken; anything else stays
        a dead letter.
        """
        matches = []
        for name, decoder in self._bodies.items():
            if name == declared:
                continue
            try:
                matches.append((name, decoder.decode_strict(body, "body", state)))
            except (Rejected, msgspec.MsgspecError):
                continue
            if len(matches) > 1:
                return None
        return matches[0] if matches else None

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
                tree = _json_decode(raw)
                event_time = _parse_required_time(tree.get("eventTime"), f"{root}.eventTime", state)
                event_text, event_ms = _text_and_ms(event_time, f"{root}.eventTime")
                part = _Decoded(tree, _canonical.encode(tree))
            else:
                generic = False
                part = decoder.decode(raw, root, state, R_INVALID_CALIPER)
                if part.malformed and any(p.endswith(".eventTime") for p in part.malformed):
                    raise Rejected(R_INVALID_TIMESTAMP, f"{root}.eventTime is not a timestamp")
                event_text, event_ms = _normalized_time(part.obj.event_time, f"{root}.eventTime")
            topic = self._caliper_topic(name, generic)
            obj = head.object
            object_id = obj if isinstance(obj, str) else (obj.id if obj is not None else None)
            key = _dedupe_key(b"caliper", head.id.encode(), name.encode(), (object_id or "").encode())
            record = CaliperRecord(
                event_name=name,
                event_time=event_text,
                event_time_ms=event_ms,
                dedupe_key=key,
                sensor=env.sensor,
                send_time=send_time,
                data_version=env.data_version,
                event=msgspec.Raw(part.raw),
                generic=generic,
            )
            value = _encode.encode(record)
            if self._pii is not None:
                value = _encode.encode(self._pii.apply(_json_decode(value)))
            out.append(
                Publish(
                    topic=topic,
                    key=self._record_key(source, key, _caliper_entity(part.obj)),
                    value=value,
                    headers=_headers(key, name, "caliper", generic, part.unknown, part.malformed),
                    timestamp_ms=record.event_time_ms,
                    event_name=name,
                    dedupe_key=key,
                    format="caliper",
                    generic=generic,
                    unknown_fields=part.unknown,
                    malformed_fields=part.malformed,
                )
            )
        return out

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


def _headers(
    key: str,
    event_name: str,
    fmt: str,
    generic: bool,
    unknown: tuple[str, ...],
    malformed: tuple[str, ...],
    declared: str | None = None,
) -> Headers:
    headers: list[tuple[str, bytes]] = [
        (H_DEDUPE_KEY, key.encode()),
        (H_EVENT_NAME, event_name.encode()),
        (H_FORMAT, fmt.encode()),
    ]
    if generic:
        headers.append((H_GENERIC, b"true"))
    if unknown:
        headers.append((H_UNKNOWN_FIELDS, ",".join(unknown)[:1000].encode()))
    if malformed:
        headers.append((H_MALFORMED, ",".join(malformed)[:1000].encode()))
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
