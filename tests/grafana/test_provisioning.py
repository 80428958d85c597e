"""Grafana provisioning: datasource uids and links, builder-made dashboards, provider, environment."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from config.grafana import (DASHBOARDS_DIR, JAEGER_UID, LOKI_UID, PROMETHEUS_UID, dashboards, grafana_env,
                            render_grafana)
from config.grafana import logs_dashboard, service_overview, slo_dashboard
from config.grafana.datasources import TRACE_ID_REGEX
from config.grafana.panels import panel_queries
from config.rules import render_rule_files
from config.settings import StackSettings, load_stack
from config.slo import ERROR_BUDGET_REMAINING, objective
from tests.grafana.live import rule_records

FIXED_UIDS = {PROMETHEUS_UID: "prometheus", LOKI_UID: "loki", JAEGER_UID: "jaeger"}


def provisioned(settings: StackSettings) -> dict[str, dict[str, Any]]:
    text = render_grafana(settings)["provisioning/datasources/datasources.yml"]
    # Grafana expands $VAR in provisioning files; `$$` is its escape for a literal `$`.
    doc = yaml.safe_load(text.replace("$$", "$"))
    assert re.search(r"(?<!\$)\$\{__value", text) is None, "unescaped $ would be expanded from the environment"
    return {ds["uid"]: ds for ds in doc["datasources"]}


def test_datasources_have_the_fixed_uids_and_types(settings: StackSettings) -> None:
    ds = provisioned(settings)
    assert {uid: d["type"] for uid, d in ds.items()} == FIXED_UIDS
    assert ds["prometheus"]["url"] == "http://prometheus:9090"
    assert ds["loki"]["url"] == "http://loki:3100"
    assert ds["jaeger"]["url"] == "http://jaeger:16686"
    assert [d["uid"] for d in ds.values() if d.get("isDefault")] == ["prometheus"]


def test_datasource_links_point_at_provisioned_uids(settings: StackSettings) -> None:
    ds = provisioned(settings)
    exemplar = ds["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert exemplar == [{"name": "trace_id", "datasourceUid": "jaeger", "urlDisplayLabel": "Open trace in Jaeger"}]
    derived = ds["loki"]["jsonData"]["derivedFields"]
    assert [(d["matcherRegex"], d["datasourceUid"], d["url"]) for d in derived] == \
        [('"trace_id":"(\\w+)"', "jaeger", "${__value.raw}")]
    to_logs = ds["jaeger"]["jsonData"]["tracesToLogsV2"]
    assert to_logs["datasourceUid"] == "loki" and to_logs["filterByTraceID"] is True
    assert {"key": "service.name", "value": "service"} in to_logs["tags"]
    for link_target in [e["datasourceUid"] for e in exemplar] + [d["datasourceUid"] for d in derived] + \
            [to_logs["datasourceUid"]]:
        assert link_target in ds


def test_loki_derived_field_regex_extracts_trace_id_from_a_real_log_line() -> None:
    import io

    from mime_server.logs import JsonLogger
    out = io.StringIO()
    JsonLogger("mime-server", out).log("info", "request", trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
                                       request_id="r-1", status="ok")
    match = re.search(TRACE_ID_REGEX, out.getvalue())
    assert match and match.group(1) == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_every_panel_uses_a_provisioned_datasource(settings: StackSettings,
                                                   boards: dict[str, dict[str, Any]]) -> None:
    uids = set(provisioned(settings))
    for doc in boards.values():
        for panel in doc["panels"]:
            if panel["type"] in ("row", "text"):  # no query: headings and runbook text
                continue
            assert panel["datasource"]["uid"] in uids, panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == panel["datasource"]["uid"], panel["title"]
                assert target["expr"], panel["title"]


def test_dashboard_files_are_the_builder_output(settings: StackSettings,
                                                 boards: dict[str, dict[str, Any]]) -> None:
    files = render_grafana(settings)
    assert set(files) == {"provisioning/datasources/datasources.yml", "provisioning/dashboards/dashboards.yml",
                          *(f"dashboards/{uid}.json" for uid in boards)}
    assert {uid for uid in boards if not uid.startswith("runbook-")} == {
        "service-overview", "slo-error-budget", "stack-health", "logs"}
    for uid, doc in boards.items():
        assert json.loads(files[f"dashboards/{uid}.json"]) == doc
        ids = [p["id"] for p in doc["panels"]]
        assert len(ids) == len(set(ids)), f"{uid}: duplicate panel ids"
        for panel in doc["panels"]:
            ref_ids = [t["refId"] for t in panel.get("targets", [])]
            assert len(ref_ids) == len(set(ref_ids)) and all(ref_ids), panel["title"]


def test_dashboard_provider_reads_the_dashboards_mount(settings: StackSettings) -> None:
    doc = yaml.safe_load(render_grafana(settings)["provisioning/dashboards/dashboards.yml"])
    [provider] = doc["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == DASHBOARDS_DIR == "/etc/grafana/dashboards"


def test_error_budget_panel_queries_the_recording_rule_the_slo_renderer_produces(
        settings: StackSettings, boards: dict[str, dict[str, Any]]) -> None:
    panels = [p for p in boards[slo_dashboard.UID]["panels"] if p["title"] == "Error Budget Remaining"]
    assert len(panels) == 1
    assert ERROR_BUDGET_REMAINING in rule_records(settings)
    assert f"record: {ERROR_BUDGET_REMAINING}" in "".join(render_rule_files(settings).values())
    assert [t["expr"].split("{")[0] for t in panels[0]["targets"]] == [ERROR_BUDGET_REMAINING]


def test_every_slo_dashboard_record_is_produced_by_the_rule_renderer(
        settings: StackSettings, boards: dict[str, dict[str, Any]]) -> None:
    records = rule_records(settings)
    used = {name for _, _, expr in panel_queries(boards[slo_dashboard.UID])
            for name in re.findall(r"\b(?:slo|sla):[a-z0-9_:]+", expr)}
    assert used and used <= records, used - records


def thresholds(doc: dict[str, Any], title: str) -> list[float]:
    panel = next(p for p in doc["panels"] if p["title"] == title)
    return [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"] if s["value"] is not None]


def test_slo_and_sla_thresholds_follow_the_settings() -> None:
    custom = load_stack("dev").model_copy(update={"slo_latency_seconds": 0.25, "sla_latency_seconds": 2.5,
                                                   "slo_error_rate": 0.002, "sla_error_rate": 0.01})
    board = dashboards(custom)[service_overview.UID]
    assert thresholds(board, service_overview.LATENCY_PANEL_TITLE) == [0.25, 2.5]
    assert thresholds(board, "Error ratio (5xx)") == [0.002, 0.01]
    slo_board = dashboards(custom)[slo_dashboard.UID]
    assert thresholds(slo_board, "errors over 30d") == sorted([objective(custom.sla, "errors"),
                                                               objective(custom.slo, "errors")])


def test_latency_panel_draws_thresholds_and_shows_exemplars(boards: dict[str, dict[str, Any]]) -> None:
    panel = next(p for p in boards[service_overview.UID]["panels"]
                 if p["title"] == service_overview.LATENCY_PANEL_TITLE)
    assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "dashed"
    assert [t["legendFormat"].split()[0] for t in panel["targets"]] == ["p50", "p95", "p99"]
    assert all(t["exemplar"] is True for t in panel["targets"])


def test_logs_dashboard_holds_the_runbook_queries_in_valid_form(boards: dict[str, dict[str, Any]]) -> None:
    exprs = {expr for _, _, expr in panel_queries(boards[logs_dashboard.UID])}
    assert '{service="mime-server"} | json | status="error"' in exprs
    assert '{container="mockup-gateway"} | json | level="warn"' in exprs
    assert not any("| json level=" in e or "stats count()" in e for e in exprs)


def test_logs_dashboard_is_left_out_without_loki() -> None:
    no_logs = load_stack("dev").model_copy(update={"logs_enabled": False})
    assert logs_dashboard.UID not in dashboards(no_logs)


def test_grafana_env_is_locked_down_and_holds_no_secret(settings: StackSettings) -> None:
    env = grafana_env(settings)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert env["GF_PLUGINS_PREINSTALL_DISABLED"] == "true"
    assert env["GF_ANALYTICS_REPORTING_ENABLED"] == "false"
    assert env["GF_PATHS_PROVISIONING"] == "/etc/grafana/provisioning"
    assert env["GF_SECURITY_ADMIN_USER"] == settings.grafana_admin_user
    # the admin password travels as a secret file; the environment only names the file
    assert {k: v for k, v in env.items() if "PASSWORD" in k or "SECRET" in k} == {
        "GF_SECURITY_ADMIN_PASSWORD__FILE": "/run/secrets/grafana-admin-password"}
    assert env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == f"{DASHBOARDS_DIR}/{service_overview.UID}.json"
