"""A consumed batch on its way to the broker, the duplicate window it is selected against, and
what is counted once it is committed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition

from bridge import metrics
from bridge.core import DeadLetter, Output, Publish, Source, now_ms
from bridge.dedupe import Deduplicator
from bridge.refusals import count_refusals

if TYPE_CHECKING:
    from bridge.refusals import Screen
    from bridge.transactions import PartitionProducer

log = logging.getLogger("bridge.delivery")


@dataclass(slots=True)
class Batch:
    """What one ``getmany`` returned, turned into outputs, with the offsets to commit."""

    outputs: list[tuple[TopicPartition, Output]] = field(default_factory=list)
    inputs: list[Any] = field(default_factory=list)  # the raw record of each output (its dead letter's bytes)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    consumed: int = 0
    core_seconds: float = 0.0
    started: float = 0.0  # perf_counter when the batch was taken from the consumer
    markers: set[tuple[TopicPartition, str]] = field(default_factory=set)  # (partition, dedupe key) sent
    # exactly-once: the producer each partition's records were accepted under (bound to it)
    owners: dict[TopicPartition, PartitionProducer] = field(default_factory=dict)

    def by_partition(self) -> dict[TopicPartition, Batch]:
        """One batch per raw partition, outputs in input order (exactly-once: a transaction each)."""
        parts = {tp: Batch(offsets={tp: offset}, started=self.started) for tp, offset in self.offsets.items()}
        for i, (tp, out) in enumerate(self.outputs):
            part = parts[tp]
            part.outputs.append((tp, out))
            if self.inputs:
                part.inputs.append(self.inputs[i])
        return parts


def to_batch(process: Callable[[bytes, Source, int], Iterable[Output]],
             records: dict[TopicPartition, list[Any]]) -> Batch:
    """Run every record of a fetch through the core (``process``), keeping input order within each partition."""
    started = time.perf_counter()
    batch = Batch(started=started)
    now = now_ms()
    outputs, inputs = batch.outputs, batch.inputs
    for tp, msgs in records.items():
        topic, partition = tp.topic, tp.partition
        for m in msgs:
            for out in process(m.value, Source(topic, partition, m.offset, m.key), now):
                outputs.append((tp, out))
                inputs.append(m)  # a refused typed record is dead-lettered with these bytes
        batch.offsets[tp] = msgs[-1].offset + 1
        batch.consumed += len(msgs)
    batch.core_seconds = time.perf_counter() - started
    metrics.EVENTS_CONSUMED.inc(batch.consumed)
    metrics.BATCH_SIZE.observe(batch.consumed)
    metrics.EVENT_PROCESSING.observe(batch.core_seconds / batch.consumed)
    return batch


@dataclass(slots=True)
class PartitionShare:
    """Exactly-once: one raw partition's share of a batch, bound to the producer it is committed with."""

    owner: PartitionProducer
    batch: Batch
    sends: list[Output]
    suppressed: Counter[str]


@dataclass(slots=True)
class InFlight:
    """A batch on its way: sent (at-least-once) or split into shares (exactly-once), not committed yet."""

    batch: Batch
    sends: list[Output]
    suppressed: Counter[str]
    futures: list[asyncio.Future[Any]] | None = None
    groups: list[list[Output]] = field(default_factory=list)  # the outputs of each future
    shares: list[PartitionShare] = field(default_factory=list)  # exactly-once

    def acknowledged(self) -> bool:
        return self.futures is not None and all(f.done() for f in self.futures)


@dataclass(slots=True)
class Status:
    """Whether publishing works, for /readyz; shared by the delivery and its guarantee."""

    publishing_ok: bool = True
    last_error: str = ""

    def failed(self, exc: BaseException, outputs: int, backoff: float) -> None:
        self.publishing_ok = False
        self.last_error = f"{type(exc).__name__}: {exc}"
        metrics.PUBLISH_RETRIES.inc()
        log.warning("publishing a batch of %d outputs failed (%s); retrying in %.1fs",
                    outputs, self.last_error, backoff)


