"""The pack's rules as a cluster spells them: each check joins the Docker policy it extends (rules.POLICIES).

container-memory-limit: requests (CPU, memory) and a memory limit on every container.
container-drop-all-capabilities: ALL capabilities dropped, nothing privileged.
container-no-new-privileges: no privilege escalation, and the rest of the hardened security context
(non-root, read-only root filesystem, the RuntimeDefault seccomp profile, no host namespaces or paths).
no-public-ports: no LoadBalancer or NodePort Service, no host port, unless the stack sets allowPublicPorts.
images-pinned: every container image. no-plain-secrets: environment, ConfigMaps, a Secret's data.
data-volumes-protected: a StatefulSet's volume claims outlive it (retention policy Retain).
containers-in-components: every workload too, and every namespace with workloads denies traffic by default.
container-healthcheck (advisory): readiness and liveness probes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pulumi_policy import ReportViolation, ResourceValidationArgs, StackValidationArgs

from .patterns import env_findings, image_problem, secret_findings
from .props import UNKNOWN, get, is_secret, items, reveal

DEPLOYMENT: Final = "kubernetes:apps/v1:Deployment"
STATEFULSET: Final = "kubernetes:apps/v1:StatefulSet"
DAEMONSET: Final = "kubernetes:apps/v1:DaemonSet"
REPLICASET: Final = "kubernetes:apps/v1:ReplicaSet"
JOB: Final = "kubernetes:batch/v1:Job"
CRONJOB: Final = "kubernetes:batch/v1:CronJob"
POD: Final = "kubernetes:core/v1:Pod"
CONFIG_MAP: Final = "kubernetes:core/v1:ConfigMap"
SECRET: Final = "kubernetes:core/v1:Secret"
SERVICE: Final = "kubernetes:core/v1:Service"
NETWORK_POLICY: Final = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
WORKLOADS: Final = frozenset({DEPLOYMENT, STATEFULSET, DAEMONSET, REPLICASET, JOB, CRONJOB, POD})
PUBLIC_SERVICE_TYPES: Final = frozenset({"LoadBalancer", "NodePort"})


def pod_spec(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod spec of a workload (a Pod's own spec; a CronJob's job template's), None for other types."""
    if resource_type not in WORKLOADS:
        return None
    spec = reveal(get(props, "spec"))
    if resource_type == POD:
        return spec if isinstance(spec, Mapping) else None
    if resource_type == CRONJOB:
        spec = reveal(get(reveal(get(spec, "jobTemplate")), "spec"))
    pod = reveal(get(reveal(get(spec, "template")), "spec"))
    return pod if isinstance(pod, Mapping) else None


