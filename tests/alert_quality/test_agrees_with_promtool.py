"""The evaluator agrees with `promtool test rules` on every scenario of tests/slo/test_alert_rules.py.

Each case of that module is run twice on the same series and expectations: by the pinned promtool
(the case's own `run_case`) and by the alert-quality evaluator, whose alert timeline must give the
same firing alerts at every expected evaluation time.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from bench.alert_quality.evaluate import Case, evaluate, firing_at
from bench.alert_quality.generate import Series
from config import slo
from config.rules import RuleTimings
from config.settings import StackSettings
from tests.slo import promunit, test_alert_rules

CASES = [f for name, f in inspect.getmembers(test_alert_rules, inspect.isfunction) if name.startswith("test_")]
_SERIES = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}$')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"\s*,?')


def parse_series(text: str) -> dict[str, str]:
    """Labels of a promtool series selector such as up{job="x", service="y"}."""
    match = _SERIES.match(text.strip())
    assert match, text
    labels = {"__name__": match.group(1)}
    for key, value in _LABEL.findall(match.group(2)):
        labels[key] = value
    return labels


def record_case(case: Any, promtool: str, dev: StackSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                ) -> tuple[list[dict[str, str]], list[dict[str, Any]], RuleTimings | None]:
    """Run a tests/slo case with promtool (it must pass) and return its series, checks and timings."""
    seen: dict[str, Any] = {}
    original = promunit.run_case

    def recording(promtool_: str, settings: StackSettings, tmp: Path, series: list[dict[str, str]],
                  checks: list[dict[str, Any]], timings: RuleTimings | None = None) -> None:
        seen.update(series=series, checks=checks, timings=timings)
        original(promtool_, settings, tmp, series, checks, timings)

    monkeypatch.setattr(test_alert_rules, "run_case", recording)
    params = inspect.signature(case).parameters
    args = {"promtool": promtool, "dev": dev, "tmp_path": tmp_path}
    case(**{k: v for k, v in args.items() if k in params})
    return seen["series"], seen["checks"], seen["timings"]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_evaluator_fires_what_promtool_fires(case: Any, promtool: str, dev: StackSettings, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    series, checks, timings = record_case(case, promtool, dev, tmp_path, monkeypatch)
    step = 60.0  # promunit's input interval and evaluation_interval
    data = [Series(parse_series(s["series"]), [float(v) for v in s["values"].split()], [], []) for s in series]
    last = max(slo.duration_seconds(c["eval_time"]) for c in checks)
    times = [k * step for k in range(int(last // step) + 1)]
    episodes, _ = evaluate([Case(case.__name__, data, step, times)], dev, timings, interval=step)[case.__name__]
    for check in checks:
        t = slo.duration_seconds(check["eval_time"])
        at = max(x for x in times if x <= t)  # promtool compares with the evaluation at or before eval_time
        want = sorted(sorted({**a["exp_labels"], "alertname": check["alertname"]}.items())
                      for a in check["exp_alerts"])
        got = sorted(sorted(labels.items()) for labels in firing_at(episodes, check["alertname"], at))
        assert got == want, f"{check['alertname']} at {check['eval_time']}"
