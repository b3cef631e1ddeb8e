"""What every benchmark script shares: paths, the catalog's lines, logging, the event loop, the
machine's description, and the local Kafka broker and ElasticMQ (the tests' own helpers, each in
a temporary state folder)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiokafka
import msgspec

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from tests.kafka_helpers import Broker
    from tests.sqs_helpers import ElasticMQ

CATALOG = ROOT / "tests" / "fixtures" / "catalog"
CANVAS_FILE = CATALOG / "canvas-examples.jsonl"
CALIPER_FILE = CATALOG / "caliper-examples.jsonl"
SOURCE_FILE = ROOT / "tests" / "fixtures" / "source" / "canvas-source-payloads.jsonl"
POM = ROOT / "scripts" / "kafka" / "pom.xml"


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


def stop_flag() -> Callable[[], bool]:
    """A flag set by SIGTERM or SIGINT (the parent stops its drainers and consumers with SIGTERM)."""
    stop = [False]

    def handler(*_: Any) -> None:
        stop[0] = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, handler)
    return lambda: stop[0]


def read_lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def cycle_to(items: Sequence[Any], n: int) -> list[Any]:
    return [items[i % len(items)] for i in range(n)]


def source_shaped(path: Path = SOURCE_FILE) -> list[bytes]:
    """Each source-shaped payload as sent, then as a ``compact_live_events`` account sends it."""
    lines = read_lines(path)
    compacted = []
    for line in lines:
        tree = json.loads(line)
        tree["body"] = {k: v for k, v in tree["body"].items() if v is not None}  # Canvas's payload.compact!
        compacted.append(json.dumps(tree, separators=(",", ":"), ensure_ascii=False).encode())
    return lines + compacted


def catalog_mix() -> list[bytes]:
    """The catalog mix: every Canvas example, then every Caliper envelope."""
    return read_lines(CANVAS_FILE) + read_lines(CALIPER_FILE)


def clean_env() -> dict[str, str]:
    """The environment without BRIDGE_* (the bridge rejects unknown ones; ours must not leak)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}


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


@contextlib.contextmanager
def own_broker(bootstrap: str | None = None) -> Iterator[Broker]:
    """``bootstrap``'s broker as is, or a broker of our own (scripts/kafka-local in a temporary
    folder), stopped and removed when the block ends, also on failure or Ctrl-C."""
    from tests.kafka_helpers import Broker  # imported here: the drainers, timed from their spawn, skip it

    if bootstrap:
        yield Broker(bootstrap, None)
        return
    state = Path(tempfile.mkdtemp(prefix="canvas-bridge-bench-kafka-"))
    say(f"starting a Kafka broker (scripts/kafka-local, state in {state})")
    try:
        broker = Broker.start_in(state, timeout=600)
    except BaseException as exc:  # a failure, a timeout, Ctrl-C: no broker left behind
        Broker("", state).remove()
        if isinstance(exc, RuntimeError):
            raise BenchError(f"scripts/kafka-local start failed:\n{str(exc)[-3000:]}") from None
        raise
    say(f"broker up at {broker.bootstrap}")
    try:
        yield broker
    finally:
        broker.remove()
        say("broker stopped and its state removed")


@contextlib.contextmanager
def own_sqs(endpoint: str | None = None) -> Iterator[ElasticMQ]:
    """``endpoint``'s SQS server as is, or an ElasticMQ of our own (scripts/sqs-local), as ``own_broker``."""
    from tests.sqs_helpers import ElasticMQ

    if endpoint:
        yield ElasticMQ(endpoint, None)
        return
    state = Path(tempfile.mkdtemp(prefix="canvas-bridge-bench-sqs-"))
    say(f"starting ElasticMQ (scripts/sqs-local, state in {state})")
    server = ElasticMQ("", state)
    try:
        server = ElasticMQ.start_in(state)
        yield server
    except RuntimeError as exc:
        if server.endpoint:
            raise
        raise BenchError(str(exc)[-3000:]) from None
    finally:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            server.stop()
        shutil.rmtree(state, ignore_errors=True)

