"""``canvas-bridge ingest`` against the real broker: real HTTP requests, real RS256 keys, a real JWKS server.

One ingest process serves most tests of this module (module fixture), with its own raw topic;
each test finds its own records by a marker in the event.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from bridge.config import load_config
from bridge.core import Core, Publish, Source
from bridge.ingest.raw import raw_key
from tests.ingest_helpers import IngestProcess, JwksServer, SigningKey, canvas_claims, post
from tests.kafka_helpers import (
    BridgeProcess,
    catalog_lines,
    create_topics,
    produce,
    read_all,
    run,
    unique,
    wait_until,
)

pytestmark = pytest.mark.broker

UNSIGNED_TOKEN = "unsigned-" + "x" * 24
CALIPER_TOKEN = "caliper-token-" + "y" * 20
SEED_TOPIC = "canvas.outcomes.retry_outcome_alignment_clone"


def seed_event(marker: str) -> dict[str, Any]:
    """A catalog event with a unique request_id and the current time (retention counts from it)."""
    line = next(x for x in catalog_lines() if b'"outcomes.retry_outcome_alignment_clone"' in x)
    event: dict[str, Any] = json.loads(line)
    event["metadata"]["request_id"] = marker
    event["metadata"]["event_time"] = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return event


class Env:
    def __init__(self, ingest: IngestProcess, jwks: JwksServer, keys: dict[str, SigningKey], raw: str,
                 bootstrap: str) -> None:
        self.ingest = ingest
        self.jwks = jwks
        self.keys = keys
        self.raw = raw
        self.bootstrap = bootstrap

    def raw_records_with(self, marker: str, expect: int, timeout: float = 15.0) -> list[Any]:
        records = run(read_all(self.bootstrap, self.raw, min_count=0, timeout=timeout, idle=0.5))
        return [r for r in records if marker.encode() in (r.value or b"")]


@pytest.fixture(scope="module")
def env(broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("ingest")
    raw = unique("raw-ingest")
    run(create_topics(broker.bootstrap, [raw], partitions=3))
    tokens = tmp / "caliper-tokens"
    tokens.write_text(f"# tools allowed to send Caliper\n{CALIPER_TOKEN}\n")
    keys = {"k1": SigningKey("k1"), "k2": SigningKey("k2")}
    with JwksServer([keys["k1"]]) as jwks:
        ingest = IngestProcess(broker.bootstrap, raw, tmp / "ingest.log", jwks.url,
                               BRIDGE_INGEST_UNSIGNED_TOKEN=UNSIGNED_TOKEN,
                               BRIDGE_INGEST_CALIPER_TOKENS_FILE=str(tokens),
                               BRIDGE_INGEST_JWKS_MIN_REFETCH_S="1",
                               BRIDGE_INGEST_ACK_TIMEOUT_MS="3000")
        with ingest:
            ingest.wait_ready()
            yield Env(ingest, jwks, keys, raw, broker.bootstrap)
            log = ingest.log_path.read_text(errors="replace")
    # Logs never hold a token or an event body.
    assert "eyJ" not in log, "a JWT reached the log"
    assert UNSIGNED_TOKEN not in log and CALIPER_TOKEN not in log
    assert "request_id" not in log and "retry_outcome_alignment_clone" not in log


def test_signed_and_quoted_deliveries_land_with_the_dedupe_key_of_the_unsigned_event(
        env: Env, tmp_path: Path) -> None:
    marker = f"signed-{uuid.uuid4()}"
    event = seed_event(marker)
    token = env.keys["k1"].sign(canvas_claims(event))
    assert env.ingest.post("/events", token).status == 200
    assert env.ingest.post("/events", json.dumps(token), {"Content-Type": "application/json"}).status == 200
    # The same event, unsigned, produced straight to the raw topic as an SQS or other path would.
    unsigned = json.dumps(event).encode()
    run(produce(env.bootstrap, env.raw, [unsigned], keys=[raw_key(unsigned)]))

    raw = env.raw_records_with(marker, 3)
    assert len(raw) == 3
    signed = [r for r in raw if r.headers.get("ingest_signed") == b"true"]
    assert len(signed) == 2
    for r in signed:
        assert json.loads(r.value) == event  # the claims minus iss/iat/exp/jti: the event itself
        assert r.headers["ingest_source"] == b"https" and r.headers["ingest_key_id"] == b"k1"
        assert r.key == raw_key(unsigned)  # so a redelivery meets its first copy on one partition
    assert len({r.partition for r in raw}) == 1

    # What the bridge would publish for the unsigned event, offline.
    config = load_config(env={})
    expected = [o for o in Core.from_config(config).process(unsigned, Source(env.raw, 0, 0), 0)
                if isinstance(o, Publish)]
    assert len(expected) == 1 and expected[0].topic == SEED_TOPIC
    expected_key = dict(expected[0].headers)["dedupe_key"]

    # The real bridge: each of the three copies reaches the typed topic (window off to see them all).
    with BridgeProcess(env.bootstrap, env.raw, unique("g"), tmp_path / "bridge.log",
                       BRIDGE_DEDUPE_ENABLED="false") as bridge:
        bridge.wait_ready()

        def typed() -> list[Any]:
            records = run(read_all(env.bootstrap, SEED_TOPIC, timeout=5, idle=0.3))
            return [r for r in records if marker.encode() in (r.value or b"")]
        copies = wait_until(lambda: len(typed()) >= 3 and typed(), 60, "three typed copies")
    assert len(copies) == 3
    assert {r.headers["dedupe_key"] for r in copies} == {expected_key}


def test_a_new_current_key_is_fetched_once_and_an_unknown_kid_costs_one_refetch_then_401(env: Env) -> None:
    marker = f"rotate-{uuid.uuid4()}"
    env.jwks.keys = [env.keys["k1"], env.keys["k2"]]  # Instructure publishes the next key
    time.sleep(1.1)  # the unknown-kid refetch is rate-limited to once per second here
    before = env.jwks.fetches
    assert env.ingest.post("/events", env.keys["k2"].sign(canvas_claims(seed_event(marker)))).status == 200
    assert env.jwks.fetches == before + 1
    assert env.ingest.post("/events", env.keys["k2"].sign(canvas_claims(seed_event(marker)))).status == 200
    assert env.jwks.fetches == before + 1  # cached
    raw = env.raw_records_with(marker, 2)
    assert [r.headers["ingest_key_id"] for r in raw] == [b"k2", b"k2"]

    time.sleep(1.1)
    stranger = SigningKey("k-unknown")
    before = env.jwks.fetches
    answers = [env.ingest.post("/events", stranger.sign(canvas_claims(seed_event(marker)))).status
               for _ in range(20)]
    assert answers == [401] * 20
    assert env.jwks.fetches == before + 1, "an unknown kid must cost one refetch, rate-limited"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forgeries(env: Env, marker: str) -> dict[str, tuple[str, bytes | str, dict[str, str]]]:
    """Each way to get an event in without the right to: (path, body, headers)."""
    key = env.keys["k1"]
    event = seed_event(marker)
    good = key.sign(canvas_claims(event))
    head, payload, sig = good.split(".")
    none_token = f"{_b64(json.dumps({'alg': 'none', 'kid': 'k1', 'typ': 'JWT'}).encode())}.{payload}."
    public_pem = key.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    hs_header = _b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
    hs_sig = _b64(hmac.new(public_pem, f"{hs_header}.{payload}".encode(), hashlib.sha256).digest())
    tampered_claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    tampered_claims["metadata"]["user_id"] = "1"
    tampered = f"{head}.{_b64(json.dumps(tampered_claims).encode())}.{sig}"
    expired = key.sign(canvas_claims(event, ttl_s=-3600))
    wrong_iss = key.sign(canvas_claims(event, iss="https://evil.example"))
    return {
        "alg_none": ("/events", none_token, {}),
        "hs256_with_the_public_key": ("/events", f"{hs_header}.{payload}.{hs_sig}", {}),
        "tampered_payload": ("/events", tampered, {}),
        "expired": ("/events", expired, {}),
        "wrong_issuer": ("/events", wrong_iss, {}),
        "unsigned_while_signing_is_required": ("/events", json.dumps(event), {"Content-Type": "application/json"}),
        "wrong_url_token": ("/events/" + "z" * 32, json.dumps(event), {"Content-Type": "application/json"}),
        "caliper_without_token": ("/caliper", "{}", {"Content-Type": "application/json"}),
        "caliper_wrong_token": ("/caliper", "{}", {"Content-Type": "application/json",
                                                   "Authorization": "Bearer " + "w" * 30}),
    }


def test_every_forgery_gets_401_and_writes_nothing(env: Env) -> None:
    marker = f"forged-{uuid.uuid4()}"
    forgeries = _forgeries(env, marker)
    answers = {name: env.ingest.post(path, body, headers).status for name, (path, body, headers) in forgeries.items()}
    assert answers == dict.fromkeys(forgeries, 401)
    # Sanity: the same event, properly signed, is accepted (so the 401s were about the forgery).
    assert env.ingest.post("/events", env.keys["k1"].sign(canvas_claims(seed_event(marker)))).status == 200
    raw = env.raw_records_with(marker, 1)
    assert len(raw) == 1 and raw[0].headers["ingest_signed"] == b"true"
    assert env.ingest.metric("canvas_bridge_ingest_requests_total", 'outcome="unauthorized"') >= len(forgeries)


def test_unsigned_on_the_secret_url_and_caliper_with_a_bearer_token_are_written(env: Env) -> None:
    marker = f"unsigned-{uuid.uuid4()}"
    body = json.dumps(seed_event(marker))
    assert env.ingest.post(f"/events/{UNSIGNED_TOKEN}", body, {"Content-Type": "application/json"}).status == 200
    caliper = json.loads(catalog_lines("caliper-examples.jsonl")[0])
    caliper["data"][0]["id"] = f"urn:uuid:{marker}"
    headers = {"Content-Type": "application/json; charset=utf-8", "Authorization": f"Bearer {CALIPER_TOKEN}"}
    assert env.ingest.post("/caliper", json.dumps(caliper), headers).status == 200
    raw = env.raw_records_with(marker, 2)
    by_source = {r.headers["ingest_source"]: r for r in raw}
    assert set(by_source) == {b"https", b"caliper"}
    assert by_source[b"https"].value == body.encode() and by_source[b"https"].headers["ingest_signed"] == b"false"
    assert json.loads(by_source[b"caliper"].value) == caliper


def test_bad_requests_get_their_status_and_write_nothing(env: Env) -> None:
    marker = f"bad-{uuid.uuid4()}"
    ingest = env.ingest
    caliper = json.loads(catalog_lines("caliper-examples.jsonl")[0])
    caliper["data"][0]["id"] = f"urn:uuid:{marker}"
    auth = {"Authorization": f"Bearer {CALIPER_TOKEN}"}
    json_ct = {"Content-Type": "application/json", **auth}
    huge = json.dumps({"metadata": {"user_id": "1", "request_id": marker}, "body": {"x": "y" * 1_100_000}})
    old_version = {**caliper, "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p0"}
    cases = {
        "neither_json_nor_jwt": (ingest.post(f"/events/{UNSIGNED_TOKEN}", f"hello {marker}"), 400),
        "empty": (ingest.post("/events", ""), 400),
        "too_large_unsigned": (ingest.post(f"/events/{UNSIGNED_TOKEN}", huge), 413),
        "too_large_signed": (ingest.post("/events", env.keys["k1"].sign(json.loads(huge))), 413),
        "caliper_not_json_content_type": (ingest.post("/caliper", json.dumps(caliper),
                                                      {"Content-Type": "text/plain", **auth}), 415),
        "caliper_not_an_envelope": (ingest.post("/caliper", json.dumps({"id": marker}), json_ct), 400),
        "caliper_old_version": (ingest.post("/caliper", json.dumps(old_version), json_ct), 422),
        "unknown_path": (ingest.post(f"/nope/{marker}", "{}"), 404),
    }
    assert {k: a.status for k, (a, _) in cases.items()} == {k: s for k, (_, s) in cases.items()}
    with pytest.raises(urllib.error.HTTPError) as got:
        urllib.request.urlopen(f"http://127.0.0.1:{ingest.port}/events", timeout=5)
    assert got.value.code == 405
    assert env.raw_records_with(marker, 0) == []


def test_the_ingest_port_answers_probes_but_not_metrics(env: Env) -> None:
    assert post(env.ingest.port, "/readyz", b"").status == 405
    with urllib.request.urlopen(f"http://127.0.0.1:{env.ingest.port}/readyz", timeout=5) as resp:
        assert resp.status == 200
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{env.ingest.port}/metrics", timeout=5)
        raise AssertionError("/metrics must stay on the probes port")
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
    assert env.ingest.metric("canvas_bridge_ingest_jwks_keys") >= 1
    assert env.ingest.metric("canvas_bridge_ingest_jwks_age_seconds") >= 0



def test_with_the_jwks_url_down_cached_keys_still_verify(env: Env) -> None:
    marker = f"cached-{uuid.uuid4()}"
    key = env.keys["k1"]
    env.jwks.up = False
    try:
        time.sleep(1.1)  # past the unknown-kid refetch interval of this module's ingest
        before = env.jwks.fetches
        assert env.ingest.post("/events", key.sign(canvas_claims(seed_event(marker)))).status == 200
        # An unknown kid tries the (dead) JWKS once, keeps the cache, and is refused.
        assert env.ingest.post("/events", SigningKey("k-new").sign(canvas_claims(seed_event(marker)))).status == 401
        assert env.jwks.fetches == before + 1
        assert env.ingest.post("/events", key.sign(canvas_claims(seed_event(marker)))).status == 200
        assert env.ingest.get("/readyz")[0] == 200  # loaded once: still ready
        assert env.ingest.metric("canvas_bridge_ingest_jwks_refreshes_total", 'result="failed"') >= 1
    finally:
        env.jwks.up = True
    assert len(env.raw_records_with(marker, 2)) == 2


def test_not_ready_until_the_keys_were_loaded_once(broker: Any, tmp_path: Path) -> None:
    raw = unique("raw-ingest-jwks")
    run(create_topics(broker.bootstrap, [raw], partitions=1))
    key = SigningKey("late")
    with JwksServer([key]) as jwks:
        jwks.up = False
        with IngestProcess(broker.bootstrap, raw, tmp_path / "ingest.log", jwks.url) as ingest:
            wait_until(lambda: jwks.fetches >= 1, 30, "the first JWKS fetch")
            status, why = ingest.get("/readyz")
            assert status == 503 and "JWKS" in why, (status, why)
            assert ingest.post("/events", key.sign(canvas_claims(seed_event("late")))).status == 401
            jwks.up = True
            ingest.wait_ready(30)  # the startup fetch retries with backoff
            assert ingest.post("/events", key.sign(canvas_claims(seed_event("late")))).status == 200
