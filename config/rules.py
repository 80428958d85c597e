"""Prometheus rule files rendered from stack settings: SLO recording rules, SLO, service and stack alerts.

`render_rule_files(settings)` returns one YAML text per concern, keyed by the file name Prometheus
loads from `/etc/prometheus/rules/*.yml`. Every target number comes from the settings through
`config.slo`; timings (`for` durations) come from `RuleTimings`, and `window_scale` compresses every
range so end-to-end tests can watch a 1-hour burn-rate window in seconds (record names keep their
nominal window, e.g. `slo:sli_error:ratio_rate1h` over `[1m]` at scale 1/60).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from config import slo
from config.settings import StackSettings, check_alert_for_order

STACK_RATE_WINDOW = "5m"


@dataclass(frozen=True)
class RuleTimings:
    """`for` durations of the alerts and the range compression factor (1 in every real stack)."""

    down_for: str
    page_for: str
    ticket_for: str
    stack_for: str
    window_scale: float = 1.0

    @classmethod
    def from_settings(cls, settings: StackSettings, window_scale: float = 1.0) -> "RuleTimings":
        """The stack's timings (alertDownFor, sloPageFor, sloTicketFor, stackAlertFor).

        MimeServerDown's `for` is the shortest so that it is firing, and inhibits the service's
        SLO alerts, before any of them can fire.
        """
        return cls(down_for=settings.alert_down_for, page_for=settings.slo_page_for,
                   ticket_for=settings.slo_ticket_for, stack_for=settings.stack_alert_for,
                   window_scale=window_scale)

    def __post_init__(self) -> None:
        check_alert_for_order(self.down_for, {"page_for": self.page_for, "ticket_for": self.ticket_for,
                                              "stack_for": self.stack_for})
        if not 0 < self.window_scale <= 1:
            raise ValueError(f"window_scale = {self.window_scale!r}: expected a factor in (0, 1]")

    def window(self, nominal: str) -> str:
        """The range actually queried for a nominal window: nominal x window_scale."""
        return slo.format_duration(slo.duration_seconds(nominal) * self.window_scale)


def grafana_url(settings: StackSettings) -> str:
    """Where users open the stack's Grafana: `grafanaExternalUrl`, else its published address."""
    from config.registry import published_url  # the registry's modules import this one

    return (settings.grafana_external_url or published_url(settings, "grafana")).rstrip("/")


def runbook_url(settings: StackSettings, alert: str) -> str:
    """An alert's runbook: `runbookBaseUrl#alert-<name>`, else its "Runbook" dashboard in Grafana."""
    if settings.runbook_base_url:
        return f"{settings.runbook_base_url}#alert-{alert.lower()}"
    return f"{grafana_url(settings)}/d/runbook-{alert.lower()}"


def dashboard_url(settings: StackSettings, uid: str, service_variable: bool = False) -> str:
    """A Grafana dashboard, with `$service` set to the alert's service where the dashboard has it."""
    suffix = "?var-service={{ $labels.service }}" if service_variable else ""
    return f"{grafana_url(settings)}/d/{uid}{suffix}"


def logs_url(settings: StackSettings) -> str:
    """Grafana Explore on Loki, prefiltered to the alert's service's error lines of the last hour.

    A Prometheus template: the pane (JSON) is built with the alert's `service` label, then URL-escaped.
    """
    from config.grafana.datasources import LOKI_UID  # config.grafana imports this module

    query = '{service="SERVICE"} | json | level="error"'
    pane = json.dumps({"a": {"datasource": LOKI_UID, "queries": [{"refId": "A", "expr": query}],
                             "range": {"from": "now-1h", "to": "now"}}}, separators=(",", ":"))
    return (f"{grafana_url(settings)}/explore?schemaVersion=1&orgId=1&panes="
            f"{{{{ printf `{pane.replace('SERVICE', '%s')}` $labels.service | urlQueryEscape }}}}")


