"""Kafka client wiring: consumer and producer built from the config, security included.

Nothing Canvas-specific lives here. Secrets are read from the config or from files at start
and are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import errors as kerr
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import collect_hosts, create_conn
from aiokafka.helpers import create_ssl_context

from bridge.config import Config, read_secret
from bridge.errors import FATAL, Backoff, Fatal, fatal

if TYPE_CHECKING:
    from bridge.transactions import PartitionProducers

#: The largest dead letter the bridge publishes (a raw value over limits.max_message_bytes is
#: still dead-lettered whole): the producer's request size and the dead-letter topic it creates
#: allow this much.
MAX_DEAD_LETTER_BYTES = 16 * 1024 * 1024


def security_kwargs(config: Config) -> dict[str, Any]:
    k = config.kafka
    kwargs: dict[str, Any] = {"security_protocol": k.security_protocol}
    if k.security_protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = tls_context(config)
    if k.security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = k.sasl_mechanism
        kwargs["sasl_plain_username"] = k.sasl_username
        kwargs["sasl_plain_password"] = read_secret(k.sasl_password, k.sasl_password_file)
    return kwargs


def tls_context(config: Config) -> ssl.SSLContext:
    k = config.kafka
    context: ssl.SSLContext = create_ssl_context(
        cafile=k.ssl_cafile or None,
        certfile=k.ssl_certfile or None,
        keyfile=k.ssl_keyfile or None,
        password=read_secret(k.ssl_key_password, k.ssl_key_password_file) or None,
    )
    context.check_hostname = k.ssl_check_hostname
    return context


def replica_id(config: Config) -> str:
    """This replica's stable identity: the setting, else the host name (a pod name in k8s)."""
    return config.delivery.replica_id or socket.gethostname()


def transactional_id(config: Config, tp: TopicPartition) -> str:
    """The transactional id of one raw partition: ``<prefix>-<group>:<topic>:<partition>``.

    Whoever owns the partition next starts a producer with the same id, which fences the producer
    of its previous owner (see bridge/transactions.py). A topic name cannot hold ``:``, so two
    (group, topic, partition) never share an id.
    """
    return f"{config.delivery.transactional_id_prefix}-{config.group_id}:{tp.topic}:{tp.partition}"


def request_rejoin(consumer: AIOKafkaConsumer) -> None:
    """Make the consumer rejoin its group at once (aiokafka has no public call for this).

    After its producer was fenced, a replica gives up the partition and asks the group again:
    the next assignment opens fresh producers.
    """
    consumer._coordinator.request_rejoin()


def make_consumer(config: Config) -> AIOKafkaConsumer:
    k = config.kafka
    exactly_once = config.delivery.guarantee == "exactly-once"
    return AIOKafkaConsumer(
        bootstrap_servers=k.bootstrap_servers,
        client_id=f"{k.client_id}-{replica_id(config)}",
        group_id=config.group_id,
        enable_auto_commit=False,
        auto_offset_reset=k.auto_offset_reset,
        isolation_level="read_committed" if exactly_once else "read_uncommitted",
        session_timeout_ms=k.session_timeout_ms,
        max_poll_interval_ms=k.max_poll_interval_ms,
        request_timeout_ms=k.request_timeout_ms + 5000,
        fetch_max_bytes=k.fetch_max_bytes,
        metadata_max_age_ms=15000,  # notice a raw topic created (or grown) after start-up
        max_partition_fetch_bytes=k.max_partition_fetch_bytes,
        # The broker answers a fetch once this much is there, or after the wait: fewer, fuller
        # fetches (and so fewer, fuller produce requests downstream) for at most the wait.
        fetch_min_bytes=k.fetch_min_bytes,
        fetch_max_wait_ms=k.fetch_max_wait_ms,
        **security_kwargs(config),
    )


