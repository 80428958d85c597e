"""The rehearsal: the stack's declared containers started with podman as `pulumi up` would, then validated.

Order and waiting follow the engine: every container starts once the containers it depends on
are created (and healthy, where they were created with `wait=True`), independent ones at the same
time. Each container is created with its translated settings, receives its uploads (a tar copied
to "/" as the provider sends it), is started, and is checked against what it declared
(`podman inspect`). Then the runbook's validate phase runs against it (`rehearsal.checks`).
What it creates carries the stack's names (`<stack>-...` containers and network, `<stack>_...`
volumes); it removes exactly those, before and after.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config.alertmanager import OPS_CRITICAL, PAGERDUTY
from config.settings import PROJECT_DIR, load_stack
from rehearsal import checks
from rehearsal.engine import EngineError, Podman
from rehearsal.health import HEALTHY, HealthMonitor
from rehearsal.program import LEFT_OUT, Declared, addresses, aliases, declare, repository
from rehearsal.translate import ContainerRun, TranslationError, network_args, translate_container, upload_tar, volume_args

LOCK = Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp") / "observability-rehearsal.lock"


def log(message: str) -> None:
    print(f"rehearsal: {message}", file=sys.stderr, flush=True)


@dataclass
class Outcome:
    """What happened to one declared container."""

    state: str = "pending"  # running, exited, refused, not created, left out, failed
    detail: str = ""
    image: str = ""
    mismatches: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False  # created (and healthy when the program waits for it)


class Rehearsal:
    def __init__(self, declared: Declared, engine: Podman, out: Path) -> None:
        self.d, self.engine, self.out = declared, engine, out
        self.runs: dict[str, ContainerRun] = {}
        self.monitors: dict[str, HealthMonitor] = {}
        self.outcomes = {name: Outcome() for name in declared.order}
        self.notes: set[str] = set()
        self.all_started = 0.0

    # --- names ---------------------------------------------------------------------------------

    def container_name(self, name: str) -> str:
        return self.d.containers[name].inputs["name"]

    def owned(self) -> tuple[list[str], str, list[str]]:
        """Containers, network and volumes this rehearsal creates; all carry the stack's prefix."""
        containers = [self.container_name(n) for n in self.d.order]
        network = self.d.network.inputs["name"]
        volumes = [v.inputs["name"] for v in self.d.volumes]
        prefix = (f"{self.d.stack}-", f"{self.d.stack}_")
        for name in [*containers, network, *volumes]:
            if not name.startswith(prefix):
                raise ValueError(f"{name!r} does not carry the stack prefix {self.d.stack!r}: refusing to manage it")
        return containers, network, volumes

    def clean(self) -> None:
        containers, network, volumes = self.owned()
        for name in containers:
            if self.engine.exists("container", name):
                self.engine.run("rm", "--force", "--volumes", "--time", "0", name)
        if self.engine.exists("network", network):
            self.engine.run("network", "rm", "--force", network)
        for name in volumes:
            if self.engine.exists("volume", name):
                self.engine.run("volume", "rm", "--force", name)

    # --- creation ------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Translate every container; decide what runs, what is left out and what the engine would refuse."""
        for name in self.d.order:
            outcome = self.outcomes[name]
            outcome.image = self.d.image_of(name)
            if self.d.stand_in_tool(name) == "":
                outcome.state, outcome.detail = "left out", f"{repository(outcome.image)}: {LEFT_OUT}"
                continue
            if not self.engine.exists("image", outcome.image):
                outcome.state, outcome.detail = "failed", f"image {outcome.image} missing: run scripts/images.sh"
                continue
            try:
                run = translate_container(name, self.d.containers[name].inputs, outcome.image)
            except TranslationError as exc:
                outcome.state, outcome.detail = "refused", str(exc)
                continue
            self.runs[name] = run
            self.notes |= set(run.notes)

    def ports_free(self) -> list[str]:
        busy = []
        for name, run in self.runs.items():
            for port in run.expect.get("ports", []):
                with socket.socket() as s:
                    try:
                        s.bind((port["ip"], port["external"]))
                    except OSError:
                        busy.append(f"{port['ip']}:{port['external']} (for {name}) is already in use on this host")
        return busy

    def create_network_and_volumes(self) -> None:
        self.engine.run(*network_args(self.d.network.name, self.d.network.inputs))
        for volume in self.d.volumes:
            self.engine.run(*volume_args(volume.name, volume.inputs))

    def start_all(self) -> None:
        threads = [threading.Thread(target=self._create, args=(name,), name=f"create-{name}", daemon=True)
                   for name in self.d.order]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _create(self, name: str) -> None:
        outcome = self.outcomes[name]
        try:
            if name not in self.runs:
                return  # left out, refused or failed in prepare()
            for dep in sorted(self.d.depends[name]):
                dep_outcome = self.outcomes[dep]
                dep_outcome.done.wait()
                if dep_outcome.state == "left out":
                    self.notes.add(f"{name} started without waiting for {dep}, which is left out")
                elif not dep_outcome.ok:
                    outcome.state = "not created"
                    outcome.detail = f"waits for {dep}: {dep_outcome.detail or dep_outcome.state}"
                    return
            run = self.runs[name]
            began = time.monotonic()
            self.engine.run(*run.create_argv())
            for upload in run.uploads:
                self.engine.run("cp", "--archive=false", "-", f"{run.name}:/", data=upload_tar(upload))
            self.engine.run("start", run.name)
            started = time.monotonic()
            outcome.state = "running"
            if run.healthcheck is not None:
                monitor = self.monitors[name] = HealthMonitor(self.engine, run.name, run.healthcheck)
                monitor.start(started)
                if run.wait:
                    status = monitor.wait(run.wait_timeout)
                    if status != HEALTHY:
                        outcome.detail = f"not healthy within waitTimeout {run.wait_timeout:g} s ({status})"
                        return
            outcome.ok = True
            log(f"{run.name}: created in {time.monotonic() - began:.1f} s"
                + (" (healthy)" if run.wait else ""))
        except EngineError as exc:
            outcome.state, outcome.detail = "failed", str(exc)
        finally:
            outcome.done.set()

    # --- what ran against what was declared ------------------------------------------------------

    def verify(self) -> None:
        for name, run in self.runs.items():
            info = self.engine.inspect("container", run.name)
            if info is not None:
                self.outcomes[name].mismatches = mismatches(run, info)

    def container_states(self) -> dict[str, dict[str, Any]]:
        states = {}
        for name in self.d.order:
            outcome = self.outcomes[name]
            entry: dict[str, Any] = {"container": self.container_name(name), "image": outcome.image}
            if name in self.runs and outcome.state not in ("refused", "not created", "failed"):
                info = self.engine.inspect("container", self.runs[name].name)
                if info is not None:
                    st = info["State"]
                    entry["state"] = st["Status"]
                    if st["Status"] != "running":
                        entry["exit_code"] = st["ExitCode"]
                    entry["restarts"] = info.get("RestartCount", 0)
                    if st.get("OOMKilled"):
                        entry["oom_killed"] = True
                    if st["Status"] == "running":
                        entry["memory"] = self.memory(self.runs[name].name)
                entry["health"] = self.monitors[name].summary()["health"] if name in self.monitors else "none declared"
                if name in self.monitors and self.monitors[name].summary()["healthy_after_s"] is not None:
                    entry["healthy_after_s"] = self.monitors[name].summary()["healthy_after_s"]
            else:
                entry["state"] = outcome.state
            if outcome.detail:
                entry["detail"] = outcome.detail
            if outcome.mismatches:
                entry["declared_but_not_applied"] = outcome.mismatches
            states[name] = entry
        return states

    def memory(self, container: str) -> str | None:
        """Memory in use against the declared limit, as `podman stats` reads it from the cgroup."""
        done = self.engine.run("stats", "--no-stream", "--format", "json", container, check=False)
        try:
            return json.loads(done.stdout)[0]["mem_usage"]
        except (ValueError, LookupError, TypeError):
            return None

    def save_logs(self) -> None:
        logs = self.out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for run in self.runs.values():
            if self.engine.exists("container", run.name):
                (logs / f"{run.name}.log").write_text(self.engine.logs(run.name))

    def stop_monitors(self) -> None:
        for monitor in self.monitors.values():
            monitor.stop()


