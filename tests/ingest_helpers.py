"""Helpers of the ingest tests: real RSA keys, a real JWKS server, ``canvas-bridge ingest`` as a process.

- ``SigningKey``: a fresh 2048-bit RSA key, its JWK, and RS256 tokens signed with it (PyJWT);
- ``JwksServer``: a local HTTP server (stdlib, in a thread) that serves the current JWKS, counts
  fetches, and can switch keys or go down;
- ``IngestProcess``: ``canvas-bridge ingest`` as a subprocess (``BridgeProcess`` with another
  command), with ``post`` to its ingest port.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.kafka_helpers import BridgeProcess, free_port

ISSUER = "https://live-events.canvas.test"


class SigningKey:
    """An RSA key pair made by the test, named ``kid``."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        jwk.update({"kid": self.kid, "alg": "RS256", "use": "sig"})
        return jwk

    def sign(self, claims: dict[str, Any], *, kid: str | None = None) -> str:
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": kid or self.kid})


def canvas_claims(event: dict[str, Any], *, iss: str = ISSUER, ttl_s: float = 300.0, **extra: Any) -> dict[str, Any]:
    """The claims Canvas signs: the event's fields at the top level, beside registered claims."""
    now = int(time.time())
    return {**event, "iss": iss, "iat": now, "exp": now + int(ttl_s), "jti": f"jti-{time.monotonic_ns()}", **extra}


class _Handler(BaseHTTPRequestHandler):
    server: _JwksHTTPServer

    def do_GET(self) -> None:
        owner = self.server.owner
        owner.fetches += 1
        if not owner.up:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"keys": [k.jwk() for k in owner.keys]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _JwksHTTPServer(ThreadingHTTPServer):
    owner: JwksServer


class JwksServer:
    """Serves ``{"keys": [...]}`` of ``keys`` at ``url``; ``fetches`` counts the GETs."""

    def __init__(self, keys: list[SigningKey]) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.up = True
        self._httpd = _JwksHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/main/jwks"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="jwks", daemon=True)

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.body[:200]!r})"


def post(port: int, path: str, body: bytes, headers: dict[str, str] | None = None,
         timeout: float = 15.0) -> Answer:
    """One POST on a fresh connection; status 0 when the connection failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/jwt", **(headers or {})})
        resp = conn.getresponse()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    except (OSError, http.client.HTTPException):
        return Answer(0, {}, b"")
    finally:
        conn.close()


class IngestProcess(BridgeProcess):
    """``canvas-bridge ingest`` as a real subprocess; ``http_port`` serves the probes, ``port`` ingest."""

    command = "ingest"

    def __init__(self, bootstrap: str, raw_topic: str, log_path: Path, jwks_url: str, **settings: str) -> None:
        self.port = free_port()
        super().__init__(bootstrap, raw_topic, "unused", log_path, **{
            "BRIDGE_INGEST_HOST": "127.0.0.1",
            "BRIDGE_INGEST_PORT": str(self.port),
            "BRIDGE_INGEST_JWKS_URL": jwks_url,
            "BRIDGE_INGEST_ISSUERS": ISSUER,
            **settings,
        })
        self.env.pop("BRIDGE_GROUP_ID", None)

    def post(self, path: str, body: bytes | str, headers: dict[str, str] | None = None,
             timeout: float = 15.0) -> Answer:
        return post(self.port, path, body.encode() if isinstance(body, str) else body, headers, timeout)
