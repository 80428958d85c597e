"""What the program declares for a stack: its network, volumes, images and containers, in creation order.

The program runs under Pulumi mocks (`tests/program/harness.py`, the same run the unit tests
make), and every registration is kept with its inputs as the engine would receive them, so the
rehearsal starts exactly what `pulumi up` would be asked to create.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config.settings import PROJECT_DIR
from tests.program.harness import CONTAINER, ProgramRun, Registration, container_graph, run_stack, topological_order

NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
BUILT_IMAGE = "docker:index/image:Image"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
# Resources the program may register that do not exist in the container engine.
NOT_ENGINE = ("random:", "observability:", "pulumi:")

# Third-party images a stand-in is built for (scripts/images.sh), by repository; the value is the
# pinned tool (scripts/tools.sh) whose binary the stand-in holds.
STAND_INS = {
    "docker.io/prom/prometheus": "prometheus",
    "docker.io/prom/alertmanager": "alertmanager",
    "cr.jaegertracing.io/jaegertracing/jaeger": "jaeger",
}
# Why the others cannot run here.
LEFT_OUT = "no registry to pull from here, and no stand-in is built for it"


def docker_reference(ref: str) -> str:
    """The fully qualified name Docker gives a short reference (prom/x -> docker.io/prom/x, x -> docker.io/library/x)."""
    first, _, rest = ref.partition("/")
    if not rest:
        return f"docker.io/library/{ref}"
    if "." in first or ":" in first or first == "localhost":
        return ref
    return f"docker.io/{ref}"


def repository(ref: str) -> str:
    """The reference without its tag or digest."""
    ref = ref.split("@", 1)[0]
    name, _, tag = ref.rpartition(":")
    return name if name and "/" not in tag else ref


@dataclass
class BuiltImage:
    name: str  # resource name
    image_name: str  # as declared (imageName), what containers name in their `image` input
    reference: str  # fully qualified, as Docker tags it
    context: Path
    dockerfile: Path
    platform: str | None
    args: dict[str, str]

    def base_references(self) -> list[str]:
        """FROM references of the Dockerfile with its ARGs resolved (build args over defaults)."""
        values: dict[str, str] = {}
        bases = []
        text = self.dockerfile.read_text().replace("\\\n", " ")
        for line in text.splitlines():
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            if words[0].upper() == "ARG":
                name, _, default = words[1].partition("=")
                values.setdefault(name, self.args.get(name, default))
            elif words[0].upper() == "FROM":
                ref = re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), ""), words[1])
                if not ref:
                    raise ValueError(f"{self.dockerfile}: FROM {words[1]} resolves to nothing: build arg missing")
                bases.append(ref)
        return bases


@dataclass
class Declared:
    """One stack as the program declares it."""

    stack: str
    run: ProgramRun
    network: Registration
    volumes: list[Registration]
    built: list[BuiltImage]
    remote: dict[str, str]  # RemoteImage imageId (a provider output) -> its pinned reference
    containers: dict[str, Registration]
    order: list[str]  # containers, each after every container it depends on
    depends: dict[str, set[str]]
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)

    def image_of(self, container: str) -> str:
        """The fully qualified reference a container runs: a built image's tag or a pulled image's pin."""
        image = self.containers[container].inputs["image"]
        if image in self.remote:
            return docker_reference(self.remote[image])
        for built in self.built:
            if image == built.image_name:
                return built.reference
        raise ValueError(f"container {container}: image {image!r} is none of the images the program registers")

    def stand_in_tool(self, container: str) -> str | None:
        """The pinned tool a third-party container's stand-in holds; None for our own images."""
        image = self.image_of(container)
        if any(image == b.reference for b in self.built):
            return None
        return STAND_INS.get(repository(image), "")


