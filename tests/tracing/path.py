"""The trace path on loopback: pinned Jaeger with the rendered config, both services tracing into it, Prometheus on top.

Used by tests/tracing/test_trace_path.py and `python -m bench.trace_path`. The pinned Jaeger runs the
rendered `config/jaeger.py` file with every listen address moved to 127.0.0.1 on a free port;
mime-server and mockup-gateway get the OTEL_* variables `components/workload.py` gives them (only
the endpoint is local); the pinned Prometheus runs the rendered prometheus.yml reduced to the
`jaeger` job and the rendered `stack-alerts.yml`. Requests carry their own `X-Request-Id`, and
each one's trace is looked up in Jaeger by the server span's `request.id` tag.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from config.jaeger import OTLP_HTTP_ENDPOINT
from config import registry
from config.jaeger import render_jaeger
from config.prometheus import render_prometheus
from config.rules import render_rule_files
from config.settings import PROJECT_DIR, StackSettings
from mime_server import GATEWAY_SERVICE as GATEWAY
from mime_server import MIME_SERVICE as MIME
from tests.slo.procs import Proc, Started, free_port, wait_http
from tests.tools import pinned, pinned_tools

API_KEY = "trace-path-api-key"
ADMIN_KEY = "trace-path-admin-key"
BSP_SCHEDULE_DELAY_MS = 200  # the services export a batch every 0.2 s instead of every 5 s
METRICS_READER = "service.telemetry.metrics.readers.0.pull.exporter.prometheus"
# Every listener the rendered Jaeger config must name (dotted path in the YAML); nothing else may listen.
JAEGER_LISTENERS = {
    "otlp_grpc": "receivers.otlp.protocols.grpc",
    "otlp_http": "receivers.otlp.protocols.http",
    "agent_compact": "receivers.jaeger.protocols.thrift_compact",
    "query_http": "extensions.jaeger_query.http",
    "query_grpc": "extensions.jaeger_query.grpc",
    "health": "extensions.healthcheckv2.http",
    "metrics": METRICS_READER,
}
UDP_PROTOCOLS = frozenset({"thrift_compact", "thrift_binary"})
JAEGER_RULES = ("JaegerSpansRefused", "JaegerSpanExportFailing")
SPAN_COUNTERS = r'{job="jaeger", __name__=~"otelcol_(receiver|exporter)_.*spans.*"}'
WORKERS = 4
DETECT_BODIES = (b"\x89PNG\r\n\x1a\n" + bytes(24), b"%PDF-1.4\n%trace path\n", b"plain text for detect\n",
                 b'{"trace": "path"}\n', b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + bytes(10))


# -- what each kind of request should leave in Jaeger ----------------------------------------------


@dataclass(frozen=True)
class Kind:
    """A kind of request through the gateway and the trace it must produce."""

    name: str
    method: str
    status: int
    mime_route: str | None  # None: the gateway answers itself, mime-server never sees it
    children: tuple[str, ...] = ()  # mime-server's spans under its server span

    def expected_spans(self) -> list[tuple[str, str, str, str]]:
        """(role, service, span.kind, name) of every span; `PARENT` names each one's parent by role."""
        spans = [("gateway.server", GATEWAY, "server", f"{self.method} /v1/{{path:path}}")]
        if self.mime_route is not None:
            spans += [("gateway.client", GATEWAY, "client", f"{self.method} upstream"),
                      ("mime.server", MIME, "server", f"{self.method} {self.mime_route}")]
            spans += [(f"mime.{child}", MIME, "internal", child) for child in self.children]
        return spans


PARENT = {"gateway.server": None, "gateway.client": "gateway.server", "mime.server": "gateway.client"}
KINDS = {k.name: k for k in (
    Kind("detect", "POST", 200, "/v1/detect", ("detect",)),
    Kind("upload", "POST", 201, "/v1/files", ("detect", "storage.write")),
    Kind("download", "GET", 200, "/v1/files/{id}", ("storage.read",)),
    Kind("not_found", "GET", 404, "/v1/files/{id}", ("storage.read",)),
    Kind("invalid_id", "GET", 400, "/v1/files/{id}", ("storage.read",)),
    Kind("unauthorized", "POST", 401, None),
    Kind("fault", "POST", 500, "/v1/detect"),  # injected before the endpoint runs: no children
)}
# One round of the mixed phase: 20 requests.
MIX = ("detect",) * 7 + ("upload",) * 4 + ("download",) * 5 + ("not_found",) * 2 + ("invalid_id", "unauthorized")
SEED_UPLOADS = 10  # sequential uploads first: the downloads of the mixed phase fetch these


