"""Bounds around uvicorn's HTTP protocol, shared by every server of ``bridge.http``.

The HTTP side must never take the process down, whatever clients do. uvicorn parses HTTP; what
it does not bound is added here, around its protocol (no parsing of our own):

- **Connections are capped** (``Limits.max_connections``, never more than the file-descriptor
  limit leaves for Kafka and the rest). A new connection over the cap closes the oldest *idle*
  one (connected, no request in progress), else itself: a flood of silent connections cannot
  starve the process of file descriptors, nor keep a scrape or a delivery out for long.
- **A connection that never sends a request is closed** after ``idle_timeout_s`` (or
  ``request_timeout_s`` if shorter): uvicorn arms its keep-alive timer only after a first
  response, so such a connection would otherwise be held for ever. Between keep-alive requests,
  ``idle_timeout_s``.
- **A request must arrive whole** within ``request_timeout_s`` from its first byte, with at most
  ``max_header_bytes`` of request line and headers (431 beyond): no slow-loris.
- **Accept errors** (``EMFILE``, ``ENFILE``, ``ENOBUFS``, ``ENOMEM``) stay in the event loop: they are
  counted and logged at a bounded rate, and accepting resumes by itself.

Every one of these is counted in ``canvas_bridge_http_*`` and logged at most once per 10 s per
kind, so a flood does not flood the logs either.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import time
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bridge import metrics

log = logging.getLogger("bridge.http")



#: File descriptors kept free of HTTP connections: Kafka connections (one per broker and
#: client, plus reconnects), the listening sockets, logs, the JWKS fetch, the Python runtime.
FD_RESERVE = 256


@dataclass(frozen=True, slots=True)
class Limits:
    """What one HTTP server allows its clients."""

    max_connections: int = 64
    idle_timeout_s: float = 5.0  # connected, no request yet (or between keep-alive requests)
    request_timeout_s: float = 10.0  # from a request's first byte to its last
    max_header_bytes: int = 16384
    shutdown_timeout_s: float = 10.0  # in-flight requests at stop
    backlog: int = 1024


# -- bounded-rate logging ------------------------------------------------------------------------


class RateLimitedLog:
    """At most one line per kind per ``interval_s``; the next line says how many were skipped."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self._log = logger
        self._interval = interval_s
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def warning(self, kind: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -1e9) < self._interval:
            self._skipped[kind] = self._skipped.get(kind, 0) + 1
            return
        self._last[kind] = now
        skipped = self._skipped.pop(kind, 0)
        suffix = f" ({skipped} more like this in the last {self._interval:.0f}s)" if skipped else ""
        self._log.warning(msg + suffix, *args)


_rate_limited = RateLimitedLog(log)


class _RateLimitFilter(logging.Filter):
    """uvicorn's own warnings ("Invalid HTTP request received.", one per bad request) at a bounded rate."""

    def __init__(self, interval_s: float = 10.0) -> None:
        super().__init__()
        self._interval = interval_s
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.exc_info:
            return True  # an application error: keep every one
        key = str(record.msg)
        now = time.monotonic()
        if now - self._last.get(key, -1e9) < self._interval:
            return False
        self._last[key] = now
        return True


_UVICORN_FILTER = _RateLimitFilter()
logging.getLogger("uvicorn.error").addFilter(_UVICORN_FILTER)


# -- the guarded protocol ----------------------------------------------------------------------


def _limit_text(n: int) -> str:
    return "unlimited" if n == resource.RLIM_INFINITY else str(n)


def raise_fd_limit() -> int:
    """Raise the soft file-descriptor limit to the hard one, as Go's runtime does at start; log it.

    Runtimes often start a container with a soft ``nofile`` limit of 1,024 under a far higher hard
    one (containerd 2.x, systemd's default), and Kubernetes has no per-pod setting for it. Every
    socket (Kafka's, each HTTP client's) counts against the soft limit, and a process may raise it
    up to the hard limit by itself. Every long-running command calls this before it opens
    anything, so that ``fd_budget`` (the HTTP connection cap) reads the raised limit. Returns the
    soft limit the process runs with.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard or soft == resource.RLIM_INFINITY:
        log.info("file descriptors: limit %s (soft = hard)", _limit_text(soft))
        return soft
    if hard == resource.RLIM_INFINITY:
        # Not on Linux (nofile's hard limit is at most fs.nr_open); macOS: keep what was given.
        log.info("file descriptors: limit %s (hard limit unlimited; left as it is)", _limit_text(soft))
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning("file descriptors: limit %d; raising it to the hard limit %d failed (%s)", soft, hard, exc)
        return soft
    log.info("file descriptors: limit %d (the soft limit was %d: raised to the hard limit)", hard, soft)
    return hard


def fd_budget(wanted: int) -> int:
    """``wanted`` connections, or fewer when the process's file-descriptor limit cannot hold them."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(4, min(wanted, soft - FD_RESERVE))


