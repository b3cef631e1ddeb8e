"""What the broker accepts on each output topic, read through the admin API.

For each output topic, the first time a record needs it: whether it exists and may be written,
and its effective ``message.timestamp.type``, ``message.timestamp.after.max.ms``,
``message.timestamp.before.max.ms`` and ``max.message.bytes`` (the topic's own value, else the
broker's default: DescribeConfigs answers with the effective value). A topic found missing or
forbidden is looked at again after ``RECHECK_S``, so that one created (or allowed) later is
picked up without a restart. bridge/refusals.py applies what is read here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.protocol.metadata import MetadataRequest

from bridge.config import Config
from bridge.errors import Fatal
from bridge.refusals import TopicLimits

log = logging.getLogger("bridge.topicinfo")

#: A missing or forbidden topic is looked at again after this long (when a record needs it).
RECHECK_S = 10.0
#: Known topics' settings are read again after this long (an operator may change them).
REFRESH_S = 600.0
_CONFIGS = ("message.timestamp.type", "message.timestamp.after.max.ms", "message.timestamp.before.max.ms",
            "max.message.bytes")
_UNKNOWN_TOPIC, _TOPIC_NOT_AUTHORIZED = 3, 29


class StartupError(Fatal):
    """The raw or dead-letter topic is missing or forbidden while the bridge may not create topics."""


class TopicInfo:
    """The ``TopicLimits`` of each output topic, read once and refreshed (missing: every 10 s)."""

    def __init__(self, config: Config, admin: Any) -> None:
        """``admin``: an async callable returning the (shared, started) admin client."""
        self._config = config
        self._admin = admin
        self.limits: dict[str, TopicLimits] = {}
        self.version = 0  # changes with ``limits``
        # Creating topics itself, the bridge finds one missing only if its creation was refused, or
        # raced another replica's: look again soon.
        self._recheck_s = 1.0 if config.topics.create else RECHECK_S
        self._lock = asyncio.Lock()

    def stale(self, topics: Iterable[str], now: float | None = None) -> set[str]:
        now = time.monotonic() if now is None else now
        out = set()
        for topic in topics:
            lim = self.limits.get(topic)
            if lim is None or now - lim.checked_at > (REFRESH_S if lim.writable else self._recheck_s):
                out.add(topic)
        return out

    def forget(self, topic: str) -> None:
        """The broker refused a record of this topic: read its settings again before the next send."""
        self.limits.pop(topic, None)
        self.version += 1

    async def learn(self, topics: Iterable[str]) -> None:
        """Read the limits of the topics never read, or stale. Cheap when there is none."""
        stale = self.stale(topics)
        if not stale:
            return
        async with self._lock:
            stale = self.stale(stale)
            if stale:
                await self._read(sorted(stale))

    async def _read(self, topics: list[str]) -> None:
        admin: AIOKafkaAdminClient = await self._admin()
        now = time.monotonic()
        # Never auto-created by looking (the admin client's describe_topics would allow it).
        response = await admin._send_request(MetadataRequest(topics, allow_auto_topic_creation=False))
        described = response.to_object()["topics"]
        found: dict[str, TopicLimits] = {}
        for t in described:
            code = t["error_code"]
            lim = TopicLimits(exists=code != _UNKNOWN_TOPIC, authorized=code != _TOPIC_NOT_AUTHORIZED,
                              checked_at=now)
            if code not in (0, _UNKNOWN_TOPIC, _TOPIC_NOT_AUTHORIZED):
                lim.checked_at = 0.0  # e.g. leader not available yet: look again next time
            found[t["topic"]] = lim
        readable = [t for t, lim in found.items() if lim.writable]
        if readable:
            responses = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, t, dict.fromkeys(_CONFIGS)) for t in readable])
            for response in responses:
                for res in response.to_object()["resources"]:
                    got = found.get(res["resource_name"])
                    if got is None:
                        continue
                    if res["error_code"] == _TOPIC_NOT_AUTHORIZED:
                        got.authorized = False
                        continue
                    _apply(got, {e["config_names"]: e["config_value"] for e in res["config_entries"]})
        for topic, lim in found.items():
            old = self.limits.get(topic)
            if old is not None and old.writable != lim.writable and lim.checked_at:
                log.info("output topic %s is %s now", topic, "writable" if lim.writable else
                         ("missing" if not lim.exists else "forbidden"))
            self.limits[topic] = lim
        if len(self.limits) > 100_000:  # bounded, whatever the event names
            self.limits.clear()
        self.version += 1

    async def check_startup(self, catalog_topics: Iterable[str]) -> None:
        """``topics.create = false``: the raw and dead-letter topics must be there and writable;
        the catalog's typed topics that are missing are named in one warning."""
        config = self._config
        needed = [config.raw_topic, config.topics.dead_letter]
        await self._read(sorted({*needed, *catalog_topics}))
        bad = [f"{t} ({'missing' if not self.limits[t].exists else 'not authorized'})"
               for t in needed if not self.limits[t].writable]
        if bad:
            raise StartupError(f"topics.create = false and these topics cannot be used: {', '.join(bad)}; "
                               "create them (canvas-bridge topics prints the commands) or grant the ACLs")
        missing = sorted(t for t in catalog_topics if not self.limits[t].writable)
        if missing:
            log.warning("topics.create = false: %d typed topics of catalog event types are missing or forbidden; "
                        "their records go to %s (topics.missing = %s) until they exist: %s",
                        len(missing), "the catch-all topic" if config.topics.missing == "catch_all"
                        else config.topics.dead_letter, config.topics.missing, ", ".join(missing))


def _apply(lim: TopicLimits, values: dict[str, str]) -> None:
    def number(name: str, default: int) -> int:
        try:
            return int(values[name])
        except (KeyError, ValueError, TypeError):
            return default

    lim.create_time = values.get("message.timestamp.type", "CreateTime") != "LogAppendTime"
    lim.after_ms = number("message.timestamp.after.max.ms", lim.after_ms)
    lim.before_ms = number("message.timestamp.before.max.ms", lim.before_ms)
    lim.max_bytes = number("max.message.bytes", lim.max_bytes)
