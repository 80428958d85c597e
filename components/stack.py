"""ObservabilityStack: composes the components in data-flow order and gathers the stack outputs."""

from __future__ import annotations

import pulumi

from components.alerting import Alerting
from components.images import ops_image, workload_image
from components.logs import LogAggregation
from components.monitoring import CoreMonitoring
from components.network import StackNetwork
from components.secrets import StackSecrets
from components.tracing import Tracing
from components.workload import Workload
from config.settings import StackSettings

# Health endpoint of each published service, relative to its host port.
HEALTH_PATHS = {
    "prometheus": "/-/healthy",
    "grafana": "/api/health",
    "alertmanager": "/-/healthy",
    "loki": "/ready",
    "alloy": "/-/ready",
    "promtail": "/ready",
    "jaeger": "/",
    "mime-server": "/healthz",
    "mockup-gateway": "/healthz",
}


def service_url(settings: StackSettings, service: str) -> str:
    """The URL a user on the Docker host opens for a published service."""
    svc = settings.service(service)
    host = svc.bind_address or settings.bind_address
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{svc.port}"


class ObservabilityStack(pulumi.ComponentResource):
    """Every container of one environment; dependencies follow the data flow.

    Order (each arrow waits for the container before it to be healthy): alerting receivers ->
    Alertmanager -> Prometheus; Jaeger -> mime-server -> gateway -> Prometheus; Loki -> shipper;
    Prometheus, Loki, Jaeger -> Grafana.
    """

    def __init__(self, name: str, settings: StackSettings, secrets: StackSecrets,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("observability:stack:ObservabilityStack", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.settings = settings
        self.network = StackNetwork("network", settings, opts=child).network
        self.workload_image = workload_image(parent=self)
        needs_ops = settings.backup_enabled or (settings.alerting_enabled and not settings.alert_receivers_external)
        self.ops_image = ops_image(parent=self) if needs_ops else None

        self.alerting = Alerting("alerting", settings, self.network, secrets, self.ops_image, opts=child) \
            if settings.alerting_enabled else None
        self.tracing = Tracing("tracing", settings, self.network, opts=child) if settings.tracing_enabled else None
        self.workload = Workload("workload", settings, self.network, secrets, self.workload_image, self.ops_image,
                                 depends_on=[self.tracing.jaeger] if self.tracing else [], opts=child)
        self.logs = LogAggregation("logs", settings, self.network, opts=child) if settings.logs_enabled else None

        grafana_after: list[pulumi.Resource] = []
        if self.logs:
            grafana_after.append(self.logs.loki)
        if self.tracing:
            grafana_after.append(self.tracing.jaeger)
        # Prometheus also waits for the services whose availability SLO it computes: a scrape before
        # they answer records up=0, and on a fresh TSDB one such sample pages AvailabilityBudgetBurn.
        prometheus_after: list[pulumi.Resource] = [self.workload.mime_server, self.workload.gateway]
        if self.alerting:
            prometheus_after.append(self.alerting.alertmanager)
        self.monitoring = CoreMonitoring(
            "monitoring", settings, self.network,
            prometheus_after=prometheus_after, grafana_after=grafana_after, opts=child)
        self.register_outputs({})

    def containers(self) -> dict[str, pulumi.Output[str]]:
        """Container name of every deployed service."""
        found = {
            "prometheus": self.monitoring.prometheus, "grafana": self.monitoring.grafana,
            "mime-server": self.workload.mime_server, "mockup-gateway": self.workload.gateway,
        }
        if self.workload.backup is not None:
            found["backup"] = self.workload.backup
        if self.alerting:
            found["alertmanager"] = self.alerting.alertmanager
            if self.alerting.receiver is not None:
                found["webhook-receiver"] = self.alerting.receiver
        if self.tracing:
            found["jaeger"] = self.tracing.jaeger
        if self.logs:
            found["loki"] = self.logs.loki
            found[self.settings.log_shipper] = self.logs.shipper
        return {name: c.name for name, c in sorted(found.items())}

    def urls(self) -> dict[str, str]:
        """URL of every published UI and API on the Docker host."""
        return {name: service_url(self.settings, name)
                for name in self.settings.enabled_services if name in HEALTH_PATHS}

    def health_endpoints(self) -> dict[str, str]:
        """What `python -m automation health-check` probes (the runbook's 'validate all services')."""
        return {name: url + HEALTH_PATHS[name] for name, url in self.urls().items()}

    def export(self) -> None:
        pulumi.export("urls", self.urls())
        pulumi.export("health_endpoints", self.health_endpoints())
        pulumi.export("containers", self.containers())
        pulumi.export("grafana_admin_user", self.settings.grafana_admin_user)
        pulumi.export("grafana_admin_password", pulumi.Output.secret(self.monitoring.admin_password.result))
        pulumi.export("gateway_api_key", pulumi.Output.secret(self.workload.api_key.result))
        if self.workload.admin_key is not None:
            pulumi.export("fault_admin_key", pulumi.Output.secret(self.workload.admin_key.result))
        pulumi.export("mime_storage_volume", self.workload.storage.name)
