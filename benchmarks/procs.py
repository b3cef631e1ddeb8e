"""Process sampling: the subprocesses a benchmark starts, and what /proc says about them (CPU time,
resident memory, connections to the broker), the host's busy share, and py-spy."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, BenchError, say

_CHILDREN: list[subprocess.Popen[bytes]] = []


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    spawned: float  # perf_counter at spawn

    def tail(self, n: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-n:]
        return ""


def spawn(name: str, argv: list[str], env: dict[str, str], log_dir: Path,
          stdout: int | None = subprocess.DEVNULL) -> Child:
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=stdout, stderr=log)
    log.close()
    _CHILDREN.append(proc)
    return Child(name, proc, log_path, t0)


def stop_child(child: Child, timeout: float = 45.0) -> int | None:
    """SIGTERM (a graceful drain for the bridge), then SIGKILL after ``timeout``."""
    proc = child.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            say(f"{child.name} did not stop within {timeout:.0f}s after SIGTERM; killing it")
            proc.kill()
            proc.wait()
    with contextlib.suppress(ValueError):
        _CHILDREN.remove(proc)
    return proc.returncode


def kill_children() -> None:
    for proc in list(_CHILDREN):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in list(_CHILDREN):
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _CHILDREN.clear()


def http_status(url: str) -> int:
    """The status of a GET of ``url``; 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def wait_http_ok(url: str, limit_s: float, proc: subprocess.Popen[bytes], name: str) -> float:
    """Poll ``url`` every 0.2 s until it answers 200, while ``proc`` (called ``name``) runs; the
    seconds it took. BenchError if the process exits or ``limit_s`` passes first."""
    t0 = time.perf_counter()
    while http_status(url) != 200:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with {proc.returncode} while waiting for {url}")
        if time.perf_counter() - t0 > limit_s:
            raise BenchError(f"{url} did not answer 200 within {limit_s:.0f}s")
        time.sleep(0.2)
    return time.perf_counter() - t0


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (the latency timer's kcat), from /proc/*/stat."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parents[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        frontier += kids
    return found


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants."""
    return sum(proc_cpu_s(p) for p in [pid, *descendants(pid)])


def read_rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in kB from /proc/<pid>/status; (0, 0) when unavailable."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, hwm


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat); 0 when unavailable."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            rest = fh.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def host_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine (/proc/stat), to tell how loaded it was."""
    try:
        with open("/proc/stat") as fh:
            f = [int(x) for x in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    total = sum(f)
    return total - f[3] - f[4], total


def host_busy_pct(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    dt = after[1] - before[1]
    return round(100 * (after[0] - before[0]) / dt, 1) if dt > 0 else None


def broker_connections(pid: int, port: int) -> int:
    """Established TCP connections of ``pid`` to ``port`` (the broker), from /proc: its sockets'
    inodes matched against /proc/<pid>/net/tcp{,6}. Exactly-once opens a producer per raw partition."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    except OSError:
        return 0
    count = 0
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as fh:
                next(fh)
                for line in fh:
                    f = line.split()
                    # remote address (hex ip:port), state 01 = ESTABLISHED, inode
                    if f[3] == "01" and int(f[2].rsplit(":", 1)[1], 16) == port and f[9] in inodes:
                        count += 1
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    return count


@dataclass
class Spy:
    proc: subprocess.Popen[bytes]
    started: float
    log: Path


def start_profiler(child: Child, out: Path | None) -> Spy | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if out is None or not Path(exe).exists():
        say("py-spy not found (pip install py-spy): not profiling")
        return None
    fmt = "speedscope" if out.suffix == ".json" else "flamegraph"
    log = child.log_path.with_suffix(".py-spy.log")
    with open(log, "wb") as fh:
        proc = subprocess.Popen([exe, "record", "--pid", str(child.proc.pid), "--rate", "100", "--nonblocking",
                                 "--format", fmt, "-o", str(out)], stdout=fh, stderr=fh)
    _CHILDREN.append(proc)
    return Spy(proc, time.perf_counter(), log)


def finish_profiler(spy: Spy, out: Path | None) -> dict[str, Any]:
    """py-spy writes its file when the profiled process exits (it was just stopped)."""
    try:
        spy.proc.wait(30)
    except subprocess.TimeoutExpired:
        spy.proc.send_signal(signal.SIGINT)
        spy.proc.wait(30)
    with contextlib.suppress(ValueError):
        _CHILDREN.remove(spy.proc)
    info: dict[str, Any] = {"file": str(out), "seconds": round(time.perf_counter() - spy.started, 1)}
    if out is not None and out.suffix == ".json" and out.exists():
        info.update(summarize_speedscope(out))
    elif out is None or not out.exists():
        info["error"] = spy.log.read_text(errors="replace")[-1000:]
    return info


def summarize_speedscope(path: Path, top: int = 30) -> dict[str, Any]:
    """Self and inclusive share of the samples per function (lines merged), over every thread."""
    doc = json.loads(path.read_text())
    frames = doc["shared"]["frames"]
    stdlib = os.path.dirname(os.__file__) + "/"

    def label(f: dict[str, Any]) -> str:
        file = str(f.get("file", ""))
        for root in (str(ROOT) + "/", "site-packages/", stdlib):
            if root in file:
                file = file.split(root, 1)[1]
        return f"{f.get('name')} ({file})"

    labels = [label(f) for f in frames]
    self_w: dict[str, float] = {}
    incl_w: dict[str, float] = {}
    total = 0.0
    for prof in doc["profiles"]:
        for stack, w in zip(prof.get("samples", []), prof.get("weights", []), strict=False):
            if not stack:
                continue
            total += w
            leaf = labels[stack[-1]]
            self_w[leaf] = self_w.get(leaf, 0) + w
            for name in {labels[i] for i in stack}:
                incl_w[name] = incl_w.get(name, 0) + w

    def table(d: dict[str, float]) -> list[list[Any]]:
        rows = sorted(d.items(), key=lambda kv: -kv[1])[:top]
        return [[round(100 * w / total, 1), name] for name, w in rows]

    return {"active_seconds": round(total, 2), "self_pct": table(self_w), "inclusive_pct": table(incl_w)}
