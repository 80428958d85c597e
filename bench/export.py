"""Benchmark of `automation export-metrics`: 30 days at a 15 s step for 100 series from a real Prometheus.

Prints one JSON object. Data: 100 gauge series backfilled with promtool at one sample per 2 h
across the 30 days, served with ``--query.lookback-delta=2h`` so every 15 s step has a value:
172,801 points per series, the same result size as 15 s scrapes, with little data to backfill.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.automation.local_prometheus import backfill, running_prometheus, write_openmetrics

ROOT = Path(__file__).resolve().parent.parent
SERIES = 100
DAYS = 30
STEP_S = 15
SAMPLE_INTERVAL_S = 7200
T0 = 1_760_000_000 - 1_760_000_000 % 86400


def main() -> None:
    end = T0 + DAYS * 86400
    with tempfile.TemporaryDirectory(prefix="bench-export-") as work:
        base = Path(work)
        families = {
            "bench_requests": [
                ({"series": f"{i:03d}", "service": "mime-server"},
                 ((t, float(i + (t // SAMPLE_INTERVAL_S) % 97) + 0.25) for t in range(T0, end + 1, SAMPLE_INTERVAL_S)))
                for i in range(SERIES)
            ]
        }
        started = time.perf_counter()
        write_openmetrics(base / "data.om", families)
        backfill(base / "data.om", base / "prometheus" / "data")
        prepare = time.perf_counter() - started
        with running_prometheus(base / "prometheus" / "data", extra_flags=("--query.lookback-delta=2h",)) as url:
            timings = {}
            for workers in (2, 1) if os.environ.get("BENCH_EXPORT_COMPARE") else (2,):
                command = [sys.executable, "-m", "automation", "export-metrics", "--prometheus", url,
                           "--query", "bench_requests", "--start", str(T0), "--end", str(end), "--step", f"{STEP_S}s",
                           "--workers", str(workers)]
                started = time.perf_counter()
                done = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                      timeout=600)
                timings[workers] = time.perf_counter() - started
                if done.returncode != 0:
                    raise SystemExit(f"export failed: {done.stderr}")
    elapsed = timings[2]
    match = re.search(r"exported (\d+) rows \(\d+ queries, (\d+) requests\)", done.stderr)
    rows, requests = (int(match.group(1)), int(match.group(2))) if match else (None, None)
    print(json.dumps({
        "bench": "export",
        "series": SERIES,
        "days": DAYS,
        "step_s": STEP_S,
        "rows": rows,
        "expected_rows": SERIES * (DAYS * 86400 // STEP_S + 1),
        "requests": requests,
        "seconds": round(elapsed, 2),
        "seconds_one_process": round(timings[1], 2) if 1 in timings else None,
        "rows_per_s": round(rows / elapsed) if rows else None,
        "backfill_seconds": round(prepare, 1),
        "stored_sample_interval_s": SAMPLE_INTERVAL_S,
    }))


if __name__ == "__main__":
    main()
