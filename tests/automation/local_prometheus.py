"""A real Prometheus on 127.0.0.1 holding known data, backfilled with promtool (used by tests and bench.export)."""

from __future__ import annotations

import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

import httpx

from tests.automation.conftest import free_port
from tests.tools import pinned

Sample = tuple[int, float]  # (unix seconds, value)


def write_openmetrics(path: Path, families: dict[str, list[tuple[dict[str, str], Iterable[Sample]]]]) -> None:
    """Write gauge families (name -> [(labels, samples)]) as OpenMetrics text for promtool."""
    with open(path, "w", encoding="utf-8") as out:
        for name, series in families.items():
            out.write(f"# TYPE {name} gauge\n")
            for labels, samples in series:
                selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
                prefix = f"{name}{{{selector}}} "
                out.writelines(f"{prefix}{value!r} {stamp}\n" for stamp, value in samples)
        out.write("# EOF\n")


def backfill(openmetrics: Path, data_dir: Path) -> None:
    """Turn the OpenMetrics file into TSDB blocks inside ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [pinned("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(data_dir)],
        check=True, capture_output=True, timeout=600,
    )


@contextmanager
def running_prometheus(
    data_dir: Path, config_text: str = "global:\n  scrape_interval: 1h\n", extra_flags: tuple[str, ...] = ()
) -> Iterator[str]:
    """Start Prometheus on a free loopback port over ``data_dir``; yields its base URL once ready."""
    config = data_dir.parent / "prometheus.yml"
    config.write_text(config_text)
    port = free_port()
    log = open(data_dir.parent / "prometheus.log", "wb")
    process = subprocess.Popen(
        [pinned("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={data_dir}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=3650d", *extra_flags],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: httpx.get(f"{base}/-/ready", timeout=1, trust_env=False).status_code == 200, process, 60)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _wait(ready: Callable[[], bool], process: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited with {process.returncode} before it was ready")
        try:
            if ready():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"prometheus not ready within {seconds} s")
