"""The ground-truth calculator on hand-computed cases: budget spent per window, deserved level, onset."""

from __future__ import annotations

import pytest

from bench.alert_quality import truth
from bench.alert_quality.generate import ServiceSteps, Timeline
from bench.alert_quality.model import Scenario
from config import slo
from config.settings import StackSettings

MIME = slo.MIME_SERVER
STEP = 15.0
PER_STEP = 10  # requests per 15 s: 2/3 req/s


def make(dev: StackSettings, minutes: int, *, errors: dict[int, int] | None = None,
         down: dict[int, float] | None = None, events: list[dict] | None = None,
         error_segments: list[dict] | None = None) -> Timeline:
    """A hand-made timeline: `minutes` of PER_STEP requests per step; errors/down seconds by step index."""
    sc = Scenario.model_validate({"name": "hand", "class": "test", "duration": f"{minutes}m", "history": "0s",
                                  "traffic": [{"steady": PER_STEP / STEP}], "errors": error_segments or [],
                                  "events": events or []})
    n = minutes * 4 + 1
    st = ServiceSteps()
    for k in range(n):
        e = (errors or {}).get(k, 0)
        offered = PER_STEP if k else 0
        st.offered.append(offered)
        st.errors.append(e)
        st.ok.append(offered - e)
        st.unserved.append(0)
        st.slow.append(0)
        st.very_slow.append(0)
        st.down_seconds.append((down or {}).get(k, 0.0))
        st.up.append(1)
        st.restarted.append(False)
    return Timeline(sc, STEP, 0.0, [k * STEP for k in range(n)], {MIME: st})


def test_request_budget_is_the_budget_ratio_of_the_mean_rate_over_the_period(dev: StackSettings) -> None:
    tl = make(dev, 60)
    # 0.01% of (2/3 req/s x 30 days) = 172.8 requests
    assert truth.budget_units(tl, dev, MIME, "errors") == pytest.approx(
        dev.slo.error_rate * (PER_STEP / STEP) * dev.slo_window_days * 86400)
    assert truth.budget_units(tl, dev, MIME, "errors") == pytest.approx(172.8)


def test_four_errors_in_an_hour_spend_2_3_percent_and_deserve_a_page(dev: StackSettings) -> None:
    tl = make(dev, 120, errors={40: 4})  # 4 errors at 10 min
    t = truth.sli_truth(tl, dev, MIME, "errors")
    assert t.spent["1h"] == pytest.approx(4 / 172.8)  # 2.31%
    assert t.deserved == "page"
    (incident,) = t.incidents
    assert incident.level == "page" and incident.first_deserved == 40 * STEP
    # the 1h window stops deserving a page an hour later; 3d and 1d still hold less than 10%: no ticket
    assert t.level_at(40 * STEP + 3600 - STEP) == 2 and t.level_at(40 * STEP + 3600) == 0


def test_three_errors_in_an_hour_spend_1_7_percent_and_deserve_nothing(dev: StackSettings) -> None:
    t = truth.sli_truth(make(dev, 120, errors={40: 3}), dev, MIME, "errors")
    assert t.spent["1h"] == pytest.approx(3 / 172.8)  # 1.74%
    assert t.deserved == "none" and t.incidents == []


def test_thirty_minutes_down_spend_139_percent_of_the_availability_budget(dev: StackSettings) -> None:
    # 0.05% of 30 days = 1296 s; 2% of it (25.92 s) is passed after two 15-s steps of downtime
    down = {k: STEP for k in range(41, 41 + 120)}  # down from 10:00 to 40:00
    tl = make(dev, 120, down=down, events=[{"kind": "down", "at": "10m", "for": "30m"}])
    t = truth.sli_truth(tl, dev, MIME, "availability")
    assert truth.budget_units(tl, dev, MIME, "availability") == pytest.approx(1296)
    assert t.spent["1h"] == pytest.approx(1800 / 1296)
    (incident,) = t.incidents
    assert incident.level == "page"
    assert incident.onset == 600 and incident.first_deserved == 600 + 2 * STEP
    assert incident.end == 2400


def test_ten_percent_of_the_budget_in_three_days_deserves_a_ticket_not_a_page(dev: StackSettings) -> None:
    tl = make(dev, 24 * 60)
    # 18 errors (10.4% of 172.8), one every 80 minutes: never 2% in an hour or 5% in 6 hours
    st = tl.services[MIME]
    for k in range(320, len(st.errors), 320):
        st.errors[k] = 1
    t = truth.sli_truth(tl, dev, MIME, "errors")
    assert t.spent["1h"] < 0.02 and t.spent["6h"] < 0.05
    assert t.spent["1d"] == pytest.approx(18 / 172.8)
    assert sum(st.errors) == 18
    assert t.deserved == "ticket"
    assert [i.level for i in t.incidents] == ["ticket"]


def test_onset_and_end_come_from_the_scenario_change_not_the_first_deserved_time(dev: StackSettings) -> None:
    errs = {k: 1 for k in range(40, 80)}  # one error per step from 10 min to 20 min
    tl = make(dev, 120, errors=errs, error_segments=[{"step": 0.1, "at": "10m", "for": "10m"}])
    (incident,) = truth.sli_truth(tl, dev, MIME, "errors").incidents
    assert incident.onset == 600 and incident.end == 1200
    assert incident.first_deserved == 43 * STEP  # 4 errors: 2.3% >= 2%


def test_thresholds_are_read_from_the_slo_burn_windows(dev: StackSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    tl = make(dev, 120, errors={40: 3})  # 1.74%: nothing with the workbook's table
    assert truth.sli_truth(tl, dev, MIME, "errors").deserved == "none"
    monkeypatch.setattr(slo, "BURN_WINDOWS", (slo.BurnWindow("critical", 0.015, "1h", "5m"),))
    assert truth.sli_truth(tl, dev, MIME, "errors").deserved == "page"
