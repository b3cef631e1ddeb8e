"""Kafka security against a real broker: SASL (PLAIN, SCRAM-SHA-256/512), TLS, mTLS, bad credentials.

A separate single-node broker (scripts/kafka-local, its own state folder) is started for this module
with four listeners: PLAINTEXT (test setup and read-back), SASL_PLAINTEXT, SASL_SSL and SSL with
``ssl.client.auth=required``. The certificates (a CA, the broker's, a client's) are made here with
openssl; SCRAM users are created when the storage is formatted (``--add-scram``), PLAIN users in the
listener's JAAS config. Every password is random per run, so "it never appears in the log" means
something. The bridge runs as a real process configured by BRIDGE_KAFKA_* variables.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.kafka_helpers import (
    KAFKA_LOCAL,
    REPO,
    BridgeProcess,
    catalog_lines,
    committed_offsets,
    create_topics,
    free_port,
    produce,
    read_all,
    run,
    unique,
    wait_until,
)

pytestmark = pytest.mark.broker

SEED_EVENT = "outcomes.retry_outcome_alignment_clone"


@dataclass
class Users:
    """One user per mechanism; random passwords."""

    scram256: tuple[str, str] = ("alice", "")
    scram512: tuple[str, str] = ("bob", "")
    plain: tuple[str, str] = ("carol", "")

    def __post_init__(self) -> None:
        self.scram256 = (self.scram256[0], "alice-" + secrets.token_hex(12))
        self.scram512 = (self.scram512[0], "bob-" + secrets.token_hex(12))
        self.plain = (self.plain[0], "carol-" + secrets.token_hex(12))

    def passwords(self) -> list[str]:
        return [self.scram256[1], self.scram512[1], self.plain[1]]


@dataclass
class SecureBroker:
    plaintext: str
    sasl_plaintext: str
    sasl_ssl: str
    ssl: str
    certs: Path
    users: Users
    key_password: str
    secrets_in_use: list[str] = field(default_factory=list)

    @property
    def ca(self) -> str:
        return str(self.certs / "ca.crt")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(folder: Path, key_password: str) -> None:
    """A CA; the broker's certificate (SAN 127.0.0.1, localhost); a client certificate (encrypted key)."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", "/CN=canvas-bridge test CA", cwd=folder)
    (folder / "broker.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
    (folder / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subject in (("broker", "/CN=localhost"), ("client", "/CN=canvas-bridge")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", subject, cwd=folder)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=folder)
    # The broker reads a PEM keystore (unencrypted PKCS#8 key + chain) and a PEM truststore (the CA).
    (folder / "broker.pem").write_text(
        "".join((folder / f).read_text() for f in ("broker.key", "broker.crt", "ca.crt")))
    # The client's key is encrypted; the bridge gets its password from a file.
    _openssl("pkey", "-in", "client.key", "-aes256", "-passout", f"pass:{key_password}", "-out",
             "client-encrypted.key", cwd=folder)
    (folder / "client-key-password").write_text(key_password + "\n")
    (folder / "client.key").unlink()


def broker_extra_config(certs: Path, users: Users, ports: dict[str, int]) -> str:
    """Appended to kafka-local's server.properties: a later key replaces an earlier one."""
    sp, ss, sl = ports["SASL_PLAINTEXT"], ports["SASL_SSL"], ports["SSL"]
    plain_user, plain_password = users.plain
    lines = [
        # kafka-local replaces @BROKER_PORT@ / @CONTROLLER_PORT@ with the ports it picked.
        "listeners=PLAINTEXT://127.0.0.1:@BROKER_PORT@,CONTROLLER://127.0.0.1:@CONTROLLER_PORT@,"
        f"SASL_PLAINTEXT://127.0.0.1:{sp},SASL_SSL://127.0.0.1:{ss},SSL://127.0.0.1:{sl}",
        "advertised.listeners=PLAINTEXT://127.0.0.1:@BROKER_PORT@,"
        f"SASL_PLAINTEXT://127.0.0.1:{sp},SASL_SSL://127.0.0.1:{ss},SSL://127.0.0.1:{sl}",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
        "SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL",
        "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        f"ssl.keystore.type=PEM\nssl.keystore.location={certs / 'broker.pem'}",
        f"ssl.truststore.type=PEM\nssl.truststore.location={certs / 'ca.crt'}",
        "listener.name.ssl.ssl.client.auth=required",
    ]
    for listener in ("sasl_plaintext", "sasl_ssl"):
        lines += [
            f"listener.name.{listener}.plain.sasl.jaas.config=org.apache.kafka.common.security.plain."
            f'PlainLoginModule required user_{plain_user}="{plain_password}";',
            f"listener.name.{listener}.scram-sha-256.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            f"listener.name.{listener}.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        ]
    return "\n".join(lines) + "\n"


def _distinct_free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    require_tool("openssl")
    require_tool("java")
    base = tmp_path_factory.mktemp("kafka-secure")
    users = Users()
    key_password = "key-" + secrets.token_hex(12)
    certs = base / "certs"
    make_certificates(certs, key_password)
    ports = dict(zip(("SASL_PLAINTEXT", "SASL_SSL", "SSL"), _distinct_free_ports(3), strict=True))
    extra = base / "extra.properties"
    extra.write_text(broker_extra_config(certs, users, ports))
    (s256_user, s256_pw), (s512_user, s512_pw) = users.scram256, users.scram512
    env = {
        **os.environ,
        "KAFKA_LOCAL_DIR": str(base / "state"),
        "KAFKA_LOCAL_EXTRA_CONFIG": str(extra),
        # one argument per line
        "KAFKA_LOCAL_FORMAT_ARGS": "\n".join([
            "--add-scram", f"SCRAM-SHA-256=[name={s256_user},password={s256_pw}]",
            "--add-scram", f"SCRAM-SHA-512=[name={s512_user},password={s512_pw}]",
        ]),
    }
    out = subprocess.run([str(KAFKA_LOCAL), "start"], env=env, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        subprocess.run([str(KAFKA_LOCAL), "stop"], env=env, capture_output=True, timeout=120)
        pytest.fail(f"could not start the secured Kafka broker:\n{out.stderr}")
    plaintext = out.stdout.strip().splitlines()[-1]
    try:
        yield SecureBroker(
            plaintext=plaintext,
            sasl_plaintext=f"127.0.0.1:{ports['SASL_PLAINTEXT']}",
            sasl_ssl=f"127.0.0.1:{ports['SASL_SSL']}",
            ssl=f"127.0.0.1:{ports['SSL']}",
            certs=certs,
            users=users,
            key_password=key_password,
        )
    finally:
        subprocess.run([str(KAFKA_LOCAL), "stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _seed(marker: str) -> bytes:
    line = next(line for line in catalog_lines() if f'"{SEED_EVENT}"'.encode() in line)
    event = json.loads(line)
    event["metadata"]["request_id"] = marker
    return json.dumps(event).encode()


def _raw_topic(broker: SecureBroker) -> str:
    name = unique("raw")
    run(create_topics(broker.plaintext, [name], partitions=3))
    return name


def _assert_no_secret(text: str, broker: SecureBroker, *extra: str) -> None:
    for secret in [*broker.users.passwords(), broker.key_password, *extra]:
        assert secret not in text, "a secret appears in the bridge's output"


def roundtrip(broker: SecureBroker, tmp_path: Path, bootstrap: str, **settings: str) -> str:
    """Produce one event (over PLAINTEXT), run the bridge on the secured listener, read the typed record
    back (over PLAINTEXT). Returns the bridge's log."""
    raw = _raw_topic(broker)
    marker = str(uuid.uuid4())
    prefix = unique("sec") + "."
    run(produce(broker.plaintext, raw, [_seed(marker)]))
    log = tmp_path / "bridge.log"
    with BridgeProcess(bootstrap, raw, unique("group"), log, BRIDGE_TOPICS_PREFIX=prefix, **settings) as bridge:
        bridge.wait_ready(90)
        wait_until(lambda: bridge.metric("canvas_bridge_events_published_total") >= 1, 60, "the event published")
        records = run(read_all(broker.plaintext, prefix + SEED_EVENT, min_count=1))
        mine = [r for r in records if marker.encode() in (r.value or b"")]
        assert len(mine) == 1, f"expected the event once on {prefix + SEED_EVENT}, got {len(mine)}"
        value = json.loads(mine[0].value or b"")
        assert value["event_name"] == SEED_EVENT and value["metadata"]["request_id"] == marker
    assert bridge.proc is not None and bridge.proc.returncode == 0, bridge.log_tail()
    text = log.read_text(errors="replace")
    _assert_no_secret(text, broker)
    return text


def _sasl(broker: SecureBroker, mechanism: str, user: tuple[str, str], protocol: str = "SASL_PLAINTEXT",
          ) -> dict[str, str]:
    return {
        "BRIDGE_KAFKA_SECURITY_PROTOCOL": protocol,
        "BRIDGE_KAFKA_SASL_MECHANISM": mechanism,
        "BRIDGE_KAFKA_SASL_USERNAME": user[0],
        "BRIDGE_KAFKA_SASL_PASSWORD": user[1],
    }


# ---------------------------------------------------------------------------------------------
# It works with each mechanism and protocol
# ---------------------------------------------------------------------------------------------


def test_sasl_plaintext_with_plain(secure_broker: SecureBroker, tmp_path: Path) -> None:
    b = secure_broker
    roundtrip(b, tmp_path, b.sasl_plaintext, **_sasl(b, "PLAIN", b.users.plain))


def test_sasl_plaintext_with_scram_sha_256(secure_broker: SecureBroker, tmp_path: Path) -> None:
    b = secure_broker
    roundtrip(b, tmp_path, b.sasl_plaintext, **_sasl(b, "SCRAM-SHA-256", b.users.scram256))


def test_sasl_plaintext_with_scram_sha_512_password_from_a_file(secure_broker: SecureBroker,
                                                                  tmp_path: Path) -> None:
    b = secure_broker
    password_file = tmp_path / "sasl-password"
    password_file.write_text(b.users.scram512[1] + "\n")  # as a mounted secret often is
    settings = _sasl(b, "SCRAM-SHA-512", b.users.scram512)
    del settings["BRIDGE_KAFKA_SASL_PASSWORD"]
    roundtrip(b, tmp_path, b.sasl_plaintext, BRIDGE_KAFKA_SASL_PASSWORD_FILE=str(password_file), **settings)


def test_sasl_ssl_with_scram_sha_512_and_the_ca_file(secure_broker: SecureBroker, tmp_path: Path) -> None:
    b = secure_broker
    roundtrip(b, tmp_path, b.sasl_ssl, BRIDGE_KAFKA_SSL_CAFILE=b.ca,
              **_sasl(b, "SCRAM-SHA-512", b.users.scram512, protocol="SASL_SSL"))


def test_ssl_with_a_client_certificate(secure_broker: SecureBroker, tmp_path: Path) -> None:
    """mTLS; the client key is encrypted and its password comes from a file."""
    b = secure_broker
    roundtrip(
        b, tmp_path, b.ssl,
        BRIDGE_KAFKA_SECURITY_PROTOCOL="SSL",
        BRIDGE_KAFKA_SSL_CAFILE=b.ca,
        BRIDGE_KAFKA_SSL_CERTFILE=str(b.certs / "client.crt"),
        BRIDGE_KAFKA_SSL_KEYFILE=str(b.certs / "client-encrypted.key"),
        BRIDGE_KAFKA_SSL_KEY_PASSWORD_FILE=str(b.certs / "client-key-password"),
    )


# ---------------------------------------------------------------------------------------------
# Refused credentials
# ---------------------------------------------------------------------------------------------


def _refused(b: SecureBroker, tmp_path: Path, bootstrap: str, settings: dict[str, str], observe_s: float,
             ) -> tuple[BridgeProcess, str, str]:
    """Run the bridge with credentials the broker refuses, for ``observe_s`` seconds or until it exits.

    Checks what must hold whatever the bridge does about it: it is never ready, consumes nothing
    (no committed offsets for its group, no typed record) and exits non-zero if it exits.
    Returns the process, its log and the raw topic.
    """
    raw = _raw_topic(b)
    prefix = unique("refused") + "."
    group = unique("group")
    run(produce(b.plaintext, raw, [_seed(str(uuid.uuid4()))]))
    log = tmp_path / "bridge.log"
    bridge = BridgeProcess(bootstrap, raw, group, log, BRIDGE_TOPICS_PREFIX=prefix, **settings).start()
    try:
        deadline = time.monotonic() + observe_s
        while time.monotonic() < deadline:
            assert bridge.proc is not None
            if bridge.proc.poll() is not None:
                break
            assert bridge.get("/readyz")[0] != 200, "the bridge reports ready with refused credentials"
            time.sleep(0.3)
    finally:
        if bridge.proc is not None and bridge.proc.poll() is None:
            bridge.terminate(60)
    assert bridge.proc is not None and bridge.proc.returncode != 0
    offsets = run(committed_offsets(b.plaintext, group, raw, 3))
    assert offsets == {0: None, 1: None, 2: None}, f"offsets were committed: {offsets}"
    assert run(read_all(b.plaintext, prefix + SEED_EVENT, timeout=3)) == []
    return bridge, log.read_text(errors="replace"), raw


def _wrong_password(b: SecureBroker) -> tuple[dict[str, str], str]:
    wrong = "wrong-" + secrets.token_hex(12)
    settings = _sasl(b, "SCRAM-SHA-256", (b.users.scram256[0], wrong))
    return settings, wrong


def test_a_wrong_password_consumes_nothing_and_is_never_logged(secure_broker: SecureBroker,
                                                                tmp_path: Path) -> None:
    b = secure_broker
    settings, wrong = _wrong_password(b)
    _bridge, log, _raw = _refused(b, tmp_path, b.sasl_plaintext, settings, observe_s=8)
    _assert_no_secret(log, b, wrong)
    # aiokafka's own log line says why (the bridge's message may say it too).
    assert re.search(r"authentication failed", log, re.IGNORECASE), log


def test_a_wrong_password_is_fatal_with_a_clear_error(secure_broker: SecureBroker, tmp_path: Path) -> None:
    b = secure_broker
    settings, wrong = _wrong_password(b)
    started = time.monotonic()
    bridge, log, _raw = _refused(b, tmp_path, b.sasl_plaintext, settings, observe_s=30)
    assert bridge.proc is not None
    # It exited by itself (not by our SIGTERM after 30 s), non-zero, saying so in its own log.
    assert time.monotonic() - started < 30, "the bridge kept retrying with a wrong password"
    own = [line for line in log.splitlines() if " ERROR bridge" in line]
    assert any(re.search(r"authenticat|credentials", line, re.IGNORECASE) for line in own), log
    _assert_no_secret(log, b, wrong)


def test_mtls_without_a_client_certificate_is_refused(secure_broker: SecureBroker, tmp_path: Path) -> None:
    """What happens today: the TLS handshake is refused (alert bad certificate); aiokafka reports it as
    'Unable to bootstrap' (KafkaConnectionError), so the bridge retries and is never ready. Either that
    or a non-zero exit is accepted here."""
    b = secure_broker
    _refused(b, tmp_path, b.ssl, {"BRIDGE_KAFKA_SECURITY_PROTOCOL": "SSL", "BRIDGE_KAFKA_SSL_CAFILE": b.ca},
             observe_s=10)


def test_an_untrusted_broker_certificate_is_refused(secure_broker: SecureBroker, tmp_path: Path) -> None:
    """SASL_SSL without the CA that signed the broker's certificate: the system CAs do not trust it."""
    b = secure_broker
    settings = _sasl(b, "SCRAM-SHA-512", b.users.scram512, protocol="SASL_SSL")
    _bridge, log, _raw = _refused(b, tmp_path, b.sasl_ssl, settings, observe_s=8)
    _assert_no_secret(log, b)
    assert "CERTIFICATE_VERIFY_FAILED" in log or "certificate verify failed" in log, log


# ---------------------------------------------------------------------------------------------
# check-config never prints a secret (no broker needed)
# ---------------------------------------------------------------------------------------------


def _check_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    return subprocess.run([sys.executable, "-m", "bridge", "check-config"], env={**base, **env}, cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_check_config_never_prints_a_secret(tmp_path: Path) -> None:
    from bridge.config import SETTINGS

    sasl_password = "sasl-" + secrets.token_hex(12)
    key_password = "key-" + secrets.token_hex(12)
    env = {
        "BRIDGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "BRIDGE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "BRIDGE_KAFKA_SASL_USERNAME": "bridge",
        "BRIDGE_KAFKA_SASL_PASSWORD": sasl_password,
        "BRIDGE_KAFKA_SSL_KEY_PASSWORD": key_password,
    }
    pii_secret = "pii-" + secrets.token_hex(16)
    if "BRIDGE_PII_SECRET" in SETTINGS:  # once [pii] is part of the config
        env["BRIDGE_PII_SECRET"] = pii_secret
    out = _check_config(env)
    assert out.returncode == 0, out.stderr
    for secret in (sasl_password, key_password, pii_secret):
        assert secret not in out.stdout + out.stderr
    printed = json.loads(out.stdout)
    assert printed["kafka"]["sasl_password"] == "***" and printed["kafka"]["ssl_key_password"] == "***"
    if "pii" in printed:
        assert printed["pii"]["secret"] == "***"

    # Secrets in files: the path may be printed, the content is never read into the output.
    password_file = tmp_path / "sasl-password"
    password_file.write_text(sasl_password + "\n")
    env_files = {k: v for k, v in env.items() if k not in ("BRIDGE_KAFKA_SASL_PASSWORD", "BRIDGE_PII_SECRET")}
    env_files["BRIDGE_KAFKA_SASL_PASSWORD_FILE"] = str(password_file)
    out = _check_config(env_files)
    assert out.returncode == 0, out.stderr
    assert sasl_password not in out.stdout + out.stderr
    assert json.loads(out.stdout)["kafka"]["sasl_password_file"] == str(password_file)
