"""Alloy and Promtail configs ship the runbook's streams: right containers, labels, fields and queries."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml
from opentelemetry.sdk.trace import TracerProvider
from starlette.testclient import TestClient

from config.grafana import logs_dashboard
from config.logshipper import render_alloy, render_promtail
from config.loki import PUSH_URL
from config.settings import StackSettings, load_stack
from mime_server.app import ServerSettings, create_app
from mime_server.gateway import GatewaySettings, create_gateway
from mime_server.logs import JsonLogger
from tests.logs.alloy_syntax import AlloySyntaxError, parse
from tests.logs.pipeline import Container, Entry, Pipeline, alloy_pipeline, logql, promtail_pipeline, ship

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def container(stack: str, service: str) -> Container:
    return Container(f"{stack}-{service}", {"service": service, "env": stack, "stack": stack})


def json_file(line: str) -> str:
    """A record as Docker's json-file driver stores it."""
    return json.dumps({"log": line + "\n", "stream": "stdout", "time": "2026-11-26T12:00:00.123456789Z"})


def access_line(service: str, level: str, http_status: int, route: str, duration_ms: float,
                trace_id: str = TRACE) -> str:
    out = io.StringIO()
    JsonLogger(service, out).log(
        level, f"GET {route} {http_status}", method="GET", route=route, path=route, http_status=http_status,
        status="error" if http_status >= 500 else "ok", duration_ms=duration_ms, trace_id=trace_id,
        span_id="00f067aa0ba902b7", request_id=f"req-{http_status}-{duration_ms}", bytes_in=0, bytes_out=12)
    return out.getvalue().rstrip("\n")


SAMPLE: list[tuple[Container, list[str]]] = [
    (container("dev", "mime-server"), [json_file(access_line("mime-server", "info", 201, "/v1/files", 12.5)),
                                       json_file(access_line("mime-server", "error", 503, "/v1/files", 40.0)),
                                       json_file(access_line("mime-server", "info", 200, "/v1/detect", 750.0))]),
    (container("dev", "mockup-gateway"), [json_file(access_line("mockup-gateway", "warn", 401, "/v1/{path:path}", 1.0)),
                                          json_file(access_line("mockup-gateway", "info", 200, "/v1/{path:path}", 9.0))]),
    (container("dev", "loki"), [json_file('level=info ts=2026-11-26T12:00:00Z msg="not json"')]),
    (container("staging", "mime-server"), [json_file(access_line("mime-server", "error", 500, "/v1/files", 1.0))]),
    (Container("someone-elses-db", {"service": "postgres"}), [json_file('{"level":"error","msg":"not ours"}')]),
]


def pipeline_of(shipper: str, settings: StackSettings) -> Pipeline:
    if shipper == "alloy":
        return alloy_pipeline(render_alloy(settings))
    return promtail_pipeline(yaml.safe_load(render_promtail(settings)))


@pytest.fixture(params=["alloy", "promtail"])
def entries(request: pytest.FixtureRequest) -> list[Entry]:
    return ship(pipeline_of(request.param, load_stack("dev")), SAMPLE)


def test_only_this_stacks_containers_are_shipped(entries: list[Entry]) -> None:
    assert {e.labels["container"] for e in entries} == {"mime-server", "mockup-gateway", "loki"}
    assert {e.labels["env"] for e in entries} == {"dev"}
    assert "not ours" not in "".join(e.line for e in entries)


def test_streams_carry_service_container_env_and_level(entries: list[Entry]) -> None:
    gateway = [e for e in entries if e.labels["service"] == "mockup-gateway"]
    assert [e.labels for e in gateway] == [
        {"service": "mockup-gateway", "container": "mockup-gateway", "env": "dev", "level": "warn"},
        {"service": "mockup-gateway", "container": "mockup-gateway", "env": "dev", "level": "info"}]


def test_high_cardinality_fields_stay_in_the_line(entries: list[Entry]) -> None:
    for entry in entries:
        assert set(entry.labels) <= {"service", "container", "env", "level"}
    mime = [e for e in entries if e.labels["service"] == "mime-server"]
    assert all(json.loads(e.line)["trace_id"] == TRACE and "request_id" in json.loads(e.line) for e in mime)


