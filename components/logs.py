"""Log aggregation: Loki (7-day retention by default) and the log shipper, Alloy or Promtail."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components.service import ContainerSpec, Healthcheck, Mount, data_volume, hardened_container
from config.logshipper import render_alloy, render_promtail
from config.loki import render_loki
from config.settings import StackSettings

DOCKER_SOCKET = "/var/run/docker.sock"


class LogAggregation(pulumi.ComponentResource):
    """Loki stores the logs; the shipper reads this stack's containers through the Docker socket."""

    def __init__(self, name: str, settings: StackSettings, network: docker.Network,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("observability:logs:LogAggregation", name, None, opts)
        self.volume = data_volume(settings, "loki-data", parent=self)
        self.loki = hardened_container(settings, network, ContainerSpec(
            service="loki",
            image=settings.service("loki").image,
            command=["-config.file=/etc/loki/loki.yaml"],
            files={"/etc/loki/loki.yaml": render_loki(settings)},
            mounts=[Mount("/loki", self.volume)],
            # The Loki image has no shell, wget or curl: the binary checks its own /ready.
            healthcheck=Healthcheck(["CMD", "/usr/bin/loki", "-health"], start_period="30s"),
            published_port=3100,
        ), parent=self)

        # The shipper runs as root with every capability dropped: reading the root-owned Docker
        # socket needs uid 0, nothing more. Neither image ships a client for a healthcheck.
        socket = Mount(DOCKER_SOCKET, host_path=DOCKER_SOCKET, read_only=True)
        if settings.log_shipper == "alloy":
            spec = ContainerSpec(
                service="alloy",
                image=settings.service("alloy").image,
                command=["run", "--server.http.listen-addr=0.0.0.0:12345", "--storage.path=/tmp/alloy",
                         "--disable-reporting", "/etc/alloy/config.alloy"],
                files={"/etc/alloy/config.alloy": render_alloy(settings)},
                mounts=[socket],
                user="0:0",
                published_port=12345,
            )
        else:
            spec = ContainerSpec(
                service="promtail",
                image=settings.service("promtail").image,
                command=["-config.file=/etc/promtail/promtail.yaml"],
                files={"/etc/promtail/promtail.yaml": render_promtail(settings)},
                mounts=[socket],
                user="0:0",
                published_port=9080,
            )
        self.shipper = hardened_container(settings, network, spec, parent=self, depends_on=[self.loki])
        self.register_outputs({"loki": self.loki.name, "shipper": self.shipper.name})
