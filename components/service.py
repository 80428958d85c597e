"""The one hardened-container builder, and the component that runs one registry service on Docker.

`DockerService` realizes a registry `Container` (config/services.py): the pinned image when it is
pulled, the data volumes the service owns (protected), the credentials it generates, and one
container with the same hardening for all: explicit name `<stack>-<service>`, network alias = the
service name, all capabilities dropped plus only those the spec names, no-new-privileges, memory
limit, restart unless-stopped, json-file log rotation, labels `service`, `env`, `stack`, ports bound
to the stack's bind address, `wait=True` when a healthcheck exists. Secret files are uploaded 0440
as secrets; plain files as they are rendered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components import legacy
from config.services import Container, Credential, Volume

LOG_MAX_SIZE = "10m"
LOG_MAX_FILE = "3"
WAIT_TIMEOUT_SECONDS = 120
DATA_LABEL = "data"
CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
VOLUME = "docker:index/volume:Volume"
PASSWORD = "random:index/randomPassword:RandomPassword"


@dataclass(frozen=True)
class PortBinding:
    """A container port published on the host."""

    internal: int
    external: int
    ip: str


@dataclass
class DockerServiceArgs:
    """What one service's component uses, and nothing else of the stack."""

    stack: str
    container: Container  # the registry's spec, rendered for this stack
    memory_mb: int
    network: pulumi.Input[str]  # the stack network's name
    built_image: pulumi.Input[str] | None = None  # a built image's name; None pulls container.image
    port: PortBinding | None = None
    shared_volumes: Mapping[str, docker.Volume] = field(default_factory=dict)  # owned by other services
    secrets: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)  # secret settings and credentials


def volume_name(stack: str, name: str) -> str:
    """The Docker volume of a data volume: <stack>_<name with underscores>."""
    return f"{stack}_{name.replace('-', '_')}"


def data_volume(stack: str, volume: Volume, opts: pulumi.ResourceOptions) -> docker.Volume:
    """A named volume that holds data: protected, so no update can delete or replace it."""
    return docker.Volume(
        volume.name,
        name=volume_name(stack, volume.name),
        labels=[docker.VolumeLabelArgs(label="stack", value=stack),
                docker.VolumeLabelArgs(label=DATA_LABEL, value="true")],
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(protect=True)),
    )


def credential(spec: Credential, opts: pulumi.ResourceOptions) -> random.RandomPassword:
    """A generated credential: letters and digits, safe in files, headers and URLs."""
    return random.RandomPassword(spec.name, length=spec.length, special=False, opts=opts)


