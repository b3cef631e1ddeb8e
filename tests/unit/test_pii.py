"""The PII policy (bridge/pii.py) and the FERPA preset (config/ferpa.toml), on the catalog examples."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bridge.config import load_config
from bridge.core import Core, Publish, Source
from bridge.pii import HASHED_VALUE, PiiPolicy, PiiSettings, RuleKey, parse_rule_key

REPO = Path(__file__).resolve().parents[2]
CATALOG = REPO / "tests" / "fixtures" / "catalog"
FERPA = REPO / "config" / "ferpa.toml"
SECRET = "test-secret-0123456789abcdef"
OTHER_SECRET = "another-secret-0123456789abcdef"


def mac(value: bytes, secret: str = SECRET) -> str:
    return "hmac-sha256:" + hmac.new(secret.encode(), value, hashlib.sha256).hexdigest()


def policy(rules: dict[str, Any], secret: str = SECRET) -> PiiPolicy:
    return PiiPolicy.from_rules(rules, secret)


# ---------------------------------------------------------------------------------------------
# Rule keys
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("client_ip", RuleKey(None, ("client_ip",), False)),
        ("metadata.user_login", RuleKey(None, ("metadata", "user_login"), True)),
        (
            r"event.actor.extensions.com\.instructure\.canvas.user_login",
            RuleKey(None, ("event", "actor", "extensions", "com.instructure.canvas", "user_login"), True),
        ),
        ("user_created:body.name", RuleKey("user_created", ("body", "name"), True)),
        ("user_created:name", RuleKey("user_created", ("name",), False)),
        (
            "outcomes.retry_outcome_alignment_clone:body.x",
            RuleKey("outcomes.retry_outcome_alignment_clone", ("body", "x"), True),
        ),
        ("$.sensor", RuleKey(None, ("sensor",), True)),
        (r"\$.sensor", RuleKey(None, ("$", "sensor"), True)),
        (r"urn\:x", RuleKey(None, ("urn:x",), False)),
        (r"a\\b", RuleKey(None, ("a\\b",), False)),
    ],
)
def test_rule_keys_parse(key: str, expected: RuleKey) -> None:
    assert parse_rule_key(key) == expected


@pytest.mark.parametrize("key", ["", "a..b", ".a", "a.", ":a", "a:b:c", "x\\", "$."])
def test_malformed_rule_keys_are_refused_naming_the_key(key: str) -> None:
    with pytest.raises(ValueError, match=r"pii\.rules\["):
        policy({key: "drop"})


# ---------------------------------------------------------------------------------------------
# Actions and precedence
# ---------------------------------------------------------------------------------------------


def test_a_name_rule_applies_at_any_depth_and_inside_lists() -> None:
    tree = {
        "client_ip": "1.1.1.1",
        "metadata": {"client_ip": "2.2.2.2", "keep_me": 1},
        "body": {"items": [{"client_ip": "3.3.3.3", "x": 1}, [{"client_ip": "4.4.4.4"}], "client_ip"]},
    }
    assert policy({"client_ip": "drop"}).apply(tree) == {
        "metadata": {"keep_me": 1},
        "body": {"items": [{"x": 1}, [{}], "client_ip"]},  # a string equal to a rule's name is a value
    }


def test_a_path_rule_applies_only_at_its_path_and_lists_are_transparent() -> None:
    tree = {
        "metadata": {"user_login": "a", "other": {"user_login": "b"}},
        "body": {"user_login": "c", "entries": [{"login": "d"}, {"login": "e", "z": 0}]},
    }
    out = policy({"metadata.user_login": "drop", "body.entries.login": "hash"}).apply(tree)
    assert out == {
        "metadata": {"other": {"user_login": "b"}},
        "body": {"user_login": "c", "entries": [{"login": mac(b"d")}, {"login": mac(b"e"), "z": 0}]},
    }


def test_escaped_dots_address_keys_that_contain_dots() -> None:
    tree = {"event": {"actor": {"extensions": {"com.instructure.canvas": {"user_login": "x", "entity_id": "1"}}}}}
    out = policy({r"event.actor.extensions.com\.instructure\.canvas.user_login": "drop"}).apply(tree)
    assert out == {"event": {"actor": {"extensions": {"com.instructure.canvas": {"entity_id": "1"}}}}}
    # without the escape it is another path (com -> instructure -> canvas) and matches nothing
    p = policy({"event.actor.extensions.com.instructure.canvas.user_login": "drop"})
    assert p.apply(tree) == tree


def test_a_top_level_path_with_the_root_marker() -> None:
    tree = {"sensor": "s", "event": {"sensor": "t"}}
    assert policy({"$.sensor": "drop"}).apply(tree) == {"event": {"sensor": "t"}}
    assert policy({"sensor": "drop"}).apply(tree) == {"event": {}}


def test_a_path_rule_wins_over_a_name_rule() -> None:
    tree = {"body": {"name": "Course 101", "user": {"name": "Ada"}}, "metadata": {"name": "n"}}
    p = policy({"name": "drop", "body.name": "keep"})
    assert p.apply(tree) == {"body": {"name": "Course 101", "user": {}}, "metadata": {}}
    p = policy({"name": "keep", "body.user.name": "hash"})
    assert p.apply(tree) == {"body": {"name": "Course 101", "user": {"name": mac(b"Ada")}}, "metadata": {"name": "n"}}


def test_event_scoped_rules_apply_to_their_event_only_and_win_at_the_same_level() -> None:
    user = {"event_name": "user_created", "body": {"name": "Ada Lovelace", "uuid": "u1"}}
    course = {"event_name": "course_created", "body": {"name": "Math", "uuid": "c1"}}
    rules = {"user_created:body.name": "drop", "user_created:body.uuid": "hash", "uuid": "keep"}
    p = policy(rules)
    assert p.apply(user) == {"event_name": "user_created", "body": {"uuid": mac(b"u1")}}
    assert p.apply(course) is course  # nothing applies to course_created: not even copied
    # scoped path > path > scoped name > name
    p = policy({"x": "drop", "user_created:x": "keep", "body.x": "hash", "user_created:body.x": "keep"})
    tree = {"event_name": "user_created", "body": {"x": 1}, "other": {"x": 2}}
    assert p.apply(tree) == {"event_name": "user_created", "body": {"x": 1}, "other": {"x": 2}}
    tree = {"event_name": "grade_change", "body": {"x": 1}, "other": {"x": 2}}
    assert p.apply(tree) == {"event_name": "grade_change", "body": {"x": mac(b"1")}, "other": {}}


def test_hash_is_hmac_sha256_of_the_canonical_text() -> None:
    p = policy({"v": "hash"})

    def hashed(value: Any) -> Any:
        return p.apply({"v": value})["v"]

    assert hashed("oxana@example.com") == mac(b"oxana@example.com")
    assert hashed("é") == mac("é".encode())
    assert hashed(12) == mac(b"12")
    assert hashed(1.5) == mac(b"1.5")
    assert hashed(True) == mac(b"true")
    assert hashed({"b": 1, "a": [1, "x"]}) == mac(b'{"a":[1,"x"],"b":1}')  # compact, keys sorted
    assert hashed({"a": [1, "x"], "b": 1}) == hashed({"b": 1, "a": [1, "x"]})
    assert hashed(None) is None
    assert HASHED_VALUE.match(hashed("x"))


def test_a_dropped_null_is_dropped_and_a_hashed_null_stays_null() -> None:
    p = policy({"a": "drop", "b": "hash"})
    assert p.apply({"a": None, "b": None, "c": None}) == {"b": None, "c": None}


def test_the_same_value_and_secret_give_the_same_hash_and_another_secret_another() -> None:
    tree = {"metadata": {"user_login": "oxana@example.com"}, "body": {"user_login": "oxana@example.com"}}
    one = policy({"user_login": "hash"}).apply(tree)
    again = policy({"user_login": "hash"}).apply(copy.deepcopy(tree))
    other = policy({"user_login": "hash"}, OTHER_SECRET).apply(tree)
    assert one == again
    assert one["metadata"]["user_login"] == one["body"]["user_login"]  # joinable across fields
    assert other["metadata"]["user_login"] != one["metadata"]["user_login"]
    assert other["metadata"]["user_login"] == mac(b"oxana@example.com", OTHER_SECRET)


def test_a_hashed_or_dropped_object_is_not_looked_into() -> None:
    p = policy({"user": "hash", "email": "drop"})
    out = p.apply({"body": {"user": {"email": "e@x", "id": "1"}}})
    assert out == {"body": {"user": mac(b'{"email":"e@x","id":"1"}')}}


def test_apply_does_not_change_its_input() -> None:
    tree = {"metadata": {"client_ip": "1.2.3.4", "user_login": "u"}, "body": {"l": [{"client_ip": "x"}]}}
    before = copy.deepcopy(tree)
    policy({"client_ip": "drop", "user_login": "hash"}).apply(tree)
    assert tree == before


def test_no_rules_or_keep_rules_only_make_an_inactive_policy() -> None:
    assert policy({}).active is False
    assert policy({"client_ip": "keep", "body.x": "keep", "e:y": "keep"}).active is False
    tree = {"client_ip": "1.2.3.4"}
    assert PiiPolicy(PiiSettings()).apply(tree) is tree
    assert policy({"e:y": "drop"}, "").active is True


# ---------------------------------------------------------------------------------------------
# The secret
# ---------------------------------------------------------------------------------------------


def test_hash_rules_without_a_secret_are_refused_naming_pii_secret() -> None:
    with pytest.raises(ValueError, match=r"pii\.secret"):
        PiiPolicy(PiiSettings(rules={"user_login": "hash"}))
    with pytest.raises(ValueError, match=r"pii\.secret is too short"):
        PiiPolicy(PiiSettings(secret="short", rules={"user_login": "hash"}))
    # drop and keep rules need no secret
    assert PiiPolicy(PiiSettings(rules={"client_ip": "drop"})).active


def test_the_secret_from_a_file(tmp_path: Path) -> None:
    f = tmp_path / "pii-secret"
    f.write_text(SECRET + "\n")  # a trailing newline, as `echo` or a k8s secret leaves it, is not part of it
    p = PiiPolicy(PiiSettings(secret_file=str(f), rules={"v": "hash"}))
    assert p.apply({"v": "x"}) == {"v": mac(b"x")}
    with pytest.raises(ValueError, match=r"pii\.secret_file"):
        PiiPolicy(PiiSettings(secret_file=str(tmp_path / "missing"), rules={"v": "hash"}))
    with pytest.raises(ValueError, match=r"only one of pii\.secret and pii\.secret_file"):
        PiiPolicy(PiiSettings(secret=SECRET, secret_file=str(f), rules={"v": "hash"}))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ValueError, match=r"pii\.secret is required"):
        PiiPolicy(PiiSettings(secret_file=str(empty), rules={"v": "hash"}))


def test_settings_are_validated_like_the_other_sections() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert({"secrets": "x"}, PiiSettings)
    with pytest.raises(msgspec.ValidationError, match="Invalid enum value 'redact'"):
        msgspec.convert({"rules": {"client_ip": "redact"}}, PiiSettings)
    # An unquoted dotted TOML key becomes a table: refused, not silently ignored.
    data = tomllib.loads("[pii.rules]\nmetadata.user_login = 'hash'\n")
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(data["pii"], PiiSettings)


# ---------------------------------------------------------------------------------------------
# The FERPA preset on every published value of the catalog examples
# ---------------------------------------------------------------------------------------------


def ferpa_settings(secret: str = SECRET) -> PiiSettings:
    with open(FERPA, "rb") as fh:
        data = tomllib.load(fh)
    settings = msgspec.convert(data["pii"], PiiSettings)
    return msgspec.structs.replace(settings, secret=secret)


@cache
def published_values() -> tuple[bytes, ...]:
    cfg = load_config(env={})
    core = Core(cfg.topics, cfg.decode, cfg.limits)
    out: list[bytes] = []
    for name in ("canvas-examples.jsonl", "caliper-examples.jsonl"):
        for offset, line in enumerate((CATALOG / name).read_bytes().splitlines()):
            if line.strip():
                out.extend(o.value for o in core.process(line, Source("raw", 0, offset), 0) if isinstance(o, Publish))
    return tuple(out)


def locations(tree: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every (path of keys from the root, value) of a JSON tree; lists are transparent."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield (*path, key), value
            yield from locations(value, (*path, key))
    elif isinstance(tree, list):
        for item in tree:
            yield from locations(item, path)


def expected_action(rules: dict[RuleKey, str], event: str, path: tuple[str, ...]) -> str | None:
    """The preset's action at a location, by the documented precedence (independent of bridge.pii)."""
    for rule in (RuleKey(event, path, True), RuleKey(None, path, True),
                 RuleKey(event, path[-1:], False), RuleKey(None, path[-1:], False)):
        if rule in rules:
            return rules[rule]
    return None