def alert_names(settings: StackSettings) -> list[str]:
    """Every alert name the stack's rule files define, in file order."""
    names: list[str] = []
    for text in render_rule_files(settings).values():
        for group in yaml.safe_load(text)["groups"]:
            names += [r["alert"] for r in group["rules"] if "alert" in r and r["alert"] not in names]
    return names


def render_rule_files(settings: StackSettings, timings: RuleTimings | None = None) -> dict[str, str]:
    """Every rule file of the stack: file name -> YAML text."""
    t = timings or RuleTimings.from_settings(settings)
    files = {
        "slo-recording.yml": recording_groups(settings, t),
        "slo-alerts.yml": slo_alert_groups(settings, t),
        "service-alerts.yml": service_alert_groups(settings, t),
        "stack-alerts.yml": stack_alert_groups(settings, t),
    }
    return {name: _dump(settings, groups) for name, groups in files.items()}


# --- recording rules ---------------------------------------------------------------------------


def _le(targets: slo.SloTargets) -> str:
    return slo.check_bucket(targets.latency_seconds)


def error_ratio_expr(settings: StackSettings, sli: slo.Sli, rng: str) -> str:
    """PromQL of the SLI's bad-event ratio over `rng`, by service (the SLO's latency threshold)."""
    return sli.error_ratio(rng, _le(settings.slo))


def recording_groups(settings: StackSettings, t: RuleTimings) -> list[dict[str, Any]]:
    """Per SLI: error ratio and burn rate over every window; then budget remaining, SLA compliance
    and the metadata series (objective, period) dashboards read instead of repeating the settings."""
    groups: list[dict[str, Any]] = []
    for sli in slo.SLIS:
        budget = sli.error_budget(settings.slo)
        rules: list[dict[str, Any]] = []
        for w in slo.record_windows(settings):
            rules.append({"record": slo.error_ratio_record(w),
                          "expr": error_ratio_expr(settings, sli, t.window(w)),
                          "labels": {"sli": sli.name}})
        for w in slo.record_windows(settings):
            rules.append({"record": slo.burn_rate_record(w),
                          "expr": f'{slo.error_ratio_record(w)}{{sli="{sli.name}"}} / {_num(budget)}',
                          "labels": {"sli": sli.name}})
        if sli.counts_requests:
            for w in slo.guard_windows():
                rules.append({"record": slo.request_rate_record(w),
                              "expr": sli.query(str(sli.total), t.window(w), _le(settings.slo)),
                              "labels": {"sli": sli.name}})
        groups.append({"name": f"slo-{sli.name}", "rules": rules})
    period = slo.period_window(settings)
    budget_rules: list[dict[str, Any]] = [
        {"record": slo.ERROR_BUDGET_REMAINING, "expr": f"1 - {slo.burn_rate_record(period)}"},
    ]
    for sli in slo.SLIS:
        if sli.uses_threshold and _le(settings.sla) != _le(settings.slo):
            # the SLA counts requests against its own, looser threshold
            expr = (sli.good_ratio(t.window(period), _le(settings.sla)).strip() if sli.good is not None
                    else f"1 - (\n{sli.error_ratio(t.window(period), _le(settings.sla))}\n)")
        else:
            expr = f'1 - {slo.error_ratio_record(period)}{{sli="{sli.name}"}}'
        budget_rules.append({"record": slo.sla_compliance_record(settings), "expr": expr, "labels": {"sli": sli.name}})
    groups.append({"name": "slo-budget", "rules": budget_rules})
    meta: list[dict[str, Any]] = []
    for sli in slo.SLIS:
        for service in sli.services:
            meta.append({"record": slo.OBJECTIVE, "expr": f"vector({_num(sli.objective(settings.slo))})",
                         "labels": {"service": service, "sli": sli.name}})
    meta.append({"record": slo.TIME_PERIOD_DAYS, "expr": f"vector({settings.slo_window_days})"})
    groups.append({"name": "slo-metadata", "rules": meta})
    return groups


