"""Docker's healthcheck monitor for one container, run by the rehearsal (podman needs systemd for its own).

The schedule and the state machine are Docker's (moby daemon/health.go): the first probe one
interval after start (the start interval, 5 s by default, while still starting inside the start
period), a probe slower than the timeout counts as a failure, failures inside the start period do
not count until the first success, and `retries` failures in a row make the container unhealthy.
The probe is `podman healthcheck run`, which runs the test stored in the container's config (the
declared one, not a copy) and keeps `podman ps` up to date; its result feeds Docker's state machine
here, and a probe still running at the timeout is killed and counted as failed, as Docker does.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass

from rehearsal.engine import Podman
from rehearsal.translate import Healthcheck

STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"
MAX_LOG = 5  # Docker keeps the last five results


@dataclass(frozen=True)
class Probe:
    at: float
    exit_code: int
    output: str
    seconds: float


class HealthMonitor:
    """Probes one container on Docker's schedule until stopped; `status` is what `docker inspect` would say."""

    def __init__(self, engine: Podman, container: str, check: Healthcheck) -> None:
        self.engine, self.container, self.check = engine, container, check
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.status = STARTING
        self.failing_streak = 0
        self.log: list[Probe] = []
        self.started_at = 0.0
        self.healthy_at: float | None = None

    def start(self, started_at: float) -> None:
        """Begin monitoring a container that started at `started_at` (monotonic): state starts over."""
        self.stop()
        with self._cond:
            self.status, self.failing_streak, self.started_at, self.healthy_at = STARTING, 0, started_at, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"health-{self.container}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.check.timeout + 5)
            self._thread = None

    def wait(self, timeout: float) -> str:
        """Block until healthy, or until `timeout` seconds passed (the provider's `waitTimeout`)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.status != HEALTHY:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self.status

    def _interval(self) -> float:
        if time.monotonic() - self.started_at >= self.check.start_period:
            return self.check.interval
        return self.check.start_interval if self.status == STARTING else self.check.interval

    def _loop(self) -> None:
        stop = self._stop
        while not stop.wait(self._interval()):
            self._record(self._probe())

    def _probe(self) -> Probe:
        began = time.monotonic()
        proc = self.engine.popen("healthcheck", "run", self.container)
        try:
            out, _ = proc.communicate(timeout=self.check.timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            code, out = -1, b"Health check exceeded timeout (%gs)" % self.check.timeout
        return Probe(began, code, out.decode(errors="replace")[-400:], round(time.monotonic() - began, 3))

    def _record(self, probe: Probe) -> None:
        with self._cond:
            self.log = (self.log + [probe])[-MAX_LOG:]
            if probe.exit_code == 0:
                self.failing_streak = 0
                if self.status != HEALTHY:
                    self.healthy_at = time.monotonic()
                self.status = HEALTHY
            elif not (self.status == STARTING and probe.at - self.started_at < self.check.start_period):
                self.failing_streak += 1
                if self.failing_streak >= self.check.retries:
                    self.status = UNHEALTHY
            self._cond.notify_all()

    def summary(self) -> dict[str, object]:
        with self._cond:
            last = self.log[-1] if self.log else None
            return {
                "health": self.status,
                "failing_streak": self.failing_streak,
                "healthy_after_s": None if self.healthy_at is None else round(self.healthy_at - self.started_at, 1),
                "last_probe": None if last is None else {"exit_code": last.exit_code, "seconds": last.seconds,
                                                          "output": last.output.strip()[-200:]},
            }
