"""ingest-sqs without a server: the [sqs] settings, the queues they name, how SQS failures are told apart."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

from bridge.cli import main
from bridge.config import ConfigError, load_config
from bridge.ingest.sqs_queues import Queue, error_kind, queues_of

AWS_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/canvas-live-events-prod"


def _queues(urls: str, **env: str) -> list[Queue]:
    return queues_of(load_config(env={"BRIDGE_SQS_QUEUE_URLS": urls, **env}))


def test_queue_urls_come_comma_separated_from_the_environment() -> None:
    config = load_config(env={"BRIDGE_SQS_QUEUE_URLS": f" {AWS_URL} ,http://127.0.0.1:9324/000000000000/q2,"})
    assert config.sqs.queue_urls == [AWS_URL, "http://127.0.0.1:9324/000000000000/q2"]


def test_an_aws_queue_gets_its_region_from_the_url_and_the_regional_endpoint() -> None:
    [q] = _queues(AWS_URL)
    assert (q.name, q.region, q.endpoint_url) == ("canvas-live-events-prod", "eu-west-1", None)


def test_the_metric_label_is_the_queue_name_never_the_account_id() -> None:
    a, b = _queues(f"{AWS_URL},https://sqs.us-east-1.amazonaws.com/999999999999/canvas-live-events-prod")
    assert (a.name, b.name) == ("canvas-live-events-prod", "canvas-live-events-prod-2")
    assert b.region == "us-east-1"


def test_another_server_is_its_own_endpoint_and_settings_win() -> None:
    [q] = _queues("http://127.0.0.1:9324/000000000000/canvas-live-events-x")
    assert (q.endpoint_url, q.region) == ("http://127.0.0.1:9324", None)
    [q] = _queues(AWS_URL, BRIDGE_SQS_ENDPOINT_URL="https://vpce-1.sqs.eu-west-1.vpce.amazonaws.com/",
                  BRIDGE_SQS_REGION="eu-west-1")
    assert (q.endpoint_url, q.region) == ("https://vpce-1.sqs.eu-west-1.vpce.amazonaws.com", "eu-west-1")


def test_no_queue_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="BRIDGE_SQS_QUEUE_URLS"):
        queues_of(load_config(env={}))


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"BRIDGE_SQS_QUEUE_URLS": "canvas-live-events"}, "BRIDGE_SQS_QUEUE_URLS"),
        ({"BRIDGE_SQS_QUEUE_URLS": f"{AWS_URL},{AWS_URL}"}, "twice"),
        ({"BRIDGE_SQS_ENDPOINT_URL": "sqs.local:9324"}, "BRIDGE_SQS_ENDPOINT_URL"),
        ({"BRIDGE_SQS_MAX_MESSAGES": "11"}, "sqs.max_messages"),
        ({"BRIDGE_SQS_WAIT_TIME_S": "21"}, "sqs.wait_time_s"),
        ({"BRIDGE_SQS_VISIBILITY_TIMEOUT_S": "1"}, "sqs.visibility_timeout_s"),
        ({"BRIDGE_SQS_POLLERS": "0"}, "sqs.pollers"),
        ({"BRIDGE_SQS_WRITE_TIMEOUT_S": "0"}, "sqs.write_timeout_s"),
    ],
)
def test_a_bad_sqs_setting_fails_naming_it(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_config(env=env)


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "ReceiveMessage")


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (_client_error("Throttling", 400), "throttled"),
        (_client_error("RequestThrottled", 403), "throttled"),
        (_client_error("Whatever", 429), "throttled"),
        (_client_error("AccessDenied", 403), "denied"),
        (_client_error("InvalidClientTokenId", 403), "denied"),
        (_client_error("AWS.SimpleQueueService.NonExistentQueue", 400), "missing"),
        (_client_error("QueueDoesNotExist", 400), "missing"),
        (_client_error("InternalError", 500), "server"),
        (_client_error("InvalidParameterValue", 400), "other"),
        (EndpointConnectionError(endpoint_url="http://x"), "unreachable"),
        (ReadTimeoutError(endpoint_url="http://x"), "unreachable"),
        (ConnectionResetError(), "unreachable"),
        (NoCredentialsError(), "denied"),
    ],
)
def test_sqs_failures_are_told_apart(exc: BaseException, kind: str) -> None:
    assert error_kind(exc) == kind


def test_ingest_sqs_without_a_queue_exits_2_naming_the_setting(capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRIDGE_SQS_QUEUE_URLS", raising=False)
    assert main(["ingest-sqs"]) == 2
    assert "BRIDGE_SQS_QUEUE_URLS" in capsys.readouterr().err


def test_ingest_sqs_without_a_region_exits_2_naming_the_setting(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("BRIDGE_SQS_QUEUE_URLS", "http://127.0.0.1:9/000000000000/canvas-live-events")
    assert main(["ingest-sqs"]) == 2
    assert "BRIDGE_SQS_REGION" in capsys.readouterr().err
