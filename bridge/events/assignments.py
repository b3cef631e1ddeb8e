"""Assignments: assignments, assignment groups and assignment overrides (created/updated)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bridge.events._base import UNSET, CanvasBody, Expected, ExternalId, Id


class _AssignmentBody(CanvasBody, kw_only=True):
    """Fields shared by ``assignment_created`` and ``assignment_updated``."""

    assignment_id: Id
    assignment_group_id: Expected[Id] = UNSET
    context_id: Expected[Id] = UNSET
    context_type: Expected[str] = UNSET  # usually Course
    context_uuid: Expected[str] = UNSET
    title: Expected[str] = UNSET  # truncated to 8192 characters
    # created, deleted, duplicating, fail_to_import, failed_to_duplicate,
    # failed_to_migrate, importing, published, unpublished...
    workflow_state: Expected[str] = UNSET
    # Comma-separated list of: discussion_topic, external_tool, media_recording, none,
    # not_graded, online_quiz, online_text_entry, online_upload, online_url, on_paper,
    # wiki_page.
    submission_types: Expected[str] = UNSET
    created_on_blueprint_sync: Expected[bool] = UNSET
    lti_assignment_id: Expected[ExternalId] = UNSET
    lti_resource_link_id: Expected[ExternalId] = UNSET
    updated_at: Expected[datetime] = UNSET
    description: str | None = None  # HTML, truncated to 8192 characters
    # Null when the assignment has no such date.
    due_at: datetime | None = None
    unlock_at: datetime | None = None
    lock_at: datetime | None = None
    points_possible: float | None = None
    domain: str | None = None
    # Present only when the assignment is a copy (duplicate) of another one. The docs
    # spell the id ``assignment_id_duplicated__from`` (double underscore); one example
    # uses that spelling and the other ``assignment_id_duplicated_from``: accept both.
    lti_resource_link_id_duplicated_from: str | None = None
    assignment_id_duplicated_from: Id | None = None
    assignment_id_duplicated__from: Id | None = None
    domain_duplicated_from: str | None = None
    # Sent by Canvas's source (get_assignment_data), not shown in the docs:
    anonymous_grading: bool | None = None
    # The description again (truncated), for LTI tools.
    lti_assignment_description: str | None = None
    # assignment.resource_map: no fixed shape in the public source, carried as it comes.
    resource_map: Any = None
    # The guid of the plagiarism tool (LTI 2 tool proxy), when the assignment has one;
    # older Canvas versions also sent associated_integration_ids: [guid, old format].
    associated_integration_id: ExternalId | None = None
    associated_integration_ids: list[ExternalId] | None = None


class AssignmentCreated(_AssignmentBody, kw_only=True):
    """An assignment was created by an end user or an API request."""


class AssignmentUpdated(_AssignmentBody, kw_only=True):
    """An assignment was updated by an end user or an API request."""


class _AssignmentGroupBody(CanvasBody, kw_only=True):
    """Fields shared by ``assignment_group_created`` and ``assignment_group_updated``."""

    assignment_group_id: Id
    context_id: Expected[Id] = UNSET
    context_type: Expected[str] = UNSET
    workflow_state: Expected[str] = UNSET  # available, deleted
    name: str | None = None
    position: int | None = None
    group_weight: float | None = None
    # Drop rules as Canvas serializes them, e.g. "drop_lowest:1\n" or "never_drop:123".
    rules: str | None = None
    sis_source_id: ExternalId | None = None
    # Free-form: arbitrary JSON stored by integrations (SIS tools), no documented shape.
    integration_data: dict[str, Any] | None = None


class AssignmentGroupCreated(_AssignmentGroupBody, kw_only=True):
    """An assignment group was created by an end user or an API request."""


class AssignmentGroupUpdated(_AssignmentGroupBody, kw_only=True):
    """An assignment group was updated by an end user or an API request."""


class _AssignmentOverrideBody(CanvasBody, kw_only=True):
    """Fields shared by ``assignment_override_created`` and ``assignment_override_updated``."""

    assignment_override_id: Id
    # ADHOC (a list of students), CourseSection or Group.
    type: Expected[str] = UNSET
    workflow_state: Expected[str] = UNSET  # active, deleted
    # Null for overrides of items that are not assignments (e.g. ungraded quizzes).
    assignment_id: Id | None = None
    # Each overridden value is null when not overridden.
    due_at: datetime | None = None
    all_day: bool | None = None
    all_day_date: datetime | None = None
    unlock_at: datetime | None = None
    lock_at: datetime | None = None
    # Set according to ``type``.
    course_section_id: Id | None = None
    group_id: Id | None = None


class AssignmentOverrideCreated(_AssignmentOverrideBody, kw_only=True):
    """An assignment override was created by an end user or an API request."""


class AssignmentOverrideUpdated(_AssignmentOverrideBody, kw_only=True):
    """An assignment override was updated by an end user or an API request."""


EVENTS: dict[str, type[CanvasBody]] = {
    "assignment_created": AssignmentCreated,
    "assignment_group_created": AssignmentGroupCreated,
    "assignment_group_updated": AssignmentGroupUpdated,
    "assignment_override_created": AssignmentOverrideCreated,
    "assignment_override_updated": AssignmentOverrideUpdated,
    "assignment_updated": AssignmentUpdated,
}
