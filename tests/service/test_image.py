"""The image recipe: pinned base and packages, non-root, healthcheck, read-only root, complete requirements."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "mime_server"
DOCKERFILE = (PACKAGE / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    joined = DOCKERFILE.replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.split(None, 1)[:1] == [name]]


def test_base_image_is_a_pinned_slim_python() -> None:
    from components.images import BUILD_ARGS, PYTHON_IMAGE

    # Both images take their base from one build argument, pinned once in components/images.py.
    for dockerfile in (DOCKERFILE, (PACKAGE.parent / "ops" / "Dockerfile").read_text()):
        lines = [line for line in dockerfile.splitlines() if line and not line.startswith("#")]
        assert lines[:2] == ["ARG PYTHON_IMAGE", "FROM ${PYTHON_IMAGE}"], lines[:2]
    assert re.fullmatch(r"python:3\.1[12]\.\d+-slim-bookworm", PYTHON_IMAGE), PYTHON_IMAGE
    assert BUILD_ARGS == {"PYTHON_IMAGE": PYTHON_IMAGE}


def test_runs_as_uid_10001_with_healthcheck_and_default_command() -> None:
    assert instructions("USER") == ["10001:10001"]
    (healthcheck,) = instructions("HEALTHCHECK")
    assert "urllib.request.urlopen" in healthcheck and "curl" not in healthcheck
    assert instructions("CMD") == ['["python", "-m", "mime_server"]']
    assert any("/data" in volume for volume in instructions("VOLUME"))


def test_read_only_root_needs_no_bytecode_writes() -> None:
    env = " ".join(instructions("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env
    assert any("compileall" in run for run in instructions("RUN"))
    assert any("libmagic1=" in run for run in instructions("RUN")), "libmagic1 must be pinned"


def test_requirements_are_pinned_and_cover_every_third_party_import() -> None:
    pinned = {}
    for line in (PACKAGE / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirement not pinned: {line!r}"
            pinned[re.sub(r"[-_.]+", "-", name.lower())] = version
    imported = set()
    for source in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    distributions = packages_distributions()
    third_party = imported - set(sys.stdlib_module_names) - {"mime_server"}
    missing = []
    for module in sorted(third_party):
        names = {re.sub(r"[-_.]+", "-", d.lower()) for d in distributions.get(module, [module])}
        if not names & set(pinned):
            missing.append((module, sorted(names)))
    assert missing == []


def test_allocator_is_set_for_bounded_memory_under_concurrent_uploads() -> None:
    env = " ".join(instructions("ENV"))
    assert "MALLOC_ARENA_MAX=2" in env and "MALLOC_MMAP_THRESHOLD_=131072" in env
