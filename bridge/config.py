"""One config object, built once at start from TOML plus ``BRIDGE_*`` environment overrides.

Every setting has a default (``config/bridge.toml`` documents them all). A setting
``key`` in section ``[section]`` is overridden by ``BRIDGE_<SECTION>_<KEY>``; the top-level
settings (``raw_topic``, ``group_id``) by ``BRIDGE_<KEY>``. A bad value fails at start with a
``ConfigError`` that names the setting, its source, and what is allowed.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from bridge.pii import PiiPolicy, PiiSettings

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Positive = Annotated[int, msgspec.Meta(gt=0)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
TopicName = Annotated[str, msgspec.Meta(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")]
TopicPrefix = Annotated[str, msgspec.Meta(max_length=200, pattern=r"^[A-Za-z0-9._-]*$")]


class _Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class KafkaSettings(_Section):
    bootstrap_servers: Annotated[str, msgspec.Meta(min_length=1)] = "127.0.0.1:9092"
    client_id: str = "canvas-bridge"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str = ""
    sasl_password: str = ""
    sasl_password_file: str = ""
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_key_password: str = ""
    ssl_key_password_file: str = ""
    ssl_check_hostname: bool = True
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    linger_ms: NonNegative = 0
    max_batch_bytes: Positive = 1048576
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    request_timeout_ms: Positive = 30000
    session_timeout_ms: Positive = 30000
    max_poll_interval_ms: Positive = 300000
    fetch_max_bytes: Positive = 16777216
    max_partition_fetch_bytes: Positive = 1048576
    fetch_min_bytes: Positive = 65536
    fetch_max_wait_ms: NonNegative = 10


class TopicsSettings(_Section):
    prefix: TopicPrefix = "canvas."
    caliper_prefix: TopicPrefix = "canvas.caliper."
    dead_letter: TopicName = "canvas.dlq"
    unknown_events: Literal["typed", "catch_all"] = "typed"
    catch_all: TopicName = "canvas.unknown"
    key: Literal["entity", "dedupe_key", "source"] = "entity"
    create: bool = True
    missing: Literal["dead_letter", "catch_all", "fail"] = "dead_letter"
    partitions: Positive = 3
    replication_factor: NonNegative = 0


class DecodeSettings(_Section):
    mode: Literal["lenient", "strict"] = "lenient"
    naive_timestamps: Literal["dead_letter", "assume_utc"] = "dead_letter"
    out_of_range_time: Literal["clamp", "dead_letter"] = "clamp"


class LimitsSettings(_Section):
    max_message_bytes: Positive = 1048576
    max_depth: Positive = 64
    max_string_length: Positive = 65536


class DeliverySettings(_Section):
    guarantee: Literal["at-least-once", "exactly-once"] = "at-least-once"
    batch_max_records: Positive = 2000
    max_in_flight_batches: Annotated[int, msgspec.Meta(ge=1, le=16)] = 2
    fetch_timeout_ms: Positive = 200
    drain_timeout_s: PositiveFloat = 30.0
    retry_backoff_initial_s: PositiveFloat = 0.2
    retry_backoff_max_s: PositiveFloat = 10.0
    replica_id: str = ""
    transactional_id_prefix: str = "canvas-bridge"
    transaction_timeout_ms: Positive = 30000


class DedupeSettings(_Section):
    enabled: bool = True
    window_count: Positive = 20000
    window_seconds: PositiveFloat = 900.0


class HttpSettings(_Section):
    host: str = "127.0.0.1"
    port: Port = 8080
    admin: bool = False
    max_connections: Annotated[int, msgspec.Meta(ge=4, le=100000)] = 64
    idle_timeout_s: PositiveFloat = 5.0


#: Instructure's production JWKS, as its Data Services setup doc gives it (HTTPS delivery, "Sign Payload").
INSTRUCTURE_JWKS_URL = "https://8axpcl50e4.execute-api.us-east-1.amazonaws.com/main/jwks"


class IngestSettings(_Section):
    """``canvas-bridge ingest``: Canvas's HTTPS delivery (and the Caliper Sensor API) into the raw topic."""

    host: str = "127.0.0.1"
    port: Port = 8081
    jwks_url: str = INSTRUCTURE_JWKS_URL
    issuers: list[str] = msgspec.field(default_factory=list)
    leeway_s: Annotated[float, msgspec.Meta(ge=0, le=600)] = 30.0
    jwks_refresh_s: PositiveFloat = 3600.0
    jwks_min_refetch_s: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    jwks_timeout_s: PositiveFloat = 5.0
    ack_timeout_ms: Annotated[int, msgspec.Meta(ge=100, le=14000)] = 5000
    max_in_flight: Positive = 1000
    unsigned_token: str = ""
    unsigned_token_file: str = ""
    caliper_tokens_file: str = ""
    tls_certfile: str = ""
    tls_keyfile: str = ""
    max_connections: Annotated[int, msgspec.Meta(ge=4, le=100000)] = 2000
    keepalive_timeout_s: PositiveFloat = 75.0
    request_timeout_s: PositiveFloat = 10.0