def mismatches(run: ContainerRun, info: dict[str, Any]) -> list[str]:
    """Declared settings `podman inspect` does not show: the translation did not carry them."""
    found = []
    cfg, host = info["Config"], info["HostConfig"]

    def differs(what: str, declared: Any, actual: Any) -> None:
        if declared != actual:
            found.append(f"{what}: declared {declared!r}, container has {actual!r}")

    for key, want in run.expect.items():
        if key == "Name":
            differs(key, want, info["Name"].lstrip("/"))
        elif key == "Config.Cmd":
            differs(key, want, cfg.get("Cmd"))
        elif key == "Config.Entrypoint":
            differs(key, want, cfg.get("Entrypoint"))
        elif key == "Config.Env ⊇":
            missing = [e for e in want if e not in (cfg.get("Env") or [])]
            if missing:
                found.append(f"env missing: {[m.split('=', 1)[0] for m in missing]}")
        elif key == "Config.User":
            differs(key, want, cfg.get("User"))
        elif key == "HostConfig.Memory":
            differs(key, want, host.get("Memory"))
        elif key == "capabilities":
            effective = sorted(c.removeprefix("CAP_") for c in info.get("EffectiveCaps") or [])
            wanted = sorted(c.removeprefix("CAP_") for c in want["adds"]) if "ALL" in want["drops"] else None
            if wanted is not None:
                differs("effective capabilities", wanted, effective)
        elif key == "HostConfig.SecurityOpt ∋":
            if not any(want in opt for opt in host.get("SecurityOpt") or []):
                found.append(f"security option {want} not set")
        elif key == "HostConfig.ReadonlyRootfs":
            differs(key, want, host.get("ReadonlyRootfs"))
        elif key == "HostConfig.Tmpfs":
            differs(key, want, sorted((host.get("Tmpfs") or {}).keys()))
        elif key == "HostConfig.RestartPolicy.Name":
            differs(key, want, (host.get("RestartPolicy") or {}).get("Name"))
        elif key == "HostConfig.LogConfig.Type":
            differs(key, want, (host.get("LogConfig") or {}).get("Type"))
        elif key == "Config.Labels ⊇":
            labels = cfg.get("Labels") or {}
            for k, v in want.items():
                differs(f"label {k}", v, labels.get(k))
        elif key == "networks":
            nets = info["NetworkSettings"].get("Networks") or {}
            differs("networks", sorted(want), sorted(nets))
            for net, names in want.items():
                missing = set(names) - set((nets.get(net) or {}).get("Aliases") or [])
                if missing:
                    found.append(f"network {net}: aliases {sorted(missing)} missing")
        elif key == "ports":
            bindings = host.get("PortBindings") or {}
            for p in want:
                got = bindings.get(f"{p['internal']}/{p['protocol']}") or []
                if {"HostIp": p["ip"], "HostPort": str(p["external"])} not in got:
                    found.append(f"port {p['ip']}:{p['external']}->{p['internal']}/{p['protocol']}: bound {got}")
        elif key == "mounts":
            mounts = {(m.get("Name") or m.get("Source"), m["Destination"], not m.get("RW", True))
                      for m in info.get("Mounts") or []}
            for m in want:
                if tuple(m) not in mounts:
                    found.append(f"mount {m[0]} on {m[1]} (read-only {m[2]}) missing: has {sorted(mounts)}")
        elif key == "Config.Healthcheck.Test":
            differs(key, want, (cfg.get("Healthcheck") or {}).get("Test"))
        else:
            found.append(f"no verification for {key}")
    return found


