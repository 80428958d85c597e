"""Concurrent health checks of HTTP endpoints (httpx), each bounded by a deadline with retries of fast failures."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Mapping

import httpx

from automation.errors import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from automation.targets import url_problem

HEALTHY = "healthy"
UNHEALTHY = "unhealthy"  # answered, but not with 2xx
TIMEOUT = "timeout"
UNREACHABLE = "unreachable"  # connection refused, reset, DNS failure
INVALID = "invalid"  # configuration: the URL cannot be checked at all


@dataclass(frozen=True)
class CheckResult:
    """Outcome of checking one service."""

    service: str
    url: str
    status: str
    http_status: int | None
    latency_ms: float | None
    attempts: int
    detail: str

    @property
    def healthy(self) -> bool:
        return self.status == HEALTHY

    def as_dict(self) -> dict[str, object]:
        return asdict(self) | {"healthy": self.healthy}


@dataclass(frozen=True)
class CheckPolicy:
    """How hard to try: ``timeout`` is the whole budget of one target, retries included."""

    timeout_s: float = 2.0
    retries: int = 2
    backoff_s: float = 0.1


async def _get_status(client: httpx.AsyncClient, url: str, timeout_s: float) -> int:
    """GET `url`; the status once the whole answer is read, within `timeout_s` (connect included)."""
    response = await asyncio.wait_for(client.get(url, timeout=timeout_s), timeout_s)
    return response.status_code


async def _check_one(client: httpx.AsyncClient, service: str, url: str, policy: CheckPolicy) -> CheckResult:
    problem = url_problem(url)
    if problem:
        return CheckResult(service, url, INVALID, None, None, 0, problem)
    deadline = time.monotonic() + policy.timeout_s
    attempt = 0
    backoff = policy.backoff_s
    while True:
        attempt += 1
        remaining = deadline - time.monotonic()
        started = time.monotonic()
        try:
            code = await _get_status(client, url, max(remaining, 0.001))
            latency = (time.monotonic() - started) * 1000
            if 200 <= code < 300:
                return CheckResult(service, url, HEALTHY, code, latency, attempt, "")
            status, detail = UNHEALTHY, f"HTTP {code}, expected 2xx"
        except (asyncio.TimeoutError, httpx.TimeoutException):
            return CheckResult(
                service, url, TIMEOUT, None, None, attempt, f"no answer within {policy.timeout_s:g} s"
            )
        except (httpx.TransportError, OSError) as exc:  # refused, reset, DNS failure, TLS failure, not HTTP
            status, code, latency = UNREACHABLE, None, None
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        # Retry only while the budget allows one more attempt after the pause.
        if attempt > policy.retries or time.monotonic() + backoff >= deadline:
            return CheckResult(service, url, status, code, latency, attempt, detail)
        await asyncio.sleep(backoff)
        backoff *= 2


async def check_all(endpoints: Mapping[str, str], policy: CheckPolicy) -> list[CheckResult]:
    """Check every endpoint at once; results come back in the order of ``endpoints``."""
    # Direct connections only (trust_env=False): health URLs are internal, an HTTP proxy must not
    # answer for them. A fresh connection per check, so one target's keep-alive cannot hide another's.
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(trust_env=False, limits=limits, follow_redirects=False) as client:
        return list(await asyncio.gather(*(_check_one(client, name, url, policy)
                                           for name, url in endpoints.items())))


def run_checks(endpoints: Mapping[str, str], policy: CheckPolicy) -> list[CheckResult]:
    """Synchronous front of :func:`check_all`."""
    return asyncio.run(check_all(endpoints, policy))


def exit_code(results: list[CheckResult]) -> int:
    """0 all healthy, 3 any target invalid (or none at all), else 1 if any is unhealthy."""
    if not results or any(r.status == INVALID for r in results):
        return EXIT_CONFIG
    return EXIT_OK if all(r.healthy for r in results) else EXIT_FAILED
