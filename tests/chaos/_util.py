"""Helpers of the chaos suite: traceable inputs, reading every output back, checking them.

Every input carries a unique marker so that its outputs can be found again:

- Canvas events: ``metadata.request_id = in-<tag>-<n>`` (one output each);
- Caliper envelopes: every ``data[i].id = urn:uuid:<tag>-0000-4000-8000-<k>`` (one output per
  data event; some envelopes hold 2 or 3 events);
- garbage (~1%): random bytes or a truncated JSON text, each embedding ``gb-<tag>-<n>``; it is
  found in the dead-letter topic by its exact bytes.

A marker is in the dedupe key of its output (Canvas: the metadata is hashed; Caliper: the id is),
so distinct inputs never share a dedupe key.

Event times are set to the time the workload is made. The bridge uses the event time as the Kafka
record timestamp of its outputs, and the broker's time-based retention (24 h in kafka-local) applies
to it: with the catalog's 2019/2024 event times, every typed record is deleted at the broker's next
retention check (30 s after it starts, then every 5 minutes), which a test would see as loss.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.kafka_helpers import BridgeProcess, catalog_lines, create_topics, run, unique, wait_until

CANVAS = "canvas"
CALIPER = "caliper"
GARBAGE = "garbage"
POISON = "poison"  # decodes, but the broker would refuse its typed record: expected in the DLQ
#: The reasons a poison input may carry in the DLQ (bridge/refusals.py).
POISON_REASONS = (b"timestamp_out_of_range", b"missing_topic")


@dataclass(frozen=True, slots=True)
class Input:
    value: bytes
    kind: str
    markers: tuple[str, ...]  # one per expected typed output; the garbage marker for garbage


@dataclass
class Workload:
    tag: str
    inputs: list[Input]

    @property
    def valid_markers(self) -> set[str]:
        return {m for i in self.inputs if i.kind not in (GARBAGE, POISON) for m in i.markers}

    @property
    def poison(self) -> dict[str, bytes]:
        """Marker -> raw bytes of the inputs whose typed record the broker refuses."""
        return {i.markers[0]: i.value for i in self.inputs if i.kind == POISON}

    def poison_topic(self, prefix: str) -> str:
        """The typed topic of the poison event type, which the scenario never creates."""
        return f"{prefix}poison_event_{self.tag}"

    @property
    def garbage(self) -> dict[bytes, str]:
        return {i.value: i.markers[0] for i in self.inputs if i.kind == GARBAGE}

    @property
    def values(self) -> list[bytes]:
        return [i.value for i in self.inputs]

    def marker_of_input(self) -> dict[str, int]:
        """Output marker -> index of its input."""
        return {m: n for n, i in enumerate(self.inputs) for m in i.markers}


def make_workload(count: int, *, garbage_every: int = 100, poison_every: int = 0, seed: int | None = None
                  ) -> Workload:
    """``count`` distinct inputs: the catalog mix (Canvas and Caliper lines in turn), 1/garbage_every garbage,
    1/poison_every poison: in turn an event 3 hours ahead, and one of a type whose topic is missing."""
    rnd = random.Random(seed)
    tag = uuid.uuid4().hex[:8]
    now = now_text()
    canvas = [json.loads(line) for line in catalog_lines("canvas-examples.jsonl")]
    caliper = [json.loads(line) for line in catalog_lines("caliper-examples.jsonl")]
    mix = [(CANVAS, i) for i in range(len(canvas))] + [(CALIPER, i) for i in range(len(caliper))]
    inputs: list[Input] = []
    k = 0  # Caliper data event counter
    future = (datetime.now(UTC) + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z"
    for n in range(count):
        if garbage_every and n % garbage_every == garbage_every // 2:
            inputs.append(_garbage(rnd, canvas, f"gb-{tag}-{n}", n))
            continue
        if poison_every and n % poison_every == poison_every // 3:
            event = json.loads(json.dumps(canvas[n % len(canvas)]))
            marker = f"in-{tag}-{n}"
            event["metadata"]["request_id"] = marker
            if (n // poison_every) % 2:
                event["metadata"]["event_name"] = f"poison_event_{tag}"
                event["metadata"]["event_time"] = now
            else:
                event["metadata"]["event_time"] = future
            inputs.append(Input(json.dumps(event).encode(), POISON, (marker,)))
            continue
        kind, idx = mix[n % len(mix)]
        if kind == CANVAS:
            event = json.loads(json.dumps(canvas[idx]))
            marker = f"in-{tag}-{n}"
            event["metadata"]["request_id"] = marker
            event["metadata"]["event_time"] = now
            inputs.append(Input(json.dumps(event).encode(), CANVAS, (marker,)))
        else:
            envelope = json.loads(json.dumps(caliper[idx]))
            if n % 5 == 0:  # some envelopes hold several events
                extra = [json.loads(json.dumps(caliper[rnd.randrange(len(caliper))]["data"][0]))
                         for _ in range(rnd.choice((1, 2)))]
                envelope["data"] = envelope["data"] + extra
            markers = []
            for event in envelope["data"]:
                marker = f"urn:uuid:{tag}-0000-4000-8000-{k:012x}"
                k += 1
                event["id"] = marker
                event["eventTime"] = now
                markers.append(marker)
            inputs.append(Input(json.dumps(envelope).encode(), CALIPER, tuple(markers)))
    return Workload(tag, inputs)


def now_text(naive: bool = False) -> str:
    """The current UTC time as Canvas writes it (``2024-11-01T18:42:07.091Z``), without offset if naive."""
    text = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23]
    return text if naive else text + "Z"


def _garbage(rnd: random.Random, canvas: list[dict], marker: str, n: int) -> Input:
    if n % 2:
        value = bytes([0xFF, 0xFE]) + rnd.randbytes(24) + b"|" + marker.encode() + b"|" + rnd.randbytes(24)
    else:
        event = json.loads(json.dumps(canvas[rnd.randrange(len(canvas))]))
        event["metadata"]["request_id"] = marker
        text = json.dumps(event).encode()
        end = text.index(marker.encode()) + len(marker) + 1
        value = text[: rnd.randrange(end, len(text) - 1)]  # never the closing brace: invalid JSON
    return Input(value, GARBAGE, (marker,))


# -- topics, offsets ---------------------------------------------------------------------------


@dataclass
class Topics:
    """Unique names of one scenario, and the bridge settings that use them."""

    raw: str
    group: str
    prefix: str
    caliper_prefix: str
    dlq: str

    @classmethod
    def create(cls, bootstrap: str, name: str, partitions: int) -> Topics:
        base = unique(f"chaos-{name}")
        topics = cls(raw=f"{base}.raw", group=f"{base}-group", prefix=f"{base}.", caliper_prefix=f"{base}.caliper.",
                     dlq=f"{base}.dlq")
        run(create_topics(bootstrap, [topics.raw], partitions=partitions))
        return topics

    def settings(self, **extra: str) -> dict[str, str]:
        return {
            "BRIDGE_TOPICS_PREFIX": self.prefix,
            "BRIDGE_TOPICS_CALIPER_PREFIX": self.caliper_prefix,
            "BRIDGE_TOPICS_DEAD_LETTER": self.dlq,
            # A SIGKILLed member stays in the group until its session expires: keep that short
            # (the broker's minimum), or every restart waits 30 s for the rebalance.
            "BRIDGE_KAFKA_SESSION_TIMEOUT_MS": "6000",
            # ~115 typed topics per scenario: one partition each keeps the broker's leader elections
            # (and the first batches, which wait for them) short on a small machine.
            "BRIDGE_TOPICS_PARTITIONS": "1",
            "BRIDGE_LOG_LEVEL": "INFO",
            **extra,
        }

    def bridge(self, bootstrap: str, log_path: Path, **extra: str) -> BridgeProcess:
        return BridgeProcess(bootstrap, self.raw, self.group, log_path, **self.settings(**extra))


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def group_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets on ``topic`` (partitions without a commit are absent)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}


def committed_total(bootstrap: str, group: str, topic: str) -> int:
    try:
        return sum(run(group_offsets(bootstrap, group, topic)).values())
    except Exception:  # the broker may be restarting
        return -1


def all_committed(bootstrap: str, group: str, topic: str) -> bool:
    """True when the group committed the end of every partition of ``topic``."""
    try:
        ends = run(end_offsets(bootstrap, topic))
        committed = run(group_offsets(bootstrap, group, topic))
    except Exception:
        return False
    return all(committed.get(p, 0) >= end for p, end in ends.items())


# -- producing -------------------------------------------------------------------------------


async def produce_values(bootstrap: str, topic: str, values: list[bytes], *, rate: float = 0.0,
                         stop: threading.Event | None = None,
                         sent: list[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
    """Produce ``values`` (acks=all, idempotent), at most ``rate`` per second when given.

    Returns (partition, offset) of each value, in order; ``sent`` is filled as acknowledgements come.
    Keys cycle over 64 values so that the records spread over every partition.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                                request_timeout_ms=180000, retry_backoff_ms=200)
    await producer.start()
    started = time.monotonic()
    futures = []
    placed: list[tuple[int, int]] = [] if sent is None else sent
    try:
        for n, value in enumerate(values):
            if stop is not None and stop.is_set():
                break
            futures.append(await producer.send(topic, value, key=b"k%d" % (n % 64)))
            if rate and n % 20 == 19:
                ahead = (n + 1) / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            while len(placed) < len(futures) and futures[len(placed)].done():
                meta = futures[len(placed)].result()
                placed.append((meta.partition, meta.offset))
        for fut in futures[len(placed):]:
            meta = await fut
            placed.append((meta.partition, meta.offset))
    finally:
        await producer.stop()
    return placed


