"""Command lines and environment variables of both services, and both running as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from mime_server import __main__ as server_cli
from mime_server import gateway as gateway_cli
from mime_server.storage import S3Location
from tests.service.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


def test_server_defaults_and_env_variables() -> None:
    args = server_cli.parse_args(["--storage", "/data"], {})
    assert (args.host, args.port, args.storage, args.admin_key_file) == ("127.0.0.1", 8080, "/data", None)
    env = {"MIME_HOST": "0.0.0.0", "MIME_PORT": "9001", "MIME_STORAGE": "/srv", "MIME_MAX_UPLOAD_BYTES": "1024",
           "MIME_ADMIN_KEY_FILE": "/run/secrets/admin"}
    args = server_cli.parse_args([], env)
    assert (args.host, args.port, args.storage, args.max_upload_bytes, args.admin_key_file) == (
        "0.0.0.0", 9001, "/srv", 1024, "/run/secrets/admin")
    assert server_cli.parse_args(["--port", "7000", "--storage", "/x"], env).port == 7000


def test_server_refuses_bad_values_naming_them(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        server_cli.parse_args([], {})
    assert "--storage" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        server_cli.parse_args(["--storage", "/d", "--max-upload-bytes", "lots"], {})
    assert "'lots'" in capsys.readouterr().err


def test_storage_backend_options_and_their_env_variables() -> None:
    args = server_cli.parse_args(["--storage", "/data"], {})
    assert (args.storage_backend, args.storage, args.s3) == ("filesystem", "/data", None)
    # The cluster's command line; MIME_STORAGE is the image's default directory, not used on S3.
    args = server_cli.parse_args(["--storage-backend", "s3", "--s3-bucket", "observability-k8s", "--s3-prefix",
                                  "mime-storage/", "--s3-endpoint", "https://s3.example.internal"],
                                 {"MIME_STORAGE": "/data", "AWS_REGION": "eu-central-1"})
    assert (args.storage, args.s3) == (None, S3Location("observability-k8s", "mime-storage/",
                                                        "https://s3.example.internal", "eu-central-1"))
    env = {"MIME_STORAGE_BACKEND": "s3", "MIME_S3_BUCKET": "b-from-env", "MIME_S3_PREFIX": "p/",
           "MIME_S3_ENDPOINT": "http://127.0.0.1:9000"}
    assert server_cli.parse_args([], env).s3 == S3Location("b-from-env", "p/", "http://127.0.0.1:9000", None)
    assert server_cli.parse_args(["--s3-bucket", "other"], env).s3.bucket == "other"
    assert server_cli.parse_args(["--storage-backend", "s3", "--s3-bucket", "b"], {}).s3 == S3Location("b")


@pytest.mark.parametrize(("argv", "env", "message"), [
    (["--storage-backend", "s3"], {}, "--s3-bucket (env MIME_S3_BUCKET) is required with --storage-backend s3"),
    (["--storage-backend", "s3", "--s3-bucket", ""], {}, "--s3-bucket (env MIME_S3_BUCKET) is required"),
    (["--storage-backend", "s3", "--s3-bucket", "b", "--storage", "/data"], {},
     "--storage is the filesystem backend's directory: not used with --storage-backend s3"),
    (["--storage", "/data", "--s3-bucket", "b"], {},
     "--s3-bucket (env MIME_S3_BUCKET) is an option of --storage-backend s3, not of filesystem"),
    (["--storage", "/data"], {"MIME_S3_ENDPOINT": "http://127.0.0.1:9000"},
     "--s3-endpoint (env MIME_S3_ENDPOINT) is an option of --storage-backend s3"),
    ([], {"MIME_STORAGE_BACKEND": "s3", "MIME_S3_BUCKET": "b", "MIME_S3_PREFIX": "mime-storage"},
     "--s3-prefix must be empty or end with '/' and not start with it, got 'mime-storage'"),
    (["--storage-backend", "s3", "--s3-bucket", "b", "--s3-endpoint", "127.0.0.1:9000"], {},
     "--s3-endpoint must be an http:// or https:// URL, got '127.0.0.1:9000'"),
    (["--storage-backend", "gcs", "--storage", "/d"], {}, "argument --storage-backend: invalid choice: 'gcs'"),
    ([], {"MIME_STORAGE_BACKEND": "filesystem"}, "--storage (env MIME_STORAGE) is required"),
])
def test_storage_options_of_the_wrong_backend_are_refused_naming_them(
        argv: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        server_cli.parse_args(argv, env)
    assert message in capsys.readouterr().err


def test_gateway_defaults_and_env_variables() -> None:
    args = gateway_cli.parse_args(["--upstream", "http://m:8080", "--api-keys-file", "/k"], {})
    assert (args.port, args.rate_limit, args.rate_burst, args.upstream_timeout) == (8000, 50.0, 100, 30.0)
    env = {"GATEWAY_HOST": "0.0.0.0", "GATEWAY_PORT": "8100", "GATEWAY_UPSTREAM": "http://mime:8080",
           "GATEWAY_API_KEYS_FILE": "/run/secrets/keys", "GATEWAY_RATE_LIMIT": "5.5", "GATEWAY_RATE_BURST": "7",
           "GATEWAY_UPSTREAM_TIMEOUT": "2"}
    args = gateway_cli.parse_args([], env)
    assert (args.host, args.port, args.upstream, args.api_keys_file, args.rate_limit, args.rate_burst,
            args.upstream_timeout) == ("0.0.0.0", 8100, "http://mime:8080", "/run/secrets/keys", 5.5, 7, 2.0)


def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert process.poll() is None, f"process exited: {process.stderr.read() if process.stderr else ''!r}"
        try:
            if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError(f"{url} never became healthy")


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[tuple[str, str, list[subprocess.Popen[bytes]]]]:
    (tmp_path / "keys").write_text("# keys\ncli-key\n")
    (tmp_path / "admin").write_text("admin-from-file\n")
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none", "PYTHONPATH": str(REPO),
           "MIME_STORAGE": str(tmp_path / "storage"), "MIME_ADMIN_KEY_FILE": str(tmp_path / "admin")}
    server_port, gateway_port = free_port(), free_port()
    server = subprocess.Popen([sys.executable, "-m", "mime_server", "--port", str(server_port)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    gateway = subprocess.Popen([sys.executable, "-m", "mime_server.gateway", "--port", str(gateway_port),
                                "--upstream", f"http://127.0.0.1:{server_port}", "--api-keys-file",
                                str(tmp_path / "keys")], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    started = [server, gateway]
    try:
        yield f"http://127.0.0.1:{server_port}", f"http://127.0.0.1:{gateway_port}", started
    finally:
        for process in started:
            process.kill()
            process.wait()


def test_both_commands_serve_and_log_json_lines_the_replay_tool_reads(
        processes: tuple[str, str, list[subprocess.Popen[bytes]]]) -> None:
    server_url, gateway_url, (server, gateway) = processes
    wait_healthy(server_url, server)
    wait_healthy(gateway_url, gateway)
    assert httpx.get(gateway_url + "/readyz").status_code == 200
    created = httpx.post(gateway_url + "/v1/files?filename=a.txt", content=b"hello cli\n",
                         headers={"x-api-key": "cli-key"})
    assert created.status_code == 201
    assert httpx.get(server_url + "/admin/faults", headers={"x-admin-key": "admin-from-file"}).status_code == 200
    time.sleep(0.2)
    gateway.terminate()
    server.terminate()
    gateway_out = gateway.communicate(timeout=15)[0].decode()
    server_out = server.communicate(timeout=15)[0].decode()
    for output in (gateway_out, server_out):
        lines = [json.loads(line) for line in output.splitlines() if line.strip()]  # every line is JSON
        assert lines
    access = [json.loads(line) for line in gateway_out.splitlines() if '"http_status"' in line]
    upload = next(line for line in access if line["method"] == "POST")
    assert upload["service"] == "mockup-gateway"
    assert upload["path"] == "/v1/files?filename=a.txt" and upload["bytes_in"] == 10
    assert datetime.fromisoformat(upload["ts"]).tzinfo is not None
    server_upload = next(json.loads(line) for line in server_out.splitlines() if '"POST"' in line)
    assert server_upload["request_id"] == upload["request_id"]


def test_edge_limits_are_options_and_env_variables_of_each_service() -> None:
    server = server_cli.parse_args(["--storage", "/d"], {})
    assert (server.max_header_bytes, server.max_headers, server.header_timeout, server.body_timeout,
            server.keepalive_timeout, server.max_connections) == (20480, 120, 10.0, 30.0, 5.0, 256)
    assert server.upload_memory_budget_bytes == 32 * 1024 * 1024
    env = {"MIME_MAX_HEADER_BYTES": "8192", "MIME_MAX_CONNECTIONS": "64", "MIME_BODY_TIMEOUT": "2.5",
           "MIME_UPLOAD_MEMORY_BUDGET_BYTES": "1048576"}
    server = server_cli.parse_args(["--storage", "/d", "--max-headers", "50"], env)
    assert (server.max_header_bytes, server.max_connections, server.body_timeout, server.max_headers,
            server.upload_memory_budget_bytes) == (8192, 64, 2.5, 50, 1048576)
    gateway = gateway_cli.parse_args(["--upstream", "http://m", "--api-keys-file", "/k"], {})
    assert (gateway.max_header_bytes, gateway.max_headers, gateway.max_connections) == (16384, 100, 512)
    assert (gateway.auth_failure_rate, gateway.auth_failure_burst) == (0.2, 10)
    gateway = gateway_cli.parse_args(["--upstream", "http://m", "--api-keys-file", "/k"], {
        "GATEWAY_HEADER_TIMEOUT": "3", "GATEWAY_AUTH_FAILURE_BURST": "4", "MIME_HEADER_TIMEOUT": "99"})
    assert (gateway.header_timeout, gateway.auth_failure_burst) == (3.0, 4)


@pytest.mark.parametrize("option,value", [("--header-timeout", "0"), ("--max-connections", "-5"),
                                          ("--body-timeout", "nan"), ("--keepalive-timeout", "inf")])
def test_limit_that_is_not_a_positive_number_is_refused_naming_it(option: str, value: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        server_cli.parse_args(["--storage", "/d", option, value], {})
    assert option in capsys.readouterr().err
