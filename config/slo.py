"""SLO/SLA model: the SLIs as data, their objectives from stack settings, error-budget math, burn windows.

Pure data and arithmetic (no pulumi, no YAML): `config.rules` renders Prometheus rules from it and
the Grafana dashboards query the record names defined here. An SLI is data, as in Sloth and Pyrra:
PromQL templates with a `{window}` placeholder (and `{services}`, `{routes}`, `{le}`), from which
every error ratio is derived. Every target number comes from the stack settings (`settings.slo`,
`settings.sla`); the only numbers in this module are the SRE workbook's multi-window burn-rate
table (budget share per window), which is policy, not a target.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from config.settings import SloTargets, StackSettings
from mime_server.buckets import LATENCY_BUCKETS

MIME_SERVER = "mime-server"
GATEWAY = "mockup-gateway"
SLO_ROUTES = "/v1/.*"  # user-facing API only: scrapes, health checks and admin calls are not the SLI

SliName = Literal["availability", "errors", "latency"]
Severity = Literal["critical", "warning"]
TargetField = Literal["availability", "error_rate", "latency_percentile"]


@dataclass(frozen=True)
class Sli:
    """One service level indicator as data.

    Request-based SLIs give `total` and either `bad` or `good` events per second; a time-based SLI
    gives `good` as a ratio already (no `total`). Templates hold `{window}`, `{services}`,
    `{routes}` and, for latency, `{le}`. The objective is the commitment's `target` field
    (`1 - target` where the field is an error ratio, e.g. error_rate).
    """

    name: SliName
    title: str  # alert-name prefix, e.g. ErrorRate -> ErrorRateBudgetBurn
    services: tuple[str, ...]
    description: str
    target: TargetField
    target_is_error_ratio: bool = False
    good: str | None = None
    bad: str | None = None
    total: str | None = None

    def __post_init__(self) -> None:
        if (self.good is None) == (self.bad is None) or (self.bad is not None and self.total is None):
            raise ValueError(f"SLI {self.name!r}: expected `good` or `bad` (with `total`), exactly one")

    @property
    def uses_threshold(self) -> bool:
        """True when the SLI counts requests against the latency threshold (`{le}`)."""
        return any("{le}" in (t or "") for t in (self.good, self.bad, self.total))

    @property
    def counts_requests(self) -> bool:
        """True for a request-based SLI (it has a `total`); False for a time-based one."""
        return self.total is not None

    def objective(self, targets: SloTargets) -> float:
        """Good-event ratio the commitment requires."""
        value = float(getattr(targets, self.target))
        return 1 - value if self.target_is_error_ratio else value

    def error_budget(self, targets: SloTargets) -> float:
        """Share of events (or time) allowed to be bad: 1 - objective (the field itself for an error ratio)."""
        value = float(getattr(targets, self.target))
        return value if self.target_is_error_ratio else 1 - value

    def query(self, template: str, window: str, le: str | None = None) -> str:
        """A template with its placeholders filled (PromQL braces stay as they are)."""
        text = (template.replace("{services}", "|".join(self.services)).replace("{routes}", SLO_ROUTES)
                .replace("{window}", window))
        if "{le}" in text:
            if le is None:
                raise ValueError(f"SLI {self.name!r} needs a latency bucket (le) for {template!r}")
            text = text.replace("{le}", le)
        return text

    def error_ratio(self, window: str, le: str | None = None) -> str:
        """PromQL of the bad-event ratio over `window`, by service; no traffic gives no sample, not 1."""
        if self.bad is not None:
            bad, total = self.query(self.bad, window, le), self.query(str(self.total), window, le)
            # a service with traffic but no bad series yet has an error ratio of 0, not no data
            return f"(\n  {bad}\n  or\n  0 * {total}\n)\n/\n({total} > 0)"
        return f"1 - (\n{self.good_ratio(window, le)}\n)" if self.total else \
            f"1 - {self.good_ratio(window, le)}"

    def good_ratio(self, window: str, le: str | None = None) -> str:
        """PromQL of the good-event ratio over `window` (for SLIs defined by their good events)."""
        good = self.query(str(self.good), window, le)
        if self.total is None:
            return good
        return f"  {good}\n  /\n  ({self.query(self.total, window, le)} > 0)"


_V1 = 'service=~"{services}", route=~"{routes}"'

SLIS: tuple[Sli, ...] = (
    Sli("availability", "Availability", (MIME_SERVER, GATEWAY),
        "share of time the service is up and answering scrapes (avg_over_time of `up`)",
        target="availability",
        good='avg by (service) (avg_over_time(up{service=~"{services}"}[{window}]))'),
    Sli("errors", "ErrorRate", (MIME_SERVER, GATEWAY), "share of /v1 requests answered without a 5xx",
        target="error_rate", target_is_error_ratio=True,
        bad=f'sum by (service) (rate(http_requests_total{{{_V1}, code=~"5.."}}[{{window}}]))',
        total=f"sum by (service) (rate(http_requests_total{{{_V1}}}[{{window}}]))"),
    Sli("latency", "Latency", (MIME_SERVER, GATEWAY),
        "share of /v1 requests answered faster than the latency threshold",
        target="latency_percentile",
        good=f'sum by (service) (rate(http_request_duration_seconds_bucket{{{_V1}, le="{{le}}"}}[{{window}}]))',
        total=f"sum by (service) (rate(http_request_duration_seconds_count{{{_V1}}}[{{window}}]))"),
)
SLI_BY_NAME: dict[str, Sli] = {s.name: s for s in SLIS}

# Record names the dashboards query (labels: service, sli).
ERROR_BUDGET_REMAINING = "slo:error_budget_remaining:ratio"
OBJECTIVE = "slo:objective:ratio"  # metadata: the SLO's objective per service and SLI (Pyrra's)
TIME_PERIOD_DAYS = "slo:time_period:days"  # metadata: the SLO window


def error_ratio_record(window: str) -> str:
    """Record name of the SLI error ratio over `window`: slo:sli_error:ratio_rate<window>."""
    return f"slo:sli_error:ratio_rate{window}"


def burn_rate_record(window: str) -> str:
    """Record name of the burn rate over `window`: slo:burn_rate:ratio_rate<window>."""
    return f"slo:burn_rate:ratio_rate{window}"


def request_rate_record(window: str) -> str:
    """Record name of a request SLI's events per second over `window`: slo:sli_requests:rate<window>."""
    return f"slo:sli_requests:rate{window}"


