"""The phases of the end-to-end benchmark (throughput, latency, backlog), each on its own topics."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from benchmarks.common import ROOT, BenchError, clean_env, say
from benchmarks.drain import drain_figures, wait_drained
from benchmarks.latency import LATENCY_WARMUP_ROUNDS, LATENCY_WARMUP_S, paced_produce, percentile, read_latencies
from benchmarks.mix import MixShape, expected_outputs
from benchmarks.procs import (
    Child,
    finish_profiler,
    host_busy_pct,
    host_cpu,
    proc_cpu_s,
    read_rss_kb,
    spawn,
    start_profiler,
    stop_child,
    tree_cpu_s,
    wait_http_ok,
)
from benchmarks.topics import Offsets, create_topics, produce_backlog, raw_tps, warm_partitions
from tests.kafka_helpers import free_port

RUN_PY = ROOT / "benchmarks" / "run.py"
#: Diagnostic drainers run beside the three figures (``--skip-diagnostics`` leaves them out):
#: the passthrough plus the core's CPU, then plus the fan-out to the typed topics.
DIAGNOSTICS = ["core_passthrough", "core_fanout"]


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
    raw_partitions: int
    bridge_overrides: dict[str, str]  # ``--set``: for the bridge under test only
    broker_pid: int | None  # our own broker's JVM, for its CPU time; None with --bootstrap
    created: set[str] = field(default_factory=set)
    results: dict[str, Any] = field(default_factory=dict)

    def broker_cpu_s(self) -> float | None:
        return proc_cpu_s(self.broker_pid) if self.broker_pid else None

    def bridge_env(self, raw_topic: str, group: str, prefix: str, port: int) -> dict[str, str]:
        return {
            **clean_env(),
            **self.bridge_overrides,
            "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "BRIDGE_RAW_TOPIC": raw_topic,
            "BRIDGE_GROUP_ID": group,
            "BRIDGE_TOPICS_PREFIX": f"{prefix}.",
            "BRIDGE_TOPICS_CALIPER_PREFIX": f"{prefix}.caliper.",
            "BRIDGE_TOPICS_DEAD_LETTER": f"{prefix}-dlq",
            "BRIDGE_HTTP_PORT": str(port),
            "BRIDGE_LOG_LEVEL": "WARNING",
        }

    async def raw_backlog(self, raw: str, n: int, first_seq: int,
                          fresh: bool = True) -> tuple[float, dict[TopicPartition, int]]:
        """Produce ``n`` events to ``raw``; (seconds it took, its end offsets). On a ``fresh``
        topic the end offsets must add up to ``n``."""
        secs = await produce_backlog(self.bootstrap, raw, n, self.templates, first_seq, self.raw_partitions)
        ends = await self.offsets.ends(raw_tps(raw, self.raw_partitions))
        if fresh:
            if sum(ends.values()) != n:
                raise BenchError(f"{raw} holds {sum(ends.values())} records, expected {n}")
            say(f"produced in {secs:.1f} s ({n / secs:,.0f} events/s)")
        return secs, ends

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
    return [sys.executable, str(RUN_PY), sub, *rest]


def bridge_topics(prefix: str, shape: MixShape, partitions: int) -> dict[str, int]:
    topics = {f"{prefix}-dlq": partitions}
    for fmt, name in shape.bridge_topic_names:
        topics[f"{prefix}.caliper.{name}" if fmt == "caliper" else f"{prefix}.{name}"] = partitions
    return topics


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
        d = await wait_drained(bootstrap, group, ends, child, limit_s=max(300.0, n / 200), broker_pid=ctx.broker_pid)
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


async def phase_throughput(ctx: Ctx) -> None:
    args, rid, shape, rp = ctx.args, ctx.rid, ctx.shape, ctx.raw_partitions
    raw = f"{rid}.raw"
    await ctx.create({raw: rp}, warm=False)
    say(f"producing {args.events} events to {raw} ({rp} partitions)")
    secs, ends = await ctx.raw_backlog(raw, args.events, first_seq=0)
    ctx.results["produce"] = {"events": args.events, "seconds": round(secs, 2), "eps": round(args.events / secs, 1)}

    b_prefix, p_topic, n_prefix = f"{rid}.bridge", f"{rid}.passthrough", f"{rid}.naive."
    cp_topic, f_prefix = f"{rid}.corepass", f"{rid}.fanout"
    typed = expected_outputs(shape, args.events)

    def drainer(sub: str, group: str, *rest: str) -> list[str]:
        return script_argv(sub, "--bootstrap", ctx.bootstrap, "--topic", raw, "--group", group, *rest)

    # kind -> (argv for a group, its output topics, the records it must publish). The diagnostics
    # tell where the bridge's time goes between the passthrough and itself.
    plans: dict[str, tuple[Callable[[str], list[str]], dict[str, int], int]] = {
        "bridge": (lambda g: [sys.executable, "-m", "bridge", "run"],
                   bridge_topics(b_prefix, shape, ctx.typed_partitions), typed),
        "passthrough": (lambda g: drainer("_passthrough", g, "--out-topic", p_topic), {p_topic: rp}, args.events),
        "naive": (lambda g: drainer("_naive", g, "--prefix", n_prefix),
                  {f"{n_prefix}{t}": ctx.typed_partitions for t in shape.naive_topic_names}, typed),
    }
    if not args.skip_diagnostics:
        plans["core_passthrough"] = (lambda g: drainer("_core", g, "--out-topic", cp_topic), {cp_topic: rp},
                                     args.events)
        plans["core_fanout"] = (lambda g: drainer("_core", g, "--prefix", f_prefix),
                                bridge_topics(f_prefix, shape, ctx.typed_partitions), typed)
    await ctx.create({t: n for _, topics, _ in plans.values() for t, n in topics.items()})
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in plans}
    order = []
    for r in range(args.repeat):
        for kind, (argv, out_topics, expected) in plans.items():
            group = f"{rid}.{kind}.{r}"
            env = ctx.bridge_env(raw, group, b_prefix, free_port()) if kind == "bridge" else clean_env()
            fig = await run_drain(ctx, kind, argv(group), env, group, ends, out_topics, expected, f"run{r + 1}")
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
    try:
        return await asyncio.to_thread(wait_http_ok, f"http://127.0.0.1:{port}/readyz", limit_s, child.proc,
                                       child.name)
    except BenchError as exc:
        raise BenchError(f"{exc}:\n{child.tail()}") from None


async def phase_latency(ctx: Ctx) -> None:
    args, rid, shape = ctx.args, ctx.rid, ctx.shape
    raw, prefix = f"{rid}.lat-raw", f"{rid}.lat"
    topics = bridge_topics(prefix, shape, ctx.typed_partitions)
    typed_only = {t: n for t, n in topics.items() if t != f"{prefix}-dlq"}
    await ctx.create({raw: ctx.raw_partitions}, warm=False)
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
                       ctx.bridge_env(raw, group, prefix, port), ctx.log_dir)
        ready_s = await wait_ready(port, bridge)
        # Warm-up through the bridge itself (untimed): its producer learns the typed topics and the
        # raw partitions get past their first index entry. These records carry no send time.
        t_warm = time.perf_counter()
        for i in range(LATENCY_WARMUP_ROUNDS):
            _, ends = await ctx.raw_backlog(raw, 2 * len(ctx.templates), first_seq=2 * 10**9 + i * 10**6,
                                            fresh=False)
            await wait_drained(ctx.bootstrap, group, ends, bridge, limit_s=bridge_uptime(bridge) + 300,
                               broker_pid=ctx.broker_pid)
        warm_s = time.perf_counter() - t_warm
        say(f"latency: bridge ready in {ready_s:.1f} s, warmed up in {warm_s:.1f} s; "
            f"offering {args.rate:g} events/s for {args.latency_seconds:g} s")
        cpu0, host0, t0 = tree_cpu_s(bridge.proc.pid), host_cpu(), time.perf_counter()
        cons0, broker0, self0 = tree_cpu_s(consumer.proc.pid), ctx.broker_cpu_s(), proc_cpu_s(os.getpid())
        prod = await paced_produce(ctx.bootstrap, raw, ctx.templates, args.rate, args.latency_seconds,
                                   ctx.raw_partitions)
        t_sent = time.perf_counter()
        ends = await ctx.offsets.ends(raw_tps(raw, ctx.raw_partitions))
        await wait_drained(ctx.bootstrap, group, ends, bridge, broker_pid=ctx.broker_pid,
                           limit_s=bridge_uptime(bridge) + max(120.0, prod["sent"] / 500))
        t_done = time.perf_counter()
        cpu1, host1 = tree_cpu_s(bridge.proc.pid), host_cpu()
        cons1, broker1, self1 = tree_cpu_s(consumer.proc.pid), ctx.broker_cpu_s(), proc_cpu_s(os.getpid())
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
    await ctx.create({raw: ctx.raw_partitions}, warm=False)
    await ctx.create(topics)
    say(f"producing a backlog of {args.backlog} events to {raw}")
    secs, ends = await ctx.raw_backlog(raw, args.backlog, first_seq=10**9)
    group = f"{rid}.rss"
    env = ctx.bridge_env(raw, group, prefix, free_port())
    fig = await run_drain(ctx, "bridge-backlog", [sys.executable, "-m", "bridge", "run"], env, group, ends, topics,
                          expected_outputs(shape, args.backlog), "rss", profile=ctx.args.profile)
    fig["produce_seconds"] = round(secs, 2)
    fig["produce_eps"] = round(args.backlog / secs, 1)
    ctx.results["backlog"] = fig
    ctx.results["peak_rss_mb"] = fig.get("peak_rss_mb")
    say(f"backlog: peak RSS {fig.get('peak_rss_mb')} MB, drained at {fig['eps']:,.0f} events/s")
