"""Prometheus rule files rendered from stack settings: SLO recording rules, SLO, service and stack alerts.

`render_rule_files(settings)` returns one YAML text per concern, keyed by the file name Prometheus
loads from `/etc/prometheus/rules/*.yml`. Every target number comes from the settings through
`config.slo`; timings (`for` durations) come from `RuleTimings`, and `window_scale` compresses every
range so end-to-end tests can watch a 1-hour burn-rate window in seconds (record names keep their
nominal window, e.g. `slo:sli_error:ratio_rate1h` over `[1m]` at scale 1/60).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from config import slo
from config.settings import StackSettings

STACK_RATE_WINDOW = "5m"
SLO_ROUTES = '/v1/.*'  # user-facing API only: scrapes, health checks and admin calls are not the SLI
RUNBOOK = "README.md#alert-{anchor}"


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
        down = slo.duration_seconds(self.down_for)
        for name in ("page_for", "ticket_for", "stack_for"):
            value = getattr(self, name)
            if slo.duration_seconds(value) < down:
                raise ValueError(f"{name} = {value!r}: expected at least down_for ({self.down_for}), or the "
                                 "alerts MimeServerDown inhibits would notify before it")
        if not 0 < self.window_scale <= 1:
            raise ValueError(f"window_scale = {self.window_scale!r}: expected a factor in (0, 1]")

    def window(self, nominal: str) -> str:
        """The range actually queried for a nominal window: nominal x window_scale."""
        return slo.format_duration(slo.duration_seconds(nominal) * self.window_scale)


def runbook_url(alert: str) -> str:
    """The README anchor of an alert's runbook section: README.md#alert-<lowercase name>."""
    return RUNBOOK.format(anchor=alert.lower())


def render_rule_files(settings: StackSettings, timings: RuleTimings | None = None) -> dict[str, str]:
    """Every rule file of the stack: file name -> YAML text."""
    t = timings or RuleTimings.from_settings(settings)
    files = {
        "slo-recording.yml": recording_groups(settings, t),
        "slo-alerts.yml": slo_alert_groups(settings, t),
        "service-alerts.yml": service_alert_groups(t),
        "stack-alerts.yml": stack_alert_groups(settings, t),
    }
    return {name: _dump(settings, groups) for name, groups in files.items()}


# --- recording rules ---------------------------------------------------------------------------


def _services(sli: slo.Sli) -> str:
    return "|".join(sli.services)


def error_ratio_expr(settings: StackSettings, sli: slo.Sli, rng: str) -> str:
    """PromQL of the SLI's bad-event ratio over `rng`, by service; no traffic gives no sample, not 1."""
    svc = _services(sli)
    if sli.name == "availability":
        return f'1 - avg by (service) (avg_over_time(up{{service=~"{svc}"}}[{rng}]))'
    sel = f'service=~"{svc}", route=~"{SLO_ROUTES}"'
    if sli.name == "errors":
        total = request_rate_expr(sli, rng)
        bad = f'sum by (service) (rate(http_requests_total{{{sel}, code=~"5.."}}[{rng}]))'
        # a service with traffic but no 5xx series yet has an error ratio of 0, not no data
        return f"(\n  {bad}\n  or\n  0 * {total}\n)\n/\n({total} > 0)"
    return f"1 - (\n{latency_good_expr(settings, rng, settings.slo.latency_seconds)}\n)"


def request_rate_expr(sli: slo.Sli, rng: str) -> str:
    """PromQL of a request SLI's /v1 requests per second over `rng`, by service (its ratio's denominator)."""
    sel = f'service=~"{_services(sli)}", route=~"{SLO_ROUTES}"'
    metric = "http_requests_total" if sli.name == "errors" else "http_request_duration_seconds_count"
    return f"sum by (service) (rate({metric}{{{sel}}}[{rng}]))"


def latency_good_expr(settings: StackSettings, rng: str, threshold: float) -> str:
    """PromQL of the share of /v1 requests faster than `threshold` over `rng`, by service."""
    sli = slo.SLI_BY_NAME["latency"]
    sel = f'service=~"{_services(sli)}", route=~"{SLO_ROUTES}"'
    le = slo.check_bucket(threshold, slo.service_buckets())
    fast = f'sum by (service) (rate(http_request_duration_seconds_bucket{{{sel}, le="{le}"}}[{rng}]))'
    return f"  {fast}\n  /\n  ({request_rate_expr(sli, rng)} > 0)"


