"""Benchmark of the Pulumi program under mocks: run time per stack (Docker and cluster), resources, critical path (JSON)."""

from __future__ import annotations

import json
import statistics
import time

from config.settings import ALL_STACKS
from tests.program.harness import WORKLOADS, critical_path, run_stack

RUNS = 5


def measure(stack: str) -> dict:
    timings = []
    run = None
    for _ in range(RUNS):
        start = time.perf_counter()
        run = run_stack(stack)
        timings.append(time.perf_counter() - start)
    assert run is not None
    path = critical_path(run)
    return {
        "stack": stack,
        "runs": RUNS,
        "run_seconds_median": round(statistics.median(timings), 3),
        "run_seconds_min": round(min(timings), 3),
        "resources": len(run.resources),
        "containers": len(run.containers),
        "kubernetes_workloads": len([r for r in run.resources if r.type in WORKLOADS]),
        "kubernetes_objects": len([r for r in run.resources if r.type.startswith("kubernetes:")]),
        "critical_path_length": len(path),
        "critical_path": path,
    }


def main() -> None:
    print(json.dumps({"benchmark": "program", "stacks": [measure(s) for s in ALL_STACKS]}, indent=2))


if __name__ == "__main__":
    main()