def go_seconds(duration: str) -> float:
    from rehearsal.translate import go_duration

    return go_duration("settings", "duration", duration)


def rule_files(declared: Declared) -> dict[str, str]:
    """The rule files Prometheus loads (its config's rule_files globs) among the files uploaded into it."""
    import fnmatch

    import yaml

    uploads = {u["file"]: u["content"] for u in declared.containers["prometheus"].inputs.get("uploads") or []}
    command = declared.containers["prometheus"].inputs.get("command") or []
    config_path = next((a.split("=", 1)[1] for a in command if a.startswith("--config.file=")),
                       "/etc/prometheus/prometheus.yml")
    globs = (yaml.safe_load(uploads.get(config_path, "")) or {}).get("rule_files") or []
    base = str(Path(config_path).parent)
    globs = [g if g.startswith("/") else f"{base}/{g}" for g in globs]
    return {path: text for path, text in uploads.items() if any(fnmatch.fnmatch(path, g) for g in globs)}


def stack_outputs_file(declared: Declared, out: Path) -> Path:
    """The stack outputs as `pulumi stack output --json` would print them, secrets left out."""
    doc = {k: v for k, v in declared.outputs.items() if k not in declared.secret_outputs}
    path = out / "stack-outputs.json"
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return path


def stand_in_versions(declared: Declared) -> dict[str, Any]:
    """Which pinned build each third-party stand-in holds, against the tag the stack pins."""
    from tests.tools import pinned_tools

    tools = pinned_tools()
    found = {}
    for name in declared.order:
        tool = declared.stand_in_tool(name)
        if tool:
            ref = declared.image_of(name)
            tag = ref.rsplit(":", 1)[1]
            binary = tools[tool].version
            found[ref] = {"holds": f"{tool} {binary}", "tag_matches_binary": tag.lstrip("v") == binary.lstrip("v")}
    return found


