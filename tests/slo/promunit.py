"""Builds and runs `promtool test rules` cases against the rendered rule files (synthetic traffic)."""

from __future__ import annotations

import itertools
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from config import slo
from config.rules import RuleTimings, alert_names, render_rule_files
from config.settings import StackSettings

ROUTE = "/v1/detect"


@dataclass(frozen=True)
class Phase:
    """`minutes` of steady traffic for one service; counts are requests per minute."""

    minutes: int
    ok: int = 0  # 200s faster than every latency threshold
    errors: int = 0  # 500s, fast
    slow: int = 0  # 200s slower than the SLA latency threshold
    mid: int = 0  # 200s between the SLO and the SLA latency thresholds
    up: int = 1


def _cumulative(per_minute: list[int]) -> str:
    return " ".join(str(v) for v in itertools.accumulate([0, *per_minute]))


def _le(seconds: float) -> str:
    return slo.le_label(seconds)


def service_series(settings: StackSettings, service: str, phases: list[Phase]) -> list[dict[str, str]]:
    """Input series a scraped service would produce: up, request counter and latency histogram."""
    ups = [phases[0].up] + [p.up for p in phases for _ in range(p.minutes)]
    per = [p for p in phases for _ in range(p.minutes)]
    base = f'service="{service}", method="POST", route="{ROUTE}"'
    series = [{"series": f'up{{job="{service}", service="{service}", instance="{service}:8080"}}',
               "values": " ".join(map(str, ups))}]

    def add(metric: str, extra: str, counts: list[int]) -> None:
        series.append({"series": f"{metric}{{{base}{extra}}}", "values": _cumulative(counts)})

    add("http_requests_total", ', code="200"', [p.ok + p.slow + p.mid for p in per])
    if any(p.errors for p in per):  # prometheus-client creates the 500 series on the first 500 only
        add("http_requests_total", ', code="500"', [p.errors for p in per])
    slo_le, sla_le = _le(settings.slo.latency_seconds), _le(settings.sla.latency_seconds)
    add("http_request_duration_seconds_bucket", f', le="{slo_le}"', [p.ok + p.errors for p in per])
    add("http_request_duration_seconds_bucket", f', le="{sla_le}"', [p.ok + p.errors + p.mid for p in per])
    add("http_request_duration_seconds_bucket", ', le="+Inf"', [p.ok + p.errors + p.mid + p.slow for p in per])
    add("http_request_duration_seconds_count", "", [p.ok + p.errors + p.mid + p.slow for p in per])
    return series


def expect(eval_time: str, alertname: str, alerts: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """One alert_rule_test entry: exactly `alerts` (label sets) of `alertname` fire at `eval_time`."""
    return {"eval_time": eval_time, "alertname": alertname,
            "exp_alerts": [{"exp_labels": labels} for labels in (alerts or [])]}


def silent(settings: StackSettings, eval_time: str, except_: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Expect no alert at all (but those in `except_`) at `eval_time`."""
    return [expect(eval_time, name) for name in alert_names(settings) if name not in except_]


def _without_annotations(text: str) -> str:
    """The rule file minus annotations: promtool would compare them too; test_rule_files checks them."""
    doc = yaml.safe_load(text)
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    return yaml.safe_dump(doc, sort_keys=False, width=1000)


def run_case(promtool: str, settings: StackSettings, tmp: Path, series: list[dict[str, str]],
             checks: list[dict[str, Any]], timings: RuleTimings | None = None) -> None:
    """Write the rendered rules and one test case into `tmp`, run promtool; assert it passes."""
    rule_paths = []
    for name, text in render_rule_files(settings, timings).items():
        (tmp / name).write_text(_without_annotations(text))
        rule_paths.append(name)
    case = {"rule_files": rule_paths, "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": checks}]}
    (tmp / "test.yml").write_text(yaml.safe_dump(case, sort_keys=False, width=1000))
    proc = subprocess.run([promtool, "test", "rules", "test.yml"], cwd=tmp, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, f"promtool test rules failed:\n{proc.stdout}\n{proc.stderr}"
