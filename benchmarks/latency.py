"""The latency phase's parts: the paced producer, the consumers that time each typed record
(kcat, or aiokafka), and the percentiles."""

from __future__ import annotations

import argparse
import array
import asyncio
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer

from benchmarks.common import run_loop, stop_flag
from benchmarks.mix import _TIME_TOKEN, PLACEHOLDER, partition_of, time_token
from benchmarks.topics import producer_for

LATENCY_SECONDS = 20.0
LATENCY_WARMUP_S = 2.0
LATENCY_TICK_S = 0.010
LATENCY_WARMUP_ROUNDS = 3


class Latencies:
    """What a latency consumer records: each timed record's send and receive time (ns), and how
    many records carried no send time; written to ``--out`` for ``read_latencies``."""

    def __init__(self) -> None:
        self.sent = array.array("q")
        self.received = array.array("q")
        self.unparsed = 0

    def add(self, match: re.Match[Any] | None, now_ns: int) -> None:
        """One record: ``match`` is its send-time token (group 1: ns), None when it has none."""
        if match is None:
            self.unparsed += 1
            return
        self.sent.append(int(match.group(1)))
        self.received.append(now_ns)

    def write(self, path: str | Path) -> None:
        with open(path, "wb") as fh:
            array.array("q", [len(self.sent), self.unparsed]).tofile(fh)
            self.sent.tofile(fh)
            self.received.tofile(fh)


def read_latencies(path: Path) -> tuple[array.array[int], array.array[int], int]:
    data = array.array("q")
    with open(path, "rb") as fh:
        data.frombytes(fh.read())
    n, unparsed = data[0], data[1]
    return data[2:2 + n], data[2 + n:2 + 2 * n], unparsed


class _LatMeta(msgspec.Struct):
    request_id: str | None = None


class _LatEvent(msgspec.Struct):
    id: str | None = None


class _LatRecord(msgspec.Struct):
    metadata: _LatMeta | None = None
    event: _LatEvent | None = None


async def _latency_consumer(args: argparse.Namespace) -> int:
    """Subscribe by pattern, say 'ready' once every typed partition is assigned, record latencies.

    Writes two int64 arrays (send_ns, receive_ns) to ``--out`` when stopped with SIGTERM.
    """
    decode = msgspec.json.Decoder(_LatRecord).decode
    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap, client_id="bench-latency", group_id=None,
        enable_auto_commit=False, auto_offset_reset="latest", metadata_max_age_ms=500,
        fetch_max_wait_ms=100, max_partition_fetch_bytes=1048576,
    )
    await consumer.start()
    stopping = stop_flag()
    consumer.subscribe(pattern=args.pattern)
    latencies = Latencies()
    try:
        deadline = time.monotonic() + 120
        while len(consumer.assignment()) < args.expect_partitions:
            if time.monotonic() > deadline:
                print(f"assigned only {len(consumer.assignment())} partitions", file=sys.stderr)
                return 1
            await consumer.getmany(timeout_ms=100)
        for tp in consumer.assignment():  # resolve "latest" now: nothing produced later is missed
            await consumer.position(tp)
        print(f"ready {len(consumer.assignment())}", flush=True)
        while not stopping():
            records = await consumer.getmany(timeout_ms=100, max_records=10000)
            now = time.time_ns()
            for msgs in records.values():
                for m in msgs:
                    try:
                        rec = decode(m.value)
                        text = (rec.metadata.request_id if rec.metadata is not None
                                else rec.event.id if rec.event is not None else None)
                        match = _TIME_TOKEN.search(text or "")
                    except msgspec.DecodeError:
                        match = None
                    latencies.add(match, now)
    finally:
        latencies.write(args.out)
        await consumer.stop()
    return 0


