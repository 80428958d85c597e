"""Fixtures for the mime-server and gateway tests: in-process apps with captured spans, metrics and logs;
moto's S3 server on 127.0.0.1 for the S3 storage backend."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
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
    """mime-server on the filesystem backend under ``tmp_path/storage``, or on the S3 backend when
    ``settings`` has ``s3`` (a location; spilled uploads then go under the temp directory)."""
    provider, exporter = traced_provider()
    registry = new_registry()
    log = io.StringIO()
    storage = tmp_path / "storage"
    server_settings = ServerSettings(**settings) if "s3" in settings else ServerSettings(storage=storage, **settings)
    app = create_app(server_settings, tracer_provider=provider, registry=registry, log_stream=log)
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


# -- S3: moto's server as a subprocess on 127.0.0.1 ---------------------------------------------

MOTO_REGION = "us-east-1"
MOTO_KEYS = ("moto-test-key", "moto-test-secret")


@dataclass
class MotoS3:
    """moto's S3 server: an endpoint on 127.0.0.1, and the credentials file a mime-server reads as on a cluster."""

    endpoint: str
    credentials_file: Path

    def env(self) -> dict[str, str]:
        """What a process using the S3 backend here needs: the credentials file, the region, and no
        instance-metadata lookup (it would go to an address off this machine)."""
        return {"AWS_SHARED_CREDENTIALS_FILE": str(self.credentials_file), "AWS_REGION": MOTO_REGION,
                "AWS_CONFIG_FILE": str(self.credentials_file.with_name("no-config")),
                "AWS_EC2_METADATA_DISABLED": "true"}

    def process_env(self) -> dict[str, str]:
        """os.environ without any AWS setting of its own, plus :meth:`env`."""
        return {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **self.env()}

    def client(self) -> Any:
        import boto3

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=MOTO_REGION, aws_access_key_id=MOTO_KEYS[0],
            aws_secret_access_key=MOTO_KEYS[1])

    def new_bucket(self) -> str:
        """A fresh bucket per test: tests never see each other's objects."""
        name = f"mime-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=name)
        return name


def wait_until_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout} s")


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1",
                                "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_listening(port, process)
        credentials = tmp_path_factory.mktemp("aws") / "credentials"
        credentials.write_text(f"[default]\naws_access_key_id = {MOTO_KEYS[0]}\n"
                               f"aws_secret_access_key = {MOTO_KEYS[1]}\n")
        yield MotoS3(f"http://127.0.0.1:{port}", credentials)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def s3_env(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> MotoS3:
    """This process set up as a cluster's mime-server is: AWS settings from moto_s3.env() alone."""
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in moto_s3.env().items():
        monkeypatch.setenv(name, value)
    return moto_s3
