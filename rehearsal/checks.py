"""The runbook's validate phase against the rehearsed stack, each check as a user would run it.

Every check returns a `Check`: pass or fail, the figure it measured, and what it saw. Commands
are the documented ones (`bash automation/health-check-all.sh`, `python -m automation
fire-test-alert`, `python -m automation verify|restore`); HTTP goes to the published ports on
127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import httpx

from config.settings import PROJECT_DIR
from rehearsal.engine import Podman

# Words a process uses when a write is refused: under a read-only root, on a volume the user
# cannot write, or on a full tmpfs.
WRITE_ERRORS = re.compile(r"read-only file system|permission denied|erofs|eacces|operation not permitted|"
                          r"no space left on device|cannot create|unable to create|failed to create", re.I)


@dataclass
class Check:
    name: str
    passed: bool
    figure: Any
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"pass": self.passed, "figure": self.figure, **self.detail}


def until(deadline_s: float, probe: Callable[[], Any], every: float = 1.0) -> Any:
    """`probe()` until it returns something truthy or the deadline passes; returns the last result."""
    end = time.monotonic() + deadline_s
    while True:
        result = probe()
        if result or time.monotonic() >= end:
            return result
        time.sleep(every)


def http() -> httpx.Client:
    return httpx.Client(timeout=10.0, trust_env=False)


def python_env() -> dict[str, str]:
    return os.environ | {"PYTHONPATH": str(PROJECT_DIR), "PYTHON": sys.executable}


# --- runbook step 5: validate all services ----------------------------------------------------


def health_check_all(targets_file: Path, services: list[str]) -> Check:
    """`bash automation/health-check-all.sh` with the rehearsal's stack outputs, for the services running."""
    argv = ["bash", "automation/health-check-all.sh", "--json", "--timeout", "5s"]
    for service in services:
        argv += ["--service", service]
    done = subprocess.run(argv, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120,
                          env=python_env() | {"HEALTH_TARGETS": str(targets_file)})
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        return Check("health_check_all", False, f"exit {done.returncode}", {"stderr": done.stderr[-800:]})
    healthy = [r["service"] for r in report.get("results", []) if r.get("healthy")]
    return Check("health_check_all", done.returncode == 0 and len(healthy) == len(services),
                 f"{len(healthy)}/{len(services)} healthy (exit {done.returncode})",
                 {"command": f"HEALTH_TARGETS={targets_file} " + " ".join(argv),
                  "results": {r["service"]: r["status"] for r in report.get("results", [])}})


def upload_roundtrip(gateway: str, api_key: str) -> tuple[Check, str | None, bytes]:
    """An upload through the gateway with the generated key reads back byte for byte."""
    body = b"%PDF-1.4\n% rehearsal upload " + os.urandom(16).hex().encode() + b"\n%%EOF\n"
    headers = {"X-API-Key": api_key}
    with http() as client:
        created = client.post(f"{gateway}/v1/files", params={"filename": "rehearsal.pdf"}, content=body,
                              headers=headers)
        if created.status_code != 201:
            return Check("upload_roundtrip", False, f"HTTP {created.status_code}", {"answer": created.text[:300]}), \
                None, body
        object_id = created.json()["id"]
        got = client.get(f"{gateway}/v1/files/{object_id}", headers=headers)
    same = got.status_code == 200 and got.content == body
    return Check("upload_roundtrip", same, f"{len(body)} bytes {'identical' if same else 'DIFFERENT'}",
                 {"upload": created.status_code, "read_back": got.status_code,
                  "mime_type": created.json().get("mime_type"), "id": object_id}), object_id, body


