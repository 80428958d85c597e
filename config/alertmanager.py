"""alertmanager.yml rendered from stack settings: routes, receivers (Slack, PagerDuty or local) and inhibition.

Routing follows the runbook: MimeServerDown to Slack #ops-critical and on to PagerDuty, every other
critical alert to PagerDuty, warnings to Slack #alerts; grouped by alertname and service. Secrets
are never in the file: receivers read them from files the Pulumi component uploads (SECRET_FILES).
Without the alert secrets (dev), every receiver is a webhook to the local `webhook-receiver`.
Written for the Alertmanager the stack deploys (the tests run the same release, built from its Go
module): every notifier has a `timeout`, so a hung Slack or PagerDuty endpoint cannot hold a
notification past it (0.30+), and every inhibit rule has a name, which Alertmanager reports when
it mutes an alert (0.30+).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from config import slo
from config.rules import burn_alert_name, to_yaml
from config.services import (
    POD_IP_ENV, WORKLOAD_UID, Container, Endpoint, MetaAlert, Port, SecretFile, Service, Volume, python_health, replica_host,
    wget_health,
)
from config.settings import ALERT_SECRET_KEYS, StackSettings

PORT = 9093
CLUSTER_PORT = 9094  # gossip between the replicas of a cluster (TCP and UDP)
RECEIVER_PORT = 9095
CONFIG_ROOT = "/etc/alertmanager"
CONFIG_PATH = f"{CONFIG_ROOT}/alertmanager.yml"
DATA_DIR = "/alertmanager"
UID = 65534  # nobody, the image's own user
SECRET_FILES: dict[str, str] = {
    "slackWebhookAlerts": f"{CONFIG_ROOT}/secrets/slack-alerts-url",
    "slackWebhookOpsCritical": f"{CONFIG_ROOT}/secrets/slack-ops-critical-url",
    "pagerdutyRoutingKey": f"{CONFIG_ROOT}/secrets/pagerduty-routing-key",
}
assert set(SECRET_FILES) == set(ALERT_SECRET_KEYS)

OPS_CRITICAL = "slack-ops-critical"
PAGERDUTY = "pagerduty"
SLACK_ALERTS = "slack-alerts"
GROUP_BY = ["alertname", "service"]

# Alerts that only repeat what MimeServerDown already says about the same service.
DOWN_SHADOWS = sorted({burn_alert_name(s) for s in slo.SLIS} | {"ErrorBudgetHalfConsumed", "SLAViolation", "TargetDown"})

# Every alert of the group: what, how bad (the description carries the burn rate or the budget
# left), where, and the links (runbook, dashboard, error logs where they apply) as Slack links.
_SLACK_TEXT = (
    "{{ range .Alerts }}*{{ .Annotations.summary }}*\n"
    "severity: {{ .Labels.severity }} · service: {{ .Labels.service }}"
    "{{ if .Labels.sli }} · SLI: {{ .Labels.sli }}{{ end }}\n"
    "{{ .Annotations.description }}\n"
    "<{{ .Annotations.runbook_url }}|Runbook> · <{{ .Annotations.dashboard_url }}|Dashboard>"
    "{{ if .Annotations.logs_url }} · <{{ .Annotations.logs_url }}|Error logs>{{ end }}\n"
    "{{ end }}")
_FIRST = "(index .Alerts 0).Annotations"


def _first(annotation: str) -> str:
    """A template for an annotation of the group's first alert (the group shares alertname and service)."""
    return f"{{{{ {_FIRST}.{annotation} }}}}"


def _slack_buttons() -> list[dict[str, str]]:
    return [{"type": "button", "text": "Runbook", "url": _first("runbook_url")},
            {"type": "button", "text": "Dashboard", "url": _first("dashboard_url")}]