# -- [sqs]: canvas-bridge ingest-sqs ------------------------------------------------------------
#: An SQS queue URL: scheme, host, account (ElasticMQ: 000000000000), queue name (SQS's rules).
_QUEUE_URL = re.compile(r"^https?://[^/\s?#]+/[^/\s?#]+/[A-Za-z0-9_-]{1,80}(\.fifo)?$")


class SqsSettings(_Section):
    """Canvas's SQS delivery (``canvas-bridge ingest-sqs``); credentials come from the AWS chain."""

    queue_urls: list[str] = msgspec.field(default_factory=list)
    region: str = ""
    endpoint_url: str = ""
    wait_time_s: Annotated[int, msgspec.Meta(ge=0, le=20)] = 20
    max_messages: Annotated[int, msgspec.Meta(ge=1, le=10)] = 10
    visibility_timeout_s: Annotated[int, msgspec.Meta(ge=2, le=43200)] = 30
    pollers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 2
    write_timeout_s: PositiveFloat = 15.0
# -- end [sqs] ------------------------------------------------------------------------------------


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    raw_topic: TopicName = "canvas.raw"
    group_id: Annotated[str, msgspec.Meta(min_length=1)] = "canvas-bridge"
    kafka: KafkaSettings = msgspec.field(default_factory=KafkaSettings)
    topics: TopicsSettings = msgspec.field(default_factory=TopicsSettings)
    decode: DecodeSettings = msgspec.field(default_factory=DecodeSettings)
    limits: LimitsSettings = msgspec.field(default_factory=LimitsSettings)
    delivery: DeliverySettings = msgspec.field(default_factory=DeliverySettings)
    dedupe: DedupeSettings = msgspec.field(default_factory=DedupeSettings)
    http: HttpSettings = msgspec.field(default_factory=HttpSettings)
    ingest: IngestSettings = msgspec.field(default_factory=IngestSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    pii: PiiSettings = msgspec.field(default_factory=PiiSettings)
    sqs: SqsSettings = msgspec.field(default_factory=SqsSettings)


class ConfigError(Exception):
    """A setting is missing, unknown or invalid. The message names it."""


ENV_PREFIX = "BRIDGE_"
#: Environment variables that are not settings themselves.
_ENV_NOT_SETTINGS = frozenset({"BRIDGE_CONFIG"})


def _settings_table() -> dict[str, tuple[str | None, str, Any]]:
    """Map each ``BRIDGE_*`` variable to (section or None, key, annotated type)."""
    table: dict[str, tuple[str | None, str, Any]] = {}
    info = msgspec.inspect.type_info(Config)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        if isinstance(field.type, msgspec.inspect.StructType):
            for sub in field.type.fields:
                table[f"{ENV_PREFIX}{field.name}_{sub.name}".upper()] = (field.name, sub.name, sub.type)
        else:
            table[f"{ENV_PREFIX}{field.name}".upper()] = (None, field.name, field.type)
    return table


SETTINGS = _settings_table()


def _parse_env_value(var: str, raw: str, typ: Any) -> Any:
    """Environment values are text; turn them into what the TOML would have held."""
    if isinstance(typ, msgspec.inspect.BoolType):
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{var}={raw!r}: expected a boolean (true/false)")
    if isinstance(typ, msgspec.inspect.IntType):
        try:
            return int(raw.strip())
        except ValueError:
            raise ConfigError(f"{var}={raw!r}: expected an integer") from None
    if isinstance(typ, msgspec.inspect.ListType):
        text = raw.strip()
        if text.startswith("["):
            try:
                return msgspec.json.decode(text)
            except msgspec.DecodeError:
                raise ConfigError(f"{var}: expected a JSON array or comma-separated values") from None
        return [part.strip() for part in text.split(",") if part.strip()]
    if isinstance(typ, msgspec.inspect.DictType):
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError:
            raise ConfigError(f"{var}: expected a JSON object, e.g. {{\"client_ip\": \"drop\"}}") from None
    if isinstance(typ, msgspec.inspect.ListType):  # e.g. BRIDGE_SQS_QUEUE_URLS: comma-separated
        return [item.strip() for item in raw.split(",") if item.strip()]
    if isinstance(typ, msgspec.inspect.FloatType):
        try:
            return float(raw.strip())
        except ValueError:
            raise ConfigError(f"{var}={raw!r}: expected a number") from None
    return raw


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Build the config from an optional TOML file and the environment, and validate it."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    source = "defaults"
    path = path or env.get("BRIDGE_CONFIG") or None
    if path:
        source = str(path)
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX) or var in _ENV_NOT_SETTINGS:
            continue
        if var not in SETTINGS:
            raise ConfigError(
                f"{var} is not a setting of canvas-bridge (see README, 'Configuration'); "
                "remove it or fix its name"
            )
        section, key, typ = SETTINGS[var]
        value = _parse_env_value(var, raw, typ)
        if section is None:
            data[key] = value
        else:
            target = data.setdefault(section, {})
            if not isinstance(target, dict):
                raise ConfigError(f"[{section}] in {source} must be a table")
            target[key] = value
    return _validate(data, source)


