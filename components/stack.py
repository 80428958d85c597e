"""ObservabilityStack: every service of the registry on one Docker host, in data-flow order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.images import ops_image, workload_image
from components.network import StackNetwork
from components.service import DockerService, DockerServiceArgs, PortBinding
from config import registry
from config.settings import StackSettings
from config.workload import ADMIN_KEY, API_KEY, GATEWAY, MIME_SERVER, STORAGE
from config.grafana import ADMIN_PASSWORD, GRAFANA


@dataclass
class StackArgs:
    settings: StackSettings
    secrets: Mapping[str, pulumi.Output[str]]  # secret settings that are set, by key


class ObservabilityStack(pulumi.ComponentResource):
    """One environment: the network, the images built from this repository, then each enabled service
    of the registry after the services it talks to (`after`), which are healthy first (`wait=True`)."""

    def __init__(self, name: str, args: StackArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("observability:stack:ObservabilityStack", name, None, opts)
        settings = args.settings
        child = pulumi.ResourceOptions(parent=self)
        self.network = StackNetwork("network", settings.stack, opts=child).network
        order = registry.deploy_order(settings)
        kinds = {s.image for s in order}
        built: dict[str, docker.Image] = {}
        if "workload" in kinds:
            built["workload"] = workload_image(parent=self)
        if "ops" in kinds:
            built["ops"] = ops_image(parent=self)

        self.services: dict[str, DockerService] = {}
        for spec in order:
            container = spec.container(settings)
            svc = settings.service(spec.name)
            port = None
            if spec.port is not None and svc.port is not None:
                port = PortBinding(spec.port, svc.port, svc.bind_address or settings.bind_address)
            owned_elsewhere = {v.name for v in container.volumes if v.read_only}
            shared = {n: s.volumes[n] for s in self.services.values() for n in s.volumes if n in owned_elsewhere}
            self.services[spec.name] = DockerService(spec.name, DockerServiceArgs(
                stack=settings.stack,
                container=container,
                memory_mb=svc.memory_mb,
                network=self.network.name,
                built_image=built[spec.image].image_name if spec.image in built else None,
                port=port,
                shared_volumes=shared,
                secrets={k: v for k, v in args.secrets.items()
                         if any(k in f.secrets for f in container.secret_files)},
            ), opts=pulumi.ResourceOptions(parent=self,
                                           depends_on=[self.services[d] for d in spec.after if d in self.services]))

        self.outputs = self._outputs(settings)
        self.register_outputs(self.outputs)

    def _outputs(self, settings: StackSettings) -> dict[str, pulumi.Input[object]]:
        """The stack outputs: where each service answers, container names, generated credentials."""
        outputs: dict[str, pulumi.Input[object]] = {
            "urls": registry.urls(settings),
            "health_endpoints": registry.health_endpoints(settings),
            "containers": {name: s.container.name for name, s in sorted(self.services.items())},
            "grafana_admin_user": settings.grafana_admin_user,
            "grafana_admin_password": pulumi.Output.secret(
                self.services[GRAFANA.name].credentials[ADMIN_PASSWORD.name].result),
            "gateway_api_key": pulumi.Output.secret(self.services[GATEWAY.name].credentials[API_KEY.name].result),
            "mime_storage_volume": self.services[MIME_SERVER.name].volumes[STORAGE.name].name,
        }
        admin = self.services[MIME_SERVER.name].credentials.get(ADMIN_KEY.name)
        if admin is not None:
            outputs["fault_admin_key"] = pulumi.Output.secret(admin.result)
        return outputs