def test_non_json_lines_are_shipped_without_a_level(entries: list[Entry]) -> None:
    [loki_line] = [e for e in entries if e.labels["service"] == "loki"]
    assert "level" not in loki_line.labels and loki_line.line.startswith("level=info")


def test_runbook_error_query_selects_the_mime_server_errors(entries: list[Entry]) -> None:
    found = logql(logs_dashboard.MIME_SERVER_ERRORS, entries)
    assert [json.loads(e.line)["http_status"] for e in found] == [503]


def test_runbook_warn_query_selects_the_gateway_warnings(entries: list[Entry]) -> None:
    found = logql(logs_dashboard.GATEWAY_WARNINGS, entries)
    assert [json.loads(e.line)["http_status"] for e in found] == [401]


def test_runbook_warn_query_as_written_filters_nothing(entries: list[Entry]) -> None:
    # `| json level="warn"` extracts the JSON path "warn" into `level`: a parser, not a filter.
    found = logql('{container="mockup-gateway"} | json level="warn"', entries)
    assert len(found) == 2


def test_slow_request_and_trace_queries_select_what_they_say(entries: list[Entry]) -> None:
    settings = load_stack("dev")
    slow = logql(logs_dashboard.slow_requests(settings), entries)
    assert [json.loads(e.line)["duration_ms"] for e in slow] == [750.0]
    traced = logql(logs_dashboard.trace_logs(TRACE), entries)
    assert {e.labels["service"] for e in traced} == {"mime-server", "mockup-gateway"} and len(traced) == 5


@pytest.mark.parametrize("shipper", ["alloy", "promtail"])
def test_both_shippers_push_to_loki_with_the_same_pipeline(shipper: str) -> None:
    settings = load_stack("dev")
    pipeline = pipeline_of(shipper, settings)
    assert pipeline.push_url == PUSH_URL == "http://loki:3100/loki/api/v1/push"
    assert pipeline.label_filters == ("label=stack=dev",)
    assert pipeline == pipeline_of("promtail" if shipper == "alloy" else "alloy", settings)


def test_other_stacks_ship_their_own_containers_only() -> None:
    staging = load_stack("dev").model_copy(update={"stack": "staging"})
    for shipper in ("alloy", "promtail"):
        shipped = ship(pipeline_of(shipper, staging), SAMPLE)
        assert [e.labels["env"] for e in shipped] == ["staging"], shipper


def test_real_service_log_lines_get_the_level_label(tmp_path: Path) -> None:
    mime_log, gateway_log = io.StringIO(), io.StringIO()
    app = create_app(ServerSettings(storage=tmp_path / "s"), tracer_provider=TracerProvider(), log_stream=mime_log)
    with TestClient(app) as client:
        assert client.post("/v1/files", content=b"hello\n").status_code == 201
        missing = client.get("/v1/files/missing").status_code
    gateway = create_gateway(GatewaySettings(upstream="http://upstream.invalid", api_keys=frozenset({"k"})),
                             tracer_provider=TracerProvider(), log_stream=gateway_log)
    with TestClient(gateway) as client:
        assert client.get("/v1/files/x").status_code == 401
    logs = [(container("dev", "mime-server"), [json_file(x) for x in mime_log.getvalue().splitlines()]),
            (container("dev", "mockup-gateway"), [json_file(x) for x in gateway_log.getvalue().splitlines()])]
    shipped = ship(pipeline_of("alloy", load_stack("dev")), logs)
    access = [(e.labels["container"], e.labels["level"], json.loads(e.line)["http_status"])
              for e in shipped if "http_status" in e.line]
    assert ("mime-server", "info", 201) in access and ("mime-server", "warn", missing) in access
    assert ("mockup-gateway", "warn", 401) in access
    assert logql(logs_dashboard.GATEWAY_WARNINGS, shipped)


def test_alloy_parser_rejects_broken_syntax() -> None:
    text = render_alloy(load_stack("dev"))
    parse(text)
    with pytest.raises(AlloySyntaxError):
        parse(text.replace('url = "http', 'url = http"', 1))
    with pytest.raises(AlloySyntaxError):
        parse(text.rstrip().removesuffix("}"))
