"""Evaluation by Prometheus itself: the rendered rules over a scenario's series, in Prometheus's own engine.

The evaluator (`evaluator/`, Go) links the `tsdb`, `promql` and `rules` packages of the Prometheus
release the stack deploys (module github.com/prometheus/prometheus v0.316.0 = Prometheus v3.16.0)
and evaluates the rule groups step by step as `promtool test rules` does, reading each alerting
rule's state after every evaluation: pending, firing and resolved times with `for` applied by the
rule manager. It is built on first use into the tools cache, outside the repository, like
scripts/tools.sh builds the servers; `python -m bench.alert_quality.evaluate` builds it ahead of a
test run and prints its path.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.alert_quality.generate import Series, Timeline, evaluation_interval, prometheus_gaps, series
from bench.alert_quality.model import Scenario, seconds
from config.rules import RuleTimings, render_rule_files
from config.settings import StackSettings

EVALUATOR_DIR = Path(__file__).with_name("evaluator")
# Evaluation timestamps before a change of the scenario: the group evaluates at its interval from
# here until `dense_for` after the change, so detection is measured at the stack's resolution.
DENSE_BEFORE = 300


class EvaluatorError(RuntimeError):
    """The evaluator could not be built or failed; the message carries its output."""


def cache_dir() -> Path:
    base = os.environ.get("OBSERVABILITY_TOOLS_CACHE") or \
        os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "observability-tools")
    return Path(base)


def _source_hash() -> str:
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((EVALUATOR_DIR / name).read_bytes())
    return digest.hexdigest()[:16]


def evaluator_binary() -> Path:
    """Path of the built evaluator, building it (once per source version, under a lock) when missing."""
    out_dir = cache_dir() / f"alert-quality-evaluator-{_source_hash()}"
    binary = out_dir / "evaluator"
    if binary.is_file():
        return binary
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / ".alert-quality-evaluator.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.is_file():
            return binary
        tmp = Path(tempfile.mkdtemp(prefix=".building-evaluator-", dir=cache_dir()))
        # the flags scripts/tools.sh builds Prometheus with, so the Go build cache serves both
        env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": os.environ.get("GOFLAGS", "-buildvcs=false")}
        try:
            proc = subprocess.run(["go", "build", "-trimpath", "-tags", "netgo", "-o", str(tmp / "evaluator"), "."],
                                  cwd=EVALUATOR_DIR, env=env, capture_output=True, text=True, timeout=3600)
        except FileNotFoundError:
            raise EvaluatorError("Go is not installed (needed to build the alert-quality evaluator from "
                                 "Prometheus's packages; install Go 1.26 or newer)") from None
        if proc.returncode != 0:
            raise EvaluatorError(f"go build of {EVALUATOR_DIR} failed:\n{proc.stderr[-3000:]}")
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        if out_dir.exists():
            import shutil
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    return binary


@dataclass(frozen=True)
class Episode:
    """One alert instance as Prometheus's rule manager tracked it (seconds from the evaluated start)."""

    alert: str
    labels: dict[str, str]
    active: float
    fired: float | None  # when it turned firing (`for` after active)
    resolved: float | None
    ended: float | None  # pending, then gone without firing

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")


@dataclass
class Evaluation:
    name: str
    episodes: list[Episode]
    evaluations: int
    samples: int
    seconds: float
    eval_step: float
    coarse_step: float


def change_times(scenario: Scenario) -> list[float]:
    """Every time the scenario changes an SLI: starts and ends of limited error or latency segments and
    of events (a change of traffic alone spends no budget)."""
    duration = seconds(scenario.duration)
    times: set[float] = set()
    for segments in (scenario.errors, scenario.slow, scenario.very_slow):
        for seg in segments:
            if seg.at is None:
                continue
            start = seconds(seg.at)
            length = seconds(seg.for_) if seg.for_ is not None else None
            every = seconds(seg.every) if seg.every is not None else None
            k = 0
            while True:
                s = start + k * (every or 0)
                if s > duration:
                    break
                times.add(s)
                if length is not None:
                    times.add(s + length)
                if every is None:
                    break
                k += 1
    for e in scenario.events:
        for s, t in e.occurrences(scenario.seed):
            times.update((s, t))
    return sorted(t for t in times if 0 <= t <= duration)


