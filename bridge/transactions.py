"""Exactly-once: one transactional producer per assigned raw partition, so that zombies are fenced.

A replica that froze (a long GC pause, a VM stall, a network partition) past its session timeout
has lost its partitions, but it may wake up holding a batch and commit it. aiokafka has no
KIP-447: ``send_offsets_to_transaction`` carries the group id but neither the generation nor the
member id, so the group coordinator cannot refuse such a zombie's offsets. The fence is the
transactional id instead, as in Kafka Streams before KIP-447: it names the raw partition
(``bridge.kafka.transactional_id``), and whoever owns the partition next starts a producer with
the same id. That ``InitProducerId`` bumps the producer epoch, aborts or completes whatever
transaction the previous owner left open, and makes every later request of the previous owner's
producer fail (``ProducerFenced``).

The rules, each needed:

1. **Fence, then read.** A partition's producer is started (the fence) *before* the group's
   committed offset is read and the consumer is sought to it. aiokafka reads the committed offsets
   before the rebalance listener runs, i.e. before any fence: a batch the previous owner committed
   in between would be processed twice.
2. **Owners are opened between fetches.** The main loop opens the producers of newly assigned
   partitions before its next ``getmany``; records of a partition without an open producer are
   dropped (they were fetched from a position read before the fence), and the seek of rule 1
   fetches them again.
3. **A batch is bound to its producers.** The records of a partition are accepted under the
   ``PartitionProducer`` instance open at that moment and committed with that instance or not at
   all. One closed or replaced since (revoked, fenced, broken) abandons its part of the batch:
   whoever owns the partition then starts again from the committed offset. A batch fetched
   before a rebalance is therefore never committed with a producer created after it.
4. **Fenced: give up the partition, rejoin.** A fenced producer is closed, its partition paused,
   and the consumer rejoins its group; the next assignment opens fresh producers (rule 1). The
   replica does not exit.
5. **Revocation commits first.** The service finishes the in-flight batch while its producers
   are still valid, then closes the producers of the revoked partitions.

Correctness rests on rule 1 and 3 alone: per partition, the transactions of one producer instance
continue contiguously from the offset read after its fence, and any older instance can no longer
commit. Group membership only decides who does the work.

Cost: one producer per assigned partition, each with its own connections (one to each broker it
sends to, plus one to its transaction coordinator), started at every assignment (aiokafka's
rebalances are eager: every partition is revoked and assigned again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import errors as kerr

from bridge import metrics
from bridge.config import Config
from bridge.errors import FATAL, Backoff, Fatal
from bridge.kafka import make_producer, request_rejoin, stop_quietly, transactional_id

log = logging.getLogger("bridge.transactions")

#: Errors that mean another producer instance with the partition's transactional id took over
#: (or the coordinator aborted a transaction that outlived delivery.transaction_timeout_ms).
FENCED: tuple[type[BaseException], ...] = (kerr.ProducerFenced, kerr.InvalidProducerEpoch)

class OpenFailed(Fatal):
    """A partition's producer cannot be opened, and retrying will not help (e.g. not authorized)."""


@dataclass(eq=False, slots=True)
class PartitionProducer:
    """The transactional producer of one raw partition, as long as this replica may use it."""

    tp: TopicPartition
    producer: AIOKafkaProducer
    position: int  # the next offset to accept: its range starts at the committed offset read after the fence
    live: bool = True  # False once closed, fenced or replaced: batches bound to it are abandoned
    sought_back: bool = False