def _latency_consumer_kcat(args: argparse.Namespace) -> int:
    """``_latency_consumer`` with kcat (librdkafka, C) doing the fetching; this process times the lines.

    The aiokafka consumer re-sends every typed partition (~340) in each fetch request and parses
    each of them in Python: ~0.35 core at any rate, on the same 2 CPUs as the bridge and the
    broker. kcat does that in C. Each line kcat writes is one record's value; it is timed when
    read (kcat runs unbuffered, ``-u``).
    """
    kcat = shutil.which("kcat")
    if kcat is None:
        print("kcat not found", file=sys.stderr)
        return 1
    cmd = [kcat, "-b", args.bootstrap, "-G", f"bench-latency-{os.getpid()}", "-u", "-f", "%s\\n",
           "-X", "auto.offset.reset=latest", "-X", "fetch.wait.max.ms=100",
           args.pattern]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    stop = [False]

    def on_signal(*_: Any) -> None:
        stop[0] = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    latencies = Latencies()
    sel = selectors.DefaultSelector()
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    sel.register(out_fd, selectors.EVENT_READ)
    sel.register(err_fd, selectors.EVENT_READ)
    assigned: set[bytes] = set()
    ready = False
    pending, err_buf = b"", b""
    deadline = time.monotonic() + 120
    try:
        while not stop[0] and proc.poll() is None:
            if not ready and time.monotonic() > deadline:
                print(f"assigned only {len(assigned)} partitions", file=sys.stderr)
                return 1
            for key, _ in sel.select(0.1):
                chunk = os.read(key.fd, 1 << 20)
                now = time.time_ns()
                if key.fd == err_fd:
                    err_buf += chunk
                    *lines, err_buf = err_buf.split(b"\n")
                    for line in lines:
                        if b"assigned:" in line:
                            assigned.update(_KCAT_TP.findall(line.split(b"assigned:", 1)[1]))
                        elif line.strip() and b"Waiting for group rebalance" not in line:
                            print(line.decode(errors="replace"), file=sys.stderr)
                    if not ready and len(assigned) >= args.expect_partitions:
                        ready = True
                        print(f"ready {len(assigned)}", flush=True)
                    continue
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    latencies.add(_TIME_TOKEN_B.search(line), now)
    finally:
        latencies.write(args.out)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return 0


_KCAT_TP = re.compile(rb"(\S+ \[\d+\])")
_TIME_TOKEN_B = re.compile(rb"bench-t(\d+)s\d+")


async def paced_produce(bootstrap: str, topic: str, templates: list[bytes], rate: float,
                        seconds: float, partitions: int) -> dict[str, Any]:
    """Offer ``rate`` events/s for ``seconds``: a burst every 10 ms, each event stamped with time_ns."""
    producer = producer_for(bootstrap, linger_ms=0)
    await producer.start()
    t_count = len(templates)
    sent = 0
    pending: list[asyncio.Future[Any]] = []
    late_ticks = 0
    try:
        start = time.perf_counter()
        first_ns = time.time_ns()
        tick = 0
        while True:
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
            due = int(rate * elapsed) + 1 - sent
            if due > 0:
                builders: dict[int, Any] = {}
                for seq in range(sent, sent + due):
                    p = partition_of(seq, t_count, partitions)
                    b = builders.get(p)
                    if b is None:
                        b = builders[p] = producer.create_batch()
                    value = templates[seq % t_count].replace(PLACEHOLDER, time_token(time.time_ns(), seq))
                    if b.append(key=None, value=value, timestamp=None) is None:  # full: only when far behind
                        pending.append(await producer.send_batch(b, topic, partition=p))
                        b = builders[p] = producer.create_batch()
                        b.append(key=None, value=value, timestamp=None)
                sent += due
                for p, b in builders.items():
                    pending.append(await producer.send_batch(b, topic, partition=p))
            if len(pending) > 600:
                done = [f for f in pending if f.done()]
                for f in done:
                    f.result()
                pending = [f for f in pending if not f.done()]
            tick += 1
            delay = start + tick * LATENCY_TICK_S - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late_ticks += 1
        last_ns = time.time_ns()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    duration = (last_ns - first_ns) / 1e9
    return {"sent": sent, "seconds": round(duration, 3), "offered_eps": round(sent / duration, 1),
            "first_ns": first_ns, "late_ticks": late_ticks}


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def consumer_main(argv: list[str]) -> int:
    """``run.py _latency_consumer --bootstrap B --pattern RE --expect-partitions N --out PATH [--client C]``."""
    ap = argparse.ArgumentParser(prog="run.py _latency_consumer")
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--pattern", required=True)
    ap.add_argument("--expect-partitions", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--client", choices=("aiokafka", "kcat"), default="aiokafka")
    args = ap.parse_args(argv)
    if args.client == "kcat":
        return _latency_consumer_kcat(args)
    return int(run_loop(_latency_consumer(args)))
