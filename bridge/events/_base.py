"""Base classes and conventions shared by every Canvas Live Events Struct.

Conventions (keep them when adding an event type):

- One ``CanvasBody`` subclass per event type, named for the event (``GradeChange``),
  grouped by Canvas area in ``bridge/events/<area>.py``; each area module exports
  ``EVENTS: dict[str, type[CanvasBody]]`` mapping ``metadata.event_name`` to the Struct.
- Canvas ids are ``Id`` (``str``): they exceed 2**53. Integer ids on the wire are
  coerced to strings by the lenient decoder (see ``bridge.core``).
- Timestamps are ``datetime``; the core normalizes them to UTC.
- A field is ``T | None = None`` when the docs or examples say it may be absent or null.
- Nested JSON objects are ``CanvasObject`` subclasses.
- ``forbid_unknown_fields=True`` is deliberate: it makes the fast decode path fail on a
  field the catalog does not know yet, so that the lenient path carries the field
  through and counts it, instead of msgspec silently dropping it.
"""

from __future__ import annotations

from typing import Annotated, TypeAlias

import msgspec

#: Marks a field as a Canvas id in the Structs' type info: the lenient decoder turns an
#: integer into its decimal string there, and only there.
CANVAS_ID = "canvas_id"

Id: TypeAlias = Annotated[
    str, msgspec.Meta(description="A Canvas id, as a string (global ids exceed 2**53).", extra={CANVAS_ID: True})
]
"""A Canvas id: a decimal string (global ids exceed 2**53)."""


class CanvasObject(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A nested object inside an event body."""


class CanvasBody(CanvasObject, kw_only=True, forbid_unknown_fields=True):
    """The body of one Canvas-format event type."""
