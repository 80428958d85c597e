"""Dashboard "Service overview": RED metrics of mime-server and mockup-gateway, with SLO/SLA lines.

Latency and error-ratio panels draw the SLO and SLA thresholds from the stack settings; the
latency panel shows exemplars, which open the request's trace in Jaeger.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from config.grafana.panels import (HALF, THIRD, Query, Step, new_dashboard, service_variable, stat_panel,
                                   timeseries_panel)
from config.settings import StackSettings
from config.slo import GATEWAY, MIME_SERVER

UID = "service-overview"
SERVICES = (MIME_SERVER, GATEWAY)
QUANTILES = (0.5, 0.95, 0.99)
LATENCY_PANEL_TITLE = "Latency p50 / p95 / p99"

# Metric names the panels read, as the services expose them (a test checks a live /metrics).
REQUESTS = "http_requests_total"
DURATION_BUCKET = "http_request_duration_seconds_bucket"
IN_FLIGHT = "http_requests_in_flight"
UPLOAD_BYTES_SUM = "mime_upload_bytes_sum"
DETECTIONS = "mime_detections_total"
UPLOADS = "mime_uploads_total"
STORED_OBJECTS = "mime_stored_objects"
STORED_BYTES = "mime_stored_bytes"
GATEWAY_UPSTREAM_ERRORS = "gateway_upstream_errors_total"
GATEWAY_RATE_LIMITED = "gateway_rate_limited_total"
GATEWAY_UNAUTHORIZED = "gateway_unauthorized_total"
SERVICE_METRICS: tuple[str, ...] = (REQUESTS, DURATION_BUCKET, IN_FLIGHT, UPLOAD_BYTES_SUM, DETECTIONS, UPLOADS,
                                    STORED_OBJECTS, STORED_BYTES)
GATEWAY_METRICS: tuple[str, ...] = (REQUESTS, DURATION_BUCKET, IN_FLIGHT, GATEWAY_RATE_LIMITED,
                                    GATEWAY_UNAUTHORIZED)

SEL = 'service=~"$service"'
RATE = "[$__rate_interval]"


def request_rate() -> str:
    return f"sum by (service) (rate({REQUESTS}{{{SEL}}}{RATE}))"


def error_ratio() -> str:
    """5xx share per service; `or ... * 0` keeps a 0 series while there are no errors at all."""
    errors = f'sum by (service) (rate({REQUESTS}{{{SEL}, code=~"5.."}}{RATE}))'
    return f"({errors} or {request_rate()} * 0) / {request_rate()}"


def latency_quantile(q: float) -> str:
    return f"histogram_quantile({q}, sum by (service, le) (rate({DURATION_BUCKET}{{{SEL}}}{RATE})))"


def slo_sla_steps(slo: float, sla: float) -> list[Step]:
    """Lower is better: orange above the SLO threshold, red above the SLA threshold."""
    return [Step(slo, "orange"), Step(sla, "red")]


def build(settings: StackSettings) -> dashboard.Dashboard:
    """The service overview dashboard for one stack."""
    slo, sla = settings.slo, settings.sla
    latency_steps = slo_sla_steps(slo.latency_seconds, sla.latency_seconds)
    error_steps = slo_sla_steps(slo.error_rate, sla.error_rate)
    return (
        new_dashboard(UID, "Service overview", ["mime-server", "red"],
                      "Request rate, errors and latency of mime-server and mockup-gateway; "
                      f"dashed lines: SLO (orange) and SLA (red) thresholds of stack {settings.stack}.")
        .with_variable(service_variable(SERVICES))
        .with_row(dashboard.Row("Requests"))
        .with_panel(timeseries_panel("Request rate", [Query(request_rate(), "{{service}}")], "reqps",
                                     span=THIRD))
        .with_panel(timeseries_panel(
            "Error ratio (5xx)", [Query(error_ratio(), "{{service}}")], "percentunit", span=THIRD,
            steps=error_steps,
            description=f"SLO {slo.error_rate:g}, SLA {sla.error_rate:g} of requests answered with 5xx."))
        .with_panel(stat_panel("In flight", [Query(f"sum by (service) ({IN_FLIGHT}{{{SEL}}})", "{{service}}")],
                               "short", span=THIRD, base="blue"))
        .with_row(dashboard.Row("Latency"))
        .with_panel(timeseries_panel(
            LATENCY_PANEL_TITLE,
            [Query(latency_quantile(q), f"p{round(q * 100)} {{{{service}}}}", exemplar=True) for q in QUANTILES],
            "s", span=24, steps=latency_steps,
            description=(f"SLO: p{round(slo.latency_percentile * 100)} < {slo.latency_seconds:g} s; "
                         f"SLA: p{round(sla.latency_percentile * 100)} < {sla.latency_seconds:g} s. "
                         "Exemplar dots open the request's trace in Jaeger.")))
        .with_row(dashboard.Row("mime-server"))
        .with_panel(timeseries_panel(
            "Upload bytes", [Query(f"sum by (service, endpoint) (rate({UPLOAD_BYTES_SUM}{{{SEL}}}{RATE}))",
                                   "{{service}} {{endpoint}}")], "Bps", span=THIRD))
        .with_panel(timeseries_panel(
            "Detections by type", [Query(f"sum by (mime_type) (rate({DETECTIONS}{RATE}))", "{{mime_type}}")],
            "reqps", span=THIRD))
        .with_panel(timeseries_panel(
            "Stored objects and bytes",
            [Query(f"sum by (service) ({STORED_OBJECTS})", "objects"),
             Query(f"sum by (service) ({STORED_BYTES})", "bytes")], "short", span=THIRD))
        .with_row(dashboard.Row("mockup-gateway"))
        .with_panel(timeseries_panel(
            "Gateway refusals and upstream errors",
            [Query(f"sum by (service) (rate({GATEWAY_RATE_LIMITED}{RATE}))", "rate limited"),
             Query(f"sum by (service) (rate({GATEWAY_UNAUTHORIZED}{RATE}))", "unauthorised"),
             Query(f"sum by (reason) (rate({GATEWAY_UPSTREAM_ERRORS}{RATE}))", "upstream {{reason}}")],
            "reqps", span=HALF))
        .with_panel(timeseries_panel(
            "Requests by route and code",
            [Query(f"sum by (service, route, code) (rate({REQUESTS}{{{SEL}}}{RATE}))",
                   "{{service}} {{route}} {{code}}")], "reqps", span=HALF))
    )
