"""Core monitoring: Prometheus (scrapes, SLO rules, alerts) and Grafana (datasources and dashboards as code)."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.service import ContainerSpec, Mount, data_volume, hardened_container, wget_health
from config.grafana import grafana_env, render_grafana
from config.prometheus import CONFIG_PATH, DATA_DIR, RULES_DIR, render_prometheus
from config.prometheus import command as prometheus_command
from config.rules import render_rule_files
from config.settings import StackSettings

GRAFANA_UID = 472  # the Grafana image's own user
GRAFANA_PASSWORD_FILE = "/run/secrets/grafana-admin-password"


def grafana_file_path(relative: str) -> str:
    """Where a rendered Grafana file lives in the container (provisioning/... or dashboards/...)."""
    return f"/etc/grafana/{relative}"


class CoreMonitoring(pulumi.ComponentResource):
    """Prometheus, then Grafana once every datasource it points at is healthy."""

    def __init__(self, name: str, settings: StackSettings, network: docker.Network,
                 prometheus_after: list[pulumi.Resource], grafana_after: list[pulumi.Resource],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("observability:monitoring:CoreMonitoring", name, None, opts)
        self.prometheus_volume = data_volume(settings, "prometheus-data", parent=self)
        files = {CONFIG_PATH: render_prometheus(settings)}
        files |= {f"{RULES_DIR}/{fname}": text for fname, text in render_rule_files(settings).items()}
        self.prometheus = hardened_container(settings, network, ContainerSpec(
            service="prometheus",
            image=settings.service("prometheus").image,
            command=prometheus_command(settings),
            files=files,
            mounts=[Mount(DATA_DIR, self.prometheus_volume)],
            healthcheck=wget_health("http://127.0.0.1:9090/-/healthy"),
            published_port=9090,
        ), parent=self, depends_on=prometheus_after)

        self.admin_password = random.RandomPassword("grafana-admin-password", length=24, special=False,
                                                    opts=pulumi.ResourceOptions(parent=self))
        self.grafana_volume = data_volume(settings, "grafana-data", parent=self)
        self.grafana = hardened_container(settings, network, ContainerSpec(
            service="grafana",
            image=settings.service("grafana").image,
            envs=grafana_env(settings) | {
                "GF_SECURITY_ADMIN_USER": settings.grafana_admin_user,
                "GF_SECURITY_ADMIN_PASSWORD__FILE": GRAFANA_PASSWORD_FILE,
            },
            files={grafana_file_path(rel): text for rel, text in render_grafana(settings).items()},
            secret_files={GRAFANA_PASSWORD_FILE: self.admin_password.result},
            file_owner=GRAFANA_UID,
            mounts=[Mount("/var/lib/grafana", self.grafana_volume)],
            healthcheck=wget_health("http://127.0.0.1:3000/api/health"),
            published_port=3000,
        ), parent=self, depends_on=[self.prometheus, *grafana_after])
        self.register_outputs({"prometheus": self.prometheus.name, "grafana": self.grafana.name})
