"""The ordering rules of exactly-once's per-partition producers (bridge/transactions.py), without a broker.

The consumer and producers here are small fakes that record what is called in which order; the
proof that the design fences a real zombie is tests/chaos/test_frozen_replica.py (real broker,
SIGSTOP). These pin the rules that proof relies on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka import errors as kerr

from bridge import metrics, transactions
from bridge.config import Config, load_config
from bridge.core import Core, Source
from bridge.dedupe import Deduplicator
from bridge.delivery import Batch, Delivery
from bridge.delivery.exactly_once import ExactlyOnce
from bridge.transactions import PartitionProducers
from tests.unit._helpers import CANVAS_LINES

TP0 = TopicPartition("canvas.raw", 0)
TP1 = TopicPartition("canvas.raw", 1)


class FakeConsumer:
    """What PartitionProducers asks of the consumer, recorded in ``events``."""

    def __init__(self, events: list[tuple[str, Any]], assignment: set[TopicPartition],
                 committed: dict[TopicPartition, int]) -> None:
        self.events = events
        self._assignment = assignment
        self._committed = committed
        self.paused: list[TopicPartition] = []
        self.rejoins = 0
        self._coordinator = SimpleNamespace(request_rejoin=self._rejoin)

    def _rejoin(self) -> None:
        self.rejoins += 1

    def assignment(self) -> set[TopicPartition]:
        return set(self._assignment)

    async def committed(self, tp: TopicPartition) -> int | None:
        self.events.append(("committed", tp))
        return self._committed.get(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.events.append(("seek", (tp, offset)))

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.extend(tps)


class FakeProducer:
    """A transactional producer that records its calls; ``fail`` is raised once by begin_transaction."""

    def __init__(self, events: list[tuple[str, Any]], transactional_id: str) -> None:
        self.events = events
        self.transactional_id = transactional_id
        self.fail: BaseException | None = None
        self.fail_abort: BaseException | None = None
        self._sender = SimpleNamespace(sender_task=None)
        self.client = SimpleNamespace(cluster=SimpleNamespace(partitions_for_topic=lambda topic: {0}),
                                      set_topics=self._set_topics)

    def _set_topics(self, topics: set[str]) -> asyncio.Future[None]:
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def start(self) -> None:
        self.events.append(("init", self.transactional_id))  # start() ends with InitProducerId: the fence

    async def stop(self) -> None:
        self.events.append(("stop", self.transactional_id))

    async def begin_transaction(self) -> None:
        self.events.append(("begin", self.transactional_id))
        if self.fail is not None:
            fail, self.fail = self.fail, None  # once
            raise fail

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def create_batch(self) -> Any:
        return SimpleNamespace(append=lambda **record: True)

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[None]:
        self.events.append(("send", (self.transactional_id, topic)))
        acknowledged = asyncio.get_running_loop().create_future()
        acknowledged.set_result(None)
        return acknowledged

    async def abort_transaction(self) -> None:
        self.events.append(("abort", self.transactional_id))
        if self.fail_abort is not None:
            raise self.fail_abort

    async def send_offsets_to_transaction(self, offsets: dict[TopicPartition, int], group: str) -> None:
        self.events.append(("offsets", (self.transactional_id, dict(offsets))))

    async def commit_transaction(self) -> None:
        self.events.append(("commit", self.transactional_id))


@dataclass
class Rig:
    config: Config
    events: list[tuple[str, Any]]
    consumer: FakeConsumer
    producers: list[FakeProducer]
    partitions: PartitionProducers
    delivery: ExactlyOnce  # the strategy of a Delivery


@pytest.fixture
def rig(monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    config = load_config(None, env={"BRIDGE_DELIVERY_GUARANTEE": "exactly-once", "BRIDGE_GROUP_ID": "g"})
    events: list[tuple[str, Any]] = []
    consumer = FakeConsumer(events, {TP0, TP1}, {TP0: 100, TP1: 200})
    producers: list[FakeProducer] = []

    def make_producer(_config: Config, transactional_id: str | None = None) -> FakeProducer:
        assert transactional_id is not None
        producer = FakeProducer(events, transactional_id)
        producers.append(producer)
        return producer

    monkeypatch.setattr(transactions, "make_producer", make_producer)
    partitions = PartitionProducers(config, consumer)  # type: ignore[arg-type]
    clients = SimpleNamespace(consumer=consumer, producer=None, partitions=partitions)
    delivery = Delivery(config, clients, Deduplicator(False, 1, 1.0), lambda records: Batch(),  # type: ignore[arg-type]
                        should_stop=lambda: False)
    assert isinstance(delivery.guarantee, ExactlyOnce)
    yield Rig(config, events, consumer, producers, partitions, delivery.guarantee)


def _records(tp: TopicPartition, first: int, count: int) -> list[Any]:
    """Raw records as aiokafka's getmany returns them (only what the service reads)."""
    return [SimpleNamespace(offset=first + n, value=CANVAS_LINES[n % 20], key=None) for n in range(count)]


