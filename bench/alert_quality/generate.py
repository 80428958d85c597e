"""A scenario made concrete: per scrape interval, what each service served, and the series Prometheus scrapes.

`timeline(scenario, settings)` draws the requests (Poisson), their outcomes (binomial shares) and the
process states from the scenario's seed: the ground truth (`truth.py`) counts these, and
`series(timeline)` turns the same counts into the exact series the services expose, as Prometheus
stores them: target labels, counters restarting from 0 after a restart, a labelled child appearing
on its first increment (prometheus-client), staleness markers when a scrape fails, nothing in a gap.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from bench.alert_quality.model import Scenario, Segment, resolve_share, seconds
from config import slo
from config.prometheus import scrape_targets
from config.settings import StackSettings

ROUTE = "/v1/detect"
# Counter samples older than this before the first evaluation are kept only every COARSE_HISTORY:
# only the windows longer than an hour read them, and a counter's increase does not depend on how
# many samples lie between its ends (rate() extrapolates at most to the window's edge, the same for
# the bad and the total counter of a ratio). `up` keeps every sample: avg_over_time weighs samples,
# not time, so thinning it would change the availability ratio.
FINE_HISTORY = 3600
COARSE_HISTORY = 300


@dataclass
class ServiceSteps:
    """Per scrape interval (t - step, t] of one service: offered requests and what became of them."""

    offered: list[int] = field(default_factory=list)  # requests that arrived (served or not)
    ok: list[int] = field(default_factory=list)  # served fast and without error
    errors: list[int] = field(default_factory=list)  # served 5xx by the service itself
    unserved: list[int] = field(default_factory=list)  # arrived while the process was not serving
    slow: list[int] = field(default_factory=list)  # 2xx slower than the SLO threshold, within the SLA one
    very_slow: list[int] = field(default_factory=list)  # 2xx slower than the SLA threshold
    down_seconds: list[float] = field(default_factory=list)  # seconds of the interval not serving
    up: list[int | None] = field(default_factory=list)  # scrape result at t: 1, 0, or None (no scrape)
    restarted: list[bool] = field(default_factory=list)  # the process (re)started within the interval


@dataclass
class Timeline:
    scenario: Scenario
    step: float  # scrape interval, seconds
    history: float  # seconds before the evaluated part
    times: list[float]  # end of each interval, seconds from the start of the evaluated part
    services: dict[str, ServiceSteps]


def _active(seg: Segment, t: float) -> bool:
    if seg.at is None:
        return True
    start = seconds(seg.at)
    if t < start:
        return False
    length = seconds(seg.for_) if seg.for_ is not None else math.inf
    if seg.every is None:
        return t < start + length
    return (t - start) % seconds(seg.every) < length


def _segment_start(seg: Segment, t: float) -> float:
    start = seconds(seg.at or "0s")
    if seg.every is not None:
        start += (t - start) // seconds(seg.every) * seconds(seg.every)
    return start


class Signal:
    """A value over time from segments; noise draws are seeded and held for `every`."""

    def __init__(self, segments: list[Segment], budget: float, rng: random.Random) -> None:
        self.segments = segments
        self.budget = budget
        self.rng = rng
        self._noise: dict[tuple[int, int], float] = {}

    def _v(self, value: float | str) -> float:
        return resolve_share(value, self.budget)

    def at(self, t: float) -> float:
        value = 0.0
        for i, seg in enumerate(self.segments):
            if not _active(seg, t):
                continue
            if seg.steady is not None:
                value = self._v(seg.steady)
            elif seg.step is not None:
                value = self._v(seg.step)
            elif seg.ramp is not None:
                frac = min(1.0, max(0.0, (t - _segment_start(seg, t)) / seconds(seg.for_ or "1s")))
                value = self._v(seg.ramp.from_) + (self._v(seg.ramp.to) - self._v(seg.ramp.from_)) * frac
            elif seg.periodic is not None:
                p = seg.periodic
                phase = 2 * math.pi * (t - seconds(p.phase)) / seconds(p.period)
                value = self._v(p.mean) + self._v(p.amplitude) * math.sin(phase)
            elif seg.noise is not None:
                slot = (i, math.floor(t / seconds(seg.noise.every)))
                if slot not in self._noise:
                    self._noise[slot] = self.rng.gauss(0.0, 1.0)
                value *= 1 + seg.noise.sd * self._noise[slot]
            value = max(0.0, value)
        return value


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw: Knuth's product of uniforms for small means, a rounded normal for large ones."""
    if lam <= 0:
        return 0
    if lam < 30:
        limit, k, p = math.exp(-lam), 0, 1.0
        while True:
            p *= rng.random()
            if p <= limit:
                return k
            k += 1
    return max(0, round(rng.gauss(lam, math.sqrt(lam))))


