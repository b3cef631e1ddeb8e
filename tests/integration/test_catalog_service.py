"""Every example of Canvas's catalog, both formats, through the running service on the real broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.kafka_helpers import BridgeProcess, catalog_lines, produce, read_all, run, unique, wait_until


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
