"""Structured logs: ``key=value`` text or JSON lines, at the configured level.

Log lines carry no event content (PII) by default: the bridge logs counts, topics, partitions,
offsets and reasons, never values.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class RepeatLimit(logging.Filter):
    """At most one record per message template and logger every ``interval_s`` seconds.

    For the Kafka client's logs: while a broker is unreachable aiokafka retries its metadata
    update without a pause and logs two ERROR lines each time (aio-libs/aiokafka#496), ~80,000
    lines in a minute measured here. The first record of a kind passes; the next one to pass
    after the interval says how many were suppressed meanwhile.
    """

    def __init__(self, prefix: str, interval_s: float = 10.0) -> None:
        super().__init__()
        self._prefix = prefix
        self._interval = interval_s
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._prefix):
            return True
        key = (record.name, str(record.msg))
        last, suppressed = self._seen.get(key, (-self._interval, 0))
        if record.created - last < self._interval:
            self._seen[key] = (last, suppressed + 1)
            return False
        if len(self._seen) > 1000:  # bounded, whatever the messages
            self._seen.clear()
        self._seen[key] = (record.created, 0)
        if suppressed:
            record.msg = f"{record.msg} ({suppressed} more like this in the last {self._interval:.0f}s)"
        return True


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RepeatLimit("aiokafka"))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka is chatty at INFO about every reconnect; keep its warnings.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # It also logs an ERROR for every topic it has no metadata for yet, which is routine here
    # (output topics are created on first use); real failures surface in the bridge's own logs.
    logging.getLogger("aiokafka.cluster").setLevel(logging.CRITICAL)
