#!/usr/bin/env python3
"""End-to-end benchmark of canvas-bridge against a real Kafka broker.

    python benchmarks/run.py [--events N] [--backlog N] [--rate EPS] [--repeat R]
                             [--skip-throughput] [--skip-latency] [--skip-rss] [--bootstrap HOST:PORT]
                             [--json PATH] [--profile PATH]

Every figure comes from the same run, the same broker and the same data (see
benchmarks/README.md for what each one means):

- ``bridge_eps``       ``python -m bridge run`` draining a pre-filled raw topic (6 partitions):
                       events / seconds from process spawn until the group's committed offsets
                       equal the end offsets of every partition.
- ``passthrough_eps``  the client's limit: a subprocess with the same aiokafka consumer and
                       producer settings that republishes every value unchanged (getmany,
                       create_batch/send_batch per partition, acks, commit per batch). Same timing.
- ``naive_eps``        the obvious implementation: json.loads, datetime.fromisoformat to UTC,
                       json.dumps, one ``producer.send`` per message. Same timing.
- ``p50_ms``/``p99_ms`` latency from raw produce to the typed record being consumed, at a
                       fixed offered rate (``--rate``, default 5000 events/s) for ~20 s.
- ``peak_rss_mb``      the bridge's peak RSS while it drains a backlog (``--backlog``, default
                       1,000,000 events).

The broker is this script's own (``scripts/kafka-local`` in a temporary state folder, stopped
and removed at the end, also on failure or Ctrl-C) unless ``--bootstrap`` names one. The
figures are printed with the targets as MET / NOT MET (never asserted) and written to
``benchmarks/results/latest.json``.

Hidden sub-commands (run as subprocesses by the benchmark itself):
``_passthrough``, ``_naive``, ``_latency_consumer``.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import logging
import os
import platform
import re
import secrets
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiokafka  # noqa: E402
import msgspec  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka import errors as kerr  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402

CATALOG = ROOT / "tests" / "fixtures" / "catalog"
CANVAS_FILE = CATALOG / "canvas-examples.jsonl"
CALIPER_FILE = CATALOG / "caliper-examples.jsonl"
KAFKA_LOCAL = ROOT / "scripts" / "kafka-local"
POM = ROOT / "scripts" / "kafka" / "pom.xml"
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "latest.json"

RAW_PARTITIONS = 6
PLACEHOLDER = b"@@BENCH_SEQ@@"
#: Diagnostic drainers run beside the three figures (``--skip-diagnostics`` leaves them out):
#: the passthrough plus the core's CPU, then plus the fan-out to the typed topics.
DIAGNOSTICS = ["core_passthrough", "core_fanout"]
BATCH_MAX_RECORDS = 2000  # the bridge's delivery.batch_max_records default
FETCH_TIMEOUT_MS = 200  # the bridge's delivery.fetch_timeout_ms default
POLL_S = 0.1  # committed-offsets poll interval
RSS_SAMPLE_S = 0.5
LATENCY_SECONDS = 20.0
LATENCY_WARMUP_S = 2.0
LATENCY_TICK_S = 0.010
LATENCY_WARMUP_ROUNDS = 3

TARGET_VS_PASSTHROUGH = 0.8
TARGET_VS_NAIVE = 3.0
TARGET_P99_MS = 50.0
TARGET_RSS_MB = 200.0


class BenchError(Exception):
    """The benchmark cannot go on (a process died, a timeout); the message says why."""


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_loop(coro: Any) -> Any:
    """The same event loop as the bridge's ``run`` (uvloop when the ``fast`` extra is there)."""
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def event_loop_name() -> str:
    try:
        import uvloop  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


# ---------------------------------------------------------------------------
# Data: the catalog mix, made distinct per event
# ---------------------------------------------------------------------------


def read_lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def build_templates() -> list[bytes]:
    """Each catalog sample once, with PLACEHOLDER where a per-event token goes.

    Canvas: ``metadata.request_id = "bench-<token>"``; Caliper: ``data[i].id =
    "urn:uuid:bench-<token>-<i>"``. Both enter the dedupe key, so no two events share one
    (the bridge would suppress repeats, which would flatter it).
    """
    ph = PLACEHOLDER.decode()
    out: list[bytes] = []
    for line in read_lines(CANVAS_FILE):
        obj = json.loads(line)
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            raise BenchError(f"unexpected Canvas sample: {line[:80]!r}")
        obj["metadata"]["request_id"] = f"bench-{ph}"
        out.append(_dump(obj))
    for line in read_lines(CALIPER_FILE):
        obj = json.loads(line)
        data = obj.get("data") if isinstance(obj, dict) else None
        if not isinstance(data, list) or not all(isinstance(ev, dict) for ev in data):
            raise BenchError(f"unexpected Caliper sample: {line[:80]!r}")
        for i, ev in enumerate(data):
            ev["id"] = f"urn:uuid:bench-{ph}-{i}"
        out.append(_dump(obj))
    return out


def seq_token(seq: int) -> bytes:
    return b"%d" % seq


def time_token(send_ns: int, seq: int) -> bytes:
    return b"t%ds%d" % (send_ns, seq)


_TIME_TOKEN = re.compile(r"bench-t(\d+)s\d+")


def partition_of(seq: int, n_templates: int) -> int:
    """Spread events over the raw partitions so that each partition sees the whole mix."""
    return (seq + seq // n_templates) % RAW_PARTITIONS


@dataclass
class MixShape:
    """What the core makes of one pass over the templates (checked offline, untimed)."""

    templates: int
    canvas: int
    caliper: int
    typed_outputs: int
    dead_letters: int
    bridge_topic_names: set[tuple[str, str]]  # (format, event_name)
    naive_topic_names: set[str]
    outputs_per_template: list[int]
    avg_value_bytes: float


def mix_shape(templates: list[bytes]) -> MixShape:
    from bridge.config import load_config
    from bridge.core import Core, DeadLetter, Publish, Source

    cfg = load_config(env={})
    core = Core(cfg.topics, cfg.decode, cfg.limits)
    typed = dead = 0
    names: set[tuple[str, str]] = set()
    naive: set[str] = set()
    per: list[int] = []
    keys: set[str] = set()
    for i, tpl in enumerate(templates):
        for token in (seq_token(i), seq_token(i + 10**9)):
            outs = core.process(tpl.replace(PLACEHOLDER, token), Source("raw", 0, i), 0)
            n_typed = 0
            for o in outs:
                if isinstance(o, Publish):
                    n_typed += 1
                    names.add((o.format, o.event_name))
                    if o.dedupe_key in keys:
                        raise BenchError(f"template {i}: two tokens gave the same dedupe key")
                    keys.add(o.dedupe_key)
                elif isinstance(o, DeadLetter):
                    dead += 1
            typed += n_typed
        per.append(n_typed)
        for topic, _ in naive_outputs(tpl.replace(PLACEHOLDER, b"0"), ""):
            naive.add(topic)
    n_canvas = len(read_lines(CANVAS_FILE))
    return MixShape(
        templates=len(templates),
        canvas=n_canvas,
        caliper=len(templates) - n_canvas,
        typed_outputs=typed // 2,
        dead_letters=dead // 2,
        bridge_topic_names=names,
        naive_topic_names=naive,
        outputs_per_template=per,
        avg_value_bytes=sum(len(t) for t in templates) / len(templates),
    )


def expected_outputs(shape: MixShape, n: int) -> int:
    t = shape.templates
    full, rest = divmod(n, t)
    return full * sum(shape.outputs_per_template) + sum(shape.outputs_per_template[:rest])


# ---------------------------------------------------------------------------
# The naive implementation (shared by the _naive subprocess and the topic pre-creation)
# ---------------------------------------------------------------------------

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _naive_utc(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return text  # a form fromisoformat does not take: carried as it came
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat()


def naive_outputs(value: bytes, prefix: str) -> list[tuple[str, bytes]]:
    """json.loads -> event time to UTC with datetime.fromisoformat -> json.dumps, per event."""
    obj = json.loads(value)
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta["event_time"] = _naive_utc(meta.get("event_time"))
        return [(f"{prefix}{meta.get('event_name')}", json.dumps(obj).encode())]
    out = []
    envelope = {k: v for k, v in obj.items() if k != "data"}
    for ev in obj.get("data") or ():
        ev["eventTime"] = _naive_utc(ev.get("eventTime"))
        name = _CAMEL.sub("_", f"{ev.get('type')}_{ev.get('action')}").lower()
        out.append((f"{prefix}caliper.{name}", json.dumps({**envelope, "event": ev}).encode()))
    return out


# ---------------------------------------------------------------------------
# Broker, topics, producing
# ---------------------------------------------------------------------------


class LocalBroker:
    """scripts/kafka-local with its state in a temporary folder; stop() removes everything."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="canvas-bridge-bench-kafka-")
        self.env = {**os.environ, "KAFKA_LOCAL_DIR": self.dir}
        self.bootstrap = ""

    def start(self) -> str:
        say(f"starting a Kafka broker (scripts/kafka-local, state in {self.dir})")
        proc = subprocess.run([str(KAFKA_LOCAL), "start"], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise BenchError(f"scripts/kafka-local start failed:\n{proc.stderr[-3000:]}")
        self.bootstrap = proc.stdout.strip().splitlines()[-1]
        say(f"broker up at {self.bootstrap}")
        return self.bootstrap

    def pid(self) -> int | None:
        try:
            return int(Path(self.dir, "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            subprocess.run([str(KAFKA_LOCAL), "stop"], env=self.env, cwd=ROOT, timeout=120,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)
        say("broker stopped and its state removed")


async def new_admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin", request_timeout_ms=60000)
    await admin.start()
    return admin


async def create_topics(admin: AIOKafkaAdminClient, topics: dict[str, int]) -> None:
    """Create topics (name -> partitions) and wait until the broker's metadata shows them all."""
    if not topics:
        return
    brokers = (await admin.describe_cluster()).get("brokers") or [None]
    rf = min(3, len(brokers))
    names = sorted(topics)
    for i in range(0, len(names), 200):
        chunk = names[i:i + 200]
        resp = await admin.create_topics([NewTopic(t, topics[t], rf) for t in chunk], timeout_ms=60000)
        for topic, code, *_ in resp.topic_errors:
            if code not in (0, 36):  # 36: already exists
                raise BenchError(f"creating topic {topic} failed with Kafka error code {code}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if set(names) <= set(await admin.list_topics()):
            return
        await asyncio.sleep(0.2)
    raise BenchError("created topics did not appear in the metadata within 60 s")


WARM_ROUNDS = 3
WARM_RECORDS = 3
WARM_VALUE = b"benchmark warm-up " + b"." * 1500


async def warm_partitions(bootstrap: str, topics: dict[str, int]) -> list[float]:
    """Write ~14 kB to every partition of fresh output topics, in a few requests (untimed set-up).

    On the reference VM a fresh partition's first index entry (after ~4 kB of data) stalls
    the broker for ~10 ms per partition: a produce request that reaches that point on ~340
    partitions at once takes ~3 s. Real typed topics are long-lived, so this one-off cost is
    paid here, before any timing, for every drainer alike. Returns each round's seconds.
    """
    producer = producer_for(bootstrap)
    await producer.start()
    rounds = []
    try:
        await asyncio.gather(*(producer.partitions_for(t) for t in topics))
        for _ in range(WARM_ROUNDS):
            t0 = time.perf_counter()
            futures = []
            for topic, n in topics.items():
                for p in range(n):
                    b = producer.create_batch()
                    for _ in range(WARM_RECORDS):
                        b.append(key=None, value=WARM_VALUE, timestamp=None)
                    futures.append(await producer.send_batch(b, topic, partition=p))
            await asyncio.gather(*futures)
            rounds.append(round(time.perf_counter() - t0, 2))
    finally:
        await producer.stop()
    return rounds


def producer_for(bootstrap: str, linger_ms: int = 5) -> AIOKafkaProducer:
    """The benchmark's own producer (raw topics): acks=all.

    The paced producer of the latency phase uses ``linger_ms=0``: it hands over whole bursts as
    record batches already, so a linger would only add its delay to every measured latency.
    """
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, client_id="bench-producer", acks="all", linger_ms=linger_ms,
        max_batch_size=1048576, max_request_size=2 * 1048576, request_timeout_ms=60000,
    )


async def produce_backlog(bootstrap: str, topic: str, n: int, templates: list[bytes], first_seq: int) -> float:
    """Produce ``n`` distinct events to ``topic`` with the batch API; returns the seconds it took."""
    producer = producer_for(bootstrap)
    await producer.start()
    t_count = len(templates)
    started = time.perf_counter()
    try:
        builders = [producer.create_batch() for _ in range(RAW_PARTITIONS)]
        pending: list[asyncio.Future[Any]] = []
        for i in range(n):
            seq = first_seq + i
            p = partition_of(seq, t_count)
            value = templates[seq % t_count].replace(PLACEHOLDER, b"%d" % seq)
            b = builders[p]
            if b.append(key=None, value=value, timestamp=None) is None:
                pending.append(await producer.send_batch(b, topic, partition=p))
                b = builders[p] = producer.create_batch()
                if b.append(key=None, value=value, timestamp=None) is None:
                    raise BenchError("an event does not fit in an empty batch")
                if len(pending) >= 48:
                    await asyncio.gather(*pending[:24])
                    del pending[:24]
        for p, b in enumerate(builders):
            if b.record_count():
                pending.append(await producer.send_batch(b, topic, partition=p))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


class Offsets:
    """End offsets of many partitions through one long-lived consumer (never assigned: no fetching)."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id="bench-offsets",
                                          enable_auto_commit=False, request_timeout_ms=120000)
        self._known: set[str] = set()

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def ends(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Also the readiness check after creating topics: a new partition answers
        NotLeaderForPartition until the broker has set it up, and aiokafka retries until it answers."""
        new = {tp.topic for tp in tps} - self._known
        client = self._consumer._client
        if new and hasattr(client, "add_topic"):
            # One metadata request for all of them; otherwise aiokafka learns them one by one.
            for topic in new:
                client.add_topic(topic)
            await client.force_metadata_update()
        self._known |= new
        out: dict[TopicPartition, int] = {}
        for i in range(0, len(tps), 1000):
            out.update(await self._consumer.end_offsets(tps[i:i + 1000]))
        return out

    def forget(self, topics: set[str]) -> None:
        """Stop tracking topics about to be deleted (else every metadata refresh logs an error)."""
        client = self._consumer._client
        self._known -= topics
        if hasattr(client, "set_topics"):
            client.set_topics(sorted(self._known))

    async def total(self, topics: dict[str, int]) -> int:
        return sum((await self.ends([TopicPartition(t, p) for t, n in topics.items() for p in range(n)])).values())


def raw_tps(topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in range(RAW_PARTITIONS)]


# ---------------------------------------------------------------------------
# Subprocesses and their measurement
# ---------------------------------------------------------------------------

_CHILDREN: list[subprocess.Popen[bytes]] = []


def broker_port(bootstrap: str) -> int:
    return int(bootstrap.split(",")[0].rsplit(":", 1)[1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clean_env() -> dict[str, str]:
    """The environment without BRIDGE_* (the bridge rejects unknown ones; ours must not leak)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    spawned: float  # perf_counter at spawn

    def tail(self, n: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-n:]
        return ""


def spawn(name: str, argv: list[str], env: dict[str, str], log_dir: Path,
          stdout: int | None = subprocess.DEVNULL) -> Child:
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=stdout, stderr=log)
    log.close()
    _CHILDREN.append(proc)
    return Child(name, proc, log_path, t0)


def stop_child(child: Child, timeout: float = 45.0) -> int | None:
    """SIGTERM (a graceful drain for the bridge), then SIGKILL after ``timeout``."""
    proc = child.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            say(f"{child.name} did not stop within {timeout:.0f}s after SIGTERM; killing it")
            proc.kill()
            proc.wait()
    with contextlib.suppress(ValueError):
        _CHILDREN.remove(proc)
    return proc.returncode


def kill_children() -> None:
    for proc in list(_CHILDREN):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in list(_CHILDREN):
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _CHILDREN.clear()


#: ``--set NAME=VALUE``: BRIDGE_* settings for the bridge under test only (experiments).
BRIDGE_OVERRIDES: dict[str, str] = {}


def bridge_env(bootstrap: str, raw_topic: str, group: str, prefix: str, port: int) -> dict[str, str]:
    return {
        **clean_env(),
        **BRIDGE_OVERRIDES,
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "BRIDGE_RAW_TOPIC": raw_topic,
        "BRIDGE_GROUP_ID": group,
        "BRIDGE_TOPICS_PREFIX": f"{prefix}.",
        "BRIDGE_TOPICS_CALIPER_PREFIX": f"{prefix}.caliper.",
        "BRIDGE_TOPICS_DEAD_LETTER": f"{prefix}-dlq",
        "BRIDGE_HTTP_PORT": str(port),
        "BRIDGE_LOG_LEVEL": "WARNING",
    }


def bridge_topics(prefix: str, shape: MixShape, partitions: int) -> dict[str, int]:
    topics = {f"{prefix}-dlq": partitions}
    for fmt, name in shape.bridge_topic_names:
        topics[f"{prefix}.caliper.{name}" if fmt == "caliper" else f"{prefix}.{name}"] = partitions
    return topics


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (the bridge's core workers), from /proc/*/stat."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parents[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        frontier += kids
    return found


def read_tree_rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in kB summed over ``pid`` and its descendants (a bridge with core workers
    is several processes; the sum of the high-water marks bounds their peak together)."""
    rss = hwm = 0
    for p in [pid, *descendants(pid)]:
        r, h = read_rss_kb(p)
        rss, hwm = rss + r, hwm + h
    return rss, hwm


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants."""
    return sum(proc_cpu_s(p) for p in [pid, *descendants(pid)])


def read_rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in kB from /proc/<pid>/status; (0, 0) when unavailable."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, hwm


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat); 0 when unavailable."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            rest = fh.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def host_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine (/proc/stat), to tell how loaded it was."""
    try:
        with open("/proc/stat") as fh:
            f = [int(x) for x in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    total = sum(f)
    return total - f[3] - f[4], total


def host_busy_pct(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    dt = after[1] - before[1]
    return round(100 * (after[0] - before[0]) / dt, 1) if dt > 0 else None


def broker_connections(pid: int, port: int) -> int:
    """Established TCP connections of ``pid`` to ``port`` (the broker), from /proc: its sockets'
    inodes matched against /proc/<pid>/net/tcp{,6}. Exactly-once opens a producer per raw partition."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    except OSError:
        return 0
    count = 0
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as fh:
                next(fh)
                for line in fh:
                    f = line.split()
                    # remote address (hex ip:port), state 01 = ESTABLISHED, inode
                    if f[3] == "01" and int(f[2].rsplit(":", 1)[1], 16) == port and f[9] in inodes:
                        count += 1
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    return count


@dataclass
class Drain:
    seconds: float
    first_commit_s: float | None
    committed_at_first: int
    rss_max_kb: int = 0
    hwm_kb: int = 0
    rss_samples: int = 0
    cpu_s: float = 0.0
    host_busy_pct: float | None = None
    broker_cpu_s: float | None = None
    broker_connections: int | None = None


BROKER_PID: int | None = None  # our own broker's JVM, for its CPU time; None with --bootstrap


def broker_cpu_s() -> float | None:
    return proc_cpu_s(BROKER_PID) if BROKER_PID else None


async def wait_drained(bootstrap: str, group: str, ends: dict[TopicPartition, int], child: Child,
                       limit_s: float) -> Drain:
    """Poll the group's committed offsets every 100 ms until they equal ``ends``.

    Also samples the VmRSS / VmHWM of the child and its descendants (core workers) every 0.5 s.
    Timed from the child's spawn.
    """
    admin = await new_admin(bootstrap)
    host0, broker0 = host_cpu(), broker_cpu_s()
    total = sum(ends.values())
    first: float | None = None
    at_first = 0
    rss_max = hwm = samples = 0
    next_rss = 0.0
    try:
        while True:
            now = time.perf_counter()
            if child.proc.poll() is not None:
                raise BenchError(f"{child.name} exited with {child.proc.returncode} before draining:\n{child.tail()}")
            if now >= next_rss:
                r, h = read_tree_rss_kb(child.proc.pid)
                rss_max, hwm, samples = max(rss_max, r), max(hwm, h), samples + 1
                next_rss = now + RSS_SAMPLE_S
            try:
                offsets = await admin.list_consumer_group_offsets(group, partitions=list(ends))
            except (TimeoutError, kerr.KafkaError, OSError):
                offsets = {}
            done = 0
            for tp in ends:
                om = offsets.get(tp)
                if om is not None and om.offset >= 0:
                    done += min(om.offset, ends[tp])
            if done and first is None:
                first, at_first = time.perf_counter() - child.spawned, done
            if done >= total:
                seconds = time.perf_counter() - child.spawned
                r, h = read_tree_rss_kb(child.proc.pid)
                broker1 = broker_cpu_s()
                return Drain(seconds, first, at_first, max(rss_max, r), max(hwm, h), samples + 1,
                             cpu_s=tree_cpu_s(child.proc.pid), host_busy_pct=host_busy_pct(host0, host_cpu()),
                             broker_cpu_s=broker1 - broker0 if broker1 and broker0 is not None else None,
                             broker_connections=broker_connections(child.proc.pid, broker_port(bootstrap)))
            if now - child.spawned > limit_s:
                raise BenchError(f"{child.name} did not drain {total} events within {limit_s:.0f}s "
                                 f"({done} committed):\n{child.tail()}")
            await asyncio.sleep(POLL_S)
    finally:
        await admin.close()


def drain_figures(n: int, d: Drain) -> dict[str, Any]:
    out: dict[str, Any] = {"events": n, "seconds": round(d.seconds, 3), "eps": round(n / d.seconds, 1)}
    if d.first_commit_s is not None and d.seconds > d.first_commit_s:
        out["first_commit_s"] = round(d.first_commit_s, 3)
        out["eps_after_first_commit"] = round((n - d.committed_at_first) / (d.seconds - d.first_commit_s), 1)
    if d.rss_samples:
        out["peak_rss_mb"] = round(max(d.rss_max_kb, d.hwm_kb) / 1024, 1)
    if d.cpu_s:
        # Load-independent: the process's own CPU time (start-up included) per event.
        out["cpu_s"] = round(d.cpu_s, 2)
        out["cpu_us_per_event"] = round(1e6 * d.cpu_s / n, 1)
        out["events_per_cpu_s"] = round(n / d.cpu_s, 1)
        out["cores_used"] = round(d.cpu_s / d.seconds, 2)
    if d.broker_cpu_s is not None:
        out["broker_cpu_us_per_event"] = round(1e6 * d.broker_cpu_s / n, 1)
        out["broker_cores_used"] = round(d.broker_cpu_s / d.seconds, 2)
    out["host_busy_pct"] = d.host_busy_pct
    if d.broker_connections is not None:
        out["broker_connections"] = d.broker_connections  # when it had drained, before SIGTERM
    return out


async def run_drain(ctx: Ctx, kind: str, argv: list[str], env: dict[str, str], group: str,
                    ends: dict[TopicPartition, int], out_topics: dict[str, int], expected: int,
                    tag: str, profile: Path | None = None) -> dict[str, Any]:
    """Spawn one drainer, time it to committed == end, stop it, count its outputs."""
    bootstrap, log_dir = ctx.bootstrap, ctx.log_dir
    before = await ctx.offsets.total(out_topics)
    n = sum(ends.values())
    say(f"{kind}: draining {n} events ({tag})")
    child = spawn(f"{kind}-{tag}", argv, env, log_dir)
    spy = start_profiler(child, profile) if profile is not None else None
    try:
        d = await wait_drained(bootstrap, group, ends, child, limit_s=max(300.0, n / 200))
    finally:
        code = stop_child(child)
    fig = drain_figures(n, d)
    fig["exit_code"] = code
    if spy is not None:
        fig["profile"] = finish_profiler(spy, profile)
    produced = await ctx.offsets.total(out_topics) - before
    fig["outputs"] = produced
    fig["expected_outputs"] = expected
    if produced != expected:
        say(f"WARNING: {kind} published {produced} records, expected {expected}")
    say(f"{kind}: {fig['eps']:,.0f} events/s ({n} in {fig['seconds']:.1f} s, exit {code})")
    return fig


# ---------------------------------------------------------------------------
# Profiling (optional, --profile): py-spy attached to the bridge during the backlog drain
# ---------------------------------------------------------------------------


@dataclass
class Spy:
    proc: subprocess.Popen[bytes]
    started: float
    log: Path


def start_profiler(child: Child, out: Path | None) -> Spy | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if out is None or not Path(exe).exists():
        say("py-spy not found (pip install py-spy): not profiling")
        return None
    fmt = "speedscope" if out.suffix == ".json" else "flamegraph"
    log = child.log_path.with_suffix(".py-spy.log")
    with open(log, "wb") as fh:
        proc = subprocess.Popen([exe, "record", "--pid", str(child.proc.pid), "--rate", "100", "--nonblocking",
                                 "--format", fmt, "-o", str(out)], stdout=fh, stderr=fh)
    _CHILDREN.append(proc)
    return Spy(proc, time.perf_counter(), log)


def finish_profiler(spy: Spy, out: Path | None) -> dict[str, Any]:
    """py-spy writes its file when the profiled process exits (it was just stopped)."""
    try:
        spy.proc.wait(30)
    except subprocess.TimeoutExpired:
        spy.proc.send_signal(signal.SIGINT)
        spy.proc.wait(30)
    with contextlib.suppress(ValueError):
        _CHILDREN.remove(spy.proc)
    info: dict[str, Any] = {"file": str(out), "seconds": round(time.perf_counter() - spy.started, 1)}
    if out is not None and out.suffix == ".json" and out.exists():
        info.update(summarize_speedscope(out))
    elif out is None or not out.exists():
        info["error"] = spy.log.read_text(errors="replace")[-1000:]
    return info


def summarize_speedscope(path: Path, top: int = 30) -> dict[str, Any]:
    """Self and inclusive share of the samples per function (lines merged), over every thread."""
    doc = json.loads(path.read_text())
    frames = doc["shared"]["frames"]
    stdlib = os.path.dirname(os.__file__) + "/"

    def label(f: dict[str, Any]) -> str:
        file = str(f.get("file", ""))
        for root in (str(ROOT) + "/", "site-packages/", stdlib):
            if root in file:
                file = file.split(root, 1)[1]
        return f"{f.get('name')} ({file})"

    labels = [label(f) for f in frames]
    self_w: dict[str, float] = {}
    incl_w: dict[str, float] = {}
    total = 0.0
    for prof in doc["profiles"]:
        for stack, w in zip(prof.get("samples", []), prof.get("weights", []), strict=False):
            if not stack:
                continue
            total += w
            leaf = labels[stack[-1]]
            self_w[leaf] = self_w.get(leaf, 0) + w
            for name in {labels[i] for i in stack}:
                incl_w[name] = incl_w.get(name, 0) + w

    def table(d: dict[str, float]) -> list[list[Any]]:
        rows = sorted(d.items(), key=lambda kv: -kv[1])[:top]
        return [[round(100 * w / total, 1), name] for name, w in rows]

    return {"active_seconds": round(total, 2), "self_pct": table(self_w), "inclusive_pct": table(incl_w)}


# ---------------------------------------------------------------------------
# Hidden sub-commands: the passthrough and naive drainers, the latency consumer
# ---------------------------------------------------------------------------


def _client_config(bootstrap: str, group: str) -> Any:
    """The bridge's own Kafka client settings (bridge.kafka), so that the baselines share them."""
    from bridge.config import load_config

    return load_config(env={"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "BRIDGE_GROUP_ID": group})


def _stop_flag() -> Callable[[], bool]:
    stop = [False]

    def handler(*_: Any) -> None:
        stop[0] = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, handler)
    return lambda: stop[0]


async def _passthrough(args: argparse.Namespace) -> int:
    from bridge.kafka import make_consumer, make_producer

    cfg = _client_config(args.bootstrap, args.group)
    consumer, producer = make_consumer(cfg), make_producer(cfg)
    await producer.start()
    await consumer.start()
    stopping = _stop_flag()
    consumer.subscribe([args.topic])
    out = args.out_topic
    try:
        while not stopping():
            records = await consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS, max_records=BATCH_MAX_RECORDS)
            if not records:
                continue
            futures = []
            for tp, msgs in records.items():
                batch = producer.create_batch()
                for m in msgs:
                    if batch.append(key=m.key, value=m.value, timestamp=None) is None:
                        futures.append(await producer.send_batch(batch, out, partition=tp.partition))
                        batch = producer.create_batch()
                        batch.append(key=m.key, value=m.value, timestamp=None)
                futures.append(await producer.send_batch(batch, out, partition=tp.partition))
            await asyncio.gather(*futures)
            await consumer.commit({tp: msgs[-1].offset + 1 for tp, msgs in records.items()})
    finally:
        await consumer.stop()
        await producer.stop()
    return 0


async def _naive(args: argparse.Namespace) -> int:
    from bridge.kafka import make_consumer, make_producer

    cfg = _client_config(args.bootstrap, args.group)
    consumer, producer = make_consumer(cfg), make_producer(cfg)
    await producer.start()
    await consumer.start()
    stopping = _stop_flag()
    consumer.subscribe([args.topic])
    prefix = args.prefix
    try:
        while not stopping():
            records = await consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS, max_records=BATCH_MAX_RECORDS)
            if not records:
                continue
            futures = []
            for msgs in records.values():
                for m in msgs:
                    for topic, value in naive_outputs(m.value, prefix):
                        futures.append(await producer.send(topic, value))
            await asyncio.gather(*futures)
            await consumer.commit({tp: msgs[-1].offset + 1 for tp, msgs in records.items()})
    finally:
        await consumer.stop()
        await producer.stop()
    return 0


async def _core(args: argparse.Namespace) -> int:
    """Diagnostics: the passthrough's loop with the bridge's core (``bridge.core.Core``) on every value.

    Without ``--prefix``: the core's outputs are dropped and the raw values republished to
    ``--out-topic``, exactly as ``_passthrough`` does: what the core's CPU alone costs.
    With ``--prefix``: the core's typed records and dead letters are published to their topics
    (the bridge's partitioner, one ``send_batch`` per partition): the core plus the fan-out,
    without the bridge's delivery bookkeeping (dedupe windows, metrics, background commits).
    """
    from bridge.config import load_config
    from bridge.core import Core, Source
    from bridge.delivery import Partitioner
    from bridge.kafka import make_consumer, make_producer

    cfg = _client_config(args.bootstrap, args.group)
    fanout = bool(args.prefix)
    core = Core.from_config(load_config(env={
        "BRIDGE_TOPICS_PREFIX": f"{args.prefix}.", "BRIDGE_TOPICS_CALIPER_PREFIX": f"{args.prefix}.caliper.",
        "BRIDGE_TOPICS_DEAD_LETTER": f"{args.prefix}-dlq"}))
    consumer, producer = make_consumer(cfg), make_producer(cfg)
    partitioner = Partitioner()
    await producer.start()
    await consumer.start()
    stopping = _stop_flag()
    consumer.subscribe([args.topic])
    process = core.process
    try:
        while not stopping():
            records = await consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS, max_records=BATCH_MAX_RECORDS)
            if not records:
                continue
            now_ms = int(time.time() * 1000)
            groups: dict[tuple[str, int], list[tuple[bytes | None, bytes | None, Any, int | None]]] = {}
            outs = []
            for tp, msgs in records.items():
                for m in msgs:
                    outs.extend(process(m.value, Source(tp.topic, tp.partition, m.offset, m.key), now_ms))
                    if not fanout:
                        groups.setdefault((args.out_topic, tp.partition), []).append((m.key, m.value, None, None))
            if fanout:
                await partitioner.prepare(producer, {o.topic for o in outs})
                for o in outs:
                    ts = getattr(o, "timestamp_ms", None)
                    groups.setdefault((o.topic, partitioner.partition(o.topic, o.key)), []).append(
                        (o.key, o.value, o.headers, ts))
                partitioner.next_batch()
            futures = []
            for (topic, partition), items in groups.items():
                batch = producer.create_batch()
                for key, value, headers, ts in items:
                    if batch.append(key=key, value=value, timestamp=ts, headers=headers or []) is None:
                        futures.append(await producer.send_batch(batch, topic, partition=partition))
                        batch = producer.create_batch()
                        batch.append(key=key, value=value, timestamp=ts, headers=headers or [])
                futures.append(await producer.send_batch(batch, topic, partition=partition))
            await asyncio.gather(*futures)
            await consumer.commit({tp: msgs[-1].offset + 1 for tp, msgs in records.items()})
    finally:
        await consumer.stop()
        await producer.stop()
    return 0


def write_latencies(path: str | Path, sent: array.array[int], received: array.array[int], unparsed: int) -> None:
    with open(path, "wb") as fh:
        array.array("q", [len(sent), unparsed]).tofile(fh)
        sent.tofile(fh)
        received.tofile(fh)


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
    stopping = _stop_flag()
    consumer.subscribe(pattern=args.pattern)
    sent = array.array("q")
    received = array.array("q")
    unparsed = 0
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
                    if match is None:
                        unparsed += 1
                        continue
                    sent.append(int(match.group(1)))
                    received.append(now)
    finally:
        write_latencies(args.out, sent, received, unparsed)
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
    sent = array.array("q")
    received = array.array("q")
    unparsed = 0
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
                    match = _TIME_TOKEN_B.search(line)
                    if match is None:
                        unparsed += 1
                        continue
                    sent.append(int(match.group(1)))
                    received.append(now)
    finally:
        write_latencies(args.out, sent, received, unparsed)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return 0


_KCAT_TP = re.compile(rb"(\S+ \[\d+\])")
_TIME_TOKEN_B = re.compile(rb"bench-t(\d+)s\d+")


# ---------------------------------------------------------------------------
# The phases
# ---------------------------------------------------------------------------


@dataclass
class Ctx:
    args: argparse.Namespace
    bootstrap: str
    rid: str
    templates: list[bytes]
    shape: MixShape
    log_dir: Path
    typed_partitions: int
    admin: AIOKafkaAdminClient
    offsets: Offsets
    created: set[str] = field(default_factory=set)
    results: dict[str, Any] = field(default_factory=dict)

    async def create(self, topics: dict[str, int], warm: bool = True) -> None:
        """Create the topics, wait until the broker serves every partition, warm them (untimed)."""
        t0 = time.perf_counter()
        await create_topics(self.admin, topics)
        self.created |= set(topics)
        await self.offsets.total(topics)
        t1 = time.perf_counter()
        rounds = await warm_partitions(self.bootstrap, topics) if warm else []
        say(f"created {len(topics)} topics in {t1 - t0:.1f} s"
            + (f", warmed their partitions in {time.perf_counter() - t1:.1f} s (rounds: {rounds})" if warm else ""))


    async def drop_created(self) -> None:
        """Delete the topics created so far (untimed): the next phase starts on a broker without
        the previous phase's ~700 partitions and their data."""
        names = sorted(self.created)
        if not names:
            return
        t0 = time.perf_counter()
        self.offsets.forget(set(names))
        await self.admin.delete_topics(names)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not set(names) & set(await self.admin.list_topics()):
                break
            await asyncio.sleep(0.2)
        self.created.clear()
        say(f"deleted {len(names)} topics in {time.perf_counter() - t0:.1f} s")


def script_argv(sub: str, *rest: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), sub, *rest]


async def phase_throughput(ctx: Ctx) -> None:
    args, rid, shape = ctx.args, ctx.rid, ctx.shape
    raw = f"{rid}.raw"
    await ctx.create({raw: RAW_PARTITIONS}, warm=False)
    say(f"producing {args.events} events to {raw} ({RAW_PARTITIONS} partitions)")
    secs = await produce_backlog(ctx.bootstrap, raw, args.events, ctx.templates, first_seq=0)
    ends = await ctx.offsets.ends(raw_tps(raw))
    if sum(ends.values()) != args.events:
        raise BenchError(f"{raw} holds {sum(ends.values())} records, expected {args.events}")
    ctx.results["produce"] = {"events": args.events, "seconds": round(secs, 2), "eps": round(args.events / secs, 1)}
    say(f"produced in {secs:.1f} s ({args.events / secs:,.0f} events/s)")

    b_prefix, p_topic, n_prefix = f"{rid}.bridge", f"{rid}.passthrough", f"{rid}.naive."
    b_topics = bridge_topics(b_prefix, shape, ctx.typed_partitions)
    n_topics = {f"{n_prefix}{t}": ctx.typed_partitions for t in shape.naive_topic_names}
    kinds = ["bridge", "passthrough", "naive"]
    # Diagnostics: where the bridge's time goes between the passthrough and itself.
    cp_topic, f_prefix = f"{rid}.corepass", f"{rid}.fanout"
    f_topics = bridge_topics(f_prefix, shape, ctx.typed_partitions) if not args.skip_diagnostics else {}
    if not args.skip_diagnostics:
        kinds += DIAGNOSTICS
    await ctx.create({**b_topics, **n_topics, p_topic: RAW_PARTITIONS,
                      **({cp_topic: RAW_PARTITIONS, **f_topics} if f_topics else {})})
    expected_typed = expected_outputs(shape, args.events)
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    order = []
    for r in range(args.repeat):
        for kind in kinds:
            group = f"{rid}.{kind}.{r}"
            if kind == "bridge":
                env = bridge_env(ctx.bootstrap, raw, group, b_prefix, free_port())
                argv = [sys.executable, "-m", "bridge", "run"]
                fig = await run_drain(ctx, kind, argv, env, group, ends, b_topics, expected_typed, f"run{r + 1}")
            elif kind == "passthrough":
                argv = script_argv("_passthrough", "--bootstrap", ctx.bootstrap, "--topic", raw,
                                   "--group", group, "--out-topic", p_topic)
                fig = await run_drain(ctx, kind, argv, clean_env(), group, ends, {p_topic: RAW_PARTITIONS},
                                      args.events, f"run{r + 1}")
            elif kind == "core_passthrough":
                argv = script_argv("_core", "--bootstrap", ctx.bootstrap, "--topic", raw,
                                   "--group", group, "--out-topic", cp_topic)
                fig = await run_drain(ctx, kind, argv, clean_env(), group, ends, {cp_topic: RAW_PARTITIONS},
                                      args.events, f"run{r + 1}")
            elif kind == "core_fanout":
                argv = script_argv("_core", "--bootstrap", ctx.bootstrap, "--topic", raw,
                                   "--group", group, "--prefix", f_prefix)
                fig = await run_drain(ctx, kind, argv, clean_env(), group, ends, f_topics, expected_typed,
                                      f"run{r + 1}")
            else:
                argv = script_argv("_naive", "--bootstrap", ctx.bootstrap, "--topic", raw,
                                   "--group", group, "--prefix", n_prefix)
                fig = await run_drain(ctx, kind, argv, clean_env(), group, ends, n_topics, expected_typed,
                                      f"run{r + 1}")
            runs[kind].append(fig)
            order.append(f"{kind}#{r + 1}")
    ctx.results["throughput_order"] = order
    for kind, figs in runs.items():
        eps = round(statistics.median(f["eps"] for f in figs), 1)
        if kind in DIAGNOSTICS:
            ctx.results.setdefault("diagnostics", {})[f"{kind}_eps"] = eps
            ctx.results["diagnostics"][kind] = {"runs": figs}
        else:
            ctx.results[f"{kind}_eps"] = eps
            ctx.results[kind] = {"runs": figs}


async def wait_ready(port: int, child: Child, limit_s: float = 120.0) -> float:
    """Poll the bridge's /readyz until 200 (partitions assigned); returns the seconds it took."""
    url = f"http://127.0.0.1:{port}/readyz"
    t0 = time.perf_counter()

    def probe() -> int:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0

    while True:
        if child.proc.poll() is not None:
            raise BenchError(f"{child.name} exited with {child.proc.returncode}:\n{child.tail()}")
        if await asyncio.to_thread(probe) == 200:
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > limit_s:
            raise BenchError(f"{child.name} was not ready within {limit_s:.0f}s:\n{child.tail()}")
        await asyncio.sleep(0.2)


async def paced_produce(bootstrap: str, topic: str, templates: list[bytes], rate: float,
                        seconds: float) -> dict[str, Any]:
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
                    p = partition_of(seq, t_count)
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


async def phase_latency(ctx: Ctx) -> None:
    args, rid, shape = ctx.args, ctx.rid, ctx.shape
    raw, prefix = f"{rid}.lat-raw", f"{rid}.lat"
    topics = bridge_topics(prefix, shape, ctx.typed_partitions)
    typed_only = {t: n for t, n in topics.items() if t != f"{prefix}-dlq"}
    await ctx.create({raw: RAW_PARTITIONS}, warm=False)
    await ctx.create(topics)
    out_file = ctx.log_dir / "latency.bin"
    expect = sum(typed_only.values())
    pattern = "^" + re.escape(f"{prefix}.") + ".*"
    client = args.latency_client
    if client == "kcat" and shutil.which("kcat") is None:
        say("latency: kcat not found (scripts/install-test-tools installs it); timing with aiokafka instead,"
            " which costs ~0.3 core more on this host")
        client = "aiokafka"
    consumer = spawn("latency-consumer", script_argv(
        "_latency_consumer", "--bootstrap", ctx.bootstrap, "--pattern", pattern,
        "--expect-partitions", str(expect), "--out", str(out_file), "--client", client),
        clean_env(), ctx.log_dir,
        stdout=subprocess.PIPE)
    bridge: Child | None = None
    try:
        assert consumer.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(consumer.proc.stdout.readline), timeout=150)
        if not line.startswith(b"ready"):
            raise BenchError(f"the latency consumer did not get ready:\n{consumer.tail()}")
        say(f"latency: consumer assigned {line.split()[1].decode()} typed partitions; starting the bridge")
        port = free_port()
        group = f"{rid}.lat"
        bridge = spawn("bridge-latency", [sys.executable, "-m", "bridge", "run"],
                       bridge_env(ctx.bootstrap, raw, group, prefix, port), ctx.log_dir)
        ready_s = await wait_ready(port, bridge)
        # Warm-up through the bridge itself (untimed): its producer learns the typed topics and the
        # raw partitions get past their first index entry. These records carry no send time.
        t_warm = time.perf_counter()
        for i in range(LATENCY_WARMUP_ROUNDS):
            await produce_backlog(ctx.bootstrap, raw, 2 * len(ctx.templates), ctx.templates,
                                  first_seq=2 * 10**9 + i * 10**6)
            ends = await ctx.offsets.ends(raw_tps(raw))
            await wait_drained(ctx.bootstrap, group, ends, bridge, limit_s=bridge_uptime(bridge) + 300)
        warm_s = time.perf_counter() - t_warm
        say(f"latency: bridge ready in {ready_s:.1f} s, warmed up in {warm_s:.1f} s; "
            f"offering {args.rate:g} events/s for {args.latency_seconds:g} s")
        cpu0, host0, t0 = tree_cpu_s(bridge.proc.pid), host_cpu(), time.perf_counter()
        cons0, broker0, self0 = tree_cpu_s(consumer.proc.pid), broker_cpu_s(), proc_cpu_s(os.getpid())
        prod = await paced_produce(ctx.bootstrap, raw, ctx.templates, args.rate, args.latency_seconds)
        t_sent = time.perf_counter()
        ends = await ctx.offsets.ends(raw_tps(raw))
        await wait_drained(ctx.bootstrap, group, ends, bridge,
                           limit_s=bridge_uptime(bridge) + max(120.0, prod["sent"] / 500))
        t_done = time.perf_counter()
        cpu1, host1 = tree_cpu_s(bridge.proc.pid), host_cpu()
        cons1, broker1, self1 = tree_cpu_s(consumer.proc.pid), broker_cpu_s(), proc_cpu_s(os.getpid())
        await asyncio.sleep(1.5)  # the consumer's last fetch
        stop_child(consumer)
        bridge_rss = read_rss_kb(bridge.proc.pid)
        stop_child(bridge)
    finally:
        stop_child(consumer)
        if bridge is not None:
            stop_child(bridge)
    sent_ns, recv_ns, unparsed = read_latencies(out_file)
    n = len(sent_ns)
    cutoff = prod["first_ns"] + int(LATENCY_WARMUP_S * 1e9)
    lat = sorted((r - s) / 1e6 for s, r in zip(sent_ns, recv_ns, strict=True) if s >= cutoff)
    expected = expected_outputs(shape, prod["sent"])
    fig = {
        "rate_target_eps": args.rate,
        "offered_eps": prod["offered_eps"],
        "events_sent": prod["sent"],
        "send_seconds": prod["seconds"],
        "late_ticks": prod["late_ticks"],
        "typed_records_received": n,
        "typed_records_expected": expected,
        "records_without_send_time": unparsed,  # the warm-up records (and anything unparsable)
        "warmup_s": LATENCY_WARMUP_S,
        "consumer": client,
        "count": len(lat),
        "p50_ms": round(percentile(lat, 0.50), 2),
        "p90_ms": round(percentile(lat, 0.90), 2),
        "p99_ms": round(percentile(lat, 0.99), 2),
        "p999_ms": round(percentile(lat, 0.999), 2),
        "max_ms": round(lat[-1], 2) if lat else None,
        "min_ms": round(lat[0], 2) if lat else None,
        "bridge_ready_s": round(ready_s, 2),
        "warmup_events": LATENCY_WARMUP_ROUNDS * 2 * len(ctx.templates),
        "warmup_through_bridge_s": round(warm_s, 2),
        "bridge_rss_mb": round(bridge_rss[0] / 1024, 1),
        # > ~0.1 s: the bridge did not keep up with the offered rate (latency is then queueing).
        "committed_all_s_after_last_send": round(t_done - t_sent, 2),
        # CPU (cores) from the first send until everything was committed, per process.
        "bridge_cpu_cores": round((cpu1 - cpu0) / (t_done - t0), 2) if cpu1 else None,
        "broker_cpu_cores": round((broker1 - broker0) / (t_done - t0), 2) if broker1 and broker0 else None,
        "latency_consumer_cpu_cores": round((cons1 - cons0) / (t_done - t0), 2) if cons1 else None,
        "producer_cpu_cores": round((self1 - self0) / (t_done - t0), 2) if self1 else None,
        "host_busy_pct": host_busy_pct(host0, host1),
    }
    if n != expected:
        say(f"WARNING: the latency consumer received {n} typed records, expected {expected}")
    ctx.results["latency"] = fig
    ctx.results["p50_ms"], ctx.results["p99_ms"] = fig["p50_ms"], fig["p99_ms"]
    say(f"latency: p50 {fig['p50_ms']} ms, p99 {fig['p99_ms']} ms, max {fig['max_ms']} ms "
        f"over {fig['count']} records at {fig['offered_eps']:,.0f} events/s offered")


def bridge_uptime(child: Child) -> float:
    return time.perf_counter() - child.spawned


async def phase_rss(ctx: Ctx) -> None:
    args, rid, shape = ctx.args, ctx.rid, ctx.shape
    raw, prefix = f"{rid}.rss-raw", f"{rid}.rss"
    topics = bridge_topics(prefix, shape, ctx.typed_partitions)
    await ctx.create({raw: RAW_PARTITIONS}, warm=False)
    await ctx.create(topics)
    say(f"producing a backlog of {args.backlog} events to {raw}")
    secs = await produce_backlog(ctx.bootstrap, raw, args.backlog, ctx.templates, first_seq=10**9)
    say(f"produced in {secs:.1f} s ({args.backlog / secs:,.0f} events/s)")
    ends = await ctx.offsets.ends(raw_tps(raw))
    if sum(ends.values()) != args.backlog:
        raise BenchError(f"{raw} holds {sum(ends.values())} records, expected {args.backlog}")
    group = f"{rid}.rss"
    env = bridge_env(ctx.bootstrap, raw, group, prefix, free_port())
    fig = await run_drain(ctx, "bridge-backlog", [sys.executable, "-m", "bridge", "run"], env, group, ends, topics,
                          expected_outputs(shape, args.backlog), "rss", profile=ctx.args.profile)
    fig["produce_seconds"] = round(secs, 2)
    fig["produce_eps"] = round(args.backlog / secs, 1)
    ctx.results["backlog"] = fig
    ctx.results["peak_rss_mb"] = fig.get("peak_rss_mb")
    say(f"backlog: peak RSS {fig.get('peak_rss_mb')} MB, drained at {fig['eps']:,.0f} events/s")


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def kafka_version() -> str:
    m = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    return m.group(1) if m else "?"


def git_info() -> dict[str, Any]:
    """The commit measured, and whether bridge/ had uncommitted changes (read-only git calls)."""
    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD")
    dirty = bool(git("--no-optional-locks", "status", "--porcelain", "--", "bridge")) if commit else None
    return {"commit": commit or None, "bridge_dirty": dirty}


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "kafka": kafka_version(),
        "aiokafka": aiokafka.__version__,
        "msgspec": msgspec.__version__,
        "event_loop": event_loop_name(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "git": git_info(),
    }


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    out = []

    def add(name: str, value: Any, limit: Any, met: bool | None) -> None:
        out.append({"target": name, "value": value, "limit": limit, "met": met})

    b, p, n = r.get("bridge_eps"), r.get("passthrough_eps"), r.get("naive_eps")
    if b and p:
        add(f"bridge_eps >= {TARGET_VS_PASSTHROUGH} x passthrough_eps", b,
            round(TARGET_VS_PASSTHROUGH * p, 1), b >= TARGET_VS_PASSTHROUGH * p)
    if b and n:
        add(f"bridge_eps >= {TARGET_VS_NAIVE:g} x naive_eps", b, round(TARGET_VS_NAIVE * n, 1),
            b >= TARGET_VS_NAIVE * n)
    if r.get("p99_ms") is not None:
        lat = r["latency"]
        add(f"p99_ms <= {TARGET_P99_MS:g} at {lat['rate_target_eps']:g} events/s", r["p99_ms"], TARGET_P99_MS,
            r["p99_ms"] <= TARGET_P99_MS)
    if r.get("peak_rss_mb") is not None:
        add(f"peak_rss_mb <= {TARGET_RSS_MB:g}", r["peak_rss_mb"], TARGET_RSS_MB, r["peak_rss_mb"] <= TARGET_RSS_MB)
    return out


def print_report(r: dict[str, Any]) -> None:
    m = r["machine"]
    print()
    print(f"canvas-bridge end-to-end benchmark  ({m['date']})")
    print(f"{m['cpu_count']} CPUs, Python {m['python']} ({m['event_loop']}), {m['platform']}; "
          f"commit {m['git']['commit']}{' + uncommitted bridge/ changes' if m['git']['bridge_dirty'] else ''}")
    print(f"Apache Kafka {m['kafka']} ({r['broker']}), aiokafka {m['aiokafka']}, msgspec {m['msgspec']}; "
          f"load average at start {m['loadavg_start']}, at end {m.get('loadavg_end')}")
    mix = r["mix"]
    print(f"data: catalog mix, {mix['canvas']} Canvas + {mix['caliper']} Caliper samples made distinct per event, "
          f"{mix['avg_value_bytes']:.0f} B avg; {mix['typed_outputs_per_pass']} typed records per pass of "
          f"{mix['templates']} events")
    print()
    print(f"{'figure':<18}{'value':>14}  how")
    if "bridge_eps" in r:
        for kind in ("bridge", "passthrough", "naive"):
            runs = r[kind]["runs"]
            detail = ", ".join(f"{f['eps']:,.0f}" for f in runs)
            f0 = runs[0]
            steady = f0.get("eps_after_first_commit")
            print(f"{kind + '_eps':<18}{r[kind + '_eps']:>14,.0f}  {f0['events']} events, spawn -> committed == end "
                  f"in {f0['seconds']:.1f} s; runs: {detail}"
                  + (f"; after 1st commit {steady:,.0f}/s" if steady else ""))
            if "cpu_us_per_event" in f0:
                broker = (f", broker {f0['broker_cpu_us_per_event']:,.0f} µs/event"
                          if "broker_cpu_us_per_event" in f0 else "")
                conns = (f"; {f0['broker_connections']} connections to the broker"
                         if f0.get("broker_connections") is not None else "")
                print(f"{'':<18}{'':>14}  CPU: its own {f0['cpu_us_per_event']:,.0f} µs/event "
                      f"({f0['cores_used']} cores){broker}; host {f0['host_busy_pct']}% busy{conns}")
        diag = r.get("diagnostics", {})
        for kind, what in (("core_passthrough", "passthrough + Core.process on each value (raw values out)"),
                           ("core_fanout", "passthrough + Core.process, typed records out (no delivery "
                                           "bookkeeping)")):
            if kind in diag:
                f0 = diag[kind]["runs"][0]
                cpu = (f"; CPU {f0['cpu_us_per_event']:,.0f} µs/event ({f0['cores_used']} cores)"
                       if "cpu_us_per_event" in f0 else "")
                broker = (f", broker {f0['broker_cpu_us_per_event']:,.0f} µs/event"
                          if "broker_cpu_us_per_event" in f0 else "")
                runs_txt = ", ".join(f"{f['eps']:,.0f}" for f in diag[kind]["runs"])
                print(f"{kind + '_eps':<18}{diag[kind + '_eps']:>14,.0f}  diagnostic: {what}; "
                      f"runs: {runs_txt}{cpu}{broker}")
        print(f"{'':<18}{'':>14}  order: {' '.join(r['throughput_order'])}")
    if "latency" in r:
        lat = r["latency"]
        print(f"{'p50_ms':<18}{lat['p50_ms']:>14.2f}  raw produce -> typed record consumed, "
              f"{lat['offered_eps']:,.0f} events/s offered, {lat['count']} records after {lat['warmup_s']:g} s warm-up")
        print(f"{'p99_ms':<18}{lat['p99_ms']:>14.2f}  p90 {lat['p90_ms']}, p99.9 {lat['p999_ms']}, "
              f"max {lat['max_ms']} ms; received {lat['typed_records_received']}/{lat['typed_records_expected']}")
        print(f"{'':<18}{'':>14}  cores used: bridge {lat['bridge_cpu_cores']}, broker {lat['broker_cpu_cores']}, "
              f"consumer ({lat.get('consumer', 'aiokafka')}) {lat['latency_consumer_cpu_cores']}, "
              f"producer {lat['producer_cpu_cores']}; "
              f"host {lat['host_busy_pct']}% busy")
        print(f"{'':<18}{'':>14}  all committed {lat['committed_all_s_after_last_send']} s after the last send "
              f"(more than ~0.1 s: the bridge did not keep up)")
    if "backlog" in r:
        bl = r["backlog"]
        print(f"{'peak_rss_mb':<18}{bl.get('peak_rss_mb', float('nan')):>14.1f}  max(VmHWM, VmRSS every 0.5 s) "
              f"draining {bl['events']:,} events in {bl['seconds']:.1f} s ({bl['eps']:,.0f}/s); "
              f"backlog produced in {bl['produce_seconds']:.1f} s")
        if "cpu_us_per_event" in bl:
            print(f"{'':<18}{'':>14}  CPU: its own {bl['cpu_us_per_event']:,.0f} µs/event "
                  f"({bl['cores_used']} cores); host {bl['host_busy_pct']}% busy")
    print()
    for t in r["targets"]:
        verdict = "MET" if t["met"] else "NOT MET"
        print(f"target {t['target']:<42} {t['value']:>12,.1f} vs {t['limit']:>10,.1f}  -> {verdict}")
    if "profile" in r.get("backlog", {}):
        prof = r["backlog"]["profile"]
        if "self_pct" in prof:
            print(f"\nprofile of the bridge draining the backlog ({prof['file']}; % of active samples)")
            print("  by self time:")
            for pct, name in prof["self_pct"][:15]:
                print(f"  {pct:5.1f}%  {name}")
            print("  inclusive (bridge and aiokafka frames):")
            shown = 0
            for pct, name in prof["inclusive_pct"]:
                if ("bridge/" in name or "aiokafka/" in name) and shown < 20:
                    print(f"  {pct:5.1f}%  {name}")
                    shown += 1
    print(f"\n({r['elapsed_s']:.0f} s)")


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


async def bench(args: argparse.Namespace, bootstrap: str, broker_kind: str, log_dir: Path) -> dict[str, Any]:
    from bridge.config import load_config, redacted

    templates = build_templates()
    shape = mix_shape(templates)
    if shape.dead_letters:
        say(f"note: {shape.dead_letters} of {shape.templates} samples become dead letters")
    rid = f"bench-{secrets.token_hex(3)}"
    admin = await new_admin(bootstrap)
    offsets = Offsets(bootstrap)
    await offsets.start()
    ctx = Ctx(args, bootstrap, rid, templates, shape, log_dir,
              typed_partitions=load_config(env=dict(BRIDGE_OVERRIDES)).topics.partitions, admin=admin,
              offsets=offsets)
    r = ctx.results
    r["broker"] = broker_kind
    r["machine"] = machine_info()
    r["mix"] = {
        "templates": shape.templates, "canvas": shape.canvas, "caliper": shape.caliper,
        "typed_outputs_per_pass": shape.typed_outputs, "dead_letters_per_pass": shape.dead_letters,
        "typed_topics": len(shape.bridge_topic_names), "avg_value_bytes": round(shape.avg_value_bytes, 1),
    }
    cfg = load_config(env={})
    r["settings"] = {"events": args.events, "backlog": args.backlog, "rate": args.rate, "repeat": args.repeat,
                     "raw_partitions": RAW_PARTITIONS, "typed_partitions": ctx.typed_partitions,
                     "latency_seconds": args.latency_seconds, "run_id": rid,
                     "raw_producer": {"acks": "all", "linger_ms": 5, "paced_linger_ms": 0},
                     "bridge_overrides": dict(BRIDGE_OVERRIDES),
                     # The bridge's defaults; the passthrough and naive drainers use the same clients.
                     "bridge_defaults": {k: v for k, v in redacted(cfg).items()
                                         if k in ("kafka", "delivery", "dedupe")}}
    started = time.perf_counter()
    try:
        if not args.skip_throughput:
            await phase_throughput(ctx)
            await ctx.drop_created()
        if not args.skip_latency:
            await phase_latency(ctx)
            await ctx.drop_created()
        if not args.skip_rss:
            await phase_rss(ctx)
    finally:
        if broker_kind == "external" and ctx.created:
            with contextlib.suppress(Exception):
                await admin.delete_topics(sorted(ctx.created))
        await offsets.stop()
        await admin.close()
    r["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    r["elapsed_s"] = round(time.perf_counter() - started, 1)
    r["targets"] = targets(r)
    return r


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000, help="events for the throughput figures (200000)")
    ap.add_argument("--backlog", type=int, default=1_000_000, help="backlog drained for peak_rss_mb (1000000)")
    ap.add_argument("--rate", type=float, default=5000.0, help="offered events/s for the latency figures (5000)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run bridge, passthrough, naive this many times, interleaved; the median is reported")
    ap.add_argument("--skip-throughput", action="store_true", help="skip bridge/passthrough/naive_eps")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--skip-diagnostics", action="store_true",
                    help="skip core_passthrough_eps and core_fanout_eps (where the bridge's time goes)")
    ap.add_argument("--bootstrap", default=None, help="use this broker instead of starting one")
    ap.add_argument("--broker-pid", type=int, default=None,
                    help="with --bootstrap: the broker's process id, to report its CPU use")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file ({DEFAULT_JSON.relative_to(ROOT)})")
    ap.add_argument("--profile", type=Path, default=None,
                    help="py-spy the bridge while it drains the backlog: PATH.json (speedscope, summarized) or .svg")
    ap.add_argument("--keep-logs", action="store_true", help="keep the subprocesses' logs (printed path)")
    ap.add_argument("--latency-seconds", type=float, default=LATENCY_SECONDS,
                    help=f"how long the paced producer offers --rate ({LATENCY_SECONDS:g})")
    ap.add_argument("--latency-client", choices=("kcat", "aiokafka"), default="kcat",
                    help="the consumer that times typed records in the latency phase (kcat; aiokafka: Python)")
    ap.add_argument("--raw-partitions", type=int, default=RAW_PARTITIONS,
                    help=f"partitions of every raw topic ({RAW_PARTITIONS})")
    ap.add_argument("--set", action="append", default=[], metavar="BRIDGE_NAME=VALUE",
                    help="a setting for the bridge under test only (repeatable), e.g. BRIDGE_TOPICS_PARTITIONS=1")
    args = ap.parse_args(argv)
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("BRIDGE_"):
            ap.error(f"--set {item!r}: expected BRIDGE_NAME=VALUE")
        BRIDGE_OVERRIDES[name] = value
    if args.events < 1 or args.backlog < 1 or args.rate <= 0 or args.repeat < 1 or args.raw_partitions < 1:
        ap.error("--events, --backlog, --repeat, --raw-partitions must be >= 1 and --rate > 0")
    if args.latency_seconds <= LATENCY_WARMUP_S:
        ap.error(f"--latency-seconds must be more than the {LATENCY_WARMUP_S:g} s of warm-up it discards")
    if args.profile is not None:
        args.profile = args.profile.resolve()
        if args.skip_rss:
            ap.error("--profile profiles the backlog drain: do not combine it with --skip-rss")
    return args


def sub_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog=f"run.py {argv[0]}")
    ap.add_argument("--bootstrap", required=True)
    cmd = argv[0]
    if cmd in ("_passthrough", "_naive", "_core"):
        ap.add_argument("--topic", required=True)
        ap.add_argument("--group", required=True)
        ap.add_argument("--out-topic", default="")
        ap.add_argument("--prefix", default="naive." if cmd == "_naive" else "")
        args = ap.parse_args(argv[1:])
        drain = {"_passthrough": _passthrough, "_naive": _naive, "_core": _core}[cmd]
        return int(run_loop(drain(args)))
    if cmd == "_latency_consumer":
        ap.add_argument("--pattern", required=True)
        ap.add_argument("--expect-partitions", type=int, required=True)
        ap.add_argument("--out", required=True)
        ap.add_argument("--client", choices=("aiokafka", "kcat"), default="aiokafka")
        args = ap.parse_args(argv[1:])
        if args.client == "kcat":
            return _latency_consumer_kcat(args)
        return int(run_loop(_latency_consumer(args)))
    print(f"unknown sub-command {cmd}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    global BROKER_PID, RAW_PARTITIONS
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].startswith("_"):
        return sub_main(argv)
    args = parse_args(argv)
    RAW_PARTITIONS = args.raw_partitions

    def on_term(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    # aiokafka warns on every retry while a new partition is being set up; set-up is untimed.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    log_dir = Path(tempfile.mkdtemp(prefix="canvas-bridge-bench-logs-"))
    broker: LocalBroker | None = None
    ok = False
    try:
        if args.bootstrap:
            bootstrap, kind = args.bootstrap, "external"
            BROKER_PID = args.broker_pid
        else:
            broker = LocalBroker()
            bootstrap, kind = broker.start(), "own, scripts/kafka-local"
            BROKER_PID = broker.pid()
        results = run_loop(bench(args, bootstrap, kind, log_dir))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print_report(results)
        print(f"wrote {args.json}")
        ok = True
        return 0
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        kill_children()
        if broker is not None:
            broker.stop()
        if ok and not args.keep_logs:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            print(f"subprocess logs: {log_dir}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
