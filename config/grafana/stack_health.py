"""Dashboard "Stack health": the runbook's "Monitoring the extensions", with current metric names.

Jaeger v2 is an OpenTelemetry collector (otelcol_* metrics); Loki's distributor counts lines and
bytes; the shipper's counters depend on which shipper the stack runs; Alertmanager and
Prometheus report on themselves. docs/metric-names.md maps the runbook's old names to these.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from config.grafana.panels import HALF, QUARTER, THIRD, Query, Step, new_dashboard, stat_panel, timeseries_panel
from config.settings import StackSettings

UID = "stack-health"
RATE = "[$__rate_interval]"

# Jaeger v2 (OpenTelemetry collector) self-metrics, scraped from its metrics endpoint.
JAEGER_ACCEPTED = "otelcol_receiver_accepted_spans_total"
JAEGER_REFUSED = "otelcol_receiver_refused_spans_total"
JAEGER_EXPORTED = "otelcol_exporter_sent_spans_total"
JAEGER_EXPORT_FAILED = "otelcol_exporter_send_failed_spans_total"
LOKI_LINES = "loki_distributor_lines_received_total"
LOKI_BYTES = "loki_distributor_bytes_received_total"
LOKI_DISCARDED_LINES = "loki_discarded_samples_total"
LOKI_DISCARDED_BYTES = "loki_discarded_bytes_total"
SHIPPER_METRICS: dict[str, tuple[str, str]] = {  # shipper -> (entries sent, entries dropped)
    "alloy": ("loki_write_sent_entries_total", "loki_write_dropped_entries_total"),
    "promtail": ("promtail_sent_entries_total", "promtail_dropped_entries_total"),
}
AM_ALERTS = "alertmanager_alerts"
AM_RECEIVED = "alertmanager_alerts_received_total"
AM_NOTIFICATIONS = "alertmanager_notifications_total"
AM_FAILED = "alertmanager_notifications_failed_total"
PROM_RULE_FAILURES = "prometheus_rule_evaluation_failures_total"
TSDB_SIZE = ("prometheus_tsdb_storage_blocks_bytes", "prometheus_tsdb_wal_storage_size_bytes",
             "prometheus_tsdb_head_chunks_storage_size_bytes")


def _rate(metric: str, by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{RATE}))"


def build(settings: StackSettings) -> dashboard.Dashboard:
    """The stack health dashboard; sections follow the services the stack deploys."""
    board = (new_dashboard(UID, "Stack health", ["stack", "extensions"],
                           f"The observability stack {settings.stack} watching itself: scrape targets, "
                           "rules, traces, logs and alert delivery.")
             .with_row(dashboard.Row("Prometheus"))
             .with_panel(stat_panel("Targets up", [Query("sum by (job) (up)", "{{job}}")], "short", span=HALF,
                                    base="red", steps=[Step(1, "green")],
                                    description="1 per healthy target; red means Prometheus cannot scrape it."))
             .with_panel(timeseries_panel("Rule evaluation failures",
                                          [Query(_rate(PROM_RULE_FAILURES, "rule_group"), "{{rule_group}}")],
                                          "short", span=QUARTER))
             .with_panel(timeseries_panel("TSDB size", [Query(f"sum({m})", m.removeprefix("prometheus_tsdb_"))
                                                        for m in TSDB_SIZE], "bytes", span=QUARTER)))
    if settings.tracing_enabled:
        board = (board.with_row(dashboard.Row("Jaeger (traces)"))
                 .with_panel(timeseries_panel("Spans received", [
                     Query(_rate(JAEGER_ACCEPTED, "receiver"), "accepted {{receiver}}"),
                     Query(_rate(JAEGER_REFUSED, "receiver"), "refused {{receiver}}")], "cps", span=HALF))
                 .with_panel(timeseries_panel("Spans exported to storage", [
                     Query(_rate(JAEGER_EXPORTED, "exporter"), "sent {{exporter}}"),
                     Query(_rate(JAEGER_EXPORT_FAILED, "exporter"), "failed {{exporter}}")], "cps", span=HALF)))
    if settings.logs_enabled:
        sent, dropped = SHIPPER_METRICS[settings.log_shipper]
        board = (board.with_row(dashboard.Row("Loki and the log shipper"))
                 .with_panel(timeseries_panel("Loki lines", [
                     Query(_rate(LOKI_LINES), "received"),
                     Query(_rate(LOKI_DISCARDED_LINES, "reason"), "discarded {{reason}}")], "cps", span=THIRD))
                 .with_panel(timeseries_panel("Loki bytes", [
                     Query(_rate(LOKI_BYTES), "received"),
                     Query(_rate(LOKI_DISCARDED_BYTES, "reason"), "discarded {{reason}}")], "Bps", span=THIRD))
                 .with_panel(timeseries_panel(f"{settings.log_shipper} entries", [
                     Query(_rate(sent), "sent"), Query(_rate(dropped, "reason"), "dropped {{reason}}")],
                     "cps", span=THIRD)))
    if settings.alerting_enabled:
        board = (board.with_row(dashboard.Row("Alertmanager"))
                 .with_panel(timeseries_panel("Alerts", [
                     Query(f"sum by (state) ({AM_ALERTS})", "{{state}}"),
                     Query(_rate(AM_RECEIVED, "status"), "received {{status}} /s")], "short", span=THIRD))
                 .with_panel(timeseries_panel("Notifications per integration", [
                     Query(_rate(AM_NOTIFICATIONS, "integration"), "{{integration}}")], "cps", span=THIRD))
                 .with_panel(timeseries_panel("Notification failures per integration", [
                     Query(_rate(AM_FAILED, "integration"), "{{integration}}")], "cps", span=THIRD)))
    return board