async def produce_backlog(bootstrap: str, topic: str, values: list[bytes]) -> int:
    """Produce ``values`` as fast as the broker takes them (a backlog of 10^5 and more).

    Whole record batches (``send_batch``) dealt round-robin over the partitions, several in flight:
    ``produce_values`` sends one record at a time, ~10x slower. Returns the count acknowledged.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                max_batch_size=1024 * 1024, request_timeout_ms=180000)
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        batches = {p: producer.create_batch() for p in partitions}
        futures = []
        for n, value in enumerate(values):
            p = partitions[n % len(partitions)]
            if batches[p].append(key=b"k%d" % (n % 64), value=value, timestamp=None) is None:
                futures.append(await producer.send_batch(batches[p], topic, partition=p))
                batches[p] = producer.create_batch()
                batches[p].append(key=b"k%d" % (n % 64), value=value, timestamp=None)
        for p, batch in batches.items():
            if batch.record_count():
                futures.append(await producer.send_batch(batch, topic, partition=p))
        await asyncio.gather(*futures)  # raises unless every batch was acknowledged
    finally:
        await producer.stop()
    return len(values)


class BackgroundProducer:
    """Produces a list of values at a steady rate in a thread (a real client, its own event loop)."""

    def __init__(self, bootstrap: str, topic: str, values: list[bytes], rate: float) -> None:
        self.error: BaseException | None = None
        self.placed: list[tuple[int, int]] = []  # (partition, offset) of each acknowledged value, in order
        self._stop = threading.Event()

        def target() -> None:
            try:
                run(produce_values(bootstrap, topic, values, rate=rate, stop=self._stop, sent=self.placed))
            except BaseException as exc:  # reported by join()
                self.error = exc

        self._thread = threading.Thread(target=target, name="chaos-producer", daemon=True)

    def start(self) -> BackgroundProducer:
        self._thread.start()
        return self

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    @property
    def produced(self) -> int:
        return len(self.placed)

    def join(self, timeout: float) -> list[tuple[int, int]]:
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._stop.set()
            raise AssertionError(f"the producer did not finish within {timeout}s")
        if self.error is not None:
            raise self.error
        return self.placed

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


# -- reading the outputs back ------------------------------------------------------------------


@dataclass
class Out:
    topic: str
    partition: int
    offset: int
    value: bytes
    headers: dict[str, bytes]


async def read_outputs(bootstrap: str, topics: Topics, *, read_committed: bool = False,
                       timeout: float = 90.0) -> list[Out]:
    """Every record of the scenario's typed topics and DLQ, from the beginning to the current end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        isolation_level="read_committed" if read_committed else "read_uncommitted",
        fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    out: list[Out] = []
    try:
        cluster = await consumer._client.fetch_all_metadata()
        names = {t for t in cluster.topics() if t.startswith(topics.prefix) or t == topics.dlq}
        names.discard(topics.raw)
        tps = [TopicPartition(t, p) for t in sorted(names) for p in sorted(cluster.partitions_for_topic(t) or ())]
        if not tps:
            return out
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)  # the last stable offset when read_committed
        remaining = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + timeout
        while remaining:
            if time.monotonic() > deadline:
                raise AssertionError(f"reading the outputs back timed out; {len(remaining)} partitions unread")
            batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=20000)
            for tp, msgs in batch.items():
                for m in msgs:
                    if m.offset < ends[tp]:
                        out.append(Out(m.topic, m.partition, m.offset, m.value or b"",
                                       {k: bytes(v) for k, v in (m.headers or ())}))
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return out


