"""A live stack on 127.0.0.1 for the dashboard tests: mime-server, gateway, real Prometheus with the SLO rules.

The services run as subprocesses exactly as their containers run them; Prometheus (the pinned
build, tests/tools.py) scrapes both every second with the rule files `config.rules` renders, and a short burst
of traffic through the gateway and straight to mime-server gives every panel something to show.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from config.rules import render_rule_files
from config.settings import StackSettings
from config.slo import GATEWAY, MIME_SERVER
from tests.tools import pinned

API_KEY = "dashboard-test-key"
REPO = Path(__file__).resolve().parents[2]

# Grafana template variables, replaced the way Grafana would before a query reaches Prometheus.
TEMPLATE_VALUES: dict[str, str] = {
    "$__rate_interval": "30s",
    "$__interval": "5s",
    "$__auto": "1m",
    "$service": f"({MIME_SERVER}|{GATEWAY})",
    "$trace_id": "0af7651916cd43dd8448eb211c80319c",
}

UPLOADS: tuple[tuple[str, bytes], ...] = (
    ("hello.txt", b"hello, plain text\n" * 4),
    ("data.json", b'{"a": 1, "b": [1, 2, 3]}'),
    ("image.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64),
    ("page.html", b"<!doctype html><html><body>hi</body></html>"),
)


def substitute(expr: str) -> str:
    """The expression with Grafana's variables replaced (longest names first)."""
    for name in sorted(TEMPLATE_VALUES, key=len, reverse=True):
        expr = expr.replace(name, TEMPLATE_VALUES[name])
    return expr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class LiveStack:
    """URLs of the running processes and where their stdout went."""

    mime_url: str
    gateway_url: str
    prometheus_url: str
    logs: dict[str, Path] = field(default_factory=dict)

    def query(self, expr: str, instant: bool = False) -> dict[str, Any]:
        """Prometheus API answer for `expr` (range over the last minute unless `instant`)."""
        now = time.time()
        if instant:
            resp = httpx.post(f"{self.prometheus_url}/api/v1/query", data={"query": expr, "time": now},
                              timeout=10, trust_env=False)
        else:
            resp = httpx.post(f"{self.prometheus_url}/api/v1/query_range",
                              data={"query": expr, "start": now - 60, "end": now, "step": 2},
                              timeout=10, trust_env=False)
        return dict(resp.json())

    def has_data(self, expr: str) -> bool:
        answer = self.query(expr, instant=True)
        return answer.get("status") == "success" and bool(answer["data"]["result"])

    def diagnosis(self) -> str:
        """Rule errors and the SLO records present, for a failure message."""
        groups = httpx.get(f"{self.prometheus_url}/api/v1/rules", timeout=10, trust_env=False).json()["data"]["groups"]
        errors = [f"{g['name']}/{r.get('name')}: {r.get('lastError')}" for g in groups for r in g["rules"]
                  if r.get("lastError")]
        records = {expr: [(x["metric"].get("service"), x["metric"].get("sli"))
                          for x in self.query(expr, instant=True)["data"]["result"]]
                   for expr in ("slo:burn_rate:ratio_rate30d", "slo:error_budget_remaining:ratio")}
        slow = [(g["name"], g.get("evaluationTime")) for g in groups]
        return f"rule errors {errors}; records {records}; group evaluation seconds {slow}"

    def log_lines(self, service: str) -> list[str]:
        return [line for line in self.logs[service].read_text().splitlines() if line.startswith("{")]


def _spawn(stack: ExitStack, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    out = stack.enter_context(log.open("wb"))
    # Traces stay on (exemplars need sampled trace ids) but go to a closed port, failing fast.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}", "OTEL_EXPORTER_OTLP_TIMEOUT": "1"}
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    stack.callback(stop)
    return proc


def _prometheus_config(mime_port: int, gateway_port: int, prom_port: int, rules_dir: Path) -> str:
    jobs = ((MIME_SERVER, mime_port), (GATEWAY, gateway_port), ("prometheus", prom_port))
    return yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules_dir / "*.yml")],
        "scrape_configs": [{"job_name": name, "static_configs": [
            {"targets": [f"127.0.0.1:{port}"], "labels": {"service": name, "env": "test"}}]}
            for name, port in jobs],
    })


