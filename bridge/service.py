"""The composition root and lifecycle of ``canvas-bridge run``.

startup -> run -> drain -> shutdown, in one anyio task group: the consume loop, the HTTP
endpoints, the broker probe and the lag reporter are its children; a failure in one cancels
the rest. SIGTERM or SIGINT starts a graceful drain (stop fetching, finish and commit the
in-flight batch, leave the group, flush) bounded by ``delivery.drain_timeout_s``; a second
signal forces exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import deque
from functools import partial
from typing import Any

import aiokafka
import anyio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka import errors as kerr
from aiokafka.protocol.metadata import MetadataRequest

from bridge import metrics
from bridge.config import Config
from bridge.core import DEAD_LETTER_REASONS, Core, Source, now_ms
from bridge.dedupe import Deduplicator
from bridge.delivery import Batch, Delivery, FatalDeliveryError, InFlight
from bridge.events import CANVAS_EVENTS
from bridge.events.caliper import CALIPER_EVENTS
from bridge.http import Probes, serve_probes
from bridge.kafka import TlsRefused, TopicCreator, check_credentials, make_consumer, make_producer, replica_id
from bridge.lifecycle import EXIT_DRAIN_TIMEOUT, EXIT_FATAL, EXIT_OK, Drain
from bridge.refusals import REFUSAL_REASONS
from bridge.topicinfo import StartupError, TopicInfo
from bridge.transactions import OpenFailed, PartitionProducers

log = logging.getLogger("bridge.service")


_AUTH_ERRORS: tuple[type[BaseException], ...] = (
    kerr.SaslAuthenticationFailed,
    kerr.AuthenticationFailedError,
    kerr.GroupAuthorizationFailedError,
    kerr.TopicAuthorizationFailedError,
    kerr.ClusterAuthorizationFailedError,
)
#: How long the broker may go unanswered before /readyz says not ready.
PROBE_INTERVAL_S = 2.0
PROBE_STALE_S = 6.0


class Fatal(Exception):
    """An unrecoverable condition (authentication, authorization, fencing): exit non-zero."""


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # Finish and commit the in-flight batches while we still own their partitions.
        async with self._bridge.batch_lock:
            await self._bridge.finish_pending()
            await self._bridge.on_revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        # Exactly-once: the main loop opens the partitions' producers before its next fetch
        # (bridge/transactions.py); nothing here waits on the broker, the group is not heartbeating.
        async with self._bridge.batch_lock:
            self._bridge.on_assigned(list(assigned))


class Bridge:
    """Consumes the raw topic, runs batches through the core, hands them to ``Delivery``."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.core = Core.from_config(config)
        metrics.DECODE_STRATEGIES.watch(self.core.strategy_counts)
        self.dedupe = Deduplicator(config.dedupe.enabled, config.dedupe.window_count, config.dedupe.window_seconds)
        self.batch_lock = asyncio.Lock()
        self.should_exit = False
        #: SIGTERM, SIGINT: drain, bounded by delivery.drain_timeout_s (``bridge.lifecycle``)
        self.drain = Drain(config.delivery.drain_timeout_s, self._start_drain)
        self.paused = False
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.delivery: Delivery | None = None
        self.partitions: PartitionProducers | None = None  # exactly-once: a producer per raw partition
        self.pending: deque[InFlight] = deque()
        self.topic_creator = TopicCreator(config)
        self.topic_info = TopicInfo(config, self.topic_creator.admin)
        self.catalog_topics = frozenset([config.topics.prefix + n for n in CANVAS_EVENTS]
                                        + [config.topics.caliper_prefix + n for n in CALIPER_EVENTS])
        self.assigned: set[TopicPartition] = set()
        self._broker_ok_at = 0.0
        self.exit_code = EXIT_OK

    # -- lifecycle ----------------------------------------------------------------------------

    def _start_drain(self) -> None:
        self.should_exit = True

    def _stop_retrying(self) -> bool:
        """Retries give up when a drain ran out of time (a second signal exits at once)."""
        return self.drain.expired()

    async def startup(self) -> None:
        """Start the Kafka clients, retrying while the broker is unreachable."""
        backoff = self.config.delivery.retry_backoff_initial_s
        while True:
            consumer = make_consumer(self.config)
            producer = make_producer(self.config)
            try:
                await producer.start()
                await consumer.start()
                break
            except _AUTH_ERRORS as exc:
                await _quietly_stop(consumer, producer)
                raise Fatal(f"the broker refused our credentials: {type(exc).__name__}: {exc}") from exc
            except (kerr.KafkaError, OSError) as exc:
                await _quietly_stop(consumer, producer)
                try:
                    await check_credentials(self.config)
                except (*_AUTH_ERRORS, kerr.UnsupportedSaslMechanismError) as auth:
                    raise Fatal(f"the broker refused our credentials (authentication failed): "
                                f"{type(auth).__name__}: {auth}") from auth
                except TlsRefused as tls:
                    raise Fatal(str(tls)) from tls
                if self.should_exit:
                    raise Fatal("stopped before the broker could be reached") from exc
                log.warning("cannot reach Kafka at %s (%s: %s); retrying in %.1fs",
                            self.config.kafka.bootstrap_servers, type(exc).__name__, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.config.delivery.retry_backoff_max_s)
        self.consumer, self.producer = consumer, producer
        self._broker_ok_at = time.monotonic()
        if not self.config.topics.create:
            try:
                await self.topic_info.check_startup(self.catalog_topics)
            except StartupError as exc:
                await _quietly_stop(consumer, producer)
                raise Fatal(str(exc)) from exc
        if self.config.delivery.guarantee == "exactly-once":
            self.partitions = PartitionProducers(self.config, consumer)
        self.delivery = Delivery(
            self.config, consumer, producer, self.dedupe,
            should_stop=self._stop_retrying, partitions=self.partitions, topics=self.topic_creator,
            info=self.topic_info, catalog_topics=self.catalog_topics,
        )
        consumer.subscribe([self.config.raw_topic], listener=_Rebalance(self))
        log.info("consuming %s as group %s (replica %s, %s)", self.config.raw_topic, self.config.group_id,
                 replica_id(self.config), self.config.delivery.guarantee)
        # What exists now (modules, the catalog's Structs, generated code, the clients: ~57,000
        # objects) lives until exit: frozen, full collections no longer scan it. Measured at
        # 5,000 events/s, those collections paused the event loop 13-21 ms every 3-4 s; 4-11 ms after.
        gc.collect()
        gc.freeze()

    async def main_loop(self) -> None:
        """Fetch, run the core, send; finish (acks, commit) batches in order, overlapping them.

        At-least-once keeps up to ``delivery.max_in_flight_batches`` batches sent but not yet
        acknowledged, plus one whose commit is in flight: the core works on the next batch while
        the broker acknowledges and commits the previous ones. Offsets are still committed
        strictly in batch order, each only after all of its outputs were acknowledged.
        Exactly-once runs one batch at a time (a transaction per raw partition of it), and opens
        the producers of newly assigned partitions before fetching (bridge/transactions.py).
        """
        assert self.consumer is not None and self.delivery is not None
        consumer, delivery, partitions = self.consumer, self.delivery, self.partitions
        timeout_ms = self.config.delivery.fetch_timeout_ms
        max_records = self.config.delivery.batch_max_records
        window = 1 if delivery.exactly_once else self.config.delivery.max_in_flight_batches
        pending = self.pending
        while not self.should_exit:
            if partitions is not None:
                async with self.batch_lock:
                    try:
                        await partitions.ensure()
                    except OpenFailed as exc:
                        raise Fatal(str(exc)) from exc
            # getmany itself waits while a rebalance is in progress: never hold the lock across it.
            wait = timeout_ms if not pending else min(timeout_ms, 20)
            records = await consumer.getmany(timeout_ms=wait, max_records=max_records)
            async with self.batch_lock:
                # A rebalance may have completed between getmany and here: keep owned partitions only.
                owned = consumer.assignment()
                records = {tp: msgs for tp, msgs in records.items() if tp in owned}
                owners = partitions.accept(records) if partitions is not None else {}
                try:
                    if records:
                        batch = self._to_batch(records)
                        batch.owners = owners
                        metrics.RECORDS_IN_FLIGHT.set(sum(p.batch.consumed for p in pending) + batch.consumed)
                        pending.append(await delivery.start(batch))
                        metrics.RECORDS_IN_FLIGHT.set(sum(p.batch.consumed for p in pending))
                    while pending and (len(pending) >= window or pending[0].acknowledged() or not records):
                        await self._finish_oldest()
                    if window == 1 or not records or delivery.commit_done():
                        await delivery.settle()  # one at a time, idle, or done: errors surface here
                except FatalDeliveryError as exc:
                    raise Fatal(str(exc)) from exc
        async with self.batch_lock:
            await self.finish_pending()

    async def _finish_oldest(self) -> None:
        assert self.delivery is not None
        inflight = self.pending.popleft()
        await self.delivery.finish(inflight)
        metrics.BATCH_DURATION.observe(time.perf_counter() - inflight.batch.started)
        metrics.RECORDS_IN_FLIGHT.set(sum(p.batch.consumed for p in self.pending))

    async def finish_pending(self) -> None:
        """Finish and commit every sent batch, in order (before a revocation, and at drain)."""
        try:
            while self.pending:
                await self._finish_oldest()
            if self.delivery is not None:
                await self.delivery.settle()
        except FatalDeliveryError as exc:
            raise Fatal(str(exc)) from exc

    def _to_batch(self, records: dict[TopicPartition, list[Any]]) -> Batch:
        """Run every record through the core, keeping input order within each partition."""
        started = time.perf_counter()
        batch = Batch(started=started)
        process = self.core.process
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

    async def shutdown(self) -> None:
        """Leave the group and flush; the in-flight batch was already committed by the loop."""
        # Every batch is committed by now: stopping is a courtesy to the group, bounded so that a
        # client that hangs there cannot hold the drain past delivery.drain_timeout_s.
        stop_by = time.monotonic() + 2 * CLIENT_STOP_S
        if self.drain.started:
            stop_by = min(stop_by, self.drain.deadline - 1.0)

        def left() -> float:
            return max(0.5, min(CLIENT_STOP_S, stop_by - time.monotonic()))

        await _quietly_stop(self.consumer, timeout_s=left())
        await _quietly_stop(self.delivery.producer if self.delivery else self.producer, timeout_s=left())
        if self.partitions is not None:
            await self.partitions.close()
        for what, close in (("replaced producers", self.delivery.close if self.delivery else None),
                            ("admin client", self.topic_creator.close)):
            if close is None:
                continue
            bound = left()
            try:
                with anyio.fail_after(bound):
                    await close()
            except TimeoutError:
                log.warning("the %s did not close within %.1fs; left behind", what, bound)
        metrics.READY.set(0)

    # -- partitions ---------------------------------------------------------------------------

    def on_assigned(self, assigned: list[TopicPartition]) -> None:
        if self.partitions is not None:
            self.partitions.assigned(assigned)
        self.assigned = set(assigned) | self.assigned
        metrics.REBALANCES.labels("assigned").inc()
        metrics.ASSIGNED_PARTITIONS.set(len(self.assigned))
        if self.paused and self.consumer is not None and assigned:
            self.consumer.pause(*assigned)
        log.info("assigned %s", _fmt(assigned))

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        if self.partitions is not None:
            await self.partitions.revoked(revoked)
        self.assigned -= set(revoked)
        self.dedupe.forget((tp.topic, tp.partition) for tp in revoked)
        for tp in revoked:
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition))
        metrics.ASSIGNED_PARTITIONS.set(len(self.assigned))
        if revoked:  # aiokafka also calls this, empty, before the first assignment
            metrics.REBALANCES.labels("revoked").inc()
            log.info("revoked %s", _fmt(revoked))

    def pause(self) -> None:
        self.paused = True
        if self.consumer is not None:
            self.consumer.pause(*self.consumer.assignment())
        log.info("paused by the admin endpoint")

    def resume(self) -> None:
        self.paused = False
        if self.consumer is not None:
            self.consumer.resume(*self.consumer.assignment())
        log.info("resumed by the admin endpoint")

    # -- readiness and lag ----------------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        if self.should_exit:
            return False, "draining"
        if self.consumer is None:
            return False, "starting: Kafka not reached yet"
        if time.monotonic() - self._broker_ok_at > PROBE_STALE_S:
            return False, "broker unreachable"
        if self.delivery is not None and not self.delivery.publishing_ok:
            return False, f"publishing failing: {self.delivery.last_error}"[:300]
        if not self.consumer.assignment():
            return False, "no partitions assigned"
        return True, f"ready: {len(self.consumer.assignment())} partitions"

    async def probe_loop(self) -> None:
        """Ask the broker for metadata every few seconds: the 'broker reachable' half of /readyz.

        Only the raw topic's metadata: a request for every topic of a large cluster costs both
        sides (here, with the 115 typed topics, ~3 ms of the event loop's CPU each time).
        """
        request = MetadataRequest([self.config.raw_topic], allow_auto_topic_creation=False)
        while True:
            producer = self.delivery.producer if self.delivery else self.producer
            if producer is not None:
                try:
                    with anyio.fail_after(PROBE_INTERVAL_S + 1):
                        node = producer.client.get_random_node()
                        if node is None:
                            raise kerr.KafkaConnectionError("no broker known")
                        await producer.client.send(node, request)
                    self._broker_ok_at = time.monotonic()
                except (kerr.KafkaError, OSError, TimeoutError):
                    pass
            metrics.READY.set(1 if self.ready()[0] else 0)
            await anyio.sleep(PROBE_INTERVAL_S)

    async def lag_loop(self) -> None:
        """Consumer lag per partition: end offset minus committed offset, every few seconds.

        Measured against the group's committed offsets (not the fetch position), so it keeps
        rising while the bridge is paused or stuck and falls to 0 only when the work is committed.
        """
        while True:
            await anyio.sleep(PROBE_INTERVAL_S)
            consumer = self.consumer
            if consumer is None:
                continue
            partitions = list(consumer.assignment())
            if not partitions:
                continue
            try:
                with anyio.fail_after(PROBE_INTERVAL_S * 2):
                    ends = await consumer.end_offsets(partitions)
                    for tp in partitions:
                        committed = await consumer.committed(tp)
                        end = ends.get(tp)
                        if end is None:
                            continue
                        lag = end - (committed if committed is not None else 0)
                        metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, lag))
            except (kerr.KafkaError, OSError, TimeoutError, AssertionError, kerr.IllegalStateError):
                continue


