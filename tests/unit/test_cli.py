"""The offline commands, run as a user runs them: `python -m bridge transform | schema | check-config`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CATALOG = REPO / "tests" / "fixtures" / "catalog"


def bridge(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "bridge", *args], input=stdin, capture_output=True, cwd=REPO,
                          env=env, timeout=120)


def lines(out: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_transform_types_every_catalog_example_with_no_generic_and_no_dead_letter() -> None:
    canvas = (CATALOG / "canvas-examples.jsonl").read_bytes()
    caliper = (CATALOG / "caliper-examples.jsonl").read_bytes()
    result = bridge("transform", stdin=canvas + caliper)
    assert result.returncode == 0, result.stderr.decode()
    records = lines(result.stdout)
    n_caliper_events = sum(len(json.loads(line)["data"]) for line in caliper.splitlines() if line.strip())
    assert len(records) == len(canvas.splitlines()) + n_caliper_events
    for r in records:
        assert isinstance(r["topic"], str) and r["topic"].startswith("canvas."), r["topic"]
        assert r["topic"] != "canvas.dlq"
        value = r["value"]
        assert isinstance(value, dict) and value["generic"] is False
        headers = r["headers"]
        assert isinstance(headers, dict) and headers["dedupe_key"] == value["dedupe_key"]
        assert str(value["event_time"]).endswith("Z")
    assert sum(1 for r in records if str(r["topic"]).startswith("canvas.caliper.")) == n_caliper_events


def test_transform_stats_count_the_events_each_decoding_strategy_took() -> None:
    canvas = (CATALOG / "canvas-examples.jsonl").read_bytes()
    caliper = (CATALOG / "caliper-examples.jsonl").read_bytes()
    unknown = b'{"metadata": {"event_name": "not_in_catalog", "event_time": "2024-07-30T19:04:35Z"}, "body": {}}\n'
    result = bridge("transform", "--stats", stdin=canvas + caliper + unknown)
    assert result.returncode == 0, result.stderr.decode()
    n_records = len(lines(result.stdout))
    stats = result.stderr.decode().splitlines()[-1]
    assert stats.startswith("transform: events by decoding strategy: "), stats
    counts = {k: int(v) for k, v in (item.split() for item in stats.split(": ")[-1].split(", "))}
    assert list(counts) == ["exact", "twin", "lenient", "generic"]
    assert sum(counts.values()) == n_records  # every record counted once
    # The docs' examples: integer ids and Ruby-form times (twins), unknown fields (lenient), and
    # the event type outside the catalog (generic); the exact Structs take most.
    assert counts["generic"] == 1 and counts["twin"] > 0 and counts["lenient"] > 0
    assert counts["exact"] > n_records // 2


def test_transform_reads_a_file_and_prints_dead_letters_as_outputs(tmp_path: Path) -> None:
    f = tmp_path / "in.jsonl"
    seed = next(line for line in (CATALOG / "canvas-examples.jsonl").read_bytes().splitlines()
                if b"retry_outcome_alignment_clone" in line)
    f.write_bytes(seed + b"\n{broken json\n\n[1, 2]\n")
    result = bridge("transform", str(f))
    assert result.returncode == 0  # a dead letter is an output, not a failure
    out = lines(result.stdout)
    assert [o["topic"] for o in out] == ["canvas.outcomes.retry_outcome_alignment_clone", "canvas.dlq", "canvas.dlq"]
    assert out[0]["value"]["event_time"] == "2024-07-30T19:04:35.872Z"  # type: ignore[index]
    assert out[1]["value"] == "{broken json"
    assert out[1]["headers"]["dlq_reason"] == "invalid_json"  # type: ignore[index]
    assert out[2]["headers"]["dlq_reason"] == "not_an_object"  # type: ignore[index]
    assert b"1 records, 2 dead letters" in result.stderr


def test_transform_follows_the_config(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[topics]\nprefix = "lms."\ndead_letter = "lms.dead"\n')
    result = bridge("transform", "--config", str(cfg), stdin=b'{"metadata": {}}\n' + (
        CATALOG / "canvas-examples.jsonl").read_bytes().splitlines()[0] + b"\n")
    topics = [o["topic"] for o in lines(result.stdout)]
    assert topics[0] == "lms.dead" and topics[1].startswith("lms.")  # type: ignore[union-attr]


def test_schema_prints_json_schema_for_every_typed_topic() -> None:
    result = bridge("schema")
    assert result.returncode == 0
    schemas = json.loads(result.stdout)
    assert len(schemas) == 96 + 32  # 82 documented + 14 from the source; Caliper
    grade = schemas["canvas.grade_change"]
    assert grade["title"] == "canvas.grade_change value"
    text = json.dumps(grade)
    assert '"format": "date-time"' in text
    assert '"additionalProperties": false' not in text  # unknown fields are carried through
    assert "canvas.caliper.asset_accessed" in schemas


def test_schema_of_one_event_type_and_an_unknown_one() -> None:
    one = bridge("schema", "outcomes.retry_outcome_alignment_clone")
    assert one.returncode == 0
    assert "original_course_uuid" in json.dumps(json.loads(one.stdout))
    bad = bridge("schema", "no_such_event")
    assert bad.returncode == 2 and b"unknown event type" in bad.stderr


@pytest.mark.parametrize(("var", "value", "named"), [
    ("BRIDGE_HTTP_PORT", "99999", b"http.port"),
    ("BRIDGE_DELIVERY_GUARANTEE", "maybe", b"delivery.guarantee"),
])
def test_a_bad_setting_fails_at_start_naming_it(var: str, value: str, named: bytes) -> None:
    import os

    for cmd in (["check-config"], ["run"]):
        result = bridge(*cmd, env={**os.environ, var: value})
        assert result.returncode == 2
        assert named in result.stderr and b"Traceback" not in result.stderr


def test_check_config_hides_secrets() -> None:
    import os

    env = {**os.environ, "BRIDGE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "BRIDGE_KAFKA_SASL_USERNAME": "u",
           "BRIDGE_KAFKA_SASL_PASSWORD": "hunter2-very-secret",
           "BRIDGE_INGEST_UNSIGNED_TOKEN": "url-token-very-secret-123"}
    result = bridge("check-config", env=env)
    assert result.returncode == 0
    assert b"hunter2-very-secret" not in result.stdout + result.stderr
    assert b"url-token-very-secret-123" not in result.stdout + result.stderr
    assert json.loads(result.stdout)["kafka"]["sasl_password"] == "***"
    assert json.loads(result.stdout)["ingest"]["unsigned_token"] == "***"


def _ferpa(secret: str) -> list[dict[str, object]]:
    import os

    data = (CATALOG / "canvas-examples.jsonl").read_bytes() + (CATALOG / "caliper-examples.jsonl").read_bytes()
    result = bridge("transform", "--config", str(REPO / "config" / "ferpa.toml"), stdin=data,
                    env={**os.environ, "BRIDGE_PII_SECRET": secret})
    assert result.returncode == 0, result.stderr.decode()
    return lines(result.stdout)


def test_transform_with_the_ferpa_preset_drops_and_hashes_consistently() -> None:
    first, again, other = _ferpa("s" * 32), _ferpa("s" * 32), _ferpa("t" * 32)
    text = json.dumps(first)
    for dropped in ('"client_ip"', '"user_agent"', '"referrer"', '"request_url"', '"email"'):
        assert dropped not in text, dropped
    logins = [r["value"]["metadata"].get("user_login") for r in first  # type: ignore[index,union-attr]
              if r["value"].get("format") == "canvas" and r["value"]["metadata"].get("user_login")]  # type: ignore[union-attr,index]
    assert logins and all(str(v).startswith("hmac-sha256:") for v in logins)
    assert first == again  # same input, same secret: same output
    assert json.dumps(other) != text  # another secret: other hashes
    assert [r["headers"]["dedupe_key"] for r in first] == [r["headers"]["dedupe_key"] for r in other]  # type: ignore[index]


def test_the_ferpa_preset_without_a_secret_fails_at_start_naming_it() -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    result = bridge("transform", "--config", str(REPO / "config" / "ferpa.toml"), stdin=b"", env=env)
    assert result.returncode == 2 and b"pii.secret" in result.stderr
