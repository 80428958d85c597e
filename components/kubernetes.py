"""The one hardened-pod builder, and the component that runs one registry service on a Kubernetes cluster.

`KubernetesService` realizes the same registry `Container` (config/services.py) that `DockerService`
runs on one host, with pulumi-kubernetes typed resources: a ConfigMap of the rendered files and a
Secret of the secret files (each mounted file by file where the container expects it), a
ServiceAccount (its token mounted only for a service that reads the cluster, with a Role for just
that), a Service named after the service (so the URLs the renderers write, `http://loki:<port>`,
resolve as on Docker), and the workload: a DaemonSet for a per-node service, a StatefulSet (with a headless Service giving each
replica a stable DNS name, and one volume claim per replica) for a service that owns data or
talks to its peers, a Deployment otherwise; a PodDisruptionBudget when it has replicas to spare,
and its NetworkPolicy: ingress from the services that talk to it, egress to those it talks to.

The hardening is the same for every pod, and maps the Docker builder's: non-root uid (the image's
own, stated), read-only root filesystem with an emptyDir /tmp, every capability dropped, no
privilege escalation, the runtime's default seccomp profile, memory request = limit from
`<key>MemoryMb`, a CPU request, probes on the registry's health endpoint, labels `service`, `env`,
`stack`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.service import credential
from config.registry import Flow
from config.slo import duration_seconds
from config.services import (
    NODE_NAME_ENV, POD_IP_ENV, POD_NAME_ENV, Container, Endpoint, Placement, Port, headless,
)

CPU_REQUEST = "100m"  # no CPU limit: throttling a scrape or a flush hurts more than sharing a core
TMP_DIR = "/tmp"
TMP_SIZE = "64Mi"
HOSTNAME_TOPOLOGY = "kubernetes.io/hostname"
PROBE_PERIOD_SECONDS = 10
PROBE_TIMEOUT_SECONDS = 5
PROBE_FAILURES = 6
PROBE_START_SECONDS = 20
Kind = Literal["Deployment", "StatefulSet", "DaemonSet"]
CORE = k8s.core.v1
META = k8s.meta.v1


@dataclass(frozen=True)
class Egress:
    """Traffic to outside the stack: `ports` (TCP) on every address, or the cluster DNS (`dns=True`)."""

    ports: tuple[int, ...]
    why: str


@dataclass
class KubernetesServiceArgs:
    """What one service's component uses, and nothing else of the stack."""

    stack: str
    namespace: pulumi.Input[str]
    container: Container  # the registry's spec, rendered for this stack
    memory_mb: int
    replicas: int
    ports: tuple[Port, ...]  # every port it listens on (registry.listening_ports)
    health: Endpoint | None
    placement: Placement = "replicas"
    reads_cluster: tuple[str, ...] = ()  # Kubernetes API resources it lists and watches
    built_image: pulumi.Input[str] | None = None  # a built image's name; None pulls container.image
    storage_class: str = ""
    secrets: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)  # secret settings it needs
    ingress: Sequence[Flow] = ()  # the stack's flows into this service
    egress: Sequence[Flow] = ()  # the stack's flows out of this service
    outside: Sequence[Egress] = ()  # what it reaches beyond the stack


def labels(stack: str, name: str) -> dict[str, str]:
    """Labels of every object of a service; the pods' `service`, `env`, `stack` are what Alloy and Prometheus read."""
    return {"service": name, "env": stack, "stack": stack, "app.kubernetes.io/name": name,
            "app.kubernetes.io/part-of": "observability", "app.kubernetes.io/managed-by": "pulumi"}


def selector(stack: str, name: str) -> dict[str, str]:
    """The pods of one service of one stack."""
    return {"service": name, "stack": stack}