#: The longest a Kafka client may take to stop (leave the group, flush) before it is left behind.
CLIENT_STOP_S = 10.0


async def _quietly_stop(*clients: Any, timeout_s: float = 30.0) -> None:
    for client in clients:
        if client is None:
            continue
        try:
            with anyio.fail_after(timeout_s):
                await client.stop()
        except TimeoutError:
            log.warning("%s did not stop within %.1fs; left behind (the group notices by its session timeout)",
                        type(client).__name__, timeout_s)
        except Exception as exc:
            log.debug("stopping %s: %s", type(client).__name__, exc)


def _fmt(tps: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps)) or "nothing"


async def run_service(config: Config) -> int:
    """Run until a signal drains the bridge. Returns the process exit code."""
    metrics.set_build_info(aiokafka.__version__, config.delivery.guarantee)
    metrics.declare(
        [(n, "canvas") for n in CANVAS_EVENTS] + [(n, "caliper") for n in CALIPER_EVENTS],
        (*DEAD_LETTER_REASONS, *REFUSAL_REASONS),
        REFUSAL_REASONS,
    )
    bridge = Bridge(config)
    probes = Probes(
        ready=bridge.ready,
        pause=bridge.pause if config.http.admin else None,
        resume=bridge.resume if config.http.admin else None,
    )
    with bridge.drain.on_signals():
        try:
            return await _run(config, bridge, probes)
        except Exception:
            # A bug, not an input problem (the core never raises on input): exit non-zero, and let
            # the restarted process take over from the last committed offset.
            log.exception("unexpected error; exiting without committing the in-flight batch")
            return EXIT_FATAL


