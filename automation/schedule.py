"""The backup scheduler loop for the stack's backup container: back up now, then at each interval, until SIGTERM."""

from __future__ import annotations

import signal
import threading
from datetime import datetime, timedelta, timezone
from typing import Callable

from automation.errors import AutomationError, UsageError


def first_run(now: datetime, at: str | None) -> datetime:
    """When the first backup runs: ``now``, or the next ``HH:MM`` (UTC) when ``at`` is given."""
    if at is None:
        return now
    try:
        hour, minute = (int(part) for part in at.split(":"))
        if not (0 <= hour < 24 and 0 <= minute < 60):
            raise ValueError
    except ValueError:
        raise UsageError(f"invalid --at {at!r}: expected HH:MM in UTC, e.g. 02:30") from None
    candidate = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return candidate if candidate >= now else candidate + timedelta(days=1)


def run_schedule(
    job: Callable[[], None],
    every_s: float,
    at: str | None = None,
    once: bool = False,
    log: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> int:
    """Run ``job`` at ``first_run`` and every ``every_s`` seconds after; returns the number of failed runs.

    A failed run is logged and the schedule goes on (the next run may succeed); runs are
    anchored to the first one, so a slow backup does not drift the schedule. SIGTERM/SIGINT
    end the loop between runs (a container stop), after the current run completes.
    """
    if every_s <= 0:
        raise UsageError(f"invalid interval {every_s!r} s: expected more than 0")
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    start = first_run(datetime.now(timezone.utc), at)
    failures = 0
    runs = 0
    slot = 0
    while not stop.is_set():
        next_run = start + timedelta(seconds=every_s * slot)
        delay = (next_run - datetime.now(timezone.utc)).total_seconds()
        if delay > 0:
            log(f"next backup at {next_run.isoformat(timespec='seconds')}")
            if stop.wait(delay):
                break
        runs += 1
        try:
            job()
        except (AutomationError, OSError) as error:
            failures += 1
            log(f"backup run {runs} failed: {error}")
        if once:
            break
        slot += 1
        while start + timedelta(seconds=every_s * slot) <= datetime.now(timezone.utc):
            slot += 1  # a run longer than the interval: skip the missed slots
    return failures


