"""The alert path on loopback: mime-server, gateway, Prometheus, Alertmanager, Slack/PagerDuty stand-ins.

Used by the e2e test and `python -m bench.alert_latency`. Every config file comes from the project's
renderers (rules, alertmanager.yml) with compressed timings; only prometheus.yml is written here, to
scrape the local processes under the stack's job names.
"""

from __future__ import annotations

import re
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from config import slo
from config.alertmanager import SECRET_FILES, render_alertmanager, secret_path
from config.rules import RuleTimings, render_rule_files
from config.settings import ALERT_SECRET_KEYS, PROJECT_DIR, StackSettings, from_values
from tests.tools import require
from tests.slo.procs import Proc, Started, free_port, wait_http
from webhook_receiver import Notification, WebhookReceiver

ADMIN_KEY = "e2e-admin-key"
API_KEY = "e2e-api-key"
ROUTING_KEY = "e2e-routing-key"
_SUBJECT = re.compile(r"^\[(FIRING|RESOLVED)(?::(\d+))?\] (\S+) (\S+)")


@dataclass(frozen=True)
class PipelineTimings:
    """Compressed timings: 1 s scrapes and evaluations, seconds-long `for`, burn windows scaled 1/60."""

    scrape_interval: str = "1s"
    evaluation_interval: str = "1s"
    rules: RuleTimings = RuleTimings(down_for="1s", page_for="2s", ticket_for="2s", stack_for="2s",
                                     window_scale=1 / 60)
    group_wait: str = "1s"
    group_interval: str = "1s"
    repeat_interval: str = "1h"

    def floor_seconds(self) -> float:
        """Least kill-to-notification time these timings allow: scrape + evaluation + for + group_wait."""
        return sum(slo.duration_seconds(d) for d in (self.scrape_interval, self.evaluation_interval,
                                                      self.rules.down_for, self.group_wait))


@dataclass(frozen=True)
class Page:
    """A Slack or PagerDuty notification, reduced to what the runbook cares about."""

    status: str  # FIRING or RESOLVED
    alertname: str
    service: str
    firing: int
    at: float  # monotonic arrival
    raw: Notification = field(repr=False)


def parse(n: Notification) -> Page | None:
    """Group status, alertname and service from a Slack (attachments title) or PagerDuty (summary) body."""
    body = n.body if isinstance(n.body, dict) else {}
    if "payload" in body:
        subject = body["payload"].get("summary", "")
    elif body.get("attachments"):
        subject = body["attachments"][0].get("title", "")
    else:
        return None
    m = _SUBJECT.match(subject)
    if not m:
        return None
    return Page(m.group(1), m.group(3), m.group(4), int(m.group(2) or 0), n.monotonic, n)


