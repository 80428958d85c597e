"""Fault injection for mime-server: a time-bounded error and delay rate on the /v1 routes."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass
from typing import Any

from mime_server.errors import ApiError

MAX_DURATION_S = 3600
MAX_DELAY_MS = 60_000


@dataclass(frozen=True)
class FaultSpec:
    """What to inject, and until when (monotonic clock)."""

    error_rate: float
    delay_rate: float
    delay_ms: int
    duration_s: float

    @classmethod
    def parse(cls, body: Any) -> FaultSpec:
        """Validate the JSON body of POST /admin/faults; raise ApiError 400 naming the bad field."""
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_faults", "body must be a JSON object", body)
        unknown = set(body) - {"error_rate", "delay_rate", "delay_ms", "duration_s"}
        if unknown:
            raise ApiError(400, "invalid_faults", "unknown fields", sorted(unknown))

        def number(name: str, default: float, low: float, high: float) -> float:
            value = body.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise ApiError(400, "invalid_faults", f"{name} must be a number in [{low}, {high}]", value)
            return float(value)

        return cls(
            error_rate=number("error_rate", 0.0, 0.0, 1.0),
            delay_rate=number("delay_rate", 0.0, 0.0, 1.0),
            delay_ms=int(number("delay_ms", 0, 0, MAX_DELAY_MS)),
            duration_s=number("duration_s", 60, 1, MAX_DURATION_S),
        )


class FaultInjector:
    """Holds the active fault (if any) and applies it to one request at a time."""

    def __init__(self, rng: random.Random | None = None, clock: Any = time.monotonic) -> None:
        self._rng = rng or random.Random()
        self._clock = clock
        self._spec: FaultSpec | None = None
        self._until = 0.0

    def set(self, spec: FaultSpec) -> None:
        self._spec = spec
        self._until = self._clock() + spec.duration_s

    def clear(self) -> None:
        self._spec = None

    def active(self) -> FaultSpec | None:
        if self._spec is not None and self._clock() >= self._until:
            self._spec = None
        return self._spec

    def state(self) -> dict[str, Any]:
        spec = self.active()
        if spec is None:
            return {"active": False}
        return {"active": True, **asdict(spec), "remaining_s": round(self._until - self._clock(), 3)}

    async def apply(self) -> bool:
        """Delay and/or decide to fail this request; True means answer with an injected 500."""
        spec = self.active()
        if spec is None:
            return False
        if spec.delay_ms and self._rng.random() < spec.delay_rate:
            await asyncio.sleep(spec.delay_ms / 1000)
        return self._rng.random() < spec.error_rate
