"""SLO/SLA model: the SLIs, their objectives from stack settings, error-budget math and burn windows.

Pure data and arithmetic (no pulumi, no YAML): `config.rules` renders Prometheus rules from it and
the Grafana dashboards query the record names defined here. Every target number comes from the
stack settings (`settings.slo`, `settings.sla`); the only numbers in this module are the SRE
workbook's multi-window burn-rate table (budget share per window), which is policy, not a target.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from config.settings import SloTargets, StackSettings

MIME_SERVER = "mime-server"
GATEWAY = "mockup-gateway"

SliName = Literal["availability", "errors", "latency"]
Severity = Literal["critical", "warning"]


@dataclass(frozen=True)
class Sli:
    """One service level indicator: what is measured, how, and for which services."""

    name: SliName
    title: str  # alert-name prefix, e.g. ErrorRate -> ErrorRateBudgetBurn
    services: tuple[str, ...]
    kind: Literal["time", "request"]
    description: str


SLIS: tuple[Sli, ...] = (
    Sli("availability", "Availability", (MIME_SERVER, GATEWAY), "time",
        "share of time the service is up and answering scrapes (avg_over_time of `up`)"),
    Sli("errors", "ErrorRate", (MIME_SERVER, GATEWAY), "request",
        "share of /v1 requests answered without a 5xx"),
    Sli("latency", "Latency", (MIME_SERVER, GATEWAY), "request",
        "share of /v1 requests answered faster than the latency threshold"),
)
SLI_BY_NAME: dict[str, Sli] = {s.name: s for s in SLIS}

# Record names the dashboards query (labels: service, sli).
ERROR_BUDGET_REMAINING = "slo:error_budget_remaining:ratio"
SLA_COMPLIANCE = "sla:compliance:ratio30d"


def error_ratio_record(window: str) -> str:
    """Record name of the SLI error ratio over `window`: slo:sli_error:ratio_rate<window>."""
    return f"slo:sli_error:ratio_rate{window}"


def burn_rate_record(window: str) -> str:
    """Record name of the burn rate over `window`: slo:burn_rate:ratio_rate<window>."""
    return f"slo:burn_rate:ratio_rate{window}"


def request_rate_record(window: str) -> str:
    """Record name of a request SLI's events per second over `window`: slo:sli_requests:rate<window>."""
    return f"slo:sli_requests:rate{window}"


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
    """Error budget as a ratio of time or requests: 1 - availability; error_rate; 1 - latency_percentile."""
    if sli == "availability":
        return 1 - targets.availability
    if sli == "errors":
        return targets.error_rate
    if sli == "latency":
        return 1 - targets.latency_percentile
    raise ValueError(f"SLI {sli!r}: expected one of {', '.join(SLI_BY_NAME)}")


def objective(targets: SloTargets, sli: SliName) -> float:
    """Good-event ratio the SLI must meet: 1 - error budget."""
    return 1 - error_budget(targets, sli)


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

# Windows every SLI records its error ratio over (the period window is added from settings).
RECORD_WINDOWS: tuple[str, ...] = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


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
    """Every window an SLI error ratio is recorded over: the burn windows and the SLO period."""
    return (*RECORD_WINDOWS, period_window(settings))


# --- latency buckets ---------------------------------------------------------------------------


def le_label(seconds: float) -> str:
    """The `le` label prometheus-client writes for a bucket bound: repr of the float (0.5, 1.0)."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"latency threshold {seconds!r} s: expected a positive histogram bucket bound")
    return repr(float(seconds))


def check_bucket(seconds: float, buckets: tuple[float, ...] | None) -> str:
    """`le_label(seconds)` after checking the bound is one of the service's histogram `buckets`."""
    label = le_label(seconds)
    if buckets is not None and float(seconds) not in {float(b) for b in buckets}:
        raise ValueError(f"latency threshold {seconds!r} s: expected a bucket bound the services expose, "
                         f"one of {', '.join(le_label(b) for b in buckets)}")
    return label


def service_buckets() -> tuple[float, ...] | None:
    """The services' latency buckets (mime_server.metrics.LATENCY_BUCKETS), or None where the service
    package's dependencies are not installed (the Pulumi venv): then only the format is checked."""
    try:
        from mime_server.metrics import LATENCY_BUCKETS
    except ImportError:
        return None
    return tuple(LATENCY_BUCKETS)
