"""Every dashboard PromQL query runs on a real Prometheus scraping the real services with the SLO rules."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from config.grafana import PROMETHEUS_UID
from config.grafana import service_overview, slo_dashboard
from config.grafana.panels import panel_queries
from config.slo import GATEWAY, MIME_SERVER
from tests.grafana.live import LiveStack, dump, metric_names, substitute

pytestmark = pytest.mark.e2e

# Panels that may be empty on a healthy stack: no SLO alert fires under clean traffic.
MAY_BE_EMPTY = {(slo_dashboard.UID, "Firing SLO alerts")}


def prometheus_queries(boards: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(uid, title, expr) for uid, doc in boards.items()
            for title, ds, expr in panel_queries(doc) if ds == PROMETHEUS_UID]


def test_every_dashboard_promql_query_runs_without_error(live: LiveStack,
                                                         boards: dict[str, dict[str, Any]]) -> None:
    queries = prometheus_queries(boards)
    assert len(queries) > 40
    failures = []
    for uid, title, expr in queries:
        answer = live.query(substitute(expr))
        if answer.get("status") != "success" or answer.get("warnings"):
            failures.append(f"{uid} / {title}: {expr} -> {dump(answer)}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("uid", [service_overview.UID, slo_dashboard.UID])
def test_service_overview_and_slo_panels_return_data(live: LiveStack, boards: dict[str, dict[str, Any]],
                                                      uid: str) -> None:
    by_panel: dict[str, list[str]] = {}
    for title, ds, expr in panel_queries(boards[uid]):
        by_panel.setdefault(title, []).append(expr)
    empty = [title for title, exprs in by_panel.items()
             if (uid, title) not in MAY_BE_EMPTY and not any(live.has_data(substitute(e)) for e in exprs)]
    assert not empty, f"panels of {uid} without data: {empty}"


def test_slo_panels_show_both_services_and_every_sli(live: LiveStack) -> None:
    answer = live.query(substitute(f'{slo_dashboard.ERROR_BUDGET_REMAINING}{{{slo_dashboard.SEL}}}'), instant=True)
    seen = {(r["metric"]["service"], r["metric"]["sli"]) for r in answer["data"]["result"]}
    assert seen == {(s, sli) for s in (MIME_SERVER, GATEWAY) for sli in ("availability", "errors", "latency")}


def test_dashboard_metric_names_exist_on_live_services(live: LiveStack) -> None:
    mime = metric_names(httpx.get(f"{live.mime_url}/metrics", trust_env=False).text)
    gateway = metric_names(httpx.get(f"{live.gateway_url}/metrics", trust_env=False).text)
    assert set(service_overview.SERVICE_METRICS) - mime == set()
    assert set(service_overview.GATEWAY_METRICS) - gateway == set()


def test_latency_panel_exemplars_carry_trace_ids(live: LiveStack, boards: dict[str, dict[str, Any]]) -> None:
    panel = next(p for p in boards[service_overview.UID]["panels"] if p["title"] == service_overview.LATENCY_PANEL_TITLE)
    assert all(t["exemplar"] for t in panel["targets"])
    expr = substitute(panel["targets"][1]["expr"])
    now = time.time()
    answer = httpx.post(f"{live.prometheus_url}/api/v1/query_exemplars",
                        data={"query": expr, "start": now - 120, "end": now}, trust_env=False).json()
    labels = [e["labels"] for series in answer["data"] for e in series["exemplars"]]
    assert labels and all(len(lab.get("trace_id", "")) == 32 for lab in labels), dump(answer)