def binomial(rng: random.Random, n: int, p: float) -> int:
    """A binomial draw: exact for small n, Poisson for rare outcomes, normal otherwise."""
    if n <= 0 or p <= 0:
        return 0
    if p >= 1:
        return n
    if p > 0.5:
        return n - binomial(rng, n, 1 - p)
    if n < 50:
        return sum(rng.random() < p for _ in range(n))
    if n * p < 30:
        return min(n, poisson(rng, n * p))
    return min(n, max(0, round(rng.gauss(n * p, math.sqrt(n * p * (1 - p))))))


def _overlap(a: float, b: float, intervals: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(b, e) - max(a, s)) for s, e in intervals)


def _inside(t: float, intervals: list[tuple[float, float]]) -> bool:
    return any(s <= t < e for s, e in intervals)


def _intervals(scenario: Scenario, service: str, kinds: tuple[str, ...]) -> list[tuple[float, float]]:
    return [iv for e in scenario.events if e.service == service and e.kind in kinds
            for iv in e.occurrences(scenario.seed)]


def prometheus_gaps(scenario: Scenario) -> list[tuple[float, float]]:
    """Intervals in which Prometheus itself is not running: no scrape of any service, no evaluation."""
    return [iv for e in scenario.events if e.kind == "scrape_gap" for iv in e.occurrences(scenario.seed)]


def scrape_interval(scenario: Scenario, settings: StackSettings) -> float:
    return seconds(scenario.scrape_interval or settings.scrape_interval)


def evaluation_interval(scenario: Scenario, settings: StackSettings) -> float:
    return seconds(scenario.evaluation_interval or settings.evaluation_interval)


def timeline(scenario: Scenario, settings: StackSettings) -> Timeline:
    """Draw the scenario: every scrape interval from the start of the history to the end."""
    step = scrape_interval(scenario, settings)
    history = seconds(scenario.history)
    if history % step or seconds(scenario.duration) % step:
        raise ValueError(f"scenario {scenario.name!r}: history and duration must be multiples of the "
                         f"scrape interval ({step:g} s)")
    rng = random.Random(scenario.seed)
    err_budget = slo.error_budget(settings.slo, "errors")
    lat_budget = slo.error_budget(settings.slo, "latency")
    traffic = Signal(scenario.traffic, 0.0, rng)
    errors = Signal(scenario.errors, err_budget, rng)
    slow = Signal(scenario.slow, lat_budget, rng)
    very_slow = Signal(scenario.very_slow, lat_budget, rng)
    n = round((history + seconds(scenario.duration)) / step)
    times = [-history + (k + 1) * step for k in range(n)]
    times.insert(0, -history)
    services = {name: ServiceSteps() for name in scenario.services}
    down = {s: _intervals(scenario, s, ("down", "restart")) for s in scenario.services}
    gaps = prometheus_gaps(scenario)
    starts = {s: sorted(e for _, e in down[s]) for s in scenario.services}

    mime = slo.MIME_SERVER
    for k, t in enumerate(times):
        a = t - step
        rate = traffic.at(a + step / 2)
        offered = poisson(rng, rate * step) if k else 0
        e_share, s_share, v_share = errors.at(t), slow.at(t), very_slow.at(t)
        mime_down = _overlap(a, t, down[mime]) if k else 0.0
        mime_unserved = binomial(rng, offered, mime_down / step) if offered else 0
        for name in scenario.services:
            steps = services[name]
            own_down = _overlap(a, t, down[name]) if k else 0.0
            if name == mime:
                unserved = mime_unserved
            else:  # the gateway forwards every request; what mime-server did not serve is a 502
                unserved = binomial(rng, offered, own_down / step) if offered else 0
            served = offered - unserved
            upstream_failed = mime_unserved if name != mime else 0
            upstream_failed = min(upstream_failed, served)
            e = binomial(rng, served - upstream_failed, e_share) + upstream_failed
            good = served - e
            vs = binomial(rng, good, v_share)
            sl = binomial(rng, good - vs, s_share)
            steps.offered.append(offered)
            steps.unserved.append(unserved)
            steps.errors.append(e)
            steps.slow.append(sl)
            steps.very_slow.append(vs)
            steps.ok.append(good - vs - sl)
            steps.down_seconds.append(own_down)
            if _inside(t, gaps):
                steps.up.append(None)
            else:
                steps.up.append(0 if _inside(t, down[name]) else 1)
            steps.restarted.append(any(a < s <= t for s in starts[name]) if k else False)
    return Timeline(scenario, step, history, times, services)