def _validate(data: dict[str, Any], source: str) -> Config:
    try:
        config = msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(str(exc), source)) from None
    _check_consistency(config)
    return config


def _explain(message: str, source: str) -> str:
    """Turn msgspec's ``... - at `$.kafka.linger_ms``` into a message naming the setting and its env var."""
    text, _, where = message.partition(" - at `$.")
    if not where:
        # e.g. "Object contains unknown field `foo` - at `$.kafka`" is handled above; this is the root.
        return f"invalid config ({source}): {message}"
    setting = where.rstrip("`")
    if "unknown field" in text:
        field = text.split("`")[1] if "`" in text else "?"
        setting = f"{setting}.{field}"
    env = ENV_PREFIX + setting.replace(".", "_").upper()
    return f"invalid setting {setting} ({source}, or env {env}): {text}"


def _check_consistency(config: Config) -> None:
    kafka = config.kafka
    if kafka.security_protocol.startswith("SASL") and not kafka.sasl_username:
        raise ConfigError(
            f"kafka.sasl_username must be set when kafka.security_protocol is {kafka.security_protocol} "
            "(env BRIDGE_KAFKA_SASL_USERNAME)"
        )
    if kafka.sasl_password and kafka.sasl_password_file:
        raise ConfigError("set only one of kafka.sasl_password and kafka.sasl_password_file")
    if bool(kafka.ssl_certfile) != bool(kafka.ssl_keyfile):
        raise ConfigError("kafka.ssl_certfile and kafka.ssl_keyfile go together (mTLS needs both)")
    for name in ("sasl_password_file", "ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_key_password_file"):
        value = getattr(kafka, name)
        if value and not Path(value).is_file():
            raise ConfigError(f"kafka.{name}: file {value} does not exist")
    if config.topics.dead_letter == config.raw_topic:
        raise ConfigError("topics.dead_letter must differ from raw_topic, or dead letters would loop")
    if config.topics.missing == "catch_all" and config.topics.catch_all == config.raw_topic:
        raise ConfigError("topics.catch_all must differ from raw_topic when topics.missing = catch_all")
    if config.pii.secret and config.pii.secret_file:
        raise ConfigError("set only one of pii.secret and pii.secret_file")
    if config.pii.secret_file and not Path(config.pii.secret_file).is_file():
        raise ConfigError(f"pii.secret_file: file {config.pii.secret_file} does not exist")
    _check_ingest(config.ingest)
    try:
        PiiPolicy(config.pii)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    _check_sqs(config)


