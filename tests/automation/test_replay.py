"""replay: open-loop pacing, latency from the intended start, thresholds, log formats, against real servers."""

from __future__ import annotations

import base64
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.automation.conftest import reply
from tests.automation.test_backup_during_uploads import _start_mime_server

ROOT = Path(__file__).resolve().parents[2]


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "not json: ignored\n")
    return path


def test_replays_request_jsonl_against_mime_server(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    storage = tmp_path / "storage"
    process, base = _start_mime_server(storage)
    try:
        records = []
        for i in range(100):  # 50 req/s for 2 s: uploads with recorded bodies, generated bodies, reads
            kind = i % 3
            if kind == 0:
                records.append({"offset_s": i / 50, "method": "POST", "path": "/v1/files",
                                "body_b64": base64.b64encode(f"file {i}\n".encode()).decode()})
            elif kind == 1:
                records.append({"offset_s": i / 50, "method": "POST", "path": "/v1/files", "body_size": 2048})
            else:
                records.append({"offset_s": i / 50, "method": "GET", "path": "/healthz"})
        log = _jsonl(tmp_path / "requests.jsonl", records)
        result = cli("replay", "--log", str(log), "--target", base, "--threshold", "error_rate<0.01",
                     "--threshold", "p99<5s")
    finally:
        process.terminate()
        process.wait(10)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["requests"] == 100 and report["skipped_lines"] == 1
    assert report["statuses"] == {"200": 33, "201": 67}
    assert report["target_rate"] == pytest.approx(50, rel=0.01)
    assert report["achieved_rate"] == pytest.approx(50, rel=0.10)
    assert report["send_lag_ms"]["p99"] < 200  # generous: the sender kept its schedule
    objects = {p.name for p in (storage / "objects").iterdir()}
    assert len(objects) == 67  # each generated body differs, so every upload is a distinct object
    assert report["passed"] is True


def test_open_loop_keeps_sending_while_responses_are_slow(cli, http_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    base, recorder = http_server({"*": lambda h: (time.sleep(0.5), reply(h, 200, {}))})
    log = _jsonl(tmp_path / "r.jsonl", [{"offset_s": i / 20, "method": "GET", "path": f"/slow?i={i}"} for i in range(20)])
    result = cli("replay", "--log", str(log), "--target", base)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    # A closed-loop client on one connection would manage 2 req/s; open loop holds the recorded 20/s.
    assert report["achieved_rate"] == pytest.approx(20, rel=0.10)
    assert report["latency_ms"]["p50"] >= 500  # measured from the intended send time, server delay included
    arrivals = sorted(t for _, _, _, t in recorder.requests)
    assert arrivals[-1] - arrivals[0] < 1.5  # all 20 arrived within ~0.95 s of scheduled spread


def test_gateway_access_log_timing_is_scaled_by_speed(cli, http_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    base, recorder = http_server({"*": lambda h: reply(h, 200, {})})
    lines = [
        {"ts": f"2026-01-31T12:00:{i // 10:02d}.{i % 10}00000+00:00", "method": "GET", "path": f"/v1/files/x?i={i}",
         "bytes_in": 300, "service": "mockup-gateway"}
        for i in range(40)  # 10 req/s for 4 s of log time
    ] + [{"ts": "2026-01-31T12:00:00Z", "method": "GET", "path": "/other", "service": "mime-server"}]
    log = _jsonl(tmp_path / "gateway.log", lines)
    result = cli("replay", "--log", str(log), "--target", base, "--speed", "4", "--service", "mockup-gateway",
                 "--api-key", "k-123")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["requests"] == 40 and report["skipped_lines"] == 2
    assert report["target_rate"] == pytest.approx(40, rel=0.01)
    arrivals = sorted(t for _, _, _, t in recorder.requests)
    intended = [i / 40 for i in range(40)]
    deviations = [abs((a - arrivals[0]) - o) for a, o in zip(arrivals, intended)]
    assert statistics.median(deviations) < 0.05
    assert all(path.startswith("/v1/files/x?i=") and method == "GET" and size == 0
               for path, method, size, _ in recorder.requests)


def test_api_key_is_sent(http_server, tmp_path, cli) -> None:  # type: ignore[no-untyped-def]
    seen: list[str | None] = []
    base, _ = http_server({"*": lambda h: (seen.append(h.headers.get("X-API-Key")), reply(h, 200, {}))})
    key_file = tmp_path / "key"
    key_file.write_text("secret-key\n")
    log = _jsonl(tmp_path / "r.jsonl", [{"offset_s": 0, "method": "GET", "path": "/"}])
    assert cli("replay", "--log", str(log), "--target", base, "--api-key-file", str(key_file)).exit_code == 0
    assert seen == ["secret-key"]


def test_failed_threshold_exits_99_and_errors_count(cli, http_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    base, _ = http_server({"*": lambda h: reply(h, 500, {})})
    log = _jsonl(tmp_path / "r.jsonl", [{"offset_s": i / 100, "method": "GET", "path": "/"} for i in range(10)])
    result = cli("replay", "--log", str(log), "--target", base, "--threshold", "error_rate<0.01",
                 "--threshold", "p99<10s")
    assert result.exit_code == 99
    report = json.loads(result.stdout)
    assert report["errors"] == 10 and report["statuses"] == {"500": 10}
    assert [t["ok"] for t in report["thresholds"]] == [False, True]


def test_invalid_threshold_is_a_usage_error(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = _jsonl(tmp_path / "r.jsonl", [{"offset_s": 0, "method": "GET", "path": "/"}])
    result = cli("replay", "--log", str(log), "--target", "http://127.0.0.1:9", "--threshold", "p97<fast")
    assert result.exit_code == 2 and "'p97<fast'" in result.stderr


def test_connection_refused_counts_as_errors(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.automation.conftest import free_port

    log = _jsonl(tmp_path / "r.jsonl", [{"offset_s": i / 100, "method": "GET", "path": "/"} for i in range(5)])
    result = cli("replay", "--log", str(log), "--target", f"http://127.0.0.1:{free_port()}")
    report = json.loads(result.stdout)
    assert report["errors"] == 5 and report["error_rate"] == 1.0


def test_script_path_wrapper_runs_from_any_directory(http_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    base, recorder = http_server({"*": lambda h: reply(h, 200, {})})
    done = subprocess.run(
        [sys.executable, str(ROOT / "automation" / "replay-traffic.py"), "--target", base, "--rate", "20",
         "--duration", "0.5s"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["requests"] == 10 == len(recorder.requests)
