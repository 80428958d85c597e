"""OTLP span export with a faster encoder: the same protobuf messages, built in place.

The OTLP exporters of opentelemetry-python encode every span by constructing a tree of
protobuf messages (span, status, one KeyValue and AnyValue per attribute) and passing the
finished children to their parents' constructors, which copies them; grouping spans by
resource hashes the resource (a JSON dump of its attributes) once per span. On the cheapest
requests that is a large part of what tracing costs the services (`python -m bench.tracing_cost`
measures both encoders).

``encode_spans`` here builds the same ``ExportTraceServiceRequest`` with the same classes
(opentelemetry-proto), filling fields in place and grouping by object identity first.
tests/service/test_otlp.py checks that the result equals the official encoder's message for
spans with every kind of field (events, links, status, trace state, array and map attributes,
several resources and scopes).

The exporters below are the official OTLP/HTTP and OTLP/gRPC span exporters (configuration
from the OTEL_* variables, retries, compression, headers, self-metrics unchanged) with only
the encoding step swapped. The private OpenTelemetry parts this needs are in
`mime_server.otel_internals`, with the versions they were checked against.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as _GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as _HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import SpanFlags
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE
from opentelemetry.trace import SpanContext, SpanKind

from mime_server.otel_internals import RequestPayloadTooLargeError, encode_value, is_request_too_large

_logger = logging.getLogger(__name__)

_KIND = {
    SpanKind.INTERNAL: PbSpan.SpanKind.SPAN_KIND_INTERNAL,
    SpanKind.SERVER: PbSpan.SpanKind.SPAN_KIND_SERVER,
    SpanKind.CLIENT: PbSpan.SpanKind.SPAN_KIND_CLIENT,
    SpanKind.PRODUCER: PbSpan.SpanKind.SPAN_KIND_PRODUCER,
    SpanKind.CONSUMER: PbSpan.SpanKind.SPAN_KIND_CONSUMER,
}
_HAS_IS_REMOTE = SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK


def _flags(context: SpanContext | None) -> int:
    return _HAS_IS_REMOTE | _IS_REMOTE if context is not None and context.is_remote else _HAS_IS_REMOTE


# Exact types only (bool is an int subclass, and subclasses take the official path below).
_SCALAR_FIELDS = {str: "string_value", bool: "bool_value", int: "int_value", float: "double_value"}


def _fill_attributes(target: Any, attributes: Any) -> None:
    """Append ``attributes`` to a repeated KeyValue field, as the official encoder does."""
    if not attributes:
        return
    add = target.add
    for key, value in attributes.items():
        field = _SCALAR_FIELDS.get(type(value))
        if field is None:  # None, bytes, sequences, mappings, subclasses: the official conversion, rare here
            try:
                encoded = encode_value(value)
            except Exception as error:  # noqa: BLE001 - the official encoder logs and skips the same way
                _logger.exception("Failed to encode key %s: %s", key, error)
                continue
        item = add()
        item.key = key
        if field is None:
            item.value.CopyFrom(encoded)
        else:
            setattr(item.value, field, value)


def _fill_span(target: PbSpan, span: ReadableSpan) -> None:
    context = span.get_span_context()
    target.trace_id = context.trace_id.to_bytes(16, "big")
    target.span_id = context.span_id.to_bytes(8, "big")
    trace_state = context.trace_state
    if trace_state:
        target.trace_state = ",".join(f"{key}={value}" for key, value in trace_state.items())
    parent = span.parent
    if parent:
        target.parent_span_id = parent.span_id.to_bytes(8, "big")
    target.name = span.name
    target.kind = _KIND[span.kind]
    if span.start_time is not None:
        target.start_time_unix_nano = span.start_time
    if span.end_time is not None:
        target.end_time_unix_nano = span.end_time
    _fill_attributes(target.attributes, span.attributes)
    for event in span.events or ():
        pb_event = target.events.add()
        pb_event.name = event.name
        pb_event.time_unix_nano = event.timestamp
        _fill_attributes(pb_event.attributes, event.attributes)
        pb_event.dropped_attributes_count = event.dropped_attributes
    for link in span.links or ():
        pb_link = target.links.add()
        pb_link.trace_id = link.context.trace_id.to_bytes(16, "big")
        pb_link.span_id = link.context.span_id.to_bytes(8, "big")
        _fill_attributes(pb_link.attributes, link.attributes)
        pb_link.dropped_attributes_count = link.dropped_attributes
        pb_link.flags = _flags(link.context)
    status = span.status
    if status is not None:
        pb_status = target.status
        pb_status.SetInParent()
        code = status.status_code.value
        if code:
            pb_status.code = code
        if status.description:
            pb_status.message = status.description
    # Zero is the default: assigning it would only cost a call.
    dropped = span.dropped_attributes
    if dropped:
        target.dropped_attributes_count = dropped
    dropped = span.dropped_events
    if dropped:
        target.dropped_events_count = dropped
    dropped = span.dropped_links
    if dropped:
        target.dropped_links_count = dropped
    target.flags = _HAS_IS_REMOTE | _IS_REMOTE if parent is not None and parent.is_remote else _HAS_IS_REMOTE


_Groups = list[tuple[Resource, list[tuple[InstrumentationScope | None, list[ReadableSpan]]]]]


def _group(spans: Sequence[ReadableSpan]) -> _Groups:
    """Spans by resource, then by instrumentation scope: groups in order of first appearance, spans in input order.

    Equal resources (and scopes) share a group, as in the official encoder, which keys by value;
    but a resource is compared by value only the first time its object is seen (the spans of one
    provider share it): hashing a Resource dumps its attributes to JSON.
    """
    groups: _Groups = []
    group_of: dict[int, tuple[Resource, list[tuple[InstrumentationScope | None, list[ReadableSpan]]]]] = {}
    bucket_of: dict[tuple[int, int], list[ReadableSpan]] = {}
    for span in spans:
        resource = span.resource
        group = group_of.get(id(resource))
        if group is None:
            group = next((known for known in groups if known[0] == resource), None)
            if group is None:
                group = (resource, [])
                groups.append(group)
            group_of[id(resource)] = group
        scope = span.instrumentation_scope or None
        key = (id(group), id(scope))
        bucket = bucket_of.get(key)
        if bucket is None:
            bucket = next((members for known, members in group[1] if known == scope), None)
            if bucket is None:
                bucket = []
                group[1].append((scope, bucket))
            bucket_of[key] = bucket
        bucket.append(span)
    return groups


def encode_spans(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    """The OTLP request for ``spans``: equal to opentelemetry's ``encode_spans``, built faster."""
    request = ExportTraceServiceRequest()
    for resource, scopes in _group(spans):
        resource_spans = request.resource_spans.add()
        resource_spans.resource.SetInParent()
        _fill_attributes(resource_spans.resource.attributes, resource.attributes)
        if resource.schema_url:
            resource_spans.schema_url = resource.schema_url
        for scope, members in scopes:
            scope_spans = resource_spans.scope_spans.add()
            scope_spans.scope.SetInParent()
            if scope is not None:
                scope_spans.scope.name = scope.name
                if scope.version:
                    scope_spans.scope.version = scope.version
                _fill_attributes(scope_spans.scope.attributes, scope.attributes)
                if scope.schema_url:
                    scope_spans.schema_url = scope.schema_url
            add = scope_spans.spans.add
            for span in members:
                _fill_span(add(), span)
    return request


