"""The HTTP side never takes the process down: silent, slow and oversized clients are cut off.

- 2,000 silent connections to ``canvas-bridge run``'s metrics port, with the bridge's
  file-descriptor limit at 1,024: it keeps consuming and publishing, and ``/readyz`` answers
  (issue #19: the hand-written server died of ``EMFILE`` here, exit 1).
- Started with a soft limit of 1,024 under a hard one of 4,096 (containerd 2.x gives containers
  such limits), ``run``, ``ingest`` and ``ingest-sqs`` each raise their soft limit to the hard one
  before their servers compute their connection caps from it.
- In-process, with small limits: an idle connection, a slow-loris request head and an
  oversized head are each closed (431 for the last), counted, while normal requests are served.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from bridge import metrics
from bridge.http import HttpServer, Probes, probes_app
from bridge.http_guard import Limits
from tests.conftest import Broker
from tests.ingest_helpers import IngestProcess
from tests.kafka_helpers import BridgeProcess, catalog_lines, produce, run, unique, wait_until
from tests.sqs_helpers import ElasticMQ, IngestSqsProcess

CONNECTIONS = 2000
FD_LIMIT = 1024


def _limit_fds() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def _raise_own_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft >= wanted, f"the test needs {wanted} descriptors, its hard limit allows {soft}"


def _open_silent(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            s.close()
            continue
        socks.append(s)
    return socks


def _closed_by_peer(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _events(tag: str, n: int) -> list[bytes]:
    seed = json.loads(next(x for x in catalog_lines() if b'"outcomes.retry_outcome_alignment_clone"' in x))
    out = []
    for i in range(n):
        seed["metadata"]["request_id"] = f"{tag}-{i}"
        out.append(json.dumps(seed).encode())
    return out


@pytest.mark.broker
def test_two_thousand_silent_connections_at_a_1024_fd_limit_leave_the_bridge_working(
        bootstrap: str, raw_topic: str, tmp_path: Path) -> None:
    _raise_own_fd_limit(CONNECTIONS + 200)
    bridge = BridgeProcess(bootstrap, raw_topic, unique("g"), tmp_path / "bridge.log")
    bridge.preexec_fn = _limit_fds
    with bridge:
        bridge.wait_ready()
        run(produce(bootstrap, raw_topic, _events("before", 50)))
        wait_until(lambda: bridge.metric("canvas_bridge_events_published_total") >= 50, 60, "first events")

        socks = _open_silent(bridge.http_port, CONNECTIONS)
        try:
            assert len(socks) >= CONNECTIONS * 0.95, f"only {len(socks)} connections could be opened"
            # Meanwhile the bridge goes on: it consumes and publishes new events...
            run(produce(bootstrap, raw_topic, _events("during", 100)))
            # ...and a scrape still gets through (it evicts the oldest silent connection).
            wait_until(lambda: bridge.proc is not None and bridge.proc.poll() is None
                       and bridge.metric("canvas_bridge_events_published_total") >= 150, 60,
                       "events published while 2,000 connections are open")
            # Silent connections are closed by the server, not held for ever.
            wait_until(lambda: all(_closed_by_peer(s) for s in socks), 30, "the server to close every silent one")
        finally:
            for s in socks:
                s.close()
        assert bridge.proc is not None and bridge.proc.poll() is None, bridge.log_tail()
        wait_until(lambda: bridge.get("/readyz")[0] == 200, 30, "/readyz to answer 200")
        closed = (bridge.metric("canvas_bridge_http_connections_closed_total", 'reason="evicted"')
                  + bridge.metric("canvas_bridge_http_connections_closed_total", 'reason="idle_timeout"'))
        assert closed >= len(socks)
        assert bridge.metric("canvas_bridge_http_accept_errors_total") == 0
        assert bridge.metric("canvas_bridge_http_connections", 'server="probes"') <= 64
        assert bridge.terminate() == 0
    assert "Traceback" not in bridge.log_path.read_text(errors="replace")


SOFT, HARD = 1024, 4096


def _soft_1024_under_hard_4096() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT, HARD))


def _nofile_of(pid: int) -> tuple[int, int]:
    """The soft and hard ``nofile`` limits of a running process, as the kernel reports them."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"/proc/{pid}/limits has no 'Max open files' line")


