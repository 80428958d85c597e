"""Test alerts posted to Alertmanager's API v2, to prove the routing end to end."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

from automation.errors import AutomationError, ConfigError
from automation.units import rfc3339

SEVERITIES = ("critical", "warning")


def build_alert(
    alertname: str,
    severity: str,
    service: str,
    resolve: bool,
    extra_labels: dict[str, str],
    now: datetime | None = None,
    lasts: timedelta = timedelta(hours=1),
) -> dict[str, Any]:
    """One API v2 alert; a resolve sends the same labels with ``endsAt`` = now."""
    if severity not in SEVERITIES:
        raise ConfigError(f"invalid severity {severity!r}: expected one of {', '.join(SEVERITIES)}")
    now = now or datetime.now(timezone.utc)
    labels = {"alertname": alertname, "severity": severity, "service": service, "test": "true"} | extra_labels
    return {
        "labels": labels,
        "annotations": {
            "summary": f"Test alert {alertname} ({severity}) for {service}",
            "description": "Sent by `automation fire-test-alert` to check alert routing; no action needed.",
        },
        # A resolve keeps the original start unknown to us; Alertmanager matches on labels only.
        "startsAt": rfc3339(now - timedelta(minutes=1) if resolve else now),
        "endsAt": rfc3339(now if resolve else now + lasts),
        "generatorURL": "http://127.0.0.1/automation/fire-test-alert",
    }


def post_alerts(base_url: str, alerts: list[dict[str, Any]], timeout_s: float = 10.0) -> None:
    """POST alerts to ``/api/v2/alerts``; anything but 200 is an error naming Alertmanager's answer."""
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"invalid Alertmanager URL {base_url!r}: expected http(s)://HOST:PORT")
    url = base_url.rstrip("/") + "/api/v2/alerts"
    try:
        response = httpx.post(url, json=alerts, timeout=timeout_s, trust_env=False)
    except httpx.HTTPError as exc:
        raise ConfigError(f"cannot reach Alertmanager at {url}: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise AutomationError(f"Alertmanager refused the alert: HTTP {response.status_code}: {response.text[:300]}")
