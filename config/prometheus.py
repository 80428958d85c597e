"""Prometheus: prometheus.yml (scrape every service of the stack, load the SLO rules, send to Alertmanager) and its service.

On a cluster (`platform: kubernetes`) the same file gains what an HA pair needs, as
kube-prometheus-stack does it: each replica labels its series and alerts with its pod name
(`prometheus_replica`, expanded from the environment), drops that label from the alerts it sends so
Alertmanager sees one alert from both replicas, sends to every Alertmanager pod by its stable DNS
name (not through a load-balanced Service), and finds every pod of a service by Kubernetes pod
discovery instead of one network alias.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from config.rules import render_rule_files
from config.services import (
    POD_NAME_ENV, Container, Endpoint, MetaAlert, Service, Volume, replica_host, wget_health,
)
from config.settings import StackSettings

PORT = 9090
CONFIG_ROOT = "/etc/prometheus"
RULES_DIR = f"{CONFIG_ROOT}/rules"
CONFIG_PATH = f"{CONFIG_ROOT}/prometheus.yml"
DATA_DIR = "/prometheus"
UID = 65534  # nobody, the image's own user
REPLICA_LABEL = "prometheus_replica"  # the HA pair's external label, dropped from alerts


@dataclass(frozen=True)
class ScrapeTarget:
    """One service's metrics endpoint on the stack network."""

    service: str
    address: str  # host:port as seen from the Prometheus container
    metrics_path: str = "/metrics"


def scrape_targets(settings: StackSettings) -> list[ScrapeTarget]:
    """Every enabled service that exposes metrics, by its network alias (Prometheus itself on localhost)."""
    from config.registry import enabled_services

    return [ScrapeTarget(s.name, f"localhost:{s.metrics.port}" if s.name == PROMETHEUS.name
                         else s.address(s.metrics.port), s.metrics.path)
            for s in enabled_services(settings) if s.metrics is not None]


def alertmanager_targets(settings: StackSettings) -> list[str]:
    """Where Prometheus sends alerts: every Alertmanager of the stack."""
    from config.alertmanager import ALERTMANAGER, PORT as ALERTMANAGER_PORT

    if not ALERTMANAGER.enabled(settings):
        return []
    if settings.kubernetes:
        # every pod directly: a Service would hand each alert to one pod, and a pod that missed it
        # could not dedupe or notify for it
        return [f"{replica_host(ALERTMANAGER.name, i, settings.namespace)}:{ALERTMANAGER_PORT}"
                for i in range(settings.replicas(ALERTMANAGER.name))]
    return [ALERTMANAGER.address(ALERTMANAGER_PORT)]


def _pod_scrape_config(settings: StackSettings, target: ScrapeTarget, port: int) -> dict:
    """One job over every pod of a service on the cluster: pod discovery in the stack's namespace."""
    return {
        "job_name": target.service,
        "metrics_path": target.metrics_path,
        "kubernetes_sd_configs": [{
            "role": "pod",
            "namespaces": {"names": [settings.namespace]},
            "selectors": [{"role": "pod", "label": f"service={target.service},stack={settings.stack}"}],
        }],
        "relabel_configs": [
            {"source_labels": ["__meta_kubernetes_pod_container_port_number"], "regex": str(port), "action": "keep"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"target_label": "service", "replacement": target.service},
            {"target_label": "env", "replacement": settings.stack},
        ],
    }


def command(settings: StackSettings, config_path: str = CONFIG_PATH, data_dir: str = DATA_DIR) -> list[str]:
    """The Prometheus command-line flags; the paths move for the tests that run the same flags."""
    return [
        f"--config.file={config_path}",
        f"--storage.tsdb.path={data_dir}",
        f"--storage.tsdb.retention.time={settings.prometheus_retention_days}d",
        "--enable-feature=exemplar-storage",
        f"--web.external-url=http://localhost:{settings.service(PROMETHEUS.name).port}",
    ]


def render_prometheus(settings: StackSettings, rule_files: list[str] | None = None,
                      alertmanagers: list[str] | None = None) -> str:
    """prometheus.yml text; job names equal service names and every target carries `service` and `env`."""
    doc: dict = {
        "global": {
            "scrape_interval": settings.scrape_interval,
            "evaluation_interval": settings.evaluation_interval,
            "external_labels": {"stack": settings.stack},
        },
        "rule_files": rule_files if rule_files is not None else [f"{RULES_DIR}/*.yml"],
        "scrape_configs": [
            {
                "job_name": t.service,
                "metrics_path": t.metrics_path,
                "static_configs": [{
                    "targets": [t.address],
                    "labels": {"service": t.service, "env": settings.stack},
                }],
            }
            for t in scrape_targets(settings)
        ],
    }
    if settings.kubernetes:
        from config.registry import service

        doc["global"]["external_labels"][REPLICA_LABEL] = "${%s}" % POD_NAME_ENV
        doc["scrape_configs"] = [_pod_scrape_config(settings, t, service(t.service).metrics.port)
                                 for t in scrape_targets(settings)]
    targets = alertmanager_targets(settings) if alertmanagers is None else alertmanagers
    if targets:
        doc["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": targets}]}]}
        if settings.kubernetes:
            doc["alerting"] = {"alert_relabel_configs": [{"action": "labeldrop", "regex": REPLICA_LABEL}],
                               **doc["alerting"]}
    return "# Rendered by config/prometheus.py; edit the renderer or the stack settings, not this file.\n" + \
        yaml.safe_dump(doc, sort_keys=False)


def _container(settings: StackSettings) -> Container:
    files = {CONFIG_PATH: render_prometheus(settings)}
    files |= {f"{RULES_DIR}/{name}": text for name, text in render_rule_files(settings).items()}
    return Container(
        image=str(settings.service(PROMETHEUS.name).image),
        command=tuple(command(settings)),
        files=files,
        volumes=(Volume("prometheus-data", DATA_DIR, size_gi=20),),
        uid=UID,
        health=wget_health(PORT, "/-/healthy"),
    )


def _meta_alerts(settings: StackSettings) -> tuple[MetaAlert, ...]:
    return (
        MetaAlert("PrometheusRuleEvaluationFailures", "prometheus_rule_evaluation_failures_total",
                  "rule evaluations fail"),
        MetaAlert("PrometheusNotificationsDropped", "prometheus_notifications_dropped_total",
                  "alert notifications to Alertmanager are dropped"),
    )


PROMETHEUS = Service(
    name="prometheus", key="prometheus", image="remote", container=_container, port=PORT,
    health=Endpoint(PORT, "/-/healthy"), metrics=Endpoint(PORT, "/metrics"),
    # it sends to Alertmanager; and its first scrape of the workload must find it answering, or one
    # up == 0 sample on a fresh database pages AvailabilityBudgetBurn (seen in `make rehearse`)
    after=("alertmanager", "mime-server", "mockup-gateway"),
    meta_alerts=_meta_alerts, config_root=CONFIG_ROOT, reads_cluster=("pods",))
