"""The raw record an ingest path writes: its key and its headers. Pure: no I/O.

The key keeps a redelivery on the partition of its first copy, so that the bridge's duplicate
window (per raw partition) sees both copies. It is read from the event, never from how it was
delivered, so the same event gets the same key whether it came signed, unsigned or through SQS:

1. Canvas format (``{"metadata": ..., "body": ...}``): ``user:<metadata.user_id>``; else
   ``<metadata.context_type>:<metadata.context_id>``;
2. Caliper envelope (``{"data": [event, ...]}``): ``actor:<data[0].actor.id>``; else
   ``event:<data[0].id>``;
3. otherwise, or when none of those ids is there: ``sha256:<hex>`` of the JSON value re-encoded
   with sorted keys and no whitespace (so key order and spacing do not matter), or of the raw
   bytes when they are not JSON.

Keying by user also keeps one person's events in order on the raw topic. Integer ids and their
decimal strings give the same key (Canvas sends both).
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

Headers = list[tuple[str, bytes]]

H_SOURCE = "ingest_source"
H_SIGNED = "ingest_signed"
H_KEY_ID = "ingest_key_id"
H_RECEIVED_MS = "ingest_received_ms"

_Scalar = str | int | float | bool | None


class _Metadata(msgspec.Struct):
    user_id: _Scalar = None
    context_type: _Scalar = None
    context_id: _Scalar = None


class _Actor(msgspec.Struct):
    id: _Scalar = None


class _CaliperEvent(msgspec.Struct):
    id: _Scalar = None
    actor: _Actor | None = None


class _Head(msgspec.Struct):
    """Just the ids the key is read from; every other field is ignored by the decoder."""

    metadata: _Metadata | None = None
    data: list[_CaliperEvent] | None = None


_HEAD = msgspec.json.Decoder(_Head)
_ANY = msgspec.json.Decoder()
_SORTED = msgspec.json.Encoder(order="sorted")


def _text(value: _Scalar) -> str | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else None
    return str(value)


def raw_key(value: bytes) -> bytes:
    """The Kafka key of a raw record (module docstring). Never raises."""
    try:
        head = _HEAD.decode(value)
    except (msgspec.DecodeError, ValueError):
        head = None
    if head is not None:
        meta = head.metadata
        if meta is not None:
            user = _text(meta.user_id)
            if user is not None:
                return f"user:{user}".encode()
            context = _text(meta.context_id)
            if context is not None:
                return f"{_text(meta.context_type) or 'context'}:{context}".encode()
        if head.data:
            event = head.data[0]
            actor = _text(event.actor.id) if event.actor is not None else None
            if actor is not None:
                return f"actor:{actor}".encode()
            event_id = _text(event.id)
            if event_id is not None:
                return f"event:{event_id}".encode()
    return b"sha256:" + hashlib.sha256(_canonical(value)).hexdigest().encode()


def _canonical(value: bytes) -> bytes:
    try:
        decoded: Any = _ANY.decode(value)
    except (msgspec.DecodeError, ValueError):
        return value
    try:
        return _SORTED.encode(decoded)
    except (TypeError, ValueError, OverflowError):
        return value


def raw_headers(source: str, *, signed: bool, key_id: str | None, received_ms: int) -> Headers:
    """``ingest_source``, ``ingest_signed``, ``ingest_received_ms`` and, when signed, ``ingest_key_id``."""
    headers: Headers = [
        (H_SOURCE, source.encode()),
        (H_SIGNED, b"true" if signed else b"false"),
        (H_RECEIVED_MS, str(received_ms).encode()),
    ]
    if key_id:
        headers.append((H_KEY_ID, key_id.encode("utf-8", "replace")))
    return headers
