"""Enrollments: course enrollments and their computed enrollment states."""

from __future__ import annotations

from datetime import datetime

from bridge.events._base import CanvasBody, Id


class _EnrollmentBody(CanvasBody, kw_only=True):
    """Fields shared by ``enrollment_created`` and ``enrollment_updated``."""

    enrollment_id: Id
    course_id: Id
    course_section_id: Id
    user_id: Id
    user_name: str
    # e.g. StudentEnrollment, TeacherEnrollment, TaEnrollment, DesignerEnrollment,
    # ObserverEnrollment, StudentViewEnrollment.
    type: str
    # active, completed, creation_pending, deleted, inactive, invited, rejected.
    workflow_state: str
    limit_privileges_to_course_section: bool
    created_at: datetime
    updated_at: datetime
    associated_user_id: Id | None = None  # observer enrollments only: the observed user


class EnrollmentCreated(_EnrollmentBody, kw_only=True):
    """An enrollment was added to a course by an end user or an API request."""


class EnrollmentUpdated(_EnrollmentBody, kw_only=True):
    """An enrollment was updated by an end user or an API request."""


class _EnrollmentStateBody(CanvasBody, kw_only=True):
    """Fields shared by ``enrollment_state_created`` and ``enrollment_state_updated``."""

    enrollment_id: Id
    # e.g. active, pending_active, pending_invited, invited, completed, inactive, deleted.
    state: str
    state_is_current: bool
    access_is_current: bool
    restricted_access: bool
    # Null when the state has no known start or end.
    state_started_at: datetime | None = None
    state_valid_until: datetime | None = None


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
