"""Routing: which topic an event goes to. Every catalog type's topic is fixed at start.

The table (``Routes.canvas``, ``Routes.caliper``) is built once and never changes: the first
event of a type takes the same path as the millionth. A name outside the catalog is checked
each time it is met (a bounded memo keeps the Canvas ones), and dead-letters when it cannot
name a Kafka topic.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

from bridge.config import TopicsSettings
from bridge.core.outputs import R_INVALID_EVENT_NAME, Rejected

_TOPIC_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


class Routes:
    """The topic of each event type: the catalog's fixed at start, the others checked."""

    __slots__ = ("_topics", "_unknown", "caliper", "canvas")

    def __init__(self, topics: TopicsSettings, canvas_names: Iterable[str], caliper_names: Iterable[str]) -> None:
        self._topics = topics
        self._unknown: dict[str, str] = {}  # Canvas names outside the catalog: a bounded memo
        self.canvas: Mapping[str, str] = MappingProxyType(
            {name: topic for name in canvas_names if (topic := self._valid(self._canvas_checked, name)) is not None}
        )
        self.caliper: Mapping[str, str] = MappingProxyType(
            {name: topic for name in caliper_names if (topic := self._valid(self._caliper_checked, name)) is not None}
        )

    @staticmethod
    def _valid(check: Callable[[str], str], name: str) -> str | None:
        """A catalog name that cannot name a topic has no route: its events dead-letter, saying why."""
        try:
            return check(name)
        except Rejected:
            return None

    def canvas_topic(self, event_name: str, known: bool) -> str:
        topic = self.canvas.get(event_name) if known else None
        if topic is not None:
            return topic
        topic = self._unknown.get(event_name)
        if topic is None:
            topic = self._canvas_checked(event_name, known)
            if len(self._unknown) < 10000:  # bounded, whatever the input
                self._unknown[event_name] = topic
        return topic

    def caliper_topic(self, name: str, generic: bool) -> str:
        if generic and self._topics.unknown_events == "catch_all":
            return self._topics.catch_all
        topic = None if generic else self.caliper.get(name)
        return topic if topic is not None else self._caliper_checked(name)

    def _canvas_checked(self, event_name: str, known: bool = True) -> str:
        if not _TOPIC_SAFE.match(event_name) or event_name in (".", ".."):
            raise Rejected(R_INVALID_EVENT_NAME, f"event_name {event_name[:80]!r} cannot name a Kafka topic")
        if not known and self._topics.unknown_events == "catch_all":
            return self._topics.catch_all
        topic = self._topics.prefix + event_name
        if len(topic) > 249 or topic in (".", ".."):
            raise Rejected(R_INVALID_EVENT_NAME, "event_name too long for a Kafka topic name")
        return topic

    def _caliper_checked(self, name: str) -> str:
        topic = self._topics.caliper_prefix + name
        if not _TOPIC_SAFE.match(name) or len(topic) > 249:
            raise Rejected(R_INVALID_EVENT_NAME, f"Caliper type/action {name[:80]!r} cannot name a Kafka topic")
        return topic