async def _run(config: Config, bridge: Bridge, probes: Probes) -> int:
    """The task group is the lifecycle: startup, run, drain, shutdown."""
    async with anyio.create_task_group() as tg:
        try:
            await tg.start(partial(serve_probes, config, probes))
        except OSError as exc:
            log.error("cannot serve http on %s:%d (http.host/http.port, env BRIDGE_HTTP_HOST/"
                      "BRIDGE_HTTP_PORT): %s", config.http.host, config.http.port, exc.strerror or exc)
            tg.cancel_scope.cancel()
            return EXIT_FATAL
        try:
            await bridge.startup()
        except Fatal as exc:
            log.error("cannot start: %s", exc)
            tg.cancel_scope.cancel()
            return EXIT_FATAL
        tg.start_soon(bridge.probe_loop)
        tg.start_soon(bridge.lag_loop)
        try:
            await bridge.main_loop()
        except Fatal as exc:
            log.error("stopping: %s", exc)
            bridge.exit_code = EXIT_FATAL
        except (kerr.KafkaError, TimeoutError, OSError) as exc:
            if not bridge.should_exit:
                raise
            # Retries give up only when a drain ran out of time: the batch stays uncommitted.
            log.error("drain did not finish within delivery.drain_timeout_s=%.0fs (%s: %s); the "
                      "uncommitted batch will be redelivered", config.delivery.drain_timeout_s,
                      type(exc).__name__, exc)
            bridge.exit_code = EXIT_DRAIN_TIMEOUT
            tg.cancel_scope.cancel()
            return bridge.exit_code
        # Drain: the loop left after committing its last batch; now leave the group, flush.
        # The drain's hard bound (bridge.lifecycle) covers this too.
        await bridge.shutdown()
        tg.cancel_scope.cancel()
    log.info("stopped (exit %d)", bridge.exit_code)
    return bridge.exit_code
