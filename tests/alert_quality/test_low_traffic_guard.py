"""The page alerts' low-traffic guard, evaluated by Prometheus: a few errors among the few requests of a
quiet hour do not page; the same error ratio at the usual traffic, which spends the budget, does."""

from __future__ import annotations

from bench.alert_quality import evaluate, generate, truth
from bench.alert_quality.model import parse_scenarios
from config.settings import StackSettings

QUIET_HOUR = {"class": "test", "duration": "2h", "seed": 3, "scrape_interval": "1m", "evaluation_interval": "1m",
              "coarse_interval": "1m", "errors": [{"step": 0.2, "at": "90m", "for": "5m"}]}


def _pages(dev: StackSettings, traffic: list[dict]) -> tuple[list[str], str]:
    (sc,) = parse_scenarios([{**QUIET_HOUR, "name": "case", "traffic": traffic}], "test")
    tl = generate.timeline(sc, dev)
    fired = evaluate.run([tl], dev)["case"].episodes
    deserved = max((t.deserved for t in truth.scenario_truth(tl, dev)), key=truth.LEVELS.index)
    return sorted({e.alert for e in fired if e.fired is not None and e.severity == "critical"}), deserved


def test_errors_in_a_quiet_hour_do_not_page(dev: StackSettings) -> None:
    pages, deserved = _pages(dev, [{"steady": 5}, {"steady": 0.05, "at": "20m", "for": "100m"}])
    assert deserved == "none"
    assert pages == []


def test_the_same_ratio_at_the_usual_traffic_pages(dev: StackSettings) -> None:
    pages, deserved = _pages(dev, [{"steady": 5}])
    assert deserved == "page"
    assert pages == ["ErrorRateBudgetBurn"]
