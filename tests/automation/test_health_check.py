"""health-check against real local HTTP servers: statuses, retries, JSON and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.automation.conftest import free_port, reply

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def services(http_server, tmp_path):  # type: ignore[no-untyped-def]
    flaky_calls = {"n": 0}

    def flaky(h):  # type: ignore[no-untyped-def]
        flaky_calls["n"] += 1
        reply(h, 200 if flaky_calls["n"] >= 2 else 503, {})

    base, _ = http_server(
        {
            "/healthz": lambda h: reply(h, 200, {"status": "ok"}),
            "/failing": lambda h: reply(h, 503, {"status": "down"}),
            "/slow": lambda h: (time.sleep(3), reply(h, 200, {})),
            "/flaky": flaky,
        }
    )
    endpoints = {
        "healthy": f"{base}/healthz",
        "failing": f"{base}/failing",
        "slow": f"{base}/slow",
        "closed": f"http://127.0.0.1:{free_port()}/healthz",
        "flaky": f"{base}/flaky",
    }
    path = tmp_path / "targets.json"
    path.write_text(json.dumps({"health_endpoints": endpoints, "other_output": 1}))
    return path


def _results(result) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    return {r["service"]: r for r in json.loads(result.stdout)["results"]}


def test_each_status_is_classified_and_any_unhealthy_exits_1(cli, services) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    result = cli("health-check", "--targets", str(services), "--timeout", "1s", "--json")
    elapsed = time.monotonic() - started
    assert result.exit_code == 1
    by_name = _results(result)
    assert by_name["healthy"]["status"] == "healthy" and by_name["healthy"]["http_status"] == 200
    assert by_name["failing"]["status"] == "unhealthy" and by_name["failing"]["http_status"] == 503
    assert by_name["failing"]["attempts"] >= 2  # a fast failure is retried
    assert by_name["slow"]["status"] == "timeout"
    assert by_name["closed"]["status"] == "unreachable"
    assert by_name["flaky"]["status"] == "healthy" and by_name["flaky"]["attempts"] == 2
    assert elapsed < 2.9  # checks run concurrently: one slow target bounds the run, not the sum


def test_all_healthy_exits_0_with_a_table(cli, services) -> None:  # type: ignore[no-untyped-def]
    result = cli("health-check", "--targets", str(services), "--service", "healthy")
    assert result.exit_code == 0
    assert "healthy" in result.stdout and "200" in result.stdout


def test_unknown_service_exits_3_naming_it(cli, services) -> None:  # type: ignore[no-untyped-def]
    result = cli("health-check", "--targets", str(services), "--service", "nope")
    assert result.exit_code == 3
    assert "'nope'" in result.stderr and "healthy" in result.stderr


def test_invalid_url_exits_3_even_when_others_are_healthy(cli, tmp_path, services) -> None:  # type: ignore[no-untyped-def]
    healthy = json.loads(services.read_text())["health_endpoints"]["healthy"]
    targets = tmp_path / "targets.yaml"
    targets.write_text(f"good: {healthy}\nbad: 'ftp://example/x'\n")
    result = cli("health-check", "--targets", str(targets), "--json")
    assert result.exit_code == 3
    by_name = _results(result)
    assert by_name["good"]["status"] == "healthy"
    assert by_name["bad"]["status"] == "invalid" and "ftp://example/x" in by_name["bad"]["detail"]


def test_no_targets_exits_3(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    targets = tmp_path / "empty.json"
    targets.write_text("{}")
    assert cli("health-check", "--targets", str(targets)).exit_code == 3


def test_runbook_wrapper_without_pulumi_exits_3_and_suggests_targets(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HEALTH_TARGETS"} | {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", "automation/health-check-all.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3
    assert "--targets" in done.stderr


def test_runbook_wrapper_reads_targets_from_env(services) -> None:  # type: ignore[no-untyped-def]
    env = os.environ | {"HEALTH_TARGETS": str(services), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(ROOT / "automation/health-check-all.sh"), "--service", "healthy", "--json"],
        cwd="/", env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["healthy"] is True


def test_targets_come_from_pulumi_stack_output(services, tmp_path) -> None:  # type: ignore[no-untyped-def]
    stack_output = json.loads(services.read_text())
    stack_output["health_endpoints"] = {"healthy": stack_output["health_endpoints"]["healthy"]}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pulumi"  # stands in for the CLI: records its arguments, prints a stack output
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'args'}\ncat <<'JSON'\n{json.dumps(stack_output)}\nJSON\n")
    fake.chmod(0o755)
    env = os.environ | {"PATH": f"{bin_dir}:{os.environ['PATH']}", "PULUMI_STACK": "staging", "PYTHON": sys.executable}
    env.pop("HEALTH_TARGETS", None)
    done = subprocess.run(["bash", str(ROOT / "automation/health-check-all.sh"), "--json"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "args").read_text().split() == ["stack", "output", "--json", "--stack", "staging"]
    assert [r["service"] for r in json.loads(done.stdout)["results"]] == ["healthy"]
