"""The trace path's own checks catch what they are there to catch (no processes; the e2e test relies on them)."""

from __future__ import annotations

from typing import Any

import yaml

from config.jaeger import OTLP_HTTP_ENDPOINT
from config.jaeger import render_jaeger
from config.prometheus import render_prometheus
from config.settings import load_stack
from tests.tracing.path import (
    GATEWAY, JAEGER_LISTENERS, KINDS, METRICS_READER, MIME, PARENT, Sent, _address, check_trace,
    loopback_jaeger_config, spans_of,
)


def jaeger_trace(kind: str, request_id: str, status: int, *, error: bool = False,
                 parents: dict[str, str | None] | None = None, drop: str = "") -> dict[str, Any]:
    """A trace as Jaeger's /api/traces returns it, with the spans `kind` should produce (altered as asked)."""
    ids = {role: f"{i + 1:016x}" for i, (role, *_) in enumerate(KINDS[kind].expected_spans())}
    spans = []
    for role, service, span_kind, name in KINDS[kind].expected_spans():
        if role == drop:
            continue
        parent = (parents or {}).get(role, PARENT.get(role, "mime.server"))
        tags = [{"key": "span.kind", "value": span_kind}]
        if span_kind == "server":
            tags += [{"key": "request.id", "value": request_id}, {"key": "http.response.status_code", "value": status}]
            if error:
                tags.append({"key": "error", "value": True})
        spans.append({"traceID": "t1", "spanID": ids[role], "operationName": name, "tags": tags,
                      "processID": "p1" if service == GATEWAY else "p2",
                      "references": [{"refType": "CHILD_OF", "spanID": ids[parent]}] if parent else []})
    return {"traceID": "t1", "spans": spans, "processes": {"p1": {"serviceName": GATEWAY}, "p2": {"serviceName": MIME}}}


def test_the_expected_tree_passes_and_each_defect_is_named() -> None:
    sent = Sent("rid-1", "upload", 201, "rid-1")
    assert check_trace(sent, [spans_of(jaeger_trace("upload", "rid-1", 201))]) == []
    wrong_parent = spans_of(jaeger_trace("upload", "rid-1", 201, parents={"mime.server": "gateway.server"}))
    assert any("mime.server's parent" in p for p in check_trace(sent, [wrong_parent]))
    no_write = spans_of(jaeger_trace("upload", "rid-1", 201, drop="mime.storage.write"))
    assert any("storage.write" in p for p in check_trace(sent, [no_write]))
    split = spans_of(jaeger_trace("upload", "rid-1", 201))
    assert check_trace(sent, [split[:2], split[2:]]) == ["2 traces hold request id rid-1"]
    assert check_trace(sent, []) == ["0 traces hold request id rid-1"]


def test_a_5xx_trace_must_be_marked_as_error() -> None:
    sent = Sent("rid-2", "fault", 500, "rid-2")
    assert check_trace(sent, [spans_of(jaeger_trace("fault", "rid-2", 500, error=True))]) == []
    assert any("error=False" in p for p in check_trace(sent, [spans_of(jaeger_trace("fault", "rid-2", 500))]))


def test_every_rendered_listen_address_moves_to_loopback() -> None:
    text, listeners = loopback_jaeger_config(render_jaeger(load_stack("dev")))
    assert "0.0.0.0" not in text
    protocols = {path: listener.protocol for path, listener in listeners.items()}
    assert protocols.pop("receivers.jaeger.protocols.thrift_compact") == "udp"  # the legacy agent: UDP
    assert set(protocols.values()) == {"tcp"}
    assert len({listener.port for listener in listeners.values()}) == len(listeners)


def test_rendered_configs_name_every_jaeger_listener_and_agree_on_ports() -> None:
    dev = load_stack("dev")
    _, listeners = loopback_jaeger_config(render_jaeger(dev))
    assert set(listeners) == set(JAEGER_LISTENERS.values())
    assert all(listener.rendered.startswith("0.0.0.0:") for listener in listeners.values())
    # the services export to the OTLP/HTTP receiver; Prometheus scrapes the telemetry reader
    otlp_http = listeners[JAEGER_LISTENERS["otlp_http"]].rendered
    assert OTLP_HTTP_ENDPOINT.rsplit(":", 1)[1] == otlp_http.rsplit(":", 1)[1]
    jobs = {j["job_name"]: j for j in yaml.safe_load(render_prometheus(dev))["scrape_configs"]}
    target = jobs["jaeger"]["static_configs"][0]["targets"][0]
    assert target.rsplit(":", 1)[1] == listeners[METRICS_READER].rendered.rsplit(":", 1)[1]


def test_proc_net_addresses_decode() -> None:
    assert _address("0100007F") == "127.0.0.1"
    assert _address("00000000") == "0.0.0.0"
    assert _address("00000000000000000000000001000000") == "::1"
