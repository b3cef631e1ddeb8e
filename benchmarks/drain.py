"""The drains of the end-to-end benchmark: the one drain loop every baseline drainer runs (with
its transform function), and the timing of any drainer from its spawn until its group has
committed the end of the raw topic."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka import errors as kerr

from benchmarks.common import BenchError, run_loop, stop_flag
from benchmarks.naive import naive_process
from benchmarks.procs import (
    Child,
    broker_connections,
    host_busy_pct,
    host_cpu,
    proc_cpu_s,
    read_rss_kb,
    tree_cpu_s,
)
from benchmarks.topics import broker_port, new_admin

BATCH_MAX_RECORDS = 2000  # the bridge's delivery.batch_max_records default
FETCH_TIMEOUT_MS = 200  # the bridge's delivery.fetch_timeout_ms default
POLL_S = 0.1  # committed-offsets poll interval
RSS_SAMPLE_S = 0.5


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


async def wait_drained(bootstrap: str, group: str, ends: dict[TopicPartition, int], child: Child,
                       limit_s: float, broker_pid: int | None = None) -> Drain:
    """Poll the group's committed offsets every 100 ms until they equal ``ends``.

    Also samples the VmRSS / VmHWM of the child every 0.5 s.
    Timed from the child's spawn. ``broker_pid``: the broker's process, for its CPU time.
    """

    def broker_cpu_s() -> float | None:
        return proc_cpu_s(broker_pid) if broker_pid else None

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
                r, h = read_rss_kb(child.proc.pid)
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
                r, h = read_rss_kb(child.proc.pid)
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


#: One record: (key, value, headers, timestamp in ms or None).
Item = tuple[bytes | None, bytes | None, Any, int | None]
#: Records for one topic: (topic, partition or None for the bridge's partitioner, records).
Out = tuple[str, int | None, list[Item]]
#: What a drainer does with one consumed batch (``getmany``'s answer): the records to publish.
Transform = Callable[[dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]], list[Out]]


async def drain_loop(bootstrap: str, topic: str, group: str, transform: Transform, *, per_record: bool = False) -> int:
    """The one loop of every baseline drainer, until SIGTERM: the bridge's own consumer and producer
    (``bridge.kafka`` with the default config), ``getmany`` as the bridge fetches, ``transform``,
    publish, await every ack, commit per batch.

    Publishing is one ``create_batch``/``send_batch`` per (topic, partition), as the bridge does;
    with ``per_record`` one ``producer.send`` per record instead (the naive drainer).
    """
    from bridge.config import load_config
    from bridge.delivery import Partitioner
    from bridge.kafka import make_consumer, make_producer

    cfg = load_config(env={"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "BRIDGE_GROUP_ID": group})
    consumer, producer = make_consumer(cfg), make_producer(cfg)
    partitioner = Partitioner()
    await producer.start()
    await consumer.start()
    stopping = stop_flag()
    consumer.subscribe([topic])
    try:
        while not stopping():
            records = await consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS, max_records=BATCH_MAX_RECORDS)
            if not records:
                continue
            outs = transform(records)
            if per_record:
                futures = [await producer.send(t, v, key=k, headers=h) for t, _, items in outs for k, v, h, _ in items]
            else:
                futures = await send_batches(producer, partitioner, outs)
            await asyncio.gather(*futures)
            await consumer.commit({tp: msgs[-1].offset + 1 for tp, msgs in records.items()})
    finally:
        await consumer.stop()
        await producer.stop()
    return 0


async def send_batches(producer: AIOKafkaProducer, partitioner: Any, outs: list[Out]) -> list[asyncio.Future[Any]]:
    """One record batch per (topic, partition); records without a partition go where the bridge's
    partitioner puts them (murmur2 of the key)."""
    keyed = {topic for topic, partition, _ in outs if partition is None}
    if keyed:
        await partitioner.prepare(producer, keyed)
    groups: dict[tuple[str, int], list[Item]] = {}
    for topic, partition, items in outs:
        if partition is not None:
            groups.setdefault((topic, partition), []).extend(items)
            continue
        for item in items:
            groups.setdefault((topic, partitioner.partition(topic, item[0])), []).append(item)
    if keyed:
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
    return futures


def passthrough(out_topic: str) -> Transform:
    """The client's limit: every value republished unchanged, to the same partition of ``out_topic``."""

    def transform(records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> list[Out]:
        return [(out_topic, tp.partition, [(m.key, m.value, None, None) for m in msgs]) for tp, msgs in records.items()]

    return transform


def naive(prefix: str) -> Transform:
    """The naive baseline (``benchmarks/naive.py``) on every value, to ``<prefix><event_name>``."""
    caliper_prefix = f"{prefix}caliper."

    def transform(records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> list[Out]:
        return [(topic, None, [(key, value, list(headers), None)])
                for msgs in records.values() for m in msgs
                for topic, key, value, headers in naive_process(m.value, prefix, caliper_prefix)]

    return transform


def core(prefix: str, out_topic: str) -> Transform:
    """Diagnostics: ``bridge.core.Core.process`` (default config) on every value.

    Without ``prefix``: the core's outputs are dropped and the raw values republished to
    ``out_topic``, as the passthrough does: what the core's CPU alone costs. With ``prefix``: the
    core's typed records and dead letters go to their topics (the bridge's partitioner): the core
    plus the fan-out, without the bridge's delivery bookkeeping (dedupe windows, metrics,
    background commits).
    """
    from bridge.config import load_config
    from bridge.core import Core, Source

    process = Core.from_config(load_config(env={
        "BRIDGE_TOPICS_PREFIX": f"{prefix}.", "BRIDGE_TOPICS_CALIPER_PREFIX": f"{prefix}.caliper.",
        "BRIDGE_TOPICS_DEAD_LETTER": f"{prefix}-dlq"})).process

    def transform(records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> list[Out]:
        now_ms = int(time.time() * 1000)
        if prefix:
            return [(o.topic, None, [(o.key, o.value, o.headers, getattr(o, "timestamp_ms", None))])
                    for tp, msgs in records.items() for m in msgs
                    for o in process(m.value, Source(tp.topic, tp.partition, m.offset, m.key), now_ms)]
        outs: list[Out] = []
        for tp, msgs in records.items():
            for m in msgs:
                process(m.value, Source(tp.topic, tp.partition, m.offset, m.key), now_ms)
            outs.append((out_topic, tp.partition, [(m.key, m.value, None, None) for m in msgs]))
        return outs

    return transform


def drainer_main(cmd: str, argv: list[str]) -> int:
    """``run.py _passthrough|_naive|_core --bootstrap B --topic T --group G [--out-topic T] [--prefix P]``."""
    ap = argparse.ArgumentParser(prog=f"run.py {cmd}")
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--out-topic", default="")
    ap.add_argument("--prefix", default="naive." if cmd == "_naive" else "")
    args = ap.parse_args(argv)
    transform = {"_passthrough": lambda: passthrough(args.out_topic), "_naive": lambda: naive(args.prefix),
                 "_core": lambda: core(args.prefix, args.out_topic)}[cmd]()
    return int(run_loop(drain_loop(args.bootstrap, args.topic, args.group, transform, per_record=cmd == "_naive")))
