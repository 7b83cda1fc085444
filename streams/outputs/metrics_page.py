"""``/metrics``: the worker's Prometheus page, installed on the Faust web server by one call."""

from __future__ import annotations

from typing import Any

import faust
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder


def install_metrics_page(app: faust.App, registry: CollectorRegistry) -> None:
    """Serve ``registry`` at ``/metrics`` of ``app``'s web server."""

    async def metrics_page(web: Any, request: Any) -> Any:
        # Text format 0.0.4, or OpenMetrics when the Accept header asks for it, as
        # prometheus-client's own handler does.
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.bytes(encoder(registry), headers={"Content-Type": content_type})

    app.page("/metrics")(metrics_page)


__all__ = ["install_metrics_page"]
