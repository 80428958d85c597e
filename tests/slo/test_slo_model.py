"""The SLO model's arithmetic: budgets, downtime, burn factors, durations, bucket labels."""

from __future__ import annotations

import math

import pytest

from config import slo
from config.settings import StackSettings, load_stack


def test_runbook_example_allows_43_2_minutes_per_30_days(dev: StackSettings) -> None:
    assert slo.window_minutes(dev.slo_window_days) == 43_200
    assert slo.allowed_downtime_minutes(dev.sla.availability, dev.slo_window_days) == pytest.approx(43.2)


def test_burn_factors_follow_the_workbook_table() -> None:
    assert [slo.window_factor(w, 30) for w in slo.BURN_WINDOWS] == pytest.approx([14.4, 6, 3, 1])
    assert [w.severity for w in slo.BURN_WINDOWS] == ["critical", "critical", "warning", "warning"]


def test_burn_rate_factor_formula() -> None:
    assert slo.burn_rate_factor(0.02, 720, 1) == pytest.approx(14.4)
    assert slo.burn_rate_factor(0.1, 28 * 24, 24) == pytest.approx(2.8)


def test_error_budget_per_sli(dev: StackSettings) -> None:
    assert slo.error_budget(dev.slo, "availability") == pytest.approx(1 - dev.slo_availability)
    assert slo.error_budget(dev.slo, "errors") == dev.slo_error_rate
    assert slo.error_budget(dev.slo, "latency") == pytest.approx(1 - dev.slo_latency_percentile)
    assert slo.objective(dev.sla, "errors") == pytest.approx(1 - dev.sla_error_rate)


def test_budget_remaining_is_one_when_unspent_and_zero_when_spent() -> None:
    assert slo.budget_remaining(0, 0.001) == 1
    assert slo.budget_remaining(0.001, 0.001) == 0
    assert slo.budget_remaining(0.002, 0.001) == pytest.approx(-1)


def test_detection_time_of_a_full_outage_is_seconds_and_slow_burns_never_page(dev: StackSettings) -> None:
    page = slo.BURN_WINDOWS[0]
    full = 1 / slo.error_budget(dev.slo, "errors")
    assert slo.detection_seconds(page, 30, full) == pytest.approx(3600 * 14.4 / full)
    assert slo.detection_seconds(page, 30, 10) == math.inf


def test_durations_round_trip() -> None:
    assert slo.duration_seconds("1d") == 86_400
    assert slo.format_duration(3600) == "1h"
    assert slo.format_duration(3600 / 60) == "1m"
    assert slo.format_duration(1.5) == "1500ms"
    with pytest.raises(ValueError, match="Prometheus duration"):
        slo.duration_seconds("1 hour")


def test_le_labels_match_prometheus_client() -> None:
    assert slo.le_label(0.5) == "0.5"
    assert slo.le_label(1) == "1.0"
    with pytest.raises(ValueError, match="bucket bound"):
        slo.check_bucket(0.3, (0.25, 0.5))
    assert slo.check_bucket(0.5) == "0.5"  # the services' own buckets by default


def test_record_names_are_the_dashboard_contract() -> None:
    assert slo.error_ratio_record("5m") == "slo:sli_error:ratio_rate5m"
    assert slo.burn_rate_record("1h") == "slo:burn_rate:ratio_rate1h"
    assert slo.ERROR_BUDGET_REMAINING == "slo:error_budget_remaining:ratio"
    assert slo.sla_compliance_record(load_stack("dev")) == "sla:compliance:ratio30d"
    assert (slo.OBJECTIVE, slo.TIME_PERIOD_DAYS) == ("slo:objective:ratio", "slo:time_period:days")
    assert {s.name for s in slo.SLIS} == {"availability", "errors", "latency"}


def test_an_sli_is_data_its_error_ratio_derived_from_its_queries() -> None:
    errors = slo.SLI_BY_NAME["errors"]
    expr = errors.error_ratio("1h")
    assert '[1h]' in expr and "{window}" not in expr and 'code=~"5.."' in expr
    assert expr.endswith("> 0)") and "0 * sum by (service)" in expr
    with pytest.raises(ValueError, match="needs a latency bucket"):
        slo.SLI_BY_NAME["latency"].error_ratio("5m")
    with pytest.raises(ValueError, match="exactly one"):
        slo.Sli("errors", "X", ("a",), "d", target="error_rate", good="g", bad="b", total="t")
