"""Topics managed outside the bridge (issue 17): ``topics.create = false`` on a broker that does not
create topics either (``auto.create.topics.enable=false``, through scripts/kafka-local's extra config).

This module starts its own broker for that: the session broker creates topics on first use.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.kafka_helpers import (
    KAFKA_LOCAL,
    REPO,
    BridgeProcess,
    Record,
    catalog_lines,
    create_topics,
    produce,
    read_all,
    run,
    unique,
    wait_until,
)

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def locked_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker of its own that never creates a topic on first use."""
    state = tmp_path_factory.mktemp("kafka-no-autocreate")
    extra = state / "extra.properties"
    extra.write_text("auto.create.topics.enable=false\n")
    env = {**os.environ, "KAFKA_LOCAL_DIR": str(state / "broker"), "KAFKA_LOCAL_EXTRA_CONFIG": str(extra),
           "KAFKA_LOCAL_HEAP": "512m"}
    out = subprocess.run([str(KAFKA_LOCAL), "start"], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"could not start the second local broker:\n{out.stderr}"
    try:
        yield out.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(KAFKA_LOCAL), "stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(state, ignore_errors=True)


def _three_kinds() -> dict[str, bytes]:
    """Three catalog events of different types, by event name."""
    kinds: dict[str, bytes] = {}
    for line in catalog_lines():
        event = json.loads(line)
        name = event.get("metadata", {}).get("event_name")
        if isinstance(name, str) and name.replace("_", "").isalnum() and name not in kinds:
            kinds[name] = line
        if len(kinds) == 3:
            return kinds
    raise AssertionError("the catalog has fewer than three event types")


def _marked(line: bytes, marker: str) -> bytes:
    event = json.loads(line)
    event["metadata"]["request_id"] = marker
    return json.dumps(event).encode()


def _marker(record: Record) -> str:
    return str(json.loads(record.value or b"{}")["metadata"]["request_id"])


class Scenario:
    """Raw, dead-letter and two of three typed topics created by hand; the third one missing."""

    def __init__(self, bootstrap: str, *, catch_all: bool = False) -> None:
        self.bootstrap = bootstrap
        self.prefix = unique("gitops")
        self.raw, self.dlq, self.catch_all = f"{self.prefix}.raw", f"{self.prefix}.dlq", f"{self.prefix}.unknown"
        self.kinds = _three_kinds()
        names = list(self.kinds)
        self.present = [f"{self.prefix}.{n}" for n in names[:2]]
        self.missing_name = names[2]
        self.missing = f"{self.prefix}.{names[2]}"
        run(create_topics(bootstrap, [self.raw, self.dlq, *self.present, *([self.catch_all] if catch_all else [])]))
        self.run_id = uuid.uuid4().hex[:8]

    def settings(self, **more: str) -> dict[str, str]:
        return {"BRIDGE_TOPICS_CREATE": "false", "BRIDGE_TOPICS_PREFIX": f"{self.prefix}.",
                "BRIDGE_TOPICS_DEAD_LETTER": self.dlq, "BRIDGE_TOPICS_CATCH_ALL": self.catch_all, **more}

    def values(self, round_: str, per_kind: int = 5) -> dict[str, list[bytes]]:
        return {name: [_marked(line, f"{self.run_id}-{round_}-{name}-{n}") for n in range(per_kind)]
                for name, line in self.kinds.items()}

    def produce(self, values: dict[str, list[bytes]]) -> None:
        run(produce(self.bootstrap, self.raw, [v for vs in zip(*values.values(), strict=True) for v in vs]))


def _published(bridge: BridgeProcess) -> float:
    return bridge.metric("canvas_bridge_events_published_total")


@pytest.mark.timeout(240)
def test_missing_topic_dead_lettered_then_picked_up_and_replayed(locked_bootstrap: str, tmp_path: Path) -> None:
    s = Scenario(locked_bootstrap)
    first = s.values("first")
    log = tmp_path / "bridge.log"
    with BridgeProcess(locked_bootstrap, s.raw, unique("group"), log, **s.settings()) as bridge:
        bridge.wait_ready()
        produced = time.monotonic()
        s.produce(first)
        wait_until(lambda: _published(bridge) >= 10 and bridge.metric("canvas_bridge_refused_records_total") >= 5,
                   30, "10 published, 5 refused")
        seconds = time.monotonic() - produced
        print(f"\nGITOPS dead_letter: 10 records for present topics published, 5 dead-lettered in {seconds:.2f}s")
        assert seconds < 10
        assert bridge.metric("canvas_bridge_refused_records_total", 'reason="missing_topic"') == 5
        assert bridge.get("/readyz")[0] == 200
        # The topic is created by hand: new records reach it without a restart.
        run(create_topics(locked_bootstrap, [s.missing]))
        created = time.monotonic()
        probes: list[bytes] = []

        def picked_up() -> bool:  # one record a second until the bridge sees the topic
            if bridge.metric("canvas_bridge_events_published_total", f'event_name="{s.missing_name}"') >= 1:
                return True
            if len(probes) < time.monotonic() - created:
                probes.append(_marked(s.kinds[s.missing_name], f"{s.run_id}-probe-{len(probes)}"))
                run(produce(locked_bootstrap, s.raw, [probes[-1]]))
            return False

        wait_until(picked_up, 30, "the topic created later to be used")
        print(f"GITOPS topic created later: used after {time.monotonic() - created:.1f}s ({len(probes)} probes)")
        second = {s.missing_name: s.values("second")[s.missing_name]}
        s.produce(second)
        wait_until(lambda: bridge.metric("canvas_bridge_events_published_total",
                                         f'event_name="{s.missing_name}"') >= 6, 30, "the second round published")
        assert bridge.terminate(30) == 0, bridge.log_tail()
    text = log.read_text()
    warnings = [line for line in text.splitlines() if "typed topics of catalog event types are missing" in line]
    assert len(warnings) == 1 and s.missing in warnings[0] and s.present[0] not in warnings[0]
    for topic in s.present:
        assert len(run(read_all(locked_bootstrap, topic, min_count=5))) == 5
    dead = [r for r in run(read_all(locked_bootstrap, s.dlq, min_count=5)) if "-probe-" not in _marker(r)]
    assert sorted(_marker(r) for r in dead) == sorted(f"{s.run_id}-first-{s.missing_name}-{n}" for n in range(5))
    assert all(r.headers["dlq_reason"] == b"missing_topic" and r.headers["dlq_intended_topic"] == s.missing.encode()
               for r in dead)
    assert {r.value for r in dead} == set(first[s.missing_name]), "the original raw bytes"
    # replay publishes the dead-lettered ones now that the topic exists.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env.update({"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": locked_bootstrap, "BRIDGE_RAW_TOPIC": s.raw, **s.settings()})
    out = subprocess.run([sys.executable, "-m", "bridge", "replay", "--reason", "missing_topic"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["recovered"] == 5 + len(probes) - 1  # the last probe was published
    typed = {_marker(r) for r in run(read_all(locked_bootstrap, s.missing, min_count=10 + len(probes)))}
    assert typed == {*(f"{s.run_id}-first-{s.missing_name}-{n}" for n in range(5)),
                     *(f"{s.run_id}-second-{s.missing_name}-{n}" for n in range(5)),
                     *(_marker(Record("", 0, 0, None, p)) for p in probes)}


def test_missing_topic_to_catch_all(locked_bootstrap: str, tmp_path: Path) -> None:
    s = Scenario(locked_bootstrap, catch_all=True)
    with BridgeProcess(locked_bootstrap, s.raw, unique("group"), tmp_path / "bridge.log",
                       **s.settings(BRIDGE_TOPICS_MISSING="catch_all")) as bridge:
        bridge.wait_ready()
        s.produce(s.values("one"))
        wait_until(lambda: _published(bridge) >= 15, 30, "15 published (5 to the catch-all topic)")
        assert bridge.terminate(30) == 0, bridge.log_tail()
    caught = run(read_all(locked_bootstrap, s.catch_all, min_count=5))
    assert sorted(_marker(r) for r in caught) == sorted(f"{s.run_id}-one-{s.missing_name}-{n}" for n in range(5))
    assert all(r.headers["dlq_intended_topic"] == s.missing.encode() for r in caught)
    assert all(json.loads(r.value or b"")["event_name"] == s.missing_name for r in caught), "the typed record"
    assert run(read_all(locked_bootstrap, s.dlq, idle=0.5)) == []


def test_missing_topic_fails_under_the_fail_policy(locked_bootstrap: str, tmp_path: Path) -> None:
    s = Scenario(locked_bootstrap)
    bridge = BridgeProcess(locked_bootstrap, s.raw, unique("group"), tmp_path / "bridge.log",
                           **s.settings(BRIDGE_TOPICS_MISSING="fail")).start()
    try:
        bridge.wait_ready()
        s.produce(s.values("one"))
        assert bridge.proc is not None
        code = bridge.proc.wait(60)
    finally:
        bridge.kill()
    assert code == 1
    assert f"topic {s.missing} is missing" in bridge.log_tail(), bridge.log_tail()


def test_a_missing_dead_letter_topic_stops_the_start(locked_bootstrap: str, tmp_path: Path) -> None:
    s = Scenario(locked_bootstrap)
    bridge = BridgeProcess(locked_bootstrap, s.raw, unique("group"), tmp_path / "bridge.log",
                           **s.settings(BRIDGE_TOPICS_DEAD_LETTER=f"{s.prefix}.nowhere")).start()
    try:
        assert bridge.proc is not None
        code = bridge.proc.wait(60)
    finally:
        bridge.kill()
    assert code == 1
    assert f"{s.prefix}.nowhere (missing)" in bridge.log_tail(), bridge.log_tail()


async def _delete_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
        for _ in range(300):  # until the broker no longer lists it
            if topic not in await admin.list_topics():
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{topic} was not deleted")
    finally:
        await admin.close()


@pytest.mark.timeout(240)
@pytest.mark.parametrize(("create", "guarantee"),
                         [("true", "at-least-once"), ("false", "at-least-once"), ("true", "exactly-once"),
                          ("false", "exactly-once")])
def test_a_typed_topic_deleted_mid_run(locked_bootstrap: str, tmp_path: Path, create: str, guarantee: str) -> None:
    """topics.create = true: the topic is created again and its records published there;
    false: they follow topics.missing (dead-lettered as missing_topic). The partition never waits
    for the 10-minute refresh of the topic's settings."""
    s = Scenario(locked_bootstrap)
    name, topic = next(iter(s.kinds)), s.present[0]
    first, second = s.values("first")[name], s.values("second")[name]
    published = f'event_name="{name}"'
    with BridgeProcess(locked_bootstrap, s.raw, unique("group"), tmp_path / "bridge.log",
                       **s.settings(BRIDGE_TOPICS_CREATE=create, BRIDGE_DELIVERY_GUARANTEE=guarantee)) as bridge:
        bridge.wait_ready()
        s.produce({name: first})
        wait_until(lambda: bridge.metric("canvas_bridge_events_published_total", published) >= 5, 30,
                   "5 events published")
        run(_delete_topic(locked_bootstrap, topic))
        deleted = time.monotonic()
        s.produce({name: second})
        if create == "true":
            wait_until(lambda: bridge.metric("canvas_bridge_events_published_total", published) >= 10, 120,
                       "the 5 events after the deletion published", interval=0.2)
        else:
            wait_until(lambda: bridge.metric("canvas_bridge_refused_records_total", 'reason="missing_topic"') >= 5,
                       120, "the 5 events after the deletion dead-lettered", interval=0.2)
        print(f"\nDELETED create={create} {guarantee}: the 5 events after the deletion "
              f"{'published' if create == 'true' else 'dead-lettered'} {time.monotonic() - deleted:.1f}s later; "
              f"publish retries {bridge.metric('canvas_bridge_publish_retries_total'):.0f}")
        assert bridge.get("/readyz")[0] == 200
        refused = bridge.metric("canvas_bridge_refused_records_total")
        assert bridge.terminate(30) == 0, bridge.log_tail()
    assert "never retrieved" not in (tmp_path / "bridge.log").read_text(), "a closed producer's errors were left"
    expected = sorted(_marker(Record("", 0, 0, None, v)) for v in second)
    if create == "true":
        records = run(read_all(locked_bootstrap, topic, min_count=5, read_committed=True))
        assert sorted(_marker(r) for r in records) == expected
        assert refused == 0
    else:
        dead = run(read_all(locked_bootstrap, s.dlq, min_count=5))
        assert sorted(_marker(r) for r in dead) == expected
        assert all(r.headers["dlq_reason"] == b"missing_topic" for r in dead)
