"""Tracing set-up from OTEL_* variables, and spans really leaving over OTLP/HTTP to a local collector."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NoOpTracerProvider
from starlette.testclient import TestClient

from bench.mime_server import OtlpSink
from config.settings import PROJECT_DIR as REPO
from mime_server.app import ServerSettings, create_app
from mime_server.tracing import TracingConfigError, otlp_exporter, tracer_provider_from_env


def received_spans(sink: OtlpSink) -> list[tuple[str, str]]:
    """(service.name, span name) of every span the sink received."""
    found = []
    for body in sink.bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            service = next(a.value.string_value for a in resource_spans.resource.attributes
                           if a.key == "service.name")
            found += [(service, span.name) for scope in resource_spans.scope_spans for span in scope.spans]
    return found


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    collector = OtlpSink(keep_bodies=True)
    yield collector
    collector.server.shutdown()


def test_traces_exporter_none_disables_tracing() -> None:
    assert isinstance(tracer_provider_from_env("mime-server", {"OTEL_TRACES_EXPORTER": "none"}), NoOpTracerProvider)
    assert isinstance(tracer_provider_from_env("mime-server", {"OTEL_SDK_DISABLED": "true"}), NoOpTracerProvider)


def test_protocol_selects_the_exporter() -> None:
    assert isinstance(otlp_exporter({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}), GrpcExporter)
    assert isinstance(otlp_exporter({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}), HttpExporter)
    assert isinstance(otlp_exporter({}), HttpExporter)
    assert isinstance(otlp_exporter({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                                     "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}), GrpcExporter)


def test_the_fast_encoder_is_used_only_with_the_opentelemetry_it_was_checked_against(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from mime_server import otel_internals, otlp

    assert otel_internals.usable(), otel_internals.mismatches()  # the pinned versions
    assert type(otlp_exporter({})) is otlp.HttpSpanExporter
    monkeypatch.setattr(otel_internals, "version", lambda name: "1.99.0")
    assert otel_internals.mismatches() == {name: "1.99.0" for name in otel_internals.CHECKED}
    assert type(otlp_exporter({})) is HttpExporter  # the official one, unchanged
    assert type(otlp_exporter({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})) is GrpcExporter


def test_the_checked_versions_are_the_pinned_ones() -> None:
    from mime_server import otel_internals

    pins = dict(line.split("==") for line in (REPO / "mime_server" / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert {name: pins.get(name) for name in otel_internals.CHECKED} == otel_internals.CHECKED


def test_unsupported_settings_are_refused_with_the_value() -> None:
    with pytest.raises(TracingConfigError, match="'http/json'"):
        otlp_exporter({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    with pytest.raises(TracingConfigError, match="'zipkin'"):
        tracer_provider_from_env("mime-server", {"OTEL_TRACES_EXPORTER": "zipkin"})


def test_spans_reach_an_otlp_http_collector(sink: OtlpSink, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    provider = tracer_provider_from_env("mime-server")
    assert isinstance(provider, TracerProvider)
    app = create_app(ServerSettings(storage=tmp_path / "s"), tracer_provider=provider)
    with TestClient(app) as client:
        assert client.post("/v1/files", content=b"exported\n").status_code == 201
    assert provider.force_flush(5000)
    provider.shutdown()
    spans = received_spans(sink)
    assert ("mime-server", "POST /v1/files") in spans
    assert ("mime-server", "detect") in spans and ("mime-server", "storage.write") in spans


def test_otel_service_name_overrides_the_default(sink: OtlpSink, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "mime-server-canary")
    provider = tracer_provider_from_env("mime-server")
    with TestClient(create_app(ServerSettings(storage=tmp_path / "s"), tracer_provider=provider)) as client:
        client.get("/healthz")
    provider.force_flush(5000)
    provider.shutdown()
    assert ("mime-server-canary", "GET /healthz") in received_spans(sink)


def test_incoming_traceparent_is_continued(tmp_path: Path) -> None:
    from tests.service.conftest import make_server

    harness = make_server(tmp_path)
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    harness.client.get("/healthz", headers={"traceparent": parent})
    (span,) = harness.spans.get_finished_spans()
    assert format(span.context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"
    unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-00"
    harness.client.get("/healthz", headers={"traceparent": unsampled})
    assert len(harness.spans.get_finished_spans()) == 1, "ParentBased sampler must honour an unsampled parent"
