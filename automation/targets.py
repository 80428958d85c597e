"""Where health-check targets come from: the stack output ``health_endpoints`` or a JSON/YAML file."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

import yaml

from automation.errors import ConfigError

STACK_OUTPUT_KEY = "health_endpoints"


def endpoints_from_document(document: Any, origin: str) -> dict[str, str]:
    """Return the service -> URL mapping held by ``document`` (the mapping itself or a whole stack output)."""
    if isinstance(document, Mapping) and STACK_OUTPUT_KEY in document:
        document = document[STACK_OUTPUT_KEY]
    if not isinstance(document, Mapping):
        raise ConfigError(
            f"{origin}: expected a mapping of service name -> health URL "
            f"(or an object with key {STACK_OUTPUT_KEY!r}), got {type(document).__name__}"
        )
    endpoints: dict[str, str] = {}
    for name, url in document.items():
        if not isinstance(url, str):
            raise ConfigError(f"{origin}: health URL of service {name!r} is {url!r}, expected a string")
        endpoints[str(name)] = url
    return endpoints


def load_targets_file(path: Path) -> dict[str, str]:
    """Read targets from a JSON or YAML file (YAML is a superset of JSON, so one parser serves both)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read targets file {str(path)!r}: {exc.strerror or exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"targets file {str(path)!r} is not valid JSON or YAML: {exc}") from None
    return endpoints_from_document(document, f"targets file {str(path)!r}")


def load_stack_targets(stack: str | None, pulumi: str = "pulumi") -> dict[str, str]:
    """Run ``pulumi stack output --json [--stack S]`` and return its ``health_endpoints``."""
    executable = shutil.which(pulumi)
    if executable is None:
        raise ConfigError(
            f"the Pulumi CLI ({pulumi!r}) is not on PATH, so the stack's health endpoints cannot be read; "
            "install it, or pass --targets FILE (JSON/YAML mapping of service -> health URL)"
        )
    command = [executable, "stack", "output", "--json"] + (["--stack", stack] if stack else [])
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{' '.join(command)!r} did not answer within 60 s") from None
    if done.returncode != 0:
        raise ConfigError(f"{' '.join(command)!r} failed (exit {done.returncode}): {done.stderr.strip()}")
    try:
        document = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"pulumi stack output is not JSON: {exc}") from None
    if not isinstance(document, Mapping) or STACK_OUTPUT_KEY not in document:
        raise ConfigError(f"the stack has no output {STACK_OUTPUT_KEY!r}; has `pulumi up` run for it?")
    return endpoints_from_document(document, "pulumi stack output")


def select_services(endpoints: Mapping[str, str], services: list[str]) -> dict[str, str]:
    """Keep only ``services`` (all when empty); an unknown name is a configuration error."""
    if not services:
        return dict(endpoints)
    unknown = [name for name in services if name not in endpoints]
    if unknown:
        raise ConfigError(f"unknown service {', '.join(map(repr, unknown))}: expected one of {sorted(endpoints)}")
    return {name: endpoints[name] for name in services}


def url_problem(url: str) -> str | None:
    """Say why ``url`` cannot be a health URL (None when it can): http(s) scheme and a host are required."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        return f"invalid URL {url!r}: {exc}"
    if parts.scheme not in ("http", "https"):
        return f"invalid URL {url!r}: expected an http:// or https:// URL"
    if not parts.hostname:
        return f"invalid URL {url!r}: expected a host name"
    return None
