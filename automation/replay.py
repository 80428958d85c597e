"""Open-loop traffic replay: each request leaves at its intended time, whatever earlier ones are doing.

Latency is measured from the intended send time (not from when the request actually left), so a
slow target or a late sender cannot hide queueing: no coordinated omission. Send lag (actual minus
intended send time) shows whether the generator itself kept up.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from automation.httpwire import HttpConnection, Origin, Pool, encode_request
from automation.thresholds import Threshold
from automation.traffic import PlannedRequest

_MAX_US = 3_600_000_000  # one hour, in microseconds
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


@dataclass
class ReplayOptions:
    """How to replay: target, credentials, timeouts and the cap on concurrent connections."""

    target: str
    api_key: str | None = None
    timeout_s: float = 30.0
    max_connections: int = 2048
    lead_s: float = 0.1  # time to set up before the first intended send


@dataclass
class _Tally:
    """Running measurements of one replay."""

    latency: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, _MAX_US, 3))
    lag: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, _MAX_US, 3))
    statuses: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    first_sent: float | None = None
    last_sent: float = 0.0
    last_done: float = 0.0


class _Sender:
    """Dispatches requests on idle connections from the scheduler itself; records results in callbacks."""

    def __init__(self, pool: Pool, tally: _Tally, timeout_s: float, max_connections: int) -> None:
        self.pool, self.tally, self.timeout_s = pool, tally, timeout_s
        self.loop = asyncio.get_running_loop()
        self.opening = 0
        self.max_connections = max_connections
        self.live = 0  # open connections
        self.waiting: deque[tuple[bytes, str, float]] = deque()
        self.pending = 0
        self.idle_event = asyncio.Event()

    def submit(self, data: bytes, method: str, intended: float) -> None:
        self.pending += 1
        self.idle_event.clear()
        connection = self.pool.take_idle()
        if connection is not None:
            self._dispatch(connection, data, method, intended)
        elif self.live + self.opening < self.max_connections:
            self.opening += 1
            self.loop.create_task(self._open_and_send(data, method, intended))
        else:  # at the connection cap: queue (latency still counts from the intended time)
            self.waiting.append((data, method, intended))

    async def _open_and_send(self, data: bytes, method: str, intended: float) -> None:
        try:
            connection = await self.pool.open()
        except OSError as exc:
            self.opening -= 1
            self._record(intended, type(exc).__name__, error=True)
            return
        self.opening -= 1
        self.live += 1
        self._dispatch(connection, data, method, intended)

    def _dispatch(self, connection: HttpConnection, data: bytes, method: str, intended: float) -> None:
        sent = time.monotonic()
        tally = self.tally
        tally.lag.record_value(max(1, int((sent - intended) * 1e6)))
        if tally.first_sent is None:
            tally.first_sent = sent
        tally.last_sent = sent
        future = connection.send(data, method)
        timer = self.loop.call_later(self.timeout_s, self._timeout, connection, future)
        future.add_done_callback(lambda f: self._done(connection, f, intended, timer))

    def _timeout(self, connection: HttpConnection, future: "asyncio.Future[int]") -> None:
        if not future.done():
            future.set_exception(asyncio.TimeoutError())
            connection.reusable = False
            if connection.transport is not None:
                connection.transport.abort()

    def _done(self, connection: HttpConnection, future: "asyncio.Future[int]", intended: float, timer: asyncio.TimerHandle) -> None:
        timer.cancel()
        error = future.exception()
        if error is None:
            status = future.result()
            self._record(intended, str(status), error=status >= 400)
        else:
            self._record(intended, "timeout" if isinstance(error, asyncio.TimeoutError) else type(error).__name__, True)
        if not connection.reusable or connection.closed:
            self.live -= 1
            if connection.transport is not None:
                connection.transport.close()
            connection = None  # type: ignore[assignment]
        if self.waiting:
            data, method, queued_intended = self.waiting.popleft()
            if connection is not None:
                self._dispatch(connection, data, method, queued_intended)
            else:
                self.opening += 1
                self.loop.create_task(self._open_and_send(data, method, queued_intended))
        elif connection is not None:
            self.pool.release(connection)

    def _record(self, intended: float, status: str, error: bool) -> None:
        done = time.monotonic()
        tally = self.tally
        tally.last_done = done
        tally.latency.record_value(max(1, int((done - intended) * 1e6)))
        tally.statuses[status] += 1
        if error:
            tally.errors += 1
        self.pending -= 1
        if self.pending == 0:
            self.idle_event.set()


async def run_replay(schedule: list[tuple[float, PlannedRequest]], options: ReplayOptions) -> dict[str, Any]:
    """Send every request at ``start + offset`` on the monotonic clock; return the measured results."""
    origin = Origin.parse(options.target)
    extra = (("X-API-Key", options.api_key),) if options.api_key else ()
    pool = Pool(origin)
    tally = _Tally()
    sender = _Sender(pool, tally, options.timeout_s, options.max_connections)
    encoded: dict[int, bytes] = {}  # requests without a generated body are serialized once
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection pause would show up as send lag
    start = time.monotonic() + options.lead_s
    try:
        for index, (offset, request) in enumerate(schedule):
            intended = start + offset
            delay = intended - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if request.body is None and request.body_size:
                data = encode_request(origin, request.method, request.path, request.headers + extra, request.payload(index))
            else:
                data = encoded.get(id(request)) or encoded.setdefault(
                    id(request),
                    encode_request(origin, request.method, request.path, request.headers + extra, request.payload(index)),
                )
            sender.submit(data, request.method, intended)
        if sender.pending:
            await sender.idle_event.wait()
    finally:
        pool.close()
        if gc_was_enabled:
            gc.enable()
    return _report(schedule, tally, start, pool.opened)


def _ms(histogram: HdrHistogram, percentile: float) -> float:
    return round(histogram.get_value_at_percentile(percentile) / 1000, 3)


def _report(schedule: list[tuple[float, PlannedRequest]], tally: _Tally, start: float, connections: int) -> dict[str, Any]:
    count = len(schedule)
    intended_span = schedule[-1][0] - schedule[0][0] if count > 1 else 0.0
    sent_span = tally.last_sent - (tally.first_sent or tally.last_sent)
    latency: dict[str, float] = {f"p{p:g}": _ms(tally.latency, p) for p in PERCENTILES}
    latency |= {
        "min": round(tally.latency.get_min_value() / 1000, 3),
        "mean": round(tally.latency.get_mean_value() / 1000, 3),
        "max": round(tally.latency.get_max_value() / 1000, 3),
    }
    lag = {f"p{p:g}": _ms(tally.lag, p) for p in PERCENTILES} | {"max": round(tally.lag.get_max_value() / 1000, 3)}
    return {
        "requests": count,
        "errors": tally.errors,
        "error_rate": round(tally.errors / count, 6) if count else 0.0,
        "statuses": dict(sorted(tally.statuses.items())),
        "target_rate": round((count - 1) / intended_span, 2) if intended_span else None,
        "achieved_rate": round((count - 1) / sent_span, 2) if sent_span else None,
        "duration_s": round(tally.last_done - start, 3),
        "connections_opened": connections,
        "latency_ms": latency,
        "send_lag_ms": lag,
    }


def evaluate(report: dict[str, Any], thresholds: list[Threshold]) -> list[dict[str, Any]]:
    """Check thresholds against a report: latency metrics from ``latency_ms``, rates from the top level."""
    metrics: dict[str, float] = dict(report["latency_ms"])
    metrics["error_rate"] = report["error_rate"]
    metrics["achieved_rate"] = report["achieved_rate"] or 0.0
    results = []
    for threshold in thresholds:
        observed, ok = threshold.check(metrics)
        results.append({"threshold": threshold.text, "observed": observed, "ok": ok})
    return results
