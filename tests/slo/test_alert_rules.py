"""`promtool test rules` on the rendered rules: each alert fires when it should and stays silent otherwise.

Traffic is synthetic (1-minute samples); rates are derived from the dev stack's targets, so the
cases follow the stack config instead of repeating its numbers.
"""

from __future__ import annotations

import math
from pathlib import Path

from config import slo
from config.rules import RuleTimings
from config.settings import StackSettings
from tests.slo.promunit import Phase, expect, run_case, service_series, silent

MIME, GW = slo.MIME_SERVER, slo.GATEWAY
PER_MINUTE = 200_000  # requests per minute: large enough that budget-sized error ratios are whole numbers


def _minutes(duration: str) -> int:
    return math.ceil(slo.duration_seconds(duration) / 60)


def _both(settings: StackSettings, mime: list[Phase], minutes: int) -> list[dict[str, str]]:
    return service_series(settings, MIME, mime) + service_series(settings, GW, [Phase(minutes, ok=PER_MINUTE)])


def test_steady_errors_at_half_the_slo_rate_raise_nothing(promtool: str, dev: StackSettings, tmp_path: Path) -> None:
    errors = round(PER_MINUTE * dev.slo.error_rate / 2)  # 0.005% with the runbook's 0.01% SLO
    series = _both(dev, [Phase(360, ok=PER_MINUTE - errors, errors=errors)], 360)
    run_case(promtool, dev, tmp_path, series, silent(dev, "2h") + silent(dev, "6h"))


def test_no_traffic_does_not_look_like_an_outage(promtool: str, dev: StackSettings, tmp_path: Path) -> None:
    series = service_series(dev, MIME, [Phase(180)]) + service_series(dev, GW, [Phase(180)])
    run_case(promtool, dev, tmp_path, series, silent(dev, "3h"))


def test_full_outage_pages_within_the_expected_time(promtool: str, dev: StackSettings, tmp_path: Path) -> None:
    t = RuleTimings.from_settings(dev)
    fast = slo.BURN_WINDOWS[0]
    detect = slo.detection_seconds(fast, dev.slo_window_days, 1 / slo.error_budget(dev.slo, "availability"))
    # first bad sample + detection rounded up to a scrape, one evaluation, then the alert's `for`
    bound = 60 + math.ceil(detect / 60) + 1 + _minutes(t.page_for)
    series = _both(dev, [Phase(60, ok=PER_MINUTE), Phase(30, up=0)], 90)
    pages = [{"service": MIME, "sli": "availability", "severity": "critical", "long_window": w.long,
              "short_window": w.short} for w in slo.BURN_WINDOWS if w.severity == "critical"]
    run_case(promtool, dev, tmp_path, series, [
        *silent(dev, "59m"),
        expect(f"{60 + _minutes(t.page_for) - 1}m", "AvailabilityBudgetBurn"),
        expect(f"{bound}m", "AvailabilityBudgetBurn", pages),
    ])


def test_full_5xx_outage_pages_on_both_page_windows(promtool: str, dev: StackSettings, tmp_path: Path) -> None:
    t = RuleTimings.from_settings(dev)
    bound = 60 + 1 + 1 + _minutes(t.page_for)
    series = _both(dev, [Phase(60, ok=PER_MINUTE), Phase(30, errors=PER_MINUTE)], 90)
    pages = [{"service": MIME, "sli": "errors", "severity": "critical", "long_window": w.long,
              "short_window": w.short} for w in slo.BURN_WINDOWS if w.severity == "critical"]
    run_case(promtool, dev, tmp_path, series, [
        expect("59m", "ErrorRateBudgetBurn"),
        expect(f"{bound}m", "ErrorRateBudgetBurn", pages),
    ])


def test_half_budget_consumed_raises_error_budget_half_consumed(promtool: str, dev: StackSettings,
                                                                tmp_path: Path) -> None:
    share = dev.error_budget_alert_consumed + 0.1  # a steady burn just past the alert's share
    errors = round(PER_MINUTE * dev.slo.error_rate * share)
    series = _both(dev, [Phase(120, ok=PER_MINUTE - errors, errors=errors)], 120)
    run_case(promtool, dev, tmp_path, series, [
        *silent(dev, "2h", except_=("ErrorBudgetHalfConsumed",)),
        expect("2h", "ErrorBudgetHalfConsumed", [{"service": MIME, "sli": "errors", "severity": "warning"}]),
    ])


def test_budget_below_the_alert_share_stays_silent(promtool: str, dev: StackSettings, tmp_path: Path) -> None:
    share = dev.error_budget_alert_consumed - 0.1
    errors = round(PER_MINUTE * dev.slo.error_rate * share)
    series = _both(dev, [Phase(120, ok=PER_MINUTE - errors, errors=errors)], 120)
    run_case(promtool, dev, tmp_path, series, silent(dev, "2h"))


