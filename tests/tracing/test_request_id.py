"""The server span carries the request id, so a request's trace is found by it (Jaeger tag `request.id`)."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.trace import SpanKind

from tests.service.conftest import eventually, make_server


def test_server_span_carries_the_supplied_or_generated_request_id(tmp_path: Path) -> None:
    harness = make_server(tmp_path)
    with harness.client as client:
        supplied = client.post("/v1/detect", content=b"plain text", headers={"X-Request-Id": "trace-rid-1"})
        generated = client.get("/v1/files/" + "0" * 64)
    assert supplied.headers["x-request-id"] == "trace-rid-1"
    spans = eventually(lambda: [s for s in harness.spans.get_finished_spans() if s.kind == SpanKind.SERVER])
    assert [s.attributes["request.id"] for s in spans] == ["trace-rid-1", generated.headers["x-request-id"]]
