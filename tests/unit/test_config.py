"""Config: defaults documented in config/bridge.toml, env overrides, errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from bridge.config import SETTINGS, ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def test_config_file_documents_exactly_the_defaults() -> None:
    assert load_config(REPO / "config" / "bridge.toml", env={}) == load_config(env={})


def test_every_setting_is_documented_in_the_config_file_and_readme() -> None:
    toml = (REPO / "config" / "bridge.toml").read_text()
    readme = (REPO / "README.md").read_text()
    for var, (_section, key, _type) in SETTINGS.items():
        assert f"\n{key} =" in toml or f"\n{key} " in toml, f"{key} missing from config/bridge.toml"
        assert var in readme, f"{var} missing from the README"


def test_env_overrides_the_file_and_the_defaults(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('raw_topic = "from.file"\n[http]\nport = 9000\n')
    env = {"BRIDGE_HTTP_PORT": "9100", "BRIDGE_GROUP_ID": "g", "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": "h:1",
           "BRIDGE_DEDUPE_ENABLED": "false", "BRIDGE_DELIVERY_GUARANTEE": "exactly-once"}
    cfg = load_config(f, env=env)
    assert cfg.raw_topic == "from.file"
    assert cfg.http.port == 9100
    assert cfg.group_id == "g"
    assert cfg.kafka.bootstrap_servers == "h:1"
    assert cfg.dedupe.enabled is False
    assert cfg.delivery.guarantee == "exactly-once"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"BRIDGE_HTTP_PORT": "99999"}, "http.port"),
        ({"BRIDGE_HTTP_PORT": "eighty"}, "BRIDGE_HTTP_PORT"),
        ({"BRIDGE_DELIVERY_GUARANTEE": "twice"}, "delivery.guarantee"),
        ({"BRIDGE_RAW_TOPIC": "bad topic!"}, "raw_topic"),
        ({"BRIDGE_KAFKA_COMPRESSION": "rar"}, "kafka.compression"),
        ({"BRIDGE_DEDUPE_ENABLED": "perhaps"}, "BRIDGE_DEDUPE_ENABLED"),
        ({"BRIDGE_NO_SUCH_THING": "1"}, "BRIDGE_NO_SUCH_THING"),
        ({"BRIDGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "kafka.sasl_username"),
        ({"BRIDGE_TOPICS_DEAD_LETTER": "canvas.raw"}, "topics.dead_letter"),
        ({"BRIDGE_INGEST_JWKS_URL": "ftp://keys.example/jwks"}, "ingest.jwks_url"),
        ({"BRIDGE_INGEST_UNSIGNED_TOKEN": "short"}, "ingest.unsigned_token"),
        ({"BRIDGE_INGEST_TLS_CERTFILE": "/nonexistent.pem", "BRIDGE_INGEST_TLS_KEYFILE": "/x"}, "ingest.tls_certfile"),
        ({"BRIDGE_INGEST_TLS_KEYFILE": "/nonexistent.pem"}, "ingest.tls_keyfile"),
        ({"BRIDGE_INGEST_ACK_TIMEOUT_MS": "60000"}, "ingest.ack_timeout_ms"),
        ({"BRIDGE_INGEST_CALIPER_TOKENS_FILE": "/nonexistent"}, "ingest.caliper_tokens_file"),
        ({"BRIDGE_HTTP_MAX_CONNECTIONS": "1"}, "http.max_connections"),
    ],
)
def test_bad_setting_fails_with_a_message_naming_it(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(env=env)
    assert named in str(err.value)


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[kafka]\nbootstrap = 'x'\n")
    with pytest.raises(ConfigError, match=r"kafka\.bootstrap"):
        load_config(f, env={})


def test_missing_and_invalid_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, env={})


def test_settings_table_covers_every_field() -> None:
    sections = msgspec.structs.fields(load_config(env={}))
    count = sum(len(msgspec.structs.fields(f.default_factory())) if f.default_factory is not msgspec.NODEFAULT
                else 1 for f in sections)
    assert len(SETTINGS) == count