def prometheus_targets(prometheus: str, running: set[str], aliases: dict[str, str], timeout_s: float) -> Check:
    """Every scrape target of a running service is up, addressed by that service's network alias."""
    def fetch() -> dict[str, dict[str, str]] | None:
        try:
            with http() as client:
                targets = client.get(f"{prometheus}/api/v1/targets").json()["data"]["activeTargets"]
        except (httpx.HTTPError, KeyError, ValueError):
            return None
        return {t["labels"]["job"]: {"host": urlsplit(t["scrapeUrl"]).hostname or "", "health": t["health"],
                                     "error": t.get("lastError", "")} for t in targets}

    aliases = aliases | {"localhost": "prometheus", "127.0.0.1": "prometheus"}  # its own job scrapes itself

    def ours(seen: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        return {job: s for job, s in seen.items() if aliases.get(s["host"]) in running}

    def all_up() -> dict[str, dict[str, str]] | None:
        seen = fetch()
        return seen if seen and ours(seen) and all(s["health"] == "up" for s in ours(seen).values()) else None

    seen = until(timeout_s, all_up, every=2.0) or fetch() or {}
    mine = ours(seen)
    up = [job for job, s in mine.items() if s["health"] == "up"]
    no_alias = sorted({s["host"] for s in seen.values() if s["host"] not in aliases})
    left_out = {job: s["host"] for job, s in seen.items() if s["host"] in aliases and aliases[s["host"]] not in running}
    return Check("prometheus_scrapes_by_alias", bool(mine) and len(up) == len(mine) and not no_alias,
                 f"{len(up)}/{len(mine)} targets of running services up",
                 {"targets": {job: f"{s['host']}: {s['health']}" + (f" ({s['error']})" if s["error"] else "")
                              for job, s in sorted(mine.items())},
                  "targets_of_services_not_rehearsed": left_out, "hosts_that_are_no_alias": no_alias})


def prometheus_rules(prometheus: str, uploaded: dict[str, str], timeout_s: float = 60) -> Check:
    """Prometheus loaded every rule group of the rule files uploaded into it, from those paths, without errors."""
    import yaml

    declared = {(path, g["name"]) for path, text in uploaded.items()
                for g in (yaml.safe_load(text) or {}).get("groups") or []}

    def look() -> list[dict[str, Any]] | None:
        try:
            with http() as client:
                groups = client.get(f"{prometheus}/api/v1/rules").json()["data"]["groups"]
        except (httpx.HTTPError, KeyError, ValueError):
            return None
        evaluated = all(r.get("health") != "unknown" for g in groups for r in g["rules"])
        return groups if groups and evaluated else None

    groups = until(timeout_s, look, every=2.0) or []
    loaded = {(g["file"], g["name"]) for g in groups}
    failing = {r["name"]: r.get("lastError", "") for g in groups for r in g["rules"] if r.get("health") == "err"}
    missing = sorted(f"{name} ({path})" for path, name in declared - loaded)
    rules = sum(len(g["rules"]) for g in groups)
    return Check("prometheus_loads_uploaded_rules", bool(declared) and not missing and not failing,
                 f"{len(loaded & declared)}/{len(declared)} groups, {rules} rules, {len(failing)} failing",
                 {"missing_groups": missing, "failing_rules": failing})


def quiet_when_healthy(prometheus: str, left_out: set[str]) -> Check:
    """With every rehearsed service up and no fault injected, Prometheus has no alert pending or firing
    (alerts about the services left out of the rehearsal are listed apart)."""
    try:
        with http() as client:
            alerts = client.get(f"{prometheus}/api/v1/alerts").json()["data"]["alerts"]
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        return Check("no_alerts_on_a_healthy_stack", False, f"cannot read alerts: {exc}", {})

    def about_left_out(a: dict[str, Any]) -> bool:
        return bool({a["labels"].get("service"), a["labels"].get("job")} & left_out)

    unexpected = [f"{a['labels']['alertname']}{{service={a['labels'].get('service', '')}}} {a['state']} "
                  f"since {a.get('activeAt', '')}" for a in alerts if not about_left_out(a)]
    expected = sorted({f"{a['labels']['alertname']}{{{a['labels'].get('service') or a['labels'].get('job')}}}"
                       for a in alerts if about_left_out(a)})
    return Check("no_alerts_on_a_healthy_stack", not unexpected, f"{len(unexpected)} alerts pending or firing",
                 {"alerts": unexpected, "about_services_left_out": expected})


def addresses_answer(engine: Podman, probe_from: str, wanted: dict[str, set[tuple[str, int]]],
                     aliases: dict[str, str], running: set[str]) -> Check:
    """Every host:port a container's config, env or command names is a network alias of the stack,
    and, where that service runs, answers on that port from inside the network (a TCP connect made
    from `probe_from`, a container of the stack with Python)."""
    unknown: dict[str, list[str]] = {}
    silent: dict[str, list[str]] = {}
    answered, not_rehearsed = 0, 0
    script = ("import socket,sys\nfor a in sys.argv[1:]:\n h,p=a.rsplit(':',1)\n"
              " try:\n  socket.create_connection((h,int(p)),3).close(); print(a,'ok')\n"
              " except OSError as e:\n  print(a,type(e).__name__)")
    targets = sorted({f"{h}:{p}" for pairs in wanted.values() for h, p in pairs if aliases.get(h) in running})
    done = engine.run("exec", probe_from, "python", "-c", script, *targets, check=False)
    result = dict(line.split(" ", 1) for line in done.stdout.decode().splitlines() if " " in line)
    for consumer, pairs in sorted(wanted.items()):
        for host, port in sorted(pairs):
            where = f"{host}:{port}"
            if host not in aliases:
                unknown.setdefault(consumer, []).append(where)
            elif aliases[host] not in running:
                not_rehearsed += 1
            elif result.get(where) == "ok":
                answered += 1
            else:
                silent.setdefault(consumer, []).append(f"{where} ({result.get(where, 'not probed')})")
    return Check("configs_address_aliases_that_answer", not unknown and not silent,
                 f"{answered} answer, {not_rehearsed} not rehearsed, {sum(map(len, unknown.values()))} no alias, "
                 f"{sum(map(len, silent.values()))} silent",
                 {"no_such_alias": unknown, "not_answering": silent, "probed_from": probe_from})


# --- traces ------------------------------------------------------------------------------------


def jaeger_traces(jaeger: str, timeout_s: float = 60) -> Check:
    """Jaeger holds a trace that crosses the gateway and mime-server (the services' OTLP export works)."""
    def look() -> dict[str, Any] | None:
        try:
            with http() as client:
                services = client.get(f"{jaeger}/api/services").json().get("data") or []
                traces = client.get(f"{jaeger}/api/traces", params={"service": "mockup-gateway", "limit": 50,
                                                                       "lookback": "1h"}).json().get("data") or []
        except (httpx.HTTPError, ValueError):
            return None
        crossing = [t for t in traces
                    if {p["serviceName"] for p in t["processes"].values()} >= {"mockup-gateway", "mime-server"}]
        if crossing:
            return {"services": services, "traces": len(traces), "crossing": crossing}
        return None

    found = until(timeout_s, look, every=2.0)
    if not found:
        return Check("jaeger_receives_traces", False, "no trace with both services", {})
    trace = found["crossing"][0]
    return Check("jaeger_receives_traces", True,
                 f"{len(found['crossing'])} traces cross mockup-gateway -> mime-server",
                 {"services": sorted(found["services"]), "example_trace": trace["traceID"],
                  "spans_in_example": len(trace["spans"])})


# --- alerts ------------------------------------------------------------------------------------


def json_lines(engine: Podman, container: str, keep: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """The JSON objects a container logged, one a line, that `keep` accepts."""
    found = []
    for line in engine.logs(container).splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and keep(doc):
            found.append(doc)
    return found


def receiver_notifications(engine: Podman, receiver: str) -> list[dict[str, Any]]:
    """Every notification the webhook receiver logged (one JSON line each)."""
    return json_lines(engine, receiver, lambda doc: "path" in doc and isinstance(doc.get("body"), dict))


def _arrived(engine: Podman, receiver: str, path: str, alertname: str, since: float) -> dict[str, Any] | None:
    for n in receiver_notifications(engine, receiver):
        alerts = n["body"].get("alerts") or []
        if n["path"] == path and n["ts"] >= since and any(
                a["labels"].get("alertname") == alertname and a.get("status") == "firing" for a in alerts):
            return n
    return None


def fire_test_alert(engine: Podman, receiver: str, alertmanager: str, page_path: str, timeout_s: float) -> Check:
    """`python -m automation fire-test-alert` reaches the webhook receiver container (routed as a page)."""
    sent = time.time()
    done = subprocess.run([sys.executable, "-m", "automation", "fire-test-alert", "--alertmanager", alertmanager],
                          cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60, env=python_env())
    if done.returncode != 0:
        return Check("fire_test_alert", False, f"exit {done.returncode}", {"stderr": done.stderr[-500:]})
    hit = until(timeout_s, lambda: _arrived(engine, receiver, page_path, "TestAlert", sent), every=1.0)
    if not hit:
        return Check("fire_test_alert", False, f"nothing at {page_path} within {timeout_s:g} s", {})
    return Check("fire_test_alert", True, f"reached {page_path} after {hit['ts'] - sent:.1f} s",
                 {"command": "python -m automation fire-test-alert --alertmanager " + alertmanager})


def mime_server_down(engine: Podman, container: str, receiver: str, ops_path: str, page_path: str,
                     timeout_s: float, timings: str) -> Check:
    """Stopping mime-server makes MimeServerDown reach #ops-critical and PagerDuty; time from the stop."""
    engine.run("stop", "--time", "10", container)
    stopped = time.time()
    paths = {ops_path: None, page_path: None}

    def look() -> bool:
        for path in paths:
            if paths[path] is None:
                hit = _arrived(engine, receiver, path, "MimeServerDown", stopped)
                paths[path] = None if hit is None else round(hit["ts"] - stopped, 1)
        return all(v is not None for v in paths.values())

    until(timeout_s, look, every=2.0)
    got = {p: s for p, s in paths.items() if s is not None}
    return Check("mime_server_down_alert", len(got) == 2,
                 ", ".join(f"{p} after {s} s" for p, s in got.items()) or f"none within {timeout_s:g} s",
                 {"seconds_from_stop": paths, "timings": timings})


# --- backups -----------------------------------------------------------------------------------


def backup_archive(engine: Podman, container: str, object_body: bytes, timeout_s: float = 120) -> Check:
    """The backup container, restarted as a user would to back up now, writes an archive that verifies and
    restores the object just uploaded (the archive copied out and checked on the host)."""
    before = len(_backup_runs(engine, container))
    engine.run("restart", "--time", "10", container)
    runs = until(timeout_s, lambda: (r := _backup_runs(engine, container)) and len(r) > before and r, every=2.0)
    if not runs or len(runs) <= before:
        return Check("backup_archive", False, "no backup run logged", {"log": engine.logs(container)[-800:]})
    summary = runs[-1]
    archive = summary.get("archive") or summary.get("path")
    if not archive:
        return Check("backup_archive", False, "backup summary names no archive", {"summary": summary})
    with tempfile.TemporaryDirectory(prefix="rehearsal-backup-") as tmp:
        local = Path(tmp) / Path(archive).name
        engine.run("cp", f"{container}:{archive}", str(local))
        verify = subprocess.run([sys.executable, "-m", "automation", "verify", "--archive", str(local)],
                                cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120, env=python_env())
        target = Path(tmp) / "restored"
        restore = subprocess.run([sys.executable, "-m", "automation", "restore", "--archive", str(local),
                                  "--target", str(target), "--no-progress"],
                                 cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120, env=python_env())
        digest = hashlib.sha256(object_body).hexdigest()
        restored = [p for p in target.rglob("*") if p.is_file() and p.read_bytes() == object_body] \
            if restore.returncode == 0 else []
        size = local.stat().st_size
    passed = verify.returncode == 0 and restore.returncode == 0 and bool(restored)
    return Check("backup_archive", passed,
                 f"{Path(archive).name}: {size} bytes, verify exit {verify.returncode}, "
                 f"uploaded object {'restored' if restored else 'MISSING'}",
                 {"archive": archive, "object_sha256": digest,
                  "verify": verify.stdout.strip()[-300:] or verify.stderr.strip()[-300:],
                  "restored_as": [str(p.relative_to(target)) for p in restored]})


def _backup_runs(engine: Podman, container: str) -> list[dict[str, Any]]:
    """The summary line of each backup run (`backup-schedule` prints one JSON object per run)."""
    return json_lines(engine, container, lambda doc: "archive" in doc or "path" in doc)


# --- what the containers did -------------------------------------------------------------------


def write_errors(engine: Podman, containers: list[str]) -> Check:
    """No container's log shows a refused write (read-only root, a volume it cannot write, a full tmpfs)."""
    found: dict[str, list[str]] = {}
    for name in containers:
        lines = [line.strip()[:300] for line in engine.logs(name).splitlines() if WRITE_ERRORS.search(line)]
        if lines:
            found[name] = lines[:5]
    return Check("logs_free_of_write_errors", not found, f"{len(found)}/{len(containers)} containers with write errors",
                 {"lines": found})


# What the engine itself writes into a container's root before it starts (Docker keeps these in its
# init layer): the /etc files it bind-mounts, and podman 4.3's passwd/group entry for a uid the image
# does not list (Docker adds none; podman 4.3 has no switch to stop it).
ENGINE_WRITES = {"/etc", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/etc/passwd", "/etc/group"}


def root_writes(engine: Podman, uploads: dict[str, list[str]]) -> Check:
    """Each container changed nothing in its root filesystem but the files uploaded into it."""
    extra: dict[str, list[str]] = {}
    for name, paths in uploads.items():
        allowed = set(paths) | ENGINE_WRITES
        for p in paths:  # the upload's parent directories, created or touched by the copy
            parts = Path(p).parents
            allowed |= {str(q) for q in parts if str(q) != "/"}
        changed = json.loads(engine.text("diff", "--format", "json", name) or "{}")
        paths_changed = sorted(set(changed.get("changed") or []) | set(changed.get("added") or [])
                               | set(changed.get("deleted") or []))
        unexpected = [p for p in paths_changed if p not in allowed]
        if unexpected:
            extra[name] = unexpected[:10]
    return Check("root_filesystem_writes_only_uploads", not extra,
                 f"{len(extra)}/{len(uploads)} containers wrote elsewhere in their root", {"unexpected": extra})