class HttpSpanExporter(_HttpExporter):
    """opentelemetry's OTLP/HTTP span exporter with the in-place encoder."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        # The parent's export with its encoding step replaced; everything else is delegated.
        if self._shutdown:
            _logger.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE
        with self._metrics.export_operation(len(spans)) as result:
            try:
                serialized = encode_spans(spans).SerializePartialToString()
            except Exception as error:  # noqa: BLE001 - as the parent: a bad batch is dropped, logged
                _logger.error("Failed to encode span batch: %s", error)
                result.error = error
                return SpanExportResult.FAILURE
            if is_request_too_large(serialized, self._max_request_size):
                _logger.warning("Dropping span batch: serialized size %d bytes exceeds max_request_size %d bytes.",
                                len(serialized), self._max_request_size)
                result.error = RequestPayloadTooLargeError(
                    f"Serialized span request size {len(serialized)} bytes exceeds max_request_size "
                    f"{self._max_request_size} bytes.")
                return SpanExportResult.FAILURE
            answer = self._client.export(serialized)
            if not answer.success:
                result.error = answer.error
                result.error_attrs = ({HTTP_RESPONSE_STATUS_CODE: answer.status_code}
                                      if answer.status_code is not None else None)
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS


class GrpcSpanExporter(_GrpcExporter):
    """opentelemetry's OTLP/gRPC span exporter with the in-place encoder."""

    def _translate_data(self, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        return encode_spans(data)