class Window:
    """Duplicate suppression: the deduplicator's windows, plus the keys sent but not committed yet.

    Keys enter the windows only once their batch is committed (``committed``); meanwhile they are
    "unconfirmed", so that an overlapping batch does not publish them again, until the batch is
    committed or abandoned (``confirmed``).
    """

    def __init__(self, dedupe: Deduplicator) -> None:
        self.dedupe = dedupe
        self._unconfirmed: dict[tuple[TopicPartition, str], int] = {}

    def select(self, batch: Batch) -> tuple[list[Output], Counter[str]]:
        """The outputs to send: duplicates dropped, within the window and within the batch."""
        suppressed: Counter[str] = Counter()
        if not self.dedupe.enabled:
            return [out for _, out in batch.outputs], suppressed
        now = time.monotonic()
        sends: list[Output] = []
        in_batch: set[tuple[TopicPartition, str]] = set()
        windows: dict[TopicPartition, Any] = {}
        unconfirmed = self._unconfirmed
        for tp, out in batch.outputs:
            if isinstance(out, Publish):
                w = windows.get(tp)
                if w is None:
                    w = windows[tp] = self.dedupe.window(tp.topic, tp.partition)
                marker = (tp, out.dedupe_key)
                if marker in in_batch or marker in unconfirmed or w.seen(out.dedupe_key, now):
                    suppressed[out.event_name] += 1
                    continue
                in_batch.add(marker)
            sends.append(out)
        for marker in in_batch:
            unconfirmed[marker] = unconfirmed.get(marker, 0) + 1
        batch.markers = in_batch
        return sends, suppressed

    def forget(self, tps: list[TopicPartition]) -> None:
        """The partitions were revoked: their windows go (their next owner keeps its own)."""
        self.dedupe.forget((tp.topic, tp.partition) for tp in tps)

    def confirmed(self, batch: Batch) -> None:
        """The batch is committed or abandoned: its keys are no longer in flight."""
        unconfirmed = self._unconfirmed
        for marker in batch.markers:
            n = unconfirmed.get(marker, 0) - 1
            if n > 0:
                unconfirmed[marker] = n
            else:
                unconfirmed.pop(marker, None)

    def committed(self, batch: Batch, sends: list[Output], suppressed: Counter[str], screen: Screen) -> None:
        """The batch is committed: its keys enter the windows, and its outputs are counted.
        (``confirmed`` too, as for every batch committed or not.)"""
        if self.dedupe.enabled:
            now = time.monotonic()
            keys: dict[TopicPartition, list[str]] = {}
            for tp, out in batch.outputs:
                if isinstance(out, Publish):
                    keys.setdefault(tp, []).append(out.dedupe_key)
            for tp, ks in keys.items():
                self.dedupe.window(tp.topic, tp.partition).remember(ks, now)
        count_published(sends, suppressed, screen)


def count_published(sends: list[Output], suppressed: Counter[str], screen: Screen) -> None:
    """The metrics of a committed batch's outputs, once per batch (never per event)."""
    published: Counter[tuple[str, str]] = Counter()
    dead: Counter[str] = Counter()
    per_name = {metric: Counter[str]() for metric in (metrics.UNKNOWN_FIELDS, metrics.MALFORMED_FIELDS,
                                                      metrics.MISSING_FIELDS, metrics.MISFILED_EVENTS)}
    unknown, malformed, missing, misfiled = per_name.values()
    generic: Counter[str] = Counter()
    now = time.time()
    step = max(1, len(sends) // 64)
    for i, out in enumerate(sends):
        if isinstance(out, DeadLetter):
            dead[out.reason] += 1
            continue
        fmt = out.format
        name = metrics.GENERIC if out.generic else out.event_name
        published[(name, fmt)] += 1
        if out.generic:
            generic[fmt] += 1
        if out.unknown_fields:
            unknown[name] += len(out.unknown_fields)
        if out.malformed_fields:
            malformed[name] += len(out.malformed_fields)
        if out.missing_fields:
            missing[name] += len(out.missing_fields)
        if out.declared_event_name:
            misfiled[name] += 1
        if i % step == 0:
            metrics.EVENT_FRESHNESS.observe(max(0.0, now - out.timestamp_ms / 1000))
    for (name, fmt), n in published.items():
        metrics.EVENTS_PUBLISHED.labels(name, fmt).inc(n)
    if dead:
        for (reason, topic), n in count_refusals(sends).items():
            metrics.REFUSED_RECORDS.labels(reason, screen.label(topic)).inc(n)
    per_name[metrics.DUPLICATES_SUPPRESSED] = suppressed
    for metric, counts in ((metrics.DEAD_LETTERS, dead), (metrics.GENERIC_EVENTS, generic), *per_name.items()):
        for label, n in counts.items():
            metric.labels(label).inc(n)
    if sends:
        metrics.LAST_PUBLISH.set(now)
