"""Parsing of human durations ("500ms", "1.5s", "24h", "7d") and timestamps given on the command line."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from automation.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m|h|d|w)?\s*$")
_SECONDS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str, default_unit: str = "s") -> float:
    """Return the duration ``text`` in seconds: a number with an optional unit us|ms|s|m|h|d|w."""
    match = _DURATION.match(text)
    if not match:
        raise UsageError(f"invalid duration {text!r}: expected a number with a unit, e.g. 500ms, 15s, 24h")
    return float(match.group(1)) * _SECONDS[match.group(2) or default_unit]


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """Return an aware UTC datetime for ``text``: RFC 3339, unix seconds, ``now`` or ``now-1h`` / ``-1h``."""
    now = now or datetime.now(timezone.utc)
    value = text.strip()
    if value == "now":
        return now
    relative = value[3:] if value.startswith("now") else value
    if relative.startswith("-") and not re.match(r"^-\d+(\.\d+)?$", relative):
        return now - timedelta(seconds=parse_duration(relative[1:]))
    if re.match(r"^-?\d+(\.\d+)?$", value):
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"invalid time {text!r}: expected RFC 3339 (2026-01-31T12:00:00Z), unix seconds, now or -1h"
        ) from None
    if parsed.tzinfo is None:
        raise UsageError(f"invalid time {text!r}: expected a time zone (e.g. Z or +00:00)")
    return parsed.astimezone(timezone.utc)


def rfc3339(moment: datetime) -> str:
    """Format an aware datetime as RFC 3339 in UTC with a Z suffix (milliseconds only when non-zero)."""
    utc = moment.astimezone(timezone.utc)
    if utc.microsecond:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
