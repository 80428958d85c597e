"""The rendered prometheus.yml, its command-line flags and the SLO rules on the pinned Prometheus, with real scrapes.

Prometheus 3 reads some things differently from 2.x: it normalises the `le` label of classic
histograms on ingestion, validates metric names as UTF-8 by default and negotiates the scrape
format. So the services run on 127.0.0.1, the pinned Prometheus runs with the component's own flags
and the rendered file (only the scrape addresses moved to the local processes, intervals 1 s), and
real traffic, some of it slowed between the SLO and SLA latency thresholds, must show up in every
recording rule the dashboards and alerts read.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from config import slo
from config.prometheus import command, render_prometheus
from config.rules import render_rule_files
from config.settings import PROJECT_DIR, StackSettings, load_stack
from tests.slo.procs import Proc, free_port, wait_http
from mime_server.buckets import LATENCY_BUCKETS
from tests.tools import pinned

pytestmark = pytest.mark.e2e

API_KEY = "pinned-prometheus-key"
ADMIN_KEY = "pinned-prometheus-admin"
LOCAL = (slo.MIME_SERVER, slo.GATEWAY, "prometheus")


@dataclass
class Live:
    settings: StackSettings
    url: str
    procs: dict[str, Proc]
    rendered: dict[str, Any]

    def query(self, expr: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        r.raise_for_status()
        return r.json()["data"]["result"]


def _local_config(settings: StackSettings, ports: dict[str, int], rules: Path) -> tuple[str, dict[str, Any]]:
    """The rendered prometheus.yml with the local processes' addresses; everything else as rendered."""
    rendered = yaml.safe_load(render_prometheus(settings))
    doc = yaml.safe_load(render_prometheus(settings))
    doc["global"] |= {"scrape_interval": "1s", "evaluation_interval": "1s"}
    doc["rule_files"] = [str(rules / "*.yml")]
    doc["scrape_configs"] = [job for job in doc["scrape_configs"] if job["job_name"] in LOCAL]
    for job in doc["scrape_configs"]:
        job["static_configs"][0]["targets"] = [f"127.0.0.1:{ports[job['job_name']]}"]
    doc.pop("alerting", None)  # no Alertmanager here: the alert path has its own e2e test
    return yaml.safe_dump(doc, sort_keys=False), rendered


def _traffic(gateway: str, mime: str, rounds: int) -> None:
    headers = {"X-API-Key": API_KEY}
    with httpx.Client(timeout=10) as client:
        for i in range(rounds):
            r = client.post(f"{gateway}/v1/files", params={"filename": f"f{i}.txt"}, headers=headers,
                            content=f"hello {i}\n".encode())
            assert r.status_code in (200, 201), r.text
            client.get(f"{gateway}{r.headers['location']}", headers=headers)
            client.post(f"{mime}/v1/detect", content=b"%PDF-1.4 tiny")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    settings = load_stack("dev")
    work = tmp_path_factory.mktemp("pinned-prometheus")
    ports = {name: free_port() for name in LOCAL}
    rules = work / "rules"
    rules.mkdir()
    for name, text in render_rule_files(settings).items():
        (rules / name).write_text(text)
    config_text, rendered = _local_config(settings, ports, rules)
    (work / "prometheus.yml").write_text(config_text)
    (work / "api-keys").write_text(API_KEY + "\n")
    (work / "admin-key").write_text(ADMIN_KEY)
    env = {"OTEL_TRACES_EXPORTER": "none", "PYTHONUNBUFFERED": "1"}
    procs: dict[str, Proc] = {}
    try:
        procs["mime-server"] = Proc("mime-server", [
            sys.executable, "-m", "mime_server", "--host", "127.0.0.1", "--port", str(ports[slo.MIME_SERVER]),
            "--storage", str(work / "storage"), "--admin-key-file", str(work / "admin-key")], work, PROJECT_DIR, env)
        procs["gateway"] = Proc("gateway", [
            sys.executable, "-m", "mime_server.gateway", "--host", "127.0.0.1", "--port", str(ports[slo.GATEWAY]),
            "--upstream", f"http://127.0.0.1:{ports[slo.MIME_SERVER]}", "--api-keys-file", str(work / "api-keys")],
            work, PROJECT_DIR, env)
        flags = command(settings, config_path=str(work / "prometheus.yml"), data_dir=str(work / "tsdb"))
        procs["prometheus"] = Proc("prometheus", [
            pinned("prometheus"), *flags, f"--web.listen-address=127.0.0.1:{ports['prometheus']}"], work)
        mime, gateway = (f"http://127.0.0.1:{ports[n]}" for n in (slo.MIME_SERVER, slo.GATEWAY))
        url = f"http://127.0.0.1:{ports['prometheus']}"
        wait_http(f"{mime}/healthz", 30, procs["mime-server"])
        wait_http(f"{gateway}/healthz", 30, procs["gateway"])
        wait_http(f"{url}/-/ready", 60, procs["prometheus"])
        live = Live(settings, url, procs, rendered)
        deadline = time.monotonic() + 30
        while len(live.query("up == 1")) < len(LOCAL):
            assert time.monotonic() < deadline, procs["prometheus"].log_tail()
            time.sleep(0.2)
        _traffic(gateway, mime, 10)
        # slow requests: above the SLO threshold (0.5 s), below the SLA one (1.0 s)
        delay_ms = int((settings.slo.latency_seconds + settings.sla.latency_seconds) / 2 * 1000)
        httpx.post(f"{mime}/admin/faults", headers={"X-Admin-Key": ADMIN_KEY}, timeout=5, json={
            "error_rate": 0, "delay_rate": 1, "delay_ms": delay_ms, "duration_s": 60}).raise_for_status()
        _traffic(gateway, mime, 3)
        httpx.delete(f"{mime}/admin/faults", headers={"X-Admin-Key": ADMIN_KEY}, timeout=5).raise_for_status()
        _traffic(gateway, mime, 10)
        time.sleep(3)  # two more scrapes and evaluations after the last request
        yield live
    finally:
        for proc in reversed(list(procs.values())):
            proc.stop()