def _pagerduty_details() -> dict[str, str]:
    """custom_details beside Alertmanager's own (firing, resolved and their counts)."""
    return {
        "summary": _first("summary"),
        "severity": "{{ .CommonLabels.severity }}",
        "service": "{{ .CommonLabels.service }}",
        "description": "{{ range .Alerts.Firing }}{{ .Annotations.description }} {{ end }}",
        "runbook_url": _first("runbook_url"),
        "dashboard_url": _first("dashboard_url"),
        "logs_url": f"{{{{ if {_FIRST}.logs_url }}}}{_first('logs_url')}{{{{ end }}}}",
    }


def secret_path(key: str, secrets_dir: str | Path | None = None) -> str:
    """Where Alertmanager reads the secret `key`: its container path, or the same file name under secrets_dir."""
    path = SECRET_FILES[key]
    return path if secrets_dir is None else str(Path(secrets_dir) / Path(path).name)


def receivers(settings: StackSettings, secrets_dir: str | Path | None = None,
              local_url: str | None = None) -> list[dict[str, Any]]:
    """The three receivers: Slack and PagerDuty when the secrets are set, else local webhooks."""
    timeout = settings.alert_notification_timeout
    local_url = local_url or LOCAL_RECEIVER_URL
    if not settings.alert_receivers_external:
        return [{"name": name, "webhook_configs": [{"url": f"{local_url}/{name}", "send_resolved": True,
                                                     "timeout": timeout}]}
                for name in (OPS_CRITICAL, PAGERDUTY, SLACK_ALERTS)]

    def slack(name: str, key: str, channel: str) -> dict[str, Any]:
        return {"name": name, "slack_configs": [{
            "api_url_file": secret_path(key, secrets_dir), "channel": channel, "send_resolved": True,
            "text": _SLACK_TEXT, "actions": _slack_buttons(), "timeout": timeout}]}

    return [
        slack(OPS_CRITICAL, "slackWebhookOpsCritical", settings.slack_channel_ops_critical),
        {"name": PAGERDUTY, "pagerduty_configs": [{
            "routing_key_file": secret_path("pagerdutyRoutingKey", secrets_dir), "url": settings.pagerduty_url,
            "send_resolved": True, "severity": "critical", "timeout": timeout,
            "links": [{"href": _first("runbook_url"), "text": "Runbook"},
                      {"href": _first("dashboard_url"), "text": "Dashboard"}],
            "details": _pagerduty_details()}]},
        slack(SLACK_ALERTS, "slackWebhookAlerts", settings.slack_channel_alerts),
    ]


def route(settings: StackSettings, group_wait: str | None = None, group_interval: str | None = None,
          repeat_interval: str | None = None) -> dict[str, Any]:
    """The route tree; timings default to the stack settings."""
    return {
        "receiver": SLACK_ALERTS,
        "group_by": GROUP_BY,
        "group_wait": group_wait or settings.alert_group_wait,
        "group_interval": group_interval or settings.alert_group_interval,
        "repeat_interval": repeat_interval or settings.alert_repeat_interval,
        "routes": [
            {"receiver": OPS_CRITICAL, "matchers": ['alertname="MimeServerDown"'], "continue": True},
            {"receiver": PAGERDUTY, "matchers": ['severity="critical"']},
            {"receiver": SLACK_ALERTS, "matchers": ['severity="warning"']},
        ],
    }


def inhibit_rules() -> list[dict[str, Any]]:
    """Critical silences warning of the same alert and service; MimeServerDown silences its consequences."""
    return [
        {"name": "page-silences-its-ticket",
         "source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'],
         "equal": ["alertname", "service"]},
        {"name": "server-down-silences-its-consequences",
         "source_matchers": ['alertname="MimeServerDown"'],
         "target_matchers": [f'alertname=~"{"|".join(DOWN_SHADOWS)}"'], "equal": ["service"]},
        {"name": "server-down-silences-gateway-upstream-errors",
         "source_matchers": ['alertname="MimeServerDown"'], "target_matchers": ['alertname="GatewayUpstreamErrors"']},
    ]


