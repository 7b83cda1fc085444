# Support KPI stream processor: one worker image (also runs the traffic simulator).
# Build:  docker build -t support-kpi-streams .
# Run:    docker run -e SUPPORT_KAFKA_BOOTSTRAP=broker:9092 -p 6066:6066 support-kpi-streams
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Every runtime dependency ships a manylinux wheel, so no compiler is needed.
WORKDIR /src
COPY . .
RUN pip install . \
    && rm -rf /src \
    && useradd --system --uid 10001 --create-home --home-dir /var/lib/support-kpi app

# Faust keeps its local table state (and RocksDB files with rocksdb://) under the
# working directory, so it must be writable by the non-root user.
USER app
WORKDIR /var/lib/support-kpi

ENV SUPPORT_WEB_PORT=6066
EXPOSE 6066

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=4 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ.get('SUPPORT_WEB_PORT', '6066'), timeout=4)"]

CMD ["support-kpi-worker"]
