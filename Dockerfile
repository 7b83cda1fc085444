# Support KPI stream processor: one worker image (also runs the traffic simulator).
# Build:  docker build --build-arg REVISION="$(git rev-parse --short=12 HEAD)" -t support-kpi-streams .
# Run:    docker run -e SUPPORT_KAFKA_BOOTSTRAP=broker:9092 -p 6066:6066 support-kpi-streams
# Smaller, without RocksDB (SUPPORT_STORE=rocksdb:// is then refused at start):
#         docker build --build-arg EXTRAS= -t support-kpi-streams:slim .
ARG PYTHON_IMAGE=python:3.11-slim

# -- build: a virtual environment with the dependencies, then the package -------------------
FROM ${PYTHON_IMAGE} AS build

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv

# Dependencies first, in their own layer: rebuilt only when pyproject.toml (or EXTRAS)
# changes. Every one ships a manylinux wheel (RocksDB included), so no compiler is needed.
ARG EXTRAS=rocksdb
WORKDIR /src
COPY pyproject.toml scripts/pyproject-requirements.py ./
RUN EXTRAS="$EXTRAS" python pyproject-requirements.py > requirements.txt \
    && pip install -r requirements.txt

# Then the source: a change here reinstalls only the package itself.
COPY README.md LICENSE ./
COPY streams ./streams
RUN pip install --no-deps . \
    && pip check

# -- runtime: the virtual environment only, as a non-root user -------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/support-kpi app
COPY --from=build /opt/venv /opt/venv

# Faust keeps its local table state (and RocksDB files with rocksdb://) under the
# working directory, so it must be writable by the non-root user.
USER app
WORKDIR /var/lib/support-kpi

ENV SUPPORT_WEB_PORT=6066
EXPOSE 6066

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=4 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ.get('SUPPORT_WEB_PORT', '6066'), timeout=4)"]

# Last, so that a new revision changes only these small layers. VERSION follows
# streams.__version__ (a test checks it); REVISION is logged at start as the revision.
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="support-kpi-streams" \
      org.opencontainers.image.description="Real-time support KPI stream processor: Faust worker exposing exact rolling KPIs on /metrics and a KPI topic" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="$PYTHON_IMAGE"
ENV BUILD_REVISION=$REVISION

CMD ["support-kpi-worker"]