# --- series -------------------------------------------------------------------------------------


@dataclass
class Series:
    labels: dict[str, str]
    values: list[float]
    absent: list[int]
    stale: list[int]


def _target_labels(settings: StackSettings) -> dict[str, dict[str, str]]:
    """job, instance, service and env of each service's scrape target, as prometheus.yml sets them."""
    return {t.service: {"job": t.service, "instance": t.address, "service": t.service, "env": settings.stack}
            for t in scrape_targets(settings)}


def series(tl: Timeline, settings: StackSettings) -> list[Series]:
    """The series Prometheus would store from the timeline's scrapes (one value per scrape time)."""
    targets = _target_labels(settings)
    slo_le = slo.check_bucket(settings.slo.latency_seconds)
    sla_le = slo.check_bucket(settings.sla.latency_seconds)
    out: list[Series] = []
    for name, st in tl.services.items():
        target = targets[name]
        ups = [float(u) if u is not None else 0.0 for u in st.up]
        out.append(Series({"__name__": "up", **target}, ups, [k for k, u in enumerate(st.up) if u is None], []))
        code = "502" if name == slo.GATEWAY else "500"
        base = {**target, "method": "POST", "route": ROUTE}
        per_step = {
            ("http_requests_total", ("code", "200")): [o + s + v for o, s, v in zip(st.ok, st.slow, st.very_slow)],
            ("http_requests_total", ("code", code)): st.errors,
            ("http_request_duration_seconds_bucket", ("le", slo_le)): [o + e for o, e in zip(st.ok, st.errors)],
            ("http_request_duration_seconds_bucket", ("le", sla_le)):
                [o + e + s for o, e, s in zip(st.ok, st.errors, st.slow)],
            ("http_request_duration_seconds_bucket", ("le", "+Inf")): _served(st),
            ("http_request_duration_seconds_count", None): _served(st),
        }
        # the histogram's children are created by the first observation, whatever its outcome
        created_by = {key: (_served(st) if key[0] != "http_requests_total" else counts)
                      for key, counts in per_step.items()}
        for (metric, extra), counts in per_step.items():
            labels = {"__name__": metric, **base, **({extra[0]: extra[1]} if extra else {})}
            out.append(_counter(tl, st, labels, counts, created_by[(metric, extra)]))
        if name == slo.GATEWAY and slo.MIME_SERVER in tl.services:
            failed = tl.services[slo.MIME_SERVER].unserved
            labels = {"__name__": "gateway_upstream_errors_total", **target, "reason": "connect"}
            out.append(_counter(tl, st, labels, [min(f, s) for f, s in zip(failed, _served(st))], failed))
    return out


def _served(st: ServiceSteps) -> list[int]:
    return [o + e + s + v for o, e, s, v in zip(st.ok, st.errors, st.slow, st.very_slow)]


def _counter(tl: Timeline, st: ServiceSteps, labels: dict[str, str], counts: list[int],
             creators: list[int]) -> Series:
    """A counter's samples: reset on restart, present from its first increment in a process's life,
    stale at the first failed scrape after a present sample, absent while not scraped."""
    values: list[float] = []
    absent: list[int] = []
    stale: list[int] = []
    value = 0.0
    exists = False
    was_present = False
    coarse_before = -tl.history + (tl.history - FINE_HISTORY if tl.history > FINE_HISTORY else 0)
    for k, t in enumerate(tl.times):
        if st.restarted[k]:
            value, exists = 0.0, False
        value += counts[k]
        exists = exists or creators[k] > 0
        up = st.up[k]
        values.append(value)
        if up == 1 and exists:
            if t < coarse_before and round(t) % COARSE_HISTORY:
                absent.append(k)  # thinned history (see FINE_HISTORY)
            else:
                was_present = True
            continue
        if up is not None and was_present:
            stale.append(k)  # a failed scrape or a child gone with its process
        else:
            absent.append(k)
        was_present = False if up is not None else was_present
    return Series(labels, values, absent, stale)
