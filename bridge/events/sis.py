"""SIS: SIS imports (SIS batches) and their status changes."""

from __future__ import annotations

from bridge.events._base import CanvasBody, Id


class _SisBatchBody(CanvasBody, kw_only=True):
    """Fields shared by SisBatchCreated and SisBatchUpdated."""

    sis_batch_id: Id
    account_id: Id | None = None
    # e.g. initializing, created, importing, imported, imported_with_messages,
    # failed, failed_with_messages, aborted.
    workflow_state: str | None = None


class SisBatchCreated(_SisBatchBody, kw_only=True):
    """A new SIS import was created."""


class SisBatchUpdated(_SisBatchBody, kw_only=True):
    """The status of a newly created SIS import changed."""


EVENTS: dict[str, type[CanvasBody]] = {
    "sis_batch_created": SisBatchCreated,
    "sis_batch_updated": SisBatchUpdated,
}
