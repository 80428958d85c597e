"""Grafana datasource provisioning: Prometheus, Loki and Jaeger with fixed uids, linked to each other.

Prometheus exemplars and Loki's `trace_id` field open the trace in Jaeger; a Jaeger span opens
the logs of its service and trace in Loki. Links name datasources by uid, so the uids below are
a contract (dashboards and other components use them too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from config.jaeger import JAEGER, QUERY_PORT
from config.loki import HTTP_PORT as LOKI_PORT, LOKI
from config.prometheus import PORT as PROMETHEUS_PORT, PROMETHEUS
from config.settings import StackSettings

PROMETHEUS_UID = "prometheus"
LOKI_UID = "loki"
JAEGER_UID = "jaeger"

PROMETHEUS_URL = PROMETHEUS.url(PROMETHEUS_PORT)
LOKI_URL = LOKI.url(LOKI_PORT)
JAEGER_URL = JAEGER.url(QUERY_PORT)

TRACE_ID_FIELD = "trace_id"  # exemplar label and JSON log field written by both services
# Matches the compact JSON the services write: "trace_id":"<32 hex digits>".
TRACE_ID_REGEX = r'"trace_id":"(\w+)"'
MAX_LOG_LINES = 1000


@dataclass(frozen=True)
class DatasourceRef:
    """A datasource as panels reference it: plugin type and uid."""

    type: str
    uid: str

    def as_json(self) -> dict[str, str]:
        return {"type": self.type, "uid": self.uid}


PROMETHEUS = DatasourceRef("prometheus", PROMETHEUS_UID)
LOKI = DatasourceRef("loki", LOKI_UID)
JAEGER = DatasourceRef("jaeger", JAEGER_UID)
PROVISIONED: tuple[DatasourceRef, ...] = (PROMETHEUS, LOKI, JAEGER)


def _grafana_literal(text: str) -> str:
    """Escape `$` for provisioning files, where Grafana expands $VAR and ${VAR} from the environment."""
    return text.replace("$", "$$")


def datasources(settings: StackSettings) -> list[dict[str, Any]]:
    """The provisioned datasources as data (before `$` escaping of link templates)."""
    return [
        {
            "name": "Prometheus", "type": PROMETHEUS.type, "uid": PROMETHEUS_UID, "access": "proxy",
            "url": PROMETHEUS_URL, "isDefault": True, "editable": False,
            "jsonData": {
                "httpMethod": "POST",
                "timeInterval": settings.scrape_interval,
                "exemplarTraceIdDestinations": [
                    {"name": TRACE_ID_FIELD, "datasourceUid": JAEGER_UID, "urlDisplayLabel": "Open trace in Jaeger"},
                ],
            },
        },
        {
            "name": "Loki", "type": LOKI.type, "uid": LOKI_UID, "access": "proxy", "url": LOKI_URL,
            "editable": False,
            "jsonData": {
                "maxLines": MAX_LOG_LINES,
                "derivedFields": [{
                    "name": TRACE_ID_FIELD,
                    "matcherRegex": TRACE_ID_REGEX,
                    "datasourceUid": JAEGER_UID,
                    "url": "${__value.raw}",  # internal link: the query sent to Jaeger is the trace id
                    "urlDisplayLabel": "Open trace in Jaeger",
                }],
            },
        },
        {
            "name": "Jaeger", "type": JAEGER.type, "uid": JAEGER_UID, "access": "proxy", "url": JAEGER_URL,
            "editable": False,
            "jsonData": {
                "tracesToLogsV2": {
                    "datasourceUid": LOKI_UID,
                    # span attribute service.name -> Loki stream label service
                    "tags": [{"key": "service.name", "value": "service"}],
                    "filterByTraceID": True,
                    "filterBySpanID": False,
                    "spanStartTimeShift": "-5m",
                    "spanEndTimeShift": "5m",
                },
                "nodeGraph": {"enabled": True},
            },
        },
    ]


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return _grafana_literal(value)
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    return value


def render_datasources(settings: StackSettings) -> str:
    """provisioning/datasources/datasources.yml text."""
    doc = {"apiVersion": 1, "prune": True, "datasources": _escaped(datasources(settings))}
    return ("# Rendered by config/grafana/datasources.py; `$$` is a literal `$` for Grafana.\n"
            + yaml.safe_dump(doc, sort_keys=False))
