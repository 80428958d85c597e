"""Ground truth from the scenario, never from the rules: the error budget each SLI spends, and what it deserves.

For every service and SLI, the bad events of each scrape interval are counted from the drawn timeline:
seconds not serving (availability), requests answered 5xx (errors), requests slower than the SLO
threshold (latency). The 30-day budget in those units is the budget ratio of `config/slo.py` times
the period: seconds for availability; for requests, the scenario's mean offered rate over its whole
timeline times the period (the traffic the scenario stands for, a month of it). A page is deserved
at time t when some critical row of `slo.BURN_WINDOWS` holds (>= 2% of the budget spent within 1 h,
or >= 5% within 6 h), a ticket when a warning row does (>= 10% within 1 d or 3 d); the table is read
from config/slo.py, so the thresholds have one source.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate

from bench.alert_quality.generate import Timeline
from bench.alert_quality.model import Segment, seconds
from config import slo
from config.settings import StackSettings

LEVELS = ("none", "ticket", "page")
SEVERITY_LEVEL = {"critical": "page", "warning": "ticket"}


@dataclass(frozen=True)
class Cause:
    """A change the scenario makes that costs this SLI budget: [start, end) in seconds."""

    start: float
    end: float
    what: str


@dataclass
class Incident:
    """A run of scrape intervals in which an SLI deserves at least a ticket."""

    service: str
    sli: str
    level: str  # ticket or page
    first_deserved: float  # seconds from the start of the evaluated part
    last_deserved: float
    page_from: float | None  # first time a page is deserved
    onset: float  # when the cause started
    end: float | None  # when the cause ended (None: it lasts past the scenario)
    causes: list[str]


@dataclass
class SliTruth:
    service: str
    sli: str
    budget: float  # bad seconds or bad requests the 30-day budget allows
    bad: list[float]  # per scrape interval
    times: list[float]
    step: float
    spent: dict[str, float]  # max share spent within each window, over the evaluated part
    spent_total: float  # share spent during the evaluated part
    level: list[int]  # per interval: 0 none, 1 ticket, 2 page
    incidents: list[Incident]
    window_spent: dict[str, list[float]]  # per window: share spent within it, at the end of each interval

    @property
    def deserved(self) -> str:
        return LEVELS[max(self.level[i] for i in range(len(self.times)) if self.times[i] > 0)] \
            if any(t > 0 for t in self.times) else "none"

    def level_at(self, t: float) -> int:
        """Deserved level of the interval holding t (0 before the evaluated part starts)."""
        k = min(len(self.times) - 1, max(0, int(-(-(t - self.times[0]) // self.step))))
        return self.level[k]


def _window_sums(prefix: list[float], width: int) -> list[float]:
    return [prefix[k + 1] - prefix[max(0, k + 1 - width)] for k in range(len(prefix) - 1)]


def sli_bad(tl: Timeline, service: str, sli: str) -> list[float]:
    st = tl.services[service]
    if sli == "availability":
        return list(st.down_seconds)
    if sli == "errors":
        return [float(e) for e in st.errors]
    return [float(s + v) for s, v in zip(st.slow, st.very_slow)]


def budget_units(tl: Timeline, settings: StackSettings, service: str, sli: str) -> float:
    """The 30-day budget of an SLI in its bad units (seconds or requests)."""
    ratio = slo.error_budget(settings.slo, sli)  # type: ignore[arg-type]
    period = settings.slo_window_days * 86400
    if sli == "availability":
        return ratio * period
    span = tl.times[-1] - tl.times[0]
    mean_rate = sum(tl.services[service].offered) / span
    return ratio * mean_rate * period


def _segment_causes(segments: list[Segment], name: str, duration: float) -> list[Cause]:
    causes = []
    for seg in segments:
        if not seg.limited or seg.noise is not None:
            continue
        start = seconds(seg.at or "0s")
        length = seconds(seg.for_) if seg.for_ is not None else duration - start
        repeats = 1
        step = 0.0
        if seg.every is not None:
            step = seconds(seg.every)
            repeats = int((duration - start) // step) + 1
        for i in range(repeats):
            s = start + i * step
            if s < duration:
                causes.append(Cause(s, min(duration, s + length), f"{name} {seg.kind} at {s:g}s"))
    return causes


def causes_of(tl: Timeline, service: str, sli: str) -> list[Cause]:
    """The scenario's changes that spend this SLI's budget (changes of the baseline, events)."""
    sc = tl.scenario
    duration = seconds(sc.duration)
    out: list[Cause] = []
    if sli == "errors":
        out += _segment_causes(sc.errors, "errors", duration)
    if sli == "latency":
        out += _segment_causes(sc.slow, "slow", duration) + _segment_causes(sc.very_slow, "very_slow", duration)
    for e in sc.events:
        if e.kind == "scrape_gap":
            continue
        own = e.service == service and sli == "availability"
        upstream = e.service == slo.MIME_SERVER and service == slo.GATEWAY and sli == "errors"
        if own or upstream:
            out += [Cause(s, t, f"{e.kind} of {e.service} at {s:g}s") for s, t in e.occurrences(sc.seed)]
    return sorted(out, key=lambda c: c.start)


def sli_truth(tl: Timeline, settings: StackSettings, service: str, sli: str) -> SliTruth:
    bad = sli_bad(tl, service, sli)
    budget = budget_units(tl, settings, service, sli)
    prefix = list(accumulate(bad, initial=0.0))
    step = tl.step
    level = [0] * len(bad)
    spent: dict[str, float] = {}
    evaluated = [k for k, t in enumerate(tl.times) if t > 0]
    windows = sorted({w.long for w in slo.BURN_WINDOWS}, key=seconds)
    sums = {w: _window_sums(prefix, round(seconds(w) / step)) for w in windows}
    for w in windows:
        spent[w] = max((sums[w][k] / budget for k in evaluated), default=0.0)
    for row in slo.BURN_WINDOWS:
        lvl = LEVELS.index(SEVERITY_LEVEL[row.severity])
        for k, s in enumerate(sums[row.long]):
            if s / budget >= row.budget_share - 1e-12 and lvl > level[k]:
                level[k] = lvl
    total = sum(bad[k] for k in evaluated) / budget
    shares = {w: [v / budget for v in sums[w]] for w in windows}
    truth = SliTruth(service, sli, budget, bad, tl.times, step, spent, total, level, [], shares)
    truth.incidents = _incidents(tl, truth)
    return truth


def _incidents(tl: Timeline, truth: SliTruth) -> list[Incident]:
    causes = causes_of(tl, truth.service, truth.sli)
    out: list[Incident] = []
    k = 0
    n = len(truth.times)
    while k < n:
        if truth.level[k] == 0 or truth.times[k] <= 0:
            k += 1
            continue
        first = k
        while k < n and truth.level[k] > 0:
            k += 1
        last = k - 1
        pages = [j for j in range(first, last + 1) if truth.level[j] == 2]
        t_first, t_last = truth.times[first], truth.times[last]
        # the shortest window whose threshold was crossed first bounds how far back the cause lies
        reach = min(seconds(w.long) for w in slo.BURN_WINDOWS
                    if truth.window_spent[w.long][first] >= w.budget_share - 1e-12)
        related = [c for c in causes if c.start <= t_last and c.end >= t_first - reach]
        if related:
            onset = min(c.start for c in related if c.start <= t_first) if any(
                c.start <= t_first for c in related) else related[0].start
            ends = [c.end for c in related]
            end: float | None = max(ends)
            if end is not None and end >= seconds(tl.scenario.duration):
                end = None
        else:  # no change of the baseline: the noise itself (few requests, random errors)
            bad_steps = [j for j in range(0, last + 1) if truth.bad[j] > 0 and truth.times[j] > t_first - reach]
            onset = truth.times[bad_steps[0]] - truth.step if bad_steps else t_first
            until = pages[-1] if pages else last
            tail = [j for j in range(first, until + 1) if truth.bad[j] > 0]
            end = truth.times[tail[-1]] if tail else t_first
        incident = Incident(truth.service, truth.sli, "page" if pages else "ticket", t_first, t_last,
                            truth.times[pages[0]] if pages else None, max(onset, truth.times[0]), end,
                            [c.what for c in related])
        if out and out[-1].onset == incident.onset and out[-1].causes == incident.causes:
            out[-1] = _merge(out[-1], incident)  # one cause, deserving on and off around a threshold
        else:
            out.append(incident)
    return out


def _merge(a: Incident, b: Incident) -> Incident:
    pages = [t for t in (a.page_from, b.page_from) if t is not None]
    return Incident(a.service, a.sli, "page" if "page" in (a.level, b.level) else "ticket", a.first_deserved,
                    b.last_deserved, min(pages) if pages else None, a.onset, b.end, a.causes)


def scenario_truth(tl: Timeline, settings: StackSettings) -> list[SliTruth]:
    """Truth of every SLI of every modelled service."""
    return [sli_truth(tl, settings, service, sli.name)
            for service in tl.services for sli in slo.SLIS if service in sli.services]
