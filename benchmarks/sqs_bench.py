#!/usr/bin/env python3
"""How fast ``canvas-bridge ingest-sqs`` drains an SQS queue into acknowledged raw records.

    python benchmarks/sqs_bench.py [--messages N] [--rounds R] [--pollers 1,2,4]
                                   [--bootstrap HOST:PORT] [--endpoint URL] [--json PATH]

For each number of pollers, two drains of the same queue content, interleaved (A B B A ... over the
rounds, so that drift in the machine's load falls on both):

- ``kafka``:    ingest-sqs's pollers (``bridge.ingest.sqs.SqsIngest``, in this process, on the
                same event loop as the command) receive, write every body to a raw topic through
                ``RawWriter`` (acks=all, idempotent) and batch-delete what the broker acknowledged;
- ``baseline``: the same pollers, the same receive / delete loop, with a writer that writes
                nowhere: the SQS side alone, the ceiling the Kafka write is measured against.

Each drain gets a fresh queue filled with N catalog events (untimed) and, for ``kafka``, a fresh
raw topic (3 partitions). Its figure is N / seconds from the pollers' start until N messages were
deleted; the queue must end empty and, for ``kafka``, the raw topic must hold N records (else the
run fails). Also printed: this process's CPU seconds per 1,000 messages.

ElasticMQ (``scripts/sqs-local``) and Kafka (``scripts/kafka-local``) are this script's own, in
temporary folders, stopped at the end, unless ``--endpoint`` / ``--bootstrap`` name running ones.
Both servers share the machine with this process, so the figures are this machine's, not SQS's:
real SQS answers a receive in ~10-20 ms, ElasticMQ on loopback in ~1 ms.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root, for ``benchmarks`` and ``bridge``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anyio
from aiobotocore.session import get_session
from aiokafka import AIOKafkaConsumer, TopicPartition

from benchmarks.common import CATALOG, BenchError, own_broker, own_sqs, run_loop, say
from bridge import metrics
from bridge.config import load_config
from bridge.ingest.sqs import SqsIngest, queues_of
from bridge.ingest.writer import RawWriter
from tests.kafka_helpers import create_topics

AWS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench", "region_name": "us-east-1"}


class Nowhere:
    """The baseline's writer: acknowledges at once, writes nothing."""

    async def write(self, value: bytes, *, timeout_s: float, signed: bool = False, key_id: str | None = None,
                    received_ms: int | None = None) -> None:
        return None


def catalog_bodies(n: int) -> list[str]:
    """N catalog events (Canvas and Caliper in turn), each made distinct by its request id."""
    lines = [line for f in ("canvas-examples.jsonl", "caliper-examples.jsonl")
             for line in (CATALOG / f).read_text().splitlines() if line.strip()]
    out = []
    for i in range(n):
        event = json.loads(lines[i % len(lines)])
        if isinstance(event.get("metadata"), dict):
            event["metadata"]["request_id"] = f"bench-{i}"
        else:
            for k, item in enumerate(event.get("data", [])):
                item["id"] = f"urn:uuid:bench-{i}-{k}"
        out.append(json.dumps(event, separators=(",", ":")))
    return out


async def fill_queue(endpoint: str, bodies: list[str]) -> str:
    """A fresh queue holding ``bodies`` (batches of 10, 16 in flight)."""
    async with get_session().create_client("sqs", endpoint_url=endpoint, **AWS) as sqs:
        url = (await sqs.create_queue(QueueName=f"canvas-live-events-bench-{uuid.uuid4().hex[:8]}"))["QueueUrl"]
        batches = [bodies[i:i + 10] for i in range(0, len(bodies), 10)]
        limiter = anyio.Semaphore(16)

        async def send(batch: list[str]) -> None:
            async with limiter:
                r = await sqs.send_message_batch(QueueUrl=url, Entries=[
                    {"Id": str(i), "MessageBody": b} for i, b in enumerate(batch)])
                if r.get("Failed"):
                    raise SystemExit(f"ElasticMQ refused messages: {r['Failed'][:2]}")

        async with anyio.create_task_group() as tg:
            for batch in batches:
                tg.start_soon(send, batch)
        return url


async def left_and_delete(endpoint: str, url: str) -> int:
    """The messages still in the queue (visible or in flight); the queue is deleted."""
    async with get_session().create_client("sqs", endpoint_url=endpoint, **AWS) as sqs:
        a = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]))["Attributes"]
        await sqs.delete_queue(QueueUrl=url)
        return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])


async def raw_topic(bootstrap: str) -> str:
    name = f"bench-sqs-raw-{uuid.uuid4().hex[:8]}"
    await create_topics(bootstrap, [name], partitions=3)
    return name


async def topic_count(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(3)])
        return sum(ends.values())
    finally:
        await consumer.stop()


def deleted(queue: str) -> float:
    """The pollers' own counter (one metric's samples: cheap enough to poll every few ms)."""
    for family in metrics.SQS_DELETED.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("queue") == queue:
                return float(sample.value)
    return 0.0


@dataclass
class Drain:
    mode: str
    pollers: int
    messages: int
    seconds: float
    msgs_per_s: float
    cpu_ms_per_1000: float


