"""The records: the only two record builders, one per format.

A record's value is encoded once, in one msgspec call (Structs in field order, dict keys
sorted, so the bytes do not depend on the key order or whitespace the event arrived with); the
dedupe key hashes that encoding, and is then inserted first in the published value.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from bridge.config import TopicsSettings
from bridge.core.outputs import (
    H_DECLARED_NAME,
    H_DEDUPE_KEY,
    H_EVENT_NAME,
    H_FORMAT,
    H_GENERIC,
    H_MALFORMED,
    H_MISSING,
    H_UNKNOWN_FIELDS,
    Headers,
    Publish,
    Source,
)
from bridge.events import CanvasMetadata
from bridge.events.caliper import CaliperEnvelope, CaliperEventHead
from bridge.pii import PiiPolicy

#: The ``event_name`` and ``event_format`` headers of an event type.
NameHeaders = tuple[tuple[str, bytes], tuple[str, bytes]]
_encode = msgspec.json.Encoder().encode
_sha256 = hashlib.sha256
_json_decode = msgspec.json.Decoder().decode


class CanvasRecord(msgspec.Struct, gc=False):
    """The value published for a Canvas-format event, without its ``dedupe_key``.

    Its canonical encoding is what the dedupe key hashes; the published value is that
    encoding with ``"dedupe_key"`` inserted first (see ``Records.canvas``). ``metadata`` and
    ``body`` hold the normalized Structs (or, for a generic body or carried unknown fields,
    plain JSON values), so the whole value is encoded in one call.
    """

    event_name: str
    event_time: str | msgspec.Raw  # Raw: ``take``'s UTC text, already a JSON string
    event_time_ms: int
    format: str
    metadata: Any
    body: Any
    generic: bool


class CaliperRecord(msgspec.Struct, gc=False):
    """The value published on a typed topic for one event of a Caliper envelope."""

    dedupe_key: str
    event_name: str
    event_time: str | msgspec.Raw  # Raw: ``take``'s UTC text, already a JSON string
    event_time_ms: int
    format: str
    sensor: str
    send_time: str | msgspec.Raw
    data_version: str
    event: Any
    generic: bool


#: Published values: Structs in their field order, dict keys sorted, so the bytes of an event
#: do not depend on the JSON key order or whitespace it arrived with (the dedupe key hashes them).
_record_encode = msgspec.json.Encoder(order="deterministic").encode


def _caliper_key(event_id: bytes, name: bytes, object_id: bytes) -> str:
    """sha256 over the parts' lengths, then the parts (``"caliper"``, id, name, object id): 32 hex."""
    data = b"7,%d,%d,%d;caliper%s%s%s" % (len(event_id), len(name), len(object_id), event_id, name, object_id)
    return hashlib.sha256(data).hexdigest()[:32]




class Extras(msgspec.Struct, frozen=True, gc=False):
    """What only some records carry (each in a header too); ``None`` stands for all empty."""

    generic: bool = False
    unknown: tuple[str, ...] = ()
    malformed: tuple[str, ...] = ()
    declared: str | None = None  # the event_name it was sent as, when re-filed
    missing: tuple[str, ...] = ()


