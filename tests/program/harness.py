"""Runs the Pulumi program under mocks and records every registration the engine would receive.

`run_program("dev")` executes `__main__.py` exactly as `pulumi up` would (Pulumi.yaml defaults
under the stack file's values, plus overrides and secrets), with a mock monitor that records
each RegisterResource request: type, name, parent, dependencies, protect and the serialized
inputs (where secrets still carry Pulumi's secret signature).
"""

from __future__ import annotations

import asyncio
import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings

from config.settings import PROJECT, PROJECT_DIR, declared_config, stack_file_values

SECRET_SIG = "4dabf18193072939515e22adb298388d"  # the key of Pulumi's secret wrapper ...
SECRET_VALUE_SIG = "1b47061264138c4ac30d75fd1eb44270"  # ... and its value
FAKE_DIGEST = "sha256:" + "ab" * 32


@dataclass
class Registration:
    """One resource as registered with the engine."""

    type: str
    name: str
    urn: str = ""
    parent: str | None = None
    dependencies: list[str] = field(default_factory=list)
    protect: bool = False
    aliases: list[str] = field(default_factory=list)  # alias URNs (the program gives whole URNs)
    inputs: dict[str, Any] = field(default_factory=dict)  # deserialized (secrets unwrapped)
    raw: dict[str, Any] = field(default_factory=dict)  # serialized (secrets wrapped with SECRET_SIG)


@dataclass
class ProgramRun:
    stack: str
    resources: list[Registration]
    outputs: dict[str, Any]
    secret_outputs: set[str] = field(default_factory=set)

    def by_type(self, type_: str) -> list[Registration]:
        return [r for r in self.resources if r.type == type_]

    def by_urn(self) -> dict[str, Registration]:
        return {r.urn: r for r in self.resources}

    @property
    def containers(self) -> dict[str, Registration]:
        return {r.name: r for r in self.by_type("docker:index/container:Container")}


class _Mocks(pulumi.runtime.Mocks):
    """Provider answers: the outputs Docker and random would compute, deterministic."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        state = dict(args.inputs)
        if args.typ == "docker:index/remoteImage:RemoteImage":
            state["imageId"] = f"{args.inputs['name']}@{FAKE_DIGEST}"
            state["repoDigest"] = state["imageId"]
        elif args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = f"generated-{args.name}-0123456789abcdef"
        elif args.typ == "docker:index/image:Image":
            state.setdefault("repoDigest", "")
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        return {}


def unwrap_secrets(value: Any) -> Any:
    """The value with Pulumi's secret wrappers replaced by what they hold."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == SECRET_VALUE_SIG:
            return unwrap_secrets(value.get("value"))
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v) for v in value]
    return value


def plain_strings(value: Any, inside_secret: bool = False) -> Iterator[str]:
    """Every string in a serialized input that is not under a secret wrapper."""
    if isinstance(value, dict):
        secret = value.get(SECRET_SIG) == SECRET_VALUE_SIG
        for k, v in value.items():
            if k != SECRET_SIG:
                yield from plain_strings(v, inside_secret or secret)
    elif isinstance(value, list):
        for v in value:
            yield from plain_strings(v, inside_secret)
    elif isinstance(value, str) and not inside_secret:
        yield value


def wrapped_secrets(run: ProgramRun, values: list[str]) -> set[str]:
    """The ``values`` found in the run's registered inputs, each only under a secret wrapper:
    a value in plain text anywhere fails the calling test."""
    wrapped: set[str] = set()
    for res in run.resources:
        for text in plain_strings(res.raw):
            for s in values:
                assert s not in text, f"{res.type} {res.name} carries a secret in plain text"
        blob = json.dumps(res.raw)
        wrapped |= {s for s in values if s in blob}
    return wrapped


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock monitor, keeping each RegisterResource request for the tests."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request):  # noqa: N802 (the gRPC method name)
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            raw = json_format.MessageToDict(request.object)
            self.registrations.append(Registration(
                type=request.type,
                name=request.name,
                urn=response.urn,
                parent=request.parent or None,
                dependencies=list(request.dependencies),
                protect=bool(request.protect),
                aliases=[a.urn for a in request.aliases if a.urn] + list(request.aliasURNs),
                inputs=unwrap_secrets(self.resources[response.urn].state) if response.urn in self.resources else {},
                raw=raw,
            ))
        return response


