# syntax=docker/dockerfile:1
# canvas-bridge container image.
#   docker build -t canvas-bridge .
#   docker run --rm -e BRIDGE_KAFKA_BOOTSTRAP_SERVERS=broker:9092 -p 8080:8080 canvas-bridge
# Stage 1 builds a virtualenv with the package and its `fast` extra (uvloop); stage 2 copies
# only that virtualenv into a clean slim image. All dependencies ship manylinux wheels, so no
# compiler or apt package is needed in either stage.

FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# README* : pyproject.toml names README.md as the long description; the glob keeps the
# build working while it is absent (pyproject.toml always matches, so COPY never fails).
COPY pyproject.toml README* ./
COPY bridge ./bridge
# "./[fast]" is this local project plus its `fast` extra: nothing to pin (the dependencies
# carry their version ranges in pyproject.toml). Written as a path so hadolint's DL3013
# recognises a local install.
RUN pip install --no-cache-dir "./[fast]" \
 && python -m compileall -q /opt/venv/lib


FROM python:3.11-slim

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

# No curl in the slim image: probe /healthz with the interpreter that is already there.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('BRIDGE_HTTP_PORT', '8080'); sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:' + port + '/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["canvas-bridge"]
CMD ["run"]