class PartitionProducers:
    """The open ``PartitionProducer`` of each assigned raw partition (exactly-once only)."""

    def __init__(self, config: Config, consumer: AIOKafkaConsumer) -> None:
        self._config = config
        self._consumer = consumer
        self._assigned: set[TopicPartition] = set()  # by the group, as the rebalance listener saw it
        self._open: dict[TopicPartition, PartitionProducer] = {}
        self._fenced: set[TopicPartition] = set()  # not reopened before the next assignment
        self._retry_at: dict[TopicPartition, float] = {}
        self._backoff: dict[TopicPartition, Backoff] = {}
        self._timeout_s = config.kafka.request_timeout_ms / 1000

    def __len__(self) -> int:
        return len(self._open)

    # -- the group's decisions ------------------------------------------------------------------

    def assigned(self, tps: Iterable[TopicPartition]) -> None:
        """New assignment: its partitions may be opened again, even those fenced before."""
        tps = set(tps)
        self._assigned |= tps
        for tp in tps:
            self._fenced.discard(tp)
            self._retry_at.pop(tp, None)
            self._backoff.pop(tp, None)

    async def revoked(self, tps: Iterable[TopicPartition]) -> None:
        """Rule 5: close the producers of revoked partitions (their batches were committed first)."""
        tps = set(tps)
        self._assigned -= tps
        owners = [owner for tp in tps if (owner := self._open.get(tp)) is not None]
        for tp in tps:
            self._fenced.discard(tp)
            self._retry_at.pop(tp, None)
        await asyncio.gather(*(self._close(owner) for owner in owners))

    async def close(self) -> None:
        await asyncio.gather(*(self._close(owner) for owner in list(self._open.values())))

    # -- rules 1 and 2: opening, between fetches ------------------------------------------------

    async def ensure(self) -> None:
        """Open a producer for every assigned partition that has none (not fenced, not backing off).

        Called by the main loop before each fetch, under the batch lock (so never while the
        rebalance listener runs). Only partitions the listener reported as assigned are opened:
        ``consumer.assignment()`` still lists the old ones while a rebalance is in progress, and
        opening one of those would fence its new owner. Raises on what retrying cannot fix (e.g.
        no authorization for the transactional id); other failures are retried with backoff.
        """
        now = time.monotonic()
        missing = [tp for tp in self._assigned
                   if tp not in self._open and tp not in self._fenced and self._retry_at.get(tp, 0.0) <= now]
        if not missing:
            return
        results = await asyncio.gather(*(self._open_one(tp) for tp in missing), return_exceptions=True)
        opened, failed = [], []
        for tp, result in zip(missing, results, strict=True):
            if isinstance(result, FATAL):
                raise OpenFailed(f"cannot open the transactional producer of {tp.topic}[{tp.partition}] "
                                 f"(transactional id {transactional_id(self._config, tp)}): "
                                 f"{type(result).__name__}: {result}") from result
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result  # cancellation
                backoff = self._backoff.setdefault(tp, Backoff.of(self._config)).next()
                self._retry_at[tp] = time.monotonic() + backoff
                failed.append((tp, result, backoff))
                continue
            self._backoff.pop(tp, None)
            if result is not None:
                opened.append(f"{tp.topic}[{tp.partition}]@{result.position}")
        metrics.TRANSACTIONAL_PRODUCERS.set(len(self._open))
        if opened:
            log.info("opened %d transactional producers: %s", len(opened), ", ".join(sorted(opened)))
        if failed:  # one line, however many partitions (a broker outage fails them all)
            tp, exc, backoff = failed[0]
            log.warning("cannot open the transactional producers of %d partitions, e.g. %s[%d] (%s: %s); "
                        "retrying in %.1fs", len(failed), tp.topic, tp.partition, type(exc).__name__, exc, backoff)

    async def _open_one(self, tp: TopicPartition) -> PartitionProducer | None:
        producer = make_producer(self._config, transactional_id(self._config, tp))
        try:
            # start() ends with InitProducerId: the fence. Only then is the committed offset final.
            await asyncio.wait_for(producer.start(), self._timeout_s)
            position = await asyncio.wait_for(self._start_offset(tp), self._timeout_s)
        except BaseException:
            await _stop(producer)
            raise
        if tp not in self._assigned or tp not in self._consumer.assignment():  # revoked meanwhile
            await _stop(producer)
            return None
        self._consumer.seek(tp, position)  # drops what was fetched from a position read before the fence
        owner = self._open[tp] = PartitionProducer(tp, producer, position)
        return owner

    async def _start_offset(self, tp: TopicPartition) -> int:
        committed = await self._consumer.committed(tp)  # asks the group coordinator, after the fence
        if committed is not None:
            return int(committed)
        if self._config.kafka.auto_offset_reset == "earliest":
            return int((await self._consumer.beginning_offsets([tp]))[tp])
        return int((await self._consumer.end_offsets([tp]))[tp])

    # -- rule 3: binding ------------------------------------------------------------------------

    def accept(self, records: dict[TopicPartition, list[Any]]) -> dict[TopicPartition, PartitionProducer]:
        """Keep the records that continue an open producer's range, and bind them to it.

        Drops (in place) the records of partitions without an open producer, and any that start
        before the producer's position (fetched before its fence; the partition is sought back).
        """
        owners: dict[TopicPartition, PartitionProducer] = {}
        for tp in list(records):
            msgs = records[tp]
            owner = self._open.get(tp)
            if owner is None:
                del records[tp]
                continue
            if msgs[0].offset < owner.position:
                if not owner.sought_back:
                    log.warning("%s[%d]: dropped %d records from offset %d, before the producer's position %d",
                                tp.topic, tp.partition, len(msgs), msgs[0].offset, owner.position)
                    del records[tp]
                    self._consumer.seek(tp, owner.position)
                    owner.sought_back = True
                    continue
                # Below the position again after seeking there: the consumer reset an offset out of
                # range (kafka.auto_offset_reset), e.g. a recreated topic. Go on from where it is.
                log.warning("%s[%d]: the consumer reset to offset %d, before the committed offset %d",
                            tp.topic, tp.partition, msgs[0].offset, owner.position)
            owner.position = msgs[-1].offset + 1
            owners[tp] = owner
        return owners

    # -- rule 4 and broken producers -------------------------------------------------------------

    async def fenced(self, owner: PartitionProducer, exc: BaseException) -> None:
        """Another instance took the partition: close ours, pause the partition, rejoin the group."""
        metrics.PRODUCERS_FENCED.inc()
        tp = owner.tp
        log.warning("%s[%d]: this replica's producer was fenced (%s); abandoning its batch, rejoining the group",
                    tp.topic, tp.partition, type(exc).__name__)
        current = self._open.get(tp) is owner
        await self._close(owner)
        if current:
            self._fenced.add(tp)
            with contextlib.suppress(kerr.IllegalStateError):
                if tp in self._consumer.assignment():
                    self._consumer.pause(tp)
            request_rejoin(self._consumer)

    async def discard(self, owner: PartitionProducer, exc: BaseException, stop_s: float = 30.0) -> None:
        """The producer is in an unknown state (an abort failed): replace it at the next ``ensure``.
        ``stop_s``: how long its stop may take (the next producer fences it anyway)."""
        tp = owner.tp
        log.warning("%s[%d]: closing the transactional producer (%s: %s); it is reopened from the "
                    "committed offset", tp.topic, tp.partition, type(exc).__name__, exc)
        await self._close(owner, stop_s)

    async def _close(self, owner: PartitionProducer, stop_s: float = 30.0) -> None:
        owner.live = False
        if self._open.get(owner.tp) is owner:
            del self._open[owner.tp]
        metrics.TRANSACTIONAL_PRODUCERS.set(len(self._open))
        await _stop(owner.producer, stop_s)


