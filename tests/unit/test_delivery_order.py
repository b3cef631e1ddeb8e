"""The ordering rules of ``bridge.delivery``, against a small fake of the clients.

The chaos suite checks the whole process against a real broker; these check the rules one by one,
with every acknowledgement and commit released by the test. The owner (``Delivery``: ``submit``,
``drain``, its rebalance listener):

- batches are committed in the order they were submitted, whatever order their acks come in;
- records of a partition this replica no longer owns are neither published nor committed, and a
  revocation first finishes and commits the batches in flight;
- ``drain`` finishes the work in flight: it returns once every batch is committed.

The at-least-once strategy (``AtLeastOnce``: ``start``, ``finish``, ``settle``), step by step:

- a batch's offsets are committed only after every one of its outputs was acknowledged;
- commits happen one at a time, in batch order, whatever order the acknowledgements come in;
- dedupe keys enter the duplicate window only once their batch is committed, and meanwhile an
  overlapping batch does not publish them again;
- a commit the group rejects (the partitions were revoked) leaves the batch to the new owner:
  nothing is learnt, nothing is raised;
- ``settle`` (the drain) waits for the commit in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition
from aiokafka import errors as kerr

from bridge.config import load_config
from bridge.core import Publish
from bridge.dedupe import Deduplicator
from bridge.delivery import Batch, Delivery, InFlight

RAW = TopicPartition("canvas.raw", 0)


class FakeBatch:
    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes | None]] = []

    def append(self, *, key: bytes | None, value: bytes | None, timestamp: int | None,
               headers: list[tuple[str, bytes]]) -> object:
        self.records.append((key, value))
        return object()


class FakeCluster:
    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1, 2}


class FakeClient:
    cluster = FakeCluster()

    async def set_topics(self, topics: Any) -> None:
        return None


class FakeProducer:
    """Sends nothing: each ``send_batch`` returns a future the test resolves (the broker's ack)."""

    def __init__(self) -> None:
        self.client = FakeClient()
        self.sent: list[tuple[str, list[tuple[bytes | None, bytes | None]], asyncio.Future[Any]]] = []

    def create_batch(self) -> FakeBatch:
        return FakeBatch()

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append((topic, batch.records, future))
        return future

    def ack(self, values: set[bytes]) -> None:
        """Acknowledge every produce batch holding one of these values."""
        for _, records, future in self.sent:
            if not future.done() and any(v in values for _, v in records):
                future.set_result(None)


class FakeConsumer:
    """Records each commit; a commit waits for the test's release, and may be refused."""

    def __init__(self) -> None:
        self.started: list[dict[TopicPartition, int]] = []
        self.done: list[dict[TopicPartition, int]] = []
        self.release: dict[int, asyncio.Event] = {}
        self.refuse: set[int] = set()  # offsets whose commit the group rejects

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.started.append(offsets)
        offset = offsets[RAW]
        await self.release.setdefault(offset, asyncio.Event()).wait()
        if offset in self.refuse:
            raise kerr.CommitFailedError("the group rebalanced")
        self.done.append(offsets)

    def let(self, offset: int) -> None:
        self.release.setdefault(offset, asyncio.Event()).set()


def publish(n: int, key: str) -> Publish:
    # A topic per record: each is a produce batch of its own, acknowledged on its own.
    return Publish(topic=f"canvas.t{n}", key=b"k", value=f"v{n}".encode(), headers=[],
                   timestamp_ms=int(time.time() * 1000), event_name="grade_change", dedupe_key=key)


def batch(first_offset: int, keys: list[str]) -> Batch:
    b = Batch(started=time.perf_counter())
    for i, key in enumerate(keys):
        b.outputs.append((RAW, publish(first_offset + i, key)))
    b.offsets[RAW] = first_offset + len(keys)
    b.consumed = len(keys)
    return b


class FakeConsumer2(FakeConsumer):
    """FakeConsumer with an assignment (the owner keeps only the records of owned partitions)."""

    def __init__(self) -> None:
        super().__init__()
        self.owned: set[TopicPartition] = {RAW}

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)


def build(records: dict[TopicPartition, list[Any]]) -> Batch:
    """The core's part, faked: each raw record (offset, dedupe key) is one typed record."""
    b = Batch(started=time.perf_counter())
    for tp, msgs in records.items():
        b.outputs.extend((tp, publish(m.offset, m.value)) for m in msgs)
        b.offsets[tp] = msgs[-1].offset + 1
        b.consumed += len(msgs)
    return b


def fetched(first_offset: int, keys: list[str], tp: TopicPartition = RAW) -> dict[TopicPartition, list[Any]]:
    return {tp: [SimpleNamespace(offset=first_offset + i, value=key) for i, key in enumerate(keys)]}


def make() -> tuple[Any, FakeProducer, FakeConsumer2, Deduplicator]:
    """The at-least-once strategy of a ``Delivery`` over the fakes (the tests of its steps)."""
    delivery, producer, consumer, dedupe = make_owner()
    return delivery.guarantee, producer, consumer, dedupe


