"""Enrollments: course enrollments and their computed enrollment states."""

from __future__ import annotations

from datetime import datetime

from bridge.events._base import UNSET, CanvasBody, Expected, Id


class _EnrollmentBody(CanvasBody, kw_only=True):
    """Fields shared by ``enrollment_created`` and ``enrollment_updated``."""

    enrollment_id: Id
    course_id: Expected[Id] = UNSET
    course_section_id: Expected[Id] = UNSET
    user_id: Expected[Id] = UNSET
    user_name: Expected[str] = UNSET
    # e.g. StudentEnrollment, TeacherEnrollment, TaEnrollment, DesignerEnrollment,
    # ObserverEnrollment, StudentViewEnrollment.
    type: Expected[str] = UNSET
    # active, completed, creation_pending, deleted, inactive, invited, rejected.
    workflow_state: Expected[str] = UNSET
    limit_privileges_to_course_section: Expected[bool] = UNSET
    created_at: Expected[datetime] = UNSET
    updated_at: Expected[datetime] = UNSET
    associated_user_id: Id | None = None  # observer enrollments only: the observed user
    # The uuids of the course and of the user (source: get_enrollment_data; not in the docs).
    course_uuid: str | None = None
    user_uuid: str | None = None


class EnrollmentCreated(_EnrollmentBody, kw_only=True):
    """An enrollment was added to a course by an end user or an API request."""


class EnrollmentUpdated(_EnrollmentBody, kw_only=True):
    """An enrollment was updated by an end user or an API request."""


class _EnrollmentStateBody(CanvasBody, kw_only=True):
    """Fields shared by ``enrollment_state_created`` and ``enrollment_state_updated``."""

    enrollment_id: Id
    # e.g. active, pending_active, pending_invited, invited, completed, inactive, deleted.
    state: Expected[str] = UNSET
    state_is_current: Expected[bool] = UNSET
    access_is_current: Expected[bool] = UNSET
    restricted_access: Expected[bool] = UNSET
    # Null when the state has no known start or end.
    state_started_at: datetime | None = None
    state_valid_until: datetime | None = None
    # Sent by early Canvas versions of get_enrollment_state_data (not in the docs).
    state_invalidated_at: datetime | None = None
    state_recalculated_at: datetime | None = None
    access_invalidated_at: datetime | None = None
    access_recalculated_at: datetime | None = None


class EnrollmentStateCreated(_EnrollmentStateBody, kw_only=True):
    """An enrollment state record was created for a new enrollment."""


class EnrollmentStateUpdated(_EnrollmentStateBody, kw_only=True):
    """The workflow state of an enrollment changed."""


EVENTS: dict[str, type[CanvasBody]] = {
    "enrollment_created": EnrollmentCreated,
    "enrollment_state_created": EnrollmentStateCreated,
    "enrollment_state_updated": EnrollmentStateUpdated,
    "enrollment_updated": EnrollmentUpdated,
}
