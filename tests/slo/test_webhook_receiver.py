"""webhook_receiver: records and logs every POST, answers health checks, runs as a module."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from config.settings import PROJECT_DIR
from tests.slo.procs import free_port, wait_http
from webhook_receiver import WebhookReceiver


def test_receiver_records_path_headers_and_json_body() -> None:
    with WebhookReceiver(log=open("/dev/null", "w")) as rx:
        r = httpx.post(f"{rx.url}/pagerduty", json={"event_action": "trigger"}, headers={"X-Test": "1"})
        assert r.status_code == 200
        got = rx.wait_for(lambda n: n.path == "/pagerduty", timeout=2)
        assert got is not None and got.body == {"event_action": "trigger"} and got.headers["x-test"] == "1"
        assert rx.wait_for(lambda n: n.path == "/other", timeout=0.2) is None
        assert httpx.get(f"{rx.url}/healthz").status_code == 200


def test_module_logs_one_json_line_per_notification(tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "notifications.log"
    proc = subprocess.Popen([sys.executable, "-m", "webhook_receiver", "--host", "127.0.0.1", "--port", str(port),
                             "--log-file", str(log)], cwd=PROJECT_DIR, stdout=subprocess.PIPE, text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 10)
        assert httpx.post(f"http://127.0.0.1:{port}/slack-alerts", json={"text": "hi"}).status_code == 200
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (log.exists() and log.read_text()):
            time.sleep(0.05)
        line = json.loads(log.read_text().splitlines()[0])
        assert line["path"] == "/slack-alerts" and line["body"] == {"text": "hi"} and line["ts"] > 0
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert '"path": "/slack-alerts"' in out


def test_a_slack_stand_in_answers_as_an_incoming_webhook() -> None:
    """Alertmanager 0.30+ counts a JSON answer without "ok": true as a failed Slack notification."""
    with WebhookReceiver(log=open("/dev/null", "w"), answer_as="slack") as rx:
        r = httpx.post(f"{rx.url}/alerts", json={"text": "hi"})
        assert (r.status_code, r.headers["content-type"].split(";")[0], r.text) == (200, "text/plain", "ok")


def test_a_pagerduty_stand_in_answers_as_the_events_api() -> None:
    with WebhookReceiver(log=open("/dev/null", "w"), answer_as="pagerduty") as rx:
        r = httpx.post(f"{rx.url}/v2/enqueue", json={"event_action": "trigger", "dedup_key": "k1"})
        assert r.status_code == 202 and r.json() == {"status": "success", "message": "Event processed",
                                                     "dedup_key": "k1"}
