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
- ``naive_eps``        the obvious implementation: the naive baseline of ``benchmarks/naive.py``
                       (the one ``core_bench.py`` times too) on every value, one
                       ``producer.send`` per output. Same timing.
- ``p50_ms``/``p99_ms`` latency from raw produce to the typed record being consumed, at a
                       fixed offered rate (``--rate``, default 5000 events/s) for ~20 s.
- ``peak_rss_mb``      the bridge's peak RSS while it drains a backlog (``--backlog``, default
                       1,000,000 events).

The broker is this script's own (``scripts/kafka-local`` in a temporary state folder, stopped
and removed at the end, also on failure or Ctrl-C) unless ``--bootstrap`` names one. The
figures are printed with the targets as MET / NOT MET (never asserted) and written to
``benchmarks/results/latest.json``.

Hidden sub-commands (run as subprocesses by the benchmark itself): ``_passthrough``, ``_naive``,
``_core`` (the drainers: ``benchmarks/drain.py``), ``_latency_consumer`` (``benchmarks/latency.py``).
The parts are modules of the ``benchmarks`` package: ``phases``, ``drain``, ``latency``,
``procs`` (process sampling), ``report``, ``mix`` (the data), ``topics`` (Kafka set-up).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root, for ``benchmarks`` and ``bridge``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, BenchError, machine_info, own_broker, run_loop, say
from benchmarks.drain import drainer_main
from benchmarks.latency import LATENCY_SECONDS, LATENCY_WARMUP_S, consumer_main
from benchmarks.mix import DEFAULT_RAW_PARTITIONS, build_templates, mix_shape
from benchmarks.phases import Ctx, phase_latency, phase_rss, phase_throughput
from benchmarks.procs import kill_children
from benchmarks.report import print_report, targets
from benchmarks.topics import Offsets, new_admin

DEFAULT_JSON = ROOT / "benchmarks" / "results" / "latest.json"


async def bench(args: argparse.Namespace, bootstrap: str, broker_kind: str, broker_pid: int | None,
                log_dir: Path) -> dict[str, Any]:
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
              typed_partitions=load_config(env=dict(args.bridge_overrides)).topics.partitions, admin=admin,
              offsets=offsets, raw_partitions=args.raw_partitions, bridge_overrides=args.bridge_overrides,
              broker_pid=broker_pid)
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
                     "raw_partitions": args.raw_partitions, "typed_partitions": ctx.typed_partitions,
                     "latency_seconds": args.latency_seconds, "run_id": rid,
                     "raw_producer": {"acks": "all", "linger_ms": 5, "paced_linger_ms": 0},
                     "bridge_overrides": dict(args.bridge_overrides),
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
    ap.add_argument("--raw-partitions", type=int, default=DEFAULT_RAW_PARTITIONS,
                    help=f"partitions of every raw topic ({DEFAULT_RAW_PARTITIONS})")
    ap.add_argument("--set", action="append", default=[], metavar="BRIDGE_NAME=VALUE",
                    help="a setting for the bridge under test only (repeatable), e.g. BRIDGE_TOPICS_PARTITIONS=1")
    args = ap.parse_args(argv)
    args.bridge_overrides = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("BRIDGE_"):
            ap.error(f"--set {item!r}: expected BRIDGE_NAME=VALUE")
        args.bridge_overrides[name] = value
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
    cmd = argv[0]
    if cmd in ("_passthrough", "_naive", "_core"):
        return drainer_main(cmd, argv[1:])
    if cmd == "_latency_consumer":
        return consumer_main(argv[1:])
    print(f"unknown sub-command {cmd}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].startswith("_"):
        return sub_main(argv)
    args = parse_args(argv)

    def on_term(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    # aiokafka warns on every retry while a new partition is being set up; set-up is untimed.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    log_dir = Path(tempfile.mkdtemp(prefix="canvas-bridge-bench-logs-"))
    ok = False
    try:
        with own_broker(args.bootstrap) as broker:
            kind = "own, scripts/kafka-local" if broker.controllable else "external"
            broker_pid = broker.pid() if broker.controllable else args.broker_pid
            try:
                results = run_loop(bench(args, broker.bootstrap, kind, broker_pid, log_dir))
            finally:
                kill_children()
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
        if ok and not args.keep_logs:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            print(f"subprocess logs: {log_dir}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
