"""Instructure's signing keys: the JWKS, fetched without blocking the loop, cached, rotated.

Canvas signs each delivery with RS256 and names the key in the JWT header's ``kid``. Instructure
publishes the previous, current and next keys at one URL and rotates them monthly, so:

- the keys are cached, and refreshed every ``ingest.jwks_refresh_s``;
- a ``kid`` not in the cache triggers one refetch, at most once per ``ingest.jwks_min_refetch_s``
  whatever the number of requests naming unknown keys (concurrent ones share the fetch): a
  stream of forged tokens cannot turn into a fetch storm against Instructure;
- a failed fetch keeps the cache: the service goes on verifying with the keys it has;
- ``loaded`` is false until a fetch succeeded once (``/readyz`` waits for it).

Only RSA keys usable for RS256 signatures are kept (``kty`` RSA, ``alg`` absent or RS256, ``use``
absent or ``sig``). The fetch runs ``urllib`` in a worker thread, bounded by
``ingest.jwks_timeout_s`` and 1 MiB.
"""

from __future__ import annotations

import logging
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import anyio
import msgspec
from jwt import PyJWK
from jwt.exceptions import PyJWKError

from bridge import metrics

log = logging.getLogger("bridge.ingest.jwks")

MAX_JWKS_BYTES = 1 << 20

Fetch = Callable[[str, float], bytes]


class JwksError(Exception):
    """The JWKS could not be fetched or held no usable key."""


def fetch_url(url: str, timeout_s: float) -> bytes:
    """GET ``url`` (blocking: run it in a worker thread)."""
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "canvas-bridge"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        body: bytes = response.read(MAX_JWKS_BYTES + 1)
    if len(body) > MAX_JWKS_BYTES:
        raise JwksError(f"the JWKS is over {MAX_JWKS_BYTES} bytes")
    return body


def parse_jwks(body: bytes) -> dict[str, PyJWK]:
    """kid -> key, for the RS256 signing keys of a JWKS document."""
    try:
        doc: Any = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise JwksError(f"the JWKS is not JSON: {exc}") from None
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise JwksError("the JWKS has no 'keys' list")
    keys: dict[str, PyJWK] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA" or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("alg", "RS256") != "RS256" or entry.get("use", "sig") != "sig":
            continue
        try:
            keys[entry["kid"]] = PyJWK(entry, "RS256")
        except (PyJWKError, ValueError, TypeError) as exc:
            log.warning("skipping JWKS key %r: %s", entry["kid"][:64], exc)
    if not keys:
        raise JwksError("the JWKS holds no RS256 signing key")
    return keys


class JwksCache:
    """The signing keys by ``kid`` (module docstring)."""

    def __init__(self, url: str, *, refresh_s: float, min_refetch_s: float, timeout_s: float,
                 fetch: Fetch = fetch_url) -> None:
        self.url = url
        self._refresh_s = refresh_s
        self._min_refetch_s = min_refetch_s
        self._timeout_s = timeout_s
        self._fetch = fetch
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None  # monotonic, last success
        self._last_refetch = -1e18  # monotonic, last fetch for an unknown kid
        self._lock = anyio.Lock()
        self.last_error = "JWKS not fetched yet"
        metrics.JWKS_AGE.set_function(self._age)

    @property
    def loaded(self) -> bool:
        return self._fetched_at is not None

    def _age(self) -> float:
        return -1.0 if self._fetched_at is None else time.monotonic() - self._fetched_at

    async def refresh(self, trigger: str) -> bool:
        """Fetch the JWKS once; on failure keep the cache. True when it succeeded."""
        try:
            body = await anyio.to_thread.run_sync(self._fetch, self.url, self._timeout_s, abandon_on_cancel=True)
            keys = parse_jwks(body)
        except (OSError, JwksError, ValueError) as exc:
            metrics.JWKS_REFRESHES.labels(trigger, "failed").inc()
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("fetching the JWKS from %s failed (%s): %s; %s", self.url, trigger, self.last_error,
                        f"still using the {len(self._keys)} cached keys" if self._keys else "no keys yet")
            return False
        metrics.JWKS_REFRESHES.labels(trigger, "ok").inc()
        added = keys.keys() - self._keys.keys()
        self._keys = keys
        self._fetched_at = time.monotonic()
        self.last_error = ""
        metrics.JWKS_KEYS.set(len(keys))
        if added:
            log.info("JWKS (%s): %d keys, new: %s", trigger, len(keys), ", ".join(sorted(k[:64] for k in added)))
        return True

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Load the keys (retrying with backoff until they load once), then refresh periodically."""
        task_status.started()
        backoff = 1.0
        while not await self.refresh("startup"):
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, 60.0)
        wait = self._refresh_s
        while True:
            await anyio.sleep(wait)
            # After a failure, try again sooner than the next refresh (the cache is kept meanwhile).
            wait = self._refresh_s if await self.refresh("periodic") else min(60.0, self._refresh_s)

    async def key(self, kid: str) -> PyJWK | None:
        """The key named ``kid``; an unknown one costs at most one rate-limited refetch."""
        key = self._keys.get(kid)
        if key is not None:
            return key
        async with self._lock:  # concurrent requests for unknown kids share one fetch
            key = self._keys.get(kid)
            if key is not None:
                return key
            if time.monotonic() - self._last_refetch < self._min_refetch_s:
                return None
            self._last_refetch = time.monotonic()
            await self.refresh("unknown_kid")
            return self._keys.get(kid)