def _check_sqs(config: Config) -> None:
    sqs = config.sqs
    for url in sqs.queue_urls:
        if not _QUEUE_URL.match(url):
            raise ConfigError(
                f"sqs.queue_urls (env BRIDGE_SQS_QUEUE_URLS, comma-separated): {url!r} is not an SQS queue URL; "
                "expected https://sqs.<region>.amazonaws.com/<account id>/<queue name>"
            )
    if len(set(sqs.queue_urls)) != len(sqs.queue_urls):
        raise ConfigError("sqs.queue_urls (env BRIDGE_SQS_QUEUE_URLS) lists a queue twice")
    if sqs.endpoint_url and not re.match(r"^https?://[^/\s?#]+/?$", sqs.endpoint_url):
        raise ConfigError(f"sqs.endpoint_url (env BRIDGE_SQS_ENDPOINT_URL): {sqs.endpoint_url!r} is not an "
                          "http(s)://host[:port] URL")


def _check_ingest(ingest: IngestSettings) -> None:
    if ingest.jwks_url and not ingest.jwks_url.startswith(("https://", "http://")):
        raise ConfigError(f"ingest.jwks_url (env BRIDGE_INGEST_JWKS_URL): {ingest.jwks_url!r} is not an http(s) URL; "
                          "leave it empty to refuse every signed delivery")
    if ingest.unsigned_token and ingest.unsigned_token_file:
        raise ConfigError("set only one of ingest.unsigned_token and ingest.unsigned_token_file")
    token = ingest.unsigned_token
    for name in ("unsigned_token_file", "caliper_tokens_file", "tls_certfile", "tls_keyfile"):
        value = getattr(ingest, name)
        if value and not Path(value).is_file():
            raise ConfigError(f"ingest.{name} (env BRIDGE_INGEST_{name.upper()}): file {value} does not exist")
    if ingest.unsigned_token_file:
        token = read_secret("", ingest.unsigned_token_file)
    if (ingest.unsigned_token or ingest.unsigned_token_file) and (
            len(token) < 16 or not all(c.isalnum() or c in "-_.~" for c in token)):
        raise ConfigError("ingest.unsigned_token (env BRIDGE_INGEST_UNSIGNED_TOKEN): at least 16 characters, "
                          "letters, digits and -_.~ only (it is a URL path segment)")
    if bool(ingest.tls_certfile) != bool(ingest.tls_keyfile):
        raise ConfigError("ingest.tls_certfile and ingest.tls_keyfile go together (serving HTTPS needs both)")
    if ingest.caliper_tokens_file:
        from bridge.ingest.caliper import load_tokens

        try:
            load_tokens(ingest.caliper_tokens_file)
        except ValueError as exc:
            raise ConfigError(f"ingest.caliper_tokens_file: {exc}") from None


def read_secret(value: str, file: str) -> str:
    """A secret given inline or in a file (the file wins; a trailing newline is dropped)."""
    if file:
        return Path(file).read_text().rstrip("\n")
    return value


def redacted(config: Config) -> dict[str, Any]:
    """The config as builtins with every secret replaced, fit to log or print."""
    out: dict[str, Any] = msgspec.to_builtins(config)
    for key in ("sasl_password", "ssl_key_password"):
        if out["kafka"].get(key):
            out["kafka"][key] = "***"
    if out["ingest"].get("unsigned_token"):
        out["ingest"]["unsigned_token"] = "***"
    if out["pii"].get("secret"):
        out["pii"]["secret"] = "***"
    return out
