"""``canvas-bridge ingest-sqs``: Canvas's SQS delivery into the raw topic.

Canvas delivers Live Events to an SQS standard queue: at least once, a message comes back after
its visibility timeout whenever it is not deleted in time. Each poller (``sqs.pollers`` per
queue) runs one loop:

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

Credentials come from the standard AWS chain (aiobotocore's default session: environment,
shared profile, container or instance role, web identity); they are never logged, and neither
are message bodies.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import signal
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from anyio.abc import TaskGroup
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from bridge import metrics
from bridge.config import Config, ConfigError
from bridge.http import Probes, serve_probes
from bridge.ingest.writer import RawWriter, TooLarge, WriteError

if TYPE_CHECKING:
    from aiobotocore.session import ClientCreatorContext
    from types_aiobotocore_sqs.client import SQSClient
    from types_aiobotocore_sqs.literals import QueueAttributeFilterType

log = logging.getLogger("bridge.ingest.sqs")

# The same exit codes as ``run``.
EXIT_OK = 0
EXIT_FATAL = 1
EXIT_DRAIN_TIMEOUT = 3
EXIT_FORCED = 130

#: How often Kafka is probed (readiness, and when receiving may resume after a failed write).
KAFKA_PROBE_INTERVAL_S = 2.0
#: How often the queues' approximate counts are read (a gauge per queue).
QUEUE_STATS_INTERVAL_S = 15.0
#: Attempts of one DeleteMessageBatch before its failed entries are left for redelivery.
DELETE_ATTEMPTS = 4
#: after SIGTERM, how long a ReceiveMessage under way may still answer before it is cancelled
RECEIVE_GRACE_S = 1.0
#: A failing queue is logged at its first error, then at most this often.
ERROR_LOG_INTERVAL_S = 30.0

#: Every error an SQS call can raise: the service's answers and the transport's failures.
SQS_ERRORS: tuple[type[BaseException], ...] = (BotoCoreError, ClientError, OSError, TimeoutError)

_THROTTLED = frozenset({"Throttling", "ThrottlingException", "RequestThrottled", "RequestThrottledException",
                        "TooManyRequestsException", "SlowDown", "OverLimit", "KmsThrottled"})
_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "InvalidClientTokenId", "SignatureDoesNotMatch",
                     "UnrecognizedClientException", "ExpiredToken", "ExpiredTokenException", "InvalidSecurity",
                     "MissingAuthenticationToken", "IncompleteSignature", "KmsAccessDenied", "KmsDisabled"})
_MISSING = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"})
_RECEIPT_GONE = frozenset({"ReceiptHandleIsInvalid", "InvalidReceiptHandle", "MessageNotInflight"})

# States of a held message.
PENDING, WRITTEN, DELETED, TOO_LARGE, UNAVAILABLE = "pending", "written", "deleted", "too_large", "unavailable"


class Writer(Protocol):
    """What a poller needs from the raw-topic writer (``RawWriter``; the benchmark's baseline writes nowhere)."""

    async def write(self, value: bytes, *, timeout_s: float, signed: bool = ..., key_id: str | None = ...,
                    received_ms: int | None = ...) -> None: ...


class Fatal(Exception):
    """Retrying cannot help (no credentials, access denied, no such queue): exit non-zero."""


# -- queues -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Queue:
    url: str
    name: str  #: the metrics label and the name in logs: the queue's name, never the account id
    endpoint_url: str | None  #: None: the regional AWS endpoint botocore resolves
    region: str | None


_AWS_HOST = re.compile(r"^(?:sqs[.-](?P<a>[a-z0-9-]+)|(?P<b>[a-z0-9-]+)\.queue)\.amazonaws\.com(?:\.cn)?$")


def queues_of(config: Config) -> list[Queue]:
    """The configured queues: their label, endpoint and region (from the URL when it is an AWS one)."""
    sqs = config.sqs
    if not sqs.queue_urls:
        raise ConfigError("sqs.queue_urls is empty: set the queue(s) to drain (env BRIDGE_SQS_QUEUE_URLS, "
                          "comma-separated), e.g. https://sqs.us-east-1.amazonaws.com/123456789012/canvas-live-events")
    out: list[Queue] = []
    names: set[str] = set()
    for url in sqs.queue_urls:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        name = parts.path.rstrip("/").rsplit("/", 1)[-1]
        label, n = name, 2
        while label in names:  # the same name in two accounts or regions
            label, n = f"{name}-{n}", n + 1
        names.add(label)
        aws = _AWS_HOST.match(host)
        url_region = (aws.group("a") or aws.group("b")) if aws else None
        if url_region == "us-east-1" and host.startswith("queue."):
            url_region = None
        endpoint = sqs.endpoint_url.rstrip("/") or (None if host.endswith((".amazonaws.com", ".amazonaws.com.cn"))
                                                    else f"{parts.scheme}://{parts.netloc}")
        out.append(Queue(url, label, endpoint, sqs.region or url_region))
    return out


def error_kind(exc: BaseException) -> str:
    """A bounded name for an SQS failure (the ``error`` label of the receive errors)."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _THROTTLED or status == 429:
            return "throttled"
        if code in _MISSING:
            return "missing"
        if code in _DENIED or status in (401, 403):
            return "denied"
        if status >= 500:
            return "server"
        return "other"
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return "denied"
    if isinstance(exc, BotoConnectionError | HTTPClientError | OSError | TimeoutError):
        return "unreachable"
    return "other"


def describe(exc: BaseException) -> str:
    """One line for a log: the error's type and message (botocore messages carry no secret)."""
    return f"{type(exc).__name__}: {exc}"[:300]


# -- one poller -------------------------------------------------------------------------------


@dataclass(slots=True)
class Held:
    """A received message until it is deleted or left for redelivery."""

    message_id: str
    receipt: str
    body: bytes
    received_ms: int
    state: str = PENDING


@dataclass(slots=True)
class Poller:
    """One receive -> write -> delete loop on one queue (module docstring)."""

    ingest: SqsIngest
    queue: Queue
    client: SQSClient
    backoff: float = field(init=False, default=0.0)

    async def run(self) -> None:
        while not self.ingest.should_exit:
            batch = await self._next_batch()
            if batch:
                await self.handle(batch)

    async def _next_batch(self) -> list[Held]:
        """Wait for Kafka, then receive; SIGTERM cancels this part (nothing is held yet)."""
        with anyio.CancelScope() as scope:
            self.ingest.receive_scopes[scope] = False
            try:
                if self.ingest.should_exit:
                    return []
                await self.ingest.kafka_ok.wait()
                self.ingest.receive_scopes[scope] = True
                return await self._receive()
            finally:
                del self.ingest.receive_scopes[scope]
        return []

    async def _receive(self) -> list[Held]:
        sqs, name = self.ingest.config.sqs, self.queue.name
        try:
            response = await self.client.receive_message(
                QueueUrl=self.queue.url, MaxNumberOfMessages=sqs.max_messages, WaitTimeSeconds=sqs.wait_time_s,
                VisibilityTimeout=sqs.visibility_timeout_s, MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        except SQS_ERRORS as exc:
            kind = error_kind(exc)
            metrics.SQS_RECEIVE_ERRORS.labels(name, kind).inc()
            delivery = self.ingest.config.delivery
            self.backoff = min(self.backoff * 2, delivery.retry_backoff_max_s) or delivery.retry_backoff_initial_s
            self.ingest.receive_failed(self.queue, kind, exc, self.backoff)
            await anyio.sleep(self.backoff)
            return []
        self.backoff = 0.0
        self.ingest.receive_ok(self.queue)
        messages = response.get("Messages", [])
        if not messages:
            return []
        now = time.time()
        received_ms = int(now * 1000)
        metrics.SQS_RECEIVED.labels(name).inc(len(messages))
        metrics.SQS_LAST_MESSAGE.labels(name).set(now)
        redelivered = sum(1 for m in messages if m.get("Attributes", {}).get("ApproximateReceiveCount", "1") != "1")
        if redelivered:
            metrics.SQS_REDELIVERED.labels(name).inc(redelivered)
        return [Held(m.get("MessageId", "?"), m["ReceiptHandle"], m.get("Body", "").encode("utf-8", "surrogatepass"),
                     received_ms) for m in messages]

    async def handle(self, batch: list[Held]) -> None:
        """Write the batch, delete what was acknowledged; account for what is left in the queue."""
        name = self.queue.name
        started = time.perf_counter()
        in_flight = metrics.SQS_IN_FLIGHT.labels(name)
        in_flight.inc(len(batch))
        self.ingest.held += len(batch)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._keep_invisible, batch)
                async with anyio.create_task_group() as writes:
                    for held in batch:
                        writes.start_soon(self._write, held)
                tg.cancel_scope.cancel()
            written = [h for h in batch if h.state == WRITTEN]
            if written:
                await self._delete(written)
                metrics.SQS_HOLD_SECONDS.labels(name).observe(time.perf_counter() - started)
        finally:
            # Cancelled (the drain ran out of time): give back at once what was not deleted.
            unfinished = [h for h in batch if h.state in (PENDING, WRITTEN)] if self.ingest.drain_expired else []
            if unfinished:
                with anyio.CancelScope(shield=True), anyio.move_on_after(2.0):
                    await self._change_visibility(unfinished, 0)
            released = {id(h) for h in unfinished}
            for held in batch:
                if id(held) in released:
                    metrics.SQS_LEFT.labels(name, "draining").inc()
                elif held.state in (TOO_LARGE, UNAVAILABLE):
                    metrics.SQS_LEFT.labels(name, held.state).inc()
            in_flight.dec(len(batch))
            self.ingest.held -= len(batch)

    async def _write(self, held: Held) -> None:
        try:
            await self.ingest.writer.write(held.body, timeout_s=self.ingest.config.sqs.write_timeout_s,
                                           received_ms=held.received_ms)
        except TooLarge as exc:
            held.state = TOO_LARGE
            log.warning("message %s of queue %s left in the queue: %s; its redrive policy moves it to the "
                        "queue's dead-letter queue after maxReceiveCount receives",
                        held.message_id, self.queue.name, exc)
        except WriteError as exc:
            held.state = UNAVAILABLE
            self.ingest.kafka_failed(str(exc))
        else:
            held.state = WRITTEN
            metrics.SQS_WRITTEN.labels(self.queue.name).inc()

    async def _keep_invisible(self, batch: list[Held]) -> None:
        """Every half visibility timeout, extend the messages not yet deleted nor failed."""
        timeout = self.ingest.config.sqs.visibility_timeout_s
        while True:
            await anyio.sleep(timeout / 2)
            waiting = [h for h in batch if h.state in (PENDING, WRITTEN)]
            if not waiting:
                return
            extended = await self._change_visibility(waiting, timeout)
            metrics.SQS_VISIBILITY_EXTENSIONS.labels(self.queue.name).inc(extended)

    async def _change_visibility(self, held: Sequence[Held], timeout_s: int) -> int:
        """ChangeMessageVisibilityBatch, best effort; the number of messages changed."""
        changed = 0
        for start in range(0, len(held), 10):
            chunk = held[start:start + 10]
            try:
                response = await self.client.change_message_visibility_batch(
                    QueueUrl=self.queue.url,
                    Entries=[{"Id": str(i), "ReceiptHandle": h.receipt, "VisibilityTimeout": timeout_s}
                             for i, h in enumerate(chunk)],
                )
            except SQS_ERRORS as exc:
                log.warning("cannot change the visibility of %d messages of queue %s (%s)", len(chunk),
                            self.queue.name, describe(exc))
                continue
            changed += len(response.get("Successful", []))
        return changed

    async def _delete(self, written: list[Held]) -> None:
        """DeleteMessageBatch, retried; what cannot be deleted is received (and written) again."""
        name, delivery = self.queue.name, self.ingest.config.delivery
        pending = {str(i): h for i, h in enumerate(written)}
        backoff = delivery.retry_backoff_initial_s
        why = ""
        for attempt in range(DELETE_ATTEMPTS):
            if attempt:
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, delivery.retry_backoff_max_s)
            ids = list(pending)
            for start in range(0, len(ids), 10):
                chunk = ids[start:start + 10]
                try:
                    response = await self.client.delete_message_batch(
                        QueueUrl=self.queue.url,
                        Entries=[{"Id": i, "ReceiptHandle": pending[i].receipt} for i in chunk])
                except SQS_ERRORS as exc:
                    why = describe(exc)
                    continue
                deleted = 0
                for ok in response.get("Successful", []):
                    held = pending.pop(ok["Id"], None)
                    if held is not None:
                        held.state = DELETED
                        deleted += 1
                metrics.SQS_DELETED.labels(name).inc(deleted)
                for failed in response.get("Failed", []):
                    why = f"{failed.get('Code')}: {failed.get('Message', '')}"[:300]
                    if failed.get("SenderFault") or failed.get("Code") in _RECEIPT_GONE:
                        pending.pop(failed["Id"], None)  # retrying cannot help
            if not pending:
                break
        failed_count = sum(1 for h in written if h.state == WRITTEN)
        if failed_count:
            metrics.SQS_DELETE_ERRORS.labels(name).inc(failed_count)
            log.warning("%d written messages of queue %s could not be deleted (%s): they will be received and "
                        "written again, and the bridge suppresses the copies", failed_count, name, why)


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

    def handle_exit(self) -> None:
        if self.should_exit:
            log.warning("second signal: forcing exit")
            os._exit(EXIT_FORCED)
        log.info("signal received: no more receiving; finishing the %d messages held (at most %.0fs); a "
                 "second signal forces exit", self.held, self.config.delivery.drain_timeout_s)
        self.stop()
        # The hard bound of the whole drain, flushing the producer included: a timer of the event
        # loop, so that it fires whatever the tasks are doing (a shielded close too).
        asyncio.get_running_loop().call_later(self.config.delivery.drain_timeout_s + 1.0, self._drain_overran)

    def _drain_overran(self) -> None:
        log.error("shutdown did not finish within delivery.drain_timeout_s=%.0fs; exiting",
                  self.config.delivery.drain_timeout_s)
        logging.shutdown()
        os._exit(EXIT_DRAIN_TIMEOUT)

    def stop(self) -> None:
        """Start the drain: no more receiving (a long poll still waiting is cancelled); finish what is held."""
        self.drain_deadline = time.monotonic() + self.config.delivery.drain_timeout_s
        self.should_exit = True
        self.exit_requested.set()
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

    async def queue_stats(self, clients: dict[str, SQSClient]) -> None:
        states: dict[QueueAttributeFilterType, str] = {
            "ApproximateNumberOfMessages": "visible", "ApproximateNumberOfMessagesNotVisible": "in_flight",
            "ApproximateNumberOfMessagesDelayed": "delayed"}
        while True:
            for queue in self.queues:
                try:
                    attrs = (await clients[queue.name].get_queue_attributes(
                        QueueUrl=queue.url, AttributeNames=list(states)))["Attributes"]
                except SQS_ERRORS:
                    continue  # the pollers report SQS errors
                for attr, state in states.items():
                    if attr in attrs:
                        metrics.SQS_QUEUE_MESSAGES.labels(queue.name, state).set(float(attrs[attr]))
            await anyio.sleep(QUEUE_STATS_INTERVAL_S)

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
            tg.start_soon(self.queue_stats, clients)
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
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, ingest.handle_exit)
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
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
