"""``canvas-bridge``: run | ingest | ingest-sqs | transform | schema | replay | topics | check-config | produce."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import IO, Any

import msgspec

from bridge import __version__
from bridge.config import Config, ConfigError, load_config, redacted


def _load(args: argparse.Namespace) -> Config:
    return load_config(getattr(args, "config", None))


def _run_async(coro: Any) -> Any:
    runner: Callable[[Any], Any] = asyncio.run
    try:
        import uvloop  # optional: the `fast` extra

        runner = uvloop.run
    except ImportError:
        pass
    return runner(coro)


def _start_service(args: argparse.Namespace) -> Config:
    """What every long-running command (run, ingest, ingest-sqs) does first: its config, its logs,
    and its file-descriptor limit raised to the hard one (before any server computes its
    connection cap from it)."""
    from bridge.http_guard import raise_fd_limit
    from bridge.logs import setup_logging

    config = _load(args)
    setup_logging(config.log.level, config.log.format)
    raise_fd_limit()
    return config


# -- run ------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from bridge.service import run_service

    config = _start_service(args)
    code: int = _run_async(run_service(config))
    return code


# -- ingest ---------------------------------------------------------------------------------


def cmd_ingest(args: argparse.Namespace) -> int:
    from bridge.ingest.service import run_ingest

    config = _start_service(args)
    code: int = _run_async(run_ingest(config))
    return code


# -- ingest-sqs -----------------------------------------------------------------------------


def cmd_ingest_sqs(args: argparse.Namespace) -> int:
    from bridge.ingest.sqs import run_ingest_sqs

    config = _start_service(args)
    code: int = _run_async(run_ingest_sqs(config))
    return code


# -- transform ------------------------------------------------------------------------------


def _lines(path: str | None) -> Iterator[bytes]:
    stream: IO[bytes] = open(path, "rb") if path and path != "-" else sys.stdin.buffer  # noqa: SIM115
    try:
        for line in stream:
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def _text(b: bytes | None) -> str | None:
    return None if b is None else b.decode("utf-8", "backslashreplace")


def output_line(out: Any) -> dict[str, Any]:
    """The JSON line ``transform`` prints for one output record."""
    from bridge.core import Publish

    headers = {name: _text(value) for name, value in out.headers}
    value: Any = msgspec.json.decode(out.value) if isinstance(out, Publish) else _text(out.value)
    return {"topic": out.topic, "key": _text(out.key), "headers": headers, "value": value}


def cmd_transform(args: argparse.Namespace) -> int:
    from bridge.core import Core, Source, now_ms

    config = _load(args)
    core = Core.from_config(config)
    encode = msgspec.json.Encoder().encode
    write = sys.stdout.buffer.write
    counts: Counter[str] = Counter()
    for offset, raw in enumerate(_lines(args.input)):
        for out in core.process(raw, Source(config.raw_topic, 0, offset), now_ms()):
            counts["dead_letters" if out.topic == config.topics.dead_letter else "records"] += 1
            write(encode(output_line(out)) + b"\n")
    sys.stdout.flush()
    print(f"transform: {counts['records']} records, {counts['dead_letters']} dead letters", file=sys.stderr)
    if args.stats:  # which decoding strategy took how many events (bridge/core/decoding.py)
        taken = ", ".join(f"{strategy} {n}" for strategy, n in core.strategy_counts().items())
        print(f"transform: events by decoding strategy: {taken}", file=sys.stderr)
    return 0


# -- schema ---------------------------------------------------------------------------------


def cmd_schema(args: argparse.Namespace) -> int:
    from bridge.schema import json_schema, record_types

    config = _load(args)
    types = record_types()
    names = [args.event_name] if args.event_name else sorted(types)
    result: dict[str, Any] = {}
    for name in names:
        if name not in types:
            print(f"schema: unknown event type {name!r} (try: canvas-bridge schema | jq keys)", file=sys.stderr)
            return 2
        fmt, typ = types[name]
        topic = (config.topics.caliper_prefix + name.split(".", 1)[1]) if fmt == "caliper" else (
            config.topics.prefix + name
        )
        schema = json_schema(typ)
        schema["title"] = f"{topic} value"
        schema["$comment"] = f"canvas-bridge {__version__}: value of the typed topic {topic}"
        result[topic] = schema
    doc = result[next(iter(result))] if args.event_name else result
    print(json.dumps(doc, indent=2, sort_keys=True))
    return 0


# -- check-config ---------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args)
    print(json.dumps(redacted(config), indent=2))
    return 0


# -- produce --------------------------------------------------------------------------------


async def _produce(args: argparse.Namespace) -> int:
    from aiokafka import AIOKafkaProducer

    lines = list(_lines(args.file))
    if not lines:
        print(f"produce: {args.file} has no lines", file=sys.stderr)
        return 2
    if args.refresh:
        lines = [_refresh_template(line) for line in lines]
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap_servers, linger_ms=5, acks="all")
    await producer.start()
    sent = 0
    started = time.monotonic()
    try:
        while True:
            futures = []
            for line in lines:
                if args.count and sent >= args.count:
                    break
                value = _refreshed(line, sent) if args.refresh else line
                futures.append(await producer.send(args.topic, value))
                sent += 1
                if args.rate:
                    ahead = sent / args.rate - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
            await asyncio.gather(*futures)
            if not args.loop or (args.count and sent >= args.count):
                break
    finally:
        await producer.stop()
    print(f"produce: {sent} records to {args.topic}", file=sys.stderr)
    return 0


_N = b"@@N@@"
_NOW = b"@@NOW@@"


def _refresh_template(line: bytes) -> bytes:
    """A sample turned into a template for new events: fresh ids and the current time.

    Canvas: ``metadata.request_id`` and ``metadata.event_time``; Caliper: each event's ``id``
    and ``eventTime``. Lines that are not JSON objects are kept as they are (garbage stays garbage).
    """
    try:
        event = json.loads(line)
    except ValueError:
        return line
    if isinstance(event, dict) and isinstance(event.get("metadata"), dict):
        event["metadata"]["request_id"] = "sample-@@N@@"
        event["metadata"]["event_time"] = "@@NOW@@"
    elif isinstance(event, dict) and isinstance(event.get("data"), list):
        event["sendTime"] = "@@NOW@@"
        for i, item in enumerate(event["data"]):
            if isinstance(item, dict):
                item["id"] = f"urn:uuid:00000000-0000-4000-8000-@@N@@-{i}"
                item["eventTime"] = "@@NOW@@"
    else:
        return line
    return json.dumps(event, separators=(",", ":")).encode()


def _refreshed(template: bytes, n: int) -> bytes:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return template.replace(_N, f"{n:012d}".encode()).replace(_NOW, now.encode())


def cmd_produce(args: argparse.Namespace) -> int:
    code: int = _run_async(_produce(args))
    return code


# -- replay ---------------------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    from bridge.replay import replay

    config = _load(args)
    code: int = _run_async(replay(config, args.from_topic, dry_run=args.dry_run, reason=args.reason,
                                  limit=args.limit))
    return code


# -- topics ---------------------------------------------------------------------------------


def cmd_topics(args: argparse.Namespace) -> int:
    from bridge import topics

    config = _load(args)
    rec = topics.Recommendations(
        raw_partitions=args.raw_partitions, partitions=args.partitions or config.topics.partitions,
        replication_factor=args.replication_factor or config.topics.replication_factor or 3,
        retention_days=args.retention_days,
    )
    planned = topics.planned_topics(config, rec)
    if args.check:
        missing, notes = _run_async(topics.missing_topics(config, planned))
        for note in notes:
            print(f"topics: note: {note}", file=sys.stderr)
        if missing:
            print(f"topics: {len(missing)} of {len(planned)} topics are missing on "
                  f"{config.kafka.bootstrap_servers}: {', '.join(missing)}", file=sys.stderr)
            return 1
        print(f"topics: all {len(planned)} topics exist on {config.kafka.bootstrap_servers}", file=sys.stderr)
        return 0
    if args.format == "kafka-topics":
        sys.stdout.write(topics.as_kafka_topics(planned))
    elif args.format == "strimzi":
        sys.stdout.write(topics.as_strimzi(planned, args.strimzi_cluster, args.namespace))
    else:
        sys.stdout.write(topics.as_list(planned))
    return 0


# -- main -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="canvas-bridge", description=__doc__)
    p.add_argument("--version", action="version", version=f"canvas-bridge {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--config", help="TOML config file (default: built-in defaults; env BRIDGE_CONFIG)")
        return sp

    s = with_config(sub.add_parser("run", help="consume the raw topic and publish typed topics"))
    s.set_defaults(func=cmd_run)
    s = with_config(sub.add_parser("ingest", help="receive Canvas's HTTPS deliveries (signed JWTs) and Caliper "
                                                  "sensor requests into the raw topic"))
    s.set_defaults(func=cmd_ingest)
    s = with_config(sub.add_parser("ingest-sqs", help="drain Canvas's SQS queue(s) into the raw topic ([sqs])"))
    s.set_defaults(func=cmd_ingest_sqs)
    s = with_config(sub.add_parser("transform", help="run the core offline: raw values in, JSON lines out"))
    s.add_argument("input", nargs="?", help="file of raw values, one per line (default: stdin)")
    s.add_argument("--stats", action="store_true",
                   help="also print how many events each decoding strategy took (exact, twin, lenient, generic)")
    s.set_defaults(func=cmd_transform)
    s = with_config(sub.add_parser("schema", help="print JSON Schema of the typed topics' values"))
    s.add_argument("event_name", nargs="?", help="e.g. grade_change or caliper.asset_accessed")
    s.set_defaults(func=cmd_schema)
    s = with_config(sub.add_parser("check-config", help="validate the config and print it (secrets hidden)"))
    s.set_defaults(func=cmd_check_config)
    s = with_config(sub.add_parser("replay", help="send dead letters back through the core"))
    s.add_argument("--from-topic", help="dead-letter topic to read (default: topics.dead_letter)")
    s.add_argument("--dry-run", action="store_true", help="report what would happen; publish nothing")
    s.add_argument("--reason", help="only dead letters with this dlq_reason")
    s.add_argument("--limit", type=int, default=0, help="at most this many dead letters")
    s.set_defaults(func=cmd_replay)
    s = with_config(sub.add_parser("topics", help="list every topic the bridge uses, with recommended settings"))
    s.add_argument("--format", choices=["list", "kafka-topics", "strimzi"], default="list",
                   help="a plain list, kafka-topics.sh --create commands, or Strimzi KafkaTopic manifests")
    s.add_argument("--check", action="store_true",
                   help="compare with the cluster of kafka.bootstrap_servers; exit 1 naming missing topics")
    s.add_argument("--strimzi-cluster", default="my-cluster", help="the strimzi.io/cluster label (--format strimzi)")
    s.add_argument("--namespace", help="metadata.namespace of the manifests (--format strimzi)")
    s.add_argument("--raw-partitions", type=int, default=6, help="partitions of the raw topic (default 6)")
    s.add_argument("--partitions", type=int, default=0,
                   help="partitions of the other topics (default: topics.partitions)")
    s.add_argument("--replication-factor", type=int, default=0,
                   help="replicas (default: topics.replication_factor, else 3)")
    s.add_argument("--retention-days", type=int, default=7, help="retention.ms of raw and typed topics, in days")
    s.set_defaults(func=cmd_topics)
    s = sub.add_parser("produce", help="send the lines of a file to a topic (samples, load)")
    s.add_argument("file")
    s.add_argument("--topic", required=True)
    s.add_argument("--bootstrap-servers", required=True)
    s.add_argument("--loop", action="store_true", help="start over at the end of the file")
    s.add_argument("--rate", type=float, default=0, help="records per second (default: as fast as possible)")
    s.add_argument("--count", type=int, default=0, help="stop after this many records")
    s.add_argument("--refresh", action="store_true",
                   help="give each record new ids and the current event time (new events, not redeliveries)")
    s.set_defaults(func=cmd_produce)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        print(f"canvas-bridge: config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
