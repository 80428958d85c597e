"""What a service of the stack is: the types of the service registry (`config.registry`), platform-neutral.

A `Service` holds what never varies between stacks (name, settings-key prefix, the port it
publishes, health and metrics endpoints, the services it talks to) and functions of the stack
settings: whether the stack runs it, its `Container` and its meta-alerts. A `Container` is plain
data (image, command, environment, rendered files, secret files by name, volumes, hardening): the
Docker components realize it with pulumi-docker, the Kubernetes components with pulumi-kubernetes
(`components/kubernetes.py`), and nothing in it knows about Pulumi.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from config.settings import StackSettings

ImageKind = Literal["remote", "workload", "ops"]  # pulled by tag, or built from this repository
Placement = Literal["replicas", "per-node"]  # `<key>Replicas` copies, or one per node (log shippers)
WORKLOAD_UID = 10001  # the non-root user of the images built from this repository


@dataclass(frozen=True)
class Endpoint:
    """An HTTP endpoint of a service on the stack network: container port and path."""

    port: int
    path: str


@dataclass(frozen=True)
class Port:
    """A port a service listens on besides its published, health and metrics ones.

    `peers` marks a port only the service's own replicas talk to (gossip, ring), opened between
    them when the stack runs more than one.
    """

    name: str  # an IANA-style name, at most 15 characters: "otlp-http"
    number: int
    protocol: Literal["TCP", "UDP"] = "TCP"
    peers: bool = False


@dataclass(frozen=True)
class Volume:
    """A named data volume mounted at `path`; the service that mounts it writable owns it."""

    name: str  # e.g. "prometheus-data"; the volume is <stack>_<name with _>
    path: str
    read_only: bool = False
    size_gi: int = 1  # what a cluster's volume claim asks for (a Docker volume grows with its disk)


@dataclass(frozen=True)
class HostPath:
    """A host file or directory mounted into the container (the Docker socket for log shippers)."""

    host: str
    path: str
    read_only: bool = True


@dataclass(frozen=True)
class Credential:
    """A credential the stack generates (a random password), owned by one service."""

    name: str  # e.g. "gateway-api-key"
    length: int


@dataclass(frozen=True)
class SecretFile:
    """A file holding secrets: `template` with {0}, {1}... replaced by the named secrets' values.

    A name is a secret stack setting (`secret: true` in Pulumi.yaml) or a `Credential` of the stack.
    """

    path: str
    secrets: tuple[str, ...]
    template: str = "{0}"


# A shared credentials file (AWS_SHARED_CREDENTIALS_FILE) from an access key id {0} and secret key {1}.
AWS_CREDENTIALS_TEMPLATE = "[default]\naws_access_key_id = {0}\naws_secret_access_key = {1}\n"


@dataclass(frozen=True)
class Health:
    """The container's own health check (exec form), run by the engine inside the container."""

    command: tuple[str, ...]
    interval: str = "10s"
    timeout: str = "5s"
    retries: int = 6
    start_period: str = "20s"


@dataclass(frozen=True)
class Container:
    """Everything that differs between the stack's containers; hardening is the builder's, not here."""

    image: str  # a pinned reference for remote images; ignored for built ones
    command: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)  # container path -> rendered text
    secret_files: tuple[SecretFile, ...] = ()
    credentials: tuple[Credential, ...] = ()
    volumes: tuple[Volume, ...] = ()
    host_paths: tuple[HostPath, ...] = ()
    user: str | None = None  # "uid:gid"; None keeps the image's own (non-root) user
    file_owner: int | None = None  # uid that must read the secret files (they are 0440)
    uid: int | None = None  # the non-root uid the image runs as; clusters state it to enforce runAsNonRoot
    read_only: bool = False
    tmpfs: Mapping[str, str] = field(default_factory=dict)
    cap_adds: tuple[str, ...] = ()
    health: Health | None = None


@dataclass(frozen=True)
class MetaAlert:
    """An alert on the stack itself: a failure counter of this service that must stay flat."""

    name: str
    metric: str
    what: str  # "rule evaluations fail": the alert's summary


@dataclass(frozen=True)
class Service:
    """One service of the stack, defined once."""

    name: str  # container, network alias, job and Loki label, e.g. "mime-server"
    key: str  # Pulumi config key prefix, e.g. "mimeServer"
    image: ImageKind
    container: Callable[[StackSettings], Container]
    enabled: Callable[[StackSettings], bool] = lambda settings: True
    port: int | None = None  # the container port published on the host (`<key>Port`)
    health: Endpoint | None = None  # what `automation health-check` and probes ask
    metrics: Endpoint | None = None  # what Prometheus scrapes
    after: tuple[str, ...] = ()  # services it talks to: deployed (and healthy) before it
    ports: tuple[Port, ...] = ()  # other listeners: OTLP receivers, gossip, ring
    placement: Placement = "replicas"
    reads_cluster: tuple[str, ...] = ()  # Kubernetes API resources it lists and watches there ("pods")
    meta_alerts: Callable[[StackSettings], tuple[MetaAlert, ...]] = lambda settings: ()
    config_root: str | None = None  # where its rendered files live: `render` writes them under its name

    def address(self, port: int) -> str:
        """host:port of this service on the stack network."""
        return f"{self.name}:{port}"

    def url(self, port: int, path: str = "") -> str:
        """http:// URL of this service on the stack network."""
        return f"http://{self.address(port)}{path}"


def wget_health(port: int, path: str) -> Health:
    """Health check for images that ship busybox wget (Prometheus, Alertmanager, Grafana, Jaeger)."""
    return Health(("CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{port}{path}"))


def python_health(port: int, path: str) -> Health:
    """Health check for the project's Python images (no curl or wget in python:slim)."""
    url = f"http://127.0.0.1:{port}{path}"
    return Health(("CMD", "python", "-c",
                   f"import urllib.request,sys; sys.exit(urllib.request.urlopen('{url}', timeout=4).status != 200)"))


# --- on a cluster ------------------------------------------------------------------------------
# Every pod gets its own name, IP and node through these variables (the downward API), so a rendered
# file or flag can name them: `${POD_NAME}` in prometheus.yml, `$(POD_IP)` in Alertmanager's flags.
POD_NAME_ENV = "POD_NAME"
POD_IP_ENV = "POD_IP"
NODE_NAME_ENV = "NODE_NAME"


def headless(service: str) -> str:
    """The headless Service that gives each replica of `service` a stable DNS name."""
    return f"{service}-headless"


def replica_host(service: str, ordinal: int, namespace: str) -> str:
    """The stable DNS name of replica `ordinal` of a StatefulSet `service`: prometheus-0.prometheus-headless.ns.svc."""
    return f"{service}-{ordinal}.{headless(service)}.{namespace}.svc"
