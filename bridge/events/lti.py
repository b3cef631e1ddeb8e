"""LTI: LTI 1.3 resource links created by Deep Linking or updated through the API."""

from __future__ import annotations

from bridge.events._base import CanvasBody, Id


class _LtiResourceLinkBody(CanvasBody, kw_only=True):
    """Fields shared by LtiResourceLinkCreated and LtiResourceLinkUpdated."""

    resource_link_id: Id
    resource_link_uuid: str | None = None
    # Tracks resource links across content migrations.
    lookup_uuid: str | None = None
    context_id: Id | None = None
    # Course or Assignment.
    context_type: str | None = None
    # The LTI 1.3 deployment (ContextExternalTool) that owns the link.
    context_external_tool_id: Id | None = None
    url: str | None = None
    # e.g. active, deleted.
    workflow_state: str | None = None


class LtiResourceLinkCreated(_LtiResourceLinkBody, kw_only=True):
    """A new LTI resource link was created during LTI 1.3 Deep Linking."""


class LtiResourceLinkUpdated(_LtiResourceLinkBody, kw_only=True):
    """An existing LTI resource link was updated via API request."""


EVENTS: dict[str, type[CanvasBody]] = {
    "lti_resource_link_created": LtiResourceLinkCreated,
    "lti_resource_link_updated": LtiResourceLinkUpdated,
}