@dataclass
class Report:
    inputs: int
    valid_inputs: int
    expected_outputs: int
    outputs: int
    lost: set[str]  # markers (expected typed outputs) with no record
    lost_inputs: set[int]  # valid inputs with at least one expected output missing
    duplicates: int
    duplicate_markers: dict[str, int]
    dedupe_key_mismatches: list[str]
    garbage_missing: list[str]
    garbage_altered: list[str]
    valid_in_dlq: list[str]
    poison_missing: list[str]  # poison inputs not in the DLQ (with their bytes and a refusal reason)
    unknown_outputs: int
    duplicate_keys: int  # typed records beyond the first per dedupe key
    by_marker: dict[str, list[Out]] = field(repr=False)  # typed outputs per marker
    dlq_by_marker: dict[str, list[Out]] = field(repr=False)  # dead letters per marker

    def line(self, name: str, seconds: float, **extra: object) -> str:
        more = "".join(f" {k}={v}" for k, v in extra.items())
        return (f"CHAOS {name}: inputs={self.inputs} outputs={self.outputs} lost={len(self.lost_inputs)} "
                f"duplicates={self.duplicates} seconds={seconds:.1f}{more}")

    def assert_at_least_once(self) -> None:
        problems = []
        if self.lost:
            problems.append(f"{len(self.lost_inputs)} valid inputs lack outputs ({len(self.lost)} typed records "
                            f"missing), e.g. {sorted(self.lost)[:5]}")
        if self.dedupe_key_mismatches:
            problems.append(f"{len(self.dedupe_key_mismatches)} duplicates carry another dedupe key than "
                            f"their first copy (or header != value), e.g. {self.dedupe_key_mismatches[:5]}")
        if self.garbage_missing:
            problems.append(f"{len(self.garbage_missing)} garbage inputs not in the DLQ, e.g. "
                            f"{self.garbage_missing[:5]}")
        if self.garbage_altered:
            problems.append(f"{len(self.garbage_altered)} garbage inputs in the DLQ with altered bytes")
        if self.poison_missing:
            problems.append(f"{len(self.poison_missing)} poison inputs not in the DLQ as refused, with their "
                            f"bytes, e.g. {self.poison_missing[:5]}")
        if self.valid_in_dlq:
            problems.append(f"{len(self.valid_in_dlq)} valid inputs dead-lettered, e.g. {self.valid_in_dlq[:5]}")
        if self.unknown_outputs:
            problems.append(f"{self.unknown_outputs} output records with no marker of this run")
        assert not problems, "; ".join(problems)

    def assert_exactly_once(self) -> None:
        self.assert_at_least_once()
        assert self.duplicates == 0, (f"{self.duplicates} duplicate outputs, e.g. "
                                      f"{list(self.duplicate_markers.items())[:5]}")
        assert self.duplicate_keys == 0, f"{self.duplicate_keys} typed records repeat a dedupe key"


