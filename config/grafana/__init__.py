"""Grafana provisioning for the stack: datasources, the dashboard provider, dashboards, environment.

`render_grafana(settings)` returns relative path -> text. Mount `provisioning/` at
/etc/grafana/provisioning and `dashboards/` at /etc/grafana/dashboards (read-only); the
provider in provisioning/dashboards/dashboards.yml reads that folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import yaml
from grafana_foundation_sdk.builders import dashboard

from config.grafana import logs_dashboard, runbooks, service_overview, slo_dashboard, stack_health
from config.grafana.datasources import JAEGER_UID, LOKI_UID, PROMETHEUS_UID, render_datasources
from config.grafana.panels import to_json
from config.rules import alert_names
from config.services import Container, Credential, Endpoint, SecretFile, Service, Volume, wget_health
from config.settings import GRAFANA_DATABASE_KEY, StackSettings

__all__ = ["GRAFANA", "JAEGER_UID", "LOKI_UID", "PROMETHEUS_UID", "PROVISIONING_DIR", "DASHBOARDS_DIR",
           "dashboards", "grafana_env", "render_grafana"]

PORT = 3000
UID = 472  # the Grafana image's own user
CONFIG_ROOT = "/etc/grafana"
PROVISIONING_DIR = f"{CONFIG_ROOT}/provisioning"
DASHBOARDS_DIR = f"{CONFIG_ROOT}/dashboards"
DATA_DIR = "/var/lib/grafana"
ADMIN_PASSWORD = Credential("grafana-admin-password", 24)
ADMIN_PASSWORD_FILE = f"/run/secrets/{ADMIN_PASSWORD.name}"
DATABASE_URL_FILE = "/run/secrets/database-url"
FOLDER = "Observability"
HOME_DASHBOARD = service_overview.UID

BUILDERS: tuple[Callable[[StackSettings], dashboard.Dashboard], ...] = (
    service_overview.build, slo_dashboard.build, stack_health.build, logs_dashboard.build)


def dashboards(settings: StackSettings) -> dict[str, dict[str, Any]]:
    """uid -> dashboard JSON data; the logs dashboard only where the stack runs Loki; a runbook
    dashboard for every alert of the stack's rules unless runbooks live elsewhere (`runbookBaseUrl`)."""
    docs = [to_json(build(settings)) for build in BUILDERS
            if build is not logs_dashboard.build or settings.logs_enabled]
    if not settings.runbook_base_url:
        docs += [to_json(runbooks.build(name)) for name in alert_names(settings)]
    return {doc["uid"]: doc for doc in docs}


def render_dashboard_provider() -> str:
    """provisioning/dashboards/dashboards.yml: a file provider reading DASHBOARDS_DIR."""
    doc = {"apiVersion": 1, "providers": [{
        "name": "observability", "orgId": 1, "folder": FOLDER, "type": "file",
        "disableDeletion": True, "allowUiUpdates": False, "updateIntervalSeconds": 30,
        "options": {"path": DASHBOARDS_DIR, "foldersFromFilesStructure": False},
    }]}
    return "# Rendered by config/grafana; dashboards are built in code, never edited in the UI.\n" + \
        yaml.safe_dump(doc, sort_keys=False)


def render_grafana(settings: StackSettings) -> dict[str, str]:
    """Relative path -> text of every Grafana file: provisioning and dashboard JSON."""
    files = {
        "provisioning/datasources/datasources.yml": render_datasources(settings),
        "provisioning/dashboards/dashboards.yml": render_dashboard_provider(),
    }
    for uid, doc in dashboards(settings).items():
        files[f"dashboards/{uid}.json"] = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    return files


def grafana_env(settings: StackSettings) -> dict[str, str]:
    """GF_* settings; the admin password is only a file name here (GF_SECURITY_ADMIN_PASSWORD__FILE)."""
    return {
        "GF_PATHS_PROVISIONING": PROVISIONING_DIR,
        "GF_PATHS_DATA": DATA_DIR,
        "GF_SECURITY_ADMIN_USER": settings.grafana_admin_user,
        "GF_SECURITY_DISABLE_GRAVATAR": "true",
        "GF_AUTH_ANONYMOUS_ENABLED": "false",
        "GF_USERS_ALLOW_SIGN_UP": "false",
        "GF_USERS_ALLOW_ORG_CREATE": "false",
        "GF_PLUGINS_PREINSTALL_DISABLED": "true",
        "GF_ANALYTICS_REPORTING_ENABLED": "false",
        "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
        "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES": "false",
        "GF_ANALYTICS_FEEDBACK_LINKS_ENABLED": "false",
        "GF_NEWS_NEWS_FEED_ENABLED": "false",
        "GF_SNAPSHOTS_EXTERNAL_ENABLED": "false",
        "GF_LOG_MODE": "console",
        "GF_LOG_CONSOLE_FORMAT": "json",
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH": f"{DASHBOARDS_DIR}/{HOME_DASHBOARD}.json",
        "GF_SECURITY_ADMIN_PASSWORD__FILE": ADMIN_PASSWORD_FILE,
    } | ({"GF_DATABASE_URL__FILE": DATABASE_URL_FILE} if settings.grafana_database else {})


def _container(settings: StackSettings) -> Container:
    secret_files = (SecretFile(ADMIN_PASSWORD_FILE, (ADMIN_PASSWORD.name,)),)
    if settings.grafana_database:
        # users, sessions and dashboards' state live in the shared database: replicas are interchangeable
        # and the data directory only holds caches
        secret_files += (SecretFile(DATABASE_URL_FILE, (GRAFANA_DATABASE_KEY,)),)
    return Container(
        image=str(settings.service(GRAFANA.name).image),
        env=grafana_env(settings),
        files={f"{CONFIG_ROOT}/{rel}": text for rel, text in render_grafana(settings).items()},
        secret_files=secret_files,
        credentials=(ADMIN_PASSWORD,),
        file_owner=UID,
        uid=UID,
        volumes=() if settings.grafana_database else (Volume("grafana-data", DATA_DIR),),
        tmpfs={DATA_DIR: "rw,noexec,nosuid,size=256m"} if settings.grafana_database else {},
        health=wget_health(PORT, "/api/health"),
    )


GRAFANA = Service(
    name="grafana", key="grafana", image="remote", container=_container, port=PORT,
    health=Endpoint(PORT, "/api/health"), metrics=Endpoint(PORT, "/metrics"),
    after=("prometheus", "loki", "jaeger"), config_root=CONFIG_ROOT)
