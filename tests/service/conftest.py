"""Fixtures for the mime-server and gateway tests: in-process apps with captured spans, metrics and logs."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.testclient import TestClient

from mime_server.app import ServerSettings, create_app
from mime_server.limits import EdgeLimits
from mime_server.metrics import new_registry
from mime_server.serve import uvicorn_config

ADMIN_KEY = "admin-secret"


@dataclass
class Harness:
    """An app under test with everything it emits captured."""

    app: Starlette
    client: TestClient
    spans: InMemorySpanExporter
    registry: CollectorRegistry
    log: io.StringIO
    storage: Path

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.getvalue().splitlines() if line.strip()]

    def access_lines(self) -> list[dict[str, Any]]:
        return [line for line in self.log_lines() if "http_status" in line]

    def sample(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


def traced_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def make_server(tmp_path: Path, **settings: Any) -> Harness:
    provider, exporter = traced_provider()
    registry = new_registry()
    log = io.StringIO()
    storage = tmp_path / "storage"
    app = create_app(ServerSettings(storage=storage, **settings), tracer_provider=provider,
                     registry=registry, log_stream=log)
    return Harness(app, TestClient(app), exporter, registry, log, storage)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Harness]:
    harness = make_server(tmp_path, max_upload_bytes=64 * 1024, admin_key=ADMIN_KEY)
    with harness.client:
        yield harness


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThreadedServer:
    """Runs an ASGI app with uvicorn on 127.0.0.1 in a background thread (real sockets, real HTTP).

    An app of either service runs as the services do, behind the HTTP edge with ``limits``; any
    other app (test upstreams) on plain uvicorn.
    """

    def __init__(self, app: Any, port: int | None = None, limits: EdgeLimits | None = None) -> None:
        self.port = port or free_port()
        access = getattr(getattr(app, "state", None), "access", None)
        if access is not None:
            config = uvicorn_config(app, "127.0.0.1", self.port, limits or EdgeLimits(), access, None)
        else:
            config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False,
                                    lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"uvicorn did not start on port {self.port}")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def eventually(check: Any, timeout: float = 3.0) -> Any:
    """Poll ``check`` until it returns a truthy value: spans and log lines finish after the response."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.01)
