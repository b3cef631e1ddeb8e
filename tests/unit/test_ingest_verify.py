"""Signed deliveries, without a broker: what is verified, what is written, and the faster segment check."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import anyio
import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jwt.api_jws import PyJWS

from bridge.ingest.caliper import EnvelopeError, bearer_matches, check_envelope, load_tokens
from bridge.ingest.https import REGISTERED_CLAIMS, Refused, Verifier, _PyJWS, parse_delivery
from bridge.ingest.jwks import JwksCache, JwksError, parse_jwks
from tests.ingest_helpers import SigningKey

KEY = SigningKey("unit")


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        return ("ok", fn(*args))
    except jwt.DecodeError as exc:
        return ("error", str(exc))


@given(st.binary(max_size=64) | st.text(alphabet="AZaz09-_=!+/ \n", max_size=64).map(str.encode))
def test_the_faster_segment_check_accepts_and_refuses_exactly_what_pyjwt_does(segment: bytes) -> None:
    assert _outcome(_PyJWS._decode_base64url_segment, segment, "payload") == _outcome(
        PyJWS._decode_base64url_segment, segment, "payload")


def _cache(*keys: SigningKey, fetches: list[int] | None = None) -> JwksCache:
    body = json.dumps({"keys": [k.jwk() for k in keys]}).encode()

    def fetch(url: str, timeout: float) -> bytes:
        if fetches is not None:
            fetches.append(1)
        return body

    return JwksCache("http://jwks.test/", refresh_s=3600, min_refetch_s=60, timeout_s=1, fetch=fetch)


def _verify(verifier: Verifier, token: str) -> tuple[bytes, str]:
    async def go() -> tuple[bytes, str]:
        return await verifier.event(token)
    return anyio.run(go)


def test_the_written_event_is_the_claims_without_the_registered_ones() -> None:
    cache = _cache(KEY)
    anyio.run(cache.refresh, "startup")
    event = {"metadata": {"user_id": "21070000000000001", "event_name": "logged_in"}, "body": {"redirect_url": None}}
    now = int(time.time())
    claims = {**event, "iss": "canvas", "iat": now, "exp": now + 60, "nbf": now, "jti": "j", "aud": "x", "sub": "s"}
    value, kid = _verify(Verifier(cache, ["canvas"], 30), KEY.sign(claims))
    assert json.loads(value) == event and kid == "unit"
    assert {"iss", "iat", "exp", "nbf", "jti", "aud", "sub"} == REGISTERED_CLAIMS


@pytest.mark.parametrize("alg", ["none", "HS256", "HS512", "RS512", "PS256", "ES256"])
def test_every_algorithm_but_rs256_is_refused_before_any_key_lookup(alg: str) -> None:
    fetches: list[int] = []
    verifier = Verifier(_cache(KEY, fetches=fetches), [], 30)
    header = base64.urlsafe_b64encode(json.dumps({"alg": alg, "kid": "unit"}).encode()).rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(b'{"metadata":{}}').rstrip(b"=").decode()
    with pytest.raises(Refused) as refused:
        _verify(verifier, f"{header}.{payload}.c2ln")
    assert refused.value.status == 401 and not fetches


def test_an_unknown_kid_refetches_once_per_interval() -> None:
    fetches: list[int] = []
    cache = _cache(KEY, fetches=fetches)
    anyio.run(cache.refresh, "startup")
    stranger = SigningKey("stranger")
    verifier = Verifier(cache, [], 30)
    for _ in range(5):
        with pytest.raises(Refused):
            _verify(verifier, stranger.sign({"a": 1}))
    assert len(fetches) == 2  # startup + one refetch


@pytest.mark.parametrize(("body", "kind"), [
    (b"eyJh.eyJi.c2ln", "jwt"),
    (b'  "eyJh.eyJi.c2ln"\n', "jwt"),
    (b'{"metadata": {}}', "json"),
    (b"[1, 2]", "json"),
])
def test_a_delivery_is_a_jwt_bare_or_quoted_or_json(body: bytes, kind: str) -> None:
    assert parse_delivery(body)[0] == kind


@pytest.mark.parametrize("body", [b"", b"hello", b'"not a token"', b"{nope", b"a.b"])
def test_anything_else_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(Refused) as refused:
        parse_delivery(body)
    assert refused.value.status == 400


def test_jwks_documents_keep_only_rs256_signing_keys() -> None:
    enc = dict(KEY.jwk(), kid="enc", use="enc")
    other = dict(KEY.jwk(), kid="ps", alg="PS256")
    assert set(parse_jwks(json.dumps({"keys": [KEY.jwk(), enc, other, {"kty": "oct", "kid": "h", "k": "c2Vj"}]})
                          .encode())) == {"unit"}
    for bad in (b"nope", b"{}", b'{"keys": []}'):
        with pytest.raises(JwksError):
            parse_jwks(bad)


def test_caliper_tokens_and_envelopes(tmp_path: Any) -> None:
    f = tmp_path / "tokens"
    f.write_text("# comment\n\n" + "a" * 20 + "\n" + "b" * 16 + "\n")
    tokens = load_tokens(str(f))
    assert bearer_matches("Bearer " + "b" * 16, tokens) and bearer_matches("bearer " + "a" * 20, tokens)
    assert not bearer_matches("Bearer " + "c" * 16, tokens) and not bearer_matches("Basic " + "a" * 20, tokens)
    assert not bearer_matches(None, tokens)
    f.write_text("short\n")
    with pytest.raises(ValueError, match="line 1"):
        load_tokens(str(f))
    ok = {"sensor": "s", "sendTime": "t", "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p1",
          "data": [{"id": "x"}]}
    assert check_envelope(json.dumps(ok).encode()) == 1
    for body, status in ((b"[]", 400), (json.dumps({**ok, "data": []}).encode(), 400),
                         (json.dumps({**ok, "dataVersion": "v1p0"}).encode(), 422), (b"{", 400)):
        with pytest.raises(EnvelopeError) as err:
            check_envelope(body)
        assert err.value.status == status