def workload_kind(container: Container, placement: Placement, ports: Sequence[Port]) -> Kind:
    """DaemonSet per node; StatefulSet for data it owns or peers it gossips with; else Deployment."""
    if placement == "per-node":
        return "DaemonSet"
    if any(not v.read_only for v in container.volumes) or any(p.peers for p in ports):
        return "StatefulSet"
    return "Deployment"


def file_key(path: str) -> str:
    """A ConfigMap/Secret key for a container path: /etc/prometheus/rules/x.yml -> etc_prometheus_rules_x.yml."""
    return path.strip("/").replace("/", "_")


def _seconds(duration: str) -> int:
    """Whole seconds (at least 1, what a probe accepts) of a duration such as 10s."""
    return max(1, round(duration_seconds(duration)))


def _size(tmpfs_options: str) -> str:
    """A tmpfs `size=64m` as an emptyDir size limit (64Mi)."""
    match = re.search(r"size=([0-9]+)([kmg])", tmpfs_options)
    return f"{match.group(1)}{match.group(2).upper()}i" if match else TMP_SIZE


def config_checksum(container: Container) -> str:
    """sha256 of the rendered files: a changed file changes the pod template, so the pods roll."""
    digest = hashlib.sha256()
    for path, text in sorted(container.files.items()):
        digest.update(path.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()


def probes(args: KubernetesServiceArgs) -> dict[str, CORE.ProbeArgs]:
    """Readiness and liveness on the registry's health endpoint, timed like the Docker healthcheck."""
    if args.health is None:
        return {}
    h = args.container.health
    period = _seconds(h.interval) if h else PROBE_PERIOD_SECONDS
    timeout = _seconds(h.timeout) if h else PROBE_TIMEOUT_SECONDS
    failures = h.retries if h else PROBE_FAILURES
    start = _seconds(h.start_period) if h else PROBE_START_SECONDS
    get = CORE.HTTPGetActionArgs(path=args.health.path, port=args.health.port)
    return {
        "readiness_probe": CORE.ProbeArgs(http_get=get, period_seconds=period, timeout_seconds=timeout,
                                          failure_threshold=3),
        "liveness_probe": CORE.ProbeArgs(http_get=get, period_seconds=period, timeout_seconds=timeout,
                                         failure_threshold=failures, initial_delay_seconds=start),
    }


def hardened_pod(name: str, args: KubernetesServiceArgs, image: pulumi.Input[str], kind: Kind,
                 config_map: str | None, secret: str | None, service_account: str) -> CORE.PodTemplateSpecArgs:
    """The pod of one service, hardened the same way for every service of the stack."""
    spec = args.container
    uid = spec.uid
    if uid is None or uid == 0:
        raise ValueError(f"{name}: its Container states no non-root uid; a cluster pod must run as one")
    mounts: list[CORE.VolumeMountArgs] = []
    volumes: list[CORE.VolumeArgs] = []
    if config_map is not None:
        volumes.append(CORE.VolumeArgs(name="config", config_map=CORE.ConfigMapVolumeSourceArgs(name=config_map)))
        mounts += [CORE.VolumeMountArgs(name="config", mount_path=path, sub_path=file_key(path), read_only=True)
                   for path in sorted(spec.files)]
    if secret is not None:
        volumes.append(CORE.VolumeArgs(name="secrets", secret=CORE.SecretVolumeSourceArgs(
            secret_name=secret, default_mode=0o440)))
        mounts += [CORE.VolumeMountArgs(name="secrets", mount_path=f.path, sub_path=file_key(f.path), read_only=True)
                   for f in sorted(spec.secret_files, key=lambda f: f.path)]
    for v in spec.volumes:
        if v.read_only:
            raise ValueError(f"{name}: mounts {v.name} of another service, which no pod on a cluster can share")
        if kind != "StatefulSet":
            raise ValueError(f"{name}: a {kind} cannot own the data volume {v.name}")
        mounts.append(CORE.VolumeMountArgs(name=v.name, mount_path=v.path))  # its claim template
    if spec.host_paths:
        raise ValueError(f"{name}: mounts host paths; on a cluster it must not")
    tmpfs = dict(spec.tmpfs)
    tmpfs.setdefault(TMP_DIR, "")
    for i, (path, options) in enumerate(sorted(tmpfs.items())):
        # on the node's disk, not in memory: a memory-backed emptyDir counts against the container's limit
        volumes.append(CORE.VolumeArgs(name=f"tmp-{i}", empty_dir=CORE.EmptyDirVolumeSourceArgs(
            size_limit=_size(options))))
        mounts.append(CORE.VolumeMountArgs(name=f"tmp-{i}", mount_path=path))

    downward = [CORE.EnvVarArgs(name=env, value_from=CORE.EnvVarSourceArgs(
        field_ref=CORE.ObjectFieldSelectorArgs(field_path=path)))
        for env, path in ((POD_NAME_ENV, "metadata.name"), (POD_IP_ENV, "status.podIP"),
                          (NODE_NAME_ENV, "spec.nodeName"))]
    memory = f"{args.memory_mb}Mi"
    container = CORE.ContainerArgs(
        name=name,
        image=image,
        image_pull_policy="IfNotPresent",
        args=list(spec.command) if spec.command is not None else None,
        env=downward + [CORE.EnvVarArgs(name=k, value=v) for k, v in sorted(spec.env.items())],
        ports=[CORE.ContainerPortArgs(name=p.name, container_port=p.number, protocol=p.protocol) for p in args.ports]
        or None,
        resources=CORE.ResourceRequirementsArgs(requests={"cpu": CPU_REQUEST, "memory": memory},
                                                limits={"memory": memory}),
        security_context=CORE.SecurityContextArgs(
            run_as_non_root=True, run_as_user=uid, run_as_group=uid, read_only_root_filesystem=True,
            allow_privilege_escalation=False, privileged=False,
            capabilities=CORE.CapabilitiesArgs(drop=["ALL"], add=sorted(spec.cap_adds) or None),
            seccomp_profile=CORE.SeccompProfileArgs(type="RuntimeDefault")),
        volume_mounts=mounts,
        **probes(args),
    )
    spread = None
    if kind != "DaemonSet" and args.replicas > 1:
        # replicas on different nodes, so one node going away leaves the others serving
        spread = [CORE.TopologySpreadConstraintArgs(max_skew=1, topology_key=HOSTNAME_TOPOLOGY,
                                                    when_unsatisfiable="DoNotSchedule",
                                                    label_selector=META.LabelSelectorArgs(
                                                        match_labels=selector(args.stack, name)))]
    return CORE.PodTemplateSpecArgs(
        metadata=META.ObjectMetaArgs(labels=labels(args.stack, name),
                                     annotations={"observability/config-sha256": config_checksum(spec)}),
        spec=CORE.PodSpecArgs(
            service_account_name=service_account,
            automount_service_account_token=bool(args.reads_cluster),
            security_context=CORE.PodSecurityContextArgs(
                run_as_non_root=True, run_as_user=uid, run_as_group=uid, fs_group=spec.file_owner or uid,
                fs_group_change_policy="OnRootMismatch",
                seccomp_profile=CORE.SeccompProfileArgs(type="RuntimeDefault")),
            containers=[container],
            volumes=volumes,
            topology_spread_constraints=spread,
        ),
    )


class KubernetesService(pulumi.ComponentResource):
    """One service of the registry on a cluster: its config, secrets, account, Services, workload and policies."""

    workload: k8s.apps.v1.Deployment | k8s.apps.v1.StatefulSet | k8s.apps.v1.DaemonSet
    kind: Kind
    credentials: dict[str, random.RandomPassword]

    def __init__(self, name: str, args: KubernetesServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("observability:kubernetes:Service", name, None, opts)
        spec = args.container
        child = pulumi.ResourceOptions(parent=self)
        self.kind = workload_kind(spec, args.placement, args.ports)
        self.credentials = {c.name: credential(c, child) for c in spec.credentials}
        secrets: dict[str, pulumi.Output[str]] = {**args.secrets, **{n: c.result for n, c in self.credentials.items()}}

        def meta(object_name: str) -> META.ObjectMetaArgs:
            return META.ObjectMetaArgs(name=object_name, namespace=args.namespace, labels=labels(args.stack, name))

        config_map = secret = None
        if spec.files:
            config_map = f"{name}-config"
            k8s.core.v1.ConfigMap(config_map, metadata=meta(config_map),
                                  data={file_key(p): text for p, text in sorted(spec.files.items())}, opts=child)
        if spec.secret_files:
            secret = f"{name}-secrets"
            data: dict[str, pulumi.Input[str]] = {}
            for f in spec.secret_files:
                missing = [s for s in f.secrets if s not in secrets]
                if missing:
                    raise ValueError(f"{name}: the secret file {f.path} needs {', '.join(missing)}, "
                                     "which the stack does not provide")
                data[file_key(f.path)] = pulumi.Output.secret(pulumi.Output.all(*(secrets[s] for s in f.secrets)).apply(
                    lambda values, template=f.template: template.format(*values)))
            k8s.core.v1.Secret(secret, metadata=meta(secret), type="Opaque", string_data=data, opts=child)

        account = k8s.core.v1.ServiceAccount(name, metadata=meta(name), automount_service_account_token=False,
                                             opts=child)
        if args.reads_cluster:
            role = k8s.rbac.v1.Role(name, metadata=meta(name), rules=[k8s.rbac.v1.PolicyRuleArgs(
                api_groups=[""], resources=list(args.reads_cluster), verbs=["get", "list", "watch"])], opts=child)
            k8s.rbac.v1.RoleBinding(name, metadata=meta(name), role_ref=k8s.rbac.v1.RoleRefArgs(
                api_group="rbac.authorization.k8s.io", kind="Role", name=role.metadata.name),
                subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=name, namespace=args.namespace)],
                opts=child)

        clients = [p for p in args.ports if not p.peers]
        if clients:
            k8s.core.v1.Service(name, metadata=meta(name), spec=CORE.ServiceSpecArgs(
                selector=selector(args.stack, name), ports=[_service_port(p) for p in clients]), opts=child)
        if self.kind == "StatefulSet":
            # stable names for each replica (alertmanager-0.alertmanager-headless...), known before they are
            # ready: peers find each other while they start
            k8s.core.v1.Service(headless(name), metadata=meta(headless(name)), spec=CORE.ServiceSpecArgs(
                cluster_ip="None", publish_not_ready_addresses=True, selector=selector(args.stack, name),
                ports=[_service_port(p) for p in args.ports]), opts=child)

        image = args.built_image if args.built_image is not None else spec.image
        pod = hardened_pod(name, args, image, self.kind, config_map, secret, account.metadata.name)
        match = META.LabelSelectorArgs(match_labels=selector(args.stack, name))
        # A component's depends_on does not hold its children back: the workload itself waits for the
        # services this one talks to (ready: pulumi-kubernetes awaits each rollout).
        after = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(
            depends_on=opts.depends_on if opts is not None else None))
        if self.kind == "DaemonSet":
            self.workload = k8s.apps.v1.DaemonSet(name, metadata=meta(name), spec=k8s.apps.v1.DaemonSetSpecArgs(
                selector=match, template=pod), opts=after)
        elif self.kind == "StatefulSet":
            claims = [CORE.PersistentVolumeClaimArgs(
                metadata=META.ObjectMetaArgs(name=v.name, labels=labels(args.stack, name)),
                spec=CORE.PersistentVolumeClaimSpecArgs(
                    access_modes=["ReadWriteOnce"], storage_class_name=args.storage_class or None,
                    resources=CORE.VolumeResourceRequirementsArgs(requests={"storage": f"{v.size_gi}Gi"})))
                for v in spec.volumes]
            self.workload = k8s.apps.v1.StatefulSet(name, metadata=meta(name), spec=k8s.apps.v1.StatefulSetSpecArgs(
                service_name=headless(name), replicas=args.replicas, selector=match, template=pod,
                pod_management_policy="Parallel", volume_claim_templates=claims or None,
                # data outlives the workload, as the protected volumes do on Docker
                persistent_volume_claim_retention_policy=k8s.apps.v1.StatefulSetPersistentVolumeClaimRetentionPolicyArgs(
                    when_deleted="Retain", when_scaled="Retain")), opts=after)
        else:
            self.workload = k8s.apps.v1.Deployment(name, metadata=meta(name), spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=args.replicas, selector=match, template=pod), opts=after)
        if self.kind != "DaemonSet" and args.replicas > 1:
            k8s.policy.v1.PodDisruptionBudget(name, metadata=meta(name), spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=1, selector=match), opts=child)
        k8s.networking.v1.NetworkPolicy(name, metadata=meta(name),
                                        spec=network_policy(args.stack, name, args.ingress, args.egress, args.outside),
                                        opts=child)
        self.register_outputs({"workload": self.workload.metadata.name, "kind": self.kind})


