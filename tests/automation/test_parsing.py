"""Parsing of command-line values: durations, times, thresholds, query names, chunk plans."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from automation.errors import ConfigError, UsageError
from automation.promexport import Query, chunks
from automation.thresholds import parse_threshold
from automation.units import parse_duration, parse_time, rfc3339

NOW = datetime(2026, 1, 31, 12, 0, tzinfo=timezone.utc)


def test_durations() -> None:
    assert parse_duration("500ms") == 0.5
    assert parse_duration("15") == 15
    assert parse_duration("24h") == 86400
    assert parse_duration("1.5d") == 129600
    with pytest.raises(UsageError, match="'soon'"):
        parse_duration("soon")


def test_times() -> None:
    assert parse_time("now", NOW) == NOW
    assert parse_time("-1h", NOW) == datetime(2026, 1, 31, 11, 0, tzinfo=timezone.utc)
    assert parse_time("now-30m", NOW) == datetime(2026, 1, 31, 11, 30, tzinfo=timezone.utc)
    assert parse_time("1769860800", NOW) == datetime(2026, 1, 31, 12, 0, tzinfo=timezone.utc)
    assert parse_time("2026-01-31T13:00:00+01:00", NOW) == NOW
    assert rfc3339(NOW) == "2026-01-31T12:00:00Z"
    with pytest.raises(UsageError, match="time zone"):
        parse_time("2026-01-31T12:00:00", NOW)


def test_thresholds_convert_units_to_ms() -> None:
    assert parse_threshold("p95<500ms").value == 500
    assert parse_threshold("p(99) <= 1.5s").metric == "p99"
    assert parse_threshold("p99<=1.5s").value == 1500
    assert parse_threshold("max<2s").value == 2000
    assert parse_threshold("error_rate<0.01").value == 0.01
    for bad in ("p95<", "latency<1s", "error_rate<1ms", "p95~1s"):
        with pytest.raises(UsageError, match="invalid threshold"):
            parse_threshold(bad)


def test_threshold_check() -> None:
    observed, ok = parse_threshold("p95<500ms").check({"p95": 499.0})
    assert (observed, ok) == (499.0, True)
    assert parse_threshold("error_rate<0.01").check({"error_rate": 0.01}) == (0.01, False)


def test_query_names() -> None:
    assert Query.parse("rps=sum(rate(x[5m]))") == Query("rps", "sum(rate(x[5m]))")
    assert Query.parse('x{a="b"}') == Query('x{a="b"}', 'x{a="b"}')
    assert Query.parse("up == 1") == Query("up == 1", "up == 1")


def test_chunks_cover_every_step_once() -> None:
    plan = chunks(1_000, 1_000 + 100 * 15_000, 15_000, max_points=11)
    stamps = [t for c in plan for t in range(c.start_ms, c.end_ms + 1, 15_000)]
    assert stamps == list(range(1_000, 1_000 + 100 * 15_000 + 1, 15_000))
    assert all((c.end_ms - c.start_ms) // 15_000 + 1 <= 11 for c in plan)
    assert chunks(0, 0, 15_000) == [chunks(0, 0, 15_000)[0]] and len(chunks(0, 14_999, 15_000)) == 1
    with pytest.raises(ConfigError, match="end is before start"):
        chunks(10, 0, 1)


def test_matrix_parser_fast_path_matches_json_and_survives_odd_labels() -> None:
    import json

    from automation.promexport import _parse_matrix_slow, parse_matrix

    odd = {"__name__": "m", "path": '/a{b}"]],[x', "le": "+Inf"}
    body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": odd, "values": [[1700000000, "1"], [1700000015.5, "NaN"], [1700000030, "+Inf"]]},
        {"metric": {}, "values": [[1700000000, "-1.5e-05"]]},
    ]}}, separators=(",", ":"))
    fast = parse_matrix(body)
    assert fast == [(odd, [("1700000000", "1"), ("1700000015.5", "NaN"), ("1700000030", "+Inf")]),
                    ({}, [("1700000000", "-1.5e-05")])]
    assert [(labels, [(float(t), v) for t, v in samples]) for labels, samples in fast] == [
        (labels, [(float(t), v) for t, v in samples]) for labels, samples in _parse_matrix_slow(body)]
    assert parse_matrix(json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}},
                                   separators=(",", ":"))) == []
    # A layout other than Prometheus' own (spaces, other key order) takes the full JSON parse.
    spaced = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
        {"values": [[1700000000, "2"]], "metric": {"a": "b"}}]}})
    assert [(labels, [(float(t), v) for t, v in samples]) for labels, samples in parse_matrix(spaced)] == [
        ({"a": "b"}, [(1700000000.0, "2")])]
