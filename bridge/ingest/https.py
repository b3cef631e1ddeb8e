"""The ingest routes: ``POST /events`` (Canvas's HTTPS delivery) and ``POST /caliper`` (Caliper Sensor API).

``POST /events``: one Live Event per request, as Canvas's Data Services sends it.

- **Signed** ("Sign Payload"): the body is a compact JWT (bare, or as a JSON string in double
  quotes). It is verified before anything is written: RS256 only (``alg: none``, HS256 - even
  "signed" with the public key as secret - and every other algorithm are refused), the key chosen
  by ``kid`` from Instructure's JWKS (``jwks.py``), ``exp``/``nbf``/``iat`` with
  ``ingest.leeway_s``, ``iss`` against ``ingest.issuers`` when set. What is written is the
  verified claims **without the registered ones** (iss, iat, exp, nbf, jti, aud, sub): the event
  itself, as JSON, so the same event delivered signed, unsigned or through SQS gets the same raw
  key and the same dedupe key downstream.
- **Unsigned**: refused (401), except on ``/events/<ingest.unsigned_token>`` (compared in
  constant time), where a JSON body is written as it came. Weaker than signing: anyone who learns
  the URL can write events.

``POST /caliper``: ``Authorization: Bearer <token>`` (``caliper.py``), ``Content-Type:
application/json`` (else 415), a Caliper 1.1 envelope (400, 422), written as it came.

Answers: ``200`` (empty) only once the broker acknowledged the record; ``503`` + ``Retry-After``
when it did not within ``ingest.ack_timeout_ms`` or ``ingest.max_in_flight`` requests are already
waiting; ``401`` authentication, ``413`` over ``limits.max_message_bytes``, ``400`` neither JSON
nor a JWT. A refused request writes nothing. Logs name the reason, never a token or a body.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import msgspec
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bridge import metrics
from bridge.config import Config, read_secret
from bridge.http import Probes, probe_routes
from bridge.http_guard import RateLimitedLog
from bridge.ingest.caliper import EnvelopeError, bearer_matches, check_envelope, load_tokens
from bridge.ingest.jwks import JwksCache
from bridge.ingest.writer import RawWriter, TooLarge, Unavailable

log = logging.getLogger("bridge.ingest.https")
_rejections = RateLimitedLog(log)

#: The JWT's registered claims (RFC 7519 section 4.1): not part of the event.
REGISTERED_CLAIMS = frozenset({"iss", "iat", "exp", "nbf", "jti", "aud", "sub"})
_COMPACT_JWS = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_JSON = msgspec.json.Decoder()
_ENCODE = msgspec.json.Encoder().encode
RETRY_AFTER_S = "5"


class Refused(Exception):
    """The request is answered with ``status`` and nothing is written; ``reason`` goes to the log."""

    def __init__(self, status: int, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.outcome = outcome


def _unauthorized(reason: str) -> Refused:
    return Refused(401, "unauthorized", reason)


_BASE64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


class _PyJWS(jwt.PyJWS):
    """PyJWT's JWS with its base64url segment check done in C instead of a Python generator.

    PyJWT (2.10+) checks every character of every segment with ``any(c not in ALPHABET for c in
    segment)``: about 1.3 ms of CPU for a 2.7 kB Canvas token, twice per request (header, then
    decode). Measured with cProfile under load: 34 % of the ingest process's CPU, which capped it
    below 1,000 requests/s. This is the same function with that one check done by
    ``bytes.translate``; ``tests/unit/test_ingest_verify.py`` pins that it accepts and refuses
    exactly what PyJWT's does.
    """

    @staticmethod
    def _decode_base64url_segment(segment: bytes, name: str) -> bytes:
        padding = 0
        stripped = segment
        while stripped.endswith(b"="):
            stripped = stripped[:-1]
            padding += 1
            if padding > 2:
                raise jwt.DecodeError(f"Invalid {name} padding")
        if padding and len(segment) % 4 != 0:
            raise jwt.DecodeError(f"Invalid {name} padding")
        if len(stripped) % 4 == 1 or stripped.translate(None, _BASE64URL):
            raise jwt.DecodeError(f"Invalid {name} padding")
        try:
            decoded = base64.urlsafe_b64decode(stripped + b"=" * (-len(stripped) % 4))
        except (TypeError, binascii.Error) as err:
            raise jwt.DecodeError(f"Invalid {name} padding") from err
        if base64.urlsafe_b64encode(decoded).rstrip(b"=") != stripped:
            raise jwt.DecodeError(f"Invalid {name} padding")
        return decoded


def _pyjwt() -> jwt.PyJWT:
    """PyJWT with ``_PyJWS``; stock PyJWT (slower, same answers) if its internals ever move."""
    instance = jwt.PyJWT()
    if not hasattr(jwt.PyJWS, "_decode_base64url_segment") or not hasattr(instance, "_jws"):
        log.warning("PyJWT %s lacks the internals the fast base64url check replaces; using it as it is",
                    jwt.__version__)
        return instance
    instance._jws = _PyJWS(options=instance._get_sig_options())
    return instance


class Verifier:
    """Verifies a Canvas-signed delivery and returns the event (module docstring)."""

    def __init__(self, jwks: JwksCache | None, issuers: list[str], leeway_s: float) -> None:
        self._jwt = _pyjwt()
        self._jwks = jwks
        self._issuers = issuers or None
        self._leeway = leeway_s
        self._options: Any = {"verify_aud": False, "require": ["iss"] if issuers else []}

    async def event(self, token: str) -> tuple[bytes, str]:
        """(the event as JSON bytes, the kid); ``Refused`` (401) when anything fails."""
        try:
            # The header segment alone names the key (PyJWT's get_unverified_header would decode
            # all three segments, and decode() does it again): the full token is decoded and its
            # header validated by PyJWT below, once the key is known.
            header = _JSON.decode(_PyJWS._decode_base64url_segment(token.partition(".")[0].encode(), "header"))
        except (jwt.InvalidTokenError, msgspec.DecodeError):
            raise _unauthorized("malformed JWT") from None
        if not isinstance(header, dict):
            raise _unauthorized("malformed JWT")
        alg = header.get("alg")
        if alg != "RS256":
            raise _unauthorized(f"algorithm {str(alg)[:16]!r} refused (RS256 only)")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _unauthorized("no kid in the JWT header")
        if self._jwks is None:
            raise _unauthorized("signed deliveries are refused: ingest.jwks_url is empty")
        key = await self._jwks.key(kid)
        if key is None:
            raise _unauthorized(f"unknown key {kid[:64]!r}")
        try:
            claims = self._jwt.decode(token, key.key, algorithms=["RS256"], leeway=self._leeway,
                                issuer=self._issuers, options=self._options)
        except jwt.ExpiredSignatureError:
            raise _unauthorized("expired token") from None
        except jwt.ImmatureSignatureError:
            raise _unauthorized("token not valid yet (nbf/iat)") from None
        except (jwt.InvalidIssuerError, jwt.MissingRequiredClaimError):
            raise _unauthorized("issuer not allowed (ingest.issuers)") from None
        except jwt.InvalidSignatureError:
            raise _unauthorized("bad signature") from None
        except jwt.InvalidTokenError as exc:
            raise _unauthorized(f"invalid token ({type(exc).__name__})") from None
        event = {k: v for k, v in claims.items() if k not in REGISTERED_CLAIMS}
        return _ENCODE(event), kid


def parse_delivery(body: bytes) -> tuple[str, bytes]:
    """("jwt", token) or ("json", body); ``Refused`` (400) when it is neither."""
    text = body.strip()
    if text[:1] == b'"':  # the token as a JSON string
        try:
            token = _JSON.decode(text)
        except msgspec.DecodeError:
            token = None
        if isinstance(token, str) and _COMPACT_JWS.fullmatch(token.strip().encode()):
            return "jwt", token.strip().encode()
        raise Refused(400, "bad_request", "a JSON string that is not a JWT")
    if _COMPACT_JWS.fullmatch(text):
        return "jwt", text
    try:
        _JSON.decode(text)
    except msgspec.DecodeError:
        raise Refused(400, "bad_request", "neither JSON nor a JWT") from None
    return "json", body


@dataclass
class IngestState:
    """What the routes share with the service: the in-flight count and the drain flag."""

    max_in_flight: int
    in_flight: int = 0
    draining: bool = False


class IngestRoutes:
    """The ingest endpoints over one writer (``https`` and ``caliper`` sources)."""

    def __init__(self, config: Config, writer: RawWriter, verifier: Verifier, state: IngestState) -> None:
        ingest = config.ingest
        self._writer = writer
        self._verifier = verifier
        self._state = state
        self._ack_timeout_s = ingest.ack_timeout_ms / 1000
        self._max_value = config.limits.max_message_bytes
        # A JWT is the claims in base64 (4/3) plus its header and signature.
        self._max_body = self._max_value * 4 // 3 + 16384
        token = read_secret(ingest.unsigned_token, ingest.unsigned_token_file)
        self._unsigned = token.encode() if token else None
        self._caliper_tokens = load_tokens(ingest.caliper_tokens_file) if ingest.caliper_tokens_file else ()
        # The labelled series, looked up once (a .labels() call per request costs a few µs).
        self._counters: dict[tuple[str, str], Any] = {}
        self._latency = {e: metrics.INGEST_REQUEST_SECONDS.labels(e) for e in ("events", "caliper")}

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/events", self.events, methods=["POST"]),
            Route("/events/{token}", self.events, methods=["POST"]),
            Route("/caliper", self.caliper, methods=["POST"]),
        ]

    # -- the endpoints ----------------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        return await self._answer("events", request, self._events)

    async def caliper(self, request: Request) -> Response:
        return await self._answer("caliper", request, self._caliper)

    async def _events(self, request: Request, received_ms: int) -> None:
        path_token = request.path_params.get("token")
        if path_token is not None and not self._unsigned_allowed(path_token):
            raise _unauthorized("wrong URL token")
        body = await self._body(request, self._max_body)
        kind, payload = parse_delivery(body)
        if kind == "json":
            if path_token is None:
                raise _unauthorized("unsigned delivery refused (signing is required on /events)")
            await self._write(payload, signed=False, key_id=None, received_ms=received_ms, source="https")
            return
        value, kid = await self._verifier.event(payload.decode("ascii"))
        await self._write(value, signed=True, key_id=kid, received_ms=received_ms, source="https")

    async def _caliper(self, request: Request, received_ms: int) -> None:
        if not bearer_matches(request.headers.get("authorization"), self._caliper_tokens):
            raise _unauthorized("missing or unknown bearer token" if self._caliper_tokens
                                else "no caliper token configured (ingest.caliper_tokens_file)")
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json":
            raise Refused(415, "unsupported_media_type", "Content-Type is not application/json")
        body = await self._body(request, self._max_value)
        try:
            check_envelope(body)
        except EnvelopeError as exc:
            if exc.status == 422:
                raise Refused(422, "unsupported_version", str(exc)) from None
            raise Refused(400, "bad_request", str(exc)) from None
        await self._write(body, signed=False, key_id=None, received_ms=received_ms, source="caliper")

    # -- shared steps -------------------------------------------------------------------------------

    def _unsigned_allowed(self, token: str) -> bool:
        if self._unsigned is None:
            hmac.compare_digest(token.encode(), token.encode())  # same work either way
            return False
        return hmac.compare_digest(token.encode("utf-8", "replace"), self._unsigned)

    async def _body(self, request: Request, limit: int) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise Refused(413, "too_large", f"Content-Length {declared} over the limit of {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Refused(413, "too_large", f"body over the limit of {limit} bytes")
                chunks.append(chunk)
        except ClientDisconnect:
            raise Refused(400, "bad_request", "the client went away before the body was whole") from None
        return b"".join(chunks)

    async def _write(self, value: bytes, *, signed: bool, key_id: str | None, received_ms: int, source: str) -> None:
        state = self._state
        if state.in_flight >= state.max_in_flight:
            raise Refused(503, "unavailable", f"{state.in_flight} requests already wait for Kafka "
                                              "(ingest.max_in_flight)")
        state.in_flight += 1
        metrics.INGEST_IN_FLIGHT.set(state.in_flight)
        try:
            await self._writer.write(value, timeout_s=self._ack_timeout_s, signed=signed, key_id=key_id,
                                     received_ms=received_ms, source=source)
        except TooLarge as exc:
            raise Refused(413, "too_large", str(exc)) from None
        except Unavailable as exc:
            raise Refused(503, "unavailable", f"Kafka did not acknowledge: {exc}") from None
        finally:
            state.in_flight -= 1
            metrics.INGEST_IN_FLIGHT.set(state.in_flight)

    async def _answer(self, endpoint: str, request: Request,
                      handle: Callable[[Request, int], Any]) -> Response:
        started = time.perf_counter()
        received_ms = time.time_ns() // 1_000_000
        try:
            await handle(request, received_ms)
            outcome = "accepted"
            response = Response(status_code=200)
        except Refused as refused:
            status, outcome = refused.status, refused.outcome
            headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
            if status == 401 and endpoint == "caliper":
                headers = {"WWW-Authenticate": "Bearer"}
            response = Response(f"{refused}\n".encode() if status != 401 else b"unauthorized\n",
                                status_code=status, headers=headers, media_type="text/plain")
            client = request.client.host if request.client else "?"
            _rejections.warning(f"{endpoint}:{outcome}", "%s %s from %s: %d %s", request.method,
                                f"/{endpoint}", client, status, refused)
        counter = self._counters.get((endpoint, outcome))
        if counter is None:
            counter = self._counters[endpoint, outcome] = metrics.INGEST_REQUESTS.labels(endpoint, outcome)
        counter.inc()
        self._latency[endpoint].observe(time.perf_counter() - started)
        return response


def build_app(config: Config, writer: RawWriter, verifier: Verifier, state: IngestState,
              probes: Probes | None = None) -> Starlette:
    """The ingest app; with ``probes``, also ``/healthz`` and ``/readyz`` (for a load balancer's health check).

    ``/metrics`` stays on the probes port (``[http]``), off the port Canvas reaches.
    """
    routes = IngestRoutes(config, writer, verifier, state).routes()
    if probes is not None:
        routes += probe_routes(probes, with_metrics=False)
    return Starlette(routes=routes)
