"""Recorded traffic as a replay plan: gateway JSON access logs, request JSONL files, or a synthetic mix.

Accepted lines (one JSON object per line; anything else is skipped and counted):
- gateway access log: ``ts`` (ISO 8601 with a zone), ``method``, ``path`` (with query), ``bytes_in``, ``service``;
- request JSONL: ``offset_s`` or ``ts``, ``method``, ``path``, ``body_b64`` or ``body_size``, ``headers``.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from automation.errors import ConfigError, UsageError

# Hop-by-hop and framing headers are the client's business, never replayed verbatim.
_DROPPED_HEADERS = {"host", "content-length", "connection", "transfer-encoding", "keep-alive", "x-api-key", "authorization"}


@dataclass(frozen=True)
class PlannedRequest:
    """One request to send ``offset_s`` seconds after the first one (before any speed-up)."""

    offset_s: float
    method: str
    path: str
    body: bytes | None = None
    body_size: int = 0
    headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def payload(self, index: int) -> bytes:
        """The body: recorded bytes, or ``body_size`` deterministic pseudo-random bytes (distinct per request)."""
        if self.body is not None:
            return self.body
        if not self.body_size:
            return b""
        return random.Random(index).randbytes(self.body_size)


@dataclass
class Plan:
    """Requests in send order, plus how many input lines were not requests."""

    requests: list[PlannedRequest]
    skipped_lines: int = 0


def _timestamp(value: Any, line_no: int) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"line {line_no}: ts {value!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise UsageError(f"line {line_no}: ts {value!r} has no time zone, expected e.g. 2026-01-31T12:00:00Z")
    return moment.timestamp()


def _request(record: dict[str, Any], line_no: int) -> tuple[float, bool, PlannedRequest] | None:
    method, path = record.get("method"), record.get("path")
    if not isinstance(method, str) or not isinstance(path, str):
        return None
    if not path.startswith("/"):
        raise UsageError(f"line {line_no}: path {path!r} must start with '/'")
    if "offset_s" in record:
        when, absolute = float(record["offset_s"]), False
    elif "ts" in record:
        when, absolute = _timestamp(record["ts"], line_no), True
    else:
        return None
    body: bytes | None = None
    if "body_b64" in record:
        try:
            body = base64.b64decode(record["body_b64"], validate=True)
        except (binascii.Error, ValueError):
            raise UsageError(f"line {line_no}: body_b64 is not valid base64") from None
    size = int(record.get("body_size", record.get("bytes_in", 0)) or 0)
    if method.upper() in ("GET", "HEAD", "DELETE", "OPTIONS") and body is None:
        size = 0  # a gateway's bytes_in for a GET counts headers, not a body
    raw_headers = record.get("headers") or {}
    headers = tuple((str(k), str(v)) for k, v in raw_headers.items() if str(k).lower() not in _DROPPED_HEADERS)
    return when, absolute, PlannedRequest(0.0, method.upper(), path, body, size, headers)


def load_plan(path: Path, service: str | None = None) -> Plan:
    """Read a log into a plan sorted by time; offsets start at 0 with the earliest request."""
    try:
        handle = open(path, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"cannot read traffic log {str(path)!r}: {exc.strerror or exc}") from None
    timed: list[tuple[float, int, PlannedRequest]] = []
    skipped = 0
    kinds: set[bool] = set()
    with handle:
        for line_no, line in enumerate(handle, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                skipped += 1
                continue
            if not isinstance(record, dict) or (service and record.get("service", service) != service):
                skipped += 1
                continue
            parsed = _request(record, line_no)
            if parsed is None:
                skipped += 1
                continue
            when, absolute, request = parsed
            kinds.add(absolute)
            timed.append((when, line_no, request))
    if not timed:
        raise ConfigError(f"traffic log {str(path)!r} holds no request lines (method, path and ts or offset_s)")
    if len(kinds) > 1:
        raise UsageError(f"traffic log {str(path)!r} mixes ts and offset_s lines; expected one kind")
    timed.sort(key=lambda item: (item[0], item[1]))
    origin = timed[0][0]
    requests = [
        PlannedRequest(when - origin, r.method, r.path, r.body, r.body_size, r.headers) for when, _, r in timed
    ]
    return Plan(requests, skipped)


def synthetic_plan(rate: float, duration_s: float, seed: int = 1) -> Plan:
    """A mime-server smoke mix at ``rate``/s: uploads of 1-64 KiB, reads of health and readiness."""
    rng = random.Random(seed)
    count = max(1, int(rate * duration_s))
    requests = []
    for i in range(count):
        roll = rng.random()
        if roll < 0.5:
            requests.append(PlannedRequest(i / rate, "POST", "/v1/files", body_size=rng.randrange(1024, 65536)))
        else:
            requests.append(PlannedRequest(i / rate, "GET", "/healthz"))
    return Plan(requests)


def schedule(plan: Plan, speed: float | None, rate: float | None, count: int | None) -> list[tuple[float, PlannedRequest]]:
    """Intended send offsets: recorded times divided by ``speed``, or evenly spaced at ``rate``/s.

    ``count`` (rate mode only) cycles through the log to send that many requests.
    """
    if speed is not None and rate is not None:
        raise UsageError("--speed and --rate are exclusive: pick recorded timing or a constant rate")
    if rate is not None:
        if rate <= 0:
            raise UsageError(f"--rate {rate!r}: expected requests per second above 0")
        total = count or len(plan.requests)
        return [(i / rate, plan.requests[i % len(plan.requests)]) for i in range(total)]
    if count is not None:
        raise UsageError("--count needs --rate (recorded timing replays the log once)")
    factor = 1.0 if speed is None else speed
    if factor <= 0:
        raise UsageError(f"--speed {speed!r}: expected a factor above 0 (2 = twice as fast)")
    return [(r.offset_s / factor, r) for r in plan.requests]