@dataclass(frozen=True)
class Planned:
    request_id: str
    kind: str


@dataclass(frozen=True)
class Sent:
    request_id: str
    kind: str
    status: int
    echoed_request_id: str


def plan(requests: int, token: str) -> list[Planned]:
    """`requests` requests: seed uploads, the mix, then injected faults (1% of them, at least 3)."""
    faults = max(3, requests // 100)
    mixed = requests - SEED_UPLOADS - faults
    if mixed < len(MIX):
        raise ValueError(f"at least {SEED_UPLOADS + 3 + len(MIX)} requests are needed, got {requests}")
    kinds = ["upload"] * SEED_UPLOADS + [MIX[i % len(MIX)] for i in range(mixed)] + ["fault"] * faults
    return [Planned(f"tp-{token}-{i:05d}-{kind}", kind) for i, kind in enumerate(kinds)]


# -- Jaeger spans as the query API returns them ----------------------------------------------------


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    service: str
    name: str
    tags: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.tags.get("span.kind", "internal"))

    @property
    def error(self) -> bool:
        return self.tags.get("error") is True or self.tags.get("otel.status_code") == "ERROR"


def spans_of(trace: dict[str, Any]) -> list[Span]:
    """The spans of one trace of Jaeger's /api/traces answer."""
    services = {pid: p["serviceName"] for pid, p in trace["processes"].items()}
    spans = []
    for s in trace["spans"]:
        parents = [r["spanID"] for r in s.get("references") or [] if r["refType"] == "CHILD_OF"]
        spans.append(Span(s["traceID"], s["spanID"], parents[0] if parents else None, services[s["processID"]],
                          s["operationName"], {t["key"]: t["value"] for t in s.get("tags") or []}))
    return spans


def check_trace(sent: Sent, traces: list[list[Span]]) -> list[str]:
    """What is wrong with the trace(s) holding this request id; empty when it is exactly the expected tree."""
    if len(traces) != 1:
        return [f"{len(traces)} traces hold request id {sent.request_id}"]
    spans = traces[0]
    kind = KINDS[sent.kind]
    expected = kind.expected_spans()
    problems = []
    found: dict[str, Span] = {}
    for role, service, span_kind, name in expected:
        matches = [s for s in spans if (s.service, s.kind, s.name) == (service, span_kind, name)]
        if len(matches) != 1:
            problems.append(f"{len(matches)} spans {service}/{span_kind}/{name!r} (expected 1)")
        else:
            found[role] = matches[0]
    if len(spans) != len(expected):
        problems.append(f"{len(spans)} spans, expected {len(expected)}: "
                        f"{sorted((s.service, s.kind, s.name) for s in spans)}")
    for role, span in found.items():
        parent_role = PARENT.get(role, "mime.server")
        if parent_role is None:
            if span.parent_id is not None:
                problems.append(f"{role} has a parent ({span.parent_id}); it must be the root")
        elif parent_role in found and span.parent_id != found[parent_role].span_id:
            problems.append(f"{role}'s parent is {span.parent_id}, not {parent_role} {found[parent_role].span_id}")
    for role in ("gateway.server", "mime.server"):
        span = found.get(role)
        if span is None:
            continue
        if span.tags.get("request.id") != sent.request_id:
            problems.append(f"{role} request.id is {span.tags.get('request.id')!r}")
        if span.tags.get("http.response.status_code") != sent.status:
            problems.append(f"{role} status is {span.tags.get('http.response.status_code')}, client saw {sent.status}")
        if span.error != (sent.status >= 500):
            problems.append(f"{role} error={span.error} for HTTP {sent.status}")
    return problems


# -- the Jaeger config, moved to loopback ----------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    path: str  # dotted path of the setting in the YAML
    protocol: str  # tcp or udp
    rendered: str  # host:port as rendered
    port: int  # the free loopback port it listens on here


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _walk(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, (*path, str(i)))


