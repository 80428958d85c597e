"""The service registry: every service of the stack, defined once in the module that renders its files.

Components, Prometheus' scrape jobs, the health-check targets, `python -m config.render`, the
meta-alerts, the settings' per-service keys and the README's service table loop over `SERVICES`.
Adding a service is one `Service` definition (next to its renderer) plus one line here.

    python -m config.registry    # the README's service table, from this registry
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from config.alertmanager import ALERTMANAGER, WEBHOOK_RECEIVER
from config.grafana import GRAFANA
from config.jaeger import JAEGER
from config.logshipper import ALLOY, PROMTAIL
from config.loki import LOKI
from config.prometheus import PROMETHEUS
from config.services import Port, Service
from config.settings import StackSettings
from config.workload import BACKUP, GATEWAY, MIME_SERVER

SERVICES: tuple[Service, ...] = (
    PROMETHEUS, GRAFANA, ALERTMANAGER, LOKI, ALLOY, PROMTAIL, JAEGER, MIME_SERVER, GATEWAY, BACKUP, WEBHOOK_RECEIVER,
)
BY_NAME: dict[str, Service] = {s.name: s for s in SERVICES}


def service(name: str) -> Service:
    """The service called `name`; the error lists the known ones."""
    if name not in BY_NAME:
        raise KeyError(f"no service {name!r}: expected one of {', '.join(BY_NAME)}")
    return BY_NAME[name]


def enabled_services(settings: StackSettings) -> tuple[Service, ...]:
    """The services this stack runs, in registry order."""
    return tuple(s for s in SERVICES if s.enabled(settings))


def deploy_order(settings: StackSettings) -> tuple[Service, ...]:
    """The stack's services, each after the enabled services it talks to (`after`); stable, cycle-checked."""
    enabled = {s.name: s for s in enabled_services(settings)}
    remaining = {name: {d for d in s.after if d in enabled} for name, s in enabled.items()}
    order: list[Service] = []
    while remaining:
        ready = [name for name in enabled if name in remaining and not remaining[name] & remaining.keys()]
        if not ready:
            raise ValueError(f"dependency cycle among services {sorted(remaining)}")
        for name in ready:
            order.append(enabled[name])
            del remaining[name]
    return tuple(order)


def published_url(settings: StackSettings, name: str) -> str:
    """The URL a user on the Docker host opens for a published service; on a cluster, its Service's DNS name
    (reached from inside the cluster, or through `kubectl port-forward`)."""
    svc = settings.service(name)
    if settings.kubernetes:
        return f"http://{name}.{settings.namespace}.svc:{service(name).port}"
    host = svc.bind_address or settings.bind_address
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{svc.port}"


def urls(settings: StackSettings) -> dict[str, str]:
    """URL of every published UI and API of the stack on the Docker host."""
    return {s.name: published_url(settings, s.name) for s in enabled_services(settings) if s.port is not None}


def health_endpoints(settings: StackSettings) -> dict[str, str]:
    """What `python -m automation health-check` probes: each published service's health path."""
    return {s.name: published_url(settings, s.name) + s.health.path
            for s in enabled_services(settings) if s.port is not None and s.health is not None}


def listening_ports(spec: Service) -> tuple[Port, ...]:
    """Every port `spec` listens on, named, each once: published (`http`), metrics, health, then the others."""
    ports: list[Port] = []
    for name, number in (("http", spec.port), ("metrics", spec.metrics and spec.metrics.port),
                         ("health", spec.health and spec.health.port)):
        if number and all(p.number != number for p in ports):
            ports.append(Port(name, number))
    ports += [p for p in spec.ports if all((q.number, q.protocol) != (p.number, p.protocol) for q in ports)]
    return tuple(ports)


@dataclass(frozen=True)
class Flow:
    """Traffic the stack needs: `source` opens connections to `target` on `ports` (its listening ports)."""

    source: str
    target: str
    ports: tuple[Port, ...]
    why: str  # data flow, scrape, notification, peers


def flows(settings: StackSettings) -> tuple[Flow, ...]:
    """Every connection between the stack's services: data flow (`after`), Prometheus' scrapes, Alertmanager's
    notifications to the local receiver, and replicas talking to their peers (gossip, ring). A cluster's
    NetworkPolicies allow these and nothing else inside the stack."""
    enabled = {s.name: s for s in enabled_services(settings)}
    found: list[Flow] = []
    for s in enabled.values():
        found += [Flow(s.name, d, tuple(p for p in listening_ports(enabled[d]) if not p.peers), "data flow")
                  for d in s.after if d in enabled]
        if s.metrics is not None and PROMETHEUS.name in enabled:
            metrics = next(p for p in listening_ports(s) if p.number == s.metrics.port)
            found.append(Flow(PROMETHEUS.name, s.name, (metrics,), "scrape"))
        peers = tuple(p for p in s.ports if p.peers)
        if peers and settings.kubernetes and settings.replicas(s.name) > 1:
            found.append(Flow(s.name, s.name, peers, "peers"))
    if ALERTMANAGER.name in enabled and WEBHOOK_RECEIVER.name in enabled:
        found.append(Flow(ALERTMANAGER.name, WEBHOOK_RECEIVER.name, listening_ports(WEBHOOK_RECEIVER),
                          "notification"))
    return tuple(found)


def markdown_table() -> str:
    """The README's service table: one row per service, from the registry."""
    rows = ["| service | settings prefix | image | port | health | metrics | after |",
            "|---|---|---|---|---|---|---|"]
    images = {"remote": "pulled, `{key}Image`", "workload": "built, `mime_server/Dockerfile`",
              "ops": "built, `ops/Dockerfile`"}
    for s in SERVICES:
        health = f"`:{s.health.port}{s.health.path}`" if s.health else "—"
        metrics = f"`:{s.metrics.port}{s.metrics.path}`" if s.metrics else "—"
        image = images[s.image].format(key=s.key)
        rows.append(f"| `{s.name}` | `{s.key}` | {image} | {s.port or '—'} | {health} | {metrics} | "
                    f"{', '.join(s.after) or '—'} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown_table())