def sla_compliance_record(settings: StackSettings) -> str:
    """Record name of the SLA's compliance over the SLO period: sla:compliance:ratio<period>, e.g. ratio30d."""
    return f"sla:compliance:ratio{period_window(settings)}"


# --- durations ----------------------------------------------------------------------------------

_UNITS: dict[str, float] = {"ms": 1 / 1000, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^([0-9]+)(ms|s|m|h|d|w)$")


def duration_seconds(duration: str) -> float:
    """Seconds in a Prometheus duration such as `5m`, `1d` or `500ms`."""
    match = _DURATION.match(duration)
    if not match:
        raise ValueError(f"duration {duration!r}: expected a Prometheus duration such as 5m, 1h or 30d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration for `seconds` (whole milliseconds), e.g. 3600 -> `1h`."""
    millis = round(seconds * 1000)
    if millis <= 0:
        raise ValueError(f"duration of {seconds!r} s: expected at least 1 ms")
    for unit in ("d", "h", "m", "s"):
        size = round(_UNITS[unit] * 1000)
        if millis % size == 0:
            return f"{millis // size}{unit}"
    return f"{millis}ms"


# --- objectives and budget ----------------------------------------------------------------------


def error_budget(targets: SloTargets, sli: SliName) -> float:
    """Error budget of an SLI as a ratio of time or requests: 1 - its objective."""
    return _sli(sli).error_budget(targets)


def objective(targets: SloTargets, sli: SliName) -> float:
    """Good-event ratio the SLI must meet under `targets`."""
    return _sli(sli).objective(targets)


def _sli(name: str) -> Sli:
    if name not in SLI_BY_NAME:
        raise ValueError(f"SLI {name!r}: expected one of {', '.join(SLI_BY_NAME)}")
    return SLI_BY_NAME[name]


def window_minutes(window_days: int) -> float:
    """Minutes in the SLO window: days x 24 x 60 (30 days -> 43,200)."""
    return window_days * 24 * 60


def allowed_downtime_minutes(target: float, window_days: int) -> float:
    """Downtime the availability target allows per window: (1 - target) x window minutes."""
    return (1 - target) * window_minutes(window_days)


def budget_remaining(error_ratio: float, budget: float) -> float:
    """Share of the error budget left: 1 - error_ratio / budget (1 full, 0 spent, < 0 overspent)."""
    return 1 - error_ratio / budget


# --- multi-window burn-rate alerts ---------------------------------------------------------------


@dataclass(frozen=True)
class BurnWindow:
    """One row of the multi-window burn-rate table: alert when `budget_share` of the period's budget
    would be spent within `long` (confirmed over `short`, so the alert resets quickly)."""

    severity: Severity
    budget_share: float
    long: str
    short: str


# The SRE workbook's table for a 30-day period (Sloth: windows/google-30d.yaml).
BURN_WINDOWS: tuple[BurnWindow, ...] = (
    BurnWindow("critical", 0.02, "1h", "5m"),
    BurnWindow("critical", 0.05, "6h", "30m"),
    BurnWindow("warning", 0.10, "1d", "2h"),
    BurnWindow("warning", 0.10, "3d", "6h"),
)

def traffic_reference_window() -> str:
    """The window whose request rate stands for a period's usual traffic: the longest burn window
    (a month's average would need a month of data; three days exist three days after an install)."""
    return max((w.long for w in BURN_WINDOWS), key=duration_seconds)


def guard_windows() -> tuple[str, ...]:
    """Windows the page alerts' low-traffic guard reads request rates over: page long windows + reference."""
    longs = [w.long for w in BURN_WINDOWS if w.severity == "critical"]
    return tuple(dict.fromkeys([*longs, traffic_reference_window()]))


def burn_rate_factor(budget_share: float, period_hours: float, window_hours: float) -> float:
    """Burn rate that spends `budget_share` of the budget in the window: share x period h / window h."""
    return budget_share * period_hours / window_hours


def window_factor(window: BurnWindow, window_days: int) -> float:
    """burn_rate_factor of one table row for an SLO period of `window_days` days."""
    return burn_rate_factor(window.budget_share, window_days * 24, duration_seconds(window.long) / 3600)


def detection_seconds(window: BurnWindow, window_days: int, burn: float) -> float:
    """Seconds a steady burn rate (error ratio / budget) takes to trip the row: long s x factor / burn
    (infinite when burn <= factor: the short window never exceeds the factor)."""
    factor = window_factor(window, window_days)
    if burn <= factor:
        return math.inf
    return duration_seconds(window.long) * factor / burn


def period_window(settings: StackSettings) -> str:
    """The SLO period as a Prometheus range, e.g. `30d`."""
    return f"{settings.slo_window_days}d"


def record_windows(settings: StackSettings) -> tuple[str, ...]:
    """Every window an SLI error ratio is recorded over, shortest first: every long and short window
    of the burn-rate table (derived, never kept beside it, as Pyrra does) and the SLO period."""
    burn = {w for bw in BURN_WINDOWS for w in (bw.long, bw.short)}
    return (*sorted(burn, key=duration_seconds), period_window(settings))


# --- latency buckets ---------------------------------------------------------------------------


def le_label(seconds: float) -> str:
    """The `le` label prometheus-client writes for a bucket bound: repr of the float (0.5, 1.0)."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"latency threshold {seconds!r} s: expected a positive histogram bucket bound")
    return repr(float(seconds))


def check_bucket(seconds: float, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> str:
    """`le_label(seconds)` after checking the bound is one of the services' histogram `buckets`."""
    label = le_label(seconds)
    if float(seconds) not in {float(b) for b in buckets}:
        raise ValueError(f"latency threshold {seconds!r} s: expected a bucket bound the services expose, "
                         f"one of {', '.join(le_label(b) for b in buckets)}")
    return label
