"""The pure pipeline: one raw Kafka value in, typed records or one dead letter out.

    bridge/core/
      outputs.py    Source in; Publish, DeadLetter out; header names; dead-letter reasons
      limits.py     size, depth and string-length checks, before any decoding
      plans.py      per Struct: timestamps, fields Canvas may leave out, depth (normalizers)
      twins.py      lenient twins: integer ids, Ruby-form timestamps, still one msgspec call
      lenient.py    the general lenient decode (unknown fields carried, malformed flagged)
      decoding.py   one decoder per Struct: exact -> twin -> lenient, says which took the value
      records.py    the only two record builders, one per format
      routing.py    the route table, fixed at start for every catalog type
      canvas.py     the Canvas format;  caliper.py: the Caliper format
      pipeline.py   Core.process

No I/O, no clock (the caller passes ``now_ms``). The service and the offline ``transform``
command run this same code. Nothing here raises on input: whatever the bytes,
``Core.process`` returns either typed records or exactly one dead letter.

Missing is not invalid: a body field other than the event's identifier may be absent
(Canvas's ``compact_live_events`` drops null fields; versions add and remove fields). Each
strategy decodes it as ``UNSET`` (``Expected`` fields) or ``None``; the missing-fields plan then
writes ``None`` in place of ``UNSET`` and names those fields in the ``missing_fields`` header, so
an absent field is published exactly as an explicit ``null`` (``strict`` mode dead-letters them).
"""

from bridge.core.decoding import STRATEGIES
from bridge.core.outputs import (
    DEAD_LETTER_REASONS,
    H_DECLARED_NAME,
    H_DEDUPE_KEY,
    H_DLQ_TIME,
    H_EVENT_NAME,
    H_FORMAT,
    H_GENERIC,
    H_MALFORMED,
    H_MISSING,
    H_REASON,
    H_REASON_DETAIL,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TOPIC,
    H_UNKNOWN_FIELDS,
    R_EMPTY,
    R_INTERNAL,
    R_INVALID_BODY,
    R_INVALID_CALIPER,
    R_INVALID_EVENT_NAME,
    R_INVALID_JSON,
    R_INVALID_METADATA,
    R_INVALID_TIMESTAMP,
    R_INVALID_UTF8,
    R_NAIVE_TIMESTAMP,
    R_NOT_OBJECT,
    R_STRING_TOO_LONG,
    R_TOO_DEEP,
    R_TOO_LARGE,
    R_UNKNOWN_ENVELOPE,
    DeadLetter,
    Headers,
    Output,
    Publish,
    Rejected,
    Source,
    dead_letter,
    now_ms,
)
from bridge.core.pipeline import Core
from bridge.core.records import CaliperRecord, CanvasRecord

__all__ = [
    "DEAD_LETTER_REASONS",
    "H_DECLARED_NAME",
    "H_DEDUPE_KEY",
    "H_DLQ_TIME",
    "H_EVENT_NAME",
    "H_FORMAT",
    "H_GENERIC",
    "H_MALFORMED",
    "H_MISSING",
    "H_REASON",
    "H_REASON_DETAIL",
    "H_SOURCE_OFFSET",
    "H_SOURCE_PARTITION",
    "H_SOURCE_TOPIC",
    "H_UNKNOWN_FIELDS",
    "R_EMPTY",
    "R_INTERNAL",
    "R_INVALID_BODY",
    "R_INVALID_CALIPER",
    "R_INVALID_EVENT_NAME",
    "R_INVALID_JSON",
    "R_INVALID_METADATA",
    "R_INVALID_TIMESTAMP",
    "R_INVALID_UTF8",
    "R_NAIVE_TIMESTAMP",
    "R_NOT_OBJECT",
    "R_STRING_TOO_LONG",
    "R_TOO_DEEP",
    "R_TOO_LARGE",
    "R_UNKNOWN_ENVELOPE",
    "STRATEGIES",
    "CaliperRecord",
    "CanvasRecord",
    "Core",
    "DeadLetter",
    "Headers",
    "Output",
    "Publish",
    "Rejected",
    "Source",
    "dead_letter",
    "now_ms",
]
