"""The raw record key: a redelivery lands on the partition of its first copy."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from bridge.ingest.raw import H_KEY_ID, H_RECEIVED_MS, H_SIGNED, H_SOURCE, raw_headers, raw_key
from tests.kafka_helpers import catalog_lines

_json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
_json = st.recursive(_json_scalars, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=12)


def test_canvas_event_is_keyed_by_its_user() -> None:
    event = {"metadata": {"user_id": "21070000000000001", "context_id": "5"}, "body": {}}
    assert raw_key(json.dumps(event).encode()) == b"user:21070000000000001"


def test_an_integer_id_and_its_string_give_the_same_key() -> None:
    as_int = json.dumps({"metadata": {"user_id": 123}, "body": {}}).encode()
    as_str = json.dumps({"metadata": {"user_id": "123"}, "body": {}}).encode()
    assert raw_key(as_int) == raw_key(as_str) == b"user:123"


def test_event_without_user_is_keyed_by_its_context() -> None:
    event = {"metadata": {"user_id": None, "context_type": "Course", "context_id": 77}, "body": {}}
    assert raw_key(json.dumps(event).encode()) == b"Course:77"


def test_caliper_envelope_is_keyed_by_its_actor_else_its_event_id() -> None:
    with_actor = {"data": [{"id": "urn:uuid:1", "actor": {"id": "urn:instructure:canvas:user:9"}}]}
    without = {"data": [{"id": "urn:uuid:1"}]}
    assert raw_key(json.dumps(with_actor).encode()) == b"actor:urn:instructure:canvas:user:9"
    assert raw_key(json.dumps(without).encode()) == b"event:urn:uuid:1"


def test_every_catalog_example_reencoded_keeps_its_key() -> None:
    """A signed delivery lands re-encoded (its JWT claims); it must still meet its unsigned copy."""
    lines = catalog_lines("canvas-examples.jsonl") + catalog_lines("caliper-examples.jsonl")
    for line in lines:
        reencoded = json.dumps(json.loads(line), indent=1, sort_keys=True).encode()
        assert raw_key(reencoded) == raw_key(line), line[:120]
    by_id = [line for line in lines if not raw_key(line).startswith(b"sha256:")]
    assert len(by_id) > len(lines) * 3 // 4  # most events name a user, a context or an actor


@given(_json)
def test_key_ignores_key_order_and_whitespace(value: object) -> None:
    compact = json.dumps(value, separators=(",", ":")).encode()
    spaced = json.dumps(value, indent=2, sort_keys=True).encode()
    assert raw_key(compact) == raw_key(spaced)


@given(st.binary(max_size=64))
def test_key_of_any_bytes_is_deterministic_and_never_raises(value: bytes) -> None:
    key = raw_key(value)
    assert key == raw_key(value)
    assert 0 < len(key) < 300


def test_headers_name_source_signature_key_and_time() -> None:
    signed = dict(raw_headers("https", signed=True, key_id="kid-1", received_ms=1700000000000))
    assert signed == {H_SOURCE: b"https", H_SIGNED: b"true", H_KEY_ID: b"kid-1", H_RECEIVED_MS: b"1700000000000"}
    unsigned = dict(raw_headers("sqs", signed=False, key_id=None, received_ms=1))
    assert H_KEY_ID not in unsigned and unsigned[H_SIGNED] == b"false"
