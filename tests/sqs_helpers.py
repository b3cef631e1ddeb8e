"""Test helpers for SQS: a client of the real ElasticMQ server (scripts/sqs-local), and
``canvas-bridge ingest-sqs`` as a real subprocess.

The client is botocore's synchronous one: an independent implementation of the SQS protocol
(the ingest uses aiobotocore). ElasticMQ accepts any credentials; the tests pass fixed ones
through the environment, as an operator would (the standard AWS chain).
"""

from __future__ import annotations

import os
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import botocore.session
from botocore.config import Config

from tests.kafka_helpers import REPO, BridgeProcess, unique

SQS_LOCAL = REPO / "scripts" / "sqs-local"
REGION = "us-east-1"
#: Credentials for ElasticMQ (it checks none). Distinctive, so a test can look for them in logs.
ACCESS_KEY_ID = "AKIACANVASBRIDGETEST"
SECRET_ACCESS_KEY = "canvas-bridge-test-secret-Zq8vR2mN"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
    "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
    "AWS_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",  # never wait for an instance metadata service
}


@dataclass
class ElasticMQ:
    """One ElasticMQ server run by scripts/sqs-local in its own state folder."""

    endpoint: str
    state_dir: Path | None  # None: an external server the tests must not stop

    def _env(self) -> dict[str, str]:
        assert self.state_dir is not None
        return {**os.environ, "SQS_LOCAL_DIR": str(self.state_dir)}

    @classmethod
    def start_in(cls, state_dir: Path) -> ElasticMQ:
        out = subprocess.run([str(SQS_LOCAL), "start"], env={**os.environ, "SQS_LOCAL_DIR": str(state_dir)},
                             capture_output=True, text=True, timeout=180)
        if out.returncode != 0:
            raise RuntimeError(f"scripts/sqs-local start failed ({out.returncode}):\n{out.stderr}")
        return cls(out.stdout.strip().splitlines()[-1], state_dir)

    def start(self) -> None:
        out = subprocess.run([str(SQS_LOCAL), "start"], env=self._env(), check=True, capture_output=True,
                             text=True, timeout=180)
        assert out.stdout.strip().splitlines()[-1] == self.endpoint, "ElasticMQ came back on another address"

    def stop(self) -> None:
        subprocess.run([str(SQS_LOCAL), "stop"], env=self._env(), check=True, capture_output=True, timeout=60)

    def client(self) -> Sqs:
        return Sqs(self.endpoint)


class Sqs:
    """A few SQS calls, synchronous, for setting up and checking queues."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self._client: Any = botocore.session.get_session().create_client(
            "sqs", region_name=REGION, endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            config=Config(max_pool_connections=16, retries={"mode": "standard", "max_attempts": 5}),
        )

    def create_queue(self, name: str | None = None, *, visibility_timeout_s: int = 30,
                     dead_letter_after: int = 0) -> str:
        """A fresh ``canvas-live-events-*`` queue (or ``name``); with a dead-letter queue when ``dead_letter_after``."""
        attrs = {"VisibilityTimeout": str(visibility_timeout_s)}
        if dead_letter_after:
            dlq = self._client.create_queue(QueueName=unique("canvas-live-events-dlq"))["QueueUrl"]
            arn = self.attributes(dlq, "QueueArn")["QueueArn"]
            attrs["RedrivePolicy"] = f'{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"{dead_letter_after}"}}'
        return str(self._client.create_queue(QueueName=name or unique("canvas-live-events"), Attributes=attrs)
                   ["QueueUrl"])

    def dead_letter_queue(self, url: str) -> str:
        """The URL of a queue's dead-letter queue (from its redrive policy)."""
        import json

        arn = json.loads(self.attributes(url, "RedrivePolicy")["RedrivePolicy"])["deadLetterTargetArn"]
        return str(self._client.get_queue_url(QueueName=arn.rsplit(":", 1)[1])["QueueUrl"])

    def attributes(self, url: str, *names: str) -> dict[str, str]:
        return dict(self._client.get_queue_attributes(QueueUrl=url, AttributeNames=list(names) or ["All"])
                    ["Attributes"])

    def send(self, url: str, bodies: Sequence[str], *, threads: int = 4) -> int:
        """Send every body (batches of 10, a few in parallel); fail on any refused entry."""
        batches = [bodies[i:i + 10] for i in range(0, len(bodies), 10)]

        def send_batch(batch: Sequence[str]) -> int:
            response = self._client.send_message_batch(
                QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(batch)])
            assert not response.get("Failed"), response["Failed"]
            return len(response.get("Successful", []))

        with ThreadPoolExecutor(threads) as pool:
            return sum(pool.map(send_batch, batches))

    def counts(self, url: str) -> tuple[int, int, int]:
        """(visible, in flight, delayed): ElasticMQ's counts are exact."""
        a = self.attributes(url, "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                            "ApproximateNumberOfMessagesDelayed")
        return (int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"]),
                int(a["ApproximateNumberOfMessagesDelayed"]))

    def total(self, url: str) -> int:
        return sum(self.counts(url))

    def receive_all(self, url: str, *, visibility_timeout_s: int = 30) -> list[str]:
        """Receive (without deleting) every visible message: the bodies left in a queue."""
        out: list[str] = []
        while True:
            got = self._client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                               VisibilityTimeout=visibility_timeout_s).get("Messages", [])
            if not got:
                return out
            out += [m["Body"] for m in got]