def ferpa_rules() -> dict[RuleKey, str]:
    return {parse_rule_key(k): v for k, v in ferpa_settings().rules.items()}


def test_the_ferpa_preset_loads_and_needs_a_secret() -> None:
    settings = ferpa_settings(secret="")
    assert settings.secret_file == ""
    assert "hash" in settings.rules.values() and "drop" in settings.rules.values()
    with pytest.raises(ValueError, match=r"pii\.secret"):
        PiiPolicy(settings)
    assert PiiPolicy(ferpa_settings()).active


def test_the_ferpa_preset_on_every_published_catalog_value() -> None:
    values = published_values()
    assert len(values) > 150
    policy = PiiPolicy(ferpa_settings())
    rules = ferpa_rules()
    dropped_names = {r.path[0] for r, a in rules.items() if a == "drop" and not r.is_path and r.event is None}
    assert {"client_ip", "user_agent", "referrer", "request_url", "email", "user_name"} <= dropped_names
    used: set[RuleKey] = set()
    hashed = dropped = 0
    for raw in values:
        original = msgspec.json.decode(raw)
        event = original["event_name"]
        redacted = policy.apply(original)
        text = json.dumps(redacted)
        # The envelope of the record is untouched.
        for key in ("event_name", "event_time", "event_time_ms", "dedupe_key", "format"):
            assert redacted[key] == original[key]
        for path, value in locations(redacted):
            assert path[-1] not in dropped_names, f"{event}: {'.'.join(path)} should have been dropped"
            action = expected_action(rules, event, path)
            assert action != "drop", f"{event}: {'.'.join(path)} should have been dropped"
            if action == "hash":
                assert value is None or HASHED_VALUE.match(value), f"{event}: {'.'.join(path)} not hashed: {value!r}"
        for path, value in locations(original):
            action = expected_action(rules, event, path)
            if action is None:
                continue
            used.update(r for r in rules if r.path == (path if r.is_path else path[-1:])
                        and r.event in (None, event))
            if value is None or action == "keep":
                continue
            hashed += action == "hash"
            dropped += action == "drop"
            # Whatever was dropped or hashed does not leak anywhere else in the record.
            if isinstance(value, str) and len(value) >= 6:
                assert json.dumps(value)[1:-1] not in text, f"{event}: the value of {'.'.join(path)} leaks"
    assert hashed > 100 and dropped > 100
    # Every rule of the preset matches something in the catalog, but those kept for fields Canvas
    # may add (documented as such in config/ferpa.toml).
    unused = {k for k in ferpa_settings().rules if parse_rule_key(k) not in used}
    assert unused == {"login", "sortable_name", "event.federatedSession.id"}