def recording_groups(settings: StackSettings, t: RuleTimings) -> list[dict[str, Any]]:
    """Per SLI: error ratio and burn rate over every window; then budget remaining and SLA compliance."""
    groups: list[dict[str, Any]] = []
    for sli in slo.SLIS:
        budget = slo.error_budget(settings.slo, sli.name)
        rules: list[dict[str, Any]] = []
        for w in slo.record_windows(settings):
            rules.append({"record": slo.error_ratio_record(w),
                          "expr": error_ratio_expr(settings, sli, t.window(w)),
                          "labels": {"sli": sli.name}})
        for w in slo.record_windows(settings):
            rules.append({"record": slo.burn_rate_record(w),
                          "expr": f'{slo.error_ratio_record(w)}{{sli="{sli.name}"}} / {_num(budget)}',
                          "labels": {"sli": sli.name}})
        if sli.kind == "request":
            for w in slo.guard_windows():
                rules.append({"record": slo.request_rate_record(w), "expr": request_rate_expr(sli, t.window(w)),
                              "labels": {"sli": sli.name}})
        groups.append({"name": f"slo-{sli.name}", "rules": rules})
    period = slo.period_window(settings)
    budget_rules: list[dict[str, Any]] = [
        {"record": slo.ERROR_BUDGET_REMAINING, "expr": f"1 - {slo.burn_rate_record(period)}"},
    ]
    for sli in slo.SLIS:
        if sli.name == "latency" and settings.sla.latency_seconds != settings.slo.latency_seconds:
            # the SLA counts requests against its own, looser threshold
            expr = latency_good_expr(settings, t.window(period), settings.sla.latency_seconds).strip()
        else:
            expr = f'1 - {slo.error_ratio_record(period)}{{sli="{sli.name}"}}'
        budget_rules.append({"record": slo.SLA_COMPLIANCE, "expr": expr, "labels": {"sli": sli.name}})
    groups.append({"name": "slo-budget", "rules": budget_rules})
    return groups


# --- alerts ------------------------------------------------------------------------------------


def _alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str,
           labels: dict[str, str] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if slo.duration_seconds(for_) > 0:
        rule["for"] = for_
    rule["labels"] = {**(labels or {}), "severity": severity}
    rule["annotations"] = {"summary": summary, "description": description, "runbook_url": runbook_url(name)}
    return rule


def burn_alert_name(sli: slo.Sli) -> str:
    return f"{sli.title}BudgetBurn"


def slo_alert_groups(settings: StackSettings, t: RuleTimings) -> list[dict[str, Any]]:
    """Multi-window burn-rate alerts per SLI, ErrorBudgetHalfConsumed and SLAViolation."""
    days = settings.slo_window_days
    burn: list[dict[str, Any]] = []
    for sli in slo.SLIS:
        for bw in slo.BURN_WINDOWS:
            factor = _num(slo.window_factor(bw, days))
            sel = f'{{sli="{sli.name}"}}'
            expr = (f"{slo.burn_rate_record(bw.long)}{sel} > {factor}\nand\n"
                    f"{slo.burn_rate_record(bw.short)}{sel} > {factor}")
            if sli.kind == "request" and bw.severity == "critical":
                # low-traffic guard: the events spent in the window must be the page's share of a
                # period's budget at the usual traffic, not only its share of the few requests there are
                usual = slo.request_rate_record(slo.traffic_reference_window())
                expr += (f"\nand\n{slo.burn_rate_record(bw.long)}{sel} * {slo.request_rate_record(bw.long)}{sel}"
                         f" / {usual}{sel} > {factor}")
            share = f"{bw.budget_share:.0%}"
            burn.append(_alert(
                burn_alert_name(sli), expr, t.page_for if bw.severity == "critical" else t.ticket_for,
                bw.severity,
                f"{{{{ $labels.service }}}}: {sli.name} SLO burning its error budget {factor}x too fast",
                f"At this rate {share} of the {days}-day {sli.name} error budget is spent within {bw.long} "
                f"(burn rate over {bw.long} and {bw.short} above {factor}; {sli.description}).",
                {"sli": sli.name, "long_window": bw.long, "short_window": bw.short}))
    consumed = settings.error_budget_alert_consumed
    budget = [_alert(
        "ErrorBudgetHalfConsumed", f"{slo.ERROR_BUDGET_REMAINING} < {_num(1 - consumed)}", t.ticket_for,
        "warning",
        f"{{{{ $labels.service }}}}: more than {consumed:.0%} of the {days}-day {{{{ $labels.sli }}}} "
        "error budget is spent",
        "{{ $value | humanizePercentage }} of the budget remains; slow risky changes down.")]
    sla: list[dict[str, Any]] = []
    for sli in slo.SLIS:
        target = slo.objective(settings.sla, sli.name)
        sla.append(_alert(
            "SLAViolation", f'{slo.SLA_COMPLIANCE}{{sli="{sli.name}"}} < {_num(target)}', t.page_for,
            "critical",
            f"{{{{ $labels.service }}}}: {sli.name} SLA broken over {days} days",
            f"The {days}-day {sli.name} SLI is {{{{ $value | humanizePercentage }}}}, below the "
            f"contractual {target:.3%}: start incident response.", {"sli": sli.name}))
    return [{"name": "slo-burn-rate", "rules": burn}, {"name": "slo-budget-alerts", "rules": budget + sla}]