class SqsFeeder:
    """Sends one new message every ``period`` seconds in a thread, so that every rate over the last
    minute is non-zero; ``sent`` counts them."""

    def __init__(self, sqs: Sqs, url: str, body: Callable[[], bytes], period: float = 0.25) -> None:
        self.sqs, self.url, self.body, self.period = sqs, url, body, period
        self.sent = 0
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="sqs-feeder", daemon=True)

    def _main(self) -> None:
        try:
            while not self._stop.wait(self.period):  # pacing the load, not synchronization
                self.sent += self.sqs.send(self.url, [self.body().decode()], threads=1)
        except BaseException as exc:  # reported by __exit__
            self._error = exc

    def __enter__(self) -> SqsFeeder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the SQS feeder thread did not stop"
        if self._error is not None and exc[0] is None:
            raise AssertionError(f"the SQS feeder failed: {self._error!r}") from self._error


class ThrottlingProxy:
    """An HTTP proxy in front of the real ElasticMQ that, while ``throttle`` is set, answers every
    request the way SQS does when it throttles (HTTP 400, error code ``RequestThrottled``) and
    otherwise forwards it unchanged. ElasticMQ cannot be made to throttle; this puts SQS's answer
    on the wire, and the client under test parses it with its own protocol code."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.throttle = False
        self.throttled = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.throttle:
                    proxy.throttled += 1
                    self._answer(400, {"Content-Type": "application/x-amz-json-1.0",
                                       "x-amzn-query-error": "RequestThrottled;Sender"},
                                 b'{"__type":"com.amazonaws.sqs#RequestThrottled","message":"Rate exceeded"}')
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                request = urllib.request.Request(proxy.upstream + self.path, data=body, headers=headers,
                                                 method="POST")
                try:
                    with urllib.request.urlopen(request, timeout=30) as resp:
                        self._answer(resp.status, {"Content-Type": resp.headers.get("Content-Type", "")}, resp.read())
                except urllib.error.HTTPError as exc:
                    self._answer(exc.code, {"Content-Type": exc.headers.get("Content-Type", "")}, exc.read())

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client left (a long poll cancelled at shutdown)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="sqs-proxy", daemon=True)

    def __enter__(self) -> ThrottlingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


class IngestSqsProcess(BridgeProcess):
    """``canvas-bridge ingest-sqs`` as a real subprocess: the AWS chain gets the test credentials."""

    command = "ingest-sqs"

    def __init__(self, bootstrap: str, raw_topic: str, queue_urls: Iterable[str], log_path: Path,
                 **settings: str) -> None:
        super().__init__(bootstrap, raw_topic, "unused", log_path, **settings)
        for key in [k for k in self.env if k.startswith("AWS_")]:
            del self.env[key]
        self.env.update(AWS_ENV)
        self.env.setdefault("BRIDGE_SQS_QUEUE_URLS", ",".join(queue_urls))
        self.env.setdefault("BRIDGE_SQS_REGION", REGION)
