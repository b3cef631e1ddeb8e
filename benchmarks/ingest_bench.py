#!/usr/bin/env python3
"""HTTP benchmark of ``canvas-bridge ingest``: signed deliveries into a real Kafka broker.

    python benchmarks/ingest_bench.py [--bootstrap HOST:PORT] [--seconds S] [--rate RPS]
                                      [--connections N] [--rounds R] [--json PATH]

Load comes from Debian's ``wrk`` (saturation) and ``hey`` (a fixed rate: ``-q`` per worker);
``scripts/install-test-tools`` installs both. Each round measures, interleaved:

- ``baseline``: the same HTTP stack (``bridge.http.HttpServer``: uvicorn's httptools protocol with
  the bridge's connection guard, Starlette, uvloop) answering ``POST /events`` with 200 after
  reading the body: no JWT, no Kafka;
- ``ingest``: ``canvas-bridge ingest`` verifying each RS256 token against a JWKS served by this
  script and waiting for the broker's acknowledgement (acks=all) before its 200.

Figures: requests/s at saturation (``wrk``, ``--connections`` connections, 2 threads) and
p50/p99 latency at ``--rate`` requests/s (``hey``). Every answer that is not a 200 is counted and
reported. The broker is this script's own (``scripts/kafka-local``, removed at the end) unless
``--bootstrap`` names one. Targets (issue #13, 2 cores, broker included): >= 2,000 signed
events/s per ingest process, p99 <= 50 ms at 1,000 requests/s; printed as MET / NOT MET.

Hidden sub-command: ``_baseline PORT`` (the baseline server).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root, for ``benchmarks`` and ``bridge``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import CANVAS_FILE, ROOT, BenchError, own_broker
from benchmarks.procs import proc_cpu_s, read_rss_kb, wait_http_ok
from tests.ingest_helpers import JwksServer, SigningKey, canvas_claims
from tests.kafka_helpers import create_topics, free_port

TARGET_EPS = 2000.0
TARGET_P99_MS = 50.0


def say(msg: str) -> None:
    print(f"[ingest-bench] {msg}", file=sys.stderr, flush=True)


# -- the baseline server -------------------------------------------------------------------------


def _baseline(port: int) -> int:
    import anyio
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from bridge.http import HttpServer
    from bridge.http_guard import Limits

    async def events(request: Request) -> Response:
        await request.body()
        return Response(status_code=200)

    async def healthz(request: Request) -> Response:
        return Response(b"ok\n")

    app = Starlette(routes=[Route("/events", events, methods=["POST"]), Route("/healthz", healthz)])
    server = HttpServer(app, "127.0.0.1", port, name="baseline", limits=Limits(max_connections=2000))

    async def main() -> None:
        await server.run()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        anyio.run(main)
    return 0


# -- tokens ----------------------------------------------------------------------------------------


def signed_tokens(key: SigningKey, n: int) -> list[str]:
    """``n`` distinct Canvas events from the catalog, signed as Canvas signs them."""
    lines = [x for x in CANVAS_FILE.read_text().splitlines() if x]
    out = []
    for i in range(n):
        event = json.loads(lines[i % len(lines)])
        event["metadata"]["request_id"] = f"bench-{i}"
        out.append(key.sign(canvas_claims(event, ttl_s=7200)))
    return out


# -- load generators -----------------------------------------------------------------------------

_WRK_LUA = """
local tokens = {}
for line in io.lines("%s") do tokens[#tokens + 1] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/jwt"
request = function()
  i = i %% #tokens + 1
  return wrk.format(nil, "/events", nil, tokens[i])
end
"""


def wrk(port: int, tokens_file: Path, seconds: float, connections: int, work: Path) -> dict[str, Any]:
    script = work / "post.lua"
    script.write_text(_WRK_LUA % tokens_file)
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--latency", "-s", str(script),
                          f"http://127.0.0.1:{port}"], capture_output=True, text=True, timeout=seconds + 60)
    text = out.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:(.*)", text)
    total = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    return {"rps": rps, "requests": total, "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1).strip() if errors else "", "ok_rps": rps * (1 - (
                int(non2xx.group(1)) / total if non2xx and total else 0.0))}


def hey(port: int, token: str, seconds: float, rate: float, work: Path, workers: int) -> dict[str, Any]:
    body = work / "token.jwt"
    body.write_text(token)
    # hey's workers wait for each answer (a closed loop), and their tickers start together: every
    # 1/q s, `workers` requests arrive at once. Few workers keep those bursts small; a worker whose
    # answer takes longer than workers/rate skips ticks (the achieved rate is reported beside).
    out = subprocess.run(["hey", "-z", f"{int(seconds)}s", "-c", str(workers), "-q", str(rate / workers),
                          "-m", "POST", "-T", "application/jwt", "-D", str(body),
                          f"http://127.0.0.1:{port}/events"], capture_output=True, text=True, timeout=seconds + 60)
    text = out.stdout

    def pct(p: int) -> float:
        found = re.search(rf"\s{p}%% in ([\d.]+) secs", text) or re.search(rf"\s{p}% in ([\d.]+) secs", text)
        return float(found.group(1)) * 1000 if found else float("nan")

    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", text)}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    return {"p50_ms": pct(50), "p99_ms": pct(99), "rps": float(rps.group(1)) if rps else 0.0, "status": codes}


# -- processes -----------------------------------------------------------------------------------


def _peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB: what a memory limit must hold."""
    return read_rss_kb(pid)[1] / 1024 or float("nan")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--bootstrap", default=None)
    ap.add_argument("--seconds", type=float, default=10.0, help="per measurement (10)")
    ap.add_argument("--rate", type=float, default=1000.0, help="requests/s for the latency figures (1000)")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections at saturation (64)")
    ap.add_argument("--hey-workers", type=int, default=10,
                    help="hey workers (connections) at the fixed rate, each at rate/workers (10)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved baseline/ingest rounds (2)")
    ap.add_argument("--tokens", type=int, default=500, help="distinct signed events cycled through (500)")
    ap.add_argument("--broker-pid", type=int, default=None, help="with --bootstrap: the broker, for its CPU use")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    for tool in ("wrk", "hey"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (scripts/install-test-tools installs it)")

    import asyncio


    procs: list[subprocess.Popen[bytes]] = []
    work = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    key = SigningKey("bench")
    jwks = JwksServer([key]).__enter__()
    own = contextlib.ExitStack()
    try:
        broker = own.enter_context(own_broker(args.bootstrap))
        bootstrap = broker.bootstrap
        raw = f"ingest-bench-{os.getpid()}-{int(time.time())}"

        asyncio.run(create_topics(bootstrap, [raw], partitions=6))

        tokens = signed_tokens(key, args.tokens)
        tokens_file = work / "tokens.txt"
        tokens_file.write_text("\n".join(tokens) + "\n")

        base_port, ingest_port, probes_port = free_port(), free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        procs.append(subprocess.Popen([sys.executable, __file__, "_baseline", str(base_port)],
                                      stderr=open(work / "baseline.log", "wb")))  # noqa: SIM115
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "bridge", "ingest"], cwd=ROOT, stderr=open(work / "ingest.log", "wb"),  # noqa: SIM115
            env={**env, "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "BRIDGE_RAW_TOPIC": raw,
                 "BRIDGE_INGEST_PORT": str(ingest_port), "BRIDGE_HTTP_PORT": str(probes_port),
                 "BRIDGE_INGEST_JWKS_URL": jwks.url, "BRIDGE_LOG_LEVEL": "WARNING"}))
        wait_http_ok(f"http://127.0.0.1:{base_port}/healthz", 30, procs[0], "the baseline server")
        wait_http_ok(f"http://127.0.0.1:{probes_port}/readyz", 60, procs[1], "canvas-bridge ingest")
        ports = {"baseline": base_port, "ingest": ingest_port}
        pids = {"baseline": procs[0].pid, "ingest": procs[1].pid}
        broker_pid = broker.pid() if broker.controllable else args.broker_pid

        say("warm-up: 3 s of each")
        for port in ports.values():
            wrk(port, tokens_file, 3, args.connections, work)

        rounds: list[dict[str, Any]] = []
        for r in range(args.rounds):
            result: dict[str, Any] = {}
            for name, port in ports.items():
                cpu0 = proc_cpu_s(pids[name])
                b0 = proc_cpu_s(broker_pid) if broker_pid else float("nan")
                sat = wrk(port, tokens_file, args.seconds, args.connections, work)
                sat["cpu_cores"] = round((proc_cpu_s(pids[name]) - cpu0) / args.seconds, 2)
                sat["cpu_us_per_request"] = round(sat["cpu_cores"] * 1e6 / max(sat["rps"], 1.0), 1)
                if broker_pid:
                    sat["broker_cpu_cores"] = round((proc_cpu_s(broker_pid) - b0) / args.seconds, 2)
                lat = hey(port, tokens[r % len(tokens)], args.seconds, args.rate, work, args.hey_workers)
                result[name] = {"saturation": sat, "paced": lat}
                say(f"round {r + 1} {name}: {sat['ok_rps']:.0f} ok requests/s at saturation "
                    f"(non-2xx {sat['non_2xx']}, cpu {sat['cpu_cores']}), p50 {lat['p50_ms']:.1f} ms "
                    f"p99 {lat['p99_ms']:.1f} ms at {args.rate:.0f}/s offered ({lat['rps']:.0f}/s done), "
                    f"status {lat['status']}")
            rounds.append(result)

        def median(name: str, part: str, key: str) -> float:
            values = sorted(r[name][part][key] for r in rounds)
            return values[len(values) // 2]

        summary = {
            "ingest_eps": median("ingest", "saturation", "ok_rps"),
            "baseline_rps": median("baseline", "saturation", "ok_rps"),
            "ingest_cpu_us_per_request": median("ingest", "saturation", "cpu_us_per_request"),
            "baseline_cpu_us_per_request": median("baseline", "saturation", "cpu_us_per_request"),
            "ingest_p50_ms": median("ingest", "paced", "p50_ms"),
            "ingest_p99_ms": median("ingest", "paced", "p99_ms"),
            "ingest_paced_rps": median("ingest", "paced", "rps"),
            "baseline_p50_ms": median("baseline", "paced", "p50_ms"),
            "baseline_p99_ms": median("baseline", "paced", "p99_ms"),
            "ingest_peak_rss_mib": round(_peak_rss_mib(pids["ingest"]), 1),
            "baseline_peak_rss_mib": round(_peak_rss_mib(pids["baseline"]), 1),
            "rate": args.rate, "connections": args.connections, "hey_workers": args.hey_workers,
            "seconds": args.seconds,
            "cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "rounds": rounds,
        }
        non_ok = sum(r["ingest"]["saturation"]["non_2xx"] for r in rounds) + sum(
            n for r in rounds for code, n in r["ingest"]["paced"]["status"].items() if code != 200)
        summary["ingest_non_200"] = non_ok
        print()
        print(f"{'figure':<44}{'ingest':>12}{'baseline':>12}  target")
        print(f"{'requests/s at saturation (wrk, 200s only)':<44}{summary['ingest_eps']:>12,.0f}"
              f"{summary['baseline_rps']:>12,.0f}  >= {TARGET_EPS:,.0f}: "
              f"{'MET' if summary['ingest_eps'] >= TARGET_EPS else 'NOT MET'}")
        print(f"{'CPU us per request at saturation':<44}{summary['ingest_cpu_us_per_request']:>12,.0f}"
              f"{summary['baseline_cpu_us_per_request']:>12,.0f}")
        print(f"{f'p50 ms at {args.rate:,.0f}/s (hey)':<44}{summary['ingest_p50_ms']:>12.1f}"
              f"{summary['baseline_p50_ms']:>12.1f}")
        print(f"{f'p99 ms at {args.rate:,.0f}/s (hey)':<44}{summary['ingest_p99_ms']:>12.1f}"
              f"{summary['baseline_p99_ms']:>12.1f}  <= {TARGET_P99_MS:.0f}: "
              f"{'MET' if summary['ingest_p99_ms'] <= TARGET_P99_MS else 'NOT MET'}")
        print(f"{f'requests/s achieved at {args.rate:,.0f}/s offered':<44}{summary['ingest_paced_rps']:>12,.0f}"
              f"{median('baseline', 'paced', 'rps'):>12,.0f}")
        print(f"{'peak resident memory, MiB (VmHWM)':<44}{summary['ingest_peak_rss_mib']:>12.0f}"
              f"{summary['baseline_peak_rss_mib']:>12.0f}")
        print(f"{'answers other than 200 (all phases)':<44}{non_ok:>12}")
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2))
        return 0
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        jwks.__exit__(None, None, None)
        own.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_baseline":
        sys.exit(_baseline(int(sys.argv[2])))
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as exc:
        sys.exit(f"ingest benchmark failed: {exc}")
