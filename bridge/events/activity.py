"""Activity: page views and other accesses to Canvas assets (``asset_accessed``).

Source: ``Canvas::LiveEvents.asset_access`` merges the serializer of the asset
(``app/serializers/live_events/``: an external tool adds ``url``, ``domain`` and ``asset_name``;
an attachment ``filename`` and ``display_name``) and, when the access comes through an
enrollment, ``enrollment_id`` and ``section_id``.
"""

from __future__ import annotations

from bridge.events._base import UNSET, CanvasBody, Expected, Id


class AssetAccessed(CanvasBody, kw_only=True):
    """An asset (course, page, quiz, file, tool...) or a list of assets was viewed.

    ``asset_type`` and ``asset_id`` identify the asset; when ``asset_subtype`` is set, the
    access is to a list of items of that subtype in the asset (e.g. the quizzes of a course).
    """

    asset_id: Id
    # e.g. course, group, user, account, assignment, attachment, calendar_event,
    # collaboration, content_tag, context_external_tool, discussion_topic, enrollment,
    # learning_outcome, lti/tool_proxy, quizzes:quiz, web_conference, wiki_page.
    asset_type: str  # an identifier with asset_id: the id alone does not say what was accessed
    # announcements, assignments, calendar, collaborations, conferences, external_tools,
    # external_urls, files, grades, home, modules, outcomes, pages, quizzes, roster,
    # syllabus, topics, wiki.
    category: Expected[str] = UNSET
    asset_name: str | None = None
    # e.g. announcements, assignments, calendar_feed, collaborations, conferences, files,
    # grades, home, modules, outcomes, pages, quizzes, roster, speed_grader, syllabus, topics.
    asset_subtype: str | None = None
    # AccountUser, DesignerEnrollment, GroupMembership, ObserverEnrollment,
    # StudentEnrollment, StudentViewEnrollment, TaEnrollment, TeacherEnrollment, User.
    role: str | None = None
    # Usually null; "submit" (assignments) or "participate".
    level: str | None = None
    # Attachments only (both possibly truncated).
    filename: str | None = None
    display_name: str | None = None
    # LTI tools (context_external_tool) only.
    url: str | None = None
    domain: str | None = None
    # Only when the access comes through an enrollment (source: asset_access's
    # context_membership); not in the docs.
    enrollment_id: Id | None = None
    section_id: Id | None = None


EVENTS: dict[str, type[CanvasBody]] = {
    "asset_accessed": AssetAccessed,
}
