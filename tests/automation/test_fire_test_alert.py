"""fire-test-alert against a real Alertmanager on 127.0.0.1: the alert shows up, and resolves."""

from __future__ import annotations

import subprocess
import time
from typing import Iterator

import httpx
import pytest

from tests.automation.conftest import free_port
from tests.tools import pinned

CONFIG = """\
route:
  receiver: blackhole
  group_wait: 1h
receivers:
  - name: blackhole
"""


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("am")
    (base / "alertmanager.yml").write_text(CONFIG)
    port = free_port()
    log = open(base / "alertmanager.log", "wb")
    process = subprocess.Popen(
        [pinned("alertmanager"), f"--config.file={base / 'alertmanager.yml'}", f"--storage.path={base / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/-/ready", timeout=1, trust_env=False).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError((base / "alertmanager.log").read_text())
        time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(10)
    log.close()


def _alerts(url: str, **params: str) -> list[dict]:
    return httpx.get(f"{url}/api/v2/alerts", params=params, trust_env=False).json()


def test_fired_alert_is_listed_with_its_labels(cli, alertmanager) -> None:  # type: ignore[no-untyped-def]
    result = cli("fire-test-alert", "--url", alertmanager, "--severity", "warning", "--alertname", "RoutingCheck",
                 "--label", "team=ops")
    assert result.exit_code == 0, result.stderr
    listed = [a for a in _alerts(alertmanager) if a["labels"]["alertname"] == "RoutingCheck"]
    assert len(listed) == 1
    labels = listed[0]["labels"]
    assert labels == {"alertname": "RoutingCheck", "severity": "warning", "service": "mime-server", "test": "true",
                      "team": "ops"}
    assert listed[0]["status"]["state"] == "active"
    assert listed[0]["annotations"]["summary"].startswith("Test alert RoutingCheck")


def test_resolve_removes_the_alert_from_active_ones(cli, alertmanager) -> None:  # type: ignore[no-untyped-def]
    assert cli("fire-test-alert", "--url", alertmanager, "--alertname", "ResolveCheck").exit_code == 0
    assert any(a["labels"]["alertname"] == "ResolveCheck" for a in _alerts(alertmanager))
    assert cli("fire-test-alert", "--url", alertmanager, "--alertname", "ResolveCheck", "--resolve").exit_code == 0
    deadline = time.monotonic() + 10
    while any(a["labels"]["alertname"] == "ResolveCheck" for a in _alerts(alertmanager, active="true")):
        assert time.monotonic() < deadline, "resolved alert still active"
        time.sleep(0.1)


def test_invalid_severity_and_unreachable_alertmanager_exit_3(cli) -> None:  # type: ignore[no-untyped-def]
    bad = cli("fire-test-alert", "--severity", "info")
    assert bad.exit_code == 3 and "'info'" in bad.stderr
    down = cli("fire-test-alert", "--url", f"http://127.0.0.1:{free_port()}")
    assert down.exit_code == 3 and "cannot reach Alertmanager" in down.stderr