def check(workload: Workload, outputs: list[Out], topics: Topics) -> Report:
    """Compare inputs and outputs by marker."""
    marker_re = re.compile(rf"(in|gb)-{workload.tag}-\d+|urn:uuid:{workload.tag}-0000-4000-8000-[0-9a-f]{{12}}")
    garbage = workload.garbage
    garbage_markers = set(garbage.values())
    poison = workload.poison
    by_marker: dict[str, list[Out]] = defaultdict(list)
    dlq_by_marker: dict[str, list[Out]] = defaultdict(list)
    unknown = 0
    valid_in_dlq = []
    for o in outputs:
        if o.topic == topics.dlq:
            marker = garbage.get(o.value)
            if marker is None:
                found = marker_re.search(o.value.decode("utf-8", "replace"))
                if found is None:
                    unknown += 1
                    continue
                marker = found.group(0)
                if marker not in garbage_markers and marker not in poison:
                    reason = o.headers.get("dlq_reason", b"?").decode("utf-8", "replace")
                    detail = o.headers.get("dlq_detail", b"").decode("utf-8", "replace")[:200]
                    valid_in_dlq.append(f"{marker} ({reason}: {detail})")
            dlq_by_marker[marker].append(o)
            continue
        try:
            value = json.loads(o.value)
            if o.topic.startswith(topics.caliper_prefix):
                marker = value["event"]["id"]
            else:
                marker = value["metadata"]["request_id"]
        except (ValueError, KeyError, TypeError):
            unknown += 1
            continue
        by_marker[marker].append(o)
    valid = workload.valid_markers
    unknown += sum(len(v) for m, v in by_marker.items() if m not in valid)
    lost = valid - by_marker.keys()
    dup_markers = {m: len(v) - 1 for m, v in by_marker.items() if len(v) > 1 and m in valid}
    dup_markers.update({m: len(v) - 1 for m, v in dlq_by_marker.items() if len(v) > 1})
    mismatches = []
    for m, copies in by_marker.items():
        keys = set()
        for o in copies:
            value_key = json.loads(o.value).get("dedupe_key")
            header_key = o.headers.get("dedupe_key", b"").decode()
            keys.add(value_key)
            keys.add(header_key)
        if len(keys) != 1:
            mismatches.append(f"{m}: {sorted(k or '' for k in keys)}")
    # Distinct inputs never share a dedupe key.
    key_owner: dict[str, str] = {}
    for m, copies in by_marker.items():
        k = copies[0].headers.get("dedupe_key", b"").decode()
        if k in key_owner and key_owner[k] != m:
            mismatches.append(f"{m} and {key_owner[k]} share the dedupe key {k}")
        key_owner[k] = m
    per_key: dict[str, int] = defaultdict(int)
    for copies in by_marker.values():
        for o in copies:
            per_key[o.headers.get("dedupe_key", b"").decode()] += 1
    garbage_missing = sorted(m for m in garbage_markers if m not in dlq_by_marker)
    poison_missing = sorted(m for m, value in poison.items() if not any(
        o.value == value and o.headers.get("dlq_reason") in POISON_REASONS for o in dlq_by_marker.get(m, ())))
    garbage_altered = sorted(m for m, copies in dlq_by_marker.items() if m in garbage_markers
                             and any(o.value not in garbage for o in copies))
    return Report(
        inputs=len(workload.inputs),
        valid_inputs=sum(1 for i in workload.inputs if i.kind != GARBAGE),
        expected_outputs=len(valid) + len(garbage),
        outputs=len(outputs),
        lost=lost,
        lost_inputs={n for m, n in workload.marker_of_input().items() if m in lost},
        duplicates=sum(dup_markers.values()),
        duplicate_markers=dup_markers,
        dedupe_key_mismatches=mismatches,
        garbage_missing=garbage_missing,
        garbage_altered=garbage_altered,
        valid_in_dlq=valid_in_dlq,
        poison_missing=poison_missing,
        unknown_outputs=unknown,
        duplicate_keys=sum(n - 1 for n in per_key.values()),
        by_marker=by_marker,
        dlq_by_marker=dlq_by_marker,
    )


