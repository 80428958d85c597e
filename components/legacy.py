"""The resources' URNs before the service registry, as aliases: an existing stack keeps every resource.

Until the registry, each service's resources were children of a grouping component (Prometheus and
Grafana of `monitoring`, mime-server of `workload`, ...); now they are children of the service's
own component. A URN is a resource's identity: without these aliases the next `pulumi up` would
delete and recreate every container, regenerate the API keys and stop at the protected volumes.
"""

from __future__ import annotations

import pulumi

STACK_TYPE = "observability:stack:ObservabilityStack"

# service -> the component (type, name) that held its resources before the registry
PARENTS: dict[str, tuple[str, str]] = {
    "prometheus": ("observability:monitoring:CoreMonitoring", "monitoring"),
    "grafana": ("observability:monitoring:CoreMonitoring", "monitoring"),
    "alertmanager": ("observability:alerting:Alerting", "alerting"),
    "webhook-receiver": ("observability:alerting:Alerting", "alerting"),
    "loki": ("observability:logs:LogAggregation", "logs"),
    "alloy": ("observability:logs:LogAggregation", "logs"),
    "promtail": ("observability:logs:LogAggregation", "logs"),
    "jaeger": ("observability:tracing:Tracing", "tracing"),
    "mime-server": ("observability:workload:Workload", "workload"),
    "mockup-gateway": ("observability:workload:Workload", "workload"),
    "backup": ("observability:workload:Workload", "workload"),
}


def aliases(stack: str, service: str, child_type: str, child_name: str) -> list[str]:
    """The URN a child of `service`'s component had before the registry (none for a new service)."""
    if service not in PARENTS:
        return []
    parent_type, _ = PARENTS[service]
    return [f"urn:pulumi:{stack}::{pulumi.get_project()}::{STACK_TYPE}${parent_type}${child_type}::{child_name}"]
