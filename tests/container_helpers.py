"""The container image as users run it: built with podman, the bridge in a container.

``build_image`` builds the Dockerfile with ``scripts/build-image`` (on a base image made from
Debian's packages by ``scripts/base-image``, since no registry can be reached). ``BridgeContainer``
is ``canvas-bridge run`` in that image, as a ``BridgeProcess``: ``podman run`` stays attached in
the foreground, so its exit status is the container's and its output is the container's log,
and everything ``BridgeProcess`` offers (readiness, metrics, log tail) works unchanged.

Every container runs the way the README and the Kubernetes manifests run it: a read-only root
filesystem with /tmp as a tmpfs, the image's non-root user, host networking for the test broker,
and a file-descriptor limit with headroom. The shells of the image are masked (``--security-opt
mask=``), so anything that needed one at run time would fail.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.kafka_helpers import REPO, BridgeProcess, unique

BUILD_IMAGE = REPO / "scripts" / "build-image"
#: The image's shells (Debian: /bin/sh is dash). Masked in every container the tests start.
SHELLS = ("/usr/bin/dash", "/usr/bin/bash")
IMAGE_UID = 10001
NOFILE = 65536  # what docker-compose.yml sets, if the host allows that much


def podman_global() -> list[str]:
    """podman with the OCI runtime the build script also uses (runc when installed: crun refuses
    to start containers on hosts with hybrid cgroups)."""
    runtime = os.environ.get("CONTAINER_RUNTIME") or shutil.which("runc")
    return ["podman", "--runtime", runtime] if runtime else ["podman"]


def limit_flags() -> list[str]:
    """A file-descriptor and process limit no higher than the host lets a container have."""
    nofile = min(NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    nproc_hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nproc = 4096 if nproc_hard == resource.RLIM_INFINITY else min(4096, nproc_hard)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


def hardened_flags() -> list[str]:
    """Read-only root filesystem, /tmp as a tmpfs, no shell, no privilege escalation."""
    return ["--read-only", "--tmpfs", "/tmp:rw,size=64m,mode=1777", "--security-opt", "no-new-privileges",
            "--cap-drop", "all", "--security-opt", "mask=" + ":".join(SHELLS), *limit_flags()]


def podman(*args: str, timeout: float = 120, check: bool = True, input: bytes | None = None,
           ) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run([*podman_global(), *args], capture_output=True, timeout=timeout, input=input,
                            check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])}... exited {result.returncode}:\n"
                             f"{result.stderr.decode(errors='replace')}")
    return result


def build_image(tag: str, *extra: str, timeout: float = 1200) -> float:
    """Build the Dockerfile as ``tag``; return the seconds it took."""
    started = time.monotonic()
    result = subprocess.run([str(BUILD_IMAGE), tag, *extra], capture_output=True, text=True, timeout=timeout,
                            check=False)
    if result.returncode != 0:
        raise AssertionError(f"scripts/build-image failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return time.monotonic() - started


def image_inspect(tag: str) -> dict[str, Any]:
    out: list[dict[str, Any]] = json.loads(podman("image", "inspect", tag).stdout)
    return out[0]


class BridgeContainer(BridgeProcess):
    """``canvas-bridge run`` in the image, configured through BRIDGE_* variables like BridgeProcess."""

    def __init__(self, image: str, bootstrap: str, raw_topic: str, group: str, log_path: Path,
                 **settings: str) -> None:
        super().__init__(bootstrap, raw_topic, group, log_path, **settings)
        self.image = image
        self.name = unique("canvas-bridge")

    def start(self) -> BridgeContainer:
        env = [f"--env={k}={v}" for k, v in sorted(self.env.items()) if k.startswith("BRIDGE_")]
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [*podman_global(), "run", "--name", self.name, "--network", "host", *hardened_flags(), *env,
             self.image, "run"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        return self

    def inspect(self) -> dict[str, Any]:
        out: list[dict[str, Any]] = json.loads(podman("container", "inspect", self.name).stdout)
        return out[0]

    def exec(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        return podman("exec", self.name, *argv, timeout=timeout, check=False)

    def stop(self, timeout: int) -> tuple[int, float]:
        """``podman stop -t timeout``: SIGTERM, SIGKILL after ``timeout`` s. Returns (exit code, seconds)."""
        assert self.proc is not None
        started = time.monotonic()
        podman("stop", "-t", str(timeout), self.name, timeout=timeout + 60)
        code = self.proc.wait(30)
        return code, time.monotonic() - started

    def terminate(self, timeout: float = 60.0) -> int:
        return self.stop(int(timeout))[0]

    def kill(self) -> None:
        podman("kill", self.name, check=False)
        if self.proc is not None:
            self.proc.wait(30)

    def remove(self) -> None:
        podman("rm", "--force", "--time", "0", self.name, check=False)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.wait(30)

    def __exit__(self, *exc: object) -> None:
        self.remove()