def test_the_component_flags_are_the_ones_prometheus_runs_with(live: Live) -> None:
    flags = httpx.get(f"{live.url}/api/v1/status/flags", timeout=10).json()["data"]
    # Prometheus prints durations in its largest unit: 35d is 5w
    assert slo.duration_seconds(flags["storage.tsdb.retention.time"]) == live.settings.prometheus_retention_days * 86400
    assert "exemplar-storage" in flags["enable-feature"]
    assert flags["web.external-url"] == f"http://localhost:{live.settings.service('prometheus').port}"


def test_the_rendered_file_loads_as_rendered(live: Live) -> None:
    config = yaml.safe_load(httpx.get(f"{live.url}/api/v1/status/config", timeout=10).json()["data"]["yaml"])
    assert config["global"]["external_labels"] == live.rendered["global"]["external_labels"]
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    for name in LOCAL:
        assert jobs[name]["metrics_path"] == "/metrics"
        assert jobs[name]["static_configs"][0]["labels"] == {"service": name, "env": live.settings.stack}


@pytest.mark.parametrize("service", [slo.MIME_SERVER, slo.GATEWAY])
def test_stored_le_values_are_the_ones_the_rules_select(live: Live, service: str) -> None:
    """Prometheus 3 normalises `le` on ingestion: the stored values must be the renderer's spelling."""
    stored = {r["metric"]["le"] for r in live.query(
        f'count by (le) (http_request_duration_seconds_bucket{{service="{service}"}})')}
    assert stored == {slo.le_label(b) for b in LATENCY_BUCKETS} | {"+Inf"}
    assert {slo.le_label(live.settings.slo.latency_seconds), slo.le_label(live.settings.sla.latency_seconds)} <= stored


def test_every_recording_rule_has_data_for_both_services(live: Live) -> None:
    """A selector on a name or label value Prometheus 3 stores differently would record nothing."""
    rules = [rule for text in render_rule_files(live.settings).values()
             for group in yaml.safe_load(text)["groups"] for rule in group["rules"] if "record" in rule]
    per_sli = {(r["record"], r["labels"]["sli"]) for r in rules if "sli" in r.get("labels", {})}
    period = live.query(slo.TIME_PERIOD_DAYS)  # stack-wide metadata, no service
    assert [float(r["value"][1]) for r in period] == [live.settings.slo_window_days]
    budget = {(slo.ERROR_BUDGET_REMAINING, sli.name) for sli in slo.SLIS}  # recorded from every SLI's burn rate
    missing = []
    for record, sli_name in sorted(per_sli | budget):
        got = {r["metric"].get("service") for r in live.query(f'{record}{{sli="{sli_name}"}}')}
        if got != set(slo.SLI_BY_NAME[sli_name].services):
            missing.append((record, sli_name, sorted(got)))
    assert not missing, missing


def test_slow_requests_spend_the_slo_latency_budget_but_not_the_sla(live: Live) -> None:
    slo_bad = live.query(f'{slo.error_ratio_record("5m")}{{sli="latency", service="{slo.MIME_SERVER}"}}')
    assert slo_bad and float(slo_bad[0]["value"][1]) > 0
    sla = live.query(f'{slo.sla_compliance_record(live.settings)}{{sli="latency", service="{slo.MIME_SERVER}"}}')
    assert sla and float(sla[0]["value"][1]) == 1.0


def test_no_rule_fails_to_evaluate(live: Live) -> None:
    groups = httpx.get(f"{live.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    failing = [(g["name"], r["name"], r.get("lastError")) for g in groups for r in g["rules"]
               if r.get("health") != "ok"]
    assert groups and not failing, failing


def test_scraped_metric_names_are_stored_unescaped(live: Live) -> None:
    """Prometheus 3 validates names as UTF-8: the names the rules read arrive exactly as exposed."""
    names = set(httpx.get(f"{live.url}/api/v1/label/__name__/values", timeout=10).json()["data"])
    exposed = {"http_requests_total", "http_request_duration_seconds_bucket", "http_request_duration_seconds_count",
               "gateway_unauthorized_total", "mime_uploads_total", "up"}
    assert exposed <= names, exposed - names
