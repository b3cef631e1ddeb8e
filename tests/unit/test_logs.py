"""Log hygiene: the Kafka client's repeated errors are rate-limited, the bridge's own are not."""

from __future__ import annotations

import logging

from bridge.logs import RepeatLimit


def _record(name: str, msg: str, created: float, *args: object) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)
    record.created = created
    return record


def test_a_repeated_client_error_passes_once_per_interval_then_says_how_many_were_suppressed() -> None:
    limit = RepeatLimit("aiokafka", interval_s=10)
    passed = [r for r in (_record("aiokafka", "Unable connect to node with id %s: %s", t / 100, 1, "refused")
                          for t in range(2500)) if limit.filter(r)]  # 4,000 a second for 25 s, as measured
    assert [r.created for r in passed] == [0.0, 10.0, 20.0]
    assert passed[1].getMessage() == "Unable connect to node with id 1: refused (999 more like this in the last 10s)"


def test_different_messages_and_other_loggers_are_not_limited() -> None:
    limit = RepeatLimit("aiokafka", interval_s=10)
    assert limit.filter(_record("aiokafka", "Unable connect to node %s", 0.0, 1))
    assert limit.filter(_record("aiokafka", "Unable to update metadata from %s", 0.1, [1]))
    assert all(limit.filter(_record("bridge.service", "stopping: %s", t / 10, "x")) for t in range(50))