class Records:
    """The only two record builders, one per format: value encoded once, dedupe key, record key, headers."""

    __slots__ = ("_entity_keys", "_header_memo", "_key_mode", "_pii")

    def __init__(self, topics: TopicsSettings, pii: PiiPolicy | None) -> None:
        self._key_mode = topics.key
        self._entity_keys = topics.key == "entity"
        self._pii = pii
        self._header_memo: dict[tuple[str, str], NameHeaders] = {}

    def canvas(
        self,
        source: Source,
        topic: str,
        name_headers: NameHeaders,
        event_name: str,
        event_text: str | msgspec.Raw,
        event_ms: int,
        m: CanvasMetadata,
        metadata: Any,
        body: Any,
        extras: Extras | None = None,
    ) -> Publish:
        """The typed record of a Canvas event: the dedupe key hashes the value's canonical encoding.

        ``m``: the decoded metadata (for the record key); ``metadata`` and ``body``: what the value holds.
        """
        generic = extras is not None and extras.generic
        canonical = _record_encode(CanvasRecord(event_name, event_text, event_ms, "canvas", metadata, body, generic))
        key = _sha256(canonical).hexdigest()[:32]
        key_bytes = key.encode()
        value = b'{"dedupe_key":"' + key_bytes + b'",' + canonical[1:]
        if self._pii is not None:  # after the dedupe key: redaction never changes it
            value = _encode(self._pii.apply(_json_decode(value)))
        if self._entity_keys:  # per-entity ordering: events of one context (course, account...) share a key
            if m.context_id is not None:
                record_key: bytes | None = f"{m.context_type or 'context'}:{m.context_id}".encode()
            elif m.user_id is not None:
                record_key = f"user:{m.user_id}".encode()
            else:
                record_key = source.key if source.key is not None else key_bytes
        else:
            record_key = self._record_key(source, key_bytes)
        headers: Headers = [(H_DEDUPE_KEY, key_bytes), *name_headers]
        if extras is None:
            return Publish(topic, record_key, value, headers, event_ms, event_name, key)
        declared = extras.declared if extras.declared != event_name else None
        headers += _extra_headers(extras, declared)
        return Publish(topic, record_key, value, headers, event_ms, event_name, key, "canvas", generic,
                       extras.unknown, extras.malformed, declared, extras.missing)  # fmt: skip

    def caliper(
        self,
        source: Source,
        topic: str,
        name_headers: NameHeaders,
        name: str,
        head: CaliperEventHead,
        env: CaliperEnvelope,
        send_time: str | msgspec.Raw,
        event: Any,
        event_text: str | msgspec.Raw,
        event_ms: int,
        out: Any,
        extras: Extras | None = None,
    ) -> Publish:
        """The typed record of one event of a Caliper envelope (``event``: decoded; ``out``: what the value holds)."""
        obj = head.object
        object_id = obj if isinstance(obj, str) else (obj.id if obj is not None else None)
        key = _caliper_key((head.id or "").encode(), name.encode(), (object_id or "").encode())
        key_bytes = key.encode()
        generic = extras is not None and extras.generic
        value = _record_encode(CaliperRecord(key, name, event_text, event_ms, "caliper", env.sensor, send_time,
                                             env.data_version, out, generic))  # fmt: skip
        if self._pii is not None:
            value = _encode(self._pii.apply(_json_decode(value)))
        if self._entity_keys:  # the course (group) when there is one, else the actor
            entity = _caliper_entity(event)
            record_key: bytes | None = (
                entity.encode() if entity is not None else source.key if source.key is not None else key_bytes
            )
        else:
            record_key = self._record_key(source, key_bytes)
        headers: Headers = [(H_DEDUPE_KEY, key_bytes), *name_headers]
        if extras is None:
            return Publish(topic, record_key, value, headers, event_ms, name, key, "caliper")
        headers += _extra_headers(extras, None)
        return Publish(topic, record_key, value, headers, event_ms, name, key, "caliper", generic, extras.unknown,
                       extras.malformed)  # fmt: skip

    def name_headers(self, name: str, fmt: str) -> NameHeaders:
        """The ``event_name`` and ``event_format`` headers, memoized for known names."""
        pair = self._header_memo.get((name, fmt))
        if pair is None:
            pair = ((H_EVENT_NAME, name.encode()), (H_FORMAT, fmt.encode()))
            if len(self._header_memo) < 10000:  # bounded, whatever the input
                self._header_memo[(name, fmt)] = pair
        return pair

    def _record_key(self, source: Source, key_bytes: bytes) -> bytes | None:
        """The record key in the ``dedupe_key`` and ``source`` modes."""
        return key_bytes if self._key_mode == "dedupe_key" else source.key


def _caliper_entity(event: Any) -> str | None:
    """Per-entity ordering for Caliper: the course (``group``) when there is one, else the actor."""
    if not isinstance(event, dict):  # a CaliperEvent: both are typed, their ids are strings
        part = event.group if event.group is not None else event.actor
        return part.id if part is not None else None
    for name in ("group", "actor"):
        part = event.get(name)
        ident = part.get("id") if isinstance(part, dict) else None
        if isinstance(ident, str):
            return ident
    return None


def _extra_headers(extras: Extras, declared: str | None) -> Headers:
    """The headers that only some records carry."""
    headers: Headers = []
    if extras.generic:
        headers.append((H_GENERIC, b"true"))
    if extras.unknown:
        headers.append((H_UNKNOWN_FIELDS, ",".join(extras.unknown)[:1000].encode()))
    if extras.malformed:
        headers.append((H_MALFORMED, ",".join(extras.malformed)[:1000].encode()))
    if extras.missing:
        headers.append((H_MISSING, ",".join(extras.missing)[:1000].encode()))
    if declared is not None:
        headers.append((H_DECLARED_NAME, declared.encode()))
    return headers