def _batch(records: dict[TopicPartition, list[Any]], owners: dict[TopicPartition, Any]) -> Batch:
    core = Core.from_config(load_config(None, env={}))
    batch = Batch(owners=owners)
    for tp, msgs in records.items():
        for m in msgs:
            outputs = core.process(m.value, Source(tp.topic, tp.partition, m.offset, None), 0)
            batch.outputs.extend((tp, out) for out in outputs)
        batch.offsets[tp] = msgs[-1].offset + 1
    return batch


def test_transactional_id_names_group_topic_and_partition(rig: Rig) -> None:
    assert transactions.transactional_id(rig.config, TP1) == "canvas-bridge-g:canvas.raw:1"


def test_producer_fences_before_the_committed_offset_is_read(rig: Rig) -> None:
    rig.partitions.assigned([TP0])
    asyncio.run(rig.partitions.ensure())
    assert rig.events == [("init", "canvas-bridge-g:canvas.raw:0"), ("committed", TP0), ("seek", (TP0, 100))]


def test_only_partitions_the_listener_assigned_are_opened(rig: Rig) -> None:
    # consumer.assignment() still lists TP0 and TP1 while a rebalance runs; the listener said TP1 only.
    rig.partitions.assigned([TP1])
    asyncio.run(rig.partitions.ensure())
    assert [tid for kind, tid in rig.events if kind == "init"] == ["canvas-bridge-g:canvas.raw:1"]
    assert len(rig.partitions) == 1


def test_accept_binds_records_and_drops_what_it_cannot(rig: Rig) -> None:
    rig.partitions.assigned([TP0])
    asyncio.run(rig.partitions.ensure())
    rig.events.clear()
    stale = {TP0: _records(TP0, 90, 5), TP1: _records(TP1, 200, 5)}  # TP0 from before the fence; TP1 not opened
    assert rig.partitions.accept(stale) == {}
    assert stale == {}
    assert rig.events == [("seek", (TP0, 100))]  # fetched again from the producer's position
    fresh = {TP0: _records(TP0, 100, 5)}
    owners = rig.partitions.accept(fresh)
    assert list(owners) == [TP0] and owners[TP0].position == 105


def test_a_batch_fetched_before_a_rebalance_is_not_committed_by_the_next_producer(rig: Rig) -> None:
    rig.partitions.assigned([TP0])
    asyncio.run(rig.partitions.ensure())
    records = {TP0: _records(TP0, 100, 5)}
    batch = _batch(records, rig.partitions.accept(records))
    # TP0 is revoked and assigned back to this replica before the batch is committed.
    asyncio.run(rig.partitions.revoked([TP0]))
    rig.partitions.assigned([TP0])
    asyncio.run(rig.partitions.ensure())
    old, new = rig.producers
    rig.events.clear()

    async def deliver() -> None:
        await rig.delivery.finish(await rig.delivery.start(batch))
    asyncio.run(deliver())
    assert rig.events == [], "the stale batch was committed with a producer"
    assert not batch.owners[TP0].live and batch.owners[TP0].producer is old and new is not old


