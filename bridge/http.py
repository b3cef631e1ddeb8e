"""Every HTTP endpoint of every command: Starlette apps served by uvicorn (httptools), on anyio.

- ``probes_app(probes)``: ``/metrics`` (Prometheus), ``/healthz`` (alive), ``/readyz`` (ready) and,
  when the service gives them, ``POST /admin/pause`` and ``POST /admin/resume``;
- ``serve(host, port, probes, *, task_status)``: serve those until cancelled (``run``,
  ``ingest``, ``ingest-sqs``);
- ``HttpServer``: serve any ASGI app (the ingest routes) with a graceful ``stop()``.

What bounds the connections (caps, timeouts, accept errors) is in ``bridge.http_guard``.
"""


from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import uvicorn
from anyio.abc import TaskStatus
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from bridge.config import Config
from bridge.http_guard import Guard, GuardedProtocol, Limits, accept_errors_contained, fd_budget

log = logging.getLogger("bridge.http")

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

@dataclass(slots=True)
class Probes:
    """What the endpoints ask the service: (ok, reason) for ready; admin actions."""

    ready: Callable[[], tuple[bool, str]]
    pause: Callable[[], None] | None = None
    resume: Callable[[], None] | None = None


# -- serving -------------------------------------------------------------------------------------


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class HttpServer:
    """One ASGI app on one port, until ``stop()`` (graceful) or cancellation (also graceful, bounded)."""

    def __init__(self, app: ASGIApp, host: str, port: int, *, name: str, limits: Limits | None = None,
                 certfile: str = "", keyfile: str = "") -> None:
        self.name = name
        self.host = host
        self.limits = limits or Limits()
        budget = fd_budget(self.limits.max_connections)
        if budget < self.limits.max_connections:
            log.warning("http %s: %d connections allowed, not %d: the file-descriptor limit (ulimit -n) "
                        "leaves no more beside Kafka", name, budget, self.limits.max_connections)
        protocol = type(f"GuardedProtocol_{name}", (GuardedProtocol,),
                        {"guard": Guard(name, self.limits, budget)})
        self._config = uvicorn.Config(
            app, host=host, port=port, http=protocol, ws="none", lifespan="off", log_config=None,
            access_log=False, proxy_headers=False, server_header=False,
            timeout_keep_alive=max(1, round(self.limits.idle_timeout_s)),
            timeout_graceful_shutdown=max(1, round(self.limits.shutdown_timeout_s)),
            backlog=self.limits.backlog, ssl_certfile=certfile or None, ssl_keyfile=keyfile or None,
        )
        self._server = uvicorn.Server(self._config)
        self._requested_port = port
        self.port = 0
        self._stopped = anyio.Event()

    async def run(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen; report the bound port (port 0 picks one); serve until stopped or cancelled."""
        sock = _bind(self.host, self._requested_port, self.limits.backlog)
        self.port = sock.getsockname()[1]
        accept_errors_contained(asyncio.get_running_loop())
        self._config.load()
        server = self._server
        server.lifespan = self._config.lifespan_class(self._config)
        try:
            await server.startup(sockets=[sock])
            scheme = "https" if self._config.ssl else "http"
            log.info("http %s on %s://%s:%d", self.name, scheme, self.host, self.port)
            task_status.started(self.port)
            await server.main_loop()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.limits.shutdown_timeout_s + 2):
                if server.started:
                    await server.shutdown(sockets=[sock])
            sock.close()
            self._stopped.set()

    def stop(self) -> None:
        """Stop accepting, answer the requests in flight (at most ``shutdown_timeout_s``), close."""
        self._server.should_exit = True

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    @property
    def open_connections(self) -> int:
        return len(self._server.server_state.connections)


def probe_routes(probes: Probes, *, with_metrics: bool = True) -> list[BaseRoute]:
    """``/metrics`` (unless ``with_metrics`` is false), ``/healthz``, ``/readyz`` and the admin routes."""

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        ok, why = probes.ready()
        return PlainTextResponse(why + "\n", status_code=200 if ok else 503)

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    if with_metrics:
        routes.append(Route("/metrics", metrics_endpoint, methods=["GET"]))
    pause, resume = probes.pause, probes.resume
    if pause is not None and resume is not None:
        async def admin_pause(request: Request) -> Response:
            pause()
            return PlainTextResponse("paused\n")

        async def admin_resume(request: Request) -> Response:
            resume()
            return PlainTextResponse("resumed\n")

        routes += [Route("/admin/pause", admin_pause, methods=["POST"]),
                   Route("/admin/resume", admin_resume, methods=["POST"])]
    return routes


def probes_app(probes: Probes) -> Starlette:
    return Starlette(routes=probe_routes(probes))


def probe_limits(max_connections: int = 64, idle_timeout_s: float = 5.0) -> Limits:
    """The limits of a probes-only port (``[http]``): few clients, short requests."""
    return Limits(max_connections=max_connections, idle_timeout_s=idle_timeout_s, request_timeout_s=10.0,
                  shutdown_timeout_s=1.0)


async def serve(host: str, port: int, probes: Probes, *, limits: Limits | None = None, name: str = "probes",
                task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
    """Serve ``/metrics``, ``/healthz``, ``/readyz`` (+ admin) until cancelled; reports the bound port.

    Raises ``OSError`` before ``task_status.started`` when the port cannot be bound.
    """
    server = HttpServer(probes_app(probes), host, port, name=name, limits=limits or probe_limits())
    await server.run(task_status=task_status)


async def serve_probes(config: Config, probes: Probes, *,
                       task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
    """``serve`` on ``http.host:http.port`` with the ``[http]`` limits: what every command serves."""
    await serve(config.http.host, config.http.port, probes, task_status=task_status,
                limits=probe_limits(config.http.max_connections, config.http.idle_timeout_s))