def eval_times(scenario: Scenario, settings: StackSettings) -> list[float]:
    """Evaluation timestamps: the stack's interval near changes, the coarse interval elsewhere."""
    step = evaluation_interval(scenario, settings)
    coarse = max(step, seconds(scenario.coarse_interval))
    dense_for = seconds(scenario.dense_for)
    duration = seconds(scenario.duration)
    dense = [(c - DENSE_BEFORE, c + dense_for) for c in change_times(scenario)]
    gaps = prometheus_gaps(scenario)
    out = []
    k = 0
    while k * step <= duration:
        t = k * step
        if (t % coarse == 0 or any(a <= t <= b for a, b in dense)) and not any(a <= t < b for a, b in gaps):
            out.append(t)
        k += 1
    return out


def _rule_files(settings: StackSettings, timings: RuleTimings | None, folder: Path) -> tuple[list[str], list[str]]:
    paths, order = [], []
    for name, text in render_rule_files(settings, timings).items():
        path = folder / name
        path.write_text(text)
        paths.append(str(path))
        order += [g["name"] for g in yaml.safe_load(text)["groups"]]
    return paths, order


@dataclass(frozen=True)
class Case:
    """Series and evaluation times for the evaluator; times in seconds, TSDB time 0 = `origin` s before 0."""

    name: str
    series: list[Series]
    step: float  # seconds between two values of a series
    times: list[float]
    origin: float = 0.0


def evaluate(cases: list[Case], settings: StackSettings, timings: RuleTimings | None = None,
             interval: float | None = None, workers: int = 0) -> dict[str, tuple[list[Episode], dict[str, Any]]]:
    """Run the evaluator over `cases` with the stack's rendered rules: episodes and run figures by name."""
    binary = evaluator_binary()
    with tempfile.TemporaryDirectory(prefix="alert-quality-") as tmp:
        folder = Path(tmp)
        paths, order = _rule_files(settings, timings, folder)
        doc = {"rule_files": paths, "group_order": order, "workers": workers,
               "evaluation_interval_ms": round((interval or seconds(settings.evaluation_interval)) * 1000),
               "scenarios": [{
                   "name": c.name,
                   "eval_times_ms": [round((t + c.origin) * 1000) for t in c.times],
                   "series": [{"labels": s.labels, "start_ms": 0, "step_ms": round(c.step * 1000),
                               "values": s.values, "absent": s.absent, "stale": s.stale} for s in c.series],
               } for c in cases]}
        (folder / "input.json").write_text(json.dumps(doc, separators=(",", ":")))
        proc = subprocess.run([str(binary), str(folder / "input.json")], capture_output=True, text=True,
                              timeout=3600)
    if proc.returncode != 0:
        raise EvaluatorError(f"evaluator failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    origins = {c.name: c.origin for c in cases}
    out: dict[str, tuple[list[Episode], dict[str, Any]]] = {}
    for r in json.loads(proc.stdout)["results"]:
        if r["errors"]:
            raise EvaluatorError(f"scenario {r['name']!r}: " + "; ".join(r["errors"][:5]))
        origin = origins[r["name"]]

        def sec(ms: int | None) -> float | None:
            return None if ms is None else ms / 1000 - origin

        episodes = [Episode(e["alert"], e["labels"], e["active_ms"] / 1000 - origin, sec(e["fired_ms"]),
                            sec(e["resolved_ms"]), sec(e["ended_ms"])) for e in r["episodes"]]
        out[r["name"]] = (episodes, {k: r[k] for k in ("evaluations", "samples", "seconds")})
    return out


def firing_at(episodes: list[Episode], alert: str, t: float) -> list[dict[str, str]]:
    """Label sets of `alert`'s instances firing at evaluation time t."""
    return [ep.labels for ep in episodes if ep.alert == alert and ep.fired is not None and ep.fired <= t
            and (ep.resolved is None or ep.resolved > t)]


def run(timelines: list[Timeline], settings: StackSettings, timings: RuleTimings | None = None,
        workers: int = 0) -> dict[str, Evaluation]:
    """Evaluate the stack's rendered rules over each timeline's series; episodes by scenario name."""
    cases = [Case(tl.scenario.name, series(tl, settings), tl.step, eval_times(tl.scenario, settings), tl.history)
             for tl in timelines]
    results = evaluate(cases, settings, timings, min(evaluation_interval(tl.scenario, settings) for tl in timelines),
                       workers)
    out: dict[str, Evaluation] = {}
    for tl in timelines:
        sc = tl.scenario
        episodes, figures = results[sc.name]
        step = evaluation_interval(sc, settings)
        out[sc.name] = Evaluation(sc.name, episodes, figures["evaluations"], figures["samples"], figures["seconds"],
                                  step, max(step, seconds(sc.coarse_interval)))
    return out


if __name__ == "__main__":  # `python -m bench.alert_quality.evaluate`: build (if needed) and print the path
    print(evaluator_binary())
