"""Wiki: wiki pages (course and group pages) created, updated and deleted."""

from __future__ import annotations

from bridge.events._base import CanvasBody, Id


class WikiPageCreated(CanvasBody, kw_only=True):
    """A new wiki page was created by an end user or API request."""

    wiki_page_id: Id
    # Truncated to 8192 characters.
    title: str | None = None
    # Truncated to 8192 characters.
    body: str | None = None


class WikiPageDeleted(CanvasBody, kw_only=True):
    """A wiki page was deleted by an end user or API request."""

    wiki_page_id: Id
    # Truncated to 8192 characters.
    title: str | None = None


class WikiPageUpdated(CanvasBody, kw_only=True):
    """A wiki page's title or body was altered by an end user or API request."""

    wiki_page_id: Id
    # Truncated to 8192 characters.
    title: str | None = None
    # Truncated to 8192 characters.
    body: str | None = None
    # Set only when the body changed; truncated to 8192 characters.
    old_body: str | None = None
    # Set only when the title changed; truncated to 8192 characters.
    old_title: str | None = None


EVENTS: dict[str, type[CanvasBody]] = {
    "wiki_page_created": WikiPageCreated,
    "wiki_page_deleted": WikiPageDeleted,
    "wiki_page_updated": WikiPageUpdated,
}