def render_alertmanager(settings: StackSettings, *, secrets_dir: str | Path | None = None,
                        group_wait: str | None = None, group_interval: str | None = None,
                        repeat_interval: str | None = None, local_url: str | None = None) -> str:
    """alertmanager.yml for the stack. secrets_dir moves the secret files (tests); timings override settings."""
    doc = {
        "route": route(settings, group_wait, group_interval, repeat_interval),
        "receivers": receivers(settings, secrets_dir, local_url),
        "inhibit_rules": inhibit_rules(),
    }
    head = f"# Rendered by config/alertmanager.py for stack {settings.stack}; secrets are read from files.\n"
    return head + to_yaml(doc)


def cluster_flags(settings: StackSettings) -> list[str]:
    """Gossip between the replicas: listen on the cluster port, advertise the pod IP, one --cluster.peer per
    replica by its stable DNS name (each replica lists itself too, as the Prometheus operator does).
    One replica, or one Docker host: clustering off."""
    replicas = settings.replicas(ALERTMANAGER.name) if settings.kubernetes else 1
    if replicas == 1:
        return ["--cluster.listen-address="]
    return [f"--cluster.listen-address=0.0.0.0:{CLUSTER_PORT}",
            f"--cluster.advertise-address=$({POD_IP_ENV}):{CLUSTER_PORT}",
            *(f"--cluster.peer={replica_host(ALERTMANAGER.name, i, settings.namespace)}:{CLUSTER_PORT}"
              for i in range(replicas))]


def command(settings: StackSettings) -> list[str]:
    """Alertmanager's flags: one instance with clustering off, or a gossip cluster of the stack's replicas."""
    return [
        f"--config.file={CONFIG_PATH}",
        f"--storage.path={DATA_DIR}",
        *cluster_flags(settings),
        f"--web.external-url=http://localhost:{settings.service(ALERTMANAGER.name).port}",
    ]


def _container(settings: StackSettings) -> Container:
    secret_files = ()
    if settings.alert_receivers_external:
        secret_files = tuple(SecretFile(path, (key,)) for key, path in SECRET_FILES.items())
    return Container(
        image=str(settings.service(ALERTMANAGER.name).image),
        command=tuple(command(settings)),
        files={CONFIG_PATH: render_alertmanager(settings)},
        secret_files=secret_files,
        file_owner=UID,
        uid=UID,
        volumes=(Volume("alertmanager-data", DATA_DIR),),
        health=wget_health(PORT, "/-/healthy"),
    )


ALERTMANAGER = Service(
    name="alertmanager", key="alertmanager", image="remote", container=_container,
    enabled=lambda settings: settings.alerting_enabled, port=PORT,
    health=Endpoint(PORT, "/-/healthy"), metrics=Endpoint(PORT, "/metrics"),
    ports=(Port("cluster", CLUSTER_PORT, peers=True), Port("cluster-udp", CLUSTER_PORT, "UDP", peers=True)),
    meta_alerts=lambda settings: (MetaAlert("AlertmanagerNotificationsFailing", "alertmanager_notifications_failed_total",
                                            "notifications to receivers fail"),),
    config_root=CONFIG_ROOT)


def _receiver_container(settings: StackSettings) -> Container:
    return Container(
        image="",
        command=("python", "-m", "webhook_receiver", "--host", "0.0.0.0", "--port", str(RECEIVER_PORT)),
        read_only=True,
        tmpfs={"/tmp": "rw,noexec,nosuid,size=16m"},
        uid=WORKLOAD_UID,
        health=python_health(RECEIVER_PORT, "/healthz"),
    )


# Dev's stand-in for Slack and PagerDuty. Alertmanager does not wait for it: failed notifications
# are retried, and a receiver on the critical path would delay Prometheus and Grafana for nothing.
WEBHOOK_RECEIVER = Service(
    name="webhook-receiver", key="webhookReceiver", image="ops", container=_receiver_container,
    ports=(Port("http", RECEIVER_PORT),),
    enabled=lambda settings: settings.alerting_enabled and not settings.alert_receivers_external)
LOCAL_RECEIVER_URL = WEBHOOK_RECEIVER.url(RECEIVER_PORT)
