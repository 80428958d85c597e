"""Judging fired alerts against the truth: true and false pages, detection and reset, re-firings merged."""

from __future__ import annotations

from bench.alert_quality import score, truth
from bench.alert_quality.evaluate import Episode, Evaluation
from config.settings import StackSettings
from tests.alert_quality.test_truth import MIME, STEP, make


def _page(fired: float, resolved: float | None, window: str = "1h") -> Episode:
    labels = {"alertname": "ErrorRateBudgetBurn", "service": MIME, "sli": "errors", "severity": "critical",
              "long_window": window, "short_window": "5m"}
    return Episode("ErrorRateBudgetBurn", labels, fired - 120, fired, resolved, None)


def _judge(dev: StackSettings, errors: dict[int, int], episodes: list[Episode]) -> list[score.Judged]:
    tl = make(dev, 180, errors=errors, error_segments=[{"step": 0.5, "at": "10m", "for": "1m"}])
    truths = [truth.sli_truth(tl, dev, MIME, "errors")]
    ev = Evaluation("hand", episodes, 0, 0, 0.0, STEP, STEP)
    return score.merge_refirings(score.judge("hand", "test", ev, truths, 180 * 60))


def test_a_page_while_a_page_is_deserved_is_true_with_detection_and_reset(dev: StackSettings) -> None:
    (j,) = _judge(dev, {k: 5 for k in range(41, 45)}, [_page(900, 1020)])  # 20 errors from 10:00 to 11:00
    assert j.true and j.level == "page"
    assert j.detection == 900 - 600 and j.reset == 1020 - 660


def test_a_page_when_nothing_is_deserved_is_false(dev: StackSettings) -> None:
    (j,) = _judge(dev, {41: 3}, [_page(900, 1020)])  # 3 errors: 1.7% of the budget
    assert not j.true and j.detection is None


def test_a_page_before_the_incident_is_false_and_refirings_on_one_incident_count_once(dev: StackSettings) -> None:
    judged = _judge(dev, {k: 5 for k in range(41, 45)}, [_page(300, 420), _page(900, 1000), _page(1100, 1300)])
    assert [j.true for j in judged] == [False, True]
    assert judged[1].episodes == 2 and judged[1].reset == 1300 - 660


def test_period_alerts_are_not_judged(dev: StackSettings) -> None:
    assert score.period_alerts(dev) == {"ErrorBudgetHalfConsumed", "SLAViolation"}
    assert not any(k.startswith(("ErrorBudgetHalfConsumed", "SLAViolation")) for k in score.alert_rows(dev))
