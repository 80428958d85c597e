"""export-metrics against a real Prometheus holding backfilled data: chunk edges, defaults, CSV layout."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.automation.local_prometheus import backfill, running_prometheus, write_openmetrics

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_760_000_000 - 1_760_000_000 % 3600  # a fixed hour in the past (within retention: we set 10 years)
SPAN = 2 * 3600


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory) -> str:  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("prom")
    counters = []
    for service, code, per_second in (("mime-server", "200", 2.0), ("mime-server", "500", 0.1),
                                      ("mockup-gateway", "200", 3.0)):
        samples = [(T0 + i * 15, per_second * i * 15) for i in range(SPAN // 15 + 1)]
        counters.append(({"service": service, "code": code, "route": "/v1/files"}, samples))
    slo = [({"sli": "availability"}, [(T0 + i * 60, 0.001 * (i % 7)) for i in range(SPAN // 60 + 1)])]
    up = [({"job": "mime-server", "instance": "a:8080"}, [(T0 + i * 15, 1.0) for i in range(SPAN // 15 + 1)])]
    families = {"http_requests_total": counters, "slo:sli_error:ratio_rate5m": slo, "up": up}
    write_openmetrics(base / "data.om", families)
    backfill(base / "data.om", base / "data")
    with running_prometheus(base / "data") as url:
        yield url


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _api_samples(url: str, expr: str, start: int, end: int, step: int) -> set[tuple[str, int, str]]:
    response = httpx.post(f"{url}/api/v1/query_range", data={"query": expr, "start": start, "end": end, "step": step},
                          trust_env=False)
    result = response.json()["data"]["result"]
    from automation.promexport import format_labels

    return {(format_labels(s["metric"]), round(float(t) * 1000), v) for s in result for t, v in s["values"]}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_chunked_csv_equals_one_api_query_across_chunk_edges(cli, prometheus, workers) -> None:  # type: ignore[no-untyped-def]
    start, end, step = T0 + 600, T0 + 600 + 1800, 30  # 61 points; 7 per request -> 9 chunks, 8 edges
    expr = "sum by (service, code) (rate(http_requests_total[5m]))"
    result = cli("export-metrics", "--prometheus", prometheus, "--query", f"rps={expr}", "--start", str(start),
                 "--end", str(end), "--step", f"{step}s", "--max-points", "7", "--workers", workers)
    assert result.exit_code == 0, result.stderr
    rows = _rows(result.stdout)
    assert list(rows[0]) == ["timestamp", "unix", "query", "metric", "labels", "value"]
    exported = [(r["labels"], int(float(r["unix"]) * 1000), r["value"]) for r in rows]
    assert len(exported) == len(set(exported))  # no duplicate at chunk edges
    assert set(exported) == _api_samples(prometheus, expr, start, end, step)
    per_series: dict[str, list[int]] = {}
    for labels, ms, _ in exported:
        per_series.setdefault(labels, []).append(ms)
    assert len(per_series) == 3
    for stamps in per_series.values():
        assert sorted(stamps) == list(range(start * 1000, end * 1000 + 1, step * 1000))  # none missing
    first = rows[0]
    assert first["query"] == "rps" and first["metric"] == ""
    assert first["timestamp"].endswith("Z") and first["labels"].startswith("{code=")


def test_defaults_export_red_and_slo_series(cli, prometheus) -> None:  # type: ignore[no-untyped-def]
    result = cli("export-metrics", "--prometheus", prometheus, "--start", str(T0 + 900), "--end", str(T0 + 1800),
                 "--step", "1m")
    assert result.exit_code == 0, result.stderr
    rows = _rows(result.stdout)
    queries = {r["query"] for r in rows}
    assert {"request_rate", "error_ratio", "up", "slo:sli_error:ratio_rate5m"} <= queries
    error_ratio = {r["labels"]: float(r["value"]) for r in rows if r["query"] == "error_ratio"}
    assert error_ratio['{service="mime-server"}'] == pytest.approx(0.1 / 2.1, rel=1e-6)
    slo = [r for r in rows if r["query"] == "slo:sli_error:ratio_rate5m"]
    assert slo and slo[0]["metric"] == "slo:sli_error:ratio_rate5m" and slo[0]["labels"] == '{sli="availability"}'


def test_bad_query_fails_naming_it(cli, prometheus) -> None:  # type: ignore[no-untyped-def]
    result = cli("export-metrics", "--prometheus", prometheus, "--query", "sum(", "--start", str(T0),
                 "--end", str(T0 + 60))
    assert result.exit_code == 1
    assert "'sum('" in result.stderr


def test_too_many_points_per_request_is_refused(cli, prometheus) -> None:  # type: ignore[no-untyped-def]
    result = cli("export-metrics", "--prometheus", prometheus, "--max-points", "20000")
    assert result.exit_code == 2 and "11000" in result.stderr


def test_runbook_wrapper_writes_only_csv_to_stdout(prometheus, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = os.environ | {"PROMETHEUS_URL": prometheus, "EXPORT_START": str(T0), "EXPORT_END": str(T0 + 3600),
                        "PYTHON": sys.executable}
    target = tmp_path / "metrics.csv"
    with open(target, "w") as out:
        done = subprocess.run(["bash", str(ROOT / "automation/export-metrics.sh")], env=env, stdout=out,
                              stderr=subprocess.PIPE, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = _rows(target.read_text())
    assert len(rows) > 240 and all(r["timestamp"] and r["value"] for r in rows)
    assert "exported" in done.stderr
