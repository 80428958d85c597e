"""The one hardened-container builder every service of the stack uses.

A service is described by a `ContainerSpec` (what differs between services: image, command,
files, volumes, healthcheck); `hardened_container` turns it into a pinned image and a
container with the same hardening for all: explicit name `<stack>-<service>`, network alias
= service name, all capabilities dropped plus only what the spec names, no-new-privileges,
memory limit, restart unless-stopped, json-file log rotation, labels `service`, `env`,
`stack`, ports bound to the stack's bind address, `wait=True` when a healthcheck exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import pulumi
import pulumi_docker as docker

from config.settings import StackSettings

LOG_MAX_SIZE = "10m"
LOG_MAX_FILE = "3"
WAIT_TIMEOUT_SECONDS = 120
DATA_LABEL = "data"


@dataclass(frozen=True)
class Healthcheck:
    """A Docker healthcheck; `test` is the exec form, e.g. ["CMD", "wget", "-q", "--spider", URL]."""

    test: list[str]
    interval: str = "10s"
    timeout: str = "5s"
    retries: int = 6
    start_period: str = "20s"


@dataclass(frozen=True)
class Mount:
    """A named volume (or host path) mounted into the container."""

    target: str
    volume: docker.Volume | None = None
    host_path: str | None = None
    read_only: bool = False


@dataclass
class ContainerSpec:
    """Everything that differs between the stack's containers."""

    service: str
    image: pulumi.Input[str]  # a pinned remote reference ("repo:tag") or a built image's name
    remote: bool = True  # pull `image` as a RemoteImage (False: `image` is built by the stack)
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    envs: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # container path -> plain config text
    secret_files: dict[str, pulumi.Input[str]] = field(default_factory=dict)  # path -> secret value
    mounts: list[Mount] = field(default_factory=list)
    healthcheck: Healthcheck | None = None
    user: str | None = None  # "uid:gid"; None keeps the image's own (non-root) user
    cap_adds: list[str] = field(default_factory=list)
    read_only: bool = False
    tmpfs: dict[str, str] = field(default_factory=dict)
    published_port: int | None = None  # container port bound to the host port from settings
    file_owner: int | None = None  # uid that must read the uploaded files (secret files are 0440)


def data_volume(settings: StackSettings, name: str, parent: pulumi.Resource) -> docker.Volume:
    """A named volume that holds data: protected, so no update can delete or replace it."""
    return docker.Volume(
        name,
        name=f"{settings.stack}_{name.replace('-', '_')}",
        labels=[
            docker.VolumeLabelArgs(label="stack", value=settings.stack),
            docker.VolumeLabelArgs(label=DATA_LABEL, value="true"),
        ],
        opts=pulumi.ResourceOptions(parent=parent, protect=True),
    )


def hardened_container(
    settings: StackSettings,
    network: docker.Network,
    spec: ContainerSpec,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource] = (),
) -> docker.Container:
    """Create the pinned image (when remote) and the hardened container for `spec`."""
    svc = settings.service(spec.service)
    if spec.remote:
        image = docker.RemoteImage(
            f"{spec.service}-image",
            name=spec.image,
            keep_locally=True,
            opts=pulumi.ResourceOptions(parent=parent),
        )
        image_ref: pulumi.Input[str] = image.image_id
    else:
        image_ref = spec.image

    ports = []
    if spec.published_port is not None and svc.port is not None:
        ports.append(docker.ContainerPortArgs(
            internal=spec.published_port,
            external=svc.port,
            ip=svc.bind_address or settings.bind_address,
        ))

    uploads = [docker.ContainerUploadArgs(file=path, content=text) for path, text in sorted(spec.files.items())]
    owner = None if spec.file_owner is None else str(spec.file_owner)  # a string in pulumi-docker's schema
    uploads += [
        docker.ContainerUploadArgs(file=path, content=pulumi.Output.secret(value), permissions="0440",
                                   owner=owner, group=owner)
        for path, value in sorted(spec.secret_files.items())
    ]

    # Docker refuses every upload into a container whose root filesystem is read-only: the provider
    # copies the files to "/" and the daemon checks that destination ("container rootfs is marked
    # read-only"). A container that receives files keeps a writable root; its non-root user owns
    # nothing there, and `make rehearse` checks that it writes nothing there but those files.
    read_only = spec.read_only and not uploads

    volumes = [
        docker.ContainerVolumeArgs(
            container_path=m.target,
            volume_name=m.volume.name if m.volume is not None else None,
            host_path=m.host_path,
            read_only=m.read_only,
        )
        for m in spec.mounts
    ]

    healthcheck = None
    if spec.healthcheck is not None:
        h = spec.healthcheck
        healthcheck = docker.ContainerHealthcheckArgs(
            tests=h.test, interval=h.interval, timeout=h.timeout, retries=h.retries, start_period=h.start_period,
        )

    return docker.Container(
        spec.service,
        name=settings.container_name(spec.service),
        image=image_ref,
        command=spec.command,
        entrypoints=spec.entrypoint,
        envs=[pulumi.Output.concat(k, "=", v) for k, v in sorted(spec.envs.items())] or None,
        user=spec.user,
        memory=svc.memory_mb,
        capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"], adds=sorted(spec.cap_adds) or None),
        security_opts=["no-new-privileges:true"],
        read_only=read_only,
        tmpfs=spec.tmpfs or None,
        restart="unless-stopped",
        log_driver="json-file",
        log_opts={"max-size": LOG_MAX_SIZE, "max-file": LOG_MAX_FILE},
        labels=[
            docker.ContainerLabelArgs(label="service", value=spec.service),
            docker.ContainerLabelArgs(label="env", value=settings.stack),
            docker.ContainerLabelArgs(label="stack", value=settings.stack),
        ],
        networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=network.name, aliases=[spec.service])],
        ports=ports or None,
        uploads=uploads or None,
        volumes=volumes or None,
        healthcheck=healthcheck,
        wait=healthcheck is not None,
        wait_timeout=WAIT_TIMEOUT_SECONDS if healthcheck is not None else None,
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=list(depends_on),
            additional_secret_outputs=["uploads"] if spec.secret_files else None,
        ),
    )


def wget_health(url: str) -> Healthcheck:
    """Healthcheck for images that ship busybox wget (Prometheus, Alertmanager, Grafana, Jaeger)."""
    return Healthcheck(["CMD", "wget", "-q", "-O", "/dev/null", url])


def python_health(url: str) -> Healthcheck:
    """Healthcheck for the project's Python images (no curl or wget in python:slim)."""
    return Healthcheck(["CMD", "python", "-c",
                        f"import urllib.request,sys; sys.exit(urllib.request.urlopen('{url}', timeout=4).status != 200)"])
