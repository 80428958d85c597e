"""End to end on loopback: a killed mime-server and injected 5xx reach Slack and PagerDuty stand-ins.

The pinned Prometheus and Alertmanager (tests/tools.py) run the rendered rules and alertmanager.yml with
compressed timings (1 s scrapes, seconds-long `for`, burn windows scaled 1/60 so the 1h/5m page
window is 1m/5s). The scenario runs once (module fixture); each test checks one outcome of it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote_plus

import pytest

from config import slo
from tests.slo.pipeline import ROUTING_KEY, Page, Pipeline, PipelineTimings

pytestmark = pytest.mark.e2e

MIME = "mime-server"
SLACK_OPS, SLACK_ALERTS = "/ops-critical", "/alerts"
GRAFANA = "http://127.0.0.1:3000"  # the dev stack's published Grafana: the links' default base


def explore_query(text: str) -> str:
    """The Loki query of the first Grafana Explore link in `text` (URL-query-escaped JSON, as Grafana reads it)."""
    match = re.search(r"/explore\?schemaVersion=1&orgId=1&panes=([^|>\s]+)", text)
    assert match, text
    return json.loads(unquote_plus(match.group(1)))["a"]["queries"][0]["expr"]


@dataclass
class Outcome:
    """What the receivers got, and when each step of the scenario happened (monotonic seconds)."""

    pipeline: Pipeline
    killed: float
    restarted: float
    faulted: float
    cleared: float
    ended: float
    firing_while_down: set[str]
    slack: list[Page]
    pagerduty: list[Page]

    def between(self, pages: list[Page], start: float, end: float) -> list[Page]:
        return [p for p in pages if start <= p.at < end]


@pytest.fixture(scope="module")
def outcome() -> Iterator[Outcome]:
    with Pipeline(PipelineTimings()) as p:
        killed = p.kill_mime_server()
        p.wait_page(p.slack, 15, alertname="MimeServerDown", path=SLACK_OPS)
        p.wait_page(p.pagerduty, 15, alertname="MimeServerDown")
        # the server's SLO alerts fire `page_for` after MimeServerDown: give them time to (not) arrive
        time.sleep(4)
        firing = {r["metric"]["alertname"] for r in p.query(f'ALERTS{{alertstate="firing", service="{MIME}"}}')}
        restarted = time.monotonic()
        p.start_mime_server()
        p.wait_page(p.slack, 15, alertname="MimeServerDown", status="RESOLVED", path=SLACK_OPS)
        p.wait_page(p.pagerduty, 15, alertname="MimeServerDown", status="RESOLVED")
        p.start_traffic()
        time.sleep(2)
        faulted = time.monotonic()
        p.set_faults(1.0)
        p.wait_page(p.pagerduty, 20, alertname="ErrorRateBudgetBurn", service=MIME, after=faulted)
        time.sleep(2)
        cleared = time.monotonic()
        p.set_faults(0)
        # the 6h/30m page window is 30 s at this scale: the group resolves once it is clean
        p.wait_page(p.pagerduty, 45, alertname="ErrorRateBudgetBurn", service=MIME, status="RESOLVED",
                    after=cleared)
        yield Outcome(p, killed, restarted, faulted, cleared, time.monotonic(), firing, p.pages(p.slack),
                      p.pages(p.pagerduty))


def _first(pages: list[Page], alertname: str, status: str = "FIRING", service: str = MIME,
           path: str | None = None) -> Page:
    found = [p for p in pages if p.alertname == alertname and p.status == status and p.service == service
             and (path is None or p.raw.path == path)]
    assert found, f"no {status} {alertname} for {service}; got {[(p.status, p.alertname, p.service) for p in pages]}"
    return found[0]


def test_killed_mime_server_reaches_ops_critical_as_a_slack_message(outcome: Outcome) -> None:
    page = _first(outcome.slack, "MimeServerDown", path=SLACK_OPS)
    body = page.raw.body
    assert body["channel"] == outcome.pipeline.settings.slack_channel_ops_critical
    attachment = body["attachments"][0]
    assert "MimeServerDown" in attachment["title"]
    text = attachment["text"]
    assert "*mime-server is down*" in text and "severity: critical · service: mime-server" in text
    assert f"<{GRAFANA}/d/runbook-mimeserverdown|Runbook>" in text
    assert f"<{GRAFANA}/d/service-overview?var-service=mime-server|Dashboard>" in text
    assert explore_query(text) == '{service="mime-server"} | json | level="error"'
    assert [(a["text"], a["url"]) for a in attachment["actions"]] == [
        ("Runbook", f"{GRAFANA}/d/runbook-mimeserverdown"),
        ("Dashboard", f"{GRAFANA}/d/service-overview?var-service=mime-server")]
    assert page.at - outcome.killed <= outcome.pipeline.timings.floor_seconds() + 5


def test_killed_mime_server_also_pages_pagerduty(outcome: Outcome) -> None:
    page = _first(outcome.pagerduty, "MimeServerDown")
    body = page.raw.body
    assert page.raw.path == "/v2/enqueue"
    assert body["routing_key"] == ROUTING_KEY and body["event_action"] == "trigger"
    assert body["payload"]["severity"] == "critical"
    details = body["payload"]["custom_details"]
    assert (details["summary"], details["severity"], details["service"]) == (
        "mime-server is down", "critical", "mime-server")
    assert details["runbook_url"] == f"{GRAFANA}/d/runbook-mimeserverdown"
    assert explore_query(details["logs_url"]) == '{service="mime-server"} | json | level="error"'
    assert [(link["text"], link["href"]) for link in body["links"]] == [
        ("Runbook", f"{GRAFANA}/d/runbook-mimeserverdown"),
        ("Dashboard", f"{GRAFANA}/d/service-overview?var-service=mime-server")]
    assert page.at - outcome.killed <= outcome.pipeline.timings.floor_seconds() + 5


def test_one_alert_group_keeps_one_pagerduty_dedup_key(outcome: Outcome) -> None:
    """Trigger and resolve of a group share its dedup key; another group has another."""
    down = {p.raw.body["dedup_key"] for p in outcome.pagerduty if p.alertname == "MimeServerDown"}
    burn = {p.raw.body["dedup_key"] for p in outcome.pagerduty
            if p.alertname == "ErrorRateBudgetBurn" and p.service == MIME}
    assert len(down) == 1 and len(burn) == 1 and down != burn
    assert {p.status for p in outcome.pagerduty if p.alertname == "MimeServerDown"} == {"FIRING", "RESOLVED"}


def test_burn_rate_notifications_say_how_fast_the_budget_burns(outcome: Outcome) -> None:
    page = _first(outcome.between(outcome.pagerduty, outcome.faulted, outcome.ended), "ErrorRateBudgetBurn")
    details = page.raw.body["payload"]["custom_details"]
    burn = re.search(r"Burn rate (\S+)x over 1h \(threshold 14\.4x", details["description"])
    assert burn and float(burn.group(1)) > 14.4, details["description"]
    assert details["dashboard_url"] == f"{GRAFANA}/d/slo-error-budget?var-service=mime-server"


def test_slo_alerts_of_the_down_server_are_inhibited(outcome: Outcome) -> None:
    during = (outcome.between(outcome.slack, outcome.killed, outcome.restarted)
              + outcome.between(outcome.pagerduty, outcome.killed, outcome.restarted))
    assert [(p.alertname, p.status) for p in during] == [("MimeServerDown", "FIRING")] * 2, during
    # the silenced alerts were firing in Prometheus: the silence is Alertmanager's inhibition
    assert {"AvailabilityBudgetBurn", "TargetDown"} <= outcome.firing_while_down


def test_restart_sends_resolved_to_both_receivers(outcome: Outcome) -> None:
    ops = _first(outcome.slack, "MimeServerDown", status="RESOLVED", path=SLACK_OPS)
    pd = _first(outcome.pagerduty, "MimeServerDown", status="RESOLVED")
    assert pd.raw.body["event_action"] == "resolve"
    assert ops.at > outcome.restarted and pd.at > outcome.restarted


def test_injected_5xx_pages_pagerduty_with_both_page_windows_in_one_notification(outcome: Outcome) -> None:
    after = outcome.between(outcome.pagerduty, outcome.faulted, outcome.ended)
    page = _first(after, "ErrorRateBudgetBurn")
    assert page.firing == 2, "the 1h/5m and 6h/30m page alerts of one group arrive as one notification"
    # Alertmanager 0.30+ sends the firing alerts as structured details (a JSON list), not text
    firing = page.raw.body["payload"]["custom_details"]["firing"]
    assert sorted(a["labels"]["long_window"] for a in firing) == ["1h", "6h"]
    assert page.at - outcome.faulted <= 20


def test_ticket_windows_are_inhibited_by_the_page_of_the_same_alert(outcome: Outcome) -> None:
    # once the page resolves the ticket (a slower burn, longer windows) may rightly surface; the Slack group
    # can flush up to one group_interval + evaluation before PagerDuty's resolve arrives: look before that
    resolved = _first(outcome.between(outcome.pagerduty, outcome.cleared, outcome.ended), "ErrorRateBudgetBurn",
                      status="RESOLVED")
    t = outcome.pipeline.timings
    margin = slo.duration_seconds(t.group_interval) + slo.duration_seconds(t.evaluation_interval)
    warnings = [p for p in outcome.between(outcome.slack, outcome.faulted, resolved.at - margin)
                if p.alertname == "ErrorRateBudgetBurn" and p.service == MIME]
    assert warnings == [], [(round(p.at - resolved.at, 2), p.status, p.firing) for p in warnings]


def test_clearing_the_fault_resolves_the_burn_rate_page(outcome: Outcome) -> None:
    after = outcome.between(outcome.pagerduty, outcome.cleared, outcome.ended)
    page = _first(after, "ErrorRateBudgetBurn", status="RESOLVED")
    assert page.raw.body["event_action"] == "resolve"
