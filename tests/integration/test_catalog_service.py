"""Every example of Canvas's catalog, both formats, through the running service on the real broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.kafka_helpers import REPO, BridgeProcess, catalog_lines, produce, read_all, run, unique, wait_until


@pytest.mark.broker
def test_every_catalog_example_is_published_typed_on_its_topic(bootstrap: str, raw_topic: str, tmp_path: Path) -> None:
    canvas = catalog_lines("canvas-examples.jsonl")
    caliper = catalog_lines("caliper-examples.jsonl")
    caliper_events = [e for line in caliper for e in json.loads(line)["data"]]
    expected = len(canvas) + len(caliper_events)
    prefix = unique("cat")
    run(produce(bootstrap, raw_topic, canvas + caliper))

    with BridgeProcess(bootstrap, raw_topic, unique("group"), tmp_path / "bridge.log",
                       BRIDGE_TOPICS_PREFIX=f"{prefix}.", BRIDGE_TOPICS_CALIPER_PREFIX=f"{prefix}.caliper.",
                       BRIDGE_TOPICS_DEAD_LETTER=f"{prefix}.dlq") as bridge:
        bridge.wait_ready()
        wait_until(lambda: bridge.metric("canvas_bridge_events_published_total") >= expected, 90,
                   f"{expected} typed records")
        assert bridge.metric("canvas_bridge_events_consumed_total") == len(canvas) + len(caliper)
        assert bridge.metric("canvas_bridge_events_published_total") == expected
        assert bridge.metric("canvas_bridge_dead_letters_total") == 0
        assert bridge.metric("canvas_bridge_generic_events_total") == 0
        assert bridge.metric("canvas_bridge_duplicates_suppressed_total") == 0
        assert bridge.metric("canvas_bridge_events_published_total", 'event_name="_generic"') == 0

    # Read back a few typed topics with an independent consumer: each record on its own topic.
    names = {json.loads(line)["metadata"]["event_name"] for line in canvas}
    for name in ("grade_change", "outcomes.retry_outcome_alignment_clone", "user_updated"):
        assert name in names
        records = run(read_all(bootstrap, f"{prefix}.{name}", min_count=1))
        assert records and all(json.loads(r.value or b"")["event_name"] == name for r in records)
    assert run(read_all(bootstrap, f"{prefix}.caliper.asset_accessed", min_count=1))
    assert not run(read_all(bootstrap, f"{prefix}.dlq", timeout=3))


def _compact(line: bytes) -> bytes:
    tree = json.loads(line)
    tree["body"] = {k: v for k, v in tree["body"].items() if v is not None}  # Canvas's payload.compact!
    return json.dumps(tree).encode()


def _without_an_expected_field(line: bytes) -> bytes | None:
    """The payload as another Canvas version might send it: its first ``Expected`` field absent."""
    import msgspec

    from bridge.events import CANVAS_EVENTS

    tree = json.loads(line)
    struct = CANVAS_EVENTS[tree["metadata"]["event_name"]]
    expected = [f.encode_name for f in msgspec.structs.fields(struct) if f.default is msgspec.UNSET]
    if not expected:
        return None
    del tree["body"][expected[0]]
    return json.dumps(tree).encode()


@pytest.mark.broker
def test_source_shaped_events_are_typed_compacted_copies_are_duplicates_and_missing_fields_counted(
        bootstrap: str, raw_topic: str, tmp_path: Path) -> None:
    """Canvas's real payloads through the service: none generic, none with unknown fields; a compacted
    copy has the same dedupe key (suppressed); a field another version lacks is counted."""
    source = (REPO / "tests" / "fixtures" / "source" / "canvas-source-payloads.jsonl").read_bytes().splitlines()
    compacted = [_compact(line) for line in source]
    drifted = [v for v in (_without_an_expected_field(line) for line in source) if v is not None]
    assert len(source) == 85 and len(drifted) >= 40
    prefix = unique("src")
    run(produce(bootstrap, raw_topic, source + compacted + drifted, partition=0))  # one dedupe window
    expected = len(source) + len(drifted)

    with BridgeProcess(bootstrap, raw_topic, unique("group"), tmp_path / "bridge.log",
                       BRIDGE_TOPICS_PREFIX=f"{prefix}.", BRIDGE_TOPICS_DEAD_LETTER=f"{prefix}.dlq") as bridge:
        bridge.wait_ready()
        wait_until(lambda: bridge.metric("canvas_bridge_events_published_total") >= expected
                   and bridge.metric("canvas_bridge_duplicates_suppressed_total") >= len(compacted), 90,
                   f"{expected} typed records and {len(compacted)} suppressed copies")  # fmt: skip
        assert bridge.metric("canvas_bridge_events_published_total") == expected
        assert bridge.metric("canvas_bridge_duplicates_suppressed_total") == len(compacted)
        assert bridge.metric("canvas_bridge_dead_letters_total") == 0
        assert bridge.metric("canvas_bridge_generic_events_total") == 0
        assert bridge.metric("canvas_bridge_unknown_fields_total") == 0
        assert bridge.metric("canvas_bridge_missing_fields_total") == len(drifted)
        assert bridge.metric("canvas_bridge_missing_fields_total", 'event_name="grade_change"') == 1
        assert bridge.metric("canvas_bridge_events_published_total", 'event_name="heartbeat"') == 2

    beats = run(read_all(bootstrap, f"{prefix}.heartbeat", min_count=2))
    assert sorted(r.headers.get("missing_fields", b"") for r in beats) == [b"", b"body.environment"]
    assert all(json.loads(r.value or b"")["generic"] is False for r in beats)