def send_traffic(stack: LiveStack, rounds: int) -> None:
    """Uploads, downloads and detections through the gateway and directly; a few 404s and a 401."""
    headers = {"X-API-Key": API_KEY}
    with httpx.Client(timeout=10, trust_env=False) as client:
        for _ in range(rounds):
            for name, body in UPLOADS:
                created = client.post(f"{stack.gateway_url}/v1/files", params={"filename": name},
                                      content=body, headers=headers)
                location = created.headers.get("location")
                if location:
                    client.get(f"{stack.gateway_url}{location}", headers=headers)
                    client.get(f"{stack.mime_url}{location}")
                client.post(f"{stack.mime_url}/v1/detect", content=body)
            client.get(f"{stack.gateway_url}/v1/files/does-not-exist", headers=headers)
            client.get(f"{stack.gateway_url}/v1/files/anything")  # no key: 401
            time.sleep(0.2)


@contextmanager
def live_stack(settings: StackSettings, workdir: Path) -> Iterator[LiveStack]:
    """Start everything, send traffic, wait until the SLO records exist; stop it all on exit."""
    mime_port, gateway_port, prom_port = free_port(), free_port(), free_port()
    rules_dir = workdir / "rules"
    rules_dir.mkdir()
    for name, text in render_rule_files(settings).items():
        (rules_dir / name).write_text(text)
    config = workdir / "prometheus.yml"
    config.write_text(_prometheus_config(mime_port, gateway_port, prom_port, rules_dir))
    keys = workdir / "api-keys"
    keys.write_text(API_KEY + "\n")
    live = LiveStack(f"http://127.0.0.1:{mime_port}", f"http://127.0.0.1:{gateway_port}",
                     f"http://127.0.0.1:{prom_port}",
                     {MIME_SERVER: workdir / "mime-server.log", GATEWAY: workdir / "gateway.log"})
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir / "tsdb", True)
        _spawn(stack, [sys.executable, "-m", "mime_server", "--host", "127.0.0.1", "--port", str(mime_port),
                       "--storage", str(workdir / "storage")], live.logs[MIME_SERVER])
        _spawn(stack, [sys.executable, "-m", "mime_server.gateway", "--host", "127.0.0.1", "--port",
                       str(gateway_port), "--upstream", live.mime_url, "--api-keys-file", str(keys)],
               live.logs[GATEWAY])
        _spawn(stack, [pinned("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                       f"--web.listen-address=127.0.0.1:{prom_port}", "--enable-feature=exemplar-storage"],
               workdir / "prometheus.log")
        for url in (live.mime_url, live.gateway_url):
            wait_until(lambda u=url: httpx.get(f"{u}/healthz", timeout=2, trust_env=False).status_code == 200,
                       30, f"{url}/healthz")
        wait_until(lambda: httpx.get(f"{live.prometheus_url}/-/ready", timeout=2, trust_env=False).status_code == 200, 30,
                   "Prometheus ready")
        # Counters must be seen before and after requests: wait for the first scrapes, then keep
        # traffic flowing until every SLO record exists.
        wait_until(lambda: live.has_data(f'up{{service=~"{MIME_SERVER}|{GATEWAY}"}} == 1')
                   and len(live.query("up == 1", instant=True)["data"]["result"]) == 3, 30, "first scrapes")

        def budget_recorded() -> bool:
            send_traffic(live, rounds=2)
            return len(live.query("slo:error_budget_remaining:ratio", instant=True)["data"]["result"]) >= 6
        try:
            wait_until(budget_recorded, 60, "error budget records for 2 services x 3 SLIs")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; {live.diagnosis()}") from None
        send_traffic(live, rounds=4)
        yield live


def metric_names(exposition: str) -> set[str]:
    """Sample names in a Prometheus text exposition."""
    names = set()
    for line in exposition.splitlines():
        if line and not line.startswith("#"):
            names.add(line.split("{", 1)[0].split(" ", 1)[0])
    return names


def rule_records(settings: StackSettings) -> set[str]:
    """Every `record:` name in the rendered rule files."""
    records = set()
    for text in render_rule_files(settings).values():
        for group in (yaml.safe_load(text) or {}).get("groups", []):
            records |= {rule["record"] for rule in group.get("rules", []) if "record" in rule}
    return records


def dump(answer: dict[str, Any]) -> str:
    return json.dumps(answer)[:500]
