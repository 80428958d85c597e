"""The alert runbooks as Grafana dashboards: one "Runbook: <alert>" dashboard per section of docs/alerts.md.

Notifications link to them by default (`runbookBaseUrl` empty), so every link works wherever the
stack's Grafana does, with no wiki to set up; the text has one home, docs/alerts.md.
"""

from __future__ import annotations

import re

from grafana_foundation_sdk.builders import dashboard, text
from grafana_foundation_sdk.models.text import TextMode

from config.grafana.panels import new_dashboard
from config.settings import PROJECT_DIR

DOC = PROJECT_DIR / "docs" / "alerts.md"
_SECTION = re.compile(r"^## Alert: (\w+)\n(.*?)(?=^## |\Z)", re.M | re.S)


def runbooks() -> dict[str, str]:
    """Alert name -> its runbook text (markdown), from docs/alerts.md."""
    return {name: body.strip() for name, body in _SECTION.findall(DOC.read_text())}


def uid(alert: str) -> str:
    """The runbook dashboard's uid: runbook-<lowercase alert name>."""
    return f"runbook-{alert.lower()}"


def build(alert: str) -> dashboard.Dashboard:
    """The runbook of one alert: its section of docs/alerts.md on a dashboard of its own."""
    body = runbooks()[alert]
    return (new_dashboard(uid(alert), f"Runbook: {alert}", ["runbook"], f"What to do when {alert} fires.")
            .with_panel(text.Panel().title(alert).mode(TextMode.MARKDOWN).content(body).span(24).height(12)))