def loopback_jaeger_config(rendered: str) -> tuple[str, dict[str, Listener]]:
    """The rendered config with every listen address (each `endpoint`, the metrics reader) on 127.0.0.1."""
    doc = yaml.safe_load(rendered)
    listeners: dict[str, Listener] = {}
    for path, node in _walk(doc):
        dotted = ".".join(path)
        if "endpoint" in node and isinstance(node["endpoint"], str):
            udp = path[-1] in UDP_PROTOCOLS
            port = free_udp_port() if udp else free_port()
            listeners[dotted] = Listener(dotted, "udp" if udp else "tcp", node["endpoint"], port)
            node["endpoint"] = f"127.0.0.1:{port}"
        elif dotted == METRICS_READER:
            port = free_port()
            listeners[dotted] = Listener(dotted, "tcp", f"{node['host']}:{node['port']}", port)
            node.update(host="127.0.0.1", port=port)
    return yaml.safe_dump(doc, sort_keys=False), listeners


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    # /proc/net shows addresses as 32-bit words in host (little-endian) order
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def listening_sockets(pid: int) -> set[tuple[str, str, int]]:
    """(protocol, address, port) of every TCP socket `pid` listens on and every unconnected UDP socket it has."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = set()
    for protocol, table in (("tcp", "tcp"), ("tcp", "tcp6"), ("udp", "udp"), ("udp", "udp6")):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            # 0A: TCP LISTEN; 07: an unconnected UDP socket (a receiver, not a client's)
            if inode in inodes and state == ("0A" if protocol == "tcp" else "07"):
                address, port = local.split(":")
                found.add((protocol, _address(address), int(port, 16)))
    return found


def jaeger_validate(config_text: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """`jaeger validate --config FILE` of the pinned build: parses and validates every component's settings."""
    path = workdir / "jaeger-validate.yaml"
    path.write_text(config_text)
    return subprocess.run([pinned("jaeger"), "validate", "--config", str(path)], capture_output=True, text=True,
                          timeout=60)


# -- the measurement -------------------------------------------------------------------------------