# --- alerts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Links:
    """Where a notification sends its reader: the dashboard to open, and whether error logs apply."""

    dashboard: str  # a dashboard uid
    service_variable: bool = False  # the dashboard has `$service`
    logs: bool = False  # the alert's service writes the request logs Explore can filter


def _dashboards() -> dict[str, str]:
    from config.grafana import service_overview, slo_dashboard, stack_health  # config.grafana imports this module

    return {"slo": slo_dashboard.UID, "service": service_overview.UID, "stack": stack_health.UID}


def _alert(settings: StackSettings, name: str, expr: str, for_: str, severity: str, summary: str,
           description: str, labels: dict[str, str] | None, links: _Links) -> dict[str, Any]:
    """One alerting rule whose annotations a person can act on: summary, description, runbook,
    dashboard and, where they apply, the service's error logs (absolute URLs)."""
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if slo.duration_seconds(for_) > 0:
        rule["for"] = for_
    rule["labels"] = {**(labels or {}), "severity": severity}
    notes = {"summary": summary, "description": description, "runbook_url": runbook_url(settings, name),
             "dashboard_url": dashboard_url(settings, links.dashboard, links.service_variable)}
    if links.logs and settings.logs_enabled:
        notes["logs_url"] = logs_url(settings)
    rule["annotations"] = notes
    return rule


def burn_alert_name(sli: slo.Sli) -> str:
    return f"{sli.title}BudgetBurn"


def slo_alert_groups(settings: StackSettings, t: RuleTimings) -> list[dict[str, Any]]:
    """Multi-window burn-rate alerts per SLI, ErrorBudgetHalfConsumed and SLAViolation."""
    days = settings.slo_window_days
    slo_links = _Links(_dashboards()["slo"], service_variable=True, logs=True)
    burn: list[dict[str, Any]] = []
    for sli in slo.SLIS:
        for bw in slo.BURN_WINDOWS:
            factor = _num(slo.window_factor(bw, days))
            sel = f'{{sli="{sli.name}"}}'
            expr = (f"{slo.burn_rate_record(bw.long)}{sel} > {factor}\nand\n"
                    f"{slo.burn_rate_record(bw.short)}{sel} > {factor}")
            if sli.counts_requests and bw.severity == "critical":
                # low-traffic guard: the events spent in the window must be the page's share of a
                # period's budget at the usual traffic, not only its share of the few requests there are
                usual = slo.request_rate_record(slo.traffic_reference_window())
                expr += (f"\nand\n{slo.burn_rate_record(bw.long)}{sel} * {slo.request_rate_record(bw.long)}{sel}"
                         f" / {usual}{sel} > {factor}")
            share = f"{bw.budget_share:.0%}"
            burn.append(_alert(
                settings, burn_alert_name(sli), expr, t.page_for if bw.severity == "critical" else t.ticket_for,
                bw.severity,
                f"{{{{ $labels.service }}}}: {sli.name} SLO burning its error budget {factor}x too fast",
                f"Burn rate {{{{ printf \"%.1f\" $value }}}}x over {bw.long} (threshold {factor}x, also exceeded over "
                f"{bw.short}): at this rate {share} of the {days}-day {sli.name} error budget is spent within "
                f"{bw.long} ({sli.description}).",
                {"sli": sli.name, "long_window": bw.long, "short_window": bw.short}, slo_links))
    consumed = settings.error_budget_alert_consumed
    budget = [_alert(
        settings, "ErrorBudgetHalfConsumed", f"{slo.ERROR_BUDGET_REMAINING} < {_num(1 - consumed)}", t.ticket_for,
        "warning",
        f"{{{{ $labels.service }}}}: more than {consumed:.0%} of the {days}-day {{{{ $labels.sli }}}} "
        "error budget is spent",
        "{{ $value | humanizePercentage }} of the budget remains; slow risky changes down.", None, slo_links)]
    sla: list[dict[str, Any]] = []
    for sli in slo.SLIS:
        target = sli.objective(settings.sla)
        sla.append(_alert(
            settings, "SLAViolation", f'{slo.sla_compliance_record(settings)}{{sli="{sli.name}"}} < {_num(target)}',
            t.page_for, "critical",
            f"{{{{ $labels.service }}}}: {sli.name} SLA broken over {days} days",
            f"The {days}-day {sli.name} SLI is {{{{ $value | humanizePercentage }}}}, below the "
            f"contractual {target:.3%}: start incident response.", {"sli": sli.name}, slo_links))
    return [{"name": "slo-burn-rate", "rules": burn}, {"name": "slo-budget-alerts", "rules": budget + sla}]


