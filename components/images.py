"""Images the stack builds from this repository, tagged by the hash of their sources (never `latest`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pulumi
import pulumi_docker as docker

PROJECT_DIR = Path(__file__).resolve().parent.parent
# The one Python base of both images (their Dockerfiles take it as the build argument PYTHON_IMAGE):
# the service and the ops CLI run on the same interpreter, and moving it is one change here.
PYTHON_IMAGE = "python:3.11.14-slim-bookworm"
BUILD_ARGS = {"PYTHON_IMAGE": PYTHON_IMAGE}


def source_hash(*paths: Path, extra: str = "") -> str:
    """First 12 hex digits of the sha256 over `extra` and every file under `paths` (names and bytes)."""
    digest = hashlib.sha256(extra.encode())
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            if "__pycache__" in f.parts or f.suffix == ".pyc":
                continue
            digest.update(str(f.relative_to(PROJECT_DIR)).encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()[:12]


def built_image(name: str, repository: str, context: Path, dockerfile: Path, sources: list[Path],
                parent: pulumi.Resource, registry: str = "") -> docker.Image:
    """An image built by `pulumi up`, tagged with the hash of its sources and build args: local on a
    Docker host, pushed to `registry` for a cluster (which pulls it from there)."""
    tag = source_hash(*sources, extra=repr(sorted(BUILD_ARGS.items())))
    return docker.Image(
        name,
        image_name=f"{registry}/{repository}:{tag}" if registry else f"{repository}:{tag}",
        build=docker.DockerBuildArgs(
            context=str(context.relative_to(PROJECT_DIR)) or ".",
            dockerfile=str(dockerfile.relative_to(PROJECT_DIR)),
            platform="linux/amd64",
            args=BUILD_ARGS,
        ),
        skip_push=not registry,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def workload_image(parent: pulumi.Resource, registry: str = "") -> docker.Image:
    """mime-server and mockup-gateway: one image, two commands (context: mime_server/)."""
    src = PROJECT_DIR / "mime_server"
    return built_image("mime-server-image", "observability/mime-server", src, src / "Dockerfile", [src], parent,
                       registry)


def ops_image(parent: pulumi.Resource, registry: str = "") -> docker.Image:
    """The ops image: the automation CLI (scheduled backups) and the local webhook receiver."""
    return built_image(
        "ops-image", "observability/ops", PROJECT_DIR, PROJECT_DIR / "ops" / "Dockerfile",
        [PROJECT_DIR / "ops", PROJECT_DIR / "automation", PROJECT_DIR / "webhook_receiver"], parent, registry,
    )