def test_mime_server_down_fires_on_up_zero(promtool: str, dev: StackSettings, tmp_path: Path) -> None:
    t = RuleTimings.from_settings(dev)
    series = _both(dev, [Phase(10, ok=PER_MINUTE), Phase(10, up=0)], 20)
    run_case(promtool, dev, tmp_path, series, [
        expect("9m", "MimeServerDown"),
        expect(f"{10 + _minutes(t.down_for) + 1}m", "MimeServerDown", [
            {"service": MIME, "job": MIME, "instance": f"{MIME}:8080", "severity": "critical"}]),
    ])


def test_mime_server_down_fires_when_its_target_is_absent(promtool: str, dev: StackSettings, tmp_path: Path) -> None:
    t = RuleTimings.from_settings(dev)
    series = service_series(dev, GW, [Phase(10, ok=PER_MINUTE)])
    run_case(promtool, dev, tmp_path, series, [
        expect(f"{_minutes(t.down_for) + 1}m", "MimeServerDown",
               [{"service": MIME, "job": MIME, "severity": "critical"}]),
    ])


def test_error_rate_above_the_sla_raises_sla_violation(promtool: str, dev: StackSettings, tmp_path: Path) -> None:
    errors = round(PER_MINUTE * dev.sla.error_rate * 2)
    series = _both(dev, [Phase(60, ok=PER_MINUTE - errors, errors=errors)], 60)
    run_case(promtool, dev, tmp_path, series, [
        expect("1h", "SLAViolation", [{"service": MIME, "sli": "errors", "severity": "critical"}]),
    ])


def test_error_rate_between_slo_and_sla_is_no_sla_violation(promtool: str, dev: StackSettings,
                                                            tmp_path: Path) -> None:
    errors = round(PER_MINUTE * (dev.slo.error_rate + dev.sla.error_rate) / 2)
    series = _both(dev, [Phase(60, ok=PER_MINUTE - errors, errors=errors)], 60)
    run_case(promtool, dev, tmp_path, series, [expect("1h", "SLAViolation")])


def test_slow_requests_beyond_the_sla_threshold_raise_sla_violation(promtool: str, dev: StackSettings,
                                                                   tmp_path: Path) -> None:
    slow = round(PER_MINUTE * (1 - dev.sla.latency_percentile) * 2)
    series = _both(dev, [Phase(60, ok=PER_MINUTE - slow, slow=slow)], 60)
    run_case(promtool, dev, tmp_path, series, [
        expect("1h", "SLAViolation", [{"service": MIME, "sli": "latency", "severity": "critical"}]),
    ])


def test_requests_between_slo_and_sla_thresholds_burn_latency_budget_only(promtool: str, dev: StackSettings,
                                                                         tmp_path: Path) -> None:
    mid = round(PER_MINUTE * (1 - dev.slo.latency_percentile) * 2)  # burn rate 2: the 3d/6h ticket
    series = _both(dev, [Phase(420, ok=PER_MINUTE - mid, mid=mid)], 420)
    ticket = slo.BURN_WINDOWS[-1]
    run_case(promtool, dev, tmp_path, series, [
        expect("7h", "SLAViolation"),
        expect("7h", "LatencyBudgetBurn", [{"service": MIME, "sli": "latency", "severity": "warning",
                                            "long_window": ticket.long, "short_window": ticket.short}]),
    ])


def test_jaeger_alerts_fire_on_the_span_counters_jaeger_exposes(promtool: str, dev: StackSettings,
                                                                 tmp_path: Path) -> None:
    # the names Prometheus 3 stores from the pinned Jaeger (tests/tracing/test_trace_path.py)
    rising = " ".join(str(10 * i) for i in range(31))
    series = [
        {"series": 'otelcol_receiver_refused_spans_total{job="jaeger", service="jaeger", receiver="otlp"}',
         "values": rising},
        {"series": 'otelcol_exporter_send_failed_spans_total{job="jaeger", service="jaeger", exporter="memstore"}',
         "values": rising},
        {"series": 'loki_discarded_samples_total{job="loki", service="loki", reason="rate_limited"}', "values": rising},
    ]
    labels = {"severity": "warning"}
    run_case(promtool, dev, tmp_path, series, [
        expect("30m", "JaegerSpansRefused", [{**labels, "service": "jaeger"}]),
        expect("30m", "JaegerSpanExportFailing", [{**labels, "service": "jaeger"}]),
        expect("30m", "LokiDiscardingLines", [{**labels, "service": "loki"}]),
        expect("30m", "LogShipperDroppingEntries"),
    ])
