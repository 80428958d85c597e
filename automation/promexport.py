"""Prometheus range queries exported as CSV, in chunks under the server's 11,000-points-per-series limit.

CSV layout (header row first), one row per sample:

    timestamp,unix,query,metric,labels,value
    2026-01-31T12:00:00Z,1769860800,request_rate,,"{code=""200"",service=""mime-server""}",1.25

- ``timestamp``: RFC 3339 UTC (milliseconds only when non-zero); ``unix``: the same instant in seconds;
- ``query``: the query's name (defaults: see DEFAULT_QUERIES; ``--query NAME=EXPR``; else the expression);
- ``metric``: the series' ``__name__`` when the result keeps it (plain selectors), else empty;
- ``labels``: the other labels, sorted, in PromQL selector syntax; ``value``: exactly as Prometheus returned it.

Rows come per query, then per time chunk, then per series (sorted by labels), then by time. Chunk i
covers evaluation steps [i*P, (i+1)*P) of the whole range, computed in integer milliseconds, so
chunk edges neither repeat nor skip a timestamp.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Any

import httpx

from automation.errors import AutomationError, ConfigError

MAX_POINTS = 11_000  # Prometheus refuses a range query with more points per series
HEADER = "timestamp,unix,query,metric,labels,value\n"

DEFAULT_QUERIES: tuple[tuple[str, str], ...] = (
    ("request_rate", "sum by (service, code) (rate(http_requests_total[5m]))"),
    (
        "error_ratio",
        'sum by (service) (rate(http_requests_total{code=~"5.."}[5m]))'
        " / sum by (service) (rate(http_requests_total[5m]))",
    ),
    (
        "latency_p95_seconds",
        "histogram_quantile(0.95, sum by (service, le) (rate(http_request_duration_seconds_bucket[5m])))",
    ),
    ("up", "up"),
)


class ExportError(AutomationError):
    """Prometheus refused or failed a query after the retries."""


@dataclass(frozen=True)
class Query:
    """A named PromQL expression."""

    name: str
    expr: str

    @classmethod
    def parse(cls, text: str) -> "Query":
        """``NAME=EXPR`` when NAME is a plain identifier, else the expression names itself."""
        name, sep, expr = text.partition("=")
        if sep and name.strip().replace("_", "").replace(":", "").isalnum() and not expr.startswith("="):
            return cls(name.strip(), expr.strip())
        return cls(text.strip(), text.strip())


@dataclass(frozen=True)
class Chunk:
    """Inclusive range of evaluation timestamps, in milliseconds."""

    start_ms: int
    end_ms: int


def chunks(start_ms: int, end_ms: int, step_ms: int, max_points: int = MAX_POINTS) -> list[Chunk]:
    """Split [start, end] at ``step`` into ranges of at most ``max_points`` evaluation steps each."""
    if step_ms <= 0:
        raise ConfigError(f"step {step_ms} ms: expected more than 0")
    if end_ms < start_ms:
        raise ConfigError("end is before start: expected --start earlier than --end")
    if max_points < 1:
        raise ConfigError(f"max points {max_points}: expected at least 1")
    total = (end_ms - start_ms) // step_ms + 1
    return [
        Chunk(start_ms + first * step_ms, start_ms + (min(first + max_points, total) - 1) * step_ms)
        for first in range(0, total, max_points)
    ]


def _seconds(ms: int) -> str:
    return str(ms // 1000) if ms % 1000 == 0 else f"{ms // 1000}.{ms % 1000:03d}".rstrip("0")


def _csv(field: str) -> str:
    if any(c in field for c in ',"\n\r'):
        return '"' + field.replace('"', '""') + '"'
    return field


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_labels(labels: dict[str, str]) -> str:
    """``{a="1",b="2"}`` with names sorted and values escaped as in PromQL; ``__name__`` left out."""
    return "{" + ",".join(f'{k}="{_label_value(v)}"' for k, v in sorted(labels.items()) if k != "__name__") + "}"


Series = tuple[dict[str, str], list[tuple[str, str]]]  # (labels, [(unix seconds, value), ...])
_SAMPLE = re.compile(r'\[([^,\[\]"]+),"([^"]*)"\]')
_DECODER = json.JSONDecoder()


def parse_matrix(text: str) -> list[Series]:
    """Parse a query_range response body into series, fast when the layout is Prometheus' own.

    ``json.loads`` builds a list, a float and a string per sample and dominates an export's
    time; Prometheus writes each series as ``{"metric":{...},"values":[[t,"v"],...]}``, and
    ``{"metric":`` cannot occur inside a JSON string (quotes are escaped there), so the labels
    are decoded with the real JSON decoder and only the sample pairs are matched directly.
    Anything unexpected falls back to the full JSON parse.
    """
    head = text[:200]
    if '"status":"success"' not in head or '"resultType":"matrix"' not in head:
        return _parse_matrix_slow(text)
    series: list[Series] = []
    position = 0
    while (start := text.find('{"metric":', position)) >= 0:
        try:
            labels, end = _DECODER.raw_decode(text, start + len('{"metric":'))
        except json.JSONDecodeError:
            return _parse_matrix_slow(text)
        if not text.startswith(',"values":[', end):
            return _parse_matrix_slow(text)
        values_start = end + len(',"values":[')
        if text.startswith("]", values_start):
            series.append((labels, []))
            position = values_start
            continue
        values_end = text.find("]]", values_start) + 1
        if values_end <= 0:
            return _parse_matrix_slow(text)
        samples = _SAMPLE.findall(text, values_start, values_end + 1)
        if len(samples) != text.count("],[", values_start, values_end) + 1:
            return _parse_matrix_slow(text)
        series.append((labels, samples))
        position = values_end
    if not series and '"result":[]' not in text:
        return _parse_matrix_slow(text)
    return series


def _parse_matrix_slow(text: str) -> list[Series]:
    try:
        document = json.loads(text)
        result = document["data"]["result"]
        return [(item["metric"], [(repr(t), v) for t, v in item.get("values", [])]) for item in result]
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"Prometheus answered a range query with an unexpected body: {exc}") from None


class PrometheusClient:
    """query_range and metadata calls with retries of transient failures (transport errors, 429, 5xx)."""

    def __init__(self, base_url: str, timeout_s: float = 60.0, retries: int = 3, backoff_s: float = 0.5) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"invalid Prometheus URL {base_url!r}: expected http(s)://HOST:PORT")
        self.base_url = base_url.rstrip("/")
        self.retries, self.backoff_s = retries, backoff_s
        self._http = httpx.Client(timeout=timeout_s, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, what: str, raw: bool = False, **kwargs: Any) -> Any:
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(method, self.base_url + path, **kwargs)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return response.text if raw else response.json()["data"]
                try:
                    problem = f"HTTP {response.status_code}: {response.json().get('error', response.text[:200])}"
                except ValueError:
                    problem = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code not in (429, 502, 503, 504) and response.status_code < 500:
                    raise ExportError(f"Prometheus refused {what}: {problem}")
            if attempt < self.retries:
                time.sleep(delay)
                delay *= 2
        raise ExportError(f"{what} failed after {self.retries + 1} attempts against {self.base_url}: {problem}")

    def query_range(self, expr: str, chunk: Chunk, step_ms: int) -> list[Series]:
        form = {"query": expr, "start": _seconds(chunk.start_ms), "end": _seconds(chunk.end_ms), "step": _seconds(step_ms)}
        return parse_matrix(self._call("POST", "/api/v1/query_range", f"query {expr!r}", raw=True, data=form))

    def recording_rule_names(self, start_ms: int, end_ms: int) -> list[str]:
        """Recording rules loaded now, plus any ``a:b`` series name stored in the range (recording-rule convention)."""
        names: set[str] = set()
        groups = self._call("GET", "/api/v1/rules", "list rules", params={"type": "record"})
        for group in groups.get("groups", []):
            names.update(rule["name"] for rule in group.get("rules", []) if rule.get("type") == "recording")
        values = self._call(
            "GET", "/api/v1/label/__name__/values", "list metric names",
            params={"start": _seconds(start_ms), "end": _seconds(end_ms)},
        )
        names.update(name for name in values if ":" in name)
        return sorted(names)


def _rows(query: Query, series_list: list[Series], chunk: Chunk, stamp_cache: dict[str, str]) -> str:
    parts: list[str] = []
    for labels, samples in sorted(series_list, key=lambda s: format_labels(s[0])):
        middle = f",{_csv(query.name)},{_csv(labels.get('__name__', ''))},{_csv(format_labels(labels))},"
        for stamp, value in samples:
            prefix = stamp_cache.get(stamp)
            if prefix is None:
                ms = round(float(stamp) * 1000)
                if not chunk.start_ms <= ms <= chunk.end_ms:
                    continue  # defensive: never emit a timestamp owned by a neighbouring chunk
                moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
                iso = moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{ms % 1000:03d}Z" if ms % 1000 else "Z")
                prefix = stamp_cache[stamp] = f"{iso},{_seconds(ms)}"
            parts.append(prefix + middle + value + "\n")
    return "".join(parts)


_WORKER_CLIENT: PrometheusClient | None = None


def _fetch_rows(base_url: str, retries: int, query: Query, chunk: Chunk, step_ms: int) -> tuple[str, int, int]:
    """Worker job: one chunk of one query as CSV text, with its row and series counts."""
    global _WORKER_CLIENT
    if _WORKER_CLIENT is None or _WORKER_CLIENT.base_url != base_url.rstrip("/"):
        _WORKER_CLIENT = PrometheusClient(base_url, retries=retries)
    result = _WORKER_CLIENT.query_range(query.expr, chunk, step_ms)
    text = _rows(query, result, chunk, {})
    return text, text.count("\n"), len(result)


def export_csv(
    client: PrometheusClient,
    queries: list[Query],
    start_ms: int,
    end_ms: int,
    step_ms: int,
    out: IO[str],
    max_points: int = MAX_POINTS,
    parallel: int | None = None,
) -> dict[str, int]:
    """Write the CSV of every query over the range; returns counts of queries, chunks, series and rows.

    Parsing a chunk's JSON and formatting its rows is CPU-bound Python, so with more than one
    request to make, chunks are fetched and formatted in worker processes (``parallel``, default
    one per core), at most ``parallel`` ahead of the writer, and written strictly in order.
    """
    plan = chunks(start_ms, end_ms, step_ms, max_points)
    out.write(HEADER)
    jobs = [(q, c) for q in queries for c in plan]
    workers = min(parallel or os.cpu_count() or 1, len(jobs))
    rows = series_seen = 0
    if workers <= 1:
        for query, chunk in jobs:
            result = client.query_range(query.expr, chunk, step_ms)
            text = _rows(query, result, chunk, {})
            rows, series_seen = rows + text.count("\n"), series_seen + len(result)
            out.write(text)
    else:
        pending = iter(jobs)
        window: deque[Future[tuple[str, int, int]]] = deque()
        context = multiprocessing.get_context("spawn")  # fork is unsafe in a threaded parent
        with ProcessPoolExecutor(workers, mp_context=context) as pool:

            def refill() -> None:
                while len(window) < workers + 1:
                    job = next(pending, None)
                    if job is None:
                        return
                    window.append(pool.submit(_fetch_rows, client.base_url, client.retries, job[0], job[1], step_ms))

            refill()
            while window:
                text, count, series = window.popleft().result()
                refill()
                rows, series_seen = rows + count, series_seen + series
                out.write(text)
    return {"queries": len(queries), "chunks": len(jobs), "series_chunks": series_seen, "rows": rows}
