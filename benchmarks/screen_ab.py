"""Interleaved in-process A/B: what screening for refused records adds to a batch's happy path.

    python benchmarks/screen_ab.py [--events N] [--rounds R] [--batch B]

A (as before issue 17): per consumed record ``Core.process`` and ``outputs.append``, as the
service's ``_to_batch`` does. B (now): the same, plus ``inputs.append`` (the raw record kept for a
dead letter) and ``Screen.apply`` over each batch's outputs (bridge/refusals.py: every record in
range, every topic writable, nothing learnt: the happy path). Both run on the same catalog mix
(every line of ``tests/fixtures/catalog/*-examples.jsonl``, cycled, event times of now), in
alternating rounds (A B, then B A, ...), timed with the thread's CPU time. Printed: the median
µs/event of each, the median (min-max) per-round ratio B/A, and the screen alone in ns/record.
The script prints; it never fails on a figure.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.config import load_config  # noqa: E402
from bridge.core import Core, Source, now_ms  # noqa: E402
from bridge.refusals import Screen, TopicLimits  # noqa: E402


def _values(n: int) -> list[bytes]:
    lines = []
    for name in ("canvas-examples.jsonl", "caliper-examples.jsonl"):
        lines += (ROOT / "tests" / "fixtures" / "catalog" / name).read_bytes().splitlines()
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    out = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event.get("metadata"), dict):
            event["metadata"]["event_time"] = now
        for data in event.get("data", ()) if isinstance(event.get("data"), list) else ():
            if isinstance(data, dict):
                data["eventTime"] = now
        out.append(json.dumps(event).encode())
    return [out[i % len(out)] for i in range(n)]


def _a(core: Core, records: list[Any], batch: int, now: int) -> None:
    for start in range(0, len(records), batch):
        outputs: list[Any] = []
        for m in records[start:start + batch]:
            for out in core.process(m.value, Source("raw", 0, m.offset, m.key), now):
                outputs.append((0, out))


def _b(core: Core, records: list[Any], batch: int, now: int, screen: Screen, limits: dict[str, TopicLimits]) -> None:
    for start in range(0, len(records), batch):
        outputs: list[Any] = []
        inputs: list[Any] = []
        for m in records[start:start + batch]:
            for out in core.process(m.value, Source("raw", 0, m.offset, m.key), now):
                outputs.append((0, out))
                inputs.append(m)
        sends = [out for _, out in outputs]
        reroute: dict[int, tuple[str, str]] = {}
        screen.apply(sends, limits, now, reroute, 1)
        assert not reroute


def _bare(sends: list[Any]) -> int:
    n = 0
    for _i, out in enumerate(sends):
        if out.__class__ is not int:
            n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    config = load_config(env={})
    core = Core.from_config(config)
    records = [SimpleNamespace(value=v, key=None, offset=n) for n, v in enumerate(_values(args.events))]
    now = now_ms()
    topics = {o.topic for m in records[:2000] for o in core.process(m.value, Source("raw", 0, 0, None), now)}
    limits = {t: TopicLimits() for t in topics}
    screen = Screen(dead_letter_topic="canvas.dlq", catch_all_topic="canvas.unknown", out_of_range="clamp",
                    missing="dead_letter", catalog_topics=frozenset(topics))
    clock = time.thread_time_ns
    a_us, b_us, ratios, alone = [], [], [], []
    for r in range(args.rounds):
        order = ("a", "b") if r % 2 == 0 else ("b", "a")
        got = {}
        for which in order:
            gc.collect()
            t0 = clock()
            if which == "a":
                _a(core, records, args.batch, now)
            else:
                _b(core, records, args.batch, now, screen, limits)
            got[which] = (clock() - t0) / 1000 / len(records)
        a_us.append(got["a"])
        b_us.append(got["b"])
        ratios.append(got["b"] / got["a"])
        # The screen alone, on each batch's outputs just made (hot, as in the service), against a
        # bare loop over the same list (what any per-record pass costs on this machine now).
        bare_ns = screen_ns = 0
        count = 0
        for start in range(0, len(records), args.batch):
            sends = [o for m in records[start:start + args.batch]
                     for o in core.process(m.value, Source("raw", 0, m.offset, None), now)]
            t0 = clock()
            _bare(sends)
            t1 = clock()
            screen.apply(sends, limits, now, {}, 1)
            t2 = clock()
            bare_ns, screen_ns, count = bare_ns + t1 - t0, screen_ns + t2 - t1, count + len(sends)
        alone.append((screen_ns / count, bare_ns / count))
    print(f"events={len(records)} rounds={args.rounds} batch={args.batch} (thread CPU time)")
    print(f"A (before) {statistics.median(a_us):.2f} us/event   B (screened) {statistics.median(b_us):.2f} us/event")
    print(f"B/A median {statistics.median(ratios):.4f} (min {min(ratios):.4f}, max {max(ratios):.4f})")
    print(f"Screen.apply alone: {statistics.median(a for a, _ in alone):.0f} ns/record; a bare loop over the same "
          f"outputs: {statistics.median(b for _, b in alone):.0f} ns/record (medians)")


if __name__ == "__main__":
    main()
