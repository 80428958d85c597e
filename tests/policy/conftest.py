"""Fixtures of the policy tests: a compliant container in the engine's wire form, and clean config."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pulumi
import pytest

SECRET = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270"}

HARDENED: dict[str, Any] = {
    "name": "dev-prometheus",
    "image": "sha256:" + "ab" * 32,
    "memory": 512.0,
    "capabilities": {"drops": ["ALL"], "adds": ["CHOWN"]},
    "securityOpts": ["no-new-privileges:true"],
    "ports": [{"internal": 9090.0, "external": 9090.0, "ip": "127.0.0.1"}],
    "envs": ["OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4317", "GF_SECURITY_ADMIN_PASSWORD__FILE=/run/secrets/pw"],
    "uploads": [{"file": "/etc/prometheus/prometheus.yml", "content": "global:\n  scrape_interval: 15s\n"}],
    "healthcheck": {"tests": ["CMD", "wget", "-q", "-O", "/dev/null", "http://localhost:9090/-/ready"],
                    "interval": "10s", "startPeriod": "20s"},
    "restart": "unless-stopped",
    "logDriver": "json-file",
    "logOpts": {"max-size": "10m", "max-file": "3"},
    "labels": [{"label": "service", "value": "prometheus"}, {"label": "env", "value": "dev"}],
}


def secret(value: Any) -> dict[str, Any]:
    """A value in Pulumi's secret wire form."""
    return {**SECRET, "value": value}


@pytest.fixture
def container() -> dict[str, Any]:
    """A fresh copy of a container that passes every policy."""
    return copy.deepcopy(HARDENED)


@pytest.fixture(autouse=True)
def _no_stack_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No observability:* config leaks between tests (the pack reads the stack's config)."""
    monkeypatch.delenv("PULUMI_CONFIG", raising=False)
    token = pulumi.runtime.config.CONFIG.set({})
    yield
    pulumi.runtime.config.CONFIG.reset(token)