def _service_port(p: Port) -> CORE.ServicePortArgs:
    return CORE.ServicePortArgs(name=p.name, port=p.number, target_port=p.name, protocol=p.protocol)


def _peer_ports(ports: Sequence[Port]) -> list[k8s.networking.v1.NetworkPolicyPortArgs]:
    return [k8s.networking.v1.NetworkPolicyPortArgs(port=p.number, protocol=p.protocol) for p in ports]


DNS_PORT = 53
DNS_PEER = k8s.networking.v1.NetworkPolicyPeerArgs(
    namespace_selector=META.LabelSelectorArgs(match_labels={"kubernetes.io/metadata.name": "kube-system"}),
    pod_selector=META.LabelSelectorArgs(match_labels={"k8s-app": "kube-dns"}))
ANYWHERE = k8s.networking.v1.NetworkPolicyPeerArgs(ip_block=k8s.networking.v1.IPBlockArgs(cidr="0.0.0.0/0"))


def network_policy(stack: str, name: str, ingress: Sequence[Flow], egress: Sequence[Flow],
                   outside: Sequence[Egress]) -> k8s.networking.v1.NetworkPolicySpecArgs:
    """This service's allowed traffic (the namespace denies everything else): each flow in from the pods of its
    source, each flow out to the pods of its target, the cluster DNS, and the named ports beyond the stack."""
    def pods(service: str) -> k8s.networking.v1.NetworkPolicyPeerArgs:
        return k8s.networking.v1.NetworkPolicyPeerArgs(
            pod_selector=META.LabelSelectorArgs(match_labels=selector(stack, service)))

    rules_in = [k8s.networking.v1.NetworkPolicyIngressRuleArgs(from_=[pods(f.source)], ports=_peer_ports(f.ports))
                for f in ingress]
    rules_out = [k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=[pods(f.target)], ports=_peer_ports(f.ports))
                 for f in egress]
    rules_out.append(k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=[DNS_PEER], ports=[
        k8s.networking.v1.NetworkPolicyPortArgs(port=DNS_PORT, protocol=proto) for proto in ("UDP", "TCP")]))
    rules_out += [k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=[ANYWHERE], ports=[
        k8s.networking.v1.NetworkPolicyPortArgs(port=port, protocol="TCP") for port in e.ports]) for e in outside]
    return k8s.networking.v1.NetworkPolicySpecArgs(
        pod_selector=META.LabelSelectorArgs(match_labels=selector(stack, name)),
        policy_types=["Ingress", "Egress"], ingress=rules_in, egress=rules_out)
