"""The in-place OTLP encoder produces exactly the official encoder's messages; its exporters send them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as official_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace import TraceState, set_span_in_context

from bench.mime_server import OtlpSink
from mime_server.otlp import HttpSpanExporter, encode_spans

REMOTE = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True,
                     trace_flags=TraceFlags(TraceFlags.SAMPLED), trace_state=TraceState([("vendor", "x1")]))


def recorded(resource: Resource) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def varied_spans() -> list[ReadableSpan]:
    """Spans with every field the encoder handles, from two resources (one of them twice) and three scopes."""
    first, first_spans = recorded(Resource.create({"service.name": "mime-server", "deployment.environment": "dev"}))
    twin, twin_spans = recorded(Resource.create({"service.name": "mime-server", "deployment.environment": "dev"}))
    other, other_spans = recorded(Resource({"service.name": "gateway", "replicas": 2, "ratio": 0.5},
                                           schema_url="https://opentelemetry.io/schemas/1.21.0"))
    tracer = first.get_tracer("mime_server")
    versioned = first.get_tracer("mime_server.storage", "1.2.3", schema_url="https://example.test/schema",
                                 attributes={"scope.kind": "storage"})
    with tracer.start_as_current_span("POST /v1/files", context=set_span_in_context(NonRecordingSpan(REMOTE)),
                                      kind=SpanKind.SERVER,
                                      attributes={"http.request.method": "POST", "http.response.status_code": 201,
                                                  "retry": False, "duration.ratio": 0.25, "tags": ["a", "b"],
                                                  "codes": (200, 201), "flags": [True, False], "big": -(2 ** 62),
                                                  "weights": [0.5, 1.5]}) as server:
        server.add_event("body received", {"bytes": 65536, "multipart": False})
        server.add_event("no attributes")
        with versioned.start_as_current_span("storage.write", links=[Link(REMOTE, {"link.reason": "retry"}),
                                                                     Link(server.get_span_context())]) as child:
            child.set_status(Status(StatusCode.ERROR, "disk full"))
        with tracer.start_as_current_span("detect", kind=SpanKind.INTERNAL) as detect:
            detect.set_status(Status(StatusCode.OK))
    for kind in (SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER):
        other.get_tracer("gateway").start_span(f"kind {kind.name}", kind=kind).end()
    twin.get_tracer("mime_server").start_span("twin resource, same scope name").end()
    raw = ReadableSpan(name="unusual values", context=SpanContext(1, 2, is_remote=False),
                       attributes={"bytes": b"\x00\xff", "map": {"k": "v", "n": 1}, "empty": None,
                                   "unencodable": object()},
                       events=[Event("e", {"x": 1}, timestamp=5)], resource=first.resource,
                       instrumentation_scope=None, start_time=1, end_time=2)
    spans = [*first_spans.get_finished_spans(), *other_spans.get_finished_spans(),
             *twin_spans.get_finished_spans(), raw]
    # Interleave resources so grouping, not input order, decides the layout.
    return spans[::2] + spans[1::2]


def test_encoding_equals_the_official_encoder() -> None:
    spans = varied_spans()
    ours, theirs = encode_spans(spans), official_encode(spans)
    assert ours == theirs
    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(deterministic=True)
    # Equal resources are merged into one group, as the official encoder (which keys by value) does.
    assert len(ours.resource_spans) == 2
    assert sum(len(scope.spans) for rs in ours.resource_spans for scope in rs.scope_spans) == len(spans)


def test_each_span_alone_encodes_identically() -> None:
    for span in varied_spans():
        assert encode_spans([span]) == official_encode([span]), span.name


def test_status_and_remote_parent_fields() -> None:
    spans = {span.name: span for span in varied_spans()}
    request = encode_spans([spans["POST /v1/files"], spans["storage.write"]])
    server, child = (span for rs in request.resource_spans for scope in rs.scope_spans for span in scope.spans)
    assert server.parent_span_id == REMOTE.span_id.to_bytes(8, "big")
    assert server.flags == 0x300  # has-is-remote + is-remote: the parent came over the wire
    assert server.trace_state == "vendor=x1"
    assert server.HasField("status") and server.status.code == 0
    assert child.status.code == 2 and child.status.message == "disk full"
    assert [link.flags for link in child.links] == [0x300, 0x100]


def test_empty_batch() -> None:
    assert encode_spans([]) == official_encode([]) == ExportTraceServiceRequest()


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    collector = OtlpSink(keep_bodies=True)
    yield collector
    collector.server.shutdown()


def test_http_exporter_posts_the_encoded_batch(sink: OtlpSink) -> None:
    spans = varied_spans()
    exporter = HttpSpanExporter(endpoint=f"{sink.url}/v1/traces")
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert [ExportTraceServiceRequest.FromString(body) for body in sink.bodies] == [official_encode(spans)]
    exporter.shutdown()
    assert exporter.export(spans) is SpanExportResult.FAILURE  # after shutdown, as the official exporter


def test_http_exporter_refuses_an_oversized_batch(sink: OtlpSink) -> None:
    exporter = HttpSpanExporter(endpoint=f"{sink.url}/v1/traces", max_request_size=100)
    assert exporter.export(varied_spans()) is SpanExportResult.FAILURE
    assert sink.bodies == []


def test_http_exporter_reports_a_collector_error() -> None:
    exporter = HttpSpanExporter(endpoint="http://127.0.0.1:9/v1/traces", timeout=0.5)
    assert exporter.export(varied_spans()[:1]) is SpanExportResult.FAILURE
