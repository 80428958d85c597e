"""The pack's policies: each validate function is plain code that tests call with hand-built args.

Mandatory: memory limit, all capabilities dropped, no-new-privileges, no port on every
interface unless the stack opts in, pinned images, no plain secrets in environment or
uploads, protected data volumes, every container inside an ``observability:`` component.
Advisory: healthcheck, restart policy, log rotation. Each policy also checks the Kubernetes resources
of a cluster stack: the checks in ``kubernetes.py`` run beside the Docker ones under the same name.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Callable, Mapping
from typing import Any, Final

import pulumi
from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_OBJECT_VALUE, UnknownValueError

from . import kubernetes
from .patterns import env_findings, image_problem, secret_findings
from .props import UNKNOWN, get, is_secret, items, labels, reveal

PROJECT: Final = "observability"
CONTAINER: Final = "docker:index/container:Container"
REMOTE_IMAGE: Final = "docker:index/remoteImage:RemoteImage"
BUILT_IMAGE: Final = "docker:index/image:Image"
VOLUME: Final = "docker:index/volume:Volume"
COMPONENT_PREFIX: Final = f"{PROJECT}:"
ALLOW_PUBLIC_PORTS: Final = "allowPublicPorts"

ResourceValidation = Callable[[ResourceValidationArgs, ReportViolation], None]


def _only(resource_type: str) -> Callable[[ResourceValidation], ResourceValidation]:
    """Run the wrapped validation only on resources of ``resource_type``."""
    def wrap(fn: ResourceValidation) -> ResourceValidation:
        def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
            if args.resource_type == resource_type:
                fn(args, report)
        validate.__name__ = fn.__name__
        validate.__doc__ = fn.__doc__
        return validate
    return wrap


def _known(value: Any, path: str) -> Any:
    """``value``, or the SDK's "can't be known during preview" outcome (reported as advisory)."""
    if value is UNKNOWN:
        raise UnknownValueError(UNKNOWN_OBJECT_VALUE, [path])
    return value


# --- hardening ------------------------------------------------------------------------------


