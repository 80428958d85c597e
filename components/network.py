"""The stack's private bridge network; every container joins it under its service name."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker



class StackNetwork(pulumi.ComponentResource):
    """One user-defined bridge network per stack, so service names resolve between containers."""

    def __init__(self, name: str, stack: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("observability:network:StackNetwork", name, None, opts)
        self.network = docker.Network(
            name,
            name=f"{stack}-observability",
            driver="bridge",
            labels=[docker.NetworkLabelArgs(label="stack", value=stack)],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"name": self.network.name})
