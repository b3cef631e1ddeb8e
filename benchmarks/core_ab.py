"""Interleaved in-process A/B of the core: this checkout against another git revision.

    python benchmarks/core_ab.py [--base REV] [--events N] [--rounds R] [--clock cpu|wall]

Both cores run in one process, on the same inputs, in alternating rounds (A B, then B A, ...),
so that the machine's drift hits both alike; each round times ``Core.process`` over the same
``--events`` values, by default with the thread's CPU time (``time.thread_time_ns``: on a
shared host, the time the process waits for a core is not the core's cost), or with
``time.perf_counter_ns`` (``--clock wall``). The base revision's ``bridge`` package is
taken with ``git archive REV bridge`` into a temporary folder and imported first, then removed
from ``sys.modules`` before this checkout's ``bridge`` is imported: its classes and functions
keep their own module globals, so the two cores do not share any code.

Printed per input set: the median µs/event of each core and the median (min-max) of the
per-round ratio this/base. Sets: each format's catalog examples
(``tests/fixtures/catalog/canvas-examples.jsonl``, ``caliper-examples.jsonl``), the catalog mix
(every line of both, cycled) and the source-shaped set of
``core_bench.py`` (which the base may publish generic or through its lenient path).
The script prints; it never fails on a figure.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOW_MS = 1_700_000_000_000


def _load_core(package_parent: Path) -> tuple[Any, Callable[..., Any], type]:
    """``(Core instance with the default config, Core.process, Source)`` from ``package_parent/bridge``."""
    for name in [m for m in sys.modules if m == "bridge" or m.startswith("bridge.")]:
        del sys.modules[name]
    sys.path.insert(0, str(package_parent))
    try:
        config = importlib.import_module("bridge.config")
        core_mod = importlib.import_module("bridge.core")
    finally:
        sys.path.remove(str(package_parent))
    if not Path(core_mod.__file__).is_relative_to(package_parent):
        raise SystemExit(f"imported {core_mod.__file__}, not the core under {package_parent}")
    cfg = config.load_config(env={})
    core = core_mod.Core(cfg.topics, cfg.decode, cfg.limits)
    return core, core.process, core_mod.Source


def _time(process: Callable[..., Any], pairs: list[tuple[bytes, Any]], clock: Callable[[], int]) -> float:
    gc.collect()
    t0 = clock()
    for value, source in pairs:
        process(value, source, NOW_MS)
    return (clock() - t0) / 1000.0 / len(pairs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="e2d8376", help="git revision of the baseline (default e2d8376)")
    ap.add_argument("--events", type=int, default=5000, help="values per timed run (default 5000)")
    ap.add_argument("--rounds", type=int, default=31, help="A/B rounds (default 31)")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="thread CPU time (default) or wall")
    args = ap.parse_args(argv)
    clock = time.thread_time_ns if args.clock == "cpu" else time.perf_counter_ns

    with tempfile.TemporaryDirectory(prefix="core-ab-") as tmp:
        archive = subprocess.run(["git", "archive", args.base, "bridge"], cwd=ROOT, check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        base = _load_core(Path(tmp))
    this = _load_core(ROOT)
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import CALIPER_FILE, CANVAS_FILE, catalog_mix, cycle_to, read_lines, source_shaped

    sets = {
        "canvas": read_lines(CANVAS_FILE),
        "caliper": read_lines(CALIPER_FILE),
        "catalog mix": catalog_mix(),
        "source-shaped": source_shaped(),
    }
    print(f"core A/B: this checkout against {args.base}, {args.events} values per run, {args.rounds} rounds,"
          f" {args.clock} time")  # fmt: skip
    print(f"{'µs/event':<15}{'this':>9}{'base':>9}   this/base: median (min-max) of the rounds")
    for label, lines in sets.items():
        runs: dict[str, list[float]] = {"this": [], "base": []}
        ratios: list[float] = []
        cores = {"this": this, "base": base}
        prepared = {}
        for name, (_core, process, source_cls) in cores.items():
            sources = [source_cls("canvas.raw", i % 3, 1000 + i) for i in range(len(lines))]
            pairs = list(zip(cycle_to(lines, args.events), cycle_to(sources, args.events), strict=True))
            for value, source in zip(lines, sources, strict=True):  # warm-up: every topic named
                process(value, source, NOW_MS)
            _time(process, pairs[: min(len(pairs), 2000)], clock)
            prepared[name] = (process, pairs)
        for r in range(args.rounds):
            order = ("this", "base") if r % 2 == 0 else ("base", "this")
            timed = {name: _time(*prepared[name], clock) for name in order}
            for name, us in timed.items():
                runs[name].append(us)
            ratios.append(timed["this"] / timed["base"])
        this_med, base_med = statistics.median(runs["this"]), statistics.median(runs["base"])
        print(f"{label:<15}{this_med:>9.2f}{base_med:>9.2f}   {statistics.median(ratios):.3f}"
              f" ({min(ratios):.3f}-{max(ratios):.3f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