def make_owner() -> tuple[Delivery, FakeProducer, FakeConsumer2, Deduplicator]:
    config = load_config(env={"BRIDGE_DELIVERY_RETRY_BACKOFF_INITIAL_S": "0.01"})
    producer, consumer = FakeProducer(), FakeConsumer2()
    clients = SimpleNamespace(consumer=consumer, producer=producer, partitions=None)
    dedupe = Deduplicator(True, 1000, 3600)
    delivery = Delivery(config, clients, dedupe, build, should_stop=lambda: False)  # type: ignore[arg-type]
    return delivery, producer, consumer, dedupe


def seen(dedupe: Deduplicator, key: str) -> bool:
    return dedupe.window(RAW.topic, RAW.partition).seen(key, time.monotonic())


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never: {what}")


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 10))


def test_a_batch_is_committed_only_after_every_output_is_acknowledged() -> None:
    async def main() -> None:
        delivery, producer, consumer, _ = make()
        a: InFlight = await delivery.start(batch(0, ["a0", "a1", "a2"]))
        finishing = asyncio.ensure_future(delivery.finish(a))
        producer.ack({b"v0", b"v1"})
        await asyncio.sleep(0.05)
        assert consumer.started == [] and not finishing.done(), "committed before the last ack"
        producer.ack({b"v2"})
        await finishing
        await until(lambda: consumer.started == [{RAW: 3}], "the commit of offset 3")
        consumer.let(3)
        await delivery.settle()
        assert consumer.done == [{RAW: 3}]
    run(main)


def test_commits_go_one_at_a_time_in_batch_order_whatever_order_the_acks_come_in() -> None:
    async def main() -> None:
        delivery, producer, consumer, _ = make()
        a = await delivery.start(batch(0, ["a0", "a1"]))
        b = await delivery.start(batch(2, ["b0", "b1"]))
        producer.ack({b"v2", b"v3"})  # the second batch is acknowledged first
        await asyncio.sleep(0.02)
        assert consumer.started == []
        producer.ack({b"v0", b"v1"})
        await delivery.finish(a)
        finishing_b = asyncio.ensure_future(delivery.finish(b))
        await until(lambda: consumer.started == [{RAW: 2}], "the first batch's commit")
        await asyncio.sleep(0.05)
        assert consumer.started == [{RAW: 2}], "the second commit started before the first ended"
        assert not finishing_b.done()
        consumer.let(2)
        await finishing_b
        await until(lambda: len(consumer.started) == 2, "the second batch's commit")
        consumer.let(4)
        await delivery.settle()
        assert consumer.done == [{RAW: 2}, {RAW: 4}]
    run(main)


def test_keys_enter_the_window_only_after_the_commit_and_are_not_published_twice_meanwhile() -> None:
    async def main() -> None:
        delivery, producer, consumer, dedupe = make()
        a = await delivery.start(batch(0, ["k0", "k1"]))
        producer.ack({b"v0", b"v1"})
        await delivery.finish(a)
        assert not seen(dedupe, "k0"), "learnt before its batch was committed"
        # An overlapping batch with a copy of k1 while the first commit is in flight: not sent again.
        b = await delivery.start(batch(2, ["k1", "k2"]))
        assert [out.dedupe_key for out in b.sends] == ["k2"]  # type: ignore[union-attr]
        assert b.suppressed["grade_change"] == 1
        consumer.let(2)
        await delivery.settle()
        assert seen(dedupe, "k0") and seen(dedupe, "k1")
        assert not seen(dedupe, "k2"), "learnt before its own batch was committed"
        producer.ack({b"v3"})
        consumer.let(4)
        await delivery.finish(b)
        await delivery.settle()
        assert seen(dedupe, "k2")
    run(main)


def test_a_commit_the_group_rejects_leaves_the_batch_to_the_new_owner() -> None:
    async def main() -> None:
        delivery, producer, consumer, dedupe = make()
        consumer.refuse.add(2)
        a = await delivery.start(batch(0, ["r0", "r1"]))
        producer.ack({b"v0", b"v1"})
        await delivery.finish(a)
        consumer.let(2)
        await delivery.settle()  # the rejection is not an error of this replica
        assert consumer.done == []
        assert not seen(dedupe, "r0") and not seen(dedupe, "r1"), "learnt from a batch that was not committed"
        # The keys are no longer in flight either: the partition's next owner (or this replica,
        # given the partition again) publishes them.
        again = await delivery.start(batch(0, ["r0", "r1"]))
        assert [out.dedupe_key for out in again.sends] == ["r0", "r1"]  # type: ignore[union-attr]
    run(main)