class Pipeline(Started):
    """Starts every process on free loopback ports; `with Pipeline() as p:` stops them all."""

    def __init__(self, timings: PipelineTimings | None = None, workdir: Path | None = None) -> None:
        self.timings = timings or PipelineTimings()
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="alert-pipeline-")
        self.dir = workdir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.procs: dict[str, Proc] = {}
        self.slack = WebhookReceiver(log=open(self.dir / "slack.jsonl", "a"), answer_as="slack")
        self.pagerduty = WebhookReceiver(log=open(self.dir / "pagerduty.jsonl", "a"), answer_as="pagerduty")
        self.ports = {name: free_port() for name in ("mime-server", "mockup-gateway", "prometheus", "alertmanager")}
        self.settings: StackSettings = from_values(
            "dev", {"pagerdutyUrl": f"{self.pagerduty.url}/v2/enqueue"}, secrets_set=set(ALERT_SECRET_KEYS))
        self._traffic_stop = threading.Event()
        self._traffic: threading.Thread | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        prometheus, alertmanager = require("prometheus"), require("alertmanager")
        self.slack.start()
        self.pagerduty.start()
        self._write_configs()
        self.start_mime_server()
        self._start("mockup-gateway", [sys.executable, "-m", "mime_server.gateway", "--host", "127.0.0.1",
                                       "--port", str(self.ports["mockup-gateway"]), "--upstream",
                                       self.url("mime-server"), "--api-keys-file", str(self.dir / "api-keys")])
        self._start("alertmanager", [alertmanager, f"--config.file={self.dir / 'alertmanager.yml'}",
                                     f"--storage.path={self.dir / 'am-data'}",
                                     f"--web.listen-address=127.0.0.1:{self.ports['alertmanager']}",
                                     "--cluster.listen-address="])
        self._start("prometheus", [prometheus, f"--config.file={self.dir / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={self.dir / 'tsdb'}",
                                   f"--web.listen-address=127.0.0.1:{self.ports['prometheus']}"])
        for name, path in (("mockup-gateway", "/healthz"), ("alertmanager", "/-/ready"), ("prometheus", "/-/ready")):
            wait_http(self.url(name) + path, 30, self.procs[name])
        self.wait_until_up(30)
        # Rules load only now: evaluated before the first scrape, absent(up) would page for a server
        # that is not down (with production timings the first scrape comes long before `for` ends).
        self._write_prometheus_config(with_rules=True)
        self.procs["prometheus"].popen.send_signal(signal.SIGHUP)
        self._wait_rules_loaded(30)

    def stop(self) -> None:
        self.stop_traffic()
        for proc in reversed(list(self.procs.values())):
            proc.stop()
        for rx in (self.slack, self.pagerduty):
            try:
                rx.stop()
            except OSError:
                pass
        if self._tmp:
            self._tmp.cleanup()

    def _start(self, name: str, argv: list[str]) -> Proc:
        env = {"OTEL_TRACES_EXPORTER": "none", "PYTHONUNBUFFERED": "1"}
        self.procs[name] = Proc(name, argv, self.dir, cwd=PROJECT_DIR, env=env)
        return self.procs[name]

    def start_mime_server(self) -> None:
        proc = self._start("mime-server", [sys.executable, "-m", "mime_server", "--host", "127.0.0.1",
                                           "--port", str(self.ports["mime-server"]), "--storage",
                                           str(self.dir / "storage"), "--admin-key-file", str(self.dir / "admin-key")])
        wait_http(self.url("mime-server") + "/healthz", 30, proc)

    def kill_mime_server(self) -> float:
        """SIGKILL mime-server; the monotonic time of the kill."""
        self.procs["mime-server"].kill()
        return time.monotonic()

    # -- config files ---------------------------------------------------------------------------

    def _write_configs(self) -> None:
        t = self.timings
        (self.dir / "storage").mkdir(exist_ok=True)
        (self.dir / "admin-key").write_text(ADMIN_KEY)
        (self.dir / "api-keys").write_text(API_KEY + "\n")
        secrets = {"slackWebhookOpsCritical": f"{self.slack.url}/ops-critical",
                   "slackWebhookAlerts": f"{self.slack.url}/alerts", "pagerdutyRoutingKey": ROUTING_KEY}
        assert set(secrets) == set(SECRET_FILES)
        for key, value in secrets.items():
            Path(secret_path(key, self.dir)).write_text(value)
        (self.dir / "alertmanager.yml").write_text(render_alertmanager(
            self.settings, secrets_dir=self.dir, group_wait=t.group_wait, group_interval=t.group_interval,
            repeat_interval=t.repeat_interval))
        rules = self.dir / "rules"
        rules.mkdir(exist_ok=True)
        for name, text in render_rule_files(self.settings, t.rules).items():
            (rules / name).write_text(text)
        self._write_prometheus_config(with_rules=False)

    def _write_prometheus_config(self, with_rules: bool) -> None:
        t = self.timings
        prometheus = {
            "global": {"scrape_interval": t.scrape_interval, "scrape_timeout": t.scrape_interval,
                       "evaluation_interval": t.evaluation_interval},
            "rule_files": [str(self.dir / "rules" / "*.yml")] if with_rules else [],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{self.ports['alertmanager']}"]}]}]},
            "scrape_configs": [
                {"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{self.ports[name]}"],
                                                       "labels": {"service": name, "env": "e2e"}}]}
                for name in ("mime-server", "mockup-gateway")],
        }
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(prometheus, sort_keys=False))

    # -- observation and actions ----------------------------------------------------------------

    def query(self, promql: str) -> list[dict[str, Any]]:
        r = httpx.get(self.url("prometheus") + "/api/v1/query", params={"query": promql}, timeout=5)
        r.raise_for_status()
        return r.json()["data"]["result"]

    def _wait_rules_loaded(self, timeout: float) -> None:
        expected = len(render_rule_files(self.settings, self.timings.rules))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = httpx.get(self.url("prometheus") + "/api/v1/rules", timeout=5)
            if len({g["file"] for g in r.json()["data"]["groups"]}) == expected:
                return
            time.sleep(0.1)
        raise TimeoutError(f"Prometheus did not load the rule files within {timeout}s:\n"
                           f"{self.procs['prometheus'].log_tail()}")

    def wait_until_up(self, timeout: float) -> None:
        """Until Prometheus has scraped both services as up (the rules then see a healthy start)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.query('up{job=~"mime-server|mockup-gateway"} == 1')) == 2:
                return
            time.sleep(0.2)
        raise TimeoutError(f"Prometheus did not see both services up within {timeout}s:\n"
                           f"{self.procs['prometheus'].log_tail()}")

    def set_faults(self, error_rate: float) -> None:
        """Make mime-server answer /v1 with 500 at `error_rate` (0 clears the fault)."""
        headers = {"X-Admin-Key": ADMIN_KEY}
        if error_rate:
            r = httpx.post(self.url("mime-server") + "/admin/faults", headers=headers, timeout=5,
                           json={"error_rate": error_rate, "delay_rate": 0, "delay_ms": 0, "duration_s": 600})
        else:
            r = httpx.delete(self.url("mime-server") + "/admin/faults", headers=headers, timeout=5)
        r.raise_for_status()

    def start_traffic(self, per_second: float = 25) -> None:
        """Steady POST /v1/detect through the gateway on a background thread."""
        self._traffic_stop.clear()

        def run() -> None:
            with httpx.Client(base_url=self.url("mockup-gateway"), headers={"X-API-Key": API_KEY}, timeout=5) as c:
                while not self._traffic_stop.wait(1 / per_second):
                    try:
                        c.post("/v1/detect", content=b"%PDF-1.4 tiny", headers={"Content-Type": "application/pdf"})
                    except httpx.HTTPError:
                        pass

        self._traffic = threading.Thread(target=run, name="traffic", daemon=True)
        self._traffic.start()

    def stop_traffic(self) -> None:
        self._traffic_stop.set()
        if self._traffic:
            self._traffic.join(timeout=5)
            self._traffic = None

    def pages(self, receiver: WebhookReceiver, path: str | None = None) -> list[Page]:
        found = [parse(n) for n in receiver.notifications if path is None or n.path == path]
        return [p for p in found if p is not None]

    def wait_page(self, receiver: WebhookReceiver, timeout: float, *, alertname: str, status: str = "FIRING",
                  service: str | None = None, path: str | None = None, after: float = 0.0) -> Page | None:
        """The first notification of `alertname` with `status` (and service/path) that arrived after `after`."""

        def match(n: Notification) -> bool:
            p = parse(n)
            return (p is not None and n.monotonic >= after and p.alertname == alertname and p.status == status
                    and (service is None or p.service == service) and (path is None or n.path == path))

        n = receiver.wait_for(match, timeout)
        return parse(n) if n else None
