"""Command-line plumbing shared by both services: env-var defaults and running an app on uvicorn."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

import uvicorn
from opentelemetry.trace import TracerProvider
from starlette.types import ASGIApp

from mime_server.logs import uvicorn_log_config


def env_default(environ: Mapping[str, str], name: str, default: str | None) -> str | None:
    """The value of an environment variable, or the default when unset or empty."""
    return environ.get(name) or default


def positive(name: str, convert: Callable[[str], float]) -> Callable[[str], Any]:
    """argparse type: a positive number parsed with ``convert``; the error names the option and value."""

    def parse(value: str) -> Any:
        try:
            number = convert(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {value!r}") from None
        if not number > 0:
            raise argparse.ArgumentTypeError(f"{name} must be positive, got {value!r}")
        return number

    return parse


def parse_int(name: str) -> Callable[[str], int]:
    """argparse type for a positive integer."""
    return positive(name, int)


def parse_float(name: str) -> Callable[[str], float]:
    """argparse type for a positive number."""
    return positive(name, float)


def read_secret_file(path: str | None) -> str | None:
    """First non-comment line of a secret file (trailing newline stripped), or None without a path."""
    if not path:
        return None
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            value = line.strip()
            if value and not value.startswith("#"):
                return value
    raise ValueError(f"secret file {path!r} holds no value")


def run(app: ASGIApp, host: str, port: int, service: str, tracer_provider: TracerProvider | None) -> None:
    """Serve ``app`` until SIGTERM/SIGINT, then flush pending spans."""
    config = uvicorn.Config(app, host=host, port=port, log_config=uvicorn_log_config(service),
                            access_log=False, server_header=False, proxy_headers=False,
                            timeout_graceful_shutdown=10)
    try:
        uvicorn.Server(config).run()
    finally:
        shutdown = getattr(tracer_provider, "shutdown", None)
        if shutdown is not None:
            shutdown()