def _needs_hard_limit(wanted: int) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the test's own hard nofile limit ({hard}) is below {wanted}")


@pytest.mark.broker
@pytest.mark.parametrize("cmd", ["run", "ingest", "ingest-sqs"])
def test_every_long_running_command_raises_its_soft_fd_limit_to_the_hard_one(
        cmd: str, broker: Broker, raw_topic: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    _needs_hard_limit(HARD)
    log = tmp_path / f"{cmd}.log"
    proc: BridgeProcess
    if cmd == "run":
        proc = BridgeProcess(broker.bootstrap, raw_topic, unique("g"), log)
    elif cmd == "ingest":
        # ingest.max_connections is 2,000: at the soft limit of 1,024 its cap would be 768.
        proc = IngestProcess(broker.bootstrap, raw_topic, log, "", BRIDGE_INGEST_UNSIGNED_TOKEN="t" * 24)
    else:
        elasticmq: ElasticMQ = request.getfixturevalue("elasticmq")
        proc = IngestSqsProcess(broker.bootstrap, raw_topic, [elasticmq.client().create_queue()], log)
    proc.preexec_fn = _soft_1024_under_hard_4096
    with proc:
        assert proc.proc is not None
        proc.wait_ready()
        assert _nofile_of(proc.proc.pid) == (HARD, HARD)
        # prometheus_client's process_max_fds is the soft limit: the dashboard's "Process" row shows it.
        assert proc.metric("process_max_fds") == HARD
        assert proc.terminate() == 0
    text = log.read_text(errors="replace")
    assert f"file descriptors: limit {HARD} (the soft limit was {SOFT}: raised to the hard limit)" in text
    # The connection caps were computed after the raise: none was lowered to fit 1,024.
    assert "connections allowed, not" not in text, text


@pytest.mark.parametrize(("limits", "expected", "logged"), [
    ((SOFT, HARD), (HARD, HARD), f"limit {HARD} (the soft limit was {SOFT}: raised to the hard limit)"),
    ((SOFT, SOFT), (SOFT, SOFT), f"limit {SOFT} (soft = hard)"),
])
def test_raise_fd_limit_raises_the_soft_limit_to_the_hard_one_and_logs_it(
        limits: tuple[int, int], expected: tuple[int, int], logged: str) -> None:
    import subprocess
    import sys

    _needs_hard_limit(limits[1])
    code = ("import logging, resource; logging.basicConfig(level=logging.INFO); "
            "from bridge.http_guard import raise_fd_limit; "
            "print(raise_fd_limit(), *resource.getrlimit(resource.RLIMIT_NOFILE))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limits))
    assert [int(x) for x in result.stdout.split()] == [expected[0], *expected]
    assert f"INFO:bridge.http:file descriptors: {logged}" in result.stderr


class _InProcess:
    """A probes server with small limits, on its own event loop in a thread."""

    def __init__(self, limits: Limits) -> None:
        self.server = HttpServer(probes_app(Probes(ready=lambda: (True, "ready"))), "127.0.0.1", 0,
                                 name="limits-test", limits=limits)
        self.port = 0
        started = threading.Event()

        async def main() -> None:
            async with anyio.create_task_group() as tg:
                self.port = await tg.start(self.server.run)
                started.set()
                await self.server.wait_stopped()
                tg.cancel_scope.cancel()

        self._thread = threading.Thread(target=anyio.run, args=(main,), daemon=True)
        self._thread.start()
        assert started.wait(10)

    def stop(self) -> None:
        self.server.stop()
        self._thread.join(10)


@pytest.fixture
def small() -> Iterator[_InProcess]:
    server = _InProcess(Limits(max_connections=8, idle_timeout_s=1.0, request_timeout_s=2.0, max_header_bytes=4096,
                               shutdown_timeout_s=1.0))
    yield server
    server.stop()


def _closed(name: str, reason: str) -> float:
    return metrics.HTTP_CONNECTIONS_CLOSED.labels(name, reason)._value.get()  # type: ignore[attr-defined, no-any-return]


def test_idle_slow_and_oversized_clients_are_cut_off_while_others_are_served(small: _InProcess) -> None:
    port = small.port
    idle = socket.create_connection(("127.0.0.1", port))
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    big = socket.create_connection(("127.0.0.1", port))
    big.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
    answer = big.recv(200)
    assert answer.startswith(b"HTTP/1.1 431")

    started = time.monotonic()
    for _ in range(4):  # the slow-loris client keeps trickling bytes of its head
        time.sleep(0.6)
        try:
            slow.sendall(b"X-A: b\r\n")
        except OSError:
            break
    wait_until(lambda: _closed_by_peer(idle), 5, "the idle connection to be closed")
    wait_until(lambda: _closed_by_peer(slow), 5, "the slow request to be cut off")
    assert time.monotonic() - started < 6
    # Normal requests are served all along.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
        assert resp.status == 200
    assert _closed("limits-test", "idle_timeout") >= 1
    assert _closed("limits-test", "request_timeout") >= 1
    assert _closed("limits-test", "header_too_large") >= 1
    for s in (idle, slow, big):
        s.close()


def test_over_the_connection_limit_the_oldest_idle_connection_makes_room(small: _InProcess) -> None:
    port = small.port
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    # A real request still gets through: each new connection evicts the oldest idle one.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
        assert resp.status == 200
    wait_until(lambda: sum(_closed_by_peer(s) for s in silent[:12]) == 12, 5, "the oldest silent ones evicted")
    assert _closed("limits-test", "evicted") >= 12
    for s in silent:
        s.close()


_EMFILE_SERVER = r"""
import os, resource, sys, threading, time
import anyio
from bridge.http import HttpServer, Probes, probes_app
from bridge.http_guard import Limits

resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))
server = HttpServer(probes_app(Probes(ready=lambda: (True, "ready"))), "127.0.0.1", 0, name="emfile",
                    limits=Limits(max_connections=1000, idle_timeout_s=2.0))

def hog_then_release():
    hog = []
    try:
        while True:
            hog.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        pass  # every descriptor taken: each accept now fails with EMFILE
    print("hogged", flush=True)
    sys.stdin.readline()  # the test connected meanwhile
    for fd in hog:
        os.close(fd)
    print("released", flush=True)

async def main():
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.run)
        print(port, flush=True)
        await anyio.to_thread.run_sync(hog_then_release)
        await anyio.sleep_forever()

anyio.run(main, backend_options={"use_uvloop": sys.argv[1] == "uvloop"})
"""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_accept_failing_with_emfile_is_contained_and_serving_resumes(loop: str) -> None:
    """A server with every descriptor taken: connections it cannot accept do not kill it."""
    import subprocess
    import sys

    from tests.kafka_helpers import REPO

    proc = subprocess.Popen([sys.executable, "-c", _EMFILE_SERVER, loop], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        port = int(proc.stdout.readline())
        assert proc.stdout.readline().strip() == "hogged"
        for _ in range(20):  # each lands in the backlog; the server's accept fails with EMFILE
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                s.settimeout(0.2)
                with contextlib.suppress(OSError):
                    s.recv(100)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "released"

        def metrics_text() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                    return resp.read().decode()
            except OSError:
                return ""
        text = wait_until(metrics_text, 15, "the server to serve again")
        assert proc.poll() is None
        errors = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                     if line.startswith("canvas_bridge_http_accept_errors_total{"))
        if loop == "asyncio":  # asyncio hands EMFILE to the loop's handler; libuv (uvloop) absorbs it itself
            assert errors >= 1
    finally:
        proc.kill()
        _, stderr = proc.communicate(timeout=10)
    assert "Traceback" not in stderr, stderr[-3000:]
    if loop == "asyncio":
        assert stderr.count("accepting a connection failed") == 1, stderr[-2000:]  # bounded: once per 10 s
