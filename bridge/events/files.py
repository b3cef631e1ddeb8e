"""Files: attachments (uploaded files) created, updated and deleted."""

from __future__ import annotations

from datetime import datetime

from bridge.events._base import UNSET, CanvasBody, Expected, Id


class _AttachmentBody(CanvasBody, kw_only=True):
    """Fields shared by the ``attachment_*`` events."""

    attachment_id: Id
    context_id: Expected[Id] = UNSET
    context_type: Expected[str] = UNSET  # e.g. Course, User, Group
    content_type: Expected[str] = UNSET  # MIME type
    display_name: Expected[str] = UNSET  # truncated to 8192 characters
    filename: Expected[str] = UNSET  # truncated to 8192 characters
    updated_at: Expected[datetime] = UNSET
    # Null for files created by Canvas itself, or outside any folder.
    user_id: Id | None = None
    folder_id: Id | None = None
    # Null when the file has no such date.
    lock_at: datetime | None = None
    unlock_at: datetime | None = None


class AttachmentCreated(_AttachmentBody, kw_only=True):
    """A file was uploaded by an end user or an API request."""


class AttachmentDeleted(_AttachmentBody, kw_only=True):
    """A file was deleted by an end user or an API request."""


class AttachmentUpdated(_AttachmentBody, kw_only=True):
    """A file was updated by an end user or an API request."""

    # Present when the display name changed; truncated to 8192 characters.
    old_display_name: str | None = None


EVENTS: dict[str, type[CanvasBody]] = {
    "attachment_created": AttachmentCreated,
    "attachment_deleted": AttachmentDeleted,
    "attachment_updated": AttachmentUpdated,
}
