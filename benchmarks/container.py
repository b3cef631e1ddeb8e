#!/usr/bin/env python3
"""The container image: its size, its build times, and how long it takes to drain under load.

    python benchmarks/container.py [--rounds N] [--backlog N] [--rate EPS] [--bootstrap HOST:PORT] [--base]

Figures, all from this run (podman; scripts/build-image, on the base scripts/base-image makes):

- ``image_size_mb``   the built image (``podman image inspect .Size``), and its base's size;
- ``build_cold_s``    ``scripts/build-image --no-cache``: every layer rebuilt, every wheel downloaded
                      (the base image exists already; ``--base`` also times making it from scratch);
- ``build_cached_s``  the same build again, nothing changed (``--builds`` pairs, interleaved);
- ``drain_s``         ``canvas-bridge run`` under load is stopped: a backlog on a 6-partition raw topic
                      plus a stream at ``--rate``, stopped once it has committed 5,000 inputs (mid-backlog).
                      For the container, the time ``podman stop`` takes (SIGTERM, drain, exit 0);
                      the baseline, interleaved round by round, is the same bridge as a host process
                      (``python -m bridge run``) given SIGTERM, timed to its exit. ``inside_s`` is the
                      bridge's own drain, from its log: "signal received" to "stopped".

The broker is this script's own (scripts/kafka-local in a temporary folder) unless --bootstrap names
one. Nothing is asserted: the figures are printed, each drain with its exit status.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import own_broker, say  # noqa: E402
from tests.chaos._util import BackgroundProducer, Topics, committed_total, make_workload  # noqa: E402
from tests.container_helpers import BridgeContainer, build_image, image_inspect, podman  # noqa: E402
from tests.kafka_helpers import BridgeProcess, wait_until  # noqa: E402

DRAIN_TIMEOUT_S = 30  # the default delivery.drain_timeout_s
STOP_AFTER_COMMITTED = 5_000


def timed(cmd: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=1800)
    return time.monotonic() - started


def logged_drain_s(log: Path) -> float | None:
    """The drain as the bridge logs it: from "signal received" to "stopped (exit N)"."""
    stamps = {}
    for line in log.read_text(errors="replace").splitlines():
        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ", line)
        if m and ("signal received" in line or "stopped (exit" in line):
            key = "start" if "signal received" in line else "end"
            stamps[key] = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000
    return round(stamps["end"] - stamps["start"], 3) if stamps.keys() == {"start", "end"} else None


def drain_once(kind: str, image: str, bootstrap: str, backlog: int, rate: float, logs: Path) -> dict[str, object]:
    """One bridge (container or process) under load, stopped mid-backlog; how long its exit took."""
    workload = make_workload(backlog + int(rate * 60), garbage_every=0)
    topics = Topics.create(bootstrap, f"drain-{kind}", partitions=6)
    settings = topics.settings(BRIDGE_DELIVERY_DRAIN_TIMEOUT_S=str(DRAIN_TIMEOUT_S))
    producer = BackgroundProducer(bootstrap, topics.raw, workload.values[:backlog], 0).start()
    producer.join(300)  # the backlog, as fast as the broker takes it
    stream = BackgroundProducer(bootstrap, topics.raw, workload.values[backlog:], rate).start()
    log = logs / f"{kind}-{uuid.uuid4().hex[:6]}.log"
    bridge: BridgeProcess = (BridgeContainer(image, bootstrap, topics.raw, topics.group, log, **settings)
                             if kind == "container" else
                             BridgeProcess(bootstrap, topics.raw, topics.group, log, **settings))
    try:
        bridge.start()
        bridge.wait_ready(120)
        wait_until(lambda: committed_total(bootstrap, topics.group, topics.raw) >= STOP_AFTER_COMMITTED, 180,
                   f"{STOP_AFTER_COMMITTED} inputs committed")
        in_flight = bridge.metric("canvas_bridge_records_in_flight")
        if isinstance(bridge, BridgeContainer):
            code, seconds = bridge.stop(DRAIN_TIMEOUT_S + 15)
        else:
            assert bridge.proc is not None
            started = time.monotonic()
            bridge.signal(signal.SIGTERM)
            code = bridge.proc.wait(DRAIN_TIMEOUT_S + 15)
            seconds = time.monotonic() - started
        committed = committed_total(bootstrap, topics.group, topics.raw)
    finally:
        stream.stop()
        if isinstance(bridge, BridgeContainer):
            bridge.remove()
        else:
            bridge.__exit__(None, None, None)
    return {"kind": kind, "drain_s": round(seconds, 3), "inside_s": logged_drain_s(log), "exit": code,
            "in_flight_at_stop": int(in_flight), "committed": committed, "backlog": backlog}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="drain rounds per kind, interleaved")
    parser.add_argument("--backlog", type=int, default=60_000, help="raw records waiting when the bridge starts")
    parser.add_argument("--rate", type=float, default=2_000.0, help="stream offered while it runs (events/s)")
    parser.add_argument("--bootstrap", help="an existing broker (default: start one)")
    parser.add_argument("--builds", type=int, default=2, help="cold + cached build pairs, interleaved")
    parser.add_argument("--base", action="store_true", help="also time making the base image from scratch")
    args = parser.parse_args()

    results: dict[str, object] = {}
    if args.base:
        env_cmd = ["env", "BASE_IMAGE_MAX_AGE_DAYS=0", str(ROOT / "scripts" / "base-image")]
        results["base_image_s"] = round(timed(env_cmd), 1)
        say(f"base image made from scratch in {results['base_image_s']} s")
    base = subprocess.run([str(ROOT / "scripts" / "base-image")], capture_output=True, text=True,
                          check=True).stdout.split()[-1]
    tag = f"localhost/canvas-bridge-bench:{uuid.uuid4().hex[:8]}"
    cold: list[float] = []
    cached: list[float] = []
    for n in range(args.builds):
        say(f"build {n + 1}: cold (--no-cache), then cached")
        cold.append(round(build_image(tag, "--no-cache"), 1))
        cached.append(round(build_image(tag), 1))
    results["image_size_mb"] = round(image_inspect(tag)["Size"] / 1e6, 1)
    results["base_size_mb"] = round(image_inspect(base)["Size"] / 1e6, 1)

    rounds: list[dict[str, object]] = []
    try:
        with own_broker(args.bootstrap) as broker, tempfile.TemporaryDirectory(prefix="bench-container-") as logs:
            for n in range(args.rounds):
                for kind in (("container", "process") if n % 2 == 0 else ("process", "container")):
                    say(f"round {n + 1}: {kind}")
                    rounds.append(drain_once(kind, tag, broker.bootstrap, args.backlog, args.rate, Path(logs)))
                    say(json.dumps(rounds[-1]))
    finally:
        podman("rmi", "--force", tag, check=False)

    print(f"image {tag} on {base}")
    print(f"image_size_mb   {results['image_size_mb']} (base {results['base_size_mb']})")
    if "base_image_s" in results:
        print(f"base_image_s    {results['base_image_s']} (debootstrap + podman import, from scratch)")
    print(f"build_cold_s    median {statistics.median(cold):.1f} (runs {cold}; scripts/build-image TAG --no-cache, "
          "base present)")
    print(f"build_cached_s  median {statistics.median(cached):.1f} (runs {cached}; the same again, nothing changed)")
    for kind in ("container", "process"):
        mine = [r for r in rounds if r["kind"] == kind]
        drains = [float(r["drain_s"]) for r in mine]  # type: ignore[arg-type]
        runs = ", ".join(f"{d:.2f}" for d in drains)
        print(f"drain_s {kind:9} median {statistics.median(drains):.2f} (runs {runs}); "
              f"inside_s {[r['inside_s'] for r in mine]}; "
              f"exits {[r['exit'] for r in mine]}; in flight at stop {[r['in_flight_at_stop'] for r in mine]}; "
              f"backlog {args.backlog} + {args.rate:.0f}/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
