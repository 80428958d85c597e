"""Alerting: Alertmanager, and in stacks without Slack/PagerDuty secrets the local webhook receiver."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components.secrets import StackSecrets
from components.service import ContainerSpec, Mount, data_volume, hardened_container, python_health, wget_health
from config.alertmanager import SECRET_FILES, render_alertmanager
from config.settings import StackSettings

ALERTMANAGER_UID = 65534  # nobody, the image's own user
WEBHOOK_RECEIVER_PORT = 9095


class Alerting(pulumi.ComponentResource):
    """Alertmanager with the rendered route tree; secrets arrive as files, never as env values."""

    def __init__(self, name: str, settings: StackSettings, network: docker.Network, secrets: StackSecrets,
                 ops_image: docker.Image | None, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("observability:alerting:Alerting", name, None, opts)
        self.receiver: docker.Container | None = None
        if not settings.alert_receivers_external:
            assert ops_image is not None, "the local webhook receiver runs from the ops image"
            self.receiver = hardened_container(settings, network, ContainerSpec(
                service="webhook-receiver",
                image=ops_image.image_name,
                remote=False,
                command=["python", "-m", "webhook_receiver", "--host", "0.0.0.0", "--port", str(WEBHOOK_RECEIVER_PORT)],
                healthcheck=python_health(f"http://127.0.0.1:{WEBHOOK_RECEIVER_PORT}/healthz"),
                read_only=True,
                tmpfs={"/tmp": "rw,noexec,nosuid,size=16m"},
            ), parent=self)
            # Alertmanager does not wait for it: notifications that fail are retried, and a
            # receiver on the critical path would delay Prometheus and Grafana for nothing.

        self.volume = data_volume(settings, "alertmanager-data", parent=self)
        secret_files = {}
        if settings.alert_receivers_external:
            by_key = secrets.by_key()
            secret_files = {path: by_key[key] for key, path in SECRET_FILES.items()}
        self.alertmanager = hardened_container(settings, network, ContainerSpec(
            service="alertmanager",
            image=settings.service("alertmanager").image,
            command=[
                "--config.file=/etc/alertmanager/alertmanager.yml",
                "--storage.path=/alertmanager",
                "--cluster.listen-address=",
                f"--web.external-url=http://localhost:{settings.service('alertmanager').port}",
            ],
            files={"/etc/alertmanager/alertmanager.yml": render_alertmanager(settings)},
            secret_files=secret_files,
            file_owner=ALERTMANAGER_UID,
            mounts=[Mount("/alertmanager", self.volume)],
            healthcheck=wget_health("http://127.0.0.1:9093/-/healthy"),
            published_port=9093,
        ), parent=self)
        self.register_outputs({"alertmanager": self.alertmanager.name})
