"""End to end on loopback: every request through the gateway is one trace in the pinned Jaeger, counted by Prometheus.

The pinned Jaeger runs the rendered config (listen addresses moved to 127.0.0.1), mime-server and
mockup-gateway export OTLP to it as deployed, and 300 mixed requests go through the gateway
(detect, upload, download, 4xx from either service, injected 5xx). The scenario runs once (module
fixture); each test checks one outcome of it. `python -m bench.trace_path` runs the same path.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.jaeger import render_jaeger
from config.settings import StackSettings, load_stack
from tests.tools import require
from tests.tracing.path import GATEWAY, JAEGER_RULES, KINDS, MIME, PARENT, Measurement, TracePath, jaeger_validate

pytestmark = pytest.mark.e2e

REQUESTS = 300


@pytest.fixture(scope="module")
def dev() -> StackSettings:
    return load_stack("dev")


@pytest.fixture(scope="module")
def measured(dev: StackSettings) -> Iterator[Measurement]:
    require("jaeger")
    require("prometheus")
    with TracePath(dev) as path:
        yield path.measure(REQUESTS)


def test_jaeger_validate_accepts_the_rendered_config(dev: StackSettings, tmp_path: Path) -> None:
    require("jaeger")
    result = jaeger_validate(render_jaeger(dev), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_jaeger_validate_rejects_an_unknown_setting(dev: StackSettings, tmp_path: Path) -> None:
    require("jaeger")
    broken = render_jaeger(dev).replace("max_traces:", "max_tracez:")
    result = jaeger_validate(broken, tmp_path)
    assert result.returncode != 0
    assert "max_tracez" in result.stdout + result.stderr


def test_jaeger_listens_only_on_the_rewritten_loopback_ports(measured: Measurement) -> None:
    assert measured.listening == {(l.protocol, "127.0.0.1", l.port) for l in measured.listeners.values()}


def test_every_request_has_exactly_one_complete_trace(measured: Measurement,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\ntrace path:", json.dumps(measured.figures()))
    assert len(measured.sent) == REQUESTS
    assert measured.answer_problems == {}
    assert measured.trace_problems == {}
    assert measured.share_traced == 1.0


def test_spans_per_trace_follow_the_route(measured: Measurement) -> None:
    by_kind = Counter(s.kind for s in measured.sent)
    assert set(by_kind) == set(KINDS)
    assert measured.spans_per_trace() == {kind: {str(len(KINDS[kind].expected_spans())): n}
                                          for kind, n in by_kind.items()}


def test_injected_faults_are_error_traces(measured: Measurement) -> None:
    faults = [s for s in measured.sent if s.kind == "fault"]
    assert faults and all(s.status == 500 for s in faults)
    for s in faults:
        [spans] = measured.traces[s.request_id]
        servers = [span for span in spans if span.kind == "server"]
        assert {span.service for span in servers} == {GATEWAY, MIME}
        assert all(span.error for span in servers), servers


def test_unauthorized_requests_leave_only_the_gateway_server_span(measured: Measurement) -> None:
    refused = [s for s in measured.sent if s.kind == "unauthorized"]
    assert refused and all(s.status == 401 for s in refused)
    for s in refused:
        [spans] = measured.traces[s.request_id]
        assert [(span.service, span.kind, span.parent_id) for span in spans] == [(GATEWAY, "server", None)]


def test_dependencies_show_the_gateway_calling_mime_server(measured: Measurement) -> None:
    reached = sum(1 for s in measured.sent if KINDS[s.kind].mime_route is not None)
    edges = {(d["parent"], d["child"]): d["callCount"] for d in measured.dependencies}
    assert {edge: n for edge, n in edges.items() if edge[0] != edge[1]} == {(GATEWAY, MIME): reached}
    # Jaeger's memory store counts every parent-child pair of spans, so each service also has a
    # self-edge: one per span under another span of the same service (its health checks have none)
    within: Counter[tuple[str, str]] = Counter()
    for s in measured.sent:
        services = {role: service for role, service, _, _ in KINDS[s.kind].expected_spans()}
        for role, service in services.items():
            parent = PARENT.get(role, "mime.server")
            if parent is not None and services[parent] == service:
                within[(service, service)] += 1
    assert {edge: n for edge, n in edges.items() if edge[0] == edge[1]} == dict(within)


def test_jaeger_logs_no_error(measured: Measurement) -> None:
    assert not [p for p in measured.jaeger_log_problems if not p.startswith("warn:")]


def test_prometheus_counts_every_span_jaeger_stored_as_accepted(measured: Measurement) -> None:
    sent_spans = sum(len(KINDS[s.kind].expected_spans()) for s in measured.sent)
    stored = measured.spans_stored[GATEWAY] + measured.spans_stored[MIME]
    assert stored >= sent_spans  # plus the health checks' traces
    assert measured.accepted_spans.get("otlp/http") == stored, measured.accepted_spans


def test_jaeger_meta_alerts_evaluate_on_metric_names_jaeger_exposes(measured: Measurement) -> None:
    assert set(measured.meta_alerts) == set(JAEGER_RULES)
    for name, rule in measured.meta_alerts.items():
        assert (rule["health"], rule["lastError"]) == ("ok", ""), (name, rule)
        assert rule["selects"], (name, rule)
        for selector, series in rule["selects"].items():
            # a selector matching nothing evaluates fine and never fires: each must select a real series
            assert series, f"{name}: {selector} selects nothing; Jaeger's span metrics: {measured.span_metric_names}"
            assert all(s.endswith("{service=jaeger}") for s in series), (name, series)


def test_jaeger_stores_only_the_services_traces(measured: Measurement) -> None:
    """Jaeger's own query tracing is off: the bounded store holds the two services' traces only."""
    assert measured.services == sorted([GATEWAY, MIME])
