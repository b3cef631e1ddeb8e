#!/usr/bin/env python3
"""The memory ``canvas-bridge ingest-sqs`` needs: its peak resident memory idle and while draining.

    python benchmarks/sqs_footprint.py [--messages N] [--pollers 2,8] [--json PATH]

For each poller count, ``canvas-bridge ingest-sqs`` runs as its own process (as in a container) on
a fresh queue and a fresh raw topic (6 partitions):

- ``idle``: once ready, 5 s with the queue empty (long polls waiting): what the process costs at
  all, the baseline;
- ``draining``: then ``--messages`` catalog events are sent to the queue, and the process drains
  them into the raw topic (the queue must end empty, else exit 1).

Figures, from ``/proc/<pid>/status``: the peak resident memory (``VmHWM``) at the end of each
phase, and messages/s from the first message sent until every one was deleted (sending them, in
batches of 10 one after another, included: a floor of the drain rate, not sqs_bench.py's
figure). The Kubernetes manifests size ingest-sqs's memory request and limit by them
(deploy/kubernetes/components/ingest-sqs). ElasticMQ and Kafka are this script's own
(``scripts/sqs-local``, ``scripts/kafka-local``), stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root, for ``benchmarks`` and ``bridge``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiobotocore.session import get_session

from benchmarks.common import ROOT, own_broker, own_sqs, run_loop, say
from benchmarks.procs import read_rss_kb, wait_http_ok
from benchmarks.sqs_bench import AWS, catalog_bodies, fill_queue, left_and_delete
from tests.kafka_helpers import create_topics, free_port


def status_mib(pid: int, field: str) -> float:
    rss, hwm = read_rss_kb(pid)
    if not hwm:
        raise SystemExit(f"/proc/{pid}/status has no {field}")
    return {"VmRSS": rss, "VmHWM": hwm}[field] / 1024


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and line[len(name)] in " {")


def wait(what: str, ok: Any, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"ingest-sqs exited ({proc.returncode}) while waiting for {what}")
        try:
            if ok():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def measure(pollers: int, messages: int, bootstrap: str, endpoint: str, work: Path) -> dict[str, float]:
    raw = f"sqs-footprint-{os.getpid()}-{pollers}-{int(time.time())}"

    run_loop(create_topics(bootstrap, [raw], partitions=6))
    queue = run_loop(fill_queue(endpoint, []))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "AWS_"))}
    env.update({"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "BRIDGE_RAW_TOPIC": raw,
                "BRIDGE_HTTP_PORT": str(port), "BRIDGE_SQS_QUEUE_URLS": queue, "BRIDGE_SQS_ENDPOINT_URL": endpoint,
                "BRIDGE_SQS_REGION": AWS["region_name"], "BRIDGE_SQS_POLLERS": str(pollers),
                "AWS_ACCESS_KEY_ID": AWS["aws_access_key_id"], "AWS_SECRET_ACCESS_KEY": AWS["aws_secret_access_key"],
                "BRIDGE_LOG_LEVEL": "WARNING"})
    log = open(work / f"ingest-sqs-{pollers}.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "bridge", "ingest-sqs"], cwd=ROOT, env=env, stderr=log)
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/readyz", 60, proc, "ingest-sqs")
        time.sleep(5)
        idle = status_mib(proc.pid, "VmHWM")
        bodies = catalog_bodies(messages)
        t0 = time.perf_counter()
        run_loop(fill_queue_into(endpoint, queue, bodies))
        wait("every message deleted", lambda: metric(port, "canvas_bridge_sqs_messages_deleted_total") >= messages,
             600, proc)
        seconds = time.perf_counter() - t0
        draining = status_mib(proc.pid, "VmHWM")
        rss_end = status_mib(proc.pid, "VmRSS")
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    left = run_loop(left_and_delete(endpoint, queue))
    if left:
        raise SystemExit(f"{left} messages left in the queue")
    return {"pollers": pollers, "idle_peak_mib": round(idle, 1), "draining_peak_mib": round(draining, 1),
            "rss_at_end_mib": round(rss_end, 1), "msgs_per_s": round(messages / seconds), "exit": proc.returncode}


async def fill_queue_into(endpoint: str, queue: str, bodies: list[str]) -> None:
    """``bodies`` sent to an existing queue (batches of 10), while ingest-sqs drains it."""
    async with get_session().create_client("sqs", endpoint_url=endpoint, **AWS) as sqs:
        for i in range(0, len(bodies), 10):
            await sqs.send_message_batch(QueueUrl=queue, Entries=[
                {"Id": str(k), "MessageBody": b} for k, b in enumerate(bodies[i:i + 10])])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=10000, help="messages drained per poller count (10000)")
    p.add_argument("--pollers", default="2,8", help="poller counts (default 2,8)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sqs-footprint-"))
    rows = []
    with own_broker() as broker, own_sqs() as sqs:
        for pollers in (int(x) for x in args.pollers.split(",")):
            rows.append(measure(pollers, args.messages, broker.bootstrap, sqs.endpoint, work))
            say(f"pollers {pollers}: {rows[-1]}")
    print(f"\ningest-sqs peak resident memory (VmHWM), {args.messages} catalog events drained per row")
    print(f"{'pollers':>7} {'idle MiB (baseline)':>20} {'draining MiB':>13} {'msgs/s sent→deleted':>20} {'exit':>5}")
    for r in rows:
        print(f"{r['pollers']:>7} {r['idle_peak_mib']:>20.0f} {r['draining_peak_mib']:>13.0f} "
              f"{r['msgs_per_s']:>20} {r['exit']:>5}")
    print(f"load average {os.getloadavg()} on {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