@_only(CONTAINER)
def memory_limit(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """A container sets a memory limit (``memory``, MiB, > 0)."""
    memory = reveal(_known(get(args.props, "memory"), "memory"))
    if not isinstance(memory, (int, float)) or memory <= 0:
        report(f"container {args.name} has no memory limit (memory={memory!r}): set memory in MiB")


@_only(CONTAINER)
def drops_all_capabilities(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """A container drops ALL Linux capabilities (it may add back the few it needs)."""
    caps = reveal(_known(get(args.props, "capabilities"), "capabilities"))
    drops = [str(reveal(c)).upper() for c in items(get(caps, "drops"))]
    if "ALL" not in drops:
        report(f"container {args.name} does not drop all capabilities (drops={drops}): "
               "set capabilities.drops to [\"ALL\"]")


@_only(CONTAINER)
def no_new_privileges(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """A container sets the ``no-new-privileges`` security option."""
    opts = [str(reveal(o)).replace("=", ":") for o in items(_known(get(args.props, "securityOpts"), "securityOpts"))]
    if not any(o in ("no-new-privileges", "no-new-privileges:true") for o in opts):
        report(f"container {args.name} lacks security_opts no-new-privileges:true (has {opts})")


# --- public ports ----------------------------------------------------------------------------


def public_ports_allowed(args: ResourceValidationArgs) -> bool:
    """The opt-in: policy config ``allowPublicPorts`` if given, else the stack's ``observability:allowPublicPorts``.

    The engine hands a policy pack the stack's config (``PULUMI_CONFIG``), so the pack reads
    the very key the program reads; the policy config only exists to override it (e.g. an
    organisation forcing ``false`` with ``--policy-pack-config``).
    """
    config: Mapping[str, Any] = args.get_config() or {}
    if ALLOW_PUBLIC_PORTS in config:
        return str(config[ALLOW_PUBLIC_PORTS]).lower() == "true"
    return bool(pulumi.Config(PROJECT).get_bool(ALLOW_PUBLIC_PORTS))


def is_every_interface(ip: Any) -> bool:
    """True for an address that binds every interface: missing (Docker's default), '', 0.0.0.0, ::."""
    if ip is None:
        return True
    text = str(ip).strip().strip("[]")
    if not text:
        return True
    try:
        return ipaddress.ip_address(text).is_unspecified
    except ValueError:
        return False


def _num(value: Any) -> Any:
    """Ports arrive as floats (protobuf numbers): 9090.0 -> 9090 for messages."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


@_only(CONTAINER)
def no_public_ports(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """No host port binds every interface unless the stack sets allowPublicPorts."""
    if public_ports_allowed(args):
        return
    hint = f"bind 127.0.0.1, or opt in with `pulumi config set {ALLOW_PUBLIC_PORTS} true`"
    for port in map(reveal, items(get(args.props, "ports"))):
        ip = reveal(get(port, "ip"))
        if ip is UNKNOWN:
            continue  # only known during the update; the program binds literals, so this is rare
        if is_every_interface(ip):
            report(f"container {args.name} publishes port {_num(get(port, 'external'))} -> {_num(get(port, 'internal'))} "
                   f"on every interface (ip={ip!r}): {hint}")
    if reveal(get(args.props, "publishAllPorts")) is True:
        report(f"container {args.name} sets publish_all_ports (every interface): {hint}")
    if reveal(get(args.props, "networkMode")) == "host":
        report(f"container {args.name} uses the host network (every port on every interface): {hint}")


# --- images -----------------------------------------------------------------------------------


def pinned_images(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Images are pinned by tag or digest: RemoteImage.name, Image.imageName, Container.image."""
    field = {REMOTE_IMAGE: "name", BUILT_IMAGE: "imageName", CONTAINER: "image"}.get(args.resource_type)
    if field is None:
        return
    ref = reveal(get(args.props, field))
    if ref in (UNKNOWN, None) and args.resource_type == CONTAINER:
        return  # an image id output not known yet (mocks omit it): its RemoteImage/Image is checked
    ref = _known(ref, field)
    if not isinstance(ref, str) or not ref:
        report(f"{args.resource_type.rsplit(':', 1)[-1]} {args.name} has no image reference in {field}")
        return
    problem = image_problem(ref)
    if problem:
        report(f"{args.name}: {problem}")


# --- secrets ------------------------------------------------------------------------------------


def _upload_text(upload: Any) -> tuple[str, str] | None:
    """(kind, plain text) of an upload's inline content; None when it is secret or not inline."""
    content = get(upload, "content")
    if isinstance(content, str):
        return "content", content
    encoded = get(upload, "contentBase64")
    if isinstance(encoded, str):
        try:
            return "content_base64", base64.b64decode(encoded, validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            return "content_base64", encoded
    return None  # a Pulumi secret, unknown, or a host file (source)


@_only(CONTAINER)
def no_plain_secrets(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """No secret-looking value in plain environment or uploads: secrets travel as Pulumi secrets."""
    envs = get(args.props, "envs")
    if not is_secret(envs):
        for entry in items(envs):
            if is_secret(entry) or not isinstance(entry, str):
                continue
            found = env_findings(entry)
            if found:
                report(f"container {args.name} has a plain {', '.join(found)} in env {entry.partition('=')[0]}: "
                       "deliver it as a secret upload read through a *_FILE setting")
    uploads = get(args.props, "uploads")
    if is_secret(uploads):
        return
    for upload in items(uploads):
        if is_secret(upload):
            continue
        text = _upload_text(upload)
        if text is None:
            continue
        found = secret_findings(text[1])
        if found:
            report(f"container {args.name} uploads {reveal(get(upload, 'file'))} with a plain {', '.join(found)} "
                   f"in {text[0]}: pass the content as pulumi.Output.secret(...)")


# --- volumes ----------------------------------------------------------------------------------


@_only(VOLUME)
def data_volumes_protected(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """A volume labelled data=true is protected (protect=True) so no update can delete it."""
    if labels(args.props).get("data") == "true" and not args.opts.protect:
        report(f"volume {args.name} holds data (label data=true) but is not protected: "
               "create it with pulumi.ResourceOptions(protect=True)")


# --- advisory ---------------------------------------------------------------------------------


@_only(CONTAINER)
def healthcheck(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """A container has a healthcheck (so dependants wait for healthy, and Docker reports it)."""
    tests = [str(reveal(t)) for t in items(get(reveal(get(args.props, "healthcheck")), "tests"))]
    if not tests or tests[0].upper() == "NONE":
        report(f"container {args.name} has no healthcheck")


RESTART_POLICIES: Final = frozenset({"always", "unless-stopped", "on-failure"})


@_only(CONTAINER)
def restart_policy(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """A container restarts after a crash or a host reboot."""
    restart = reveal(get(args.props, "restart"))
    if restart not in RESTART_POLICIES:
        report(f"container {args.name} has restart={restart!r}: expected one of {sorted(RESTART_POLICIES)}")


@_only(CONTAINER)
def log_rotation(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Container logs are rotated: json-file with max-size, or the local driver (which rotates)."""
    driver = reveal(get(args.props, "logDriver")) or "json-file"
    if driver != "json-file":
        return  # local rotates by itself; journald/syslog/loki ship the logs elsewhere
    opts = reveal(get(args.props, "logOpts")) or {}
    if not isinstance(opts, Mapping) or not reveal(get(opts, "max-size")):
        report(f"container {args.name} logs to json-file without rotation: set log_opts max-size and max-file")


# --- stack ------------------------------------------------------------------------------------


def _stack_checks(*checks: Callable[[StackValidationArgs, ReportViolation], None]) -> Callable[
        [StackValidationArgs, ReportViolation], None]:
    """One stack validation running each of `checks`."""
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        for check in checks:
            check(args, report)
    return validate


def containers_in_components(args: StackValidationArgs, report: ReportViolation) -> None:
    """Every container is the child of an ``observability:`` component (one builder, one place)."""
    for resource in args.resources:
        if resource.resource_type != CONTAINER:
            continue
        parent = resource.parent
        if parent is None or not parent.resource_type.startswith(COMPONENT_PREFIX):
            where = parent.resource_type if parent is not None else "the stack itself"
            report(f"container {resource.name} is parented to {where}, not an {COMPONENT_PREFIX}* component",
                   resource.urn)


# --- the policies -----------------------------------------------------------------------------

MANDATORY = EnforcementLevel.MANDATORY
ADVISORY = EnforcementLevel.ADVISORY

POLICIES: list[Policy] = [
    ResourceValidationPolicy("container-memory-limit", "Every container sets a memory limit (on Kubernetes: "
                             "requests and a memory limit).", [memory_limit, kubernetes.resources], MANDATORY),
    ResourceValidationPolicy("container-drop-all-capabilities", "Every container drops all capabilities.",
                             [drops_all_capabilities, kubernetes.capabilities], MANDATORY),
    ResourceValidationPolicy("container-no-new-privileges", "Every container sets no-new-privileges (on Kubernetes: "
                             "the hardened securityContext, no host namespaces or paths).",
                             [no_new_privileges, kubernetes.security_context, kubernetes.host_access], MANDATORY),
    ResourceValidationPolicy(
        "no-public-ports", "No port binds 0.0.0.0/::/empty (no LoadBalancer, NodePort or host port) unless the stack "
        "sets allowPublicPorts.",
        [no_public_ports, kubernetes.no_public_services, kubernetes.no_host_ports], MANDATORY,
        config_schema=PolicyConfigSchema(properties={ALLOW_PUBLIC_PORTS: {"type": "boolean"}})),
    ResourceValidationPolicy("images-pinned", "Every image is pinned by tag or digest (never latest or untagged).",
                             [pinned_images, kubernetes.pinned_images], MANDATORY),
    ResourceValidationPolicy("no-plain-secrets",
                             "No secret-looking value in plain container environment, uploads or ConfigMaps; "
                             "a Secret's data are Pulumi secrets.",
                             [no_plain_secrets, kubernetes.no_plain_secret_env, kubernetes.no_plain_secret_data],
                             MANDATORY),
    ResourceValidationPolicy("data-volumes-protected", "Volumes labelled data=true are protected; a StatefulSet "
                             "retains its volume claims.", [data_volumes_protected, kubernetes.retained_claims],
                             MANDATORY),
    ResourceValidationPolicy("container-healthcheck", "Containers have a healthcheck (on Kubernetes: readiness and "
                             "liveness probes).", [healthcheck, kubernetes.probes], ADVISORY),
    ResourceValidationPolicy("container-restart-policy", "Containers restart unless stopped.",
                             restart_policy, ADVISORY),
    ResourceValidationPolicy("container-log-rotation", "Container logs are rotated.", log_rotation, ADVISORY),
    StackValidationPolicy("containers-in-components",
                          "Every container and workload belongs to an observability: component; a namespace "
                          "with workloads denies traffic by default.",
                          _stack_checks(containers_in_components, kubernetes.workloads_in_components,
                                        kubernetes.default_deny), MANDATORY),
]
