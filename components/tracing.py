"""Tracing: Jaeger v2 receiving OTLP (gRPC 4317, HTTP 4318) and legacy agent spans (UDP 6831)."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components.service import ContainerSpec, hardened_container, wget_health
from config.jaeger import CONFIG_PATH, HEALTH_PORT, QUERY_PORT, render_jaeger
from config.settings import StackSettings

OTLP_HTTP_ENDPOINT = "http://jaeger:4318"


class Tracing(pulumi.ComponentResource):
    """Jaeger v2 with in-memory storage bounded by `jaegerMaxTraces`; UI on the published port."""

    def __init__(self, name: str, settings: StackSettings, network: docker.Network,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("observability:tracing:Tracing", name, None, opts)
        self.jaeger = hardened_container(settings, network, ContainerSpec(
            service="jaeger",
            image=settings.service("jaeger").image,
            command=["--config", CONFIG_PATH],
            files={CONFIG_PATH: render_jaeger(settings)},
            healthcheck=wget_health(f"http://127.0.0.1:{HEALTH_PORT}/status"),
            published_port=QUERY_PORT,
        ), parent=self)
        self.register_outputs({"jaeger": self.jaeger.name})
