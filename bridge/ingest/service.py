"""The lifecycle of ``canvas-bridge ingest``: startup -> run -> drain -> shutdown, one task group.

Children: the raw-topic writer (its producer, restarted with backoff), the JWKS cache, the
broker probe, the probes port (``[http]``: ``/metrics``, ``/healthz``, ``/readyz``) and the
ingest port (``[ingest]``: ``/events``, ``/caliper``; the probes too).

SIGTERM or SIGINT drains: ``/readyz`` answers 503 at once, the ingest port stops accepting, the
requests in flight are answered (each is bounded by ``ingest.ack_timeout_ms``), the producer is
flushed and the process exits 0, within ``delivery.drain_timeout_s`` (else exit 3). A second
signal forces exit (130).
"""

from __future__ import annotations

import logging
import time
from functools import partial

import anyio

from bridge import metrics
from bridge.config import Config
from bridge.http import HttpServer, Probes, serve_probes
from bridge.http_guard import Limits
from bridge.ingest.https import IngestState, Verifier, build_app
from bridge.ingest.jwks import JwksCache
from bridge.ingest.writer import RawWriter
from bridge.lifecycle import EXIT_FATAL, EXIT_OK, Drain

log = logging.getLogger("bridge.ingest")

PROBE_INTERVAL_S = 2.0
PROBE_STALE_S = 6.0


class IngestService:
    def __init__(self, config: Config) -> None:
        self.config = config
        ingest = config.ingest
        self.writer = RawWriter(config, "https")
        self.jwks = (JwksCache(ingest.jwks_url, refresh_s=ingest.jwks_refresh_s,
                               min_refetch_s=ingest.jwks_min_refetch_s, timeout_s=ingest.jwks_timeout_s)
                     if ingest.jwks_url else None)
        self.state = IngestState(max_in_flight=ingest.max_in_flight)
        self.drain = Drain(config.delivery.drain_timeout_s, self._start_drain)
        self._broker_ok_at = 0.0
        probes = Probes(ready=self.ready)
        verifier = Verifier(self.jwks, ingest.issuers, ingest.leeway_s)
        drain = config.delivery.drain_timeout_s
        limits = Limits(max_connections=ingest.max_connections, idle_timeout_s=ingest.keepalive_timeout_s,
                        request_timeout_s=ingest.request_timeout_s,
                        shutdown_timeout_s=max(1.0, drain - 3.0))
        self.server = HttpServer(build_app(config, self.writer, verifier, self.state, probes), ingest.host,
                                 ingest.port, name="ingest", limits=limits, certfile=ingest.tls_certfile,
                                 keyfile=ingest.tls_keyfile)
        self.probes = probes

    def _start_drain(self) -> None:
        self.state.draining = True
        self.server.stop()

    def ready(self) -> tuple[bool, str]:
        if self.state.draining:
            return False, "draining"
        if self.jwks is not None and not self.jwks.loaded:
            return False, f"JWKS not loaded yet: {self.jwks.last_error}"[:300]
        if not self.writer.connected:
            return False, f"Kafka not reached: {self.writer.last_error}"[:300]
        if time.monotonic() - self._broker_ok_at > PROBE_STALE_S:
            return False, "broker unreachable"
        if self.writer.last_error:
            return False, f"writing failing: {self.writer.last_error}"[:300]
        return True, "ready"

    async def probe_loop(self) -> None:
        while True:
            if await self.writer.reachable(PROBE_INTERVAL_S + 1):
                self._broker_ok_at = time.monotonic()
                self.writer.last_error = ""  # the broker answers again: the next write will tell
            metrics.READY.set(1 if self.ready()[0] else 0)
            await anyio.sleep(PROBE_INTERVAL_S)

    async def run(self) -> int:
        config = self.config
        async with anyio.create_task_group() as tg:
            await tg.start(self.writer.run)
            if self.jwks is not None:
                if self.jwks.url.startswith("http://"):
                    log.warning("ingest.jwks_url is plain HTTP: anyone on the path could substitute keys")
                await tg.start(self.jwks.run)
            else:
                log.warning("ingest.jwks_url is empty: every signed delivery is refused")
            for what, start in (
                ("http.host/http.port, env BRIDGE_HTTP_HOST/BRIDGE_HTTP_PORT",
                 partial(serve_probes, config, self.probes)),
                ("ingest.host/ingest.port, env BRIDGE_INGEST_HOST/BRIDGE_INGEST_PORT", self.server.run),
            ):
                try:
                    await tg.start(start)
                except OSError as exc:
                    log.error("cannot listen (%s): %s", what, exc.strerror or exc)
                    tg.cancel_scope.cancel()
                    return EXIT_FATAL
            tg.start_soon(self.probe_loop)
            await self.drain.requested.wait()
            # Drain: the ingest port stopped accepting; its requests in flight get their answers.
            await self.server.wait_stopped()
            await self.writer.close()
            tg.cancel_scope.cancel()
        log.info("stopped (exit 0)")
        return EXIT_OK


async def run_ingest(config: Config) -> int:
    """Run ``canvas-bridge ingest`` until a signal drains it. Returns the process exit code."""
    metrics.declare_ingest("https")
    metrics.declare_ingest("caliper")
    metrics.declare_ingest_http()
    service = IngestService(config)
    with service.drain.on_signals():
        try:
            return await service.run()
        except Exception:
            log.exception("unexpected error; exiting")
            return EXIT_FATAL
