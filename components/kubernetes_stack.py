"""KubernetesStack: every service of the registry on a Kubernetes cluster, in data-flow order.

The same registry, settings and renderers as the Docker stack (`components/stack.py`), the same
component names and stack outputs; the namespace (restricted Pod Security, a default-deny
NetworkPolicy) holds one `KubernetesService` per enabled service, and the images built from this
repository are pushed to `imageRegistry` for the cluster to pull.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pulumi
import pulumi_docker as docker
import pulumi_kubernetes as k8s

from components.images import ops_image, workload_image
from components.kubernetes import Egress, KubernetesService, KubernetesServiceArgs, labels
from components.stack import StackArgs
from config import registry
from config.alertmanager import ALERTMANAGER
from config.grafana import ADMIN_PASSWORD, GRAFANA
from config.jaeger import JAEGER
from config.loki import LOKI
from config.services import Service
from config.settings import StackSettings
from config.workload import ADMIN_KEY, API_KEY, GATEWAY, MIME_SERVER, S3_PREFIX, STORAGE

HTTPS_PORT = 443
API_SERVER_PORTS = (HTTPS_PORT, 6443)  # the Kubernetes API, as kube-proxy or the provider exposes it
DATABASE_PORTS = (5432, 3306)  # PostgreSQL, MySQL: Grafana's URL is a secret, so both are opened
SCHEME_PORTS = {"http": 80, "https": HTTPS_PORT}


def _url_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or SCHEME_PORTS[parts.scheme]


def outside(settings: StackSettings, spec: Service) -> list[Egress]:
    """What a service reaches beyond the stack: the API server, Slack and PagerDuty, the object store, the
    trace store, the database."""
    found: list[Egress] = []
    if spec.reads_cluster:
        found.append(Egress(API_SERVER_PORTS, "Kubernetes API"))
    if spec.name == ALERTMANAGER.name and settings.alert_receivers_external:
        found.append(Egress(tuple(sorted({_url_port(settings.pagerduty_url), HTTPS_PORT})), "Slack and PagerDuty"))
    if spec.name in (LOKI.name, MIME_SERVER.name) and settings.object_store:
        found.append(Egress((_url_port(settings.object_store_endpoint or "https://s3"),), "object store"))
    if spec.name == JAEGER.name and settings.jaeger_storage_url:
        found.append(Egress((_url_port(settings.jaeger_storage_url),), f"{settings.jaeger_storage}"))
    if spec.name == GRAFANA.name and settings.grafana_database:
        found.append(Egress(DATABASE_PORTS, "database"))
    return found


class KubernetesStack(pulumi.ComponentResource):
    """One environment on a cluster: the namespace, the pushed images, then each enabled service of the registry
    after the services it talks to (`after`), whose rollouts are ready first."""

    def __init__(self, name: str, args: StackArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("observability:kubernetes:Stack", name, None, opts)
        settings = args.settings
        child = pulumi.ResourceOptions(parent=self)
        # The namespace holds the data volumes' claims: protected as the Docker volumes are.
        self.namespace = k8s.core.v1.Namespace("namespace", metadata=k8s.meta.v1.ObjectMetaArgs(
            name=settings.namespace,
            labels={"stack": settings.stack, "env": settings.stack,
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest"}),
            opts=pulumi.ResourceOptions(parent=self, protect=True))
        namespace = self.namespace.metadata.name
        k8s.networking.v1.NetworkPolicy("default-deny", metadata=k8s.meta.v1.ObjectMetaArgs(
            name="default-deny", namespace=namespace, labels=labels(settings.stack, "default-deny")),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(pod_selector=k8s.meta.v1.LabelSelectorArgs(),
                                                         policy_types=["Ingress", "Egress"]),
            opts=child)

        order = registry.deploy_order(settings)
        kinds = {s.image for s in order}
        built: dict[str, docker.Image] = {}
        if "workload" in kinds:
            built["workload"] = workload_image(parent=self, registry=settings.image_registry)
        if "ops" in kinds:
            built["ops"] = ops_image(parent=self, registry=settings.image_registry)

        flows = registry.flows(settings)
        self.services: dict[str, KubernetesService] = {}
        for spec in order:
            container = spec.container(settings)
            svc = settings.service(spec.name)
            self.services[spec.name] = KubernetesService(spec.name, KubernetesServiceArgs(
                stack=settings.stack,
                namespace=namespace,
                container=container,
                memory_mb=svc.memory_mb,
                replicas=svc.replicas,
                ports=registry.listening_ports(spec),
                health=spec.health,
                placement=spec.placement,
                reads_cluster=spec.reads_cluster,
                built_image=built[spec.image].image_name if spec.image in built else None,
                storage_class=settings.storage_class,
                secrets={k: v for k, v in args.secrets.items()
                         if any(k in f.secrets for f in container.secret_files)},
                ingress=[f for f in flows if f.target == spec.name],
                egress=[f for f in flows if f.source == spec.name],
                outside=outside(settings, spec),
            ), opts=pulumi.ResourceOptions(parent=self, depends_on=[
                self.namespace, *(self.services[d] for d in spec.after if d in self.services)]))

        self.outputs = self._outputs(settings)
        self.register_outputs(self.outputs)

    def _outputs(self, settings: StackSettings) -> dict[str, pulumi.Input[object]]:
        """The Docker stack's outputs, for a cluster: in-cluster URLs, workloads (`kind/name`) for kubectl."""
        mime = self.services[MIME_SERVER.name]
        outputs: dict[str, pulumi.Input[object]] = {
            "urls": registry.urls(settings),
            "health_endpoints": registry.health_endpoints(settings),
            "containers": {name: f"{s.kind.lower()}/{name}" for name, s in sorted(self.services.items())},
            "namespace": self.namespace.metadata.name,
            "grafana_admin_user": settings.grafana_admin_user,
            "grafana_admin_password": pulumi.Output.secret(
                self.services[GRAFANA.name].credentials[ADMIN_PASSWORD.name].result),
            "gateway_api_key": pulumi.Output.secret(self.services[GATEWAY.name].credentials[API_KEY.name].result),
            # where mime-server's files are: the bucket prefix, or the claim of its one replica
            "mime_storage_volume": (f"s3://{settings.object_store_bucket}/{S3_PREFIX}" if settings.object_store
                                    else f"{STORAGE.name}-{MIME_SERVER.name}-0"),
        }
        admin = mime.credentials.get(ADMIN_KEY.name)
        if admin is not None:
            outputs["fault_admin_key"] = pulumi.Output.secret(admin.result)
        return outputs
