"""The scenario format: the library validates, wrong files fail naming the scenario and the field,
and the generated series behave as the services' and Prometheus's do (resets, staleness, children)."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from bench.alert_quality import generate
from bench.alert_quality.model import LIBRARY, ScenarioError, load_scenarios, parse_scenarios
from config import slo
from config.settings import StackSettings

BASE = {"name": "x", "class": "blip", "duration": "1h", "traffic": [{"steady": 5}]}


def test_library_holds_forty_scenarios_across_the_issue_classes() -> None:
    scenarios = load_scenarios(LIBRARY)
    classes = collections.Counter(s.klass for s in scenarios)
    assert len(scenarios) >= 40
    assert set(classes) >= {"healthy", "blip", "slow-burn", "latency", "outage", "restarts", "low-traffic"}


@pytest.mark.parametrize(("change", "field", "expected"), [
    ({"duration": "1 hour"}, "duration", "should match pattern"),
    ({"traffic": [{"steady": 5, "ramp": {"from": 0, "to": 1}}]}, "traffic[0]", "exactly one of"),
    ({"errors": [{"step": "14 x"}]}, "errors[0].step", ""),
    ({"traffic": [{"steady": "3x"}]}, "traffic", "requests per second"),
    ({"events": [{"kind": "down", "at": "10m"}]}, "events[0]", "needs `for`"),
    ({"events": [{"kind": "reboot", "at": "10m"}]}, "events[0].kind", "down"),
    ({"events": [{"kind": "down", "at": "50m", "for": "20m"}]}, "(scenario)", "ends after"),
    ({"colour": "red"}, "colour", "Extra inputs"),
])
def test_a_wrong_scenario_names_itself_the_field_and_the_expectation(change: dict, field: str, expected: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenarios([{**BASE, "name": "bad-one", **change}], "cases.yaml")
    message = str(err.value)
    assert message.startswith("cases.yaml: scenario 'bad-one': ")
    assert field in message and expected in message


def test_duplicate_names_and_non_lists_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="name used twice"):
        parse_scenarios([BASE, BASE], "cases.yaml")
    path = tmp_path / "cases.yaml"
    path.write_text("name: x\n")
    with pytest.raises(ScenarioError, match="expected a YAML list"):
        load_scenarios(path)


def test_budget_multiples_follow_the_slo(dev: StackSettings) -> None:
    (sc,) = parse_scenarios([{**BASE, "errors": [{"steady": "14x"}], "slow": [{"steady": "2x"}]}], "t")
    tl = generate.timeline(sc, dev)
    errors = generate.Signal(sc.errors, slo.error_budget(dev.slo, "errors"), None)  # type: ignore[arg-type]
    assert errors.at(0) == pytest.approx(14 * dev.slo.error_rate)
    assert sum(tl.services[slo.MIME_SERVER].offered) > 0


def _series(dev: StackSettings, **scenario: object) -> dict[str, generate.Series]:
    (sc,) = parse_scenarios([{**BASE, "history": "0s", **scenario}], "t")
    tl = generate.timeline(sc, dev)
    out = {}
    for s in generate.series(tl, dev):
        key = s.labels["__name__"] + ("{" + s.labels.get("code", s.labels.get("le", "")) + "}")
        out[key] = s
    return out


def test_a_restart_resets_counters_and_the_error_child_waits_for_its_first_error(dev: StackSettings) -> None:
    s = _series(dev, events=[{"kind": "restart", "at": "30m", "downtime": "10s"}], errors=[{"steady": 0.5}])
    ok = s["http_requests_total{200}"]
    k = 30 * 4  # the scrape at 30:00 fails (the process is restarting)
    assert ok.values[k + 1] < ok.values[k - 1]  # reset
    assert k in ok.stale  # a failed scrape marks the series stale
    assert s["up{}"].values[k] == 0 and s["up{}"].values[k + 1] == 1
    quiet = _series(dev, traffic=[{"steady": 5}], errors=[{"step": 1.0, "at": "20m", "for": "1m"}])
    assert set(range(0, 20 * 4)) <= set(quiet["http_requests_total{500}"].absent)


def test_a_prometheus_gap_leaves_no_sample_and_no_evaluation(dev: StackSettings) -> None:
    s = _series(dev, events=[{"kind": "scrape_gap", "at": "20m", "for": "10m"}])
    gap = set(range(20 * 4 + 1, 30 * 4))
    assert gap <= set(s["up{}"].absent) and not gap & set(s["up{}"].stale)
    from bench.alert_quality.evaluate import eval_times
    (sc,) = parse_scenarios([{**BASE, "events": [{"kind": "scrape_gap", "at": "20m", "for": "10m"}]}], "t")
    assert not [t for t in eval_times(sc, dev) if 1200 <= t < 1800]