def service_alert_groups(settings: StackSettings, t: RuleTimings) -> list[dict[str, Any]]:
    """Alerts on the workload itself: MimeServerDown and the gateway's upstream errors."""
    links = _Links(_dashboards()["service"], service_variable=True, logs=True)
    down = _alert(
        settings, "MimeServerDown",
        f'up{{job="{slo.MIME_SERVER}"}} == 0\nor\nabsent(up{{job="{slo.MIME_SERVER}", service="{slo.MIME_SERVER}"}})',
        t.down_for, "critical",
        "mime-server is down",
        "{{ if $labels.instance }}{{ $labels.instance }} has not answered{{ else }}No mime-server target "
        "answered{{ end }} Prometheus scrapes for " + t.down_for + ".",
        {"service": slo.MIME_SERVER}, links)
    rng = t.window(STACK_RATE_WINDOW)
    upstream = _alert(
        settings, "GatewayUpstreamErrors",
        f'sum by (service, reason) (rate(gateway_upstream_errors_total{{service="{slo.GATEWAY}"}}[{rng}])) > 0',
        t.stack_for, "warning",
        "mockup-gateway cannot reach mime-server ({{ $labels.reason }})",
        "The gateway fails {{ $value | humanize }} upstream calls per second.",
        {"service": slo.GATEWAY}, links)
    return [{"name": "service-alerts", "rules": [down, upstream]}]


def stack_alert_groups(settings: StackSettings, t: RuleTimings) -> list[dict[str, Any]]:
    """Alerts on the observability stack itself: scrape targets down and failing components."""
    links = _Links(_dashboards()["stack"])
    rules = [_alert(
        settings, "TargetDown", "up == 0", t.stack_for, "warning",
        "{{ $labels.service }} scrape target {{ $labels.instance }} is down",
        "Prometheus has not scraped {{ $labels.job }} at {{ $labels.instance }} for " + t.stack_for + ".",
        None, links)]
    rng = t.window(STACK_RATE_WINDOW)
    from config.registry import enabled_services  # the registry's modules import this one

    for service in enabled_services(settings):
        for a in service.meta_alerts(settings):
            rules.append(_alert(
                settings, a.name, f"sum by (service) (rate({a.metric}{{job=\"{service.name}\"}}[{rng}])) > 0",
                t.stack_for, "warning", f"{service.name}: {a.what}",
                f"{a.what[0].upper() + a.what[1:]} ({{{{ $value | humanize }}}} per second over {STACK_RATE_WINDOW}).",
                {"service": service.name}, links))
    return [{"name": "stack-alerts", "rules": rules}]


# --- YAML ----------------------------------------------------------------------------------------


def _num(x: float) -> str:
    """A float as PromQL text without binary noise: 0.0005, not 0.0004999999999999449."""
    return format(x, ".10g")


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(doc: dict[str, Any]) -> str:
    """YAML text of a rendered document; multi-line strings (PromQL, templates) as literal blocks."""
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=120)


def _dump(settings: StackSettings, groups: list[dict[str, Any]]) -> str:
    head = f"# Rendered by config/rules.py for stack {settings.stack}; edit the renderer or the stack config.\n"
    return head + to_yaml({"groups": groups})