def service_alert_groups(t: RuleTimings) -> list[dict[str, Any]]:
    """Alerts on the workload itself: MimeServerDown and the gateway's upstream errors."""
    down = _alert(
        "MimeServerDown",
        f'up{{job="{slo.MIME_SERVER}"}} == 0\nor\nabsent(up{{job="{slo.MIME_SERVER}", service="{slo.MIME_SERVER}"}})',
        t.down_for, "critical",
        "mime-server is down",
        "{{ if $labels.instance }}{{ $labels.instance }} has not answered{{ else }}No mime-server target "
        "answered{{ end }} Prometheus scrapes for " + t.down_for + ".",
        {"service": slo.MIME_SERVER})
    rng = t.window(STACK_RATE_WINDOW)
    upstream = _alert(
        "GatewayUpstreamErrors",
        f'sum by (service, reason) (rate(gateway_upstream_errors_total{{service="{slo.GATEWAY}"}}[{rng}])) > 0',
        t.stack_for, "warning",
        "mockup-gateway cannot reach mime-server ({{ $labels.reason }})",
        "The gateway fails {{ $value | humanize }} upstream calls per second.",
        {"service": slo.GATEWAY})
    return [{"name": "service-alerts", "rules": [down, upstream]}]


@dataclass(frozen=True)
class _CounterAlert:
    name: str
    service: str
    metric: str  # a metric name, or a regex over __name__ when names differ between versions
    what: str


def _counter_alerts(settings: StackSettings) -> list[_CounterAlert]:
    alerts = [
        _CounterAlert("PrometheusRuleEvaluationFailures", "prometheus",
                      "prometheus_rule_evaluation_failures_total", "rule evaluations fail"),
        _CounterAlert("PrometheusNotificationsDropped", "prometheus",
                      "prometheus_notifications_dropped_total", "alert notifications to Alertmanager are dropped"),
    ]
    if settings.alerting_enabled:
        alerts.append(_CounterAlert("AlertmanagerNotificationsFailing", "alertmanager",
                                    "alertmanager_notifications_failed_total", "notifications to receivers fail"))
    if settings.tracing_enabled:
        # Jaeger 2.x (OTel collector) names; `_total` depends on the exporter and Prometheus version
        alerts += [
            _CounterAlert("JaegerSpansRefused", "jaeger", "otelcol_receiver_refused_spans(_total)?",
                          "the span receivers refuse spans"),
            _CounterAlert("JaegerSpanExportFailing", "jaeger", "otelcol_exporter_send_failed_spans(_total)?",
                          "spans fail to reach storage"),
        ]
    if settings.logs_enabled:
        shipper_metric = {"alloy": "loki_write_dropped_entries_total",
                          "promtail": "promtail_dropped_entries_total"}[settings.log_shipper]
        alerts += [
            _CounterAlert("LokiDiscardingLines", "loki", "loki_discarded_samples_total", "Loki discards log lines"),
            _CounterAlert("LogShipperDroppingEntries", settings.log_shipper, shipper_metric,
                          f"{settings.log_shipper} drops log entries"),
        ]
    return alerts


def stack_alert_groups(settings: StackSettings, t: RuleTimings) -> list[dict[str, Any]]:
    """Alerts on the observability stack itself: scrape targets down and failing components."""
    rules = [_alert(
        "TargetDown", "up == 0", t.stack_for, "warning",
        "{{ $labels.service }} scrape target {{ $labels.instance }} is down",
        "Prometheus has not scraped {{ $labels.job }} at {{ $labels.instance }} for " + t.stack_for + ".")]
    rng = t.window(STACK_RATE_WINDOW)
    for a in _counter_alerts(settings):
        sel = (f'{{__name__=~"{a.metric}", job="{a.service}"}}' if "(" in a.metric
               else f'{a.metric}{{job="{a.service}"}}')
        rules.append(_alert(
            a.name, f"sum by (service) (rate({sel}[{rng}])) > 0", t.stack_for, "warning",
            f"{a.service}: {a.what}",
            f"{a.what[0].upper() + a.what[1:]} ({{{{ $value | humanize }}}} per second over {STACK_RATE_WINDOW}).",
            {"service": a.service}))
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