def declare(stack: str = "dev") -> Declared:
    """Run the program for `stack` under mocks (staging and prod with stand-in alert secrets, as the
    program's tests do) and gather what it asks the engine to create."""
    run = run_stack(stack)
    unknown = sorted({r.type for r in run.resources
                      if not r.type.startswith(NOT_ENGINE) and r.type not in (NETWORK, VOLUME, BUILT_IMAGE,
                                                                               REMOTE_IMAGE, CONTAINER)})
    if unknown:
        raise ValueError(f"the program registers resource types the rehearsal does not know: {unknown}")
    (network,) = run.by_type(NETWORK)
    built = []
    for reg in run.by_type(BUILT_IMAGE):
        build = dict(reg.inputs.get("build") or {})
        known = {"context", "dockerfile", "platform", "args"}
        if set(build) - known:
            raise ValueError(f"image {reg.name}: build input(s) {sorted(set(build) - known)} have no podman translation")
        context = PROJECT_DIR / build.get("context", ".")
        built.append(BuiltImage(
            name=reg.name,
            image_name=reg.inputs["imageName"],
            reference=docker_reference(reg.inputs["imageName"]),
            context=context,
            # The provider resolves the Dockerfile from the program's directory, default <context>/Dockerfile.
            dockerfile=PROJECT_DIR / build["dockerfile"] if "dockerfile" in build else context / "Dockerfile",
            platform=build.get("platform"),
            args={k: str(v) for k, v in (build.get("args") or {}).items()},
        ))
    remote = {r.inputs["imageId"]: r.inputs["name"] for r in run.by_type(REMOTE_IMAGE)}
    graph = container_graph(run)
    return Declared(
        stack=stack, run=run, network=network, volumes=run.by_type(VOLUME), built=built, remote=remote,
        containers=run.containers, order=topological_order(graph), depends=graph,
        outputs=run.outputs, secret_outputs=run.secret_outputs,
    )


URL = re.compile(r"\b(?:https?|grpc)://([A-Za-z0-9_.-]+):(\d+)")
SELF = {"localhost", "127.0.0.1", "0.0.0.0", "::"}


def addresses(declared: Declared) -> dict[str, set[tuple[str, int]]]:
    """Per container, the host:port of every other service its uploads, env and command name: URLs,
    and Prometheus's scrape and Alertmanager targets (host:port without a scheme)."""
    import yaml

    found: dict[str, set[tuple[str, int]]] = {}
    for name, reg in declared.containers.items():
        texts = [u.get("content", "") for u in reg.inputs.get("uploads") or []]
        texts += list(reg.inputs.get("envs") or []) + list(reg.inputs.get("command") or [])
        pairs = {(h, int(p)) for text in texts for h, p in URL.findall(text)}
        for upload in reg.inputs.get("uploads") or []:
            if upload["file"].endswith("prometheus.yml"):
                doc = yaml.safe_load(upload["content"]) or {}
                static = [sc for job in doc.get("scrape_configs") or [] for sc in job.get("static_configs") or []]
                static += [sc for am in (doc.get("alerting") or {}).get("alertmanagers") or []
                           for sc in am.get("static_configs") or []]
                for sc in static:
                    for target in sc.get("targets") or []:
                        host, _, port = target.rpartition(":")
                        pairs.add((host, int(port)))
        found[name] = {(h, p) for h, p in pairs if h not in SELF}
    return found


def aliases(declared: Declared) -> dict[str, str]:
    """Network alias -> the container that answers to it."""
    return {alias: name for name, reg in declared.containers.items()
            for net in reg.inputs.get("networksAdvanced") or [] for alias in net.get("aliases") or []}


PYTHON_BASE = re.compile(r"(?:docker\.io/library/)?python:(\d+\.\d+)\.\d+-slim-(\w+)")


def image_plan(declared: Declared) -> list[str]:
    """The lines scripts/images.sh works through: bases, our builds, stand-ins, and what is left out."""
    lines: list[str] = []
    bases: dict[str, str] = {}
    for image in declared.built:
        for base in image.base_references():
            match = PYTHON_BASE.fullmatch(base)
            if not match:
                raise ValueError(f"{image.dockerfile}: no stand-in recipe for base image {base!r}")
            bases[docker_reference(base)] = f"{match.group(2)} {match.group(1)}"
    lines += [f"python-base {ref} {what}" for ref, what in sorted(bases.items())]
    for image in declared.built:
        args = ",".join(f"{k}={v}" for k, v in sorted(image.args.items())) or "-"
        lines.append(f"build {image.reference} {image.context} {image.dockerfile} {image.platform or 'linux/amd64'} {args}")
    for name in declared.order:
        tool = declared.stand_in_tool(name)
        if tool:
            lines.append(f"stand-in {declared.image_of(name)} {tool}")
        elif tool == "":
            lines.append(f"left-out {declared.image_of(name)} {LEFT_OUT}")
    return lines