def make_producer(config: Config, transactional_id: str | None = None, *, client_id: str | None = None,
                  largest_record: int | None = None) -> AIOKafkaProducer:
    """An idempotent producer (acks=all); transactional when given a transactional id.

    ``largest_record``: the largest record it must send. By default the largest dead letter (they
    carry the original bytes, oversized ones included); the raw-topic writer passes its own limit.
    """
    k = config.kafka
    kwargs: dict[str, Any] = {}
    if transactional_id is not None:
        kwargs["transactional_id"] = transactional_id
        kwargs["transaction_timeout_ms"] = config.delivery.transaction_timeout_ms
    if largest_record is None:
        largest_record = max(config.limits.max_message_bytes, MAX_DEAD_LETTER_BYTES)
        max_batch_size = k.max_batch_bytes
    else:
        max_batch_size = max(k.max_batch_bytes, largest_record + 65536)
    return AIOKafkaProducer(
        bootstrap_servers=k.bootstrap_servers,
        client_id=client_id or f"{k.client_id}-{replica_id(config)}",
        acks="all",
        enable_idempotence=True,
        compression_type=None if k.compression == "none" else k.compression,
        linger_ms=k.linger_ms,
        max_batch_size=max_batch_size,
        max_request_size=max(k.max_batch_bytes, largest_record) + 65536,
        request_timeout_ms=k.request_timeout_ms,
        **kwargs,
        **security_kwargs(config),
    )


log = logging.getLogger("bridge.kafka")
_TOPIC_ALREADY_EXISTS = 36
#: Kafka errors on CreateTopics that retrying cannot fix (authorization, policy).
_FATAL_CREATE_ERRORS = {29: "topic authorization failed", 31: "cluster authorization failed",
                        44: "rejected by the broker's create-topic policy"}


