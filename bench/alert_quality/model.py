"""The scenario format: traffic, error and latency shares built from segments, plus monitoring events.

A scenario is data (YAML, see docs/alert-quality.md); this module validates it with pydantic, so a
wrong file fails with the scenario's name, the field and what was expected, before anything runs.
Durations are Prometheus durations (`15s`, `5m`, `6h`, `3d`); times (`at`) count from the start of
the evaluated part, after the history.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config import slo

SERVICES = (slo.MIME_SERVER, slo.GATEWAY)
# A share written as a multiple of the SLI's error budget ratio: "14x" = 14 x budget.
_BUDGET_MULTIPLE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)x$")


class ScenarioError(ValueError):
    """A scenario file is wrong; the message names the scenario, the field and what was expected."""


def seconds(value: str) -> float:
    """Seconds of a Prometheus duration; `0s` is allowed."""
    return slo.duration_seconds(value)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Duration = Annotated[str, Field(pattern=r"^[0-9]+(ms|s|m|h|d|w)$")]
Value = Union[float, Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?x$")]]


class Ramp(_Strict):
    from_: Value = Field(alias="from")
    to: Value


class Periodic(_Strict):
    mean: Value
    amplitude: Value
    period: Duration
    phase: Duration = "0s"


class Noise(_Strict):
    sd: float = Field(ge=0, le=1, description="relative standard deviation of the multiplicative jitter")
    every: Duration = "1m"


class Segment(_Strict):
    """One piece of a signal. Exactly one of steady, step, ramp, periodic, noise; optionally limited to
    [at, at + for) and repeated every `every`. Segments apply in order: steady/step/ramp/periodic set
    the value where they apply, noise multiplies what the earlier segments set."""

    steady: Value | None = None
    step: Value | None = None
    ramp: Ramp | None = None
    periodic: Periodic | None = None
    noise: Noise | None = None
    at: Duration | None = None
    for_: Duration | None = Field(default=None, alias="for")
    every: Duration | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "Segment":
        kinds = [k for k in ("steady", "step", "ramp", "periodic", "noise") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a segment has exactly one of steady, step, ramp, periodic, noise; got {kinds or 'none'}")
        if self.ramp is not None and self.for_ is None:
            raise ValueError("a ramp needs `for` (how long it takes to go from `from` to `to`)")
        if self.every is not None and (self.at is None or self.for_ is None):
            raise ValueError("`every` repeats [at, at + for): give `at` and `for` too")
        if self.every is not None and seconds(self.every) < seconds(self.for_ or "0s"):
            raise ValueError(f"every = {self.every} is shorter than for = {self.for_}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("steady", "step", "ramp", "periodic", "noise") if getattr(self, k) is not None)

    @property
    def limited(self) -> bool:
        """True when the segment starts at a given time: a change, not the baseline."""
        return self.at is not None


class Event(_Strict):
    """Something that happens to a service's process or to its scrapes.

    down: the process is gone from `at` for `for`: scrapes fail (up == 0, series go stale), nothing
    is served, counters restart from 0. restart: the process restarts at `at` (counters reset) and
    serves nothing for `downtime`. scrape_gap: Prometheus itself is not running for `for` (e.g. it
    restarts): no sample of any service and no rule evaluation, while the services keep serving;
    `service` does not apply."""

    kind: Literal["down", "restart", "scrape_gap"]
    at: Duration
    for_: Duration | None = Field(default=None, alias="for")
    downtime: Duration = "10s"
    every: Duration | None = None
    count: int = Field(default=1, ge=1)
    jitter: Duration = "0s"  # each occurrence starts up to this much later (drawn from the seed)
    service: Literal["mime-server", "mockup-gateway"] = slo.MIME_SERVER

    @model_validator(mode="after")
    def _durations(self) -> "Event":
        if self.kind in ("down", "scrape_gap") and self.for_ is None:
            raise ValueError(f"a {self.kind} event needs `for`")
        if self.count > 1 and self.every is None:
            raise ValueError("count > 1 needs `every`")
        return self

    def occurrences(self, seed: int = 0) -> list[tuple[float, float]]:
        """[(start s, end s)] of every occurrence (restart: its downtime); jitter drawn from `seed`."""
        length = seconds(self.downtime if self.kind == "restart" else self.for_ or "0s")
        step = seconds(self.every) if self.every else 0.0
        rng = random.Random(f"{seed}:{self.kind}:{self.at}")
        jitter = seconds(self.jitter)
        starts = [seconds(self.at) + i * step + (round(rng.uniform(0, jitter)) if jitter else 0)
                  for i in range(self.count)]
        return [(s, s + length) for s in starts]


class Scenario(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    klass: str = Field(alias="class", min_length=1)
    description: str = ""
    duration: Duration
    history: Duration = "3d"
    seed: int = 0
    scrape_interval: Duration | None = None  # default: the stack's scrapeInterval
    evaluation_interval: Duration | None = None  # default: the stack's evaluationInterval
    coarse_interval: Duration = "2m"  # evaluation step more than `dense_for` away from every change
    dense_for: Duration = "40m"
    gateway: bool = False  # also model mockup-gateway, which answers 502 while mime-server serves nothing
    traffic: list[Segment] = Field(min_length=1)  # requests per second
    errors: list[Segment] = Field(default_factory=list)  # share of requests answered 5xx
    slow: list[Segment] = Field(default_factory=list)  # share slower than the SLO threshold, within the SLA one
    very_slow: list[Segment] = Field(default_factory=list)  # share slower than the SLA threshold
    events: list[Event] = Field(default_factory=list)

    @field_validator("traffic", "errors", "slow", "very_slow")
    @classmethod
    def _no_budget_multiple_for_traffic(cls, segments: list[Segment], info: Any) -> list[Segment]:
        if info.field_name == "traffic":
            for s in segments:
                for v in _values(s):
                    if isinstance(v, str):
                        raise ValueError(f"traffic is in requests per second; {v!r} is a multiple of an error budget")
        return segments

    @model_validator(mode="after")
    def _inside(self) -> "Scenario":
        end = seconds(self.duration)
        for e in self.events:
            for start, stop in e.occurrences(self.seed):
                if stop > end:
                    raise ValueError(f"{e.kind} event at {e.at} ends after the scenario's duration ({self.duration})")
        if e_gw := [e for e in self.events if e.service == slo.GATEWAY and not self.gateway]:
            raise ValueError(f"{e_gw[0].kind} event on {slo.GATEWAY} needs `gateway: true`")
        return self

    @property
    def services(self) -> tuple[str, ...]:
        return SERVICES if self.gateway else (slo.MIME_SERVER,)


def _values(s: Segment) -> list[Any]:
    if s.steady is not None:
        return [s.steady]
    if s.step is not None:
        return [s.step]
    if s.ramp is not None:
        return [s.ramp.from_, s.ramp.to]
    if s.periodic is not None:
        return [s.periodic.mean, s.periodic.amplitude]
    return []


def resolve_share(value: float | str, budget: float) -> float:
    """A share from a number or a budget multiple ("14x" -> 14 x budget)."""
    if isinstance(value, str):
        match = _BUDGET_MULTIPLE.match(value)
        if not match:
            raise ScenarioError(f"share {value!r}: expected a number or a budget multiple such as 14x")
        return float(match.group(1)) * budget
    return float(value)


def _location(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts)


def parse_scenarios(doc: Any, source: str) -> list[Scenario]:
    """Scenarios from a loaded YAML document (a list, or a mapping with `scenarios:`)."""
    if isinstance(doc, dict) and "scenarios" in doc:
        doc = doc["scenarios"]
    if not isinstance(doc, list):
        raise ScenarioError(f"{source}: expected a YAML list of scenarios (or `scenarios:` holding one)")
    out: list[Scenario] = []
    names: set[str] = set()
    for i, item in enumerate(doc):
        name = item.get("name", f"#{i + 1}") if isinstance(item, dict) else f"#{i + 1}"
        try:
            scenario = Scenario.model_validate(item)
        except ValidationError as exc:
            problems = "; ".join(f"{_location(tuple(e['loc'])) or '(scenario)'}: {e['msg']}" for e in exc.errors())
            raise ScenarioError(f"{source}: scenario {name!r}: {problems}") from None
        if scenario.name in names:
            raise ScenarioError(f"{source}: scenario {name!r}: name used twice; expected unique names")
        names.add(scenario.name)
        out.append(scenario)
    return out


def load_scenarios(path: str | Path) -> list[Scenario]:
    """Scenarios of a YAML file; ScenarioError names the file, the scenario and the field on error."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    return parse_scenarios(doc, str(path))


LIBRARY = Path(__file__).with_name("scenarios.yaml")
