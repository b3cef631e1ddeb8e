"""Quizzes: classic quizzes (old quizzes) created, updated and submitted."""

from __future__ import annotations

from datetime import datetime

from bridge.events._base import CanvasBody, Id


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


EVENTS: dict[str, type[CanvasBody]] = {
    "quiz_created": QuizCreated,
    "quiz_submitted": QuizSubmitted,
    "quiz_updated": QuizUpdated,
}
