"""``canvas-bridge topics``: every topic the bridge uses, for clusters that manage topics themselves."""

from __future__ import annotations

import re
import shlex

import yaml

from bridge.config import load_config
from bridge.events import CANVAS_EVENTS
from bridge.events.caliper import CALIPER_EVENTS
from bridge.kafka import MAX_DEAD_LETTER_BYTES
from bridge.topics import as_kafka_topics, as_list, as_strimzi, k8s_name, planned_topics
from tests.unit.test_cli import bridge

DNS_1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def test_every_catalog_event_type_of_both_formats_has_its_topic() -> None:
    config = load_config(env={})
    names = {tp.name for tp in planned_topics(config)}
    assert {f"canvas.{n}" for n in CANVAS_EVENTS} <= names
    assert {f"canvas.caliper.{n}" for n in CALIPER_EVENTS} <= names
    assert {"canvas.raw", "canvas.dlq"} <= names
    assert "canvas.unknown" not in names  # only when the config routes there
    assert len(names) == 2 + len(CANVAS_EVENTS) + len(CALIPER_EVENTS)


def test_topics_follow_the_config_prefixes_and_catch_all() -> None:
    config = load_config(env={"BRIDGE_TOPICS_PREFIX": "lms.", "BRIDGE_TOPICS_CALIPER_PREFIX": "lms.cal.",
                              "BRIDGE_TOPICS_DEAD_LETTER": "lms.dead", "BRIDGE_RAW_TOPIC": "lms.in",
                              "BRIDGE_TOPICS_UNKNOWN_EVENTS": "catch_all", "BRIDGE_TOPICS_CATCH_ALL": "lms.other"})
    by_role: dict[str, set[str]] = {}
    for tp in planned_topics(config):
        by_role.setdefault(tp.role, set()).add(tp.name)
    assert by_role["raw"] == {"lms.in"} and by_role["dead_letter"] == {"lms.dead"}
    assert by_role["catch_all"] == {"lms.other"}
    assert "lms.grade_change" in by_role["typed"] and "lms.cal.asset_accessed" in by_role["caliper"]


def test_the_dead_letter_topic_takes_the_largest_dead_letter() -> None:
    dlq = next(tp for tp in planned_topics(load_config(env={})) if tp.role == "dead_letter")
    assert int(dlq.configs["max.message.bytes"]) > MAX_DEAD_LETTER_BYTES


def test_kafka_topics_commands_create_each_topic_once_with_its_settings() -> None:
    planned = planned_topics(load_config(env={}))
    script = as_kafka_topics(planned).splitlines()
    commands = [shlex.split(line) for line in script if line.startswith("kafka-topics.sh")]
    assert len(commands) == len(planned)
    for tp, argv in zip(planned, commands, strict=True):
        assert argv[argv.index("--topic") + 1] == tp.name
        assert argv[argv.index("--partitions") + 1] == str(tp.partitions)
        configs = {argv[i + 1] for i, a in enumerate(argv) if a == "--config"}
        assert configs == {f"{k}={v}" for k, v in tp.configs.items()}
        assert "--if-not-exists" in argv


def test_strimzi_manifests_fit_the_kafkatopic_schema() -> None:
    """Structural check against Strimzi's KafkaTopic CRD (v1beta2): no maintained package ships the
    CRD schema to validate against offline, so the constraints are written out here."""
    planned = planned_topics(load_config(env={}))
    docs = list(yaml.safe_load_all(as_strimzi(planned, "prod-kafka", "kafka")))
    assert len(docs) == len(planned)
    names = set()
    for tp, doc in zip(planned, docs, strict=True):
        assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
        assert doc["apiVersion"] == "kafka.strimzi.io/v1beta2" and doc["kind"] == "KafkaTopic"
        meta = doc["metadata"]
        assert DNS_1123_SUBDOMAIN.match(meta["name"]) and len(meta["name"]) <= 253
        assert meta["namespace"] == "kafka"
        assert meta["labels"]["strimzi.io/cluster"] == "prod-kafka"
        assert all(LABEL_VALUE.match(v) and len(v) <= 63 for v in meta["labels"].values())
        names.add(meta["name"])
        spec = doc["spec"]
        assert set(spec) <= {"topicName", "partitions", "replicas", "config"}
        assert spec["topicName"] == tp.name
        assert isinstance(spec["partitions"], int) and spec["partitions"] >= 1
        assert isinstance(spec["replicas"], int) and 1 <= spec["replicas"] <= 32767
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in spec.get("config", {}).items())
        assert spec.get("config", {}) == tp.configs
    assert len(names) == len(planned)  # object names stay unique after sanitizing


def test_k8s_names_are_unique_for_names_that_sanitize_alike() -> None:
    assert k8s_name("canvas.grade_change") != k8s_name("canvas.grade-change")
    assert k8s_name("canvas.raw") == "canvas.raw"


def test_plain_list_names_role_and_settings() -> None:
    text = as_list(planned_topics(load_config(env={})))
    first = text.splitlines()[0].split()
    assert first[:3] == ["canvas.raw", "raw", "partitions=6"]


def test_cli_prints_each_format() -> None:
    for fmt, marker in (("list", b"canvas.grade_change"), ("kafka-topics", b"kafka-topics.sh"),
                        ("strimzi", b"kind: KafkaTopic")):
        done = bridge("topics", "--format", fmt)
        assert done.returncode == 0, done.stderr
        assert marker in done.stdout