async def drain(mode: str, pollers: int, n: int, endpoint: str, bootstrap: str) -> Drain:
    bodies = catalog_bodies(n)
    url = await fill_queue(endpoint, bodies)
    topic = await raw_topic(bootstrap) if mode == "kafka" else "unused"
    config = load_config(env={
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "BRIDGE_RAW_TOPIC": topic, "BRIDGE_SQS_QUEUE_URLS": url,
        "BRIDGE_SQS_ENDPOINT_URL": endpoint, "BRIDGE_SQS_REGION": "us-east-1", "BRIDGE_SQS_POLLERS": str(pollers)})
    queues = queues_of(config)
    # The AWS chain of this process: ElasticMQ takes any key (never an instance metadata lookup).
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_EC2_METADATA_DISABLED": "true"})
    writer = RawWriter(config, "sqs") if mode == "kafka" else None
    ingest = SqsIngest(config, writer or Nowhere(), queues, raw_writer=writer)
    name = queues[0].name
    timing: dict[str, float] = {}

    async def watch() -> None:
        while not (ingest.started and ingest.kafka_ok.is_set()):  # noqa: ASYNC110 - states, not events
            await anyio.sleep(0.001)
        cpu0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        while deleted(name) < n:  # noqa: ASYNC110 - a counter the pollers advance
            await anyio.sleep(0.005)
        timing["seconds"] = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        timing["cpu"] = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        ingest.stop()

    async with anyio.create_task_group() as tg:
        if writer is not None:
            await tg.start(writer.run)
            with anyio.fail_after(60):
                await writer.wait_connected()
        tg.start_soon(watch)
        code = await ingest.run(tg)
        tg.cancel_scope.cancel()
    if code != 0:
        raise SystemExit(f"{mode} drain with {pollers} pollers exited {code}")
    left = await left_and_delete(endpoint, url)
    if left:
        raise SystemExit(f"{mode} drain with {pollers} pollers left {left} messages in the queue")
    if mode == "kafka" and (written := await topic_count(bootstrap, topic)) < n:
        raise SystemExit(f"kafka drain with {pollers} pollers: {written} raw records for {n} messages")
    seconds = timing["seconds"]
    return Drain(mode, pollers, n, round(seconds, 3), round(n / seconds, 1), round(timing["cpu"] / n * 1e6, 1))


async def bench(args: argparse.Namespace, endpoint: str, bootstrap: str) -> list[Drain]:
    runs: list[Drain] = []
    # Warm-up (untimed): the JIT of both servers, the first connections.
    await drain("kafka", 2, min(args.messages, 500), endpoint, bootstrap)
    for r in range(args.rounds):
        for pollers in args.pollers:
            order = ("baseline", "kafka") if (r + pollers) % 2 == 0 else ("kafka", "baseline")
            for mode in order:
                d = await drain(mode, pollers, args.messages, endpoint, bootstrap)
                say(f"round {r + 1}: {mode:8} pollers={pollers}: {d.msgs_per_s:8.0f} msgs/s "
                    f"({d.seconds:.2f}s, {d.cpu_ms_per_1000:.0f} ms CPU per 1,000)")
                runs.append(d)
    return runs


def summary(runs: list[Drain], pollers: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in pollers:
        row: dict[str, Any] = {}
        for mode in ("baseline", "kafka"):
            figures = [d.msgs_per_s for d in runs if d.pollers == p and d.mode == mode]
            row[f"{mode}_msgs_per_s"] = round(statistics.median(figures), 1)
            row[f"{mode}_cpu_ms_per_1000"] = round(statistics.median(
                [d.cpu_ms_per_1000 for d in runs if d.pollers == p and d.mode == mode]), 1)
        row["kafka_vs_baseline"] = round(row["kafka_msgs_per_s"] / row["baseline_msgs_per_s"], 2)
        out[str(p)] = row
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=10000, help="messages per drain (default 10000)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the median is reported (default 2)")
    p.add_argument("--pollers", default="1,2,4", help="poller counts (default 1,2,4)")
    p.add_argument("--bootstrap", help="an existing Kafka broker (default: start scripts/kafka-local)")
    p.add_argument("--endpoint", help="an existing SQS-compatible endpoint (default: start scripts/sqs-local)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    args.pollers = [int(x) for x in args.pollers.split(",")]
    # The bench queues have no redrive policy: ingest-sqs's warning about it, once per drain, is noise here.
    logging.getLogger("bridge.ingest.sqs").setLevel(logging.ERROR)
    load_at_start = os.getloadavg()
    try:
        with own_broker(args.bootstrap) as broker, own_sqs(args.endpoint) as sqs:
            runs = run_loop(bench(args, sqs.endpoint, broker.bootstrap))
    except BenchError as exc:
        raise SystemExit(str(exc)) from None
    table = summary(runs, args.pollers)
    print(f"\ningest-sqs drain, {args.messages} catalog events per drain, median of {args.rounds} interleaved rounds")
    print(f"{'pollers':>7} {'baseline msgs/s':>16} {'kafka msgs/s':>13} {'ratio':>6} {'CPU ms/1000 (base/kafka)':>25}")
    for pollers, row in table.items():
        print(f"{pollers:>7} {row['baseline_msgs_per_s']:>16.0f} {row['kafka_msgs_per_s']:>13.0f} "
              f"{row['kafka_vs_baseline']:>6.2f} {row['baseline_cpu_ms_per_1000']:>12.0f} / "
              f"{row['kafka_cpu_ms_per_1000']:<10.0f}")
    load = {"start": [round(x, 2) for x in load_at_start], "end": [round(x, 2) for x in os.getloadavg()]}
    print(f"load average (1/5/15 min) at start {load['start']}, at end {load['end']} on {os.cpu_count()} CPUs")
    result = {"messages": args.messages, "rounds": args.rounds, "summary": table, "runs": [asdict(d) for d in runs],
              "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "load_average": load}}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
