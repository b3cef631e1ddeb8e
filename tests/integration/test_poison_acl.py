"""A typed topic the bridge's principal may not write (issue 17): its records are dead-lettered as
``topic_not_authorized``, the others flow, and the bridge does not exit. On a local broker with
SASL/PLAIN and Kafka's StandardAuthorizer: everything is allowed (no ACL found) but one DENY ACL."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import CreateAclsRequest

from tests.conftest import require_tool
from tests.kafka_helpers import (
    KAFKA_LOCAL,
    BridgeProcess,
    catalog_lines,
    create_topics,
    free_port,
    produce,
    read_all,
    run,
    unique,
    wait_until,
)

pytestmark = pytest.mark.broker

SEED_EVENT = "outcomes.retry_outcome_alignment_clone"
OTHER_EVENT = "account_updated"


@dataclass
class AclBroker:
    plaintext: str  # the super user's listener (User:ANONYMOUS): the test's own clients
    sasl: str
    user: str
    password: str


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclBroker]:
    require_tool("java")
    base = tmp_path_factory.mktemp("kafka-acl")
    user, password = "carol", "carol-" + secrets.token_hex(12)
    port = free_port()
    extra = base / "extra.properties"
    extra.write_text("\n".join([
        "listeners=PLAINTEXT://127.0.0.1:@BROKER_PORT@,CONTROLLER://127.0.0.1:@CONTROLLER_PORT@,"
        f"SASL_PLAINTEXT://127.0.0.1:{port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:@BROKER_PORT@,SASL_PLAINTEXT://127.0.0.1:{port}",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms=PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain."
        f'PlainLoginModule required user_{user}="{password}";',
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users=User:ANONYMOUS",
        "allow.everyone.if.no.acl.found=true",
    ]) + "\n")
    env = {**os.environ, "KAFKA_LOCAL_DIR": str(base / "state"), "KAFKA_LOCAL_EXTRA_CONFIG": str(extra),
           "KAFKA_LOCAL_HEAP": "512m"}
    out = subprocess.run([str(KAFKA_LOCAL), "start"], env=env, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        subprocess.run([str(KAFKA_LOCAL), "stop"], env=env, capture_output=True, timeout=120)
        pytest.fail(f"could not start the Kafka broker with ACLs:\n{out.stderr}")
    try:
        yield AclBroker(out.stdout.strip().splitlines()[-1], f"127.0.0.1:{port}", user, password)
    finally:
        subprocess.run([str(KAFKA_LOCAL), "stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


async def _deny_all(bootstrap: str, topic: str, principal: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:  # resource TOPIC (2), LITERAL (3), any host, operation ALL (2), DENY (2)
        response = await admin._send_request(CreateAclsRequest(2, topic, 3, principal, "*", 2, 2))
        assert [c["error_code"] for c in response.to_object()["creation_responses"]] == [0], response
    finally:
        await admin.close()


def _event(name: str, marker: str) -> bytes:
    event = next(e for e in map(json.loads, catalog_lines()) if e.get("metadata", {}).get("event_name") == name)
    event["metadata"]["request_id"] = marker
    return json.dumps(event).encode()


@pytest.mark.timeout(180)
def test_a_forbidden_topic_is_dead_lettered_without_exit(acl_broker: AclBroker, tmp_path: Path) -> None:
    b, prefix, run_id = acl_broker, unique("acl"), uuid.uuid4().hex[:8]
    raw, dlq, forbidden = f"{prefix}.raw", f"{prefix}.dlq", f"{prefix}.{OTHER_EVENT}"
    run(create_topics(b.plaintext, [raw, dlq, forbidden, f"{prefix}.{SEED_EVENT}"]))
    run(_deny_all(b.plaintext, forbidden, f"User:{b.user}"))
    values = []
    for n in range(5):
        values += [_event(SEED_EVENT, f"{run_id}-ok-{n}"), _event(OTHER_EVENT, f"{run_id}-denied-{n}")]
    with BridgeProcess(b.sasl, raw, unique("group"), tmp_path / "bridge.log",
                       BRIDGE_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", BRIDGE_KAFKA_SASL_MECHANISM="PLAIN",
                       BRIDGE_KAFKA_SASL_USERNAME=b.user, BRIDGE_KAFKA_SASL_PASSWORD=b.password,
                       BRIDGE_TOPICS_PREFIX=f"{prefix}.", BRIDGE_TOPICS_DEAD_LETTER=dlq) as bridge:
        bridge.wait_ready(90)
        produced = time.monotonic()
        run(produce(b.plaintext, raw, values))
        wait_until(lambda: bridge.metric("canvas_bridge_events_published_total") >= 5
                   and bridge.metric("canvas_bridge_refused_records_total", 'reason="topic_not_authorized"') >= 5,
                   60, "5 published, 5 refused as topic_not_authorized")
        print(f"\nACL: 5 published, 5 dead-lettered as topic_not_authorized in {time.monotonic() - produced:.2f}s")
        assert bridge.get("/readyz")[0] == 200
        assert bridge.proc is not None and bridge.proc.poll() is None, "the bridge exited"
        assert bridge.terminate(30) == 0, bridge.log_tail()
    published = run(read_all(b.plaintext, f"{prefix}.{SEED_EVENT}", min_count=5))
    assert sorted(json.loads(r.value or b"")["metadata"]["request_id"] for r in published) == \
        sorted(f"{run_id}-ok-{n}" for n in range(5))
    dead = run(read_all(b.plaintext, dlq, min_count=5))
    assert sorted(json.loads(r.value or b"")["metadata"]["request_id"] for r in dead) == \
        sorted(f"{run_id}-denied-{n}" for n in range(5))
    assert all(r.headers["dlq_reason"] == b"topic_not_authorized" and
               r.headers["dlq_intended_topic"] == forbidden.encode() for r in dead)
