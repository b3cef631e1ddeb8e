"""The composition root and lifecycle of ``canvas-bridge run``.

startup -> run -> drain -> shutdown, in one anyio task group: the consume loop, the HTTP
endpoints, the broker probe and the lag reporter are its children; a failure in one cancels
the rest. SIGTERM or SIGINT starts a graceful drain (stop fetching, finish and commit the
in-flight batch, leave the group, flush) bounded by ``delivery.drain_timeout_s``; a second
signal forces exit.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from functools import partial

import aiokafka
import anyio
from aiokafka import TopicPartition
from aiokafka import errors as kerr
from aiokafka.protocol.metadata import MetadataRequest

from bridge import metrics
from bridge.config import Config
from bridge.core import DEAD_LETTER_REASONS, Core
from bridge.dedupe import Deduplicator
from bridge.delivery import Delivery, to_batch
from bridge.errors import Fatal
from bridge.events import CANVAS_EVENTS
from bridge.events.caliper import CALIPER_EVENTS
from bridge.http import Probes, serve_probes
from bridge.kafka import Clients, TopicCreator, replica_id
from bridge.lifecycle import EXIT_DRAIN_TIMEOUT, EXIT_FATAL, EXIT_OK, Drain
from bridge.refusals import REFUSAL_REASONS
from bridge.topicinfo import TopicInfo

log = logging.getLogger("bridge.service")


#: How long the broker may go unanswered before /readyz says not ready.
PROBE_INTERVAL_S = 2.0
PROBE_STALE_S = 6.0
#: The longest a Kafka client may take to stop (leave the group, flush) before it is left behind.
CLIENT_STOP_S = 10.0


class Bridge:
    """Consumes the raw topic and hands each fetch to ``Delivery``, which runs it through the core."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.core = Core.from_config(config)
        metrics.DECODE_STRATEGIES.watch(self.core.strategy_counts)
        self.dedupe = Deduplicator(config.dedupe.enabled, config.dedupe.window_count, config.dedupe.window_seconds)
        self.should_exit = False
        #: SIGTERM, SIGINT: drain, bounded by delivery.drain_timeout_s (``bridge.lifecycle``)
        self.drain = Drain(config.delivery.drain_timeout_s, self._start_drain)
        self.paused = False
        self.clients = Clients(config)
        self.delivery: Delivery | None = None
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
        """Start the Kafka clients (retrying while the broker is unreachable) and join the group."""
        await self.clients.start(lambda: self.should_exit)
        consumer = self.clients.consumer
        assert consumer is not None
        self._broker_ok_at = time.monotonic()
        if not self.config.topics.create:
            try:
                await self.topic_info.check_startup(self.catalog_topics)
            except Fatal:
                await self.clients.stop(lambda: CLIENT_STOP_S)
                raise
        self.delivery = Delivery(
            self.config, self.clients, self.dedupe, partial(to_batch, self.core.process),
            should_stop=self._stop_retrying, topics=self.topic_creator, info=self.topic_info,
            catalog_topics=self.catalog_topics,
        )
        consumer.subscribe([self.config.raw_topic], listener=self.delivery.listener(self.on_assigned, self.on_revoked))
        log.info("consuming %s as group %s (replica %s, %s)", self.config.raw_topic, self.config.group_id,
                 replica_id(self.config), self.config.delivery.guarantee)
        # What exists now (modules, the catalog's Structs, generated code, the clients: ~57,000
        # objects) lives until exit: frozen, full collections no longer scan it. Measured at
        # 5,000 events/s, those collections paused the event loop 13-21 ms every 3-4 s; 4-11 ms after.
        gc.collect()
        gc.freeze()

    async def main_loop(self) -> None:
        """Fetch and hand over, until a drain; then finish and commit what is in flight.

        ``Delivery`` decides the rest: at-least-once keeps up to
        ``delivery.max_in_flight_batches`` batches sent but not yet acknowledged, so that the core
        works on the next batch while the broker acknowledges the previous ones; exactly-once
        runs one batch at a time, and opens the producers of newly assigned partitions before
        each fetch (``prepare``).
        """
        consumer, delivery = self.clients.consumer, self.delivery
        assert consumer is not None and delivery is not None
        timeout_ms = self.config.delivery.fetch_timeout_ms
        max_records = self.config.delivery.batch_max_records
        while not self.should_exit:
            await delivery.prepare()
            # getmany itself waits while a rebalance is in progress: never under the delivery's lock.
            wait = min(timeout_ms, 20) if delivery.busy else timeout_ms
            await delivery.submit(await consumer.getmany(timeout_ms=wait, max_records=max_records))
        await delivery.drain()

    async def shutdown(self) -> None:
        """Leave the group and flush; the in-flight batches were already committed by the loop."""
        # Every batch is committed by now: stopping is a courtesy to the group, bounded so that a
        # client that hangs there cannot hold the drain past delivery.drain_timeout_s.
        stop_by = time.monotonic() + 2 * CLIENT_STOP_S
        if self.drain.started:
            stop_by = min(stop_by, self.drain.deadline - 1.0)

        def left() -> float:
            return max(0.5, min(CLIENT_STOP_S, stop_by - time.monotonic()))

        await self.clients.stop(left)
        bound = left()
        try:
            with anyio.fail_after(bound):
                await self.topic_creator.close()
        except TimeoutError:
            log.warning("the admin client did not close within %.1fs; left behind", bound)
        metrics.READY.set(0)

    # -- partitions (called by the delivery's rebalance listener, after its own work) -------------

    def on_assigned(self, assigned: list[TopicPartition]) -> None:
        self.assigned = set(assigned) | self.assigned
        metrics.REBALANCES.labels("assigned").inc()
        metrics.ASSIGNED_PARTITIONS.set(len(self.assigned))
        if self.paused and self.clients.consumer is not None and assigned:
            self.clients.consumer.pause(*assigned)
        log.info("assigned %s", _fmt(assigned))

    def on_revoked(self, revoked: list[TopicPartition]) -> None:
        self.assigned -= set(revoked)
        for tp in revoked:
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition))
        metrics.ASSIGNED_PARTITIONS.set(len(self.assigned))
        if revoked:  # aiokafka also calls this, empty, before the first assignment
            metrics.REBALANCES.labels("revoked").inc()
            log.info("revoked %s", _fmt(revoked))

    def pause(self) -> None:
        self.paused = True
        if self.clients.consumer is not None:
            self.clients.consumer.pause(*self.clients.consumer.assignment())
        log.info("paused by the admin endpoint")

    def resume(self) -> None:
        self.paused = False
        if self.clients.consumer is not None:
            self.clients.consumer.resume(*self.clients.consumer.assignment())
        log.info("resumed by the admin endpoint")

    # -- readiness and lag ----------------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        consumer = self.clients.consumer
        if self.should_exit:
            return False, "draining"
        if consumer is None:
            return False, "starting: Kafka not reached yet"
        if time.monotonic() - self._broker_ok_at > PROBE_STALE_S:
            return False, "broker unreachable"
        if self.delivery is not None and not self.delivery.status.publishing_ok:
            return False, f"publishing failing: {self.delivery.status.last_error}"[:300]
        if not consumer.assignment():
            return False, "no partitions assigned"
        return True, f"ready: {len(consumer.assignment())} partitions"

    async def probe_loop(self) -> None:
        """Ask the broker for metadata every few seconds: the 'broker reachable' half of /readyz.

        Only the raw topic's metadata: a request for every topic of a large cluster costs both
        sides (here, with the 115 typed topics, ~3 ms of the event loop's CPU each time).
        """
        request = MetadataRequest([self.config.raw_topic], allow_auto_topic_creation=False)
        while True:
            producer = self.clients.producer
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
            consumer = self.clients.consumer
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