# -- bridge process --------------------------------------------------------------------------


def wait_progress(bridge: BridgeProcess, timeout: float, metric: str = "canvas_bridge_events_consumed_total",
                  above: float = 0.0) -> float:
    """Wait until ``metric`` of this (fresh) bridge process exceeds ``above``; fail if it exits."""
    def progressed() -> float:
        assert bridge.proc is not None
        if bridge.proc.poll() is not None:
            raise AssertionError(f"bridge exited with {bridge.proc.returncode}:\n{bridge.log_tail()}")
        status, _ = bridge.get("/metrics")
        if status != 200:
            return 0.0
        value = bridge.metric(metric)
        return value if value > above else 0.0
    return float(wait_until(progressed, timeout, f"{metric} > {above}", interval=0.05))


def alive(bridge: BridgeProcess) -> bool:
    """True while the bridge runs; an AssertionError with its log tail once it exited."""
    assert bridge.proc is not None
    if bridge.proc.poll() is not None:
        raise AssertionError(f"bridge exited with {bridge.proc.returncode}:\n{bridge.log_tail()}")
    return True


def poll_metric(bridge: BridgeProcess, metric: str, labels: str = "") -> float | None:
    """The metric (summed over the samples whose labels contain ``labels``), None while not answering."""
    status, _ = bridge.get("/metrics", timeout=1.0)
    if status != 200:
        return None
    try:
        return bridge.metric(metric, labels)
    except AssertionError:
        return None


def log_lines(path: Path, predicate: Callable[[str], bool]) -> list[str]:
    try:
        return [line for line in path.read_text(errors="replace").splitlines() if predicate(line)]
    except FileNotFoundError:
        return []


# -- broker ----------------------------------------------------------------------------------


def start_broker(broker: object, timeout: float = 120.0) -> int:
    """``broker.start()``, retried while scripts/kafka-local refuses because the port is "taken".

    After a stop, the broker's port keeps TIME-WAIT sockets of the connections it closed (for 60 s
    on Linux); a kafka-local whose free-port check binds without SO_REUSEADDR refuses to start
    then, although the JVM (which sets SO_REUSEADDR) could listen. Returns the refused attempts
    (0 with a kafka-local that sets SO_REUSEADDR in that check).
    """
    import subprocess

    refused = 0
    deadline = time.monotonic() + timeout
    while True:
        try:
            broker.start()  # type: ignore[attr-defined]
            return refused
        except subprocess.CalledProcessError as exc:
            if "is taken by another process" not in (exc.stderr or "") or time.monotonic() > deadline:
                raise
            refused += 1
            time.sleep(1.0)  # poll the condition (the port's TIME-WAIT sockets expiring)
