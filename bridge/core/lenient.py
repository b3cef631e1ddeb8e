"""The general lenient decode: fix what a careful operator would accept, remember what was carried."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from bridge.core.outputs import R_INVALID_JSON, R_INVALID_TIMESTAMP, R_NAIVE_TIMESTAMP, Rejected
from bridge.core.plans import _is_canvas_id, _NormalizeState, _unwrap_optional
from bridge.timestamps import TimestampError, epoch_ms, parse_lenient, to_utc_text

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


def _coerce(value: Any, t: msgspec.inspect.Type, path: PathT, acc: _Lenience) -> Any:
    """Prepare decoded JSON for ``msgspec.convert`` into the Struct described by ``t``.

    An identifier (a field typed ``Id`` or ``ExternalId``) that Canvas sent as a JSON integer is
    published as its decimal string.
    """
    if value is None:
        return None
    _, canvas_id, t, known = _type_facts(t, acc.facts)
    if canvas_id and isinstance(value, int) and not isinstance(value, bool):
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
                out[k] = _coerce(v, f.type, (*path, k), acc)
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
            return [_coerce(v, t.item_type, (*path, i), acc) for i, v in enumerate(value)]
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
