"""`make demo`: Canvas's whole path, start to finish, leaving nothing running.

1. starts a local Apache Kafka (KRaft) from scripts/kafka-local, in a fresh state folder;
2. makes a demo RSA key pair and serves its JWKS locally (standing in for Instructure's);
3. runs `canvas-bridge ingest` (the HTTPS endpoint Canvas posts to) and `canvas-bridge run`;
4. posts the bundled Canvas catalog samples (Canvas and Caliper formats) to ingest as signed
   JWTs, the way a Data Services subscription with "Sign Payload" does, plus a signed event
   that is not valid, a body that is not JSON and a forged token;
5. prints each hop: ingest's answers, canvas.raw, the bridge, the typed topics and the
   dead-letter topic, and a few metrics;
6. stops both (SIGTERM, graceful drain) and the broker.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

REPO = Path(__file__).resolve().parent.parent
STATE = REPO / ".cache" / "kafka-demo"
CATALOG = REPO / "tests" / "fixtures" / "catalog"
SAMPLES = [CATALOG / "canvas-examples.jsonl", CATALOG / "caliper-examples.jsonl"]
INVALID_EVENT = {"metadata": {"event_name": "grade_change"}, "body": {}}  # signed, but not a valid event
RAW = "canvas.raw"
ISSUER = "https://live-events.demo.invalid"


def say(msg: str) -> None:
    print(f"\033[1m==> {msg}\033[0m", flush=True)


def kafka_local(*args: str) -> str:
    env = {**os.environ, "KAFKA_LOCAL_DIR": str(STATE)}
    out = subprocess.run([str(REPO / "scripts/kafka-local"), *args], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"kafka-local {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, resp.read().decode()
    except Exception:
        return 0, ""


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and line[len(name)] in " {")


async def create_raw_topic(bootstrap: str) -> None:
    """canvas.raw with 3 partitions, and wait until each has a leader (else the first writes bounce)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(RAW, 3, 1)])
        for _ in range(100):
            described = await admin.describe_topics([RAW])
            if all(p["leader"] >= 0 for t in described for p in t["partitions"]) and described[0]["partitions"]:
                return
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def raw_count(bootstrap: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        tps = [TopicPartition(RAW, p) for p in sorted(cluster.partitions_for_topic(RAW) or ())]
        consumer.assign(tps)
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


class DemoJwks:
    """The demo's signing key, and its JWKS served on 127.0.0.1 as Instructure serves theirs."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": "demo-2026-12", "alg": "RS256", "use": "sig"})
        body = json.dumps({"keys": [jwk]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/main/jwks"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def forge(self, event: dict[str, object]) -> str:
        """The classic attack: HS256 with the public key (which anyone can fetch) as the secret."""
        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
        pem = self.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        head = b64(json.dumps({"alg": "HS256", "kid": "demo-2026-12", "typ": "JWT"}).encode())
        body = b64(json.dumps({**event, "iss": ISSUER}).encode())
        mac = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{b64(mac)}"

    def sign(self, event: dict[str, object]) -> str:
        """The event as Canvas signs it: its fields as claims, beside iss/iat/exp/jti."""
        now = int(time.time())
        claims = {**event, "iss": ISSUER, "iat": now, "exp": now + 300, "jti": os.urandom(8).hex()}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "demo-2026-12"})


def post(port: int, body: str, content_type: str = "application/jwt") -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/events", data=body.encode(), method="POST",
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=20) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def read_outputs(bootstrap: str) -> dict[str, list[tuple[dict[str, bytes], bytes]]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    out: dict[str, list[tuple[dict[str, bytes], bytes]]] = {}
    try:
        cluster = await consumer._client.fetch_all_metadata()
        topics = sorted(t for t in cluster.topics() if t.startswith("canvas.") and t != RAW)
        tps = [TopicPartition(t, p) for t in topics for p in (cluster.partitions_for_topic(t) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if ends[tp] > 0}
        while pending:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, msgs in batch.items():
                for m in msgs:
                    out.setdefault(tp.topic, []).append(({k: bytes(v) for k, v in m.headers}, m.value or b""))
                    if m.offset + 1 >= ends[tp]:
                        pending.discard(tp)
    finally:
        await consumer.stop()
    return out


def start(command: str, env: dict[str, str], log_name: str) -> subprocess.Popen[bytes]:
    log = open(STATE / log_name, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "bridge", command], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=REPO)


def wait_ready(proc: subprocess.Popen[bytes], port: int, name: str, log_name: str) -> None:
    deadline = time.monotonic() + 90
    while http_get(port, "/readyz")[0] != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"{name} did not get ready; see {STATE / log_name}")
        time.sleep(0.3)


def stop(proc: subprocess.Popen[bytes] | None, name: str) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        print(f"    {name} exited with {proc.wait(60)}")
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> int:
    # The demo's own Kafka clients report retries as warnings; its output shows the product, not them.
    logging.basicConfig(level=logging.ERROR)
    started = time.monotonic()
    shutil.rmtree(STATE, ignore_errors=True)
    say("starting a local Apache Kafka (KRaft) from the official jars")
    bootstrap = kafka_local("start")
    print(f"    broker at {bootstrap}")
    asyncio.run(create_raw_topic(bootstrap))
    ingest = bridge = None
    try:
        keys = DemoJwks()
        say(f"a demo signing key (kid demo-2026-12), its JWKS served at {keys.url}")
        ingest_port, ingest_probes, bridge_port = free_port(), free_port(), free_port()
        base = {**{k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")},
                "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap}
        ingest = start("ingest", {**base, "BRIDGE_INGEST_PORT": str(ingest_port),
                                  "BRIDGE_HTTP_PORT": str(ingest_probes), "BRIDGE_INGEST_JWKS_URL": keys.url,
                                  "BRIDGE_INGEST_ISSUERS": ISSUER}, "ingest.log")
        bridge = start("run", {**base, "BRIDGE_HTTP_PORT": str(bridge_port),
                               "BRIDGE_GROUP_ID": "canvas-bridge-demo"}, "bridge.log")
        say(f"running: canvas-bridge ingest  (Canvas posts to http://127.0.0.1:{ingest_port}/events)")
        say(f"running: canvas-bridge run     (metrics on http://127.0.0.1:{bridge_port}/metrics)")
        wait_ready(ingest, ingest_probes, "canvas-bridge ingest", "ingest.log")

        samples = [json.loads(line) for f in SAMPLES for line in f.read_bytes().splitlines() if line.strip()]
        say(f"hop 1, Canvas -> ingest: posting {len(samples)} bundled samples as signed JWTs "
            "(+ 1 signed invalid event, 1 body that is not JSON, 1 forged token)")
        tokens = [keys.sign(event) for event in [*samples, INVALID_EVENT]]
        with ThreadPoolExecutor(8) as pool:
            answers = Counter(pool.map(lambda t: post(ingest_port, t), tokens))
        not_json = post(ingest_port, "this is not JSON", "text/plain")
        forged_status = post(ingest_port, keys.forge(INVALID_EVENT))
        print(f"    signed deliveries: {dict(answers)} (200 = the broker acknowledged the record)")
        print(f"    not JSON: {not_json}; HS256 token 'signed' with the public key: {forged_status} "
              "(refused: written nowhere)")
        accepted = answers.get(200, 0)

        written = asyncio.run(raw_count(bootstrap))
        say(f"hop 2, canvas.raw: {written} records (the verified claims without iss/iat/exp/jti, keyed by user)")

        # One output per Canvas event, per Caliper data element, per invalid record.
        expected = sum(len(event.get("data", [None])) for event in samples) + 1
        deadline = time.monotonic() + 120
        text = ""
        while time.monotonic() < deadline:
            if bridge.poll() is not None:
                sys.exit(f"the bridge exited ({bridge.returncode}); see {STATE / 'bridge.log'}")
            status, text = http_get(bridge_port, "/metrics")
            acknowledged = sum(metric(text, m) for m in ("canvas_bridge_events_published_total",
                                                         "canvas_bridge_dead_letters_total",
                                                         "canvas_bridge_duplicates_suppressed_total"))
            if status == 200 and acknowledged >= expected:
                break
            time.sleep(0.5)
        else:
            sys.exit("timed out waiting for the bridge to process the samples")
        say(f"hop 3, the bridge: consumed {metric(text, 'canvas_bridge_events_consumed_total'):g} raw records, "
            f"published {metric(text, 'canvas_bridge_events_published_total'):g} typed records, "
            f"dead-lettered {metric(text, 'canvas_bridge_dead_letters_total'):g}")

        outputs = asyncio.run(read_outputs(bootstrap))
        typed = {t: v for t, v in outputs.items() if t != "canvas.dlq"}
        say(f"hop 4, typed topics: {sum(len(v) for v in typed.values())} records on {len(typed)} topics")
        for topic, records in sorted(typed.items())[:12]:
            print(f"    {topic:<55} {len(records):>3}")
        if len(typed) > 12:
            print(f"    ... and {len(typed) - 12} more topics")
        seed = typed.get("canvas.outcomes.retry_outcome_alignment_clone", [])
        if seed:
            value = json.loads(seed[0][1])
            say("one typed record (canvas.outcomes.retry_outcome_alignment_clone), headers and value:")
            print("    headers:", {k: v.decode() for k, v in seed[0][0].items()})
            print("    " + json.dumps({k: value[k] for k in ("event_name", "event_time", "event_time_ms",
                                                              "dedupe_key")}))
            print("    body: " + json.dumps(value["body"])[:300])
        dead = outputs.get("canvas.dlq", [])
        say(f"{len(dead)} dead letters on canvas.dlq (original bytes kept, reason in headers)")
        for headers, raw in dead:
            print(f"    {headers['dlq_reason'].decode():<18} {raw[:60]!r}")
        say("a few metrics")
        _, ingest_text = http_get(ingest_probes, "/metrics")
        for name, source in (("canvas_bridge_ingest_requests_total", ingest_text),
                             ("canvas_bridge_ingest_records_written_total", ingest_text),
                             ("canvas_bridge_events_consumed_total", text),
                             ("canvas_bridge_events_published_total", text),
                             ("canvas_bridge_dead_letters_total", text),
                             ("canvas_bridge_unknown_fields_total", text)):
            print(f"    {name:<45} {metric(source, name):g}")
        kinds = Counter(h.get("event_format", b"?").decode() for v in typed.values() for h, _ in v)
        print(f"    by format: {dict(kinds)}")
        if accepted != len(tokens) or written != accepted:
            sys.exit(f"expected {len(tokens)} deliveries accepted and written; got {accepted} and {written}")
    finally:
        say("stopping ingest and the bridge (SIGTERM: answer what is in flight, drain, commit)")
        stop(ingest, "ingest")
        stop(bridge, "bridge")
        say("stopping Kafka")
        kafka_local("stop")
        shutil.rmtree(STATE / "data", ignore_errors=True)
    say(f"done in {time.monotonic() - started:.0f}s; nothing left running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
