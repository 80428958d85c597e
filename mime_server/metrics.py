"""Prometheus metrics shared by both services: HTTP RED metrics, runtime collectors, exposition."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client import exposition as text_exposition
from prometheus_client.openmetrics import exposition as openmetrics_exposition
from starlette.requests import Request
from starlette.responses import Response

from mime_server.buckets import LATENCY_BUCKETS


class HttpMetrics:
    """Request count, latency histogram (with trace exemplars) and in-flight gauge for one service."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.service = service
        self.registry = registry
        self.requests = Counter("http_requests_total", "HTTP requests answered.",
                                ["service", "method", "route", "code"], registry=registry)
        self.duration = Histogram("http_request_duration_seconds", "HTTP request latency.",
                                  ["service", "method", "route"], buckets=LATENCY_BUCKETS, registry=registry)
        self.in_flight = Gauge("http_requests_in_flight", "HTTP requests being served.",
                               ["service"], registry=registry).labels(service=service)

    def observe(self, method: str, route: str, status: int, seconds: float, trace_id: str | None) -> None:
        self.requests.labels(self.service, method, route, str(status)).inc()
        exemplar = {"trace_id": trace_id} if trace_id else None
        self.duration.labels(self.service, method, route).observe(seconds, exemplar=exemplar)


def new_registry() -> CollectorRegistry:
    """A registry with the process, platform and GC collectors (no global state shared between apps)."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def metrics_response(request: Request, registry: CollectorRegistry) -> Response:
    """The /metrics answer: OpenMetrics (with exemplars) when the scraper asks for it, else text 0.0.4."""
    if "application/openmetrics-text" in request.headers.get("accept", ""):
        return Response(openmetrics_exposition.generate_latest(registry),
                        media_type=openmetrics_exposition.CONTENT_TYPE_LATEST)
    # 0.0.4 is the text format every Prometheus version parses; our names are all legacy-safe.
    return Response(text_exposition.generate_latest(registry), media_type=text_exposition.CONTENT_TYPE_PLAIN_0_0_4)


SIZE_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)


class MimeMetrics:
    """mime-server's own metrics: upload sizes, detections by type, stored objects, injected faults."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.upload_bytes = Histogram("mime_upload_bytes", "Size of accepted uploads and detect bodies.",
                                      ["service", "endpoint"], buckets=SIZE_BUCKETS, registry=registry)
        self.detections = Counter("mime_detections_total", "Detections by detected MIME type.",
                                  ["service", "mime_type"], registry=registry)
        self.uploads = Counter("mime_uploads_total", "Stored uploads by outcome (created or deduplicated).",
                               ["service", "outcome"], registry=registry)
        self.stored_objects = Gauge("mime_stored_objects", "Objects in storage.", ["service"],
                                    registry=registry).labels(service=service)
        self.stored_bytes = Gauge("mime_stored_bytes", "Bytes of objects in storage.", ["service"],
                                  registry=registry).labels(service=service)
        self.faults = Counter("mime_faults_injected_total", "Requests failed by fault injection.",
                              ["service"], registry=registry).labels(service=service)
        self.service = service


class GatewayMetrics:
    """mockup-gateway's own metrics: upstream errors by reason, rate-limited and unauthorised requests,
    and requests refused for their address's failed authentications."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.upstream_errors = Counter("gateway_upstream_errors_total", "Failed upstream calls by reason.",
                                       ["service", "reason"], registry=registry)
        self.rate_limited = Counter("gateway_rate_limited_total", "Requests refused by the rate limiter.",
                                    ["service"], registry=registry).labels(service=service)
        self.unauthorized = Counter("gateway_unauthorized_total", "Requests refused for a missing or bad key.",
                                    ["service"], registry=registry).labels(service=service)
        self.auth_limited = Counter("gateway_auth_rate_limited_total",
                                    "Requests refused (429) because their client address failed authentication "
                                    "too often.", ["service"], registry=registry).labels(service=service)
        self.service = service
