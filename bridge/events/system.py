"""System: Canvas's own liveness signal (``heartbeat``).

Not in Canvas's docs; the payload follows ``Canvas::LiveEvents.heartbeat`` in
``lib/canvas/live_events.rb`` of instructure/canvas-lms. Its body names no entity: any
object is usable.
"""

from __future__ import annotations

from bridge.events._base import UNSET, CanvasBody, Expected


class Heartbeat(CanvasBody, kw_only=True):
    """Canvas is alive and emitting live events (sent periodically by a job)."""

    # The Canvas environment (or test cluster name), e.g. production, beta.
    environment: Expected[str] = UNSET
    # "not_configured" when the region is unknown.
    region_code: Expected[str] = UNSET
    region: Expected[str] = UNSET


EVENTS: dict[str, type[CanvasBody]] = {
    "heartbeat": Heartbeat,
}