class TopicCreator:
    """Creates each output topic the first time it is needed (``topics.create``).

    Production clusters often disable broker-side auto-creation; the bridge creates its typed
    and dead-letter topics itself with ``topics.partitions`` partitions and
    ``topics.replication_factor`` replicas (0: min(3, number of brokers)).
    """

    def __init__(self, config: Config) -> None:
        self._config = config
        self._known: set[str] = set()
        #: Topics whose creation the broker refused (authorization, policy): their records follow
        #: ``topics.missing``. Any other topic found missing is only not visible yet (``creating``).
        self.refused: set[str] = set()
        self._admin: AIOKafkaAdminClient | None = None
        self._lock = asyncio.Lock()  # exactly-once sends a batch's shares concurrently

    async def ensure(self, topics: Iterable[str]) -> None:
        topics = set(topics)
        if not topics - self._known or not self._config.topics.create:
            return
        async with self._lock:
            await self._create(topics - self._known)

    def creating(self, topic: str) -> bool:
        """Whether a topic found missing is one the bridge creates (and not refused): the broker's
        metadata does not show it yet (another replica's creation, a broker behind the controller),
        or it was deleted. Its records wait; the next ``ensure`` creates it again, or waits for it."""
        if not self._config.topics.create or topic in self.refused:
            return False
        self._known.discard(topic)
        return True

    async def _create(self, missing: set[str]) -> None:
        if not missing:
            return
        admin = await self._client()
        existing = set(await admin.list_topics())
        to_create = sorted(missing - existing)
        if to_create:
            settings = self._config.topics
            rf = settings.replication_factor or max(1, min(3, len(admin._client.cluster.brokers())))
            dlq_config = {"max.message.bytes": str(MAX_DEAD_LETTER_BYTES + 65536)}
            response = await admin.create_topics([
                NewTopic(t, settings.partitions, rf, topic_configs=dlq_config if t == settings.dead_letter else None)
                for t in to_create
            ])
            refused = []
            for topic, code, *_ in response.topic_errors:
                if code in _FATAL_CREATE_ERRORS:
                    if topic == settings.dead_letter:  # where everything else falls back: cannot go on
                        raise TopicCreationError(f"creating topic {topic} failed: {_FATAL_CREATE_ERRORS[code]}")
                    # a typed topic: its records are rerouted (topics.missing), see bridge/refusals.py
                    refused.append(f"{topic} ({_FATAL_CREATE_ERRORS[code]})")
                    if len(self.refused) >= 100_000:  # bounded: a cleared one is refused again next time
                        self.refused.clear()
                    self.refused.add(topic)
                    to_create.remove(topic)
                    continue
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    # e.g. no live broker to place replicas on while one restarts: retried with backoff
                    raise kerr.KafkaError(f"creating topic {topic} failed with Kafka error code {code}")
            if refused:
                log.warning("cannot create %d topics; their records follow topics.missing = %s: %s",
                            len(refused), settings.missing, ", ".join(refused[:10]))
            # Already existing: another replica created it a moment ago, maybe not finished yet.
            created = [t for t, code, *_ in response.topic_errors if code in (0, _TOPIC_ALREADY_EXISTS)]
            if created:
                await self._wait_for_leaders(admin, created)
                ours = [t for t, code, *_ in response.topic_errors if code == 0]
                if ours:
                    log.info("created %d topics: %s", len(ours), ", ".join(ours[:10]))
        if len(self._known) < 100000:  # bounded, whatever the event names
            self._known |= missing

    @staticmethod
    async def _wait_for_leaders(admin: AIOKafkaAdminClient, topics: list[str]) -> None:
        """Until every partition of the new topics has a leader (else the first sends bounce); 30 s at most."""
        deadline = asyncio.get_running_loop().time() + 30.0
        while asyncio.get_running_loop().time() < deadline:
            described = await admin.describe_topics(topics)
            # a topic it may not describe (29) will not tell: bridge/topicinfo.py finds it forbidden
            if all(t["error_code"] == 29 or (t["error_code"] == 0 and t["partitions"]
                                             and all(p["leader"] >= 0 for p in t["partitions"]))
                   for t in described):
                return
            await asyncio.sleep(0.1)

    async def admin(self) -> AIOKafkaAdminClient:
        """The admin client, started on first use (shared with bridge/topicinfo.py)."""
        return await self._client()

    async def _client(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            k = self._config.kafka
            admin = AIOKafkaAdminClient(
                bootstrap_servers=k.bootstrap_servers, client_id=f"{k.client_id}-admin",
                request_timeout_ms=k.request_timeout_ms, **security_kwargs(self._config),
            )
            await admin.start()
            self._admin = admin
        return self._admin

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()
            self._admin = None


class TopicCreationError(Fatal):
    """The broker refused to create an output topic."""


class TlsRefused(Fatal):
    """The TLS handshake with a broker failed (untrusted certificate, missing client cert...)."""


async def check_credentials(config: Config) -> None:
    """Connect to each bootstrap broker once, surfacing what aiokafka's bootstrap swallows.

    aiokafka reports a refused SASL login or a failed TLS handshake only as "Unable to bootstrap",
    the same as a broker that is down; retrying would never help. A direct connection raises the
    real error: SASL failures as aiokafka's authentication errors, TLS ones as ``TlsRefused``.
    Returns quietly when a broker accepted us, or when none answered (then it is really down).
    """
    k, sec = config.kafka, security_kwargs(config)
    for host, port, _family in collect_hosts(k.bootstrap_servers):
        try:
            conn = await create_conn(
                host, port, client_id=f"{k.client_id}-check", request_timeout_ms=k.request_timeout_ms,
                ssl_context=sec.get("ssl_context"), security_protocol=k.security_protocol,
                sasl_mechanism=sec.get("sasl_mechanism", "PLAIN"),
                sasl_plain_username=sec.get("sasl_plain_username"),
                sasl_plain_password=sec.get("sasl_plain_password"),
            )
        except kerr.KafkaConnectionError as exc:
            if isinstance(exc.__cause__, ssl.SSLError):
                raise TlsRefused(f"the TLS handshake with {host}:{port} failed: {exc.__cause__}") from exc
            continue
        except ssl.SSLError as exc:
            raise TlsRefused(f"the TLS handshake with {host}:{port} failed: {exc}") from exc
        except (OSError, TimeoutError):
            continue
        conn.close()
        return


class Clients:
    """The Kafka clients of ``canvas-bridge run``, owned here and nowhere else.

    The consumer of the raw topic; the idempotent producer of at-least-once delivery, replaced by
    ``reset_producer`` when its sequence numbers broke; with exactly-once, the transactional
    producer of each assigned raw partition (``partitions``, bridge/transactions.py).
    """

    def __init__(self, config: Config) -> None:
        self._config = config
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.partitions: PartitionProducers | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    async def start(self, stopping: Callable[[], bool]) -> None:
        """Start the consumer and the producer, retrying while the broker is unreachable.

        Raises ``Fatal`` when the broker refuses our credentials or TLS handshake (retrying would
        never help), or when ``stopping()`` turns true before the broker answered.
        """
        config = self._config
        backoff = Backoff.of(config)
        while True:
            consumer, producer = make_consumer(config), make_producer(config)
            try:
                await producer.start()
                await consumer.start()
                break
            except FATAL as exc:
                await stop_quietly(consumer, producer)
                raise fatal(exc, "the broker refused the bridge: ") from exc
            except (kerr.KafkaError, OSError) as exc:
                await stop_quietly(consumer, producer)
                try:
                    await check_credentials(config)  # TlsRefused is Fatal: it passes
                except (*FATAL, kerr.UnsupportedSaslMechanismError) as auth:
                    raise fatal(auth, "the broker refused our credentials (authentication failed): ") from auth
                if stopping():
                    raise Fatal("stopped before the broker could be reached") from exc
                delay = backoff.next()
                log.warning("cannot reach Kafka at %s (%s: %s); retrying in %.1fs",
                            config.kafka.bootstrap_servers, type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
        self.consumer, self.producer = consumer, producer
        if config.delivery.guarantee == "exactly-once":
            from bridge.transactions import PartitionProducers  # it builds its producers with this module

            self.partitions = PartitionProducers(config, consumer)

    async def reset_producer(self) -> AIOKafkaProducer:
        """A new idempotent producer in place of the current one (a new producer id, new sequence
        numbers); the old one finishes what it was sent, then stops, in the background."""
        producer = make_producer(self._config)
        try:
            await producer.start()
        except BaseException:
            await stop_quietly(producer)
            raise
        old, self.producer = self.producer, producer
        if old is not None:
            task = asyncio.ensure_future(_retire(old))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        return producer

    async def stop(self, budget: Callable[[], float]) -> None:
        """Leave the group, flush and close everything; each step bounded by ``budget()`` seconds."""
        await stop_quietly(self.consumer, timeout_s=budget())
        await stop_quietly(self.producer, timeout_s=budget())
        if self.partitions is not None:
            await self.partitions.close()
        if self._retiring:
            bound = budget()
            try:
                await asyncio.wait_for(asyncio.gather(*self._retiring, return_exceptions=True), bound)
            except TimeoutError:
                log.warning("the replaced producers did not close within %.1fs; left behind", bound)


async def stop_quietly(*clients: Any, timeout_s: float = 30.0) -> None:
    """Stop each client (best effort: the process is leaving), a hanging one named in a warning."""
    for client in clients:
        if client is None:
            continue
        try:
            await asyncio.wait_for(client.stop(), timeout_s)
        except TimeoutError:
            log.warning("%s did not stop within %.1fs; left behind (the group notices by its session timeout)",
                        type(client).__name__, timeout_s)
        except Exception as exc:
            log.debug("stopping %s: %s", type(client).__name__, exc)


async def _retire(producer: AIOKafkaProducer) -> None:
    """Let a replaced producer finish what it was sent (its futures are awaited elsewhere), then stop it."""
    try:
        await asyncio.wait_for(producer.flush(), 60)
    except Exception as exc:
        log.debug("flushing a replaced producer: %s", exc)
    await stop_quietly(producer)
