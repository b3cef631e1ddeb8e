"""The Caliper Sensor API side of ingest: bearer tokens and the envelope check. Pure: no I/O but the token file.

Learning tools send Caliper 1.1 envelopes (``{sensor, sendTime, dataVersion, data: [...]}``)
with ``Authorization: Bearer <token>``. The tokens come from ``ingest.caliper_tokens_file``: one
per line, blank lines and ``#`` comments ignored, each at least 16 characters. A request's token
is compared with every configured one in constant time.

The envelope is only checked for its shape (``400`` otherwise) and its ``dataVersion`` (``422``
unless Caliper 1.1); the events themselves are the bridge's business, which dead-letters what it
cannot decode. What is written is the body as it came.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

import msgspec

CALIPER_1_1 = "http://purl.imsglobal.org/ctx/caliper/v1p1"
MIN_TOKEN_LENGTH = 16


def load_tokens(path: str) -> tuple[bytes, ...]:
    """The bearer tokens of a tokens file; ``ValueError`` naming the line when one is unusable."""
    tokens: list[bytes] = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        token = line.strip()
        if not token or token.startswith("#"):
            continue
        if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
            raise ValueError(f"line {number} of {path}: a token needs at least {MIN_TOKEN_LENGTH} characters "
                             "and no spaces")
        tokens.append(token.encode())
    if not tokens:
        raise ValueError(f"{path} holds no token")
    return tuple(tokens)


def bearer_matches(authorization: str | None, tokens: tuple[bytes, ...]) -> bool:
    """``Authorization: Bearer <token>`` names one of ``tokens`` (constant time per token)."""
    if not authorization or not tokens:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    candidate = given.strip().encode("utf-8", "replace")
    found = False
    for token in tokens:  # every token is compared: the time does not say which one nearly matched
        found |= hmac.compare_digest(candidate, token)
    return found


class _Envelope(msgspec.Struct):
    sensor: str
    sendTime: str
    dataVersion: str
    data: list[dict[str, Any]]


_ENVELOPE = msgspec.json.Decoder(_Envelope)


class EnvelopeError(Exception):
    """The body is not a Caliper envelope (``status`` 400) or not Caliper 1.1 (422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_envelope(body: bytes) -> int:
    """The number of events in a Caliper 1.1 envelope; ``EnvelopeError`` otherwise."""
    try:
        envelope = _ENVELOPE.decode(body)
    except msgspec.ValidationError as exc:
        raise EnvelopeError(400, f"not a Caliper envelope: {exc}") from None
    except msgspec.DecodeError:
        raise EnvelopeError(400, "not JSON") from None
    if envelope.dataVersion != CALIPER_1_1:
        raise EnvelopeError(422, f"unsupported dataVersion (this endpoint takes {CALIPER_1_1})")
    if not envelope.data:
        raise EnvelopeError(400, "the envelope's data holds no event")
    return len(envelope.data)