def test_a_fenced_share_is_abandoned_and_the_replica_rejoins(rig: Rig) -> None:
    rig.partitions.assigned([TP0, TP1])
    asyncio.run(rig.partitions.ensure())
    by_tid = {p.transactional_id: p for p in rig.producers}
    by_tid["canvas-bridge-g:canvas.raw:0"].fail = kerr.ProducerFenced()
    records = {TP0: _records(TP0, 100, 3), TP1: _records(TP1, 200, 3)}
    batch = _batch(records, rig.partitions.accept(records))
    fenced_before = metrics.PRODUCERS_FENCED._value.get()

    async def deliver() -> None:
        await rig.delivery.finish(await rig.delivery.start(batch))
    asyncio.run(deliver())  # no exception: the replica goes on
    kinds = [(kind, arg if isinstance(arg, str) else arg[0]) for kind, arg in rig.events]
    assert ("commit", "canvas-bridge-g:canvas.raw:1") in kinds  # the other partition's share committed
    assert ("commit", "canvas-bridge-g:canvas.raw:0") not in kinds
    assert ("stop", "canvas-bridge-g:canvas.raw:0") in kinds
    assert rig.consumer.paused == [TP0] and rig.consumer.rejoins == 1
    assert metrics.PRODUCERS_FENCED._value.get() == fenced_before + 1
    # Not reopened (which would fence the new owner) until the group assigns it again.
    rig.events.clear()
    asyncio.run(rig.partitions.ensure())
    assert rig.events == []
    rig.partitions.assigned([TP0])
    asyncio.run(rig.partitions.ensure())
    assert rig.events[0] == ("init", "canvas-bridge-g:canvas.raw:0")


def test_a_dead_sender_is_classified_by_its_cause(rig: Rig) -> None:
    """aiokafka's sender dies on a fenced request; the next call fails with its state machine's error."""
    rig.partitions.assigned([TP0])
    asyncio.run(rig.partitions.ensure())
    producer = rig.producers[0]
    producer.fail = AssertionError("Invalid state transition FATAL_ERROR -> IN_TRANSACTION")

    async def deliver() -> None:
        loop = asyncio.get_running_loop()
        dead = loop.create_future()
        dead.set_exception(kerr.ProducerFenced())
        producer._sender = SimpleNamespace(sender_task=dead)
        records = {TP0: _records(TP0, 100, 2)}
        batch = _batch(records, rig.partitions.accept(records))
        await rig.delivery.finish(await rig.delivery.start(batch))
    asyncio.run(deliver())
    assert rig.consumer.rejoins == 1 and rig.consumer.paused == [TP0]


def _fail_then_abort(rig: Rig, abort_error: BaseException, sender_died_of: BaseException | None) -> None:
    """A transient failure in the transaction, then its abort fails too."""
    rig.partitions.assigned([TP0])
    asyncio.run(rig.partitions.ensure())
    producer = rig.producers[0]
    producer.fail = kerr.KafkaTimeoutError()
    producer.fail_abort = abort_error

    async def deliver() -> None:
        if sender_died_of is not None:
            dead = asyncio.get_running_loop().create_future()
            dead.set_exception(sender_died_of)
            producer._sender = SimpleNamespace(sender_task=dead)
        records = {TP0: _records(TP0, 100, 2)}
        batch = _batch(records, rig.partitions.accept(records))
        await rig.delivery.finish(await rig.delivery.start(batch))
    asyncio.run(deliver())


def test_an_abort_that_fails_after_a_fence_rejoins(rig: Rig) -> None:
    _fail_then_abort(rig, AssertionError("Invalid state transition"), kerr.ProducerFenced())
    assert rig.consumer.rejoins == 1 and rig.consumer.paused == [TP0]


def test_an_abort_that_fails_otherwise_replaces_the_producer_from_the_committed_offset(rig: Rig) -> None:
    _fail_then_abort(rig, kerr.KafkaTimeoutError(), None)
    assert rig.consumer.rejoins == 0 and rig.consumer.paused == []
    assert len(rig.partitions) == 0  # closed; the batch was abandoned, not retried with it
    rig.events.clear()
    asyncio.run(rig.partitions.ensure())  # reopened at once: fence, then read, then seek
    assert rig.events == [("init", "canvas-bridge-g:canvas.raw:0"), ("committed", TP0), ("seek", (TP0, 100))]


def test_a_transient_failure_aborts_and_retries_with_the_same_producer(rig: Rig) -> None:
    rig.partitions.assigned([TP0])
    asyncio.run(rig.partitions.ensure())
    rig.producers[0].fail = kerr.KafkaTimeoutError()
    rig.events.clear()
    records = {TP0: _records(TP0, 100, 2)}
    batch = _batch(records, rig.partitions.accept(records))

    async def deliver() -> None:
        await rig.delivery.finish(await rig.delivery.start(batch))
    asyncio.run(deliver())
    kinds = [kind for kind, _ in rig.events if kind != "send"]
    assert kinds == ["begin", "abort", "begin", "offsets", "commit"]
    assert ("offsets", ("canvas-bridge-g:canvas.raw:0", {TP0: 102})) in rig.events
    assert len(rig.producers) == 1 and rig.consumer.rejoins == 0
