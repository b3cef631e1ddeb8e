"""What the core gives back: typed records (``Publish``) or one ``DeadLetter``, and why.

The header names and dead-letter reasons are shared by the service, the ``transform`` command
and the tests; the reasons are a small fixed set, so that they can be metric labels.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

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


def now_ms() -> int:
    """Wall clock in ms, for callers (the core itself takes time as an argument)."""
    return int(datetime.now(UTC).timestamp() * 1000)


def dead_letter(
    topic: str, value: bytes | None, source: Source, now_ms: int, reason: str, detail: str
) -> DeadLetter:
    """The original bytes, unchanged, on ``topic``, with why and where they came from."""
    headers: Headers = [
        (H_REASON, reason.encode()),
        (H_REASON_DETAIL, detail[:1000].encode("utf-8", "replace")),
        (H_SOURCE_TOPIC, source.topic.encode()),
        (H_SOURCE_PARTITION, str(source.partition).encode()),
        (H_SOURCE_OFFSET, str(source.offset).encode()),
        (H_DLQ_TIME, str(now_ms).encode()),
    ]
    return DeadLetter(topic, source.key, value, headers, reason, detail)
