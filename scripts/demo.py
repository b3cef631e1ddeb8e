"""`make demo`: the main job on an embedded default, start to finish, leaving nothing running.

1. starts a local Apache Kafka (KRaft) from scripts/kafka-local, in a fresh state folder;
2. runs `canvas-bridge run` against it;
3. replays the bundled Canvas catalog samples (Canvas and Caliper formats) plus two bad records;
4. prints what landed on the typed topics and the dead-letter topic, and a few metrics;
5. stops the bridge (SIGTERM, graceful drain) and the broker.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

REPO = Path(__file__).resolve().parent.parent
STATE = REPO / ".cache" / "kafka-demo"
CATALOG = REPO / "tests" / "fixtures" / "catalog"
SAMPLES = [CATALOG / "canvas-examples.jsonl", CATALOG / "caliper-examples.jsonl"]
BAD = [b'{"metadata": {"event_name": "grade_change"}, "body": {}}', b"this is not JSON"]
RAW = "canvas.raw"


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


async def produce(bootstrap: str, values: list[bytes]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(RAW, 3, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(RAW, v) for v in values])
    finally:
        await producer.stop()


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


def main() -> int:
    started = time.monotonic()
    shutil.rmtree(STATE, ignore_errors=True)
    say("starting a local Apache Kafka (KRaft) from the official jars")
    bootstrap = kafka_local("start")
    print(f"    broker at {bootstrap}")
    bridge = None
    try:
        port = free_port()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")},
               "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "BRIDGE_HTTP_PORT": str(port),
               "BRIDGE_GROUP_ID": "canvas-bridge-demo"}
        say(f"running: canvas-bridge run   (metrics on http://127.0.0.1:{port}/metrics)")
        log = open(STATE / "bridge.log", "wb")  # noqa: SIM115
        bridge = subprocess.Popen([sys.executable, "-m", "bridge", "run"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT, cwd=REPO)
        samples = [line for f in SAMPLES for line in f.read_bytes().splitlines() if line.strip()]
        say(f"replaying {len(samples)} bundled Canvas Live Events samples and {len(BAD)} bad records into {RAW}")
        asyncio.run(produce(bootstrap, samples + BAD))
        # One output per Canvas event, per Caliper data element, per bad record.
        expected = sum(len(json.loads(s).get("data", [None])) for s in samples) + len(BAD)
        deadline = time.monotonic() + 120
        text = ""
        while time.monotonic() < deadline:
            if bridge.poll() is not None:
                sys.exit(f"the bridge exited ({bridge.returncode}); see {STATE / 'bridge.log'}")
            status, text = http_get(port, "/metrics")
            acknowledged = sum(metric(text, m) for m in ("canvas_bridge_events_published_total",
                                                         "canvas_bridge_dead_letters_total",
                                                         "canvas_bridge_duplicates_suppressed_total"))
            if status == 200 and acknowledged >= expected:
                break
            time.sleep(0.5)
        else:
            sys.exit("timed out waiting for the bridge to process the samples")

        outputs = asyncio.run(read_outputs(bootstrap))
        typed = {t: v for t, v in outputs.items() if t != "canvas.dlq"}
        say(f"{sum(len(v) for v in typed.values())} typed records on {len(typed)} typed topics")
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
        say("a few metrics from /metrics")
        for name in ("canvas_bridge_events_consumed_total", "canvas_bridge_events_published_total",
                     "canvas_bridge_dead_letters_total", "canvas_bridge_duplicates_suppressed_total",
                     "canvas_bridge_unknown_fields_total", "canvas_bridge_malformed_fields_total"):
            print(f"    {name:<45} {metric(text, name):g}")
        kinds = Counter(h.get("event_format", b"?").decode() for v in typed.values() for h, _ in v)
        print(f"    by format: {dict(kinds)}")
    finally:
        if bridge is not None and bridge.poll() is None:
            say("stopping the bridge (SIGTERM: drain, commit, leave the group)")
            bridge.send_signal(signal.SIGTERM)
            try:
                code = bridge.wait(60)
                print(f"    bridge exited with {code}")
            except subprocess.TimeoutExpired:
                bridge.kill()
        say("stopping Kafka")
        kafka_local("stop")
        shutil.rmtree(STATE / "data", ignore_errors=True)
    say(f"done in {time.monotonic() - started:.0f}s; nothing left running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
