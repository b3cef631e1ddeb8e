"""Discussions: discussion topics and announcements, and their entries (replies)."""

from __future__ import annotations

from datetime import datetime

from bridge.events._base import UNSET, CanvasBody, Expected, Id


class DiscussionEntryCreated(CanvasBody, kw_only=True):
    """A user or the system replied to a discussion topic or thread."""

    discussion_entry_id: Id
    discussion_topic_id: Expected[Id] = UNSET
    user_id: Expected[Id] = UNSET
    created_at: Expected[datetime] = UNSET
    text: str | None = None  # HTML, truncated to 8192 characters
    parent_discussion_entry_id: Id | None = None  # only for a reply to an entry


class DiscussionEntrySubmitted(CanvasBody, kw_only=True):
    """A user or the system replied to a graded discussion topic."""

    discussion_entry_id: Id
    discussion_topic_id: Expected[Id] = UNSET
    user_id: Expected[Id] = UNSET
    created_at: Expected[datetime] = UNSET
    text: str | None = None  # HTML, truncated to 8192 characters
    parent_discussion_entry_id: Id | None = None  # only for a reply to an entry
    # Present when the topic is graded.
    assignment_id: Id | None = None
    submission_id: Id | None = None


class _DiscussionTopicBody(CanvasBody, kw_only=True):
    """Fields shared by ``discussion_topic_created`` and ``discussion_topic_updated``."""

    discussion_topic_id: Id
    context_id: Expected[Id] = UNSET
    context_type: Expected[str] = UNSET  # usually Course or Group
    is_announcement: Expected[bool] = UNSET
    # active, deleted, post_delayed, unpublished.
    workflow_state: Expected[str] = UNSET
    updated_at: Expected[datetime] = UNSET
    title: str | None = None  # truncated to 8192 characters
    body: str | None = None  # HTML, truncated to 8192 characters
    assignment_id: Id | None = None  # only for a graded topic
    lock_at: datetime | None = None


class DiscussionTopicCreated(_DiscussionTopicBody, kw_only=True):
    """A discussion topic (or an announcement) was created."""


class DiscussionTopicUpdated(_DiscussionTopicBody, kw_only=True):
    """A discussion topic or a course announcement was updated."""


EVENTS: dict[str, type[CanvasBody]] = {
    "discussion_entry_created": DiscussionEntryCreated,
    "discussion_entry_submitted": DiscussionEntrySubmitted,
    "discussion_topic_created": DiscussionTopicCreated,
    "discussion_topic_updated": DiscussionTopicUpdated,
}
