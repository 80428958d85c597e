"""Running an app of either service on uvicorn, behind the HTTP edge that enforces the service's limits."""

from __future__ import annotations

import uvicorn
from opentelemetry.trace import TracerProvider
from starlette.types import ASGIApp

from mime_server.edge import EdgeRecorder, edge_protocol
from mime_server.limits import EdgeLimits
from mime_server.logs import uvicorn_log_config


def uvicorn_config(app: ASGIApp, host: str, port: int, limits: EdgeLimits, recorder: EdgeRecorder,
                   log_config: dict[str, object] | None) -> uvicorn.Config:
    """uvicorn's configuration for a service: httptools under the edge protocol, no WebSockets,
    the keep-alive timeout of ``limits``, no headers of its own but Date."""
    return uvicorn.Config(app, host=host, port=port, http=edge_protocol(limits, recorder), ws="none",
                          lifespan="on", log_config=log_config, access_log=False, server_header=False,
                          proxy_headers=False, timeout_keep_alive=limits.keepalive_timeout,  # type: ignore[arg-type]
                          timeout_graceful_shutdown=10)


def run(app: ASGIApp, host: str, port: int, service: str, tracer_provider: TracerProvider | None,
        limits: EdgeLimits, recorder: EdgeRecorder) -> None:
    """Serve ``app`` until SIGTERM/SIGINT, then flush pending spans."""
    config = uvicorn_config(app, host, port, limits, recorder, uvicorn_log_config(service))
    try:
        uvicorn.Server(config).run()
    finally:
        shutdown = getattr(tracer_provider, "shutdown", None)
        if shutdown is not None:
            shutdown()