class DockerService(pulumi.ComponentResource):
    """One service of the registry on the Docker host: its image, volumes, credentials and container."""

    container: docker.Container
    volumes: dict[str, docker.Volume]
    credentials: dict[str, random.RandomPassword]

    def __init__(self, name: str, args: DockerServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("observability:docker:Service", name, None, opts)
        spec = args.container

        def child(resource_type: str, resource_name: str) -> pulumi.ResourceOptions:
            # children keep the URNs they had under the components before the registry
            aliases = legacy.aliases(args.stack, name, resource_type, resource_name)
            return pulumi.ResourceOptions(parent=self, aliases=aliases or None)  # type: ignore[arg-type]

        self.volumes = {v.name: data_volume(args.stack, v, child(VOLUME, v.name))
                        for v in spec.volumes if not v.read_only}
        self.credentials = {c.name: credential(c, child(PASSWORD, c.name)) for c in spec.credentials}
        secrets: dict[str, pulumi.Output[str]] = {**args.secrets,
                                                  **{n: c.result for n, c in self.credentials.items()}}

        if args.built_image is None:
            image: pulumi.Input[str] = docker.RemoteImage(
                f"{name}-image", name=spec.image, keep_locally=True, opts=child(REMOTE_IMAGE, f"{name}-image")).image_id
        else:
            image = args.built_image
        volumes = {**args.shared_volumes, **self.volumes}
        # A component's depends_on does not hold its children back: the container itself waits for
        # the services this one talks to (healthy, as their containers are created with wait=True).
        after = pulumi.ResourceOptions(depends_on=opts.depends_on if opts is not None else None)
        self.container = hardened_container(name, args, image, volumes, secrets,
                                            pulumi.ResourceOptions.merge(child(CONTAINER, name), after))
        self.register_outputs({"container": self.container.name,
                               "volumes": {n: v.name for n, v in self.volumes.items()}})


def hardened_container(name: str, args: DockerServiceArgs, image: pulumi.Input[str],
                       volumes: Mapping[str, docker.Volume], secrets: Mapping[str, pulumi.Output[str]],
                       opts: pulumi.ResourceOptions) -> docker.Container:
    """The container of one service, hardened the same way for every service of the stack."""
    spec = args.container
    uploads = [docker.ContainerUploadArgs(file=path, content=text) for path, text in sorted(spec.files.items())]
    for secret_file in sorted(spec.secret_files, key=lambda f: f.path):
        missing = [s for s in secret_file.secrets if s not in secrets]
        if missing:
            raise ValueError(f"{name}: the secret file {secret_file.path} needs {', '.join(missing)}, "
                             "which the stack does not provide")
        content = pulumi.Output.all(*(secrets[s] for s in secret_file.secrets)).apply(
            lambda values, template=secret_file.template: template.format(*values))
        owner = None if spec.file_owner is None else str(spec.file_owner)  # a string in pulumi-docker's schema
        uploads.append(docker.ContainerUploadArgs(file=secret_file.path, content=pulumi.Output.secret(content),
                                                  permissions="0440", owner=owner, group=owner))
    # Docker refuses every upload into a container whose root filesystem is read-only: the provider
    # copies the files to "/" and the daemon checks that destination ("container rootfs is marked
    # read-only"). A container that receives files keeps a writable root; its non-root user owns
    # nothing there, and `make rehearse` checks that it writes nothing there but those files.
    read_only = spec.read_only and not uploads

    mounts = [docker.ContainerVolumeArgs(container_path=v.path, volume_name=volumes[v.name].name,
                                         read_only=v.read_only) for v in spec.volumes]
    mounts += [docker.ContainerVolumeArgs(container_path=h.path, host_path=h.host, read_only=h.read_only)
               for h in spec.host_paths]

    healthcheck = None
    if spec.health is not None:
        h = spec.health
        healthcheck = docker.ContainerHealthcheckArgs(tests=list(h.command), interval=h.interval, timeout=h.timeout,
                                                      retries=h.retries, start_period=h.start_period)
    ports = None
    if args.port is not None:
        ports = [docker.ContainerPortArgs(internal=args.port.internal, external=args.port.external, ip=args.port.ip)]

    return docker.Container(
        name,
        name=f"{args.stack}-{name}",
        image=image,
        command=list(spec.command) if spec.command is not None else None,
        envs=[f"{k}={v}" for k, v in sorted(spec.env.items())] or None,
        user=spec.user,
        memory=args.memory_mb,
        capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"], adds=sorted(spec.cap_adds) or None),
        security_opts=["no-new-privileges:true"],
        read_only=read_only,
        tmpfs=dict(spec.tmpfs) or None,
        restart="unless-stopped",
        log_driver="json-file",
        log_opts={"max-size": LOG_MAX_SIZE, "max-file": LOG_MAX_FILE},
        labels=[
            docker.ContainerLabelArgs(label="service", value=name),
            docker.ContainerLabelArgs(label="env", value=args.stack),
            docker.ContainerLabelArgs(label="stack", value=args.stack),
        ],
        networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.network, aliases=[name])],
        ports=ports,
        uploads=uploads or None,
        volumes=mounts or None,
        healthcheck=healthcheck,
        wait=healthcheck is not None,
        wait_timeout=WAIT_TIMEOUT_SECONDS if healthcheck is not None else None,
        opts=pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["uploads"] if spec.secret_files else None)),
    )
