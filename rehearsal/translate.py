"""pulumi-docker inputs -> podman settings, one input at a time; an input it does not know stops it.

Each registered input of a `docker:index/container:Container` (as the engine receives it, camelCase)
has one handler here that turns it into the podman setting with the same effect, and into what
`podman inspect` must show afterwards (so the rehearsal can prove the setting landed). Where the
Docker engine itself would refuse a declared input, the handler refuses it too, with Docker's own
message: podman is more lenient in places (it copies files into a read-only container, for one),
and a rehearsal that accepts what `pulumi up` would reject proves nothing.

Networks and volumes go the same way (`network_args`, `volume_args`); images are resolved by the
caller (`rehearsal.program`), since a container's `image` input is another resource's output.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable


class TranslationError(Exception):
    """A declared input the rehearsal cannot run as declared; the message names the input."""


class UnknownInput(TranslationError):
    """An input no handler knows: translating it would mean guessing or dropping it."""

    def __init__(self, resource: str, key: str, value: Any) -> None:
        super().__init__(f"{resource}: input {key!r} (= {value!r}) has no podman translation; "
                         f"add one to rehearsal/translate.py before rehearsing it")
        self.resource, self.key = resource, key


class InputTypeError(TranslationError):
    """An input whose value does not have the type pulumi-docker's schema gives it."""


class RefusedByDocker(TranslationError):
    """Docker (the engine `pulumi up` talks to) would refuse this declaration."""


# Docker's default interval between probes during the start period (moby daemon/health.go,
# defaultStartInterval); pulumi-docker sends none unless `startInterval` is set.
DOCKER_DEFAULT_START_INTERVAL = 5.0
DOCKER_DEFAULT_INTERVAL = 30.0
DOCKER_DEFAULT_TIMEOUT = 30.0
DOCKER_DEFAULT_RETRIES = 3


@dataclass(frozen=True)
class Upload:
    """One file the provider copies into the created container before starting it."""

    path: str
    content: bytes
    mode: int
    uid: int
    gid: int


@dataclass(frozen=True)
class Healthcheck:
    """A Docker healthcheck with its timings in seconds (Docker's defaults where none is declared)."""

    test: list[str]
    interval: float = DOCKER_DEFAULT_INTERVAL
    timeout: float = DOCKER_DEFAULT_TIMEOUT
    start_period: float = 0.0
    start_interval: float = DOCKER_DEFAULT_START_INTERVAL
    retries: int = DOCKER_DEFAULT_RETRIES


@dataclass
class ContainerRun:
    """Everything needed to create, fill, start and check one container as declared."""

    name: str
    image: str
    args: list[str] = field(default_factory=list)  # `podman create` options, then image, then command
    command: list[str] | None = None
    uploads: list[Upload] = field(default_factory=list)
    healthcheck: Healthcheck | None = None
    wait: bool = False
    wait_timeout: float = 0.0
    read_only: bool = False
    writable_paths: list[tuple[str, bool]] = field(default_factory=list)  # (container path, writable)
    expect: dict[str, Any] = field(default_factory=dict)  # inspect field -> declared value
    notes: list[str] = field(default_factory=list)  # declared settings podman cannot carry, said out loud

    def create_argv(self) -> list[str]:
        return ["create", "--pull=never", "--name", self.name, *self.args, self.image, *(self.command or [])]


# --- value checks ---------------------------------------------------------------------------