class Guard:
    """Per-server state: open connections in order of idleness, the limits, the counters."""

    def __init__(self, name: str, limits: Limits, max_connections: int) -> None:
        self.name = name
        self.limits = limits
        self.max_connections = max_connections
        self.idle: dict[GuardedProtocol, None] = {}  # insertion order: oldest idle first
        self.open = 0
        self.gauge = metrics.HTTP_CONNECTIONS.labels(name)
        self.closed = {reason: metrics.HTTP_CONNECTIONS_CLOSED.labels(name, reason)
                       for reason in metrics.HTTP_CLOSE_REASONS}

    def close(self, proto: GuardedProtocol, reason: str, detail: str) -> None:
        self.closed[reason].inc()
        _rate_limited.warning(f"{self.name}:{reason}", "http %s: %s", self.name, detail)
        proto.transport.close()


class _HeadTooLarge(Exception):
    """Raised from a parser callback: the request line and headers are over the limit."""


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a connection cap, an idle timeout and a request deadline."""

    guard: Guard  # set on the per-server subclass

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        g = self.guard
        g.open += 1
        g.gauge.set(g.open)
        self._deadline: asyncio.TimerHandle | None = None
        self._in_head = True  # reading a request's head (or waiting for one)
        self._head_bytes = 0  # bytes received while in the head
        self._head_len = 0  # bytes of the request line and headers parsed so far
        g.idle[self] = None
        # A new connection gets the shorter of the two: no request within request_timeout_s
        # (ingest keeps idle keep-alive connections 75 s, but not a connection that never asked).
        self._arm_idle(min(g.limits.idle_timeout_s, g.limits.request_timeout_s))
        if g.open > g.max_connections:
            victim = next((p for p in g.idle if p is not self), None)
            if victim is not None:
                g.close(victim, "evicted", f"{g.open} connections, over the limit of {g.max_connections}: "
                                           "closed the oldest idle one")
            else:
                g.close(self, "over_limit", f"{g.open} connections busy, over the limit of {g.max_connections}: "
                                            "refused a new one")

    def _arm_idle(self, seconds: float | None = None) -> None:
        # uvicorn's keep-alive timer, armed from the connection's start on (uvicorn arms it only
        # after a response); the first data received cancels it, as usual.
        self._unset_keepalive_if_required()
        self.timeout_keep_alive_task = self.loop.call_later(
            self.guard.limits.idle_timeout_s if seconds is None else seconds, self._idle_timeout)

    def _idle_timeout(self) -> None:
        if not self.transport.is_closing():
            self.guard.closed["idle_timeout"].inc()
            self.transport.close()

    def _request_timeout(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.guard.close(self, "request_timeout",
                             f"a request did not arrive whole within {self.guard.limits.request_timeout_s:.0f}s")

    def data_received(self, data: bytes) -> None:
        # uvicorn's HttpToolsProtocol.data_received, plus the head-size limit (431).
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._head_len > self.guard.limits.max_header_bytes:  # _HeadTooLarge, wrapped by httptools
                self._refuse_head()
                return
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()  # no websockets here
        if self.transport.is_closing():
            return
        if self._in_head and self._head_bytes > self.guard.limits.max_header_bytes:
            self._refuse_head()  # a head still incomplete after that many bytes
        elif self._deadline is None and (self.cycle is None or self.cycle.response_complete):
            self._arm_idle()  # bytes that started no request (e.g. bare CRLFs): still idle

    def _refuse_head(self) -> None:
        g = self.guard
        g.closed["header_too_large"].inc()
        _rate_limited.warning(f"{g.name}:header_too_large", "http %s: request head over %d bytes: answered 431",
                              g.name, g.limits.max_header_bytes)
        self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n"
                             b"connection: close\r\n\r\n")
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.guard.idle.pop(self, None)
        self._head_len = 0
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.guard.limits.request_timeout_s, self._request_timeout)

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count_head(self, n: int) -> None:
        self._head_len += n
        if self._head_len > self.guard.limits.max_header_bytes:
            raise _HeadTooLarge

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self.guard.idle[self] = None

    def connection_lost(self, exc: Exception | None) -> None:
        g = self.guard
        g.idle.pop(self, None)
        g.open -= 1
        g.gauge.set(g.open)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._unset_keepalive_if_required()
        super().connection_lost(exc)


def accept_errors_contained(loop: asyncio.AbstractEventLoop) -> None:
    """Count and log (bounded) the accept errors the loop reports, instead of one line each.

    asyncio's loop reports ``EMFILE`` & co. on ``accept`` to its exception handler and retries a
    second later; uvloop's libuv closes the pending connection with its spare descriptor.
    Anything else goes to the handler that was there before.
    """
    if getattr(loop, "_bridge_accept_guard", False):
        return
    previous = loop.get_exception_handler()

    def handler(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
            metrics.HTTP_ACCEPT_ERRORS.labels(errno.errorcode.get(exc.errno or 0, "other")).inc()
            _rate_limited.warning("accept", "http: accepting a connection failed (%s); the server keeps "
                                  "serving and retries", exc.strerror)
            return
        if previous is not None:
            previous(lp, context)
        else:
            lp.default_exception_handler(context)

    loop.set_exception_handler(handler)
    loop._bridge_accept_guard = True  # type: ignore[attr-defined]