def sender_error(producer: AIOKafkaProducer) -> BaseException | None:
    """The error that stopped the producer's background sender (e.g. ``ProducerFenced``), if any.

    aiokafka's sender dies on a fenced transactional request; later calls then fail with
    ``IllegalOperation`` or an ``AssertionError`` of its transaction state machine, not the cause.
    """
    task = producer._sender.sender_task
    if task is None or not task.done() or task.cancelled():
        return None
    error: BaseException | None = task.exception()
    return error


async def _stop(producer: AIOKafkaProducer, stop_s: float = 30.0) -> None:
    await stop_quietly(producer, timeout_s=stop_s)
    _retrieve_errors(producer)
    task = getattr(getattr(producer, "_sender", None), "sender_task", None)
    if isinstance(task, asyncio.Future) and not task.done():  # left behind: its errors come when it dies
        task.add_done_callback(lambda _: _retrieve_errors(producer))


def _retrieve_errors(producer: AIOKafkaProducer) -> None:
    """Mark as seen the errors a dead sender left in futures nobody awaits.

    When its sender dies (fenced), aiokafka fails the transaction's waiter and the drain waiter of
    every queued batch with the error; nothing awaits them once the producer is dropped, and
    asyncio would log "Future exception was never retrieved" with a traceback for each (dozens
    per fenced producer). Reaches into aiokafka's internals defensively: if they change, the only
    effect is those log lines again.
    """
    futures: list[Any] = []
    txn = getattr(producer, "_txn_manager", None)
    futures.append(getattr(txn, "_transaction_waiter", None))
    accumulator = getattr(producer, "_message_accumulator", None)
    for queue in getattr(accumulator, "_batches", {}).values():
        futures.extend(getattr(batch, "_drain_waiter", None) for batch in queue)
    futures.extend(getattr(batch, "_drain_waiter", None) for batch in getattr(accumulator, "_pending_batches", ()))
    for future in futures:
        if isinstance(future, asyncio.Future) and future.done() and not future.cancelled():
            future.exception()
