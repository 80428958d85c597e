"""`python -m bench.alert_quality [--scenarios FILE] [--only NAME]`: alert quality of the dev stack's rules.

Prints ONE JSON object: per alert row and per scenario class precision, recall, detection and reset
time; overall false page and false ticket rates; per scenario what it deserved, the budget it spent
and the alerts Prometheus fired, with their times (seconds from the start of the evaluated part).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.alert_quality import evaluate, generate, score, truth
from bench.alert_quality.model import LIBRARY, Scenario, ScenarioError, load_scenarios, seconds
from config import slo
from config.rules import RuleTimings
from config.settings import StackSettings, load_stack

PROMETHEUS_MODULE = "github.com/prometheus/prometheus v0.316.0 (Prometheus v3.16.0)"


def _round(x: float | None, nd: int = 1) -> float | None:
    return None if x is None else round(x, nd)


def scenario_report(sc: Scenario, truths: list[truth.SliTruth], judged: list[score.Judged],
                    ev: evaluate.Evaluation, unjudged: set[str]) -> dict[str, Any]:
    deserved = max((t.deserved for t in truths), key=truth.LEVELS.index)
    spent: dict[str, Any] = {}
    for t in truths:
        if t.spent_total > 0 or t.deserved != "none":
            spent.setdefault(t.service, {})[t.sli] = {
                **{f"max_{w}": round(v, 4) for w, v in t.spent.items()}, "total": round(t.spent_total, 4)}
    verdict = {id(j.episode): j for j in judged}
    alerts = []
    for ep in ev.episodes:
        if ep.fired is None:
            continue
        j = verdict.get(id(ep))
        alerts.append({
            "alert": score.alert_key(ep.alert, ep.labels), "service": ep.labels.get("service"),
            "severity": ep.severity, "pending_at": _round(ep.active), "fired_at": _round(ep.fired),
            "resolved_at": _round(ep.resolved),
            "verdict": ("not judged" if ep.alert in unjudged else None) if j is None else
                       ("true" if j.true else "false"),
            "detection_s": _round(j.detection) if j else None, "reset_s": _round(j.reset) if j else None,
        })
    return {
        "name": sc.name, "class": sc.klass, "deserved": deserved,
        "incidents": [{"service": i.service, "sli": i.sli, "level": i.level, "onset": _round(i.onset),
                       "deserved_from": _round(i.first_deserved), "page_from": _round(i.page_from),
                       "cause_end": _round(i.end), "causes": i.causes[:5]}
                      for t in truths for i in t.incidents],
        "budget_spent": spent,
        "alerts": alerts,
        "pending_only": sum(ep.fired is None for ep in ev.episodes),
        "evaluation": {"evaluations": ev.evaluations, "step_s": ev.eval_step, "coarse_step_s": ev.coarse_step,
                       "samples": ev.samples, "seconds": round(ev.seconds, 1)},
    }


def run(scenarios: list[Scenario], settings: StackSettings, workers: int = 0) -> dict[str, Any]:
    started = time.monotonic()
    cpu0 = os.times()
    timelines = [generate.timeline(sc, settings) for sc in scenarios]
    truths = {tl.scenario.name: truth.scenario_truth(tl, settings) for tl in timelines}
    generated = time.monotonic()
    evaluations = evaluate.run(timelines, settings, workers=workers)
    evaluated = time.monotonic()
    rows = score.alert_rows(settings)
    unjudged = score.period_alerts(settings)
    judged: list[score.Judged] = []
    incidents: list[tuple[str, str, truth.Incident]] = []
    noise: set[str] = set()
    reports = []
    by_class: dict[str, list[Scenario]] = {}
    for sc in scenarios:
        by_class.setdefault(sc.klass, []).append(sc)
        ts = truths[sc.name]
        fired = score.judge(sc.name, sc.klass, evaluations[sc.name], ts, seconds(sc.duration), unjudged)
        js = score.merge_refirings(list(fired))
        judged += js
        incidents += [(sc.name, sc.klass, i) for t in ts for i in t.incidents]
        if all(t.deserved == "none" for t in ts):
            noise.add(sc.name)
        reports.append(scenario_report(sc, ts, fired, evaluations[sc.name], unjudged))
    summary = score.summarize(judged, incidents, rows, noise)
    classes = {}
    for klass, members in by_class.items():
        names = {sc.name for sc in members}
        part = score.overall([j for j in judged if j.scenario in names],
                             [x for x in incidents if x[0] in names], noise & names)
        classes[klass] = {"scenarios": len(members), **part}
    t = RuleTimings.from_settings(settings)
    cpu1 = os.times()
    return {
        "bench": "alert_quality",
        "stack": settings.stack,
        "evaluated_by": PROMETHEUS_MODULE,
        "timings": {"scrape_interval": settings.scrape_interval, "evaluation_interval": settings.evaluation_interval,
                    "down_for": t.down_for, "page_for": t.page_for, "ticket_for": t.ticket_for,
                    "stack_for": t.stack_for},
        "burn_windows": [{"severity": w.severity, "budget_share": w.budget_share, "long": w.long, "short": w.short}
                         for w in slo.BURN_WINDOWS],
        "scenarios_count": len(scenarios),
        "not_judged": {name: "reads the 30-day records; the scenarios hold days of history, not a month"
                       for name in sorted(unjudged)},
        "overall": summary["overall"],
        "alerts": summary["alerts"],
        "classes": classes,
        "scenarios": reports,
        "run": {"seconds": round(time.monotonic() - started, 1),
                "generate_seconds": round(generated - started, 1),
                "evaluate_seconds": round(evaluated - generated, 1),
                "scenario_seconds_sum": round(sum(e.seconds for e in evaluations.values()), 1),
                "cpu_seconds_children": round(cpu1.children_user + cpu1.children_system
                                              - cpu0.children_user - cpu0.children_system, 1),
                "cpu_seconds_self": round(cpu1.user + cpu1.system - cpu0.user - cpu0.system, 1),
                "evaluations": sum(e.evaluations for e in evaluations.values())},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.alert_quality", description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", action="append", type=Path,
                        help=f"YAML file of scenarios (docs/alert-quality.md); default: {LIBRARY.name}; repeatable")
    parser.add_argument("--only", action="append", help="run only the scenario(s) of this name or class")
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--workers", type=int, default=0, help="scenarios evaluated at once (default: CPUs)")
    args = parser.parse_args(argv)
    try:
        scenarios = [sc for path in (args.scenarios or [LIBRARY]) for sc in load_scenarios(path)]
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.only:
        scenarios = [sc for sc in scenarios if sc.name in args.only or sc.klass in args.only]
        if not scenarios:
            print(f"error: no scenario named or of class {', '.join(args.only)}", file=sys.stderr)
            return 2
    print(json.dumps(run(scenarios, load_stack(args.stack), args.workers), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