def stack_config(stack: str, overrides: dict[str, Any] | None = None,
                 secrets: dict[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """The config map the CLI hands the program, and which keys are secret."""
    values, _ = stack_file_values(stack, PROJECT_DIR)
    merged: dict[str, Any] = {k: v["default"] for k, v in declared_config().items() if "default" in v}
    merged |= values | (overrides or {}) | (secrets or {})
    config = {f"{PROJECT}:{k}": (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in merged.items()}
    return config, [f"{PROJECT}:{k}" for k in (secrets or {})]


def run_program(stack: str, overrides: dict[str, Any] | None = None,
                secrets: dict[str, str] | None = None) -> ProgramRun:
    """Run __main__.py for `stack` under mocks; raises what the program raises."""
    # Earlier tests in the same process (asyncio servers, uvloop) may have closed or replaced the
    # main thread's loop; Pulumi's runtime needs a current default loop.
    asyncio.set_event_loop_policy(None)
    asyncio.set_event_loop(asyncio.new_event_loop())
    monitor = RecordingMonitor(_Mocks())
    pulumi_settings.set_root_resource(None)  # a fresh Stack per run
    pulumi_mocks.set_mocks(monitor.mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    config, secret_keys = stack_config(stack, overrides, secrets)
    pulumi.runtime.set_all_config(config, secret_keys)

    outputs: dict[str, Any] = {}
    secret_outputs: set[str] = set()
    global last_monitor
    last_monitor = monitor

    @pulumi.runtime.test
    def _run():
        runpy.run_path(str(Path(PROJECT_DIR) / "__main__.py"), run_name="__main__")
        root = pulumi_settings.get_root_resource()
        exported = getattr(root, "outputs", {}) if root is not None else {}
        keys = sorted(exported)
        values = [pulumi.Output.from_input(exported[k]) for k in keys]
        flags = [pulumi.Output.from_input(v.is_secret()) for v in values]

        def keep(args: list[Any]) -> None:
            outputs.update(dict(zip(keys, args[: len(keys)])))
            secret_outputs.update(k for k, flag in zip(keys, args[len(keys):]) if flag)

        return pulumi.Output.all(*values, *flags).apply(keep)

    _run()
    return ProgramRun(stack=stack, resources=list(monitor.registrations), outputs=outputs,
                      secret_outputs=secret_outputs)


last_monitor: RecordingMonitor | None = None  # the monitor of the latest run, also when it raised


CONTAINER = "docker:index/container:Container"


def engine_urn(run: ProgramRun, reg: Registration) -> str:
    """The URN the Pulumi engine gives `reg`: every ancestor's type below the root stack, in order.

    (The mock monitor's own URNs carry the parent's type only.)
    """
    by_urn = run.by_urn()
    chain = [reg.type]
    parent = reg.parent
    while parent and parent in by_urn:
        chain.append(by_urn[parent].type)
        parent = by_urn[parent].parent
    return f"urn:pulumi:{run.stack}::{PROJECT}::{'$'.join(reversed(chain))}::{reg.name}"


WORKLOADS = ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet", "kubernetes:apps/v1:DaemonSet")


def _graph(run: ProgramRun, types: tuple[str, ...]) -> dict[str, set[str]]:
    """Name -> names of the resources of `types` it waits for (directly or through a component)."""
    by_urn = run.by_urn()
    children: dict[str, list[Registration]] = {}
    for r in run.resources:
        if r.parent:
            children.setdefault(r.parent, []).append(r)

    def under(urn: str) -> set[str]:
        found: set[str] = set()
        for child in children.get(urn, []):
            if child.type in types:
                found.add(child.name)
            found |= under(child.urn)
        return found

    graph: dict[str, set[str]] = {}
    for c in (r for r in run.resources if r.type in types):
        deps: set[str] = set()
        for dep in c.dependencies:
            target = by_urn.get(dep)
            if target is None:
                continue
            if target.type in types:
                deps.add(target.name)
            elif target.type.startswith("observability:"):
                deps |= under(dep)
        graph[c.name] = deps - {c.name}
    return graph


def container_graph(run: ProgramRun) -> dict[str, set[str]]:
    """Container name -> names of the containers it waits for (directly or through a component)."""
    return _graph(run, (CONTAINER,))


def workload_graph(run: ProgramRun) -> dict[str, set[str]]:
    """Kubernetes workload name -> names of the workloads it waits for (their rollouts are awaited)."""
    return _graph(run, WORKLOADS)


def topological_order(graph: dict[str, set[str]]) -> list[str]:
    """Kahn's algorithm; raises ValueError naming the containers of a cycle."""
    remaining = {k: set(v) for k, v in graph.items()}
    order: list[str] = []
    while remaining:
        ready = sorted(k for k, deps in remaining.items() if not deps & remaining.keys())
        if not ready:
            raise ValueError(f"dependency cycle among {sorted(remaining)}")
        for k in ready:
            order.append(k)
            del remaining[k]
    return order


def critical_path(run: ProgramRun) -> list[str]:
    """The longest chain of containers (on a cluster: workloads) that must become healthy (ready) one after another."""
    if run.containers:
        graph = container_graph(run)
        waits = {name: bool(reg.inputs.get("wait")) for name, reg in run.containers.items()}
    else:  # pulumi-kubernetes awaits every rollout unless told not to
        graph = workload_graph(run)
        waits = {r.name: (r.inputs.get("metadata", {}).get("annotations") or {}).get("pulumi.com/skipAwait") != "true"
                 for r in run.resources if r.type in WORKLOADS}
    best: dict[str, list[str]] = {}
    for name in topological_order(graph):
        longest = max((best[d] for d in graph[name] if waits.get(d)), key=len, default=[])
        best[name] = [*longest, name]
    return max((path for name, path in best.items() if waits.get(name)), key=len, default=[])


STAGING_SECRETS = {
    "slackWebhookAlerts": "https://hooks.slack.com/services/T000/B000/alerts-secret-value",
    "slackWebhookOpsCritical": "https://hooks.slack.com/services/T000/B001/ops-secret-value",
    "pagerdutyRoutingKey": "0123456789abcdef0123456789abcdef",
}


# What the cluster stack needs besides the alert secrets: object store keys, the database, OpenSearch.
K8S_SECRETS = {
    **STAGING_SECRETS,
    "objectStoreAccessKeyId": "AKIAIOSFODNN7EXAMPLE",
    "objectStoreSecretAccessKey": "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY",
    "grafanaDatabaseUrl": "postgres://grafana:db-secret-password@db.example.internal:5432/grafana",
    "jaegerStoragePassword": "opensearch-secret-password",
}


def stack_secrets(stack: str) -> dict[str, str] | None:
    """The secrets a user sets before deploying `stack` (dev needs none)."""
    return None if stack == "dev" else dict(K8S_SECRETS if stack == "k8s" else STAGING_SECRETS)


def run_stack(stack: str, overrides: dict[str, Any] | None = None) -> ProgramRun:
    """Run a committed stack as a user would: staging, prod and k8s with their secrets set."""
    return run_program(stack, overrides, stack_secrets(stack))
