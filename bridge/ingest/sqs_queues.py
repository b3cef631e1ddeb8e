"""The SQS queues ``ingest-sqs`` drains (their label, endpoint and region) and SQS's errors, by kind."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from bridge import metrics
from bridge.config import Config, ConfigError

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient
    from types_aiobotocore_sqs.literals import QueueAttributeFilterType

#: How often the queues' approximate counts are read (a gauge per queue).
QUEUE_STATS_INTERVAL_S = 15.0

#: Every error an SQS call can raise: the service's answers and the transport's failures.
SQS_ERRORS: tuple[type[BaseException], ...] = (BotoCoreError, ClientError, OSError, TimeoutError)

_THROTTLED = frozenset({"Throttling", "ThrottlingException", "RequestThrottled", "RequestThrottledException",
                        "TooManyRequestsException", "SlowDown", "OverLimit", "KmsThrottled"})
_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "InvalidClientTokenId", "SignatureDoesNotMatch",
                     "UnrecognizedClientException", "ExpiredToken", "ExpiredTokenException", "InvalidSecurity",
                     "MissingAuthenticationToken", "IncompleteSignature", "KmsAccessDenied", "KmsDisabled"})
_MISSING = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"})
RECEIPT_GONE = frozenset({"ReceiptHandleIsInvalid", "InvalidReceiptHandle", "MessageNotInflight"})


class Fatal(Exception):
    """Retrying cannot help (no credentials, access denied, no such queue): exit non-zero."""

# -- queues -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Queue:
    url: str
    name: str  #: the metrics label and the name in logs: the queue's name, never the account id
    endpoint_url: str | None  #: None: the regional AWS endpoint botocore resolves
    region: str | None


_AWS_HOST = re.compile(r"^(?:sqs[.-](?P<a>[a-z0-9-]+)|(?P<b>[a-z0-9-]+)\.queue)\.amazonaws\.com(?:\.cn)?$")


def queues_of(config: Config) -> list[Queue]:
    """The configured queues: their label, endpoint and region (from the URL when it is an AWS one)."""
    sqs = config.sqs
    if not sqs.queue_urls:
        raise ConfigError("sqs.queue_urls is empty: set the queue(s) to drain (env BRIDGE_SQS_QUEUE_URLS, "
                          "comma-separated), e.g. https://sqs.us-east-1.amazonaws.com/123456789012/canvas-live-events")
    out: list[Queue] = []
    names: set[str] = set()
    for url in sqs.queue_urls:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        name = parts.path.rstrip("/").rsplit("/", 1)[-1]
        label, n = name, 2
        while label in names:  # the same name in two accounts or regions
            label, n = f"{name}-{n}", n + 1
        names.add(label)
        aws = _AWS_HOST.match(host)
        url_region = (aws.group("a") or aws.group("b")) if aws else None
        if url_region == "us-east-1" and host.startswith("queue."):
            url_region = None
        endpoint = sqs.endpoint_url.rstrip("/") or (None if host.endswith((".amazonaws.com", ".amazonaws.com.cn"))
                                                    else f"{parts.scheme}://{parts.netloc}")
        out.append(Queue(url, label, endpoint, sqs.region or url_region))
    return out


def error_kind(exc: BaseException) -> str:
    """A bounded name for an SQS failure (the ``error`` label of the receive errors)."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _THROTTLED or status == 429:
            return "throttled"
        if code in _MISSING:
            return "missing"
        if code in _DENIED or status in (401, 403):
            return "denied"
        if status >= 500:
            return "server"
        return "other"
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return "denied"
    if isinstance(exc, BotoConnectionError | HTTPClientError | OSError | TimeoutError):
        return "unreachable"
    return "other"


def describe(exc: BaseException) -> str:
    """One line for a log: the error's type and message (botocore messages carry no secret)."""
    return f"{type(exc).__name__}: {exc}"[:300]


async def report_queue_depths(queues: list[Queue], clients: dict[str, SQSClient]) -> None:
    """Every ``QUEUE_STATS_INTERVAL_S``: each queue's own approximate counts, as a gauge by state."""
    states: dict[QueueAttributeFilterType, str] = {
        "ApproximateNumberOfMessages": "visible", "ApproximateNumberOfMessagesNotVisible": "in_flight",
        "ApproximateNumberOfMessagesDelayed": "delayed"}
    while True:
        for queue in queues:
            try:
                attrs = (await clients[queue.name].get_queue_attributes(
                    QueueUrl=queue.url, AttributeNames=list(states)))["Attributes"]
            except SQS_ERRORS:
                continue  # the pollers report SQS errors
            for attr, state in states.items():
                if attr in attrs:
                    metrics.SQS_QUEUE_MESSAGES.labels(queue.name, state).set(float(attrs[attr]))
        await anyio.sleep(QUEUE_STATS_INTERVAL_S)
