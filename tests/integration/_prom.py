"""A real Prometheus server on loopback for the observability tests.

Started from a generated configuration (JSON is valid YAML) in a temporary folder, with its own
storage; queried through its HTTP API; stopped with SIGTERM (SIGKILL if it does not exit), so no
process is left behind.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.kafka_helpers import free_port, wait_until


class Prometheus:
    def __init__(self, binary: str, workdir: Path, *, scrape_targets: dict[str, list[str]],
                 rule_files: list[Path], interval: str = "1s") -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.config_path = workdir / "prometheus.yml"
        self.log_path = workdir / "prometheus.log"
        config = {
            "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
            "rule_files": [str(p.resolve()) for p in rule_files],
            "scrape_configs": [
                {"job_name": job, "metrics_path": "/metrics", "static_configs": [{"targets": targets}]}
                for job, targets in scrape_targets.items()
            ],
        }
        self.config_path.write_text(json.dumps(config, indent=2))
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> Prometheus:
        storage = self.workdir / "data"
        storage.mkdir(exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed once handed to the process
        self.proc = subprocess.Popen(
            [self.binary,
             f"--config.file={self.config_path}",
             f"--storage.tsdb.path={storage}",
             f"--web.listen-address=127.0.0.1:{self.port}",
             "--storage.tsdb.retention.time=1h",
             "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
        )
        log.close()

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.log_tail()}")
            return self._status("/-/ready") == 200

        wait_until(ready, timeout, "Prometheus to be ready", interval=0.2)
        return self

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""

    # -- HTTP API -----------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.url(path), timeout=2) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return 0

    def api(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """GET an /api/v1 endpoint; the decoded JSON answer (errors included: status "error")."""
        url = self.url(path) + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return dict(json.loads(resp.read()))
        except urllib.error.HTTPError as exc:  # 400/422/503 carry a JSON error body
            body = exc.read()
            try:
                return dict(json.loads(body))
            except ValueError:
                return {"status": "error", "errorType": str(exc.code), "error": body.decode(errors="replace")}

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("/api/v1/query", {"query": expr})

    def samples(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """An instant vector's (labels, value) pairs; a scalar as one pair without labels."""
        answer = self.query(expr)
        assert answer.get("status") == "success", f"query {expr!r} failed: {answer}"
        data = answer["data"]
        if data["resultType"] == "vector":
            return [(r["metric"], float(r["value"][1])) for r in data["result"]]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        raise AssertionError(f"query {expr!r}: unexpected result type {data['resultType']}")
