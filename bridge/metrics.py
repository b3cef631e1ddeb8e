"""Every Prometheus metric of canvas-bridge, in one place.

Naming follows Prometheus conventions: ``canvas_bridge_`` prefix, ``_total`` counters, base
units (``_seconds``). Label values are bounded: event names come from the catalog (events
outside it are counted under ``event_name="_generic"``), reasons from a fixed list,
partitions from the raw topic. Never a user id or any event content.

The hot path does not touch these per event: the service counts per batch and adds once.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from bridge import __version__

GENERIC = "_generic"
OTHER_TOPIC = "_other"

EVENTS_CONSUMED = Counter(
    "canvas_bridge_events_consumed_total",
    "Raw records consumed from the raw topic.",
)
EVENTS_PUBLISHED = Counter(
    "canvas_bridge_events_published_total",
    "Typed records acknowledged by the broker, by event name and format (canvas, caliper).",
    ["event_name", "format"],
)
DEAD_LETTERS = Counter(
    "canvas_bridge_dead_letters_total",
    "Raw records sent to the dead-letter topic and acknowledged, by reason.",
    ["reason"],
)
REFUSED_RECORDS = Counter(
    "canvas_bridge_refused_records_total",
    "Typed records the broker refuses (or would refuse: checked before sending), rerouted and acknowledged, "
    "by reason and intended topic (catalog topics; others are counted as topic=\"_other\").",
    ["reason", "topic"],
)
TIMESTAMPS_CLAMPED = Counter(
    "canvas_bridge_timestamps_clamped_total",
    "Typed records whose event time is outside the range the topic accepts, sent with the time of processing "
    "as the Kafka timestamp (decode.out_of_range_time = clamp; the value keeps event_time).",
)
DUPLICATES_SUPPRESSED = Counter(
    "canvas_bridge_duplicates_suppressed_total",
    "Typed records not published because their dedupe key was published within the window.",
    ["event_name"],
)
GENERIC_EVENTS = Counter(
    "canvas_bridge_generic_events_total",
    "Events whose type is outside the catalog, published with a generic body.",
    ["format"],
)
UNKNOWN_FIELDS = Counter(
    "canvas_bridge_unknown_fields_total",
    "Fields the catalog does not know, carried through to the output, by event name.",
    ["event_name"],
)
MALFORMED_FIELDS = Counter(
    "canvas_bridge_malformed_fields_total",
    "Secondary timestamps that could not be parsed, carried as they came, by event name.",
    ["event_name"],
)
MISSING_FIELDS = Counter(
    "canvas_bridge_missing_fields_total",
    "Fields Canvas sends on every event of the type that an event lacked (published as null), by event name.",
    ["event_name"],
)
MISFILED_EVENTS = Counter(
    "canvas_bridge_misfiled_events_total",
    "Events whose body fits exactly one other event type than the declared one; published there.",
    ["event_name"],
)
BATCH_DURATION = Histogram(
    "canvas_bridge_batch_duration_seconds",
    "Time to process one consumed batch: decode, publish and wait for acks (its commit follows in the background).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BATCH_SIZE = Histogram(
    "canvas_bridge_batch_size_records",
    "Raw records per consumed batch.",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
EVENT_PROCESSING = Histogram(
    "canvas_bridge_event_processing_seconds",
    "Core time per event (decode, normalize, key, encode), averaged over each batch.",
    buckets=(1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2),
)
EVENT_FRESHNESS = Histogram(
    "canvas_bridge_event_freshness_seconds",
    "Publish acknowledgement time minus the event's event_time (sampled, up to 64 per batch).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400),
)
CONSUMER_LAG = Gauge(
    "canvas_bridge_consumer_lag_records",
    "Records behind the high watermark, per assigned raw partition.",
    ["topic", "partition"],
)
COMMIT_DURATION = Histogram(
    "canvas_bridge_commit_duration_seconds",
    "Time to commit consumed offsets (or the transaction, in exactly-once mode).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
COMMIT_FAILURES = Counter(
    "canvas_bridge_commit_failures_total",
    "Offset or transaction commits that failed (the batch is then redelivered).",
)
PUBLISH_RETRIES = Counter(
    "canvas_bridge_publish_retries_total",
    "Batches whose publication failed and was retried after a backoff.",
)
PRODUCERS_FENCED = Counter(
    "canvas_bridge_producers_fenced_total",
    "Exactly-once: partition producers fenced by the partition's next owner (this replica had lost the "
    "partition, e.g. frozen past its session timeout); their batch was abandoned and the replica rejoined.",
)
TRANSACTIONAL_PRODUCERS = Gauge(
    "canvas_bridge_transactional_producers",
    "Exactly-once: transactional producers open, one per assigned raw partition.",
)
REBALANCES = Counter(
    "canvas_bridge_rebalances_total",
    "Consumer group rebalances seen by this replica, by what happened to its partitions.",
    ["change"],
)
ASSIGNED_PARTITIONS = Gauge(
    "canvas_bridge_assigned_partitions",
    "Raw topic partitions assigned to this replica.",
)
RECORDS_IN_FLIGHT = Gauge(
    "canvas_bridge_records_in_flight",
    "Raw records consumed but not yet committed.",
)
READY = Gauge(
    "canvas_bridge_ready",
    "1 when partitions are assigned and the broker is reachable (the /readyz answer), else 0.",
)
LAST_PUBLISH = Gauge(
    "canvas_bridge_last_publish_timestamp_seconds",
    "Unix time of the last acknowledged typed record or dead letter.",
)
INGEST_WRITTEN = Counter(
    "canvas_bridge_ingest_records_written_total",
    "Raw records an ingest path wrote and the broker acknowledged, by source (https, caliper, sqs).",
    ["source"],
)
#: Seconds, 1 ms to 10 s: an acknowledgement or a request.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
INGEST_WRITE_FAILURES = Counter(
    "canvas_bridge_ingest_write_failures_total",
    "Raw records an ingest path could not write (so not acknowledged to the sender), by source and "
    "reason (too_large, unavailable).",
    ["source", "reason"],
)
INGEST_ACK_SECONDS = Histogram(
    "canvas_bridge_ingest_ack_seconds",
    "Time from sending a raw record to the broker's acknowledgement, by ingest source.",
    ["source"],
    buckets=REQUEST_BUCKETS,
)
INGEST_REQUESTS = Counter(
    "canvas_bridge_ingest_requests_total",
    "Requests to the ingest endpoints, by endpoint (events, caliper) and outcome (accepted, unauthorized, "
    "bad_request, too_large, unavailable, unsupported_media_type, unsupported_version).",
    ["endpoint", "outcome"],
)
INGEST_REQUEST_SECONDS = Histogram(
    "canvas_bridge_ingest_request_seconds",
    "Time to answer an ingest request, from its body's arrival to the answer (the broker's ack included).",
    ["endpoint"],
    buckets=REQUEST_BUCKETS,
)
INGEST_IN_FLIGHT = Gauge(
    "canvas_bridge_ingest_requests_in_flight",
    "Ingest requests waiting for the broker's acknowledgement (503 beyond ingest.max_in_flight).",
)
JWKS_REFRESHES = Counter(
    "canvas_bridge_ingest_jwks_refreshes_total",
    "Fetches of the JWKS, by trigger (startup, periodic, unknown_kid) and result (ok, failed).",
    ["trigger", "result"],
)
JWKS_KEYS = Gauge(
    "canvas_bridge_ingest_jwks_keys",
    "RS256 signing keys in the cached JWKS.",
)
JWKS_AGE = Gauge(
    "canvas_bridge_ingest_jwks_age_seconds",
    "Seconds since the JWKS was last fetched successfully (-1 before the first success).",
)
HTTP_CONNECTIONS = Gauge(
    "canvas_bridge_http_connections",
    "Open HTTP connections, by server (probes, ingest).",
    ["server"],
)
HTTP_CLOSE_REASONS = ("idle_timeout", "request_timeout", "evicted", "over_limit", "header_too_large")
HTTP_CONNECTIONS_CLOSED = Counter(
    "canvas_bridge_http_connections_closed_total",
    "HTTP connections the server closed to protect itself, by server and reason (idle_timeout: no request "
    "in time; request_timeout: a request not whole in time; evicted: the oldest idle one, over the connection "
    "limit; over_limit: a new one while every connection was busy; header_too_large).",
    ["server", "reason"],
)
HTTP_ACCEPT_ERRORS = Counter(
    "canvas_bridge_http_accept_errors_total",
    "Failures to accept an HTTP connection (EMFILE: the file-descriptor limit; ENFILE, ENOBUFS, ENOMEM).",
    ["error"],
)
# -- SQS ingest (canvas-bridge ingest-sqs) --------------------------------------------------------
# Label ``queue`` is the queue's name (the last part of its URL), never the URL: it carries the
# AWS account id. The queues come from the config, so the label values are bounded.
SQS_RECEIVED = Counter(
    "canvas_bridge_sqs_messages_received_total",
    "SQS messages received, by queue.",
    ["queue"],
)
SQS_REDELIVERED = Counter(
    "canvas_bridge_sqs_messages_redelivered_total",
    "SQS messages received more than once (ApproximateReceiveCount > 1), by queue.",
    ["queue"],
)
SQS_WRITTEN = Counter(
    "canvas_bridge_sqs_messages_written_total",
    "SQS messages written to the raw topic and acknowledged by the broker, by queue.",
    ["queue"],
)
SQS_DELETED = Counter(
    "canvas_bridge_sqs_messages_deleted_total",
    "SQS messages deleted from their queue (each after its raw record was acknowledged), by queue.",
    ["queue"],
)
SQS_LEFT = Counter(
    "canvas_bridge_sqs_messages_left_total",
    "SQS messages left in their queue for redelivery, by queue and reason (unavailable: Kafka did not "
    "acknowledge; too_large: over limits.max_message_bytes; draining: released at shutdown).",
    ["queue", "reason"],
)
SQS_RECEIVE_ERRORS = Counter(
    "canvas_bridge_sqs_receive_errors_total",
    "Failed ReceiveMessage calls, by queue and error (throttled, unreachable, denied, missing, server, other).",
    ["queue", "error"],
)
SQS_DELETE_ERRORS = Counter(
    "canvas_bridge_sqs_delete_errors_total",
    "SQS messages written but not deleted (the delete failed after retries): they are received and "
    "written again, and the bridge suppresses the copy. By queue.",
    ["queue"],
)
SQS_VISIBILITY_EXTENSIONS = Counter(
    "canvas_bridge_sqs_visibility_extensions_total",
    "Messages whose visibility timeout was extended while their write was still waiting, by queue.",
    ["queue"],
)
SQS_IN_FLIGHT = Gauge(
    "canvas_bridge_sqs_messages_in_flight",
    "SQS messages received and not yet deleted or left for redelivery, by queue.",
    ["queue"],
)
SQS_HOLD_SECONDS = Histogram(
    "canvas_bridge_sqs_message_seconds",
    "Time from receiving a batch of SQS messages to deleting it (its writes acknowledged), by queue.",
    ["queue"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SQS_LAST_MESSAGE = Gauge(
    "canvas_bridge_sqs_last_message_timestamp_seconds",
    "Unix time of the last message received from the queue (the process start time until the first).",
    ["queue"],
)
SQS_QUEUE_MESSAGES = Gauge(
    "canvas_bridge_sqs_queue_messages",
    "The queue's own approximate message counts (GetQueueAttributes, every 15 s), by queue and state "
    "(visible: waiting; in_flight: received by a consumer, not deleted; delayed).",
    ["queue", "state"],
)
SQS_READY = Gauge(
    "canvas_bridge_sqs_ready",
    "1 when ingest-sqs is receiving: the queues answer and Kafka is reachable (the /readyz answer), else 0.",
)
SQS_RECEIVE_ERROR_KINDS = ("throttled", "unreachable", "denied", "missing", "server", "other")
SQS_LEFT_REASONS = ("unavailable", "too_large", "draining")


def declare_sqs(queues: Iterable[str], started_at: float) -> None:
    """The SQS series of each queue, created up front (zeros, not gaps)."""
    for queue in queues:
        for counter in (SQS_RECEIVED, SQS_REDELIVERED, SQS_WRITTEN, SQS_DELETED, SQS_DELETE_ERRORS,
                        SQS_VISIBILITY_EXTENSIONS):
            counter.labels(queue)
        for reason in SQS_LEFT_REASONS:
            SQS_LEFT.labels(queue, reason)
        for error in SQS_RECEIVE_ERROR_KINDS:
            SQS_RECEIVE_ERRORS.labels(queue, error)
        SQS_IN_FLIGHT.labels(queue).set(0)
        SQS_LAST_MESSAGE.labels(queue).set(started_at)
# -- end SQS ingest --------------------------------------------------------------------------------


BUILD = Info(
    "canvas_bridge_build",
    "Build information: versions of canvas-bridge, Python and the Kafka client.",
)


def set_build_info(kafka_client: str, guarantee: str) -> None:
    BUILD.info(
        {
            "version": __version__,
            "python": platform.python_version(),
            "aiokafka": kafka_client,
            "delivery_guarantee": guarantee,
        }
    )


def declare_ingest(source: str) -> None:
    """The ingest series of one source, created up front (zeros, not gaps)."""
    INGEST_WRITTEN.labels(source)
    for reason in ("too_large", "unavailable"):
        INGEST_WRITE_FAILURES.labels(source, reason)


def declare_ingest_http() -> None:
    """The series of the HTTPS ingest endpoints, created up front."""
    for endpoint in ("events", "caliper"):
        INGEST_REQUEST_SECONDS.labels(endpoint)
        for outcome in ("accepted", "unauthorized", "bad_request", "too_large", "unavailable"):
            INGEST_REQUESTS.labels(endpoint, outcome)
    for trigger in ("startup", "periodic", "unknown_kid"):
        for result in ("ok", "failed"):
            JWKS_REFRESHES.labels(trigger, result)
    JWKS_AGE.set(-1)


def declare(event_names: Iterable[tuple[str, str]], reasons: Iterable[str],
            refusal_reasons: Iterable[str] = ()) -> None:
    """Create the labelled series up front, so dashboards and rates see zeros, not gaps."""
    for name, fmt in event_names:
        EVENTS_PUBLISHED.labels(name, fmt)
        DUPLICATES_SUPPRESSED.labels(name)
        UNKNOWN_FIELDS.labels(name)
        MISSING_FIELDS.labels(name)
    for reason in reasons:
        DEAD_LETTERS.labels(reason)
    for reason in refusal_reasons:
        REFUSED_RECORDS.labels(reason, OTHER_TOPIC)
    for fmt in ("canvas", "caliper"):
        GENERIC_EVENTS.labels(fmt)
    for change in ("assigned", "revoked"):
        REBALANCES.labels(change)


class DecodeStrategies(Collector):
    """``canvas_bridge_decode_strategy_events_total{strategy}``: events each decoding strategy took.

    The core counts on itself (``Core.strategy_counts``: plain integers, no I/O in the core);
    this collector reads those counts when Prometheus scrapes, so the hot path never touches a
    metric. Strategies: ``exact`` (the Struct), ``twin`` (integer ids, other timestamp forms),
    ``lenient`` (unknown fields carried, malformed timestamps flagged), ``generic`` (no Struct).
    """

    def __init__(self) -> None:
        self._sources: list[Callable[[], dict[str, int]]] = []

    def watch(self, strategy_counts: Callable[[], dict[str, int]]) -> None:
        """Add a core's ``strategy_counts`` to the sums (once per core, at start)."""
        self._sources.append(strategy_counts)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "canvas_bridge_decode_strategy_events",
            "Events the core decoded, by the decoding strategy that took them (exact, twin, lenient, generic).",
            labels=["strategy"],
        )
        totals: dict[str, int] = dict.fromkeys(("exact", "twin", "lenient", "generic"), 0)
        for counts in self._sources:
            for strategy, n in counts().items():
                totals[strategy] = totals.get(strategy, 0) + n
        for strategy, n in totals.items():
            family.add_metric([strategy], n)
        yield family


DECODE_STRATEGIES = DecodeStrategies()
REGISTRY.register(DECODE_STRATEGIES)
