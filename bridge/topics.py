"""``canvas-bridge topics``: every topic canvas-bridge reads or writes, for clusters that manage
topics outside the bridge (``topics.create = false``, GitOps, Strimzi ``KafkaTopic`` resources).

The list comes from the catalog and the config: the raw topic (written by ingest, read by
``run``), one typed topic per catalog event type of each format, the dead-letter topic and, when
the config routes to it, the catch-all topic. Each comes with recommended settings. Output as a
plain list, as ``kafka-topics.sh --create`` commands, or as Strimzi ``KafkaTopic`` manifests;
``--check`` compares with a running cluster and exits 1 naming what is missing.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass, field

from bridge.config import Config
from bridge.kafka import MAX_DEAD_LETTER_BYTES

DAY_MS = 24 * 3600 * 1000
#: Strimzi's API version for KafkaTopic (served by every Strimzi release since 0.22).
STRIMZI_API_VERSION = "kafka.strimzi.io/v1beta2"


@dataclass(frozen=True, slots=True)
class Recommendations:
    raw_partitions: int = 6
    partitions: int = 3
    replication_factor: int = 3
    retention_days: int = 7
    dead_letter_retention_days: int = 30


@dataclass(frozen=True, slots=True)
class PlannedTopic:
    name: str
    role: str  # raw | typed | caliper | dead_letter | catch_all
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)


def planned_topics(config: Config, rec: Recommendations | None = None) -> list[PlannedTopic]:
    """Every topic of this config, raw first, then dead letters, catch-all and typed topics by name."""
    from bridge.events import CANVAS_EVENTS
    from bridge.events.caliper import CALIPER_EVENTS

    rec = rec or Recommendations()
    t = config.topics
    retention = {"retention.ms": str(rec.retention_days * DAY_MS)}
    out = [
        PlannedTopic(config.raw_topic, "raw", rec.raw_partitions, rec.replication_factor, dict(retention)),
        PlannedTopic(t.dead_letter, "dead_letter", rec.partitions, rec.replication_factor, {
            "retention.ms": str(rec.dead_letter_retention_days * DAY_MS),
            # Dead letters carry the original bytes, oversized ones included.
            "max.message.bytes": str(MAX_DEAD_LETTER_BYTES + 65536),
        }),
    ]
    if t.unknown_events == "catch_all" or t.missing == "catch_all":
        out.append(PlannedTopic(t.catch_all, "catch_all", rec.partitions, rec.replication_factor, dict(retention)))
    typed = [(t.prefix + name, "typed") for name in CANVAS_EVENTS]
    typed += [(t.caliper_prefix + name, "caliper") for name in CALIPER_EVENTS]
    out += [PlannedTopic(name, role, rec.partitions, rec.replication_factor, dict(retention))
            for name, role in sorted(typed)]
    return out


def as_list(topics: list[PlannedTopic]) -> str:
    width = max(len(tp.name) for tp in topics)
    lines = []
    for tp in topics:
        settings = " ".join(f"{k}={v}" for k, v in sorted(tp.configs.items()))
        lines.append(f"{tp.name:<{width}}  {tp.role:<11}  partitions={tp.partitions} "
                     f"replication_factor={tp.replication_factor} {settings}".rstrip())
    return "\n".join(lines) + "\n"


def as_kafka_topics(topics: list[PlannedTopic]) -> str:
    lines = ["#!/bin/sh", "# canvas-bridge topics, for Kafka's own tool. BOOTSTRAP=host:port sh this-file",
             "set -e", ': "${BOOTSTRAP:?set BOOTSTRAP to the brokers, e.g. broker:9092}"']
    for tp in topics:
        parts = ["kafka-topics.sh", "--bootstrap-server", '"$BOOTSTRAP"', "--create", "--if-not-exists",
                 "--topic", shlex.quote(tp.name), "--partitions", str(tp.partitions),
                 "--replication-factor", str(tp.replication_factor)]
        for key, value in sorted(tp.configs.items()):
            parts += ["--config", shlex.quote(f"{key}={value}")]
        lines.append(" ".join(parts))
    return "\n".join(lines) + "\n"


_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def k8s_name(topic: str) -> str:
    """A Kubernetes object name for a topic: DNS-1123 (lower case, no ``_``); a hash keeps it unique."""
    name = re.sub(r"[^a-z0-9.-]", "-", topic.lower()).strip("-.") or "topic"
    if name != topic:
        name = f"{name[:243]}-{hashlib.sha256(topic.encode()).hexdigest()[:8]}"
    return name[:253]


def as_strimzi(topics: list[PlannedTopic], cluster: str, namespace: str | None = None) -> str:
    """Strimzi ``KafkaTopic`` manifests, one YAML document each (strings JSON-quoted: valid YAML)."""
    docs = []
    for tp in topics:
        meta = [f"  name: {k8s_name(tp.name)}"]
        if namespace:
            meta.append(f"  namespace: {json.dumps(namespace)}")
        meta += ["  labels:", f"    strimzi.io/cluster: {json.dumps(cluster)}",
                 "    app.kubernetes.io/part-of: canvas-bridge",
                 f"    canvas-bridge/role: {tp.role.replace('_', '-')}"]
        spec = [f"  topicName: {json.dumps(tp.name)}", f"  partitions: {tp.partitions}",
                f"  replicas: {tp.replication_factor}"]
        if tp.configs:
            spec.append("  config:")
            spec += [f"    {key}: {json.dumps(value)}" for key, value in sorted(tp.configs.items())]
        docs.append("\n".join(["---", f"apiVersion: {STRIMZI_API_VERSION}", "kind: KafkaTopic", "metadata:",
                               *meta, "spec:", *spec]))
    return "\n".join(docs) + "\n"


async def missing_topics(config: Config, topics: list[PlannedTopic]) -> tuple[list[str], list[str]]:
    """(missing, notes) against the cluster of ``config.kafka``: notes name partition-count differences."""
    from aiokafka.admin import AIOKafkaAdminClient

    from bridge.kafka import security_kwargs

    k = config.kafka
    admin = AIOKafkaAdminClient(bootstrap_servers=k.bootstrap_servers, client_id=f"{k.client_id}-topics",
                                request_timeout_ms=k.request_timeout_ms, **security_kwargs(config))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        present = [tp for tp in topics if tp.name in existing]
        described = await admin.describe_topics([tp.name for tp in present]) if present else []
    finally:
        await admin.close()
    counts = {d["topic"]: len(d["partitions"]) for d in described if d.get("error_code", 0) == 0}
    missing = [tp.name for tp in topics if tp.name not in existing]
    notes = [f"{tp.name}: {counts[tp.name]} partitions (recommended {tp.partitions})"
             for tp in present if tp.role == "raw" and counts.get(tp.name, tp.partitions) < tp.partitions]
    return missing, notes
