"""Grades: submission grade changes, course scores, final grade overrides and statuses."""

from __future__ import annotations

from datetime import datetime

from bridge.events._base import UNSET, CanvasBody, Expected, ExternalId, Id


class CourseGradeChange(CanvasBody, kw_only=True):
    """One of a student's course scores changed."""

    # The student (user_id) and the course: both identify the score.
    user_id: Id
    course_id: Id
    workflow_state: Expected[str] = UNSET  # active, deleted
    created_at: Expected[datetime] = UNSET
    updated_at: Expected[datetime] = UNSET
    # Scores are null until computed; the old_* ones are absent or null before the
    # student's first submission (old_final_score may be 0.0 then).
    current_score: float | None = None
    old_current_score: float | None = None
    final_score: float | None = None
    old_final_score: float | None = None
    unposted_current_score: float | None = None
    old_unposted_current_score: float | None = None
    unposted_final_score: float | None = None
    old_unposted_final_score: float | None = None


class GradeChange(CanvasBody, kw_only=True):
    """A submission was graded (by a teacher, automatic quiz scoring, or a points change)."""

    submission_id: Id
    assignment_id: Expected[Id] = UNSET
    user_id: Expected[Id] = UNSET
    student_id: Expected[Id] = UNSET  # same as user_id
    grading_complete: Expected[bool] = UNSET
    muted: Expected[bool] = UNSET  # muted changes must not be shown to students
    # Grades are strings ("5", "A-", "complete"...); null when ungraded.
    grade: str | None = None
    old_grade: str | None = None
    score: float | None = None
    old_score: float | None = None
    points_possible: float | None = None
    old_points_possible: float | None = None
    grader_id: Id | None = None  # null for automatic grading
    student_sis_id: ExternalId | None = None
    # The assignment's name (source: grade_changed; not in the docs).
    assignment_name: str | None = None


class GradeOverride(CanvasBody, kw_only=True):
    """A student's final course grade was overridden (only when the score changes)."""

    score_id: Id
    enrollment_id: Expected[Id] = UNSET
    user_id: Expected[Id] = UNSET
    course_id: Expected[Id] = UNSET
    updated_at: Expected[datetime] = UNSET
    grading_period_id: Id | None = None  # null for the whole-course score
    override_score: float | None = None  # null when the override is removed
    old_override_score: float | None = None


class FinalGradeCustomStatus(CanvasBody, kw_only=True):
    """A custom status was applied to, or removed from, a student's final grade."""

    score_id: Id
    enrollment_id: Expected[Id] = UNSET
    user_id: Expected[Id] = UNSET
    course_id: Expected[Id] = UNSET
    updated_at: Expected[datetime] = UNSET
    grading_period_id: Id | None = None  # if applicable
    # The new status is null when it was removed; the old one when there was none.
    override_status: str | None = None
    override_status_id: Id | None = None
    old_override_status: str | None = None
    old_override_status_id: Id | None = None


EVENTS: dict[str, type[CanvasBody]] = {
    "course_grade_change": CourseGradeChange,
    "final_grade_custom_status": FinalGradeCustomStatus,
    "grade_change": GradeChange,
    "grade_override": GradeOverride,
}
