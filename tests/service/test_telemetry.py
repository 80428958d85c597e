"""Tracing set-up from OTEL_* variables, and spans really leaving over OTLP/HTTP to a local collector."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NoOpTracerProvider
from starlette.testclient import TestClient

from mime_server.app import ServerSettings, create_app
from mime_server.tracing import TracingConfigError, otlp_exporter, tracer_provider_from_env


class OtlpSink:
    """A stand-in OTLP/HTTP collector on 127.0.0.1 that keeps every POSTed /v1/traces body."""

    def __init__(self) -> None:
        bodies: list[bytes] = []
        self.bodies = bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path == "/v1/traces":
                    bodies.append(body)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list[tuple[str, str]]:
        """(service.name, span name) of every span received."""
        found = []
        for body in self.bodies:
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                service = next(a.value.string_value for a in resource_spans.resource.attributes
                               if a.key == "service.name")
                found += [(service, span.name) for scope in resource_spans.scope_spans for span in scope.spans]
        return found


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    collector = OtlpSink()
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
    spans = sink.spans()
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
    assert ("mime-server-canary", "GET /healthz") in sink.spans()


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