def test_settle_waits_for_the_commit_in_flight() -> None:
    async def main() -> None:
        delivery, producer, consumer, _ = make()
        a = await delivery.start(batch(0, ["s0"]))
        producer.ack({b"v0"})
        await delivery.finish(a)
        assert not delivery.commit_done()
        settling = asyncio.ensure_future(delivery.settle())
        await asyncio.sleep(0.05)
        assert not settling.done()
        consumer.let(1)
        await settling
        assert delivery.commit_done() and consumer.done == [{RAW: 1}]
    run(main)


def test_a_failed_ack_resends_the_whole_batch_and_commits_once() -> None:
    async def main() -> None:
        delivery, producer, consumer, _ = make()
        a = await delivery.start(batch(0, ["f0", "f1"]))
        first = [future for _, _, future in producer.sent]
        finishing = asyncio.ensure_future(delivery.finish(a))
        first[0].set_exception(kerr.RequestTimedOutError())  # a retriable failure
        for future in first[1:]:
            future.set_result(None)
        await until(lambda: len(producer.sent) > len(first), "the batch sent again")
        producer.ack({b"v0", b"v1"})
        await finishing
        consumer.let(2)
        await delivery.settle()
        assert consumer.done == [{RAW: 2}]
        values = sorted(v for _, records, _ in producer.sent[len(first):] for _, v in records)
        assert values == [b"v0", b"v1"], "the retry did not resend every output of the batch"
    run(main)


# -- the owner: submit, drain, revocation ---------------------------------------------------------


def test_submitted_batches_are_committed_in_order_and_drain_waits_for_them() -> None:
    async def main() -> None:
        delivery, producer, consumer, dedupe = make_owner()
        await delivery.submit(fetched(0, ["a0", "a1"]))  # sent; its acks awaited at the next submit
        # The second batch is sent, then the first finished (max_in_flight_batches = 2).
        submitting = asyncio.ensure_future(delivery.submit(fetched(2, ["b0", "b1"])))
        await until(lambda: len(producer.sent) == 4, "the second batch sent")
        producer.ack({b"v2", b"v3"})  # the second batch's acks first
        await asyncio.sleep(0.05)
        assert consumer.started == [] and not submitting.done(), "committed before the first batch's acks"
        producer.ack({b"v0", b"v1"})
        # Both acknowledged: the first is committed, then (the second being acknowledged too) the second.
        await until(lambda: consumer.started == [{RAW: 2}], "the first batch's commit")
        await asyncio.sleep(0.02)
        assert consumer.started == [{RAW: 2}], "the second commit started before the first ended"
        consumer.let(2)
        await submitting
        await until(lambda: len(consumer.started) == 2, "the second batch's commit")
        draining = asyncio.ensure_future(delivery.drain())
        await asyncio.sleep(0.02)
        assert not draining.done(), "drain returned with a commit in flight"
        consumer.let(4)
        await draining
        assert consumer.done == [{RAW: 2}, {RAW: 4}]
        assert seen(dedupe, "a0") and seen(dedupe, "b1")
    run(main)


def test_records_of_a_partition_no_longer_owned_are_neither_published_nor_committed() -> None:
    async def main() -> None:
        delivery, producer, consumer, _ = make_owner()
        other = TopicPartition("canvas.raw", 1)  # fetched, but revoked before it was handed over
        await delivery.submit({**fetched(0, ["x0"], other), **fetched(0, ["o0"])})
        assert [records for _, records, _ in producer.sent] == [[(b"k", b"v0")]]
        producer.ack({b"v0"})
        consumer.let(1)
        await delivery.drain()
        assert consumer.started == [{RAW: 1}], "an offset of a partition not owned was committed"
        await delivery.submit(fetched(5, ["x5"], other))
        await delivery.drain()
        assert len(producer.sent) == 1 and consumer.started == [{RAW: 1}]
    run(main)


def test_a_revocation_commits_the_batches_in_flight_first_then_drops_the_partition() -> None:
    async def main() -> None:
        delivery, producer, consumer, dedupe = make_owner()
        told: list[list[TopicPartition]] = []
        listener = delivery.listener(on_assigned=lambda tps: None, on_revoked=told.append)
        await delivery.submit(fetched(0, ["v0", "v1"]))
        revoking = asyncio.ensure_future(listener.on_partitions_revoked([RAW]))
        await asyncio.sleep(0.05)
        assert not revoking.done() and told == [], "the revocation went on before the batch was committed"
        producer.ack({b"v0", b"v1"})
        await until(lambda: consumer.started == [{RAW: 2}], "the commit of the batch in flight")
        consumer.let(2)
        await revoking
        assert consumer.done == [{RAW: 2}] and told == [[RAW]]
        assert not seen(dedupe, "v0"), "the revoked partition's window was kept"
        consumer.owned = set()  # the group gave it to another replica
        await delivery.submit(fetched(2, ["v2"]))
        await delivery.drain()
        assert consumer.started == [{RAW: 2}] and len(producer.sent) == 2, "a revoked partition's batch was handled"
    run(main)
