"""Alerts judged against the ground truth: precision, recall, detection and reset time, false page rate.

An alert counts when it fired (pending alone notifies nobody). It is true when, at some moment
while it was firing, its service and SLI deserved at least its level (a critical alert a page, a
warning at least a ticket); otherwise it is false. Detection time is from the onset of the
incident (the start of the scenario change that spent the budget) to the alert firing; reset time
is from the end of that change to the alert resolving. Recall is the share of incidents of the
alert's SLI that deserved its level and on which it fired truly. An alert that resolves and fires
again on the same incident counts once (its `firings` are reported).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from typing import Any

import yaml

from bench.alert_quality.evaluate import Episode, Evaluation
from bench.alert_quality.truth import LEVELS, SEVERITY_LEVEL, Incident, SliTruth
from config import slo
from config.rules import render_rule_files
from config.settings import StackSettings

# Alerts that are about one service's availability without carrying an `sli` label.
AVAILABILITY_ALERTS = {"MimeServerDown": slo.MIME_SERVER, "TargetDown": None}
GATEWAY_ERRORS_ALERTS = {"GatewayUpstreamErrors"}


def period_alerts(settings: StackSettings) -> set[str]:
    """Alerts on the whole SLO period (they read the 30-day records): not judged by this bench, whose
    scenarios hold days, not a month, of history (see docs/alert-quality.md)."""
    names = set()
    for text in render_rule_files(settings).values():
        for group in yaml.safe_load(text)["groups"]:
            for rule in group["rules"]:
                if "alert" in rule and (slo.ERROR_BUDGET_REMAINING in rule["expr"] or slo.sla_compliance_record(settings) in rule["expr"]):
                    names.add(rule["alert"])
    return names


def alert_key(alert: str, labels: dict[str, str]) -> str:
    """Name of an alert row: the alert name, plus its burn windows where it has them (Name[1h/5m])."""
    if "long_window" in labels:
        return f"{alert}[{labels['long_window']}/{labels['short_window']}]"
    return alert


@dataclass(frozen=True)
class AlertRow:
    key: str
    severity: str
    slis: frozenset[str]  # SLIs the alert is about (every SLI when it reads the sli label of a series)
    services: frozenset[str] | None  # None: any service


def alert_rows(settings: StackSettings) -> dict[str, AlertRow]:
    """Every judged alert of the rendered rules, by key, with the SLIs and services it answers for."""
    rows: dict[str, AlertRow] = {}
    unjudged = period_alerts(settings)
    all_slis = frozenset(s.name for s in slo.SLIS)
    for text in render_rule_files(settings).values():
        for group in yaml.safe_load(text)["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                name, labels = rule["alert"], rule.get("labels", {})
                key = alert_key(name, labels)
                if name in AVAILABILITY_ALERTS:
                    slis, services = frozenset({"availability"}), AVAILABILITY_ALERTS[name]
                elif name in GATEWAY_ERRORS_ALERTS:
                    slis, services = frozenset({"errors"}), slo.GATEWAY
                elif "sli" in labels:
                    slis, services = frozenset({labels["sli"]}), None
                elif "slo:" in rule["expr"] or "sla:" in rule["expr"]:
                    slis, services = all_slis, None
                else:
                    slis, services = frozenset(), labels.get("service")
                if name in unjudged:
                    continue
                old = rows.get(key)
                if old:
                    slis = slis | old.slis
                rows[key] = AlertRow(key, labels["severity"], slis,
                                     frozenset({services}) if isinstance(services, str) else None)
    return rows


def episode_sli(ep: Episode) -> tuple[str | None, str | None]:
    """(service, SLI) an alert instance is about."""
    service = ep.labels.get("service")
    if ep.alert in AVAILABILITY_ALERTS:
        return service, "availability"
    if ep.alert in GATEWAY_ERRORS_ALERTS:
        return service, "errors"
    return service, ep.labels.get("sli")


@dataclass
class Judged:
    scenario: str
    klass: str
    key: str
    episode: Episode
    service: str | None
    sli: str | None
    level: str  # page or ticket
    true: bool
    incident: Incident | None
    detection: float | None
    reset: float | None
    episodes: int = 1  # firings merged into this alert (a true alert that resolves and fires again)


def _deserved_while(truth: SliTruth, start: float, end: float, level: int) -> bool:
    times = truth.times
    step = truth.step
    for k, t in enumerate(times):
        if t - step < end and t >= start and truth.level[k] >= level:
            return True
    return truth.level_at(start) >= level


def judge(scenario: str, klass: str, evaluation: Evaluation, truths: list[SliTruth], end: float,
          unjudged: set[str] = frozenset()) -> list[Judged]:  # type: ignore[assignment]
    """Every fired alert of one scenario (but `unjudged` names), true or false, with detection and reset."""
    by = {(t.service, t.sli): t for t in truths}
    out: list[Judged] = []
    for ep in evaluation.episodes:
        if ep.fired is None or ep.alert in unjudged:
            continue
        service, sli = episode_sli(ep)
        level = SEVERITY_LEVEL.get(ep.severity, "ticket")
        truth = by.get((service, sli)) if service and sli else None
        stop = ep.resolved if ep.resolved is not None else end
        true = False
        incident = None
        if truth is not None:
            need = LEVELS.index(level)
            true = _deserved_while(truth, ep.fired, stop, need)
            if true:
                incident = next((i for i in truth.incidents
                                 if i.first_deserved - truth.step <= stop and i.last_deserved >= ep.fired
                                 and LEVELS.index(i.level) >= need), None)
        detection = ep.fired - incident.onset if incident else None
        reset = (ep.resolved - incident.end) if incident and ep.resolved is not None and incident.end is not None \
            else None
        out.append(Judged(scenario, klass, alert_key(ep.alert, ep.labels), ep, service, sli, level, true,
                          incident, detection, reset))
    return out


def merge_refirings(judged: list[Judged]) -> list[Judged]:
    """One alert per (scenario, row, service, incident) for true alerts: an alert that resolves and fires
    again on the same incident (a noisy short window) is one alert with several firings; its
    detection is the first firing's, its reset the last resolution's. False firings stay one each."""
    out: list[Judged] = []
    groups: dict[tuple[str, str, str | None, int], Judged] = {}
    for j in judged:
        if not j.true or j.incident is None:
            out.append(j)
            continue
        key = (j.scenario, j.key, j.service, id(j.incident))
        first = groups.get(key)
        if first is None:
            groups[key] = first = replace(j)
            out.append(first)
            continue
        first.episodes += 1
        first.reset = j.reset if j.episode.resolved is not None else None
    return out


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "max": None}
    return {"median": round(statistics.median(values), 1), "max": round(max(values), 1)}


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _covers(row: AlertRow, inc: Incident) -> bool:
    return inc.sli in row.slis and (row.services is None or inc.service in row.services)


def summarize(judged: list[Judged], incidents: list[tuple[str, str, Incident]], rows: dict[str, AlertRow],
              noise: set[str]) -> dict[str, Any]:
    """Per alert row and overall figures from judged alerts and the incidents of the same scenarios.

    `incidents` are (scenario, class, incident); `noise` names the scenarios that deserve nothing."""
    alerts: dict[str, Any] = {}
    for key, row in rows.items():
        mine = [j for j in judged if j.key == key]
        need = LEVELS.index(SEVERITY_LEVEL[row.severity])
        relevant = [(s, i) for s, _, i in incidents if _covers(row, i) and LEVELS.index(i.level) >= need]
        caught = [(s, i) for s, i in relevant if any(j.true and j.scenario == s and j.incident is i for j in mine)]
        alerts[key] = {
            "severity": row.severity,
            "fired": len(mine),
            "firings": sum(j.episodes for j in mine),
            "true": sum(j.true for j in mine),
            "false": sum(not j.true for j in mine),
            "precision": _rate(sum(j.true for j in mine), len(mine)),
            "incidents": len(relevant),
            "recall": _rate(len(caught), len(relevant)),
            "detection_s": _stats([j.detection for j in mine if j.detection is not None]),
            "reset_s": _stats([j.reset for j in mine if j.reset is not None]),
        }
    return {"alerts": alerts, "overall": overall(judged, incidents, noise)}


def overall(judged: list[Judged], incidents: list[tuple[str, str, Incident]], noise: set[str]) -> dict[str, Any]:
    """False page/ticket rates (overall and on the noise scenarios), recall by level, detection, reset."""
    pages = [j for j in judged if j.level == "page"]
    tickets = [j for j in judged if j.level == "ticket"]
    noise_pages = [j for j in pages if j.scenario in noise]
    noise_tickets = [j for j in tickets if j.scenario in noise]
    page_inc = [(s, i) for s, _, i in incidents if i.level == "page"]
    ticket_inc = [(s, i) for s, _, i in incidents if i.level == "ticket"]

    def detected(s: str, i: Incident, levels: tuple[str, ...]) -> list[Judged]:
        return [j for j in judged if j.true and j.scenario == s and j.incident is i and j.level in levels]

    first_page = [min(j.detection for j in d) for s, i in page_inc if (d := detected(s, i, ("page",)))]
    first_any = [min(j.detection for j in d) for s, i in ticket_inc if (d := detected(s, i, ("page", "ticket")))]
    return {
        "pages": len(pages),
        "page_firings": sum(j.episodes for j in pages),
        "false_pages": sum(not j.true for j in pages),
        "false_page_rate": _rate(sum(not j.true for j in pages), len(pages)),
        "tickets": len(tickets),
        "false_tickets": sum(not j.true for j in tickets),
        "false_ticket_rate": _rate(sum(not j.true for j in tickets), len(tickets)),
        "noise_scenarios": len(noise),
        "noise_pages": len(noise_pages),
        "noise_false_page_rate": _rate(len(noise_pages), len(noise_pages)) if noise_pages else 0.0,
        "noise_tickets": len(noise_tickets),
        "page_incidents": len(page_inc),
        "page_recall": _rate(sum(bool(detected(s, i, ("page",))) for s, i in page_inc), len(page_inc)),
        "ticket_incidents": len(ticket_inc),
        "ticket_recall": _rate(sum(bool(detected(s, i, ("page", "ticket"))) for s, i in ticket_inc),
                               len(ticket_inc)),
        "page_detection_s": _stats(first_page),
        "ticket_detection_s": _stats(first_any),
        "page_reset_s": _stats([j.reset for j in pages if j.reset is not None]),
        "ticket_reset_s": _stats([j.reset for j in tickets if j.reset is not None]),
    }