def _need(resource: str, key: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise InputTypeError(f"{resource}: input {key!r} is {value!r}: expected {what}")
    if not isinstance(value, kind):
        raise InputTypeError(f"{resource}: input {key!r} is {value!r} ({type(value).__name__}): expected {what}")
    return value


def _int(resource: str, key: str, value: Any) -> int:
    """Integers reach the engine as JSON numbers (10001.0); a fraction is not an integer."""
    _need(resource, key, value, (int, float), "an integer")
    if value != int(value):
        raise InputTypeError(f"{resource}: input {key!r} is {value!r}: expected an integer")
    return int(value)


def _strings(resource: str, key: str, value: Any) -> list[str]:
    _need(resource, key, value, list, "a list of strings")
    for i, item in enumerate(value):
        _need(resource, f"{key}[{i}]", item, str, "a string")
    return list(value)


def _only(resource: str, key: str, item: dict[str, Any], known: set[str]) -> None:
    """A nested input (an element of ports, uploads, ...) with a field no handler knows stops too."""
    for sub in item:
        if sub not in known:
            raise UnknownInput(resource, f"{key}.{sub}", item[sub])


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(resource: str, key: str, value: Any) -> float:
    """Seconds in a Go duration string ("1m30s"), the form the provider parses (time.ParseDuration)."""
    _need(resource, key, value, str, 'a Go duration such as "10s"')
    if value in ("0", ""):
        return 0.0
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise InputTypeError(f"{resource}: input {key!r} is {value!r}: expected a Go duration such as \"10s\"")
    return sum(float(n) * _UNIT[u] for n, u in parts)


# --- the container inputs -------------------------------------------------------------------

Handler = Callable[[str, Any, ContainerRun, dict[str, Any]], None]


def _name(res: str, v: Any, run: ContainerRun, _: dict) -> None:
    run.name = _need(res, "name", v, str, "a string")
    run.expect["Name"] = v


def _image(res: str, v: Any, run: ContainerRun, _: dict) -> None:
    _need(res, "image", v, str, "an image reference")  # resolved by the caller into run.image


def _command(res: str, v: Any, run: ContainerRun, _: dict) -> None:
    run.command = _strings(res, "command", v)
    run.expect["Config.Cmd"] = run.command


def _entrypoints(res: str, v: Any, run: ContainerRun, _: dict) -> None:
    entry = _strings(res, "entrypoints", v)
    run.args += ["--entrypoint", json.dumps(entry)]
    run.expect["Config.Entrypoint"] = entry


def _envs(res: str, v: Any, run: ContainerRun, _: dict) -> None:
    for i, item in enumerate(_strings(res, "envs", v)):
        if "=" not in item:
            # podman would copy a bare NAME from the rehearsing host's environment; Docker sends none.
            raise InputTypeError(f"{res}: input 'envs[{i}]' is {item!r}: expected NAME=VALUE")
        run.args += ["--env", item]
    run.expect["Config.Env ⊇"] = list(v)


def _user(res: str, v: Any, run: ContainerRun, _: dict) -> None:
    run.args += ["--user", _need(res, "user", v, str, '"uid[:gid]"')]
    run.expect["Config.User"] = v


def _memory(res: str, v: Any, run: ContainerRun, _: dict) -> None:
    mb = _int(res, "memory", v)  # pulumi-docker: MiB
    run.args += ["--memory", f"{mb}m"]
    run.expect["HostConfig.Memory"] = mb * 1024 * 1024


def _capabilities(res: str, v: Any, run: ContainerRun, _: dict) -> None:
    _need(res, "capabilities", v, dict, "{adds, drops}")
    _only(res, "capabilities", v, {"adds", "drops"})
    for cap in _strings(res, "capabilities.drops", v.get("drops") or []):
        run.args += ["--cap-drop", cap]
    for cap in _strings(res, "capabilities.adds", v.get("adds") or []):
        run.args += ["--cap-add", cap]
    run.expect["capabilities"] = {"drops": v.get("drops") or [], "adds": v.get("adds") or []}


def _security_opts(res: str, v: Any, run: ContainerRun, _: dict) -> None:
    for opt in _strings(res, "securityOpts", v):
        if opt not in ("no-new-privileges", "no-new-privileges:true"):
            raise UnknownInput(res, "securityOpts", opt)
        run.args += ["--security-opt", "no-new-privileges"]
    run.expect["HostConfig.SecurityOpt ∋"] = "no-new-privileges"


def _read_only(res: str, v: Any, run: ContainerRun, _: dict) -> None:
    run.read_only = _need(res, "readOnly", v, bool, "a boolean")
    if run.read_only:
        # Docker's --read-only mounts nothing writable in its place; podman's adds tmpfs on /run,
        # /tmp and /var/tmp unless told not to, which would hide a write the real stack refuses.
        run.args += ["--read-only", "--read-only-tmpfs=false"]
    run.expect["HostConfig.ReadonlyRootfs"] = run.read_only


def _tmpfs(res: str, v: Any, run: ContainerRun, _: dict) -> None:
    _need(res, "tmpfs", v, dict, "{path: options}")
    for path, opts in sorted(v.items()):
        _need(res, f"tmpfs[{path}]", opts, str, "mount options")
        # Docker mounts an empty tmpfs; podman copies the image's files up into it by default.
        run.args += ["--tmpfs", f"{path}:{opts},notmpcopyup" if opts else f"{path}:notmpcopyup"]
        run.writable_paths.append((path, "ro" not in opts.split(",")))
    run.expect["HostConfig.Tmpfs"] = sorted(v)


def _restart(res: str, v: Any, run: ContainerRun, _: dict) -> None:
    if v not in ("no", "on-failure", "always", "unless-stopped"):
        raise InputTypeError(f"{res}: input 'restart' is {v!r}: expected no, on-failure, always or unless-stopped")
    run.args += ["--restart", v]
    run.expect["HostConfig.RestartPolicy.Name"] = v


def _log_driver(res: str, v: Any, run: ContainerRun, _: dict) -> None:
    if v != "json-file":
        raise UnknownInput(res, "logDriver", v)
    run.args += ["--log-driver", "json-file"]  # podman keeps it in its k8s-file format; `podman logs` reads it
    run.expect["HostConfig.LogConfig.Type"] = "json-file"


def _log_opts(res: str, v: Any, run: ContainerRun, _: dict) -> None:
    _need(res, "logOpts", v, dict, "{option: value}")
    for key, value in sorted(v.items()):
        if key == "max-size":
            run.args += ["--log-opt", f"max-size={value}"]
        elif key == "max-file":
            # podman 4.3 has no rotation count: it accepts max-file and ignores it.
            run.notes.append(f"logOpts max-file={value}: podman keeps one log file (truncated at max-size)")
        else:
            raise UnknownInput(res, f"logOpts.{key}", value)


def _labels(res: str, v: Any, run: ContainerRun, _: dict) -> None:
    _need(res, "labels", v, list, "a list of {label, value}")
    labels = {}
    for i, item in enumerate(v):
        _only(res, f"labels[{i}]", item, {"label", "value"})
        labels[_need(res, f"labels[{i}].label", item["label"], str, "a string")] = \
            _need(res, f"labels[{i}].value", item["value"], str, "a string")
    for key, value in sorted(labels.items()):
        run.args += ["--label", f"{key}={value}"]
    run.expect["Config.Labels ⊇"] = labels


def _networks_advanced(res: str, v: Any, run: ContainerRun, _: dict) -> None:
    # The provider creates the container, disconnects it from the default bridge and connects it
    # to each of these networks with its aliases: the container is on these networks only.
    _need(res, "networksAdvanced", v, list, "a list of networks")
    networks = {}
    for i, net in enumerate(v):
        _only(res, f"networksAdvanced[{i}]", net, {"name", "aliases"})
        name = _need(res, f"networksAdvanced[{i}].name", net["name"], str, "a network name")
        aliases = _strings(res, f"networksAdvanced[{i}].aliases", net.get("aliases") or [])
        run.args += ["--network", name + (":" + ",".join(f"alias={a}" for a in aliases) if aliases else "")]
        networks[name] = aliases
    run.expect["networks"] = networks


def _ports(res: str, v: Any, run: ContainerRun, _: dict) -> None:
    _need(res, "ports", v, list, "a list of ports")
    published = []
    for i, port in enumerate(v):
        _only(res, f"ports[{i}]", port, {"internal", "external", "ip", "protocol"})
        internal = _int(res, f"ports[{i}].internal", port["internal"])
        external = _int(res, f"ports[{i}].external", port.get("external", internal))
        ip = _need(res, f"ports[{i}].ip", port.get("ip", "0.0.0.0"), str, "an address")
        proto = port.get("protocol", "tcp")
        run.args += ["--publish", f"{ip}:{external}:{internal}/{proto}"]
        published.append({"ip": ip, "external": external, "internal": internal, "protocol": proto})
    run.expect["ports"] = published


def _volumes(res: str, v: Any, run: ContainerRun, _: dict) -> None:
    _need(res, "volumes", v, list, "a list of volumes")
    for i, vol in enumerate(v):
        _only(res, f"volumes[{i}]", vol, {"containerPath", "volumeName", "hostPath", "readOnly"})
        target = _need(res, f"volumes[{i}].containerPath", vol["containerPath"], str, "a path")
        source = vol.get("volumeName") or vol.get("hostPath")
        if not source or (vol.get("volumeName") and vol.get("hostPath")):
            raise InputTypeError(f"{res}: input 'volumes[{i}]' needs exactly one of volumeName, hostPath")
        ro = bool(vol.get("readOnly"))
        run.args += ["--volume", f"{source}:{target}" + (":ro" if ro else "")]
        run.writable_paths.append((target, not ro))
    run.expect["mounts"] = [(vol.get("volumeName") or vol.get("hostPath"), vol["containerPath"], bool(vol.get("readOnly")))
                            for vol in v]


def _healthcheck(res: str, v: Any, run: ContainerRun, _: dict) -> None:
    _need(res, "healthcheck", v, dict, "a healthcheck")
    _only(res, "healthcheck", v, {"tests", "interval", "timeout", "startPeriod", "startInterval", "retries"})
    tests = _strings(res, "healthcheck.tests", v["tests"])
    if tests == ["NONE"]:
        run.args += ["--no-healthcheck"]
        return
    if not tests or tests[0] not in ("CMD", "CMD-SHELL"):
        raise InputTypeError(f"{res}: input 'healthcheck.tests' is {tests!r}: expected [\"CMD\", ...] or [\"CMD-SHELL\", cmd]")
    if tests[0] == "CMD-SHELL" and len(tests) != 2:
        raise InputTypeError(f"{res}: input 'healthcheck.tests' is {tests!r}: CMD-SHELL takes one command string")
    if tests[0] == "CMD" and len(tests) < 3:
        # podman reads a one-element JSON array as a shell command: the exec form could not be kept.
        raise TranslationError(f"{res}: input 'healthcheck.tests' {tests!r}: podman cannot hold a one-word exec form")
    def timing(key: str, parse: Callable[[str, str, Any], float], default: float) -> float:
        # Docker reads 0 (or an absent field) as "the default".
        return (parse(res, f"healthcheck.{key}", v[key]) if key in v else 0) or default

    h = Healthcheck(
        test=tests,
        interval=timing("interval", go_duration, DOCKER_DEFAULT_INTERVAL),
        timeout=timing("timeout", go_duration, DOCKER_DEFAULT_TIMEOUT),
        start_period=timing("startPeriod", go_duration, 0.0),
        start_interval=timing("startInterval", go_duration, DOCKER_DEFAULT_START_INTERVAL),
        retries=int(timing("retries", _int, DOCKER_DEFAULT_RETRIES)),
    )
    run.healthcheck = h
    cmd = json.dumps(tests[1:]) if tests[0] == "CMD" else f"CMD-SHELL {tests[1]}"
    run.args += ["--health-cmd", cmd, "--health-interval", f"{h.interval:g}s", "--health-timeout", f"{h.timeout:g}s",
                 "--health-start-period", f"{h.start_period:g}s", "--health-retries", str(h.retries)]
    run.expect["Config.Healthcheck.Test"] = tests


def _wait(res: str, v: Any, run: ContainerRun, inputs: dict) -> None:
    run.wait = _need(res, "wait", v, bool, "a boolean")
    if run.wait and not inputs.get("healthcheck"):
        # The provider's own error when `wait` meets a container without a healthcheck.
        raise RefusedByDocker(f"{res}: you have supplied a 'wait' argument, but the container does not have a "
                              "healthcheck defined (pulumi-docker)")


def _wait_timeout(res: str, v: Any, run: ContainerRun, _: dict) -> None:
    run.wait_timeout = float(_int(res, "waitTimeout", v))


def _uploads(res: str, v: Any, run: ContainerRun, inputs: dict) -> None:
    _need(res, "uploads", v, list, "a list of uploads")
    for i, up in enumerate(v):
        key = f"uploads[{i}]"
        _only(res, key, up, {"file", "content", "contentBase64", "permissions", "executable", "owner", "group"})
        path = _need(res, f"{key}.file", up["file"], str, "an absolute path")
        if not path.startswith("/"):
            raise InputTypeError(f"{res}: input '{key}.file' is {path!r}: expected an absolute path")
        if "content" in up:
            content = _need(res, f"{key}.content", up["content"], str, "text").encode()
        elif "contentBase64" in up:
            import base64
            content = base64.b64decode(_need(res, f"{key}.contentBase64", up["contentBase64"], str, "base64"))
        else:
            raise InputTypeError(f"{res}: input '{key}' has no content")
        # The provider's rule: permissions (octal string) wins, else 0744 if executable, else 0644.
        if "permissions" in up:
            perm = _need(res, f"{key}.permissions", up["permissions"], str, 'an octal string such as "0440"')
            mode = int(perm, 8)
        else:
            mode = 0o744 if up.get("executable") else 0o644
        # pulumi-docker's schema types owner and group as strings (numeric ids or names).
        uid = _owner(res, f"{key}.owner", up.get("owner"))
        gid = _owner(res, f"{key}.group", up.get("group"))
        run.uploads.append(Upload(path, content, mode, uid, gid))
    if run.uploads and inputs.get("readOnly"):
        # The provider copies a tar to "/" of the created container; the Docker daemon checks that
        # destination and refuses it on a read-only root (moby daemon/archive_unix.go, checkWritablePath).
        raise RefusedByDocker(f"{res}: Unable to upload volume content: container rootfs is marked read-only "
                              f"(Docker refuses uploads {[u.path for u in run.uploads]} to a container with readOnly)")


def _owner(res: str, key: str, value: Any) -> int:
    if value is None:
        return 0  # the tar header's default: root
    _need(res, key, value, str, 'a string (a numeric id such as "10001")')
    if not value.isdigit():
        raise TranslationError(f"{res}: input {key!r} is {value!r}: only numeric ids can be rehearsed")
    return int(value)


CONTAINER_HANDLERS: dict[str, Handler] = {
    "name": _name,
    "image": _image,
    "command": _command,
    "entrypoints": _entrypoints,
    "envs": _envs,
    "user": _user,
    "memory": _memory,
    "capabilities": _capabilities,
    "securityOpts": _security_opts,
    "readOnly": _read_only,
    "tmpfs": _tmpfs,
    "restart": _restart,
    "logDriver": _log_driver,
    "logOpts": _log_opts,
    "labels": _labels,
    "networksAdvanced": _networks_advanced,
    "ports": _ports,
    "volumes": _volumes,
    "uploads": _uploads,
    "healthcheck": _healthcheck,
    "wait": _wait,
    "waitTimeout": _wait_timeout,
}


def translate_container(resource: str, inputs: dict[str, Any], image: str) -> ContainerRun:
    """The podman settings of one declared container; raises on an input it cannot carry."""
    run = ContainerRun(name=resource, image=image)
    for key in sorted(inputs):
        value = inputs[key]
        if value is None:
            continue
        handler = CONTAINER_HANDLERS.get(key)
        if handler is None:
            raise UnknownInput(resource, key, value)
        handler(resource, value, run, inputs)
    if run.wait and run.healthcheck is None:
        _wait(resource, True, run, inputs)
    return run


def upload_tar(upload: Upload) -> bytes:
    """The archive the provider sends: one entry at the file's path, its mode and owner; parents implied."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(upload.path.lstrip("/"))
        info.size, info.mode, info.uid, info.gid = len(upload.content), upload.mode, upload.uid, upload.gid
        info.mtime = int(time.time())  # the provider stamps the time of the upload
        tar.addfile(info, io.BytesIO(upload.content))
    return buf.getvalue()


# --- networks and volumes ---------------------------------------------------------------------


def _label_args(resource: str, labels: Any) -> list[str]:
    _need(resource, "labels", labels, list, "a list of {label, value}")
    args = []
    for i, item in enumerate(labels):
        _only(resource, f"labels[{i}]", item, {"label", "value"})
        args += ["--label", f"{item['label']}={item['value']}"]
    return args


def _create_args(kind: str, driver: str, resource: str, inputs: dict[str, Any]) -> list[str]:
    """`podman KIND create` arguments of a declared docker.Network or docker.Volume (name, driver, labels)."""
    args, name = [], None
    for key in sorted(inputs):
        value = inputs[key]
        if key == "name":
            name = _need(resource, key, value, str, "a string")
        elif key == "driver":
            if value != driver:
                raise UnknownInput(resource, key, value)
            args += ["--driver", driver]
        elif key == "labels":
            args += _label_args(resource, value)
        else:
            raise UnknownInput(resource, key, value)
    if name is None:
        raise TranslationError(f"{resource}: a {kind} without a name cannot be rehearsed")
    return [kind, "create", *args, name]


def network_args(resource: str, inputs: dict[str, Any]) -> list[str]:
    """`podman network create` arguments of a declared docker.Network (a bridge network)."""
    return _create_args("network", "bridge", resource, inputs)


def volume_args(resource: str, inputs: dict[str, Any]) -> list[str]:
    """`podman volume create` arguments of a declared docker.Volume (a local volume)."""
    return _create_args("volume", "local", resource, inputs)
