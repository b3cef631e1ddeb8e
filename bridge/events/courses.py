"""Courses: courses, course sections, syllabus changes and module-based course progress."""

from __future__ import annotations

from datetime import datetime

from bridge.events._base import UNSET, CanvasBody, CanvasObject, Expected, ExternalId, Id


class _CourseBody(CanvasBody, kw_only=True):
    """Fields shared by ``course_created`` and ``course_updated``."""

    course_id: Id
    account_id: Expected[Id] = UNSET
    uuid: Expected[str] = UNSET
    name: Expected[str] = UNSET
    # available, claimed, completed, created, deleted.
    workflow_state: Expected[str] = UNSET
    created_at: Expected[datetime] = UNSET
    updated_at: Expected[datetime] = UNSET
    # The uuid of the course's account (source: get_course_data; not in the docs).
    account_uuid: str | None = None


class CourseCreated(_CourseBody, kw_only=True):
    """A course was created (or copied) by an end user or an API request."""


class CourseUpdated(_CourseBody, kw_only=True):
    """A course was updated (renamed, deleted...; not its syllabus)."""


class CourseProgressCourse(CanvasObject, kw_only=True):
    """The course in ``course_progress`` and ``course_completed``."""

    id: Expected[Id] = UNSET
    account_id: Expected[Id] = UNSET
    name: Expected[str] = UNSET
    sis_source_id: ExternalId | None = None  # when the course has a SIS id


class CourseProgressUser(CanvasObject, kw_only=True):
    """The student in ``course_progress`` and ``course_completed``."""

    id: Expected[Id] = UNSET
    name: Expected[str] = UNSET
    email: str | None = None  # a user may have no e-mail address


class CourseProgressDetail(CanvasObject, kw_only=True):
    """Module requirement progress of the student in the course."""

    requirement_count: int | None = None
    requirement_completed_count: int | None = None
    # Link to the next module item to complete; usually null once all are met.
    next_requirement_url: str | None = None
    # Null until every requirement is completed.
    completed_at: datetime | None = None


class _CourseProgressBody(CanvasBody, kw_only=True):
    """Fields shared by CourseCompleted and CourseProgress."""

    # The student (user) in the course (course): both identify the event.
    course: CourseProgressCourse
    user: CourseProgressUser
    progress: Expected[CourseProgressDetail] = UNSET


class CourseCompleted(_CourseProgressBody, kw_only=True):
    """A student met all module completion requirements of a course."""


class CourseProgress(_CourseProgressBody, kw_only=True):
    """A student met a module requirement of a course (2-minute debounce per student)."""


class _CourseSectionBody(CanvasBody, kw_only=True):
    """Fields shared by ``course_section_created`` and ``course_section_updated``."""

    course_section_id: Id
    course_id: Expected[Id] = UNSET
    root_account_id: Expected[Id] = UNSET
    name: Expected[str] = UNSET
    workflow_state: Expected[str] = UNSET  # active, deleted
    # Field names protected from SIS imports (may be empty).
    stuck_sis_fields: Expected[list[str]] = UNSET
    enrollment_term_id: Id | None = None
    # True, or false/null.
    default_section: bool | None = None
    accepting_enrollments: bool | None = None
    can_manually_enroll: bool | None = None  # deprecated, always null
    restrict_enrollments_to_section_dates: bool | None = None
    # Null when the section has no such date.
    start_at: datetime | None = None
    end_at: datetime | None = None
    # Original course of a cross-listed section; null otherwise.
    nonxlist_course_id: Id | None = None
    # SIS data, null without SIS integration. integration_id is an external id.
    sis_source_id: ExternalId | None = None
    sis_batch_id: Id | None = None
    integration_id: ExternalId | None = None


class CourseSectionCreated(_CourseSectionBody, kw_only=True):
    """A course section was created by an end user or an API request."""


class CourseSectionUpdated(_CourseSectionBody, kw_only=True):
    """A course section was updated by an end user or an API request."""


class SyllabusUpdated(CanvasBody, kw_only=True):
    """The syllabus of a course was changed by an end user or an API request."""

    course_id: Id
    # HTML, truncated to 8192 characters; null when empty.
    syllabus_body: str | None = None
    old_syllabus_body: str | None = None


EVENTS: dict[str, type[CanvasBody]] = {
    "course_completed": CourseCompleted,
    "course_created": CourseCreated,
    "course_progress": CourseProgress,
    "course_section_created": CourseSectionCreated,
    "course_section_updated": CourseSectionUpdated,
    "course_updated": CourseUpdated,
    "syllabus_updated": SyllabusUpdated,
}
