"""OpenTelemetry tracing set-up from the standard OTEL_* environment variables."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import NoOpTracerProvider
from opentelemetry.trace import TracerProvider as ApiTracerProvider

SUPPORTED_PROTOCOLS = ("grpc", "http/protobuf")


class TracingConfigError(ValueError):
    """An OTEL_* variable has a value this service does not support."""


def otlp_exporter(environ: Mapping[str, str]) -> SpanExporter:
    """The OTLP span exporter for OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL; endpoints come from the env.

    Both are opentelemetry's exporters with the faster encoder of ``mime_server.otlp``, or the
    official ones unchanged when the installed OpenTelemetry is not the version that encoder's
    private parts were checked against (``mime_server.otel_internals``).
    """
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    if protocol not in SUPPORTED_PROTOCOLS:
        raise TracingConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL must be one of {SUPPORTED_PROTOCOLS}, got {protocol!r}")
    from mime_server import otel_internals

    if not otel_internals.usable():
        logging.getLogger(__name__).warning(
            "OpenTelemetry %s is not the version the fast span encoder was checked against (%s): "
            "using the official OTLP exporters", otel_internals.mismatches(), otel_internals.CHECKED)
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as OfficialGrpc

            return OfficialGrpc()
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as OfficialHttp

        return OfficialHttp()
    if protocol == "grpc":
        from mime_server.otlp import GrpcSpanExporter

        return GrpcSpanExporter()
    from mime_server.otlp import HttpSpanExporter

    return HttpSpanExporter()


def make_tracer_provider(service_name: str, exporter: SpanExporter | None,
                         processor: type[BatchSpanProcessor] = BatchSpanProcessor) -> TracerProvider:
    """A ParentBased(ALWAYS_ON) provider for ``service_name`` sending spans to ``exporter`` (if any)."""
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(attributes), sampler=ParentBased(ALWAYS_ON))
    if exporter is not None:
        provider.add_span_processor(processor(exporter))
    return provider


def tracer_provider_from_env(service_name: str,
                             environ: Mapping[str, str] | None = None) -> ApiTracerProvider:
    """Build the provider the OTEL_* variables describe; OTEL_TRACES_EXPORTER=none disables tracing."""
    env = os.environ if environ is None else environ
    exporters = [name.strip() for name in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if name.strip()]
    if exporters in ([], ["none"]) or env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return NoOpTracerProvider()
    if exporters != ["otlp"]:
        raise TracingConfigError(f"OTEL_TRACES_EXPORTER must be 'otlp' or 'none', got {env['OTEL_TRACES_EXPORTER']!r}")
    return make_tracer_provider(service_name, otlp_exporter(env))
