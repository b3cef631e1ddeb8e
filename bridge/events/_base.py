"""Base classes and conventions shared by every Canvas Live Events Struct.

Conventions (keep them when adding an event type):

- One ``CanvasBody`` subclass per event type, named for the event (``GradeChange``),
  grouped by Canvas area in ``bridge/events/<area>.py``; each area module exports
  ``EVENTS: dict[str, type[CanvasBody]]`` mapping ``metadata.event_name`` to the Struct.
- The fields follow Canvas's source (``lib/canvas/live_events.rb`` and the serializers of
  instructure/canvas-lms) as well as its docs: every field the source can put in a body is
  declared, with where it comes from when the docs do not show it.
- Three kinds of field, told apart by their default (docs/event-identifiers.md lists them):

  - **identifier**, no default: the field that says what the event is about
    (``submission_id``). A body without it, or with it null, is unusable: dead-lettered.
  - ``Expected[T] = UNSET``: Canvas sends it on every event of the type (the docs' examples
    all have it). An event without it is still published in ``lenient`` mode, with the field
    ``null`` and named in the ``missing_fields`` header; ``strict`` mode dead-letters it.
  - ``T | None = None``: Canvas sends it only sometimes (conditionally in the source, only in
    some Canvas versions, or not in the docs' examples). Absent means ``null``, nothing more.

  Whatever the kind, an absent field is published as ``null``, exactly as an explicit
  ``null`` (a Canvas account with ``compact_live_events`` drops null fields).
- Canvas ids are ``Id`` (``str``): they exceed 2**53. Every other identifier (SIS, LTI,
  request and session ids, Caliper URNs) is ``ExternalId`` (``str``). The type is the only
  rule: integer ids on the wire are coerced to strings by the lenient strategies (see
  ``bridge.core``) in exactly the fields typed ``Id`` or ``ExternalId``, whatever their name.
- Timestamps are ``datetime``; the core normalizes them to UTC.
- Nested JSON objects are ``CanvasObject`` subclasses; their fields are ``Expected`` or
  optional (no identifiers below the top level).
- ``forbid_unknown_fields=True`` is deliberate: it makes the fast decode path fail on a
  field the catalog does not know yet, so that the lenient path carries the field
  through and counts it, instead of msgspec silently dropping it.
"""

from __future__ import annotations

from typing import Annotated, TypeAlias, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

#: Marks a field as a Canvas id in the Structs' type info: the lenient decoder turns an
#: integer into its decimal string there, and only there.
CANVAS_ID = "canvas_id"

Id: TypeAlias = Annotated[
    str, msgspec.Meta(description="A Canvas id, as a string (global ids exceed 2**53).", extra={CANVAS_ID: True})
]
"""A Canvas id: a decimal string (global ids exceed 2**53)."""

ExternalId: TypeAlias = Annotated[
    str,
    msgspec.Meta(
        description="An identifier (SIS, LTI, request, Caliper URN...), as a string.", extra={CANVAS_ID: True}
    ),
]
"""Any other identifier: a string, and an integer on the wire is its decimal string, as for ``Id``."""

_T = TypeVar("_T")

Expected: TypeAlias = _T | UnsetType | None
"""A field Canvas sends on every event of the type; declare it ``Expected[T] = UNSET``.

``UNSET`` tells "absent" from ``null`` at decode time at no cost; the core publishes it as
``null`` and names it in the ``missing_fields`` header (``strict`` mode dead-letters it).
"""


class CanvasObject(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A nested object inside an event body."""


class CanvasBody(CanvasObject, kw_only=True, forbid_unknown_fields=True):
    """The body of one Canvas-format event type."""


__all__ = ["CANVAS_ID", "UNSET", "CanvasBody", "CanvasObject", "Expected", "ExternalId", "Id"]
