"""Pass/fail thresholds on a replay's results, k6 style: ``p95<500ms``, ``max<=2s``, ``error_rate<0.01``."""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Callable, Mapping

from automation.errors import UsageError

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
}
_LATENCY = {"p50", "p90", "p95", "p99", "p99.9", "max", "mean", "min"}
_RATES = {"error_rate", "achieved_rate"}
_UNIT_MS = {"us": 0.001, "µs": 0.001, "ms": 1.0, "s": 1000.0, "": 1.0}
_PATTERN = re.compile(r"^\s*([a-z_]+|p\(?\d+(?:\.\d+)?\)?)\s*(<=|>=|==|<|>)\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s)?\s*$")


@dataclass(frozen=True)
class Threshold:
    """One condition; latency values are held in milliseconds."""

    text: str
    metric: str
    op: str
    value: float

    def check(self, metrics: Mapping[str, float]) -> tuple[float, bool]:
        """(observed value, whether the condition holds)."""
        observed = metrics[self.metric]
        return observed, _OPS[self.op](observed, self.value)


def parse_threshold(text: str) -> Threshold:
    """Parse ``METRIC OP VALUE[UNIT]``; latency metrics take us|ms|s (ms when omitted)."""
    match = _PATTERN.match(text)
    if not match:
        raise UsageError(
            f"invalid threshold {text!r}: expected METRIC OP VALUE, e.g. 'p95<500ms', 'max<=2s', 'error_rate<0.01'"
        )
    metric, op, number, unit = match.group(1), match.group(2), float(match.group(3)), match.group(4) or ""
    metric = metric.replace("(", "").replace(")", "")
    if metric in _LATENCY:
        return Threshold(text, metric, op, number * _UNIT_MS[unit])
    if metric in _RATES:
        if unit:
            raise UsageError(f"invalid threshold {text!r}: {metric} takes a plain number, not {unit!r}")
        return Threshold(text, metric, op, number)
    raise UsageError(
        f"invalid threshold {text!r}: unknown metric {metric!r}, expected one of "
        f"{', '.join(sorted(_LATENCY | _RATES))}"
    )