def containers(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Init and regular containers of a pod spec."""
    return [reveal(c) for key in ("initContainers", "containers") for c in items(get(pod, key))
            if isinstance(reveal(c), Mapping)]


def _workloads(fn: Any) -> Any:
    """Run the wrapped check once per container of a workload, with its pod spec."""
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        pod = pod_spec(args.resource_type, args.props)
        if pod is None:
            return
        for container in containers(pod):
            fn(args, pod, container, report)
    validate.__name__ = fn.__name__
    validate.__doc__ = fn.__doc__
    return validate


def _num(value: Any) -> Any:
    """Numbers arrive as floats (protobuf): 9090.0 -> 9090 for messages."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _who(args: ResourceValidationArgs, container: Mapping[str, Any]) -> str:
    return f"{args.resource_type.rsplit(':', 1)[-1]} {args.name} container {reveal(get(container, 'name'))}"


@_workloads
def resources(args: ResourceValidationArgs, pod: Mapping[str, Any], container: Mapping[str, Any],
              report: ReportViolation) -> None:
    """A container requests CPU and memory and sets a memory limit."""
    res = reveal(get(container, "resources")) or {}
    limits, requests = reveal(get(res, "limits")) or {}, reveal(get(res, "requests")) or {}
    missing = [] if reveal(get(limits, "memory")) else ["limits.memory"]
    missing += [f"requests.{k}" for k in ("cpu", "memory") if not reveal(get(requests, k))]
    if missing:
        report(f"{_who(args, container)} sets no {', '.join(missing)}: set resources.requests (cpu, memory) "
               "and resources.limits.memory")


def _setting(pod: Mapping[str, Any], container: Mapping[str, Any], name: str) -> Any:
    """A security setting of the container, else of the pod (the container's wins, as in Kubernetes)."""
    value = reveal(get(reveal(get(container, "securityContext")), name))
    return value if value is not None else reveal(get(reveal(get(pod, "securityContext")), name))


@_workloads
def capabilities(args: ResourceValidationArgs, pod: Mapping[str, Any], container: Mapping[str, Any],
                 report: ReportViolation) -> None:
    """ALL capabilities dropped, and not privileged (which would give them all back)."""
    sc = reveal(get(container, "securityContext")) or {}
    drops = [str(reveal(c)).upper() for c in items(get(reveal(get(sc, "capabilities")), "drop"))]
    problems = [] if "ALL" in drops else [f"capabilities.drop is {drops}, not [ALL]"]
    if reveal(get(sc, "privileged")) is True:
        problems.append("privileged is true")
    if problems:
        report(f"{_who(args, container)} keeps capabilities: {'; '.join(problems)}")


@_workloads
def security_context(args: ResourceValidationArgs, pod: Mapping[str, Any], container: Mapping[str, Any],
                     report: ReportViolation) -> None:
    """No privilege escalation, non-root, read-only root filesystem, RuntimeDefault seccomp."""
    sc = reveal(get(container, "securityContext")) or {}
    problems = []
    if _setting(pod, container, "runAsNonRoot") is not True:
        problems.append("runAsNonRoot is not true")
    if _setting(pod, container, "runAsUser") == 0:
        problems.append("runAsUser is 0")
    if reveal(get(sc, "readOnlyRootFilesystem")) is not True:
        problems.append("readOnlyRootFilesystem is not true")
    if reveal(get(sc, "allowPrivilegeEscalation")) is not False:
        problems.append("allowPrivilegeEscalation is not false")
    seccomp = reveal(get(reveal(_setting(pod, container, "seccompProfile")), "type"))
    if seccomp not in ("RuntimeDefault", "Localhost"):
        problems.append(f"seccompProfile is {seccomp!r}, not RuntimeDefault")
    if problems:
        report(f"{_who(args, container)} is not hardened: {'; '.join(problems)}")


def host_access(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """A pod uses no host network, PID or IPC namespace and mounts no host path."""
    pod = pod_spec(args.resource_type, args.props)
    if pod is None:
        return
    used = [k for k in ("hostNetwork", "hostPID", "hostIPC") if reveal(get(pod, k)) is True]
    used += [f"hostPath volume {reveal(get(v, 'name'))}" for v in map(reveal, items(get(pod, "volumes")))
             if get(v, "hostPath") is not None]
    if used:
        report(f"{args.resource_type.rsplit(':', 1)[-1]} {args.name} uses the host: {', '.join(used)}")


@_workloads
def pinned_images(args: ResourceValidationArgs, pod: Mapping[str, Any], container: Mapping[str, Any],
                  report: ReportViolation) -> None:
    """Every container image is pinned by tag or digest."""
    ref = reveal(get(container, "image"))
    if ref is UNKNOWN:
        return  # a built image's name, known once it is built; the image resource itself is checked
    problem = image_problem(ref) if isinstance(ref, str) and ref else "no image reference"
    if problem:
        report(f"{_who(args, container)}: {problem}")


@_workloads
def no_plain_secret_env(args: ResourceValidationArgs, pod: Mapping[str, Any], container: Mapping[str, Any],
                        report: ReportViolation) -> None:
    """No secret-looking value in a container's plain environment (valueFrom a Secret, or a file, instead)."""
    for entry in map(reveal, items(get(container, "env"))):
        name, value = reveal(get(entry, "name")), get(entry, "value")
        if not isinstance(value, str) or is_secret(value):
            continue
        found = env_findings(f"{name}={value}")
        if found:
            report(f"{_who(args, container)} has a plain {', '.join(found)} in env {name}: mount it from a "
                   "Secret and read it through a *_FILE setting")


def retained_claims(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """A StatefulSet's volume claims are retained when it is deleted or scaled down (its data outlives it)."""
    if args.resource_type != STATEFULSET:
        return
    spec = reveal(get(args.props, "spec")) or {}
    if not items(get(spec, "volumeClaimTemplates")):
        return
    policy = reveal(get(spec, "persistentVolumeClaimRetentionPolicy")) or {}
    deleted = reveal(get(policy, "whenDeleted")) or "Retain"  # Kubernetes' default
    if deleted != "Retain":
        report(f"StatefulSet {args.name} deletes its data volumes with it (whenDeleted={deleted}): set "
               "persistentVolumeClaimRetentionPolicy.whenDeleted to Retain")


def no_plain_secret_data(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """No secret-looking value in a ConfigMap; a Secret's data and stringData travel as Pulumi secrets."""
    if args.resource_type == CONFIG_MAP:
        for field in ("data", "binaryData"):
            data = reveal(get(args.props, field)) or {}
            for key in data if isinstance(data, Mapping) else []:
                value = get(data, key)
                if isinstance(value, str) and not is_secret(value):
                    found = secret_findings(value)
                    if found:
                        report(f"ConfigMap {args.name} holds a plain {', '.join(found)} in {key}: put it in a Secret")
    elif args.resource_type == SECRET:
        for field in ("data", "stringData"):
            data = get(args.props, field)
            if data is None or is_secret(data):
                continue
            plain = [k for k in (reveal(data) or {}) if not is_secret(get(reveal(data), k))]
            if plain:
                report(f"Secret {args.name} has {field} keys {plain} that are not Pulumi secrets: "
                       "pass them as pulumi.Output.secret(...)")


def no_public_services(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """No LoadBalancer or NodePort Service unless the stack sets allowPublicPorts."""
    from .rules import public_ports_allowed

    if args.resource_type == SERVICE and not public_ports_allowed(args):
        kind = reveal(get(reveal(get(args.props, "spec")), "type"))
        if kind in PUBLIC_SERVICE_TYPES:
            report(f"Service {args.name} is a {kind} (reachable from outside the cluster): {_public_hint()}")


@_workloads
def no_host_ports(args: ResourceValidationArgs, pod: Mapping[str, Any], container: Mapping[str, Any],
                  report: ReportViolation) -> None:
    """No container binds a host port (every node's address) unless the stack sets allowPublicPorts."""
    from .rules import public_ports_allowed

    bound = [_num(reveal(get(p, "hostPort"))) for p in map(reveal, items(get(container, "ports")))
             if get(p, "hostPort") is not None]
    if bound and not public_ports_allowed(args):
        report(f"{_who(args, container)} binds host ports {bound} on every node: {_public_hint()}")


def _public_hint() -> str:
    from .rules import ALLOW_PUBLIC_PORTS

    return (f"use ClusterIP and port-forward or an Ingress, or opt in with "
            f"`pulumi config set {ALLOW_PUBLIC_PORTS} true`")


@_workloads
def probes(args: ResourceValidationArgs, pod: Mapping[str, Any], container: Mapping[str, Any],
           report: ReportViolation) -> None:
    """A container has readiness and liveness probes (rollouts wait for ready; the kubelet restarts a hung one)."""
    missing = [p for p in ("readinessProbe", "livenessProbe") if get(container, p) is None]
    if missing:
        report(f"{_who(args, container)} has no {' or '.join(missing)}")


def _namespace(resource: Any) -> Any:
    return reveal(get(reveal(get(resource.props, "metadata")), "namespace"))


def default_deny(args: StackValidationArgs, report: ReportViolation) -> None:
    """Every namespace that runs a workload has a NetworkPolicy selecting all pods for Ingress and Egress."""
    denying = set()
    for r in args.resources:
        if r.resource_type != NETWORK_POLICY:
            continue
        spec = reveal(get(r.props, "spec")) or {}
        selector = reveal(get(spec, "podSelector")) or {}
        types = {str(reveal(t)) for t in items(get(spec, "policyTypes"))}
        every_pod = not reveal(get(selector, "matchLabels")) and not items(get(selector, "matchExpressions"))
        no_rules = not items(get(spec, "ingress")) and not items(get(spec, "egress"))
        if every_pod and no_rules and {"Ingress", "Egress"} <= types:
            denying.add(_namespace(r))
    for r in args.resources:
        if r.resource_type in WORKLOADS and _namespace(r) not in denying:
            report(f"{r.resource_type.rsplit(':', 1)[-1]} {r.name} runs in namespace {_namespace(r)!r}, which has "
                   "no default-deny NetworkPolicy (empty podSelector, Ingress and Egress, no rules)", r.urn)


def workloads_in_components(args: StackValidationArgs, report: ReportViolation) -> None:
    """Every workload is the child of an ``observability:`` component (one builder, one place)."""
    for r in args.resources:
        if r.resource_type not in WORKLOADS:
            continue
        parent = r.parent
        if parent is None or not parent.resource_type.startswith("observability:"):
            where = parent.resource_type if parent is not None else "the stack itself"
            report(f"{r.resource_type.rsplit(':', 1)[-1]} {r.name} is parented to {where}, "
                   "not an observability:* component", r.urn)
