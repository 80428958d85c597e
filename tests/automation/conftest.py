"""Fixtures for the ops CLI tests: free ports, a small threaded HTTP server, and a CLI runner."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator

import pytest
from typer.testing import CliRunner

from automation.cli import app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Recorder:
    """What a test server saw: (path, method, body length, arrival time on the monotonic clock)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, int, float]] = []
        self.lock = threading.Lock()


def serve(routes: dict[str, Callable[[BaseHTTPRequestHandler], None]]) -> tuple[ThreadingHTTPServer, Recorder]:
    """Start a threaded HTTP/1.1 server on 127.0.0.1; ``routes`` maps a path to a handler function."""
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with recorder.lock:
                recorder.requests.append((self.path, self.command, len(body), time.monotonic()))
            route = routes.get(self.path.split("?")[0]) or routes.get("*")
            if route is None:
                reply(self, 404, {"error": "not found"})
            else:
                route(self)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, recorder


def reply(handler: BaseHTTPRequestHandler, status: int, document: object) -> None:
    body = json.dumps(document).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture
def http_server() -> Iterator[Callable[[dict[str, Callable[[BaseHTTPRequestHandler], None]]], tuple[str, Recorder]]]:
    servers: list[ThreadingHTTPServer] = []

    def start(routes: dict[str, Callable[[BaseHTTPRequestHandler], None]]) -> tuple[str, Recorder]:
        server, recorder = serve(routes)
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", recorder

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def cli() -> Callable[..., "object"]:
    runner = CliRunner()

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke
