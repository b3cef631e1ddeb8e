"""Test helpers that talk to the real broker and run the real bridge process.

No mocks: topics are created on the broker, the bridge runs as a subprocess (as in
production), records are read back with an independent consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

REPO = Path(__file__).resolve().parent.parent
CATALOG = REPO / "tests" / "fixtures" / "catalog"
KAFKA_LOCAL = REPO / "scripts" / "kafka-local"


@dataclass
class Broker:
    """A Kafka broker: one run by scripts/kafka-local in a state folder of its own, or an external
    one (``state_dir`` None) that must not be stopped. The tests' session broker and the
    benchmarks' own broker are both this."""

    bootstrap: str
    state_dir: Path | None  # None: an external broker we must not stop

    @classmethod
    def start_in(cls, state_dir: Path, timeout: float = 300) -> Broker:
        """Start a broker with its state in ``state_dir``; RuntimeError with its stderr if it fails."""
        out = subprocess.run([str(KAFKA_LOCAL), "start"], env={**os.environ, "KAFKA_LOCAL_DIR": str(state_dir)},
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
        return cls(out.stdout.strip().splitlines()[-1], state_dir)

    @property
    def controllable(self) -> bool:
        return self.state_dir is not None

    def _env(self) -> dict[str, str]:
        assert self.state_dir is not None
        return {**os.environ, "KAFKA_LOCAL_DIR": str(self.state_dir)}

    def stop(self) -> None:
        subprocess.run([str(KAFKA_LOCAL), "stop"], env=self._env(), check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        out = subprocess.run([str(KAFKA_LOCAL), "start"], env=self._env(), check=True, capture_output=True,
                             text=True, timeout=180)
        assert out.stdout.strip().splitlines()[-1] == self.bootstrap, "broker came back on another address"

    def pid(self) -> int | None:
        """The broker's JVM (to read its CPU time), None when unknown."""
        if self.state_dir is None:
            return None
        try:
            return int((self.state_dir / "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def remove(self) -> None:
        """Stop the broker whatever state it is in, and delete its state folder."""
        if self.state_dir is None:
            return
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run([str(KAFKA_LOCAL), "stop"], env=self._env(), capture_output=True, timeout=120)
        shutil.rmtree(self.state_dir, ignore_errors=True)


def catalog_lines(name: str = "canvas-examples.jsonl") -> list[bytes]:
    return [line.rstrip(b"\n") for line in (CATALOG / name).read_bytes().splitlines() if line.strip()]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll a condition (not a sleep used as synchronization): fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def create_topics(bootstrap: str, names: Iterable[str], partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, values: Iterable[bytes | None],
                  keys: Iterable[bytes | None] | None = None, partition: int | None = None) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    n = 0
    try:
        futures = []
        key_iter = iter(keys) if keys is not None else None
        for value in values:
            key = next(key_iter) if key_iter is not None else None
            if value is None and key is None:
                key = b"tombstone"  # Kafka needs a key for a record without a value
            futures.append(await producer.send(topic, value, key=key, partition=partition))
            n += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return n


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict)
    timestamp: int = 0


async def read_all(bootstrap: str, topic: str, *, min_count: int = 0, timeout: float = 30.0,
                   read_committed: bool = False, idle: float = 1.0) -> list[Record]:
    """Read a topic from the beginning: until ``min_count`` records and ``idle`` s of quiet, or timeout."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        isolation_level="read_committed" if read_committed else "read_uncommitted",
        metadata_max_age_ms=1000,
    )
    await consumer.start()
    out: list[Record] = []
    try:
        deadline = time.monotonic() + timeout
        parts: set[int] | None = None
        while parts is None and time.monotonic() < deadline:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                parts = None
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.2)
        if not parts:
            return out
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        last_data = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for msgs in batch.values():
                for m in msgs:
                    out.append(Record(m.topic, m.partition, m.offset, m.key, m.value,
                                      {k: bytes(v) for k, v in (m.headers or ())}, m.timestamp))
            if batch:
                last_data = time.monotonic()
            elif len(out) >= min_count and time.monotonic() - last_data >= idle:
                break
    finally:
        await consumer.stop()
    return out


async def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        await consumer.stop()


class BridgeProcess:
    """``canvas-bridge run`` as a real subprocess, configured through BRIDGE_* variables.

    ``command`` names another subcommand (``ingest``); ``preexec_fn`` runs in the child before
    it starts (e.g. to lower its file-descriptor limit).
    """

    command = "run"
    preexec_fn: Callable[[], None] | None = None

    def __init__(self, bootstrap: str, raw_topic: str, group: str, log_path: Path, **settings: str) -> None:
        self.http_port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        self.env.update({
            "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "BRIDGE_RAW_TOPIC": raw_topic,
            "BRIDGE_GROUP_ID": group,
            "BRIDGE_HTTP_PORT": str(self.http_port),
            "BRIDGE_HTTP_HOST": "127.0.0.1",
            "BRIDGE_DELIVERY_RETRY_BACKOFF_MAX_S": "2",
        })
        self.env.update({k if k.startswith("BRIDGE_") else f"BRIDGE_{k.upper()}": v for k, v in settings.items()})
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BridgeProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", self.command], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            cwd=REPO, preexec_fn=self.preexec_fn,
        )
        log.close()
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url(path), timeout=timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return 0, ""

    def post(self, path: str) -> int:
        req = urllib.request.Request(self.url(path), method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=2) as resp:
            return int(resp.status)

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"bridge exited with {self.proc.returncode}:\n{self.log_tail()}")
            return self.get("/readyz")[0] == 200
        wait_until(ready, timeout, "the bridge to report ready")

    def metric(self, name: str, labels: str = "") -> float:
        """Sum of a metric's samples whose label text contains ``labels``."""
        status, text = self.get("/metrics")
        assert status == 200, "metrics endpoint not answering"
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {") and labels in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def __enter__(self) -> BridgeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.terminate(30)
            except subprocess.TimeoutExpired:
                self.kill()
