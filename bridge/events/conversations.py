"""Conversations: Canvas Inbox conversations and their messages."""

from __future__ import annotations

from datetime import datetime

from bridge.events._base import UNSET, CanvasBody, Expected, Id


class _ConversationBody(CanvasBody, kw_only=True):
    """Fields shared by ConversationCreated and ConversationForwarded."""

    conversation_id: Id
    updated_at: Expected[datetime] = UNSET


class ConversationCreated(_ConversationBody, kw_only=True):
    """A new conversation was initiated by its sender."""


class ConversationForwarded(_ConversationBody, kw_only=True):
    """A conversation was updated: a user was added to it."""


class ConversationMessageCreated(CanvasBody, kw_only=True):
    """A message was added to a conversation."""

    message_id: Id
    # Null for a message built outside a conversation (the source's spec has one).
    conversation_id: Expected[Id] = UNSET
    author_id: Expected[Id] = UNSET
    created_at: Expected[datetime] = UNSET


EVENTS: dict[str, type[CanvasBody]] = {
    "conversation_created": ConversationCreated,
    "conversation_forwarded": ConversationForwarded,
    "conversation_message_created": ConversationMessageCreated,
}
