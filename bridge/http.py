"""The HTTP endpoints: ``/metrics`` (Prometheus), ``/healthz`` (alive), ``/readyz`` (ready).

A deliberately small HTTP/1.1 server on anyio: three GET routes and, when
``http.admin = true``, ``POST /admin/pause`` and ``POST /admin/resume`` (stop and restart
fetching, e.g. for maintenance). Each request gets one response and the connection closes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import anyio
from anyio.abc import SocketStream, TaskStatus
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

log = logging.getLogger("bridge.http")

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request", 503: "Service Unavailable"}


@dataclass(slots=True)
class Probes:
    """What the endpoints ask the service: (ok, reason) for ready; admin actions."""

    ready: Callable[[], tuple[bool, str]]
    pause: Callable[[], None] | None = None
    resume: Callable[[], None] | None = None


def _response(status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def route(method: str, path: str, probes: Probes) -> bytes:
    path = path.split("?", 1)[0]
    if path == "/metrics":
        if method not in ("GET", "HEAD"):
            return _response(405, b"GET only\n")
        return _response(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
    if path == "/healthz":
        return _response(200, b"ok\n")
    if path == "/readyz":
        ok, why = probes.ready()
        return _response(200 if ok else 503, (why + "\n").encode())
    if path in ("/admin/pause", "/admin/resume") and probes.pause is not None and probes.resume is not None:
        if method != "POST":
            return _response(405, b"POST only\n")
        (probes.pause if path.endswith("pause") else probes.resume)()
        return _response(200, f"{path.rsplit('/', 1)[1]}d\n".encode())
    return _response(404, b"not found\n")


async def _handle(stream: SocketStream, probes: Probes) -> None:
    async with stream:
        data = b""
        with anyio.move_on_after(10):
            while b"\r\n\r\n" not in data and len(data) < 16384:
                try:
                    chunk = await stream.receive(4096)
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                data += chunk
        line = data.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split()
        reply = route(parts[0].upper(), parts[1], probes) if len(parts) >= 2 else _response(400, b"bad request\n")
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await stream.send(reply)


async def serve(host: str, port: int, probes: Probes, *, task_status: TaskStatus[int]) -> None:
    """Listen until cancelled; reports the bound port to the task group (port 0 picks one)."""
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=False)
    bound = listener.extra(anyio.abc.SocketAttribute.local_port)
    log.info("http endpoints on http://%s:%d (/metrics /healthz /readyz)", host, bound)
    task_status.started(bound)

    async def handler(stream: SocketStream) -> None:
        await _handle(stream, probes)

    async with listener:
        await listener.serve(handler)
