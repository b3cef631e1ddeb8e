"""Modules: course modules and the items inside them."""

from __future__ import annotations

from bridge.events._base import CanvasBody, Id


class _ModuleBody(CanvasBody, kw_only=True):
    """Fields shared by ModuleCreated and ModuleUpdated."""

    module_id: Id
    context_id: Id | None = None
    # Usually "Course".
    context_type: str | None = None
    name: str | None = None
    position: int | None = None
    # active, deleted, unpublished.
    workflow_state: str | None = None


class ModuleCreated(_ModuleBody, kw_only=True):
    """A new module was created by an end user or API request."""


class ModuleUpdated(_ModuleBody, kw_only=True):
    """A module was updated by an end user or API request."""


class _ModuleItemBody(CanvasBody, kw_only=True):
    """Fields shared by ModuleItemCreated and ModuleItemUpdated."""

    module_item_id: Id
    module_id: Id | None = None
    context_id: Id | None = None
    # Usually "Course".
    context_type: str | None = None
    position: int | None = None
    # active, deleted, unpublished.
    workflow_state: str | None = None


class ModuleItemCreated(_ModuleItemBody, kw_only=True):
    """A new module item was added to a module by an end user or API request."""


class ModuleItemUpdated(_ModuleItemBody, kw_only=True):
    """A module item was updated in a module by an end user or API request."""


EVENTS: dict[str, type[CanvasBody]] = {
    "module_created": ModuleCreated,
    "module_updated": ModuleUpdated,
    "module_item_created": ModuleItemCreated,
    "module_item_updated": ModuleItemUpdated,
}
