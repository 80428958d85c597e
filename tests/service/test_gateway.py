"""mockup-gateway in front of a real mime-server over loopback HTTP: auth, limits, errors, streaming, traces."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import http.client
import io
import json
import os
import socketserver
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mime_server.gateway import (
    POOL_CONNECTIONS,
    GatewaySettings,
    create_gateway,
    load_api_keys,
)
from mime_server.metrics import new_registry
from mime_server.ratelimit import TokenBuckets
from tests.service.conftest import (
    ADMIN_KEY,
    Harness,
    ThreadedServer,
    eventually,
    free_port,
    make_server,
    traced_provider,
)

KEY = "key-alpha"


@dataclass
class Stack:
    server: Harness
    gateway: Harness
    url: str
    upstream_url: str

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, headers={"x-api-key": KEY, **kwargs.pop("headers", {})}, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.url + path, headers={"x-api-key": KEY, **kwargs.pop("headers", {})}, **kwargs)


def gateway_harness(tmp_path: Path, upstream: str, **settings: Any) -> Harness:
    provider, exporter = traced_provider()
    registry = new_registry()
    log = io.StringIO()
    options = {"api_keys": frozenset({KEY, "key-beta"}), "rate_limit": 1000.0, "rate_burst": 1000,
               "upstream_timeout": 5.0, **settings}
    app = create_gateway(GatewaySettings(upstream=upstream, **options), tracer_provider=provider,
                         registry=registry, log_stream=log)
    from starlette.testclient import TestClient

    return Harness(app, TestClient(app), exporter, registry, log, tmp_path)


@pytest.fixture
def stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    settings = getattr(request, "param", {})
    server = make_server(tmp_path, max_upload_bytes=8 * 1024 * 1024, admin_key=ADMIN_KEY)
    with ThreadedServer(server.app) as upstream:
        gateway = gateway_harness(tmp_path, upstream.url, **settings)
        with ThreadedServer(gateway.app) as front:
            yield Stack(server, gateway, front.url, upstream.url)


def test_api_keys_file_ignores_blank_lines_and_comments(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("# team keys\n\nkey-one\n  key-two  \n#key-three\n")
    assert load_api_keys(keys_file) == frozenset({"key-one", "key-two"})
    (tmp_path / "empty").write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="holds no key"):
        load_api_keys(tmp_path / "empty")


def test_missing_or_wrong_key_is_401_and_logged_warn(stack: Stack) -> None:
    missing = httpx.post(stack.url + "/v1/detect", content=b"abc")
    wrong = httpx.post(stack.url + "/v1/detect", content=b"abc", headers={"x-api-key": "guess"})
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert "missing API key" in missing.json()["detail"] and wrong.json()["detail"] == "unknown API key"
    assert eventually(lambda: len(stack.gateway.access_lines()) == 2)
    assert [line["level"] for line in stack.gateway.access_lines()] == ["warn", "warn"]
    assert stack.server.access_lines() == []


def test_x_api_key_and_bearer_are_both_accepted(stack: Stack) -> None:
    assert stack.post("/v1/detect", content=b"abc").status_code == 200
    bearer = httpx.post(stack.url + "/v1/detect", content=b"abc", headers={"authorization": "Bearer key-beta"})
    assert bearer.status_code == 200


@pytest.mark.parametrize("stack", [{"rate_limit": 1.0, "rate_burst": 2}], indirect=True)
def test_rate_limit_is_429_with_retry_after_per_key(stack: Stack) -> None:
    codes = [stack.post("/v1/detect", content=b"abc").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    limited = stack.post("/v1/detect", content=b"abc")
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    other_key = httpx.post(stack.url + "/v1/detect", content=b"abc", headers={"x-api-key": "key-beta"})
    assert other_key.status_code == 200
    assert stack.gateway.sample("gateway_rate_limited_total", service="mockup-gateway") == 2
    assert eventually(lambda: len(stack.gateway.access_lines()) == 5)
    limited_lines = [line for line in stack.gateway.access_lines() if line["http_status"] == 429]
    assert len(limited_lines) == 2 and all(line["level"] == "warn" for line in limited_lines)


def test_token_bucket_refills_at_rate_up_to_burst() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k") == pytest.approx(0.5)
    now[0] = 0.5
    assert buckets.take("k") == 0.0
    now[0] = 100.0
    assert [buckets.take("k") for _ in range(4)][:3] == [0.0, 0.0, 0.0]


def test_upload_and_download_stream_through_byte_identical(stack: Stack) -> None:
    data = os.urandom(3 * 1024 * 1024)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), 65536):
            yield data[start:start + 65536]

    created = stack.post("/v1/files?filename=blob.bin", content=chunks())
    assert created.status_code == 201
    assert created.json()["sha256"] == hashlib.sha256(data).hexdigest()
    with httpx.stream("GET", f"{stack.url}/v1/files/{created.json()['id']}", headers={"x-api-key": KEY}) as resp:
        assert resp.status_code == 200
        received = b"".join(resp.iter_bytes())
    assert received == data
    ranged = stack.get(f"/v1/files/{created.json()['id']}", headers={"range": "bytes=100-199"})
    assert (ranged.status_code, ranged.content) == (206, data[100:200])
    eventually(lambda: len(stack.gateway.access_lines()) == 3)
    gateway_line = [line for line in stack.gateway.access_lines() if line["method"] == "POST"][-1]
    assert gateway_line["bytes_in"] == len(data)
    assert gateway_line["path"] == "/v1/files?filename=blob.bin"


def test_upstream_errors_pass_through_with_their_status(stack: Stack) -> None:
    assert stack.get("/v1/files/xyz").status_code == 400
    assert stack.get(f"/v1/files/{'0' * 64}").json()["error"] == "not_found"


def test_request_id_reaches_upstream_and_is_echoed(stack: Stack) -> None:
    response = stack.post("/v1/detect", content=b"abc", headers={"x-request-id": "trace-me-1"})
    assert response.headers["x-request-id"] == "trace-me-1"
    assert eventually(lambda: stack.server.access_lines())[-1]["request_id"] == "trace-me-1"
    generated = stack.post("/v1/detect", content=b"abc").headers["x-request-id"]
    assert eventually(lambda: len(stack.server.access_lines()) == 2)
    assert stack.server.access_lines()[-1]["request_id"] == generated


def test_one_trace_spans_gateway_and_server(stack: Stack) -> None:
    stack.post("/v1/files", content=b"traced through the gateway\n")
    gateway_spans = eventually(lambda: stack.gateway.spans.get_finished_spans() if len(
        stack.gateway.spans.get_finished_spans()) == 2 else None)
    assert eventually(lambda: stack.gateway.access_lines() and stack.server.access_lines())
    server_spans = stack.server.spans.get_finished_spans()
    client_span = next(s for s in gateway_spans if s.kind == SpanKind.CLIENT)
    gateway_root = next(s for s in gateway_spans if s.kind == SpanKind.SERVER)
    server_root = next(s for s in server_spans if s.name == "POST /v1/files")
    assert client_span.parent.span_id == gateway_root.context.span_id
    assert server_root.parent is not None and server_root.parent.is_remote
    assert server_root.parent.span_id == client_span.context.span_id
    assert server_root.context.trace_id == gateway_root.context.trace_id
    children = {s.name for s in server_spans if s.parent and s.parent.span_id == server_root.context.span_id}
    assert {"detect", "storage.write"} <= children
    gateway_log = stack.gateway.access_lines()[-1]
    server_log = stack.server.access_lines()[-1]
    assert gateway_log["trace_id"] == server_log["trace_id"] == format(gateway_root.context.trace_id, "032x")


@pytest.mark.parametrize("stack", [{"upstream_timeout": 0.3}], indirect=True)
def test_upstream_timeout_is_504_counted_and_logged_error(stack: Stack) -> None:
    httpx.post(stack.upstream_url + "/admin/faults", headers={"x-admin-key": ADMIN_KEY},
               json={"delay_rate": 1.0, "delay_ms": 1500, "duration_s": 30})
    response = stack.post("/v1/detect", content=b"abc")
    assert response.status_code == 504
    assert response.json()["error"] == "upstream_timeout" and "0.3s" in response.json()["detail"]
    assert stack.gateway.sample("gateway_upstream_errors_total", service="mockup-gateway", reason="timeout") == 1
    line = eventually(lambda: stack.gateway.access_lines())[-1]
    assert (line["http_status"], line["level"], line["status"]) == (504, "error", "error")


def test_upstream_refusal_is_502_and_readyz_503(tmp_path: Path) -> None:
    gateway = gateway_harness(tmp_path, f"http://127.0.0.1:{free_port()}")
    with gateway.client:
        response = gateway.client.post("/v1/detect", content=b"abc", headers={"x-api-key": KEY})
        assert response.status_code == 502
        assert response.json()["error"] == "upstream_connect"
        assert gateway.sample("gateway_upstream_errors_total", service="mockup-gateway", reason="connect") == 1
        assert gateway.client.get("/readyz").status_code == 503
        assert gateway.client.get("/healthz").json() == {"status": "ok"}
    line = [line for line in gateway.access_lines() if line["route"] == "/v1/{path:path}"][0]
    assert (line["level"], line["status"]) == ("error", "error")


def test_gateway_health_ready_metrics_need_no_key(stack: Stack) -> None:
    assert httpx.get(stack.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(stack.url + "/readyz").status_code == 200
    stack.post("/v1/detect", content=b"abc")
    metrics = httpx.get(stack.url + "/metrics").text
    samples = [line for line in metrics.splitlines() if line and not line.startswith("#")]
    assert len(samples) > 50
    assert stack.gateway.sample("http_requests_total", service="mockup-gateway", method="POST",
                                route="/v1/{path:path}", code="200") == 1


def test_credentials_stop_at_the_gateway_and_trace_headers_are_replaced(tmp_path: Path) -> None:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse(dict(request.headers))

    upstream = Starlette(routes=[Route("/v1/echo", echo, methods=["GET"])])
    with ThreadedServer(upstream) as echo_server:
        gateway = gateway_harness(tmp_path, echo_server.url)
        with gateway.client:
            seen = gateway.client.get("/v1/echo", headers={
                "authorization": f"Bearer {KEY}", "x-custom": "kept",
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}).json()
    assert "authorization" not in seen and "x-api-key" not in seen
    assert seen["x-custom"] == "kept"
    trace_id, parent = seen["traceparent"].split("-")[1:3]
    assert trace_id == "0af7651916cd43dd8448eb211c80319c" and parent != "b7ad6b7169203331"
    assert json.loads(gateway.log.getvalue().splitlines()[-1])["trace_id"] == trace_id


def test_upstream_restart_does_not_fail_requests_on_stale_pooled_connections(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    port = free_port()
    gateway = gateway_harness(tmp_path, f"http://127.0.0.1:{port}")
    with gateway.client:
        with ThreadedServer(server.app, port):
            assert gateway.client.post("/v1/detect", content=b"abc", headers={"x-api-key": KEY}).status_code == 200
        with ThreadedServer(server.app, port):  # the pooled keep-alive connection died with the old server
            again = gateway.client.post("/v1/detect", content=b"abc", headers={"x-api-key": KEY})
            assert again.status_code == 200, again.text


def test_large_request_body_sent_in_small_pieces_arrives_whole(stack: Stack) -> None:
    data = os.urandom(1024 * 1024 + 17)  # 1049 pieces, the last one short
    created = stack.post("/v1/files", content=iter([data[i:i + 1000] for i in range(0, len(data), 1000)]))
    assert created.status_code == 201
    assert created.json()["size"] == len(data)
    assert stack.get(f"/v1/files/{created.json()['id']}").content == data


def test_encoded_path_and_query_reach_upstream_unchanged(tmp_path: Path) -> None:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"raw_path": request.scope["raw_path"].decode(), "query": request.url.query})

    upstream = Starlette(routes=[Route("/v1/{rest:path}", echo, methods=["GET"])])
    with ThreadedServer(upstream) as echo_server:
        gateway = gateway_harness(tmp_path, echo_server.url)
        with ThreadedServer(gateway.app) as front:
            seen = httpx.get(front.url + "/v1/files/a%2Fb?filename=x%20y&z=1", headers={"x-api-key": KEY}).json()
    assert seen == {"raw_path": "/v1/files/a%2Fb", "query": "filename=x%20y&z=1"}


def test_upstream_dying_mid_body_is_502_counted_as_body_error(tmp_path: Path) -> None:
    class Truncating(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.recv(65536)
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: text/plain\r\n\r\nshort")

    with socketserver.TCPServer(("127.0.0.1", 0), Truncating) as broken:
        threading.Thread(target=broken.serve_forever, daemon=True).start()
        gateway = gateway_harness(tmp_path, f"http://127.0.0.1:{broken.server_address[1]}")
        with gateway.client:
            response = gateway.client.get("/v1/anything", headers={"x-api-key": KEY})
        broken.shutdown()
    assert response.status_code == 502
    assert response.json()["error"] == "upstream_body"
    assert gateway.sample("gateway_upstream_errors_total", service="mockup-gateway", reason="body") == 1


class Recorder:
    """An upstream that records every request exactly as it arrives (headers, body, connection)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.first_chunk = threading.Event()
        self.release = threading.Event()
        self.in_flight = 0
        self.max_in_flight = 0

    async def record(self, request: Request) -> Response:
        chunks = []
        async for chunk in request.stream():
            if chunk:
                chunks.append(chunk)
                self.first_chunk.set()
        body = b"".join(chunks)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]]
        self.requests.append({"method": request.method, "body": body, "headers": headers})
        return JSONResponse({"size": len(body), "sha256": hashlib.sha256(body).hexdigest()})

    async def slow(self, request: Request) -> Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            while not self.release.is_set():
                await asyncio.sleep(0.01)
        finally:
            self.in_flight -= 1
        return await self.record(request)

    async def redirect(self, request: Request) -> Response:
        return Response(status_code=302, headers={"location": "/v1/elsewhere"})

    async def gzipped(self, request: Request) -> Response:
        response = Response(gzip.compress(os.urandom(int(request.path_params["size"]))),
                            headers={"content-encoding": "gzip", "x-request-id": "upstream-own-id"})
        response.raw_headers += [(b"set-cookie", b"a=1; Path=/"), (b"set-cookie", b"b=2; Path=/")]
        return response

    def app(self) -> Starlette:
        methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        return Starlette(routes=[Route("/v1/record/{rest:path}", self.record, methods=methods),
                                 Route("/v1/slow", self.slow, methods=["POST"]),
                                 Route("/v1/redirect", self.redirect, methods=["GET"]),
                                 Route("/v1/gzip/{size:int}", self.gzipped, methods=["GET"])])


