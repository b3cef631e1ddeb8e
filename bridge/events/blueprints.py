"""Blueprints: blueprint (master) courses, their subscriptions and their lock restrictions.

None of these event types is in Canvas's published docs; the payloads follow
``lib/canvas/live_events.rb`` of instructure/canvas-lms (``master_template_created``,
``blueprint_subscription_*``, ``*blueprint_restrictions_updated``). Blueprint syncs
(``master_migration_*``) are in ``bridge/events/migrations.py``.
"""

from __future__ import annotations

from typing import Any

from bridge.events._base import UNSET, CanvasBody, Expected, ExternalId, Id


class MasterTemplateCreated(CanvasBody, kw_only=True):
    """A course was made a blueprint course (its master template was created)."""

    master_template_id: Id
    account_id: Expected[Id] = UNSET
    account_uuid: Expected[str] = UNSET
    blueprint_course_id: Expected[Id] = UNSET
    blueprint_course_uuid: Expected[str] = UNSET
    blueprint_course_title: Expected[str] = UNSET
    blueprint_course_workflow_state: Expected[str] = UNSET


class _BlueprintSubscriptionBody(CanvasBody, kw_only=True):
    """Fields shared by ``blueprint_subscription_created`` and ``blueprint_subscription_deleted``."""

    # The child subscription: a course associated with a blueprint course.
    child_subscription_id: Id
    master_template_id: Expected[Id] = UNSET
    master_template_account_uuid: Expected[str] = UNSET
    master_course_uuid: Expected[str] = UNSET
    child_course_uuid: Expected[str] = UNSET
    child_course_account_uuid: Expected[str] = UNSET


class BlueprintSubscriptionCreated(_BlueprintSubscriptionBody, kw_only=True):
    """A course was associated with a blueprint course."""


class BlueprintSubscriptionDeleted(_BlueprintSubscriptionBody, kw_only=True):
    """A course was dissociated from its blueprint course."""


class DefaultBlueprintRestrictionsUpdated(CanvasBody, kw_only=True):
    """The default lock settings of a blueprint course changed."""

    # A local course id (the source sends master_template.course.id).
    canvas_course_id: Id
    canvas_course_uuid: Expected[str] = UNSET
    # {"content": true, "points": false, ...}, or the same by content type
    # ({"Assignment": {...}, "Quizzes::Quiz": {...}}) when restrictions are by type.
    restrictions: Expected[dict[str, Any]] = UNSET


class BlueprintRestrictionsUpdated(CanvasBody, kw_only=True):
    """The lock settings of one item of a blueprint course changed."""

    # The locked item's id (the source names it for assignments; any content type is sent).
    canvas_assignment_id: Id
    canvas_course_id: Expected[Id] = UNSET
    canvas_course_uuid: Expected[str] = UNSET
    # Null unless the item is an assignment.
    lti_resource_link_id: ExternalId | None = None
    restrictions: Expected[dict[str, Any]] = UNSET
    use_default_restrictions: Expected[bool] = UNSET


EVENTS: dict[str, type[CanvasBody]] = {
    "blueprint_restrictions_updated": BlueprintRestrictionsUpdated,
    "blueprint_subscription_created": BlueprintSubscriptionCreated,
    "blueprint_subscription_deleted": BlueprintSubscriptionDeleted,
    "default_blueprint_restrictions_updated": DefaultBlueprintRestrictionsUpdated,
    "master_template_created": MasterTemplateCreated,
}
