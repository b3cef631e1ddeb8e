"""The first end-to-end slice on the real broker: raw topic -> bridge process -> typed topic / DLQ."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.kafka_helpers import (
    BridgeProcess,
    catalog_lines,
    committed_offsets,
    produce,
    read_all,
    run,
    unique,
    wait_until,
)

SEED_TOPIC = "canvas.outcomes.retry_outcome_alignment_clone"


def _seed() -> bytes:
    return next(line for line in catalog_lines() if b'"outcomes.retry_outcome_alignment_clone"' in line)


def _with_marker(seed: bytes, marker: str) -> bytes:
    """The seed event with a unique request_id, so this run's record can be told apart."""
    event = json.loads(seed)
    event["metadata"]["request_id"] = marker
    return json.dumps(event).encode()


@pytest.mark.broker
def test_seed_event_lands_on_its_typed_topic_and_garbage_in_the_dlq(bootstrap: str, raw_topic: str,
                                                                    tmp_path: Path) -> None:
    marker = str(uuid.uuid4())
    garbage = b"{not json at all " + marker.encode()
    group = unique("group")
    run(produce(bootstrap, raw_topic, [_with_marker(_seed(), marker), garbage]))

    with BridgeProcess(bootstrap, raw_topic, group, tmp_path / "bridge.log") as bridge:
        bridge.wait_ready()
        wait_until(lambda: bridge.metric("canvas_bridge_dead_letters_total") >= 1
                   and bridge.metric("canvas_bridge_events_published_total") >= 1, 60, "outputs acknowledged")

        # An independent consumer reads the typed topic.
        records = run(read_all(bootstrap, SEED_TOPIC, min_count=1))
        mine = [r for r in records if marker.encode() in (r.value or b"")]
        assert len(mine) == 1, f"expected our seed event once on {SEED_TOPIC}, got {len(mine)}"
        value = json.loads(mine[0].value or b"")
        assert value["event_time"] == "2024-07-30T19:04:35.872Z"
        assert value["event_name"] == "outcomes.retry_outcome_alignment_clone"
        assert isinstance(value["dedupe_key"], str) and value["dedupe_key"]
        assert mine[0].headers["dedupe_key"].decode() == value["dedupe_key"]
        assert mine[0].timestamp == value["event_time_ms"] == 1722366275872
        assert value["body"]["original_course_uuid"] == "RuBP4jfbRXyaG6LpOFW70jkZyFmj5beZxeGO5bMB"

        # Garbage: the original bytes, unchanged, with a reason and where it came from.
        dead = [r for r in run(read_all(bootstrap, "canvas.dlq", min_count=1)) if r.value == garbage]
        assert len(dead) == 1
        headers = dead[0].headers
        assert headers["dlq_reason"] == b"invalid_json"
        assert headers["dlq_source_topic"] == raw_topic.encode()
        assert int(headers["dlq_source_offset"]) >= 0
        assert headers["dlq_detail"]

        # The metrics count what happened.
        assert bridge.metric("canvas_bridge_events_consumed_total") == 2
        assert bridge.metric("canvas_bridge_events_published_total",
                             'event_name="outcomes.retry_outcome_alignment_clone"') == 1
        assert bridge.metric("canvas_bridge_dead_letters_total", 'reason="invalid_json"') == 1

        # Offsets are committed once the outputs are acknowledged: 2 records in all.
        def committed() -> bool:
            offsets = run(committed_offsets(bootstrap, group, raw_topic, 3))
            return sum(o or 0 for o in offsets.values()) == 2
        wait_until(committed, 30, "offsets of both records committed")
    assert bridge.proc is not None and bridge.proc.returncode == 0


@pytest.mark.broker
def test_kcat_reads_the_typed_topic(bootstrap: str, raw_topic: str, tmp_path: Path) -> None:
    """Any Kafka client interoperates: kcat (librdkafka) reads the typed record and its headers."""
    kcat = require_tool("kcat")
    marker = str(uuid.uuid4())
    prefix = unique("kcat") + "."
    run(produce(bootstrap, raw_topic, [_with_marker(_seed(), marker)]))
    with BridgeProcess(bootstrap, raw_topic, unique("group"), tmp_path / "bridge.log",
                       BRIDGE_TOPICS_PREFIX=prefix) as bridge:
        bridge.wait_ready()
        wait_until(lambda: bridge.metric("canvas_bridge_events_published_total") >= 1, 60, "the record published")
    topic = prefix + "outcomes.retry_outcome_alignment_clone"
    out = subprocess.run(
        [kcat, "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%h\\t%s\\n"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    headers, value = lines[0].split("\t", 1)
    record = json.loads(value)
    assert record["metadata"]["request_id"] == marker
    assert record["event_time"] == "2024-07-30T19:04:35.872Z"
    assert f"dedupe_key={record['dedupe_key']}" in headers