def test_ferpa_hashes_join_across_fields_and_formats() -> None:
    policy = PiiPolicy(ferpa_settings())
    logins: dict[str, set[str]] = {}
    for raw in published_values():
        out = policy.apply(msgspec.json.decode(raw))
        if out["format"] == "canvas":
            login = (out["metadata"] or {}).get("user_login")
        else:
            ext = ((out["event"].get("actor") or {}).get("extensions") or {}).get("com.instructure.canvas") or {}
            login = ext.get("user_login")
        if login is not None:
            logins.setdefault(out["format"], set()).add(login)
    # The catalog's acting user is oxana@example.com in both formats: one hash for both.
    assert mac(b"oxana@example.com") in logins["canvas"] & logins["caliper"]


def test_the_ferpa_preset_keeps_what_analytics_need() -> None:
    policy = PiiPolicy(ferpa_settings())
    seen = set()
    for raw in published_values():
        original = msgspec.json.decode(raw)
        out = policy.apply(original)
        if original["event_name"] == "course_created" and original["format"] == "canvas":
            assert out["body"]["name"] == original["body"]["name"]  # a course's name is not a person's
            assert out["body"]["uuid"] == original["body"]["uuid"]
            seen.add("course")
        if original["event_name"] == "grade_change" and original["format"] == "canvas":
            for key in ("score", "grade", "student_id", "assignment_id"):
                assert out["body"][key] == original["body"][key]
            assert out["metadata"]["user_id"] == original["metadata"]["user_id"]
            seen.add("grade")
    assert seen == {"course", "grade"}


def test_docs_security_lists_every_rule_of_the_ferpa_preset() -> None:
    docs = (REPO / "docs" / "security.md").read_text()
    table = docs[docs.index("### The FERPA preset"):docs.index("## Input limits")]
    missing = [key for key in ferpa_settings().rules if f"`{key}`" not in table]
    assert not missing, f"docs/security.md does not explain: {missing}"
