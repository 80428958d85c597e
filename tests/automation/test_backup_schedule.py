"""backup-schedule: runs now and at each interval, survives a failed run, stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from automation.errors import BackupError, UsageError
from automation.schedule import first_run, run_schedule

ROOT = Path(__file__).resolve().parents[2]


def test_runs_at_each_interval_and_goes_on_after_a_failure() -> None:
    stop = threading.Event()
    runs: list[float] = []
    logs: list[str] = []

    def job() -> None:
        runs.append(time.monotonic())
        if len(runs) == 2:
            raise BackupError("disk full")
        if len(runs) == 4:
            stop.set()

    failures = run_schedule(job, 0.2, stop=stop, log=logs.append)
    assert failures == 1 and len(runs) == 4
    gaps = [b - a for a, b in zip(runs, runs[1:])]
    assert all(0.15 < gap < 1.0 for gap in gaps)
    assert any("disk full" in line for line in logs)


def test_first_run_at_a_time_of_day() -> None:
    now = datetime(2026, 1, 31, 3, 0, tzinfo=timezone.utc)
    assert first_run(now, None) == now
    assert first_run(now, "02:30") == datetime(2026, 2, 1, 2, 30, tzinfo=timezone.utc)
    assert first_run(now, "04:15") == datetime(2026, 1, 31, 4, 15, tzinfo=timezone.utc)
    with pytest.raises(UsageError, match="'25:00'"):
        first_run(now, "25:00")


def test_once_makes_one_backup(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "data"
    source.mkdir()
    (source / "f").write_text("x")
    result = cli("backup-schedule", "--source", str(source), "--dest", str(tmp_path / "b"), "--every", "24h", "--once",
                 "--compression", "zst", "--keep-last", "7")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert Path(summary["archive"]).exists() and summary["files"] == 1


def test_container_loop_backs_up_at_start_and_exits_0_on_sigterm(tmp_path) -> None:
    source = tmp_path / "data"
    source.mkdir()
    (source / "f").write_text("x")
    process = subprocess.Popen(
        [sys.executable, "-m", "automation", "backup-schedule", "--source", str(source), "--dest", str(tmp_path / "b"),
         "--every", "24h"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the immediate first backup
        assert Path(json.loads(line)["archive"]).exists()
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert len(list((tmp_path / "b").glob("*.tar.gz"))) == 1
