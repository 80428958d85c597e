"""prometheus.yml: scrape every service of the stack, load the SLO rules, send to Alertmanager."""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from config.settings import StackSettings

RULES_DIR = "/etc/prometheus/rules"
CONFIG_PATH = "/etc/prometheus/prometheus.yml"
DATA_DIR = "/prometheus"


@dataclass(frozen=True)
class ScrapeTarget:
    """One service's metrics endpoint on the stack network."""

    service: str
    address: str  # host:port as seen from the Prometheus container
    metrics_path: str = "/metrics"


def scrape_targets(settings: StackSettings) -> list[ScrapeTarget]:
    """Every enabled service that exposes metrics, by its network alias."""
    targets = [
        ScrapeTarget("prometheus", "localhost:9090"),
        ScrapeTarget("grafana", "grafana:3000"),
        ScrapeTarget("mime-server", "mime-server:8080"),
        ScrapeTarget("mockup-gateway", "mockup-gateway:8000"),
    ]
    if settings.alerting_enabled:
        targets.append(ScrapeTarget("alertmanager", "alertmanager:9093"))
    if settings.logs_enabled:
        targets.append(ScrapeTarget("loki", "loki:3100"))
        shipper_port = 12345 if settings.log_shipper == "alloy" else 9080
        targets.append(ScrapeTarget(settings.log_shipper, f"{settings.log_shipper}:{shipper_port}"))
    if settings.tracing_enabled:
        # Jaeger v2 exposes its collector self-metrics (otelcol_*) on 8888.
        targets.append(ScrapeTarget("jaeger", "jaeger:8888"))
    return targets


def command(settings: StackSettings, config_path: str = CONFIG_PATH, data_dir: str = DATA_DIR) -> list[str]:
    """The Prometheus command-line flags; the paths move for the tests that run the same flags."""
    return [
        f"--config.file={config_path}",
        f"--storage.tsdb.path={data_dir}",
        f"--storage.tsdb.retention.time={settings.prometheus_retention_days}d",
        "--enable-feature=exemplar-storage",
        f"--web.external-url=http://localhost:{settings.service('prometheus').port}",
    ]


def render_prometheus(settings: StackSettings, rule_files: list[str] | None = None,
                      alertmanager: str | None = "alertmanager:9093") -> str:
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
    if settings.alerting_enabled and alertmanager:
        doc["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return "# Rendered by config/prometheus.py; edit the renderer or the stack settings, not this file.\n" + \
        yaml.safe_dump(doc, sort_keys=False)
