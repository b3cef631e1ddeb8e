"""``canvas-bridge ingest-sqs``: Canvas's SQS delivery into the raw topic.

Canvas delivers Live Events to an SQS standard queue: at least once, a message comes back after
its visibility timeout whenever it is not deleted in time. Each poller (``sqs.pollers`` per
queue; ``bridge.ingest.sqs_poller``) runs one loop:

1. wait until Kafka is reachable (backpressure: nothing is received that could not be written);
2. long-poll ``ReceiveMessage`` (``sqs.wait_time_s``, up to ``sqs.max_messages``), asking for
   ``sqs.visibility_timeout_s``;
3. write every body to the raw topic through the shared ``RawWriter`` (acks=all, idempotent; the
   key rule of ``bridge.ingest.raw`` puts a redelivery on the partition of its first copy, so the
   bridge's duplicate window sees both). While writes wait, the batch's visibility is extended
   (``ChangeMessageVisibilityBatch``) every half timeout, so a slow broker causes no redelivery;
4. ``DeleteMessageBatch`` what the broker acknowledged, and only that. A failed write is left in
   the queue and comes back after the visibility timeout; a body over ``limits.max_message_bytes``
   too, until the queue's redrive policy moves it to its dead-letter queue.

The command's lifecycle is one anyio task group (startup -> run -> drain -> shutdown), as for
``run``: SIGTERM or SIGINT stops receiving (a long poll still waiting after 1 s is cancelled; what
SQS has answered by then is held like the rest), finishes writing
and deleting what the pollers hold and exits 0 within ``delivery.drain_timeout_s``; what is still
unwritten then is released (visibility 0) and the exit code is 3. A second signal forces exit.

This module is the command: the pollers of every queue, readiness and the drain. The queues and
SQS's errors by kind are in ``bridge.ingest.sqs_queues``.

Credentials come from the standard AWS chain (aiobotocore's default session: environment,
shared profile, container or instance role, web identity); they are never logged, and neither
are message bodies.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from contextlib import AsyncExitStack
from functools import partial
from typing import TYPE_CHECKING

import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from anyio.abc import TaskGroup

from bridge import metrics
from bridge.config import Config, ConfigError
from bridge.http import Probes, serve_probes
from bridge.ingest.sqs_poller import Poller, Writer
from bridge.ingest.sqs_queues import (
    SQS_ERRORS,
    Fatal,
    Queue,
    describe,
    error_kind,
    queues_of,
    report_queue_depths,
)
from bridge.ingest.writer import RawWriter
from bridge.lifecycle import EXIT_DRAIN_TIMEOUT, EXIT_FATAL, EXIT_OK, Drain

if TYPE_CHECKING:
    from aiobotocore.session import ClientCreatorContext
    from types_aiobotocore_sqs.client import SQSClient

log = logging.getLogger("bridge.ingest.sqs")

#: How often Kafka is probed (readiness, and when receiving may resume after a failed write).
KAFKA_PROBE_INTERVAL_S = 2.0
#: after SIGTERM, how long a ReceiveMessage under way may still answer before it is cancelled
RECEIVE_GRACE_S = 1.0
#: A failing queue is logged at its first error, then at most this often.
ERROR_LOG_INTERVAL_S = 30.0

# -- the command ------------------------------------------------------------------------------


class SqsIngest:
    """The pollers of every queue, Kafka's readiness gate, the lifecycle (module docstring)."""

    def __init__(self, config: Config, writer: Writer, queues: list[Queue], *,
                 raw_writer: RawWriter | None = None, session: AioSession | None = None) -> None:
        self.config = config
        self.writer = writer
        self.raw_writer = raw_writer  #: the real writer (readiness, Kafka probe); None writes nowhere
        self.queues = queues
        self.session = session or get_session()
        self.should_exit = False
        self.drain_expired = False
        self.drain_deadline = math.inf
        self.exit_requested = asyncio.Event()
        #: SIGTERM, SIGINT: ``stop``, bounded (``bridge.lifecycle``)
        self.drain = Drain(config.delivery.drain_timeout_s, self.stop, what="no more receiving")
        self.kafka_ok = asyncio.Event()
        self.kafka_error = "starting: Kafka not reached yet"
        #: the pollers' receive scopes -> whether a ReceiveMessage call is under way in it
        self.receive_scopes: dict[anyio.CancelScope, bool] = {}
        self.failing: dict[str, str] = {}  #: queue name -> what its last receive error was
        self._logged_at: dict[str, float] = {}
        self.started = False
        self.held = 0  #: messages received and not yet deleted or left, every queue
        if raw_writer is None:
            self.kafka_ok.set()

    # -- signals and readiness ----------------------------------------------------------------

    def stop(self) -> None:
        """Start the drain: no more receiving (a long poll still waiting is cancelled); finish what is held."""
        self.drain_deadline = time.monotonic() + self.config.delivery.drain_timeout_s
        self.should_exit = True
        self.exit_requested.set()
        log.info("finishing the %d messages held", self.held)
        receiving = [scope for scope, under_way in self.receive_scopes.items() if under_way]
        for scope in [scope for scope, under_way in self.receive_scopes.items() if not under_way]:
            scope.cancel()
        if receiving:
            # SQS hides what a ReceiveMessage returns for visibility_timeout_s as soon as it answers;
            # cancelling a call already answered would drop the receipt handles, and its messages would
            # come back only after that timeout. A call returns at once when messages wait, so it gets
            # RECEIVE_GRACE_S; a long poll still waiting then is on an empty queue and is cancelled.
            asyncio.get_running_loop().call_later(RECEIVE_GRACE_S, self._cancel_receives, receiving)

    def _cancel_receives(self, scopes: list[anyio.CancelScope]) -> None:
        for scope in scopes:
            if scope in self.receive_scopes:
                scope.cancel()

    def ready(self) -> tuple[bool, str]:
        if self.should_exit:
            return False, "draining"
        failing = ", ".join(f"{q} ({kind})" for q, kind in sorted(self.failing.items()))
        if not self.started:
            return False, f"starting: the queues do not answer, retrying: {failing}" if failing else "starting"
        if not self.kafka_ok.is_set():
            return False, f"not receiving: {self.kafka_error}"[:300]
        if failing:
            return False, f"receiving fails, retrying: {failing}"[:300]
        return True, f"ready: {len(self.queues)} queues, {self.config.sqs.pollers} pollers each"

    def receive_ok(self, queue: Queue) -> None:
        if self.failing.pop(queue.name, None) is not None:
            log.info("queue %s answers again", queue.name)
            self._logged_at.pop(queue.name, None)

    def receive_failed(self, queue: Queue, kind: str, exc: BaseException, retry_in: float) -> None:
        self.failing[queue.name] = kind
        now = time.monotonic()
        if now - self._logged_at.get(queue.name, -math.inf) >= ERROR_LOG_INTERVAL_S:
            self._logged_at[queue.name] = now
            log.warning("receiving from queue %s failed (%s: %s); retrying with backoff (now %.1fs)",
                        queue.name, kind, describe(exc), retry_in)

    def kafka_failed(self, why: str) -> None:
        """A write was not acknowledged: stop receiving until the probe reaches Kafka again."""
        if self.kafka_ok.is_set() and self.raw_writer is not None:
            log.warning("Kafka did not acknowledge a write (%s): receiving paused until it answers", why)
            self.kafka_error = f"Kafka unavailable: {why}"
            self.kafka_ok.clear()

    async def kafka_probe(self) -> None:
        """Reopen receiving when Kafka answers; close it when Kafka stops answering while idle."""
        writer = self.raw_writer
        while writer is not None:
            if writer.connected and await writer.reachable(KAFKA_PROBE_INTERVAL_S):
                if not self.kafka_ok.is_set():
                    log.info("Kafka answers: receiving")
                    self.kafka_ok.set()
            else:
                why = writer.last_error or "Kafka not reached yet"
                if self.kafka_ok.is_set() or why != self.kafka_error:
                    log.warning("not receiving: %s", why)
                self.kafka_ok.clear()
                self.kafka_error = why
            metrics.SQS_READY.set(1 if self.ready()[0] else 0)
            await anyio.sleep(KAFKA_PROBE_INTERVAL_S if self.kafka_ok.is_set() else KAFKA_PROBE_INTERVAL_S / 4)

    # -- startup --------------------------------------------------------------------------------

    def _client(self, queue: Queue) -> ClientCreatorContext[SQSClient]:
        sqs = self.config.sqs
        config = AioConfig(
            # Our loops retry, with backoff and metrics; the SDK's own retries would hide throttling.
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=5, read_timeout=sqs.wait_time_s + 10,
            max_pool_connections=2 * sqs.pollers + 2,  # a long poll holds one connection per poller
        )
        return self.session.create_client("sqs", region_name=queue.region, endpoint_url=queue.endpoint_url,
                                          config=config)

    async def check_queues(self, clients: dict[str, SQSClient]) -> None:
        """Each queue answers GetQueueAttributes: fatal when retrying cannot help, retried otherwise."""
        backoff = self.config.delivery.retry_backoff_initial_s
        for queue in self.queues:
            while not self.should_exit:
                try:
                    attrs = (await clients[queue.name].get_queue_attributes(
                        QueueUrl=queue.url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"]))["Attributes"]
                    break
                except SQS_ERRORS as exc:
                    kind = error_kind(exc)
                    if kind in ("denied", "missing"):
                        hint = ("no such queue (check sqs.queue_urls / BRIDGE_SQS_QUEUE_URLS)" if kind == "missing"
                                else "refused: check the credentials (AWS chain: env, profile, role) and that they "
                                     "allow sqs:ReceiveMessage, sqs:DeleteMessage, sqs:ChangeMessageVisibility and "
                                     "sqs:GetQueueAttributes on it")
                        raise Fatal(f"queue {queue.name}: {hint} ({describe(exc)})") from exc
                    metrics.SQS_RECEIVE_ERRORS.labels(queue.name, kind).inc()
                    self.receive_failed(queue, kind, exc, backoff)
                    await anyio.sleep(backoff)
                    backoff = min(backoff * 2, self.config.delivery.retry_backoff_max_s)
            else:
                return
            self.failing.pop(queue.name, None)
            if not queue.url.rsplit("/", 1)[-1].startswith("canvas-live-events"):
                log.warning("queue %s: Canvas delivers only to queues whose name begins with canvas-live-events "
                            "(Instructure's Data Services setup)", queue.name)
            if not attrs.get("RedrivePolicy"):
                log.warning("queue %s has no redrive policy: a message that cannot be written (over "
                            "limits.max_message_bytes) will be received again every %ss, forever; give the "
                            "queue a dead-letter queue (README: Connecting Canvas through SQS)",
                            queue.name, self.config.sqs.visibility_timeout_s)
            log.info("receiving from queue %s (its visibility timeout %ss; ours per receive %ss)", queue.name,
                     attrs.get("VisibilityTimeout", "?"), self.config.sqs.visibility_timeout_s)

    # -- lifecycle ------------------------------------------------------------------------------

    async def drain_watchdog(self, pollers: anyio.CancelScope) -> None:
        """Shortly before the drain deadline: cancel the pollers; they release what they still hold."""
        await self.exit_requested.wait()
        margin = min(2.0, self.config.delivery.drain_timeout_s / 4)
        await anyio.sleep(max(0.0, self.drain_deadline - time.monotonic() - margin))
        log.error("drain did not finish within delivery.drain_timeout_s=%.0fs: releasing the messages still "
                  "held (they are received again)", self.config.delivery.drain_timeout_s)
        self.drain_expired = True
        pollers.cancel()

    async def run(self, tg: TaskGroup) -> int:
        """startup (clients, queue check) -> run (pollers) -> drain; the caller's task group owns the rest."""
        async with AsyncExitStack() as stack:
            clients: dict[str, SQSClient] = {}
            for queue in self.queues:
                clients[queue.name] = await stack.enter_async_context(self._client(queue))
            with anyio.CancelScope() as scope:  # SIGTERM while the queues do not answer: stop at once
                self.receive_scopes[scope] = False
                try:
                    await self.check_queues(clients)
                finally:
                    del self.receive_scopes[scope]
            if self.should_exit:
                return EXIT_OK
            self.started = True
            tg.start_soon(self.kafka_probe)
            tg.start_soon(report_queue_depths, self.queues, clients)
            with anyio.CancelScope() as scope:
                tg.start_soon(self.drain_watchdog, scope)
                async with anyio.create_task_group() as pollers:
                    for queue in self.queues:
                        for _ in range(self.config.sqs.pollers):
                            pollers.start_soon(Poller(self, queue, clients[queue.name]).run)
            if scope.cancelled_caught or self.drain_expired:
                return EXIT_DRAIN_TIMEOUT
        log.info("drained: everything received was written and deleted, or left in the queue")
        return EXIT_OK


async def _serve_http(tg: TaskGroup, config: Config, probes: Probes) -> bool:
    """/metrics /healthz /readyz on http.host:http.port (the HTTP stack every command shares)."""
    try:
        await tg.start(partial(serve_probes, config, probes))
    except OSError as exc:
        log.error("cannot serve http on %s:%d (http.host/http.port, env BRIDGE_HTTP_HOST/BRIDGE_HTTP_PORT): %s",
                  config.http.host, config.http.port, exc.strerror or exc)
        return False
    return True


def _quiet_aws_loggers(level: str) -> None:
    """botocore logs requests (signed headers included) at DEBUG: never below WARNING here."""
    for name in ("botocore", "aiobotocore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))


async def run_ingest_sqs(config: Config) -> int:
    """Run ``canvas-bridge ingest-sqs`` until a signal drains it. Returns the process exit code."""
    queues = queues_of(config)
    session = get_session()
    missing_region = [q.name for q in queues if q.region is None and not session.get_config_variable("region")]
    if missing_region:
        raise ConfigError(f"sqs.region is not set and cannot be read from the URL of queue {missing_region[0]}: "
                          "set BRIDGE_SQS_REGION (or AWS_REGION)")
    _quiet_aws_loggers(config.log.level)
    metrics.declare_ingest("sqs")
    metrics.declare_sqs([q.name for q in queues], time.time())
    writer = RawWriter(config, "sqs")
    ingest = SqsIngest(config, writer, queues, raw_writer=writer, session=session)
    with ingest.drain.on_signals():
        return await _run(config, ingest, writer)


async def _run(config: Config, ingest: SqsIngest, writer: RawWriter) -> int:
    try:
        async with anyio.create_task_group() as tg:
            if not await _serve_http(tg, config, Probes(ready=ingest.ready)):
                tg.cancel_scope.cancel()
                return EXIT_FATAL
            await tg.start(writer.run)
            try:
                code = await ingest.run(tg)
            except Fatal as exc:
                log.error("cannot start: %s", exc)
                code = EXIT_FATAL
            metrics.SQS_READY.set(0)
            tg.cancel_scope.cancel()  # the writer flushes and stops; the endpoints close
        log.info("stopped (exit %d)", code)
        return code
    except Exception:
        log.exception("unexpected error; what is held is not deleted and comes back after the visibility timeout")
        return EXIT_FATAL
