# syntax=docker/dockerfile:1
# canvas-bridge container image: one image for every command (run, transform, replay, and the
# ingest commands), `run` by default.
#   docker build -t canvas-bridge .
#   docker run --rm -e BRIDGE_KAFKA_BOOTSTRAP_SERVERS=broker:9092 -p 8080:8080 canvas-bridge
#   docker run --rm -i canvas-bridge transform < events.jsonl
# Stage 1 builds a virtualenv with the package and its `fast` extra (uvloop); stage 2 copies
# only that virtualenv into a clean image of the same base. All dependencies ship manylinux
# wheels, so no compiler or apt package is needed in either stage.
#
# BASE_IMAGE is any Debian-like image with Python >= 3.11 (`python3` with venv, `useradd`) and
# the interpreter at the same path in both stages. The default is what users pull; the tests
# build on a base made locally from Debian's packages (scripts/base-image, docs/deployment.md "The image").
# At run time the image needs no shell and writes nothing outside /tmp, so it runs with a
# read-only root filesystem and /tmp as a tmpfs.

ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# README* : pyproject.toml names README.md as the long description; the glob keeps the
# build working while it is absent (pyproject.toml always matches, so COPY never fails).
COPY pyproject.toml README* ./
COPY bridge ./bridge
# "./[fast]" is this local project plus its `fast` extra: nothing to pin (the dependencies
# carry their version ranges in pyproject.toml). Written as a path so hadolint's DL3013
# recognises a local install. pip's download cache lives in a build cache mount: a rebuild
# after a source change reuses the wheels, and the cache never reaches the image.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install "./[fast]" \
 && python -m compileall -q /opt/venv/lib


FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="canvas-bridge" \
      org.opencontainers.image.description="Canvas LMS Live Events from a raw Kafka topic to typed topics" \
      org.opencontainers.image.licenses="AGPL-3.0-or-later"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BRIDGE_HTTP_HOST=0.0.0.0

RUN groupadd --system --gid 10001 bridge \
 && useradd --system --no-log-init --uid 10001 --gid bridge --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin bridge

COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
WORKDIR /tmp
EXPOSE 8080

# Exec form, no shell: probe /healthz with the interpreter that is already there (no curl).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('BRIDGE_HTTP_PORT', '8080'); sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:' + port + '/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["canvas-bridge"]
CMD ["run"]
