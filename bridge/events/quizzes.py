"""Quizzes: classic quizzes (old quizzes), their extensions, and their move to New Quizzes.

``quiz_extension_created``, ``quiz_export_complete`` and the ``quizzes_next_*`` events are not
in Canvas's docs; their payloads follow Canvas's source (instructure/canvas-lms):
``lib/canvas/live_events.rb``, ``app/models/content_export.rb`` with
``lib/exporters/quizzes2_exporter.rb`` (the exported assignment), and the callers of
``quizzes_next_quiz_duplicated`` / ``quizzes_next_migration_urls_complete`` (the New Quizzes
importer, ``AssignmentsApiController#retry_alignment_clone``, ``ContentMigration``).
"""

from __future__ import annotations

from datetime import datetime

from bridge.events._base import UNSET, CanvasBody, CanvasObject, Expected, ExternalId, Id


class _QuizBody(CanvasBody, kw_only=True):
    """Fields shared by QuizCreated and QuizUpdated."""

    quiz_id: Id
    # Null when the quiz is ungraded (practice quiz, ungraded survey).
    assignment_id: Id | None = None
    context_id: Id | None = None
    # Usually "Course".
    context_type: str | None = None
    context_uuid: str | None = None
    # Truncated to 8192 characters.
    title: str | None = None
    # Truncated to 8192 characters.
    description: str | None = None
    # assignment, practice_quiz, graded_survey, survey.
    quiz_type: str | None = None
    points_possible: float | None = None
    due_at: datetime | None = None
    lock_at: datetime | None = None
    unlock_at: datetime | None = None
    # Minutes.
    time_limit: int | None = None
    # Whether an access code is required (the code itself is not exposed).
    access_code: bool | None = None
    ip_filter: str | None = None
    shuffle_answers: bool | None = None
    allowed_attempts: int | None = None
    # keep_highest, keep_latest.
    scoring_policy: str | None = None
    # null, always, until_after_last_attempt.
    hide_results: str | None = None
    show_correct_answers: bool | None = None
    show_correct_answers_at: datetime | None = None
    hide_correct_answers_at: datetime | None = None
    show_correct_answers_last_attempt: bool | None = None
    one_question_at_a_time: bool | None = None
    cant_go_back: bool | None = None
    one_time_results: bool | None = None
    anonymous_submissions: bool | None = None
    require_lockdown_browser: bool | None = None
    require_lockdown_browser_for_results: bool | None = None
    disable_timer_autosubmission: bool | None = None
    only_visible_to_overrides: bool | None = None
    # created, edited, available, unpublished, deleted.
    workflow_state: str | None = None
    updated_at: datetime | None = None


class QuizCreated(_QuizBody, kw_only=True):
    """A new classic quiz was created by an end user or API request."""


class QuizSubmitted(CanvasBody, kw_only=True):
    """A user submitted a classic quiz (old quizzes)."""

    # The quiz submission (not the assignment submission).
    submission_id: Id
    quiz_id: Id | None = None


class QuizUpdated(_QuizBody, kw_only=True):
    """A classic quiz's quiz-specific settings were updated by an end user or API request."""


class QuizExtensionCreated(CanvasBody, kw_only=True):
    """A student was given an extension (more attempts, more time, an unlock) on a classic quiz.

    The source compacts this payload itself: a setting that was not changed is absent.
    """

    # The quiz and the student together identify the extension.
    quiz_id: Id
    user_id: Id
    extra_attempts: int | None = None
    extra_time: int | None = None  # minutes
    manually_unlocked: bool | None = None


class QuizExportAssignment(CanvasObject, kw_only=True):
    """The New Quizzes assignment a classic quiz is exported to (``Quizzes2Exporter``)."""

    assignment_id: Id | None = None  # newer Canvas versions
    resource_link_id: ExternalId | None = None
    title: str | None = None
    context_title: str | None = None  # the course's name
    course_uuid: str | None = None
    points_possible: float | None = None  # newer Canvas versions


class QuizExportQti(CanvasObject, kw_only=True):
    """Where the exported QTI package can be downloaded."""

    url: str | None = None


class QuizExportComplete(CanvasBody, kw_only=True):
    """A classic quiz was exported for New Quizzes (``content_export.settings[:quizzes2]``)."""

    # "content-export-<global id of the content export>": a prefixed string, not a bare id.
    content_export_id: ExternalId
    assignment: QuizExportAssignment | None = None
    qti_export: QuizExportQti | None = None


class QuizzesNextQuizDuplicated(CanvasBody, kw_only=True):
    """New Quizzes quizzes are being duplicated into a course (course copy, blueprint sync,
    or a retried outcome alignment clone).

    The fields differ between Canvas versions: newer ones send the course-level fields
    (``new_course_resource_link_id`` ... ``status``), older ones one event per assignment
    (``new_assignment_id``, ``original_resource_link_id``, ``new_course_id``...).
    """

    new_course_uuid: str  # the course the quizzes are copied into
    original_course_uuid: str | None = None
    new_course_resource_link_id: ExternalId | None = None
    domain: str | None = None
    new_course_name: str | None = None
    created_on_blueprint_sync: bool | None = None
    resource_map_url: str | None = None
    remove_alignments: bool | None = None
    # duplicating, outcome_alignment_cloning.
    status: str | None = None
    new_assignment_id: Id | None = None
    original_resource_link_id: ExternalId | None = None
    new_course_id: ExternalId | None = None  # an LTI context id
    new_resource_link_id: ExternalId | None = None


class QuizzesNextMigrationUrlsComplete(CanvasBody, kw_only=True):
    """A content migration started by New Quizzes finished rewriting its URLs."""

    migrated_urls_content_migration_id: Id
    original_course_uuid: Expected[str] = UNSET
    new_course_uuid: Expected[str] = UNSET
    domain: Expected[str] = UNSET
    resource_map_url: Expected[str] = UNSET


EVENTS: dict[str, type[CanvasBody]] = {
    "quiz_created": QuizCreated,
    "quiz_export_complete": QuizExportComplete,
    "quiz_extension_created": QuizExtensionCreated,
    "quiz_submitted": QuizSubmitted,
    "quiz_updated": QuizUpdated,
    "quizzes_next_migration_urls_complete": QuizzesNextMigrationUrlsComplete,
    "quizzes_next_quiz_duplicated": QuizzesNextQuizDuplicated,
}