@dataclass
class Recorded:
    recorder: Recorder
    gateway: Harness
    front: ThreadedServer
    upstream: ThreadedServer

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.front.port, timeout=10)

    def exchange(self, method: str, path: str, headers: dict[str, str],
                 body: bytes | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
        """One request with exactly these headers (plus Host), the answer's raw headers and bytes."""
        conn = self.connect()
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in {"Host": f"127.0.0.1:{self.front.port}", "X-API-Key": KEY, **headers}.items():
                conn.putheader(name, value)
            conn.endheaders(body)
            answer = conn.getresponse()
            return answer.status, answer.getheaders(), answer.read()
        finally:
            conn.close()


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[Recorded]:
    recorder = Recorder()
    with ThreadedServer(recorder.app()) as upstream:
        # a generous upstream timeout: on a loaded machine the pool test holds requests for seconds, and
        # a request timed out upstream frees its connection for a waiting one (the pool is not the limit then)
        gateway = gateway_harness(tmp_path, upstream.url, upstream_timeout=60.0)
        with ThreadedServer(gateway.app) as front:
            yield Recorded(recorder, gateway, front, upstream)


def test_upstream_gets_the_clients_headers_and_none_of_its_own(recorded: Recorded) -> None:
    post = recorded.exchange("POST", "/v1/record/a", {"Content-Length": "5", "Cookie": "a=1; b=2",
                                                       "X-Custom": "kept"}, b"hello")
    get = recorded.exchange("GET", "/v1/record/b", {"User-Agent": "curl/8.5.0", "Accept": "text/plain",
                                                     "Accept-Encoding": "gzip"})
    delete = recorded.exchange("DELETE", "/v1/record/c", {})
    assert [status for status, _, _ in (post, get, delete)] == [200, 200, 200]
    added = ["host", "x-request-id", "x-forwarded-for", "traceparent"]
    seen = {request["method"]: request["headers"] for request in recorded.recorder.requests}
    assert sorted(name for name, _ in seen["POST"]) == sorted([*added, "content-length", "cookie", "x-custom"])
    assert sorted(name for name, _ in seen["GET"]) == sorted([*added, "user-agent", "accept", "accept-encoding"])
    assert sorted(name for name, _ in seen["DELETE"]) == sorted(added)  # not even Content-Length: 0
    post_headers, get_headers = dict(seen["POST"]), dict(seen["GET"])
    assert post_headers["host"] == f"127.0.0.1:{recorded.upstream.port}"
    assert (post_headers["content-length"], post_headers["cookie"]) == ("5", "a=1; b=2")
    assert (get_headers["user-agent"], get_headers["accept"], get_headers["accept-encoding"]) == (
        "curl/8.5.0", "text/plain", "gzip")
    assert recorded.recorder.requests[0]["body"] == b"hello"


def start_chunked_post(recorded: Recorded, path: str) -> http.client.HTTPConnection:
    """A chunked POST through the gateway whose first piece ("first") has reached the upstream."""
    conn = recorded.connect()
    conn.putrequest("POST", path, skip_accept_encoding=True)
    conn.putheader("X-API-Key", KEY)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.send(b"5\r\nfirst\r\n")
    # A gateway that buffered the body would hold this piece until the client sent the rest.
    assert recorded.recorder.first_chunk.wait(5), "the first piece did not reach the upstream on its own"
    return conn


def test_request_body_without_length_streams_upstream_chunked_as_it_arrives(recorded: Recorded) -> None:
    data = os.urandom(300_000)
    conn = start_chunked_post(recorded, "/v1/record/stream")
    for start in range(0, len(data), 100_000):
        piece = data[start:start + 100_000]
        conn.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
    conn.send(b"0\r\n\r\n")
    answer = conn.getresponse()
    assert answer.status == 200
    assert json.loads(answer.read()) == {"size": 5 + len(data), "sha256": hashlib.sha256(b"first" + data).hexdigest()}
    conn.close()
    headers = dict(recorded.recorder.requests[0]["headers"])
    assert headers["transfer-encoding"] == "chunked" and "content-length" not in headers


def test_redirects_compressed_bodies_and_repeated_headers_are_relayed_untouched(recorded: Recorded) -> None:
    status, headers, _ = recorded.exchange("GET", "/v1/redirect", {})
    assert (status, dict(headers)["location"]) == (302, "/v1/elsewhere")
    assert recorded.recorder.requests == []  # the gateway did not follow it
    for size in (1000, 300_000):  # relayed whole, then streamed
        status, headers, body = recorded.exchange("GET", f"/v1/gzip/{size}", {"Accept-Encoding": "gzip"})
        assert status == 200
        assert len(gzip.decompress(body)) == size  # the compressed bytes, as the upstream sent them
        assert dict(headers)["content-encoding"] == "gzip" and int(dict(headers)["content-length"]) == len(body)
        assert [v for k, v in headers if k == "set-cookie"] == ["a=1; Path=/", "b=2; Path=/"]
        assert [v for k, v in headers if k == "x-request-id"] != ["upstream-own-id"]
        assert len([k for k, _ in headers if k == "x-request-id"]) == 1
        assert len([k for k, _ in headers if k == "date"]) == 1  # the gateway's own, not a second one


def test_client_going_away_mid_upload_is_not_an_upstream_error(recorded: Recorded) -> None:
    conn = start_chunked_post(recorded, "/v1/record/abandoned")
    conn.close()
    assert eventually(lambda: recorded.gateway.access_lines())
    for reason in ("timeout", "connect", "protocol", "body"):
        assert recorded.gateway.sample("gateway_upstream_errors_total", service="mockup-gateway", reason=reason) == 0
    assert recorded.recorder.requests == []  # the upstream never got a complete request
    assert recorded.exchange("POST", "/v1/record/after", {"Content-Length": "2"}, b"ok")[0] == 200


def test_upstream_pool_is_bounded_and_reused(recorded: Recorded) -> None:
    total = POOL_CONNECTIONS + 16

    def post(i: int) -> int:
        return httpx.post(f"{recorded.front.url}/v1/slow", content=b"%d" % i, headers={"x-api-key": KEY},
                          timeout=30).status_code

    with ThreadPoolExecutor(max_workers=total) as pool:
        try:
            answers = [pool.submit(post, i) for i in range(total)]
            assert eventually(lambda: recorded.gateway.sample("http_requests_in_flight",
                                                              service="mockup-gateway") == total, timeout=20)
            assert eventually(lambda: recorded.recorder.in_flight == POOL_CONNECTIONS, timeout=10)
            time.sleep(0.3)
            assert recorded.recorder.max_in_flight == POOL_CONNECTIONS  # the other 16 wait for a connection
        finally:
            recorded.recorder.release.set()
        assert [answer.result() for answer in answers] == [200] * total
    upstream_connections = recorded.upstream.server.server_state.connections
    assert len(upstream_connections) == POOL_CONNECTIONS  # all kept alive
    assert recorded.exchange("POST", "/v1/record/again", {"Content-Length": "2"}, b"ok")[0] == 200
    assert len(upstream_connections) == POOL_CONNECTIONS  # a pooled one was reused


def test_upstream_body_stalling_is_504_counted_as_timeout(tmp_path: Path) -> None:
    class Stalling(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.recv(65536)
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: text/plain\r\n\r\nshort")
            time.sleep(1.5)

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Stalling) as stalled:
        threading.Thread(target=stalled.serve_forever, daemon=True).start()
        gateway = gateway_harness(tmp_path, f"http://127.0.0.1:{stalled.server_address[1]}", upstream_timeout=0.3)
        with gateway.client:
            started = time.monotonic()
            response = gateway.client.get("/v1/anything", headers={"x-api-key": KEY})
            waited = time.monotonic() - started
        stalled.shutdown()
    assert response.status_code == 504 and waited < 1.2
    assert response.json()["error"] == "upstream_timeout" and "stalled past 0.3s" in response.json()["detail"]
    assert gateway.sample("gateway_upstream_errors_total", service="mockup-gateway", reason="timeout") == 1


def test_upstream_connections_close_at_shutdown(tmp_path: Path) -> None:
    closed = threading.Event()

    class KeepAlive(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.recv(65536)
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            self.request.settimeout(3)
            with contextlib.suppress(TimeoutError):
                if self.request.recv(65536) == b"":  # the gateway closed its pooled connection
                    closed.set()

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), KeepAlive) as upstream:
        threading.Thread(target=upstream.serve_forever, daemon=True).start()
        gateway = gateway_harness(tmp_path, f"http://127.0.0.1:{upstream.server_address[1]}")
        with gateway.client:
            assert gateway.client.get("/v1/anything", headers={"x-api-key": KEY}).content == b"ok"
            assert not closed.wait(0.3)  # kept alive in the pool
        assert closed.wait(2)  # well before the 4 s keep-alive expiry: the lifespan shutdown closed it
        upstream.shutdown()