def rehearse(stack: str = "dev", keep: bool = False, out: Path | None = None, alert_timeout_s: float = 330) -> int:
    """Run the whole rehearsal; prints one JSON object on stdout; 0 only when every check passed."""
    began = time.monotonic()
    out = out or PROJECT_DIR / "out" / "rehearsal" / stack
    out.mkdir(parents=True, exist_ok=True)
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    lock = open(LOCK, "w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # one rehearsal per host: the stack's host ports are fixed

    settings = load_stack(stack)
    if (settings.alerting_enabled and settings.alert_receivers_external) or settings.backup_s3_bucket:
        # A rehearsal talks to 127.0.0.1 only: no notification to Slack or PagerDuty, no upload to S3.
        raise SystemExit(f"error: stack {stack!r} sends alerts to Slack and PagerDuty or backups to S3; only a "
                         "stack that keeps them local (dev: the webhook receiver) is rehearsed")
    declared = declare(stack)
    engine = Podman()
    r = Rehearsal(declared, engine, out)
    results: list[checks.Check] = []
    summary: dict[str, Any] = {"stack": stack}
    try:
        log(f"cleaning what an earlier rehearsal of {stack} left")
        r.clean()
        r.prepare()
        busy = r.ports_free()
        if busy:
            raise SystemExit("error: " + "; ".join(busy))
        r.create_network_and_volumes()
        log(f"starting {len(r.runs)} containers in the program's order: {', '.join(n for n in declared.order if n in r.runs)}")
        r.start_all()
        r.all_started = time.monotonic()
        r.verify()
        started_in = round(time.monotonic() - began, 1)

        running = {n for n, o in r.outcomes.items() if o.ok}
        endpoints = declared.outputs.get("health_endpoints", {})
        targets_file = stack_outputs_file(declared, out)
        gateway = declared.outputs["urls"]["mockup-gateway"]
        urls = declared.outputs["urls"]

        log("validate: health-check-all")
        results.append(checks.health_check_all(targets_file, sorted(s for s in endpoints if s in running)))
        object_id, body = None, b""
        if "mockup-gateway" in running:
            log("validate: upload through the gateway")
            check, object_id, body = checks.upload_roundtrip(gateway, declared.outputs["gateway_api_key"])
            results.append(check)
        if "prometheus" in running:
            log("validate: Prometheus targets")
            results.append(checks.prometheus_targets(urls["prometheus"], running, aliases(declared), timeout_s=90))
        if "prometheus" in running:
            results.append(checks.prometheus_rules(urls["prometheus"], rule_files(declared)))
        probe = next((r.container_name(n) for n in ("webhook-receiver", "backup", "mime-server") if n in running), None)
        if probe:
            log("validate: every address the configs name")
            results.append(checks.addresses_answer(engine, probe, addresses(declared), aliases(declared), running))
        if "jaeger" in running:
            log("validate: traces in Jaeger")
            results.append(checks.jaeger_traces(urls["jaeger"]))
        if "prometheus" in running:
            # Long enough after the last container came up for scrapes and two rule evaluations to see it.
            settle = 2 * go_seconds(settings.scrape_interval) + 2 * go_seconds(settings.evaluation_interval)
            time.sleep(max(0.0, settle - (time.monotonic() - r.all_started)))
            log("validate: no alert on the healthy stack")
            left_out = {n for n, o in r.outcomes.items() if o.state == "left out"}
            results.append(checks.quiet_when_healthy(urls["prometheus"], left_out))
        if "backup" in running and object_id:
            log("validate: backup archive")
            results.append(checks.backup_archive(engine, r.container_name("backup"), body))
        if {"alertmanager", "webhook-receiver"} <= running:
            receiver = r.container_name("webhook-receiver")
            log("validate: fire-test-alert")
            results.append(checks.fire_test_alert(engine, receiver, urls["alertmanager"], f"/{PAGERDUTY}",
                                                  timeout_s=120))
            if {"prometheus", "mime-server"} <= running:
                timings = (f"scrape {settings.scrape_interval}, evaluation {settings.evaluation_interval}, "
                           f"for {settings.alert_down_for}, group_wait {settings.alert_group_wait} (the stack's own)")
                log(f"validate: stop mime-server, wait for MimeServerDown ({timings})")
                results.append(checks.mime_server_down(engine, r.container_name("mime-server"), receiver,
                                                       f"/{OPS_CRITICAL}", f"/{PAGERDUTY}", alert_timeout_s, timings))
                engine.run("start", r.container_name("mime-server"))
                r.monitors["mime-server"].start(time.monotonic())
                r.monitors["mime-server"].wait(120)

        names = [r.runs[n].name for n in r.runs if r.outcomes[n].state != "refused"
                 and engine.exists("container", r.runs[n].name)]
        results.append(checks.write_errors(engine, names))
        results.append(checks.root_writes(engine, {r.runs[n].name: [u.path for u in r.runs[n].uploads]
                                                   for n in r.runs if engine.exists("container", r.runs[n].name)}))
        states = r.container_states()
        bad = {n: s for n, s in states.items()
               if s["state"] not in ("running", "left out")
               or s.get("health") not in (HEALTHY, "none declared", None) or s.get("declared_but_not_applied")
               or s.get("restarts") or s.get("oom_killed")}
        results.insert(0, checks.Check("containers_run_as_declared", not bad,
                                       f"{sum(1 for s in states.values() if s['state'] == 'running')} running, "
                                       f"{sum(1 for s in states.values() if s['state'] == 'left out')} left out, "
                                       f"{len(bad)} not as declared", {"not_as_declared": sorted(bad)}))
        summary |= {
            "passed": all(c.passed for c in results),
            "seconds": {"containers_started": started_in, "total": round(time.monotonic() - began, 1)},
            "containers": states,
            "checks": {c.name: c.as_dict() for c in results},
            "left_out": {n: s["detail"] for n, s in states.items() if s["state"] == "left out"},
            "stand_ins": stand_in_versions(declared),
            "not_carried_by_podman": sorted(r.notes),
        }
        r.save_logs()
    finally:
        r.stop_monitors()
        if not keep:
            log("removing what this rehearsal created")
            r.clean()
    summary.setdefault("passed", False)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0 if summary["passed"] else 1