@dataclass
class Measurement:
    """What the trace path showed; `figures()` is the JSON the test prints and the benchmark emits."""

    sent: list[Sent]
    traces: dict[str, list[list[Span]]]  # request id -> every trace holding a span tagged with it
    lookups: dict[str, list[str]]  # request id -> trace ids of Jaeger's tag search `request.id`
    dependencies: list[dict[str, Any]]
    spans_stored: dict[str, int]  # service -> spans Jaeger stored for the two services
    services: list[str]  # Jaeger's service list
    accepted_spans: dict[str, float]  # receiver/transport -> otelcol_receiver_accepted_spans in Prometheus
    span_metric_names: list[str]  # otelcol_*spans* names Prometheus stored from Jaeger
    meta_alerts: dict[str, dict[str, Any]]
    listeners: dict[str, Listener]
    listening: set[tuple[str, str, int]]
    jaeger_log_problems: list[str]
    seconds: dict[str, float]
    answer_problems: dict[str, str] = field(init=False)
    trace_problems: dict[str, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        self.answer_problems = {
            s.request_id: f"answered {s.status} (planned {KINDS[s.kind].status}), echoed {s.echoed_request_id!r}"
            for s in self.sent if s.status != KINDS[s.kind].status or s.echoed_request_id != s.request_id}
        self.trace_problems = {}
        for s in self.sent:
            traces = self.traces.get(s.request_id, [])
            problems = check_trace(s, traces)
            found = self.lookups.get(s.request_id, [])
            if len(traces) == 1 and found != [traces[0][0].trace_id]:
                problems.append(f"tag search request.id={s.request_id} finds {found}, not {traces[0][0].trace_id}")
            if problems:
                self.trace_problems[s.request_id] = problems

    @property
    def traced(self) -> int:
        """Requests with exactly one trace, the expected tree, found by their request id."""
        return len(self.sent) - len(self.trace_problems)

    @property
    def share_traced(self) -> float:
        return self.traced / len(self.sent)

    def spans_per_trace(self) -> dict[str, dict[str, int]]:
        """Kind of request -> {spans in its one trace (or "N traces"): requests}."""
        counts: dict[str, Counter[str]] = {}
        for s in self.sent:
            traces = self.traces.get(s.request_id, [])
            key = str(len(traces[0])) if len(traces) == 1 else f"{len(traces)} traces"
            counts.setdefault(s.kind, Counter())[key] += 1
        return {kind: dict(sorted(c.items())) for kind, c in counts.items()}

    def edges(self) -> list[str]:
        return sorted(f"{d['parent']} -> {d['child']} ({d['callCount']} calls)" for d in self.dependencies)

    def figures(self) -> dict[str, Any]:
        tools = pinned_tools()
        return {
            "benchmark": "trace_path",
            "jaeger": tools["jaeger"].version, "prometheus": tools["prometheus"].version,
            "requests": len(self.sent),
            "requests_by_kind": dict(Counter(s.kind for s in self.sent)),
            "traced": self.traced,
            "share_traced": round(self.share_traced, 6),
            "spans_per_trace": self.spans_per_trace(),
            "expected_spans_per_trace": {k: len(KINDS[k].expected_spans()) for k in KINDS},
            "dependency_edges": self.edges(),
            "spans_stored": self.spans_stored,
            "accepted_spans": self.accepted_spans,
            "span_metric_names": self.span_metric_names,
            "meta_alerts": self.meta_alerts,
            "answer_problems": dict(list(self.answer_problems.items())[:10]),
            "trace_problems": dict(list(self.trace_problems.items())[:10]),
            "jaeger_log_problems": self.jaeger_log_problems[:10],
            "seconds": self.seconds,
        }


class Pacer:
    """Spaces requests `1/per_second` apart across threads: the gateway's per-key rate limit is never hit."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1 / per_second
        self.lock = threading.Lock()
        self.next = time.monotonic()

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            at = max(now, self.next)
            self.next = at + self.interval
        if at > now:
            time.sleep(at - now)


# -- the processes ---------------------------------------------------------------------------------


class TracePath(Started):
    """Jaeger, Prometheus and both services on free loopback ports; `with TracePath(settings) as t:` stops all."""

    def __init__(self, settings: StackSettings, workdir: Path | None = None) -> None:
        self.settings = settings
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="trace-path-")
        self.dir = workdir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.procs: dict[str, Proc] = {}
        self.rendered_jaeger = render_jaeger(settings)
        self.jaeger_config, self.listeners = loopback_jaeger_config(self.rendered_jaeger)
        self.ports = {name: free_port() for name in (MIME, GATEWAY, "prometheus")}
        self.token = os.urandom(4).hex()
        self.http = httpx.Client(timeout=30)  # Jaeger's and Prometheus's APIs: one client, kept-alive connections

    def port(self, listener: str) -> int:
        """The loopback port of one of JAEGER_LISTENERS."""
        return self.listeners[JAEGER_LISTENERS[listener]].port

    def url(self, name: str) -> str:
        if name in JAEGER_LISTENERS:
            return f"http://127.0.0.1:{self.port(name)}"
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(self) -> None:
        jaeger, prometheus = pinned("jaeger"), pinned("prometheus")
        (self.dir / "jaeger.yaml").write_text(self.jaeger_config)
        (self.dir / "prometheus.yml").write_text(self.prometheus_config())
        (self.dir / "stack-alerts.yml").write_text(render_rule_files(self.settings)["stack-alerts.yml"])
        (self.dir / "storage").mkdir(exist_ok=True)
        (self.dir / "admin-key").write_text(ADMIN_KEY)
        (self.dir / "api-keys").write_text(API_KEY + "\n")
        # Should self-tracing ever be switched on again, its OTLP export goes to this Jaeger, not to
        # whatever listens on localhost:4317.
        self._start("jaeger", [jaeger, "--config", str(self.dir / "jaeger.yaml")],
                    {"OTEL_EXPORTER_OTLP_ENDPOINT": self.url("otlp_grpc")})
        wait_http(self.url("health") + "/status", 30, self.procs["jaeger"])
        wait_http(self.url("query_http") + "/api/services", 30, self.procs["jaeger"])
        self._start("prometheus", [prometheus, f"--config.file={self.dir / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={self.dir / 'tsdb'}",
                                   f"--web.listen-address=127.0.0.1:{self.ports['prometheus']}"])
        self._start(MIME, [sys.executable, "-m", "mime_server", "--host", "127.0.0.1", "--port", str(self.ports[MIME]),
                           "--storage", str(self.dir / "storage"), "--admin-key-file", str(self.dir / "admin-key")],
                    self.service_env(MIME))
        wait_http(self.url(MIME) + "/healthz", 30, self.procs[MIME])
        self._start(GATEWAY, [sys.executable, "-m", "mime_server.gateway", "--host", "127.0.0.1", "--port",
                              str(self.ports[GATEWAY]), "--upstream", self.url(MIME),
                              "--api-keys-file", str(self.dir / "api-keys")],
                    # the planned 401s come from one address: part of the traffic mix, not an attack
                    # on the keys, so the failed-authentication budget covers them all
                    self.service_env(GATEWAY) | {"GATEWAY_AUTH_FAILURE_BURST": str(len(MIX) * 1000)})
        wait_http(self.url(GATEWAY) + "/healthz", 30, self.procs[GATEWAY])
        wait_http(self.url("prometheus") + "/-/ready", 30, self.procs["prometheus"])

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()
        self.http.close()
        if self._tmp:
            self._tmp.cleanup()

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        self.procs[name] = Proc(name, argv, self.dir, cwd=PROJECT_DIR, env=env)
        return self.procs[name]

    def service_env(self, service: str) -> dict[str, str]:
        """The environment the registry gives the service's container, with the Jaeger endpoint on loopback."""
        env = dict(registry.service(service).container(self.settings).env)
        env = {k: v for k, v in env.items() if not k.endswith("_FILE")}  # secret files: given as options here
        if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") != OTLP_HTTP_ENDPOINT:
            raise RuntimeError(f"stack {self.settings.stack} does not send traces to {OTLP_HTTP_ENDPOINT}: {env}")
        return env | {"OTEL_EXPORTER_OTLP_ENDPOINT": self.url("otlp_http"),
                      "OTEL_BSP_SCHEDULE_DELAY": str(BSP_SCHEDULE_DELAY_MS), "PYTHONUNBUFFERED": "1"}

    def prometheus_config(self) -> str:
        """The rendered prometheus.yml reduced to the `jaeger` job (target on loopback), 1 s intervals."""
        doc = yaml.safe_load(render_prometheus(self.settings))
        jobs = [job for job in doc["scrape_configs"] if job["job_name"] == "jaeger"]
        if len(jobs) != 1:
            raise RuntimeError(f"the rendered prometheus.yml has {len(jobs)} `jaeger` jobs")
        job = copy.deepcopy(jobs[0])
        job["static_configs"][0]["targets"] = [f"127.0.0.1:{self.port('metrics')}"]
        doc["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
        doc["scrape_configs"] = [job]
        doc["rule_files"] = [str(self.dir / "stack-alerts.yml")]
        doc.pop("alerting", None)
        return yaml.safe_dump(doc, sort_keys=False)

    # -- traffic -----------------------------------------------------------------------------------

    def _send(self, client: httpx.Client, p: Planned, object_ids: list[str]) -> tuple[Sent, httpx.Response]:
        headers = {"X-Request-Id": p.request_id}
        if p.kind != "unauthorized":
            headers["X-API-Key"] = API_KEY
        if p.kind in ("detect", "fault", "unauthorized"):
            body = DETECT_BODIES[int(p.request_id.split("-")[2]) % len(DETECT_BODIES)]
            r = client.post("/v1/detect", content=body, headers=headers)
        elif p.kind == "upload":
            r = client.post("/v1/files", params={"filename": f"{p.request_id}.txt"}, headers=headers,
                            content=f"trace path upload {p.request_id}\n".encode() * 8)
        elif p.kind == "download":
            r = client.get(f"/v1/files/{object_ids[int(p.request_id.split('-')[2]) % len(object_ids)]}",
                           headers=headers)
        elif p.kind == "not_found":
            r = client.get(f"/v1/files/{hashlib.sha256(p.request_id.encode()).hexdigest()}", headers=headers)
        elif p.kind == "invalid_id":
            r = client.get("/v1/files/not-an-object-id", headers=headers)
        else:
            raise ValueError(f"unknown kind of request: {p.kind!r}")
        return Sent(p.request_id, p.kind, r.status_code, r.headers.get("x-request-id", "")), r

    def set_faults(self, error_rate: float) -> None:
        """mime-server answers /v1 with 500 at `error_rate` (0 clears); straight to mime-server, not traced here."""
        headers = {"X-Admin-Key": ADMIN_KEY}
        if error_rate:
            r = httpx.post(self.url(MIME) + "/admin/faults", headers=headers, timeout=5,
                           json={"error_rate": error_rate, "delay_rate": 0, "delay_ms": 0, "duration_s": 60})
        else:
            r = httpx.delete(self.url(MIME) + "/admin/faults", headers=headers, timeout=5)
        r.raise_for_status()

    def send(self, requests: int) -> list[Sent]:
        """Seed uploads one by one, the mix from WORKERS threads, then injected faults one by one."""
        planned = plan(requests, self.token)
        pacer = Pacer(0.9 * self.settings.gateway_rate_limit)
        seeds, faults = planned[:SEED_UPLOADS], [p for p in planned if p.kind == "fault"]
        mixed = planned[SEED_UPLOADS:len(planned) - len(faults)]
        sent: list[Sent] = []
        object_ids: list[str] = []
        with httpx.Client(base_url=self.url(GATEWAY), timeout=10) as client:
            for p in seeds:
                pacer.wait()
                s, r = self._send(client, p, object_ids)
                sent.append(s)
                if r.status_code == 201:
                    object_ids.append(r.json()["id"])
        if not object_ids:
            raise RuntimeError(f"no seed upload succeeded: {sent}\n{self.procs[GATEWAY].log_tail()}")

        def worker(chunk: list[Planned]) -> list[Sent]:
            done = []
            with httpx.Client(base_url=self.url(GATEWAY), timeout=10) as own:
                for p in chunk:
                    pacer.wait()
                    done.append(self._send(own, p, object_ids)[0])
            return done

        with ThreadPoolExecutor(WORKERS) as pool:
            for done in pool.map(worker, [mixed[i::WORKERS] for i in range(WORKERS)]):
                sent += done
        self.set_faults(1.0)
        try:
            with httpx.Client(base_url=self.url(GATEWAY), timeout=10) as client:
                for p in faults:
                    pacer.wait()
                    sent.append(self._send(client, p, object_ids)[0])
        finally:
            self.set_faults(0)
        return sent

    # -- Jaeger's query API ------------------------------------------------------------------------

    def jaeger_get(self, path: str, **params: Any) -> Any:
        r = self.http.get(self.url("query_http") + path, params=params)
        r.raise_for_status()
        return r.json()["data"]

    def stored_traces(self) -> dict[str, list[Span]]:
        """Trace id -> spans, for every trace holding a span of either service."""
        traces: dict[str, list[Span]] = {}
        for service in (GATEWAY, MIME):
            for trace in self.jaeger_get("/api/traces", service=service, limit=self.settings.jaeger_max_traces):
                traces[trace["traceID"]] = spans_of(trace)
        return traces

    def traces_by_request_id(self) -> dict[str, list[list[Span]]]:
        by_id: dict[str, list[list[Span]]] = {}
        for spans in self.stored_traces().values():
            for rid in sorted({str(s.tags["request.id"]) for s in spans if "request.id" in s.tags}):
                by_id.setdefault(rid, []).append(spans)
        return by_id

    def collect(self, sent: list[Sent], timeout: float) -> dict[str, list[list[Span]]]:
        """Poll Jaeger until every request's trace is complete, or `timeout` runs out (then what is there)."""
        deadline = time.monotonic() + timeout
        while True:
            by_id = self.traces_by_request_id()
            if all(not check_trace(s, by_id.get(s.request_id, [])) for s in sent) or time.monotonic() > deadline:
                return by_id
            time.sleep(0.5)

    def lookup(self, request_id: str) -> list[str]:
        """Trace ids Jaeger's search finds for the tag request.id=<request_id>."""
        found = self.jaeger_get("/api/traces", service=GATEWAY, limit=10, tags=json.dumps({"request.id": request_id}))
        return [t["traceID"] for t in found]

    def spans_stored(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for spans in self.stored_traces().values():
            counts.update(s.service for s in spans)
        return dict(sorted(counts.items()))

    def dependencies(self) -> list[dict[str, Any]]:
        now_ms = int(time.time() * 1000)
        return self.jaeger_get("/api/dependencies", endTs=now_ms, lookback=3_600_000)

    # -- Prometheus --------------------------------------------------------------------------------

    def prom(self, path: str, **params: Any) -> Any:
        r = self.http.get(self.url("prometheus") + path, params=params)
        if r.status_code >= 400:
            raise RuntimeError(f"Prometheus {path} {params}: HTTP {r.status_code} {r.text[:500]}")
        return r.json()["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        return self.prom("/api/v1/query", query=promql)["result"]

    def span_metric_names(self) -> list[str]:
        return sorted(r["metric"]["__name__"] for r in self.query(f"group by (__name__) ({SPAN_COUNTERS})"))

    def accepted_spans(self, name: str) -> dict[str, float]:
        result = self.query(f'sum by (receiver, transport) ({name}{{job="jaeger"}})')
        return {f"{r['metric'].get('receiver')}/{r['metric'].get('transport')}": float(r["value"][1]) for r in result}

    def wait_accepted(self, name: str, stored: int, timeout: float) -> dict[str, float]:
        """Until Prometheus's scrape of Jaeger counts `stored` spans accepted over OTLP/HTTP (or time runs out)."""
        deadline = time.monotonic() + timeout
        while True:
            accepted = self.accepted_spans(name)
            if accepted.get("otlp/http") == stored or time.monotonic() > deadline:
                return accepted
            time.sleep(0.5)

    def selectors(self, expr: str) -> list[str]:
        """Every series selector of a PromQL expression, as PromQL text (from Prometheus's own parser)."""
        found: list[str] = []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if node.get("type") in ("vectorSelector", "matrixSelector"):
                    matchers = ", ".join(f'{m["name"]}{m["type"]}{json.dumps(m["value"])}' for m in node["matchers"])
                    found.append(f"{{{matchers}}}")
                    return
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(self.prom("/api/v1/parse_query", query=expr))
        return found

    def meta_alerts(self) -> dict[str, dict[str, Any]]:
        """Jaeger's meta-alerts as Prometheus evaluates them, with the series names each selector matches."""
        rules = {r["name"]: r for g in self.prom("/api/v1/rules")["groups"] for r in g["rules"]}
        out: dict[str, dict[str, Any]] = {}
        for name in JAEGER_RULES:
            rule = rules.get(name)
            if rule is None:
                out[name] = {"health": "missing", "lastError": f"{name} is not loaded", "selects": {}}
                continue
            selects = {sel: sorted({r["metric"].get("__name__", "") + "{service=" + r["metric"].get("service", "")
                                    + "}" for r in self.query(f"group by (__name__, service) ({sel})")})
                       for sel in self.selectors(rule["query"])}
            out[name] = {"health": rule["health"], "lastError": rule.get("lastError", ""),
                         "lastEvaluation": rule.get("lastEvaluation"), "query": rule["query"], "selects": selects}
        return out

    def jaeger_log_problems(self) -> list[str]:
        """Jaeger's own JSON log lines at warn level or above, as "level: message (error)"."""
        problems = []
        for line in self.procs["jaeger"].log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # the version banner of Go's standard logger
            if entry.get("level") not in ("debug", "info"):
                problems.append(f"{entry.get('level')}: {entry.get('msg')} ({entry.get('error', '')})")
        return problems

    # -- everything ---------------------------------------------------------------------------------

    def measure(self, requests: int, collect_timeout: float = 30) -> Measurement:
        """Send `requests` requests, then read Jaeger and Prometheus."""
        # Each request leaves a trace, and so does each tag lookup (jaeger_query traces its own API):
        # past max_traces the in-memory store drops the oldest, which would read as requests not traced.
        if 2 * requests + 100 > self.settings.jaeger_max_traces:
            raise ValueError(f"{requests} requests do not fit in jaegerMaxTraces={self.settings.jaeger_max_traces}")
        started = time.monotonic()
        sent = self.send(requests)
        sent_at = time.monotonic()
        traces = self.collect(sent, collect_timeout)
        collected_at = time.monotonic()
        lookups = {s.request_id: self.lookup(s.request_id) for s in sent}
        looked_up_at = time.monotonic()
        names = self.span_metric_names()
        accepted_name = next((n for n in names if n.startswith("otelcol_receiver_accepted_spans")), "")
        stored = self.spans_stored()
        accepted = self.wait_accepted(accepted_name, sum(stored.values()), 15) if accepted_name else {}
        stored = self.spans_stored()
        time.sleep(2.5)  # two more rule evaluations on the data just scraped
        return Measurement(
            sent=sent, traces=traces, lookups=lookups, dependencies=self.dependencies(), spans_stored=stored,
            services=sorted(self.jaeger_get("/api/services") or []), accepted_spans=accepted, span_metric_names=names, meta_alerts=self.meta_alerts(),
            listeners=self.listeners, listening=listening_sockets(self.procs["jaeger"].popen.pid),
            jaeger_log_problems=self.jaeger_log_problems(),
            seconds={"traffic": round(sent_at - started, 2),
                     "until_all_traces_in_jaeger": round(collected_at - sent_at, 2),
                     "tag_lookups": round(looked_up_at - collected_at, 2)})
