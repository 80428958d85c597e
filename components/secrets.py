"""The stack's secret inputs (from `pulumi config set --secret`) and generated credentials."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

# Pulumi secret key -> StackSecrets field.
_FIELDS = {
    "slackWebhookAlerts": "slack_webhook_alerts",
    "slackWebhookOpsCritical": "slack_webhook_ops_critical",
    "pagerdutyRoutingKey": "pagerduty_routing_key",
    "backupS3AccessKeyId": "backup_s3_access_key_id",
    "backupS3SecretAccessKey": "backup_s3_secret_access_key",
}


@dataclass(frozen=True)
class StackSecrets:
    """Secret values as `pulumi.Output`s marked secret; None where the stack has not set one."""

    slack_webhook_alerts: pulumi.Output[str] | None = None
    slack_webhook_ops_critical: pulumi.Output[str] | None = None
    pagerduty_routing_key: pulumi.Output[str] | None = None
    backup_s3_access_key_id: pulumi.Output[str] | None = None
    backup_s3_secret_access_key: pulumi.Output[str] | None = None

    def by_key(self) -> dict[str, pulumi.Output[str] | None]:
        return {key: getattr(self, attr) for key, attr in _FIELDS.items()}


def from_config(config: pulumi.Config) -> tuple[StackSecrets, set[str]]:
    """Read every secret key; returns the secrets and the names of those that are set (non-empty)."""
    values: dict[str, pulumi.Output[str] | None] = {}
    present: set[str] = set()
    for key, attr in _FIELDS.items():
        # Presence is known before any resource exists, so validation can fail early; the value
        # itself only ever travels as a secret Output.
        raw = pulumi.runtime.get_config(f"{config.name}:{key}")
        if raw:
            present.add(key)
            values[attr] = pulumi.Output.secret(raw)
        else:
            values[attr] = None
    return StackSecrets(**values), present
