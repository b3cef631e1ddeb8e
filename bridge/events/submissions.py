"""Submissions: assignment submissions, submission comments, custom grade statuses.

Also ``plagiarism_resubmit`` (a resubmission to an assignment with plagiarism settings).
Classic quiz submissions are in ``bridge/events/quizzes.py`` (``quiz_submitted``).
"""

from __future__ import annotations

from datetime import datetime

from bridge.events._base import CanvasBody, ExternalId, Id


class _SubmissionBody(CanvasBody, kw_only=True):
    """Fields shared by SubmissionCreated, SubmissionUpdated and PlagiarismResubmit.

    Canvas's source builds all three from one method (``get_submission_data``).
    """

    submission_id: Id
    assignment_id: Id | None = None
    user_id: Id | None = None
    attempt: int | None = None
    # Text-entry content, truncated to 8192 characters.
    body: str | None = None
    # The grade in the assignment's grading scheme (e.g. a letter grade).
    grade: str | None = None
    graded_at: datetime | None = None
    # Set for group assignments.
    group_id: Id | None = None
    late: bool | None = None
    missing: bool | None = None
    # An LTI guid, not a Canvas id.
    lti_assignment_id: ExternalId | None = None
    lti_user_id: ExternalId | None = None
    score: float | None = None
    # e.g. basic_lti_launch, discussion_topic, media_recording, online_quiz,
    # online_text_entry, online_upload, online_url.
    submission_type: str | None = None
    submitted_at: datetime | None = None
    updated_at: datetime | None = None
    # Set for online_url submissions.
    url: str | None = None
    # e.g. submitted, pending_review, graded, unsubmitted.
    workflow_state: str | None = None
    # Source (get_submission_data), not in the docs: when the grade was posted to the
    # student (null while hidden); the guid of the plagiarism tool (LTI 2 tool proxy) when
    # the assignment has one, and in older Canvas versions [guid, old format] as well.
    posted_at: datetime | None = None
    associated_integration_id: ExternalId | None = None
    associated_integration_ids: list[ExternalId] | None = None


class SubmissionCreated(_SubmissionBody, kw_only=True):
    """An assignment or New Quizzes submission was submitted or resubmitted."""


class SubmissionUpdated(_SubmissionBody, kw_only=True):
    """A submission was modified, or graded by a teacher."""


class SubmissionCommentCreated(CanvasBody, kw_only=True):
    """A comment was added to a submission by an end user or API request."""

    submission_comment_id: Id
    submission_id: Id | None = None
    # The comment's author.
    user_id: Id | None = None
    created_at: datetime | None = None
    attachment_ids: list[Id] | None = None
    # Truncated to 8192 characters.
    body: str | None = None


class SubmissionCustomGradeStatus(CanvasBody, kw_only=True):
    """A custom grade status was applied to or removed from a student's submission."""

    submission_id: Id
    assignment_id: Id | None = None
    # The student.
    user_id: Id | None = None
    course_id: Id | None = None
    submission_status: str | None = None
    submission_status_id: Id | None = None
    # Set only if a custom status was applied before.
    old_submission_status: str | None = None
    old_submission_status_id: Id | None = None
    updated_at: datetime | None = None


class PlagiarismResubmit(_SubmissionBody, kw_only=True):
    """A submission was made to an assignment with plagiarism settings turned on."""


EVENTS: dict[str, type[CanvasBody]] = {
    "submission_created": SubmissionCreated,
    "submission_updated": SubmissionUpdated,
    "submission_comment_created": SubmissionCommentCreated,
    "submission_custom_grade_status": SubmissionCustomGradeStatus,
    "plagiarism_resubmit": PlagiarismResubmit,
}
