"""Hostile clients against both services on 127.0.0.1: every refusal is a JSON 4xx (or a deliberate 503),
counted in http_requests_total and logged, and none of it is a 5xx the client could cause.

Raw sockets where a well-behaved client library would not send the request. Limits are set small
(and timeouts short) so that each case is bounded in bytes and seconds.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mime_server.limits import GATEWAY_LIMITS, MIME_LIMITS, EdgeLimits
from tests.service.conftest import ADMIN_KEY, Harness, ThreadedServer, eventually, make_server
from tests.service.test_gateway import KEY, gateway_harness

LIMITS = EdgeLimits(max_header_bytes=4096, max_headers=20, header_timeout=0.5, body_timeout=0.5,
                    keepalive_timeout=0.5, max_connections=8)
WAIT_S = 5.0  # how long a test waits for an outcome that the limits above make due in under a second


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def read_answer(sock: socket.socket) -> Answer:
    """One HTTP/1.1 answer with a Content-Length from ``sock`` (raises on EOF before it is complete)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a complete head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a complete body")
        rest += chunk
    return Answer(int(lines[0].split()[1]), headers, rest[:length])


def closed_by_peer(sock: socket.socket, within: float = WAIT_S) -> bool:
    """True when the server closes the connection (EOF or reset) within ``within`` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


@contextlib.contextmanager
def connection(port: int) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
        yield sock


def send_all_until_refused(sock: socket.socket, data: bytes, piece: int = 65536) -> int:
    """Send ``data`` in pieces until the server stops reading; return how many bytes went out."""
    sent = 0
    try:
        for start in range(0, len(data), piece):
            sock.sendall(data[start:start + piece])
            sent += len(data[start:start + piece])
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass
    return sent


def rejected_count(harness: Harness, service: str, code: int, method: str) -> float:
    return harness.sample("http_requests_total", service=service, method=method, route="unmatched", code=str(code))


@dataclass
class Live:
    harness: Harness
    server: ThreadedServer

    @property
    def port(self) -> int:
        return self.server.port


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    harness = make_server(tmp_path, max_upload_bytes=1024 * 1024, admin_key=ADMIN_KEY)
    with ThreadedServer(harness.app, limits=LIMITS) as server:
        yield Live(harness, server)


def upload(port: int, data: bytes) -> str:
    answer = httpx.post(f"http://127.0.0.1:{port}/v1/files", content=data)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


# -- request heads: size and field count ------------------------------------------------------


def test_head_over_the_byte_limit_is_431_json_counted_and_logged(live: Live) -> None:
    with connection(live.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
        answer = read_answer(sock)
        assert closed_by_peer(sock)
    assert answer.status == 431 and answer.headers["content-type"] == "application/json"
    assert answer.json()["error"] == "header_too_large"
    assert rejected_count(live.harness, "mime-server", 431, "GET") == 1
    line = live.harness.access_lines()[-1]
    assert (line["http_status"], line["level"], line["route"], line["error"]) == (431, "warn", "unmatched",
                                                                                   "header_too_large")
    assert line["request_id"] == answer.headers["x-request-id"]


def test_head_just_under_the_limits_is_served(live: Live) -> None:
    fields = [f"X-F{i}: v" for i in range(LIMITS.max_headers - 2)]  # with Host and X-Pad: exactly the count
    head = "GET /healthz HTTP/1.1\r\nHost: t\r\n" + "".join(f"{field}\r\n" for field in fields)
    room = LIMITS.max_header_bytes - len("/healthz") - sum(len(f) + 2 for f in ["Host: t", *fields]) - len("X-Pad: \r\n")
    with connection(live.port) as sock:
        sock.sendall((head + "X-Pad: " + "p" * room + "\r\n\r\n").encode())
        assert read_answer(sock).status == 200


def test_more_header_fields_than_the_limit_is_431(live: Live) -> None:
    fields = "".join(f"X-F{i}: v\r\n" for i in range(LIMITS.max_headers + 1))
    with connection(live.port) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: t\r\n{fields}\r\n".encode())
        answer = read_answer(sock)
    assert (answer.status, answer.json()["error"]) == (431, "too_many_headers")
    assert rejected_count(live.harness, "mime-server", 431, "GET") == 1


def test_unfinished_header_bomb_is_refused_after_a_bounded_read(live: Live) -> None:
    bomb = b"GET /healthz HTTP/1.1\r\nX-Bomb: " + b"b" * (8 * 1024 * 1024)  # never finished
    with connection(live.port) as sock:
        send_all_until_refused(sock, bomb)  # the server drains (and drops) what follows its answer
        answer = read_answer(sock)
    assert (answer.status, answer.json()["error"]) == (431, "header_too_large")
    line = live.harness.access_lines()[-1]
    # Refused as it arrived: past the limit by at most one socket read (uvloop reads up to 256 KiB).
    assert line["bytes_in"] <= LIMITS.max_header_bytes + 1024 + 256 * 1024


# -- time: heads, bodies, idle connections ----------------------------------------------------


def test_connection_that_sends_nothing_is_closed_silently(live: Live) -> None:
    with connection(live.port) as sock:
        assert closed_by_peer(sock)
    assert live.harness.access_lines() == []  # not a request: nothing answered, nothing counted


def test_slow_head_is_408_json_then_closed(live: Live) -> None:
    with connection(live.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        answer = read_answer(sock)
        assert closed_by_peer(sock)
    assert (answer.status, answer.json()["error"]) == (408, "header_timeout")
    assert rejected_count(live.harness, "mime-server", 408, "GET") == 1
    assert live.harness.access_lines()[-1]["level"] == "warn"


def test_stalled_body_is_408_answered_by_the_app_and_leaves_nothing_in_tmp(live: Live) -> None:
    with connection(live.port) as sock:
        sock.sendall(b"POST /v1/files HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        answer = read_answer(sock)
        assert closed_by_peer(sock)
    assert (answer.status, answer.json()["error"]) == (408, "body_timeout")
    assert live.harness.sample("http_requests_total", service="mime-server", method="POST", route="/v1/files",
                               code="408") == 1
    assert eventually(lambda: not list((live.harness.storage / "tmp").iterdir()))


def test_slow_but_steady_body_is_not_timed_out(live: Live) -> None:
    pieces = 8
    with connection(live.port) as sock:
        sock.sendall(b"POST /v1/files HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % pieces)
        for _ in range(pieces):  # 8 x 0.2 s: longer than the body timeout in total, never idle that long
            time.sleep(LIMITS.body_timeout * 0.4)
            sock.sendall(b"s")
        assert read_answer(sock).status == 201


def test_idle_keep_alive_connection_is_closed(live: Live) -> None:
    with connection(live.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_answer(sock).status == 200
        assert closed_by_peer(sock)
    assert len(live.harness.access_lines()) == 1


# -- connections ------------------------------------------------------------------------------


# Timeouts far longer than the tests: whatever closes a connection here is the cap, not a timer.
PATIENT = EdgeLimits(max_connections=4, header_timeout=30, body_timeout=30, keepalive_timeout=30)


@pytest.fixture
def patient(tmp_path: Path) -> Iterator[Live]:
    harness = make_server(tmp_path, max_upload_bytes=1024 * 1024)
    with ThreadedServer(harness.app, limits=PATIENT) as server:
        yield Live(harness, server)


def test_connection_over_the_cap_closes_the_longest_idle_one_instead_of_refusing(patient: Live) -> None:
    with contextlib.ExitStack() as stack:
        held = [stack.enter_context(connection(patient.port)) for _ in range(PATIENT.max_connections)]
        for sock in held:  # served once, then idle on keep-alive
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_answer(sock).status == 200
        with connection(patient.port) as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_answer(extra).status == 200
        assert closed_by_peer(held[0])
        for sock in held[1:]:  # the others stay open and usable
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_answer(sock).status == 200
    assert rejected_count(patient.harness, "mime-server", 503, "_OTHER") == 0


def test_connection_over_the_cap_closes_the_oldest_slow_head_with_408(patient: Live) -> None:
    with contextlib.ExitStack() as stack:
        slow = []
        for _ in range(PATIENT.max_connections):
            slow.append(stack.enter_context(connection(patient.port)))
            slow[-1].sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")  # never finished
            time.sleep(0.05)  # one after the other: slow[0] has waited longest
        with connection(patient.port) as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_answer(extra).status == 200
        evicted = read_answer(slow[0])
    assert (evicted.status, evicted.json()["error"]) == (408, "header_timeout")
    assert "needed its connection for another client" in evicted.json()["detail"]
    assert rejected_count(patient.harness, "mime-server", 408, "GET") == 1


def test_connection_over_the_cap_while_every_one_is_busy_gets_503_json_with_retry_after(patient: Live) -> None:
    with contextlib.ExitStack() as stack:
        busy = [stack.enter_context(connection(patient.port)) for _ in range(PATIENT.max_connections)]
        for sock in busy:  # each one in the middle of an upload
            sock.sendall(b"POST /v1/files HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        time.sleep(0.2)
        with connection(patient.port) as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            answer = read_answer(extra)
        for index, sock in enumerate(busy):  # the busy ones were not disturbed
            sock.sendall(b"defghi%d" % index)
            assert read_answer(sock).status == 201
    assert answer.status == 503 and answer.headers["retry-after"] == "1"
    assert answer.json()["error"] == "too_many_connections"
    assert rejected_count(patient.harness, "mime-server", 503, "_OTHER") == 1
    line = [line for line in patient.harness.access_lines() if line["http_status"] == 503][0]
    assert (line["level"], line["status"]) == ("error", "error")  # a real overload: the service's own 5xx


# -- what the parser rejects ------------------------------------------------------------------


@pytest.mark.parametrize("request_bytes,method", [
    (b"GARBAGE\r\n\r\n", "_OTHER"),
    (b"POST /v1/files HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "POST"),
    (b"GET /healthz HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", "GET"),
    (b"GET /he\x00lthz HTTP/1.1\r\nHost: t\r\n\r\n", "_OTHER"),  # refused before the target was read
])
def test_request_the_parser_rejects_is_400_json_counted_and_logged(live: Live, request_bytes: bytes,
                                                                  method: str) -> None:
    with connection(live.port) as sock:
        sock.sendall(request_bytes)
        answer = read_answer(sock)
    assert (answer.status, answer.json()["error"]) == (400, "malformed_request")
    assert rejected_count(live.harness, "mime-server", 400, method) == 1
    line = live.harness.access_lines()[-1]
    assert (line["http_status"], line["level"], line["method"]) == (400, "warn", method)


def test_malformed_chunked_body_is_400_from_the_app(live: Live) -> None:
    with connection(live.port) as sock:
        sock.sendall(b"POST /v1/files HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n")
        answer = read_answer(sock)
        assert closed_by_peer(sock)
    assert (answer.status, answer.json()["error"]) == (400, "malformed_body")
    assert live.harness.sample("http_requests_total", service="mime-server", method="POST", route="/v1/files",
                               code="400") == 1
    assert eventually(lambda: not list((live.harness.storage / "tmp").iterdir()))


# -- JSON for every status, RFC 9110 ranges and conditionals ---------------------------------


@pytest.mark.parametrize("method,path,status,code", [
    ("GET", "/no/such/route", 404, "not_found"),
    ("DELETE", "/v1/files", 405, "method_not_allowed"),
    ("GET", "/v1/files/" + "ab" * 32 + "/", 404, "not_found"),  # no redirect from slash handling
])
def test_router_refusals_are_json(live: Live, method: str, path: str, status: int, code: str) -> None:
    answer = httpx.request(method, f"http://127.0.0.1:{live.port}{path}")
    assert (answer.status_code, answer.json()["error"]) == (status, code)
    assert "location" not in answer.headers
    if status == 405:
        assert answer.headers["allow"] == "POST"


@pytest.mark.parametrize("range_header", ["items=0-1", "bytes=5-2", "bytes=abc", "bytes=-", "bytes", "bytes=1-2,x"])
def test_range_header_that_is_not_valid_is_ignored(live: Live, range_header: str) -> None:
    object_id = upload(live.port, b"0123456789")
    answer = httpx.get(f"http://127.0.0.1:{live.port}/v1/files/{object_id}", headers={"range": range_header})
    assert (answer.status_code, answer.content) == (200, b"0123456789")


def test_unsatisfiable_range_is_416_json_and_a_partly_satisfiable_set_is_206(live: Live) -> None:
    object_id = upload(live.port, b"short\n")
    url = f"http://127.0.0.1:{live.port}/v1/files/{object_id}"
    refused = httpx.get(url, headers={"range": "bytes=100-200"})
    assert (refused.status_code, refused.headers["content-range"]) == (416, "bytes */6")
    assert refused.json()["error"] == "range_not_satisfiable"
    partly = httpx.get(url, headers={"range": "bytes=100-200,0-1"})
    assert (partly.status_code, partly.content) == (206, b"sh")
    ignored = httpx.get(url, headers={"range": "bytes=100-200", "if-range": '"another"'})
    assert ignored.status_code == 200  # If-Range does not match: the Range header does not apply


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("condition,status", [("*", 304), ('W/"{id}"', 304), ('"other", "{id}"', 304),
                                              ('"other"', 200)])
def test_if_none_match_is_compared_weakly_and_star_matches(live: Live, method: str, condition: str,
                                                           status: int) -> None:
    object_id = upload(live.port, b"conditional\n")
    answer = httpx.request(method, f"http://127.0.0.1:{live.port}/v1/files/{object_id}",
                           headers={"if-none-match": condition.format(id=object_id)})
    assert answer.status_code == status


# -- bodies and values a careless or hostile client sends -------------------------------------


def test_multipart_boundary_of_300_characters_is_400(live: Live) -> None:
    boundary = "b" * 300
    body = f'--{boundary}\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc\r\n--{boundary}--\r\n'
    answer = httpx.post(f"http://127.0.0.1:{live.port}/v1/files", content=body.encode(),
                        headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert (answer.status_code, answer.json()["error"]) == (400, "malformed_multipart")


@pytest.mark.parametrize("raw", [b'{"error_rate": NaN}', b'{"delay_rate": Infinity}', b'{"error_rate": -Infinity}'])
def test_fault_spec_with_a_non_json_number_is_400(live: Live, raw: bytes) -> None:
    answer = httpx.post(f"http://127.0.0.1:{live.port}/admin/faults", content=raw,
                        headers={"x-admin-key": ADMIN_KEY, "content-type": "application/json"})
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_json")


@pytest.mark.parametrize("char", ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068",
                                  "\u2069", "\u200e", "\u200f"])
def test_filename_with_a_bidirectional_control_is_refused(live: Live, char: str) -> None:
    name = f"report{char}txt.exe"
    by_query = httpx.post(f"http://127.0.0.1:{live.port}/v1/files", params={"filename": name}, content=b"x\n")
    by_part = httpx.post(f"http://127.0.0.1:{live.port}/v1/files", files={"file": (name, b"x\n", "text/plain")})
    for answer in (by_query, by_part):
        assert (answer.status_code, answer.json()["error"]) == (400, "invalid_filename")
        assert f"U+{ord(char):04X}" in answer.json()["detail"]
    assert list((live.harness.storage / "objects").iterdir()) == []


# -- the gateway ------------------------------------------------------------------------------


@dataclass
class GatewayStack:
    server: Harness
    gateway: Harness
    port: int
    upstream_port: int


@pytest.fixture
def through(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[GatewayStack]:
    server = make_server(tmp_path, max_upload_bytes=1024 * 1024, admin_key=ADMIN_KEY)
    with ThreadedServer(server.app, limits=LIMITS) as upstream:
        gateway = gateway_harness(tmp_path, upstream.url, **getattr(request, "param", {}))
        with ThreadedServer(gateway.app, limits=LIMITS) as front:
            yield GatewayStack(server, gateway, front.port, upstream.port)


def five_xx(harness: Harness) -> list[dict[str, Any]]:
    return [line for line in harness.log_lines() if line.get("http_status", 0) >= 500 or line["level"] == "error"]


def test_head_at_the_gateways_limits_is_not_refused_by_mime_server_behind_it(tmp_path: Path) -> None:
    server = make_server(tmp_path, max_upload_bytes=1024 * 1024)
    with ThreadedServer(server.app, limits=MIME_LIMITS) as upstream:
        gateway = gateway_harness(tmp_path, upstream.url)
        with ThreadedServer(gateway.app, limits=GATEWAY_LIMITS) as front:
            fields = [f"X-API-Key: {KEY}", "Host: t",
                      *(f"X-F{i}: v" for i in range(GATEWAY_LIMITS.max_headers - 3))]
            target = f"/v1/files/{'ab' * 32}"
            room = GATEWAY_LIMITS.max_header_bytes - len(target) - sum(len(f) + 2 for f in fields) - len("X-Pad: \r\n")
            head = f"GET {target} HTTP/1.1\r\n" + "".join(f"{f}\r\n" for f in [*fields, "X-Pad: " + "p" * room])
            with connection(front.port) as sock:
                sock.sendall(head.encode() + b"\r\n")
                at_limits = read_answer(sock)
            with connection(front.port) as sock:
                sock.sendall(head.encode() + b"X-One-More: v\r\n\r\n")
                over = read_answer(sock)
    assert (at_limits.status, at_limits.json()["error"]) == (404, "not_found")  # served by mime-server
    assert (over.status, over.json()["error"]) == (431, "too_many_headers")  # refused by the gateway
    assert eventually(lambda: len(server.access_lines()) == 1)


def test_trailing_slash_through_the_gateway_reveals_no_upstream_address(through: GatewayStack) -> None:
    answer = httpx.get(f"http://127.0.0.1:{through.port}/v1/files/{'ab' * 32}/", headers={"x-api-key": KEY})
    assert answer.status_code == 404 and "location" not in answer.headers
    assert str(through.upstream_port) not in answer.text


def test_upstream_location_is_relayed_without_its_address(tmp_path: Path) -> None:
    async def moved(request: Request) -> Response:
        return Response(status_code=301, headers={"location": f"http://127.0.0.1:{request.url.port}/v1/new?x=1",
                                                  "content-location": "//10.1.2.3:8080/v1/old"})

    with ThreadedServer(Starlette(routes=[Route("/v1/old", moved)])) as upstream:
        gateway = gateway_harness(tmp_path, upstream.url)
        with ThreadedServer(gateway.app, limits=LIMITS) as front:
            answer = httpx.get(f"http://127.0.0.1:{front.port}/v1/old", headers={"x-api-key": KEY})
    assert answer.status_code == 301
    assert (answer.headers["location"], answer.headers["content-location"]) == ("/v1/new?x=1", "/v1/old")


def test_upstream_failure_answer_names_no_address(tmp_path: Path) -> None:
    gateway = gateway_harness(tmp_path, "http://127.0.0.1:9")  # discard port: refused
    with ThreadedServer(gateway.app, limits=LIMITS) as front:
        answer = httpx.get(f"http://127.0.0.1:{front.port}/v1/files/x", headers={"x-api-key": KEY})
        ready = httpx.get(f"http://127.0.0.1:{front.port}/readyz")
    assert (answer.status_code, answer.json()["error"]) == (502, "upstream_connect")
    for text in (answer.text, ready.text):
        assert "127.0.0.1" not in text and ":9" not in text
    assert any("127.0.0.1:9" in line.get("upstream", "") for line in gateway.log_lines())  # operators still see it


def test_api_keys_are_never_logged_nor_forwarded(through: GatewayStack) -> None:
    secret = "sEcReT-kEy-42"
    base = f"http://127.0.0.1:{through.port}"
    httpx.get(f"{base}/v1/files/{'ab' * 32}?api_key={secret}&filename=a", headers={"x-api-key": KEY})
    httpx.get(f"{base}/v1/files/{'ab' * 32}?API_KEY={secret}")
    httpx.get(f"{base}/v1/files/{'ab' * 32}", headers={"x-api-key": secret})
    httpx.get(f"{base}/v1/files/{'ab' * 32}", headers={"authorization": f"Bearer {secret}"})
    assert eventually(lambda: len(through.gateway.access_lines()) == 4)
    assert eventually(lambda: len(through.server.access_lines()) == 1)
    for harness in (through.gateway, through.server):
        assert secret not in harness.log.getvalue()
        for span in harness.spans.get_finished_spans():
            assert secret not in json.dumps(dict(span.attributes or {}))
    assert through.server.access_lines()[0]["path"] == f"/v1/files/{'ab' * 32}?filename=a"  # not forwarded
    assert "api_key=REDACTED" in through.gateway.access_lines()[0]["path"]


@pytest.mark.parametrize("through", [{"auth_failure_rate": 0.01, "auth_failure_burst": 3}], indirect=True)
def test_failed_authentications_are_rate_limited_per_address(through: GatewayStack) -> None:
    url = f"http://127.0.0.1:{through.port}/v1/files/{'ab' * 32}"
    codes = [httpx.get(url, headers={"x-api-key": f"guess-{i}"}).status_code for i in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    limited = httpx.get(url, headers={"x-api-key": KEY})  # even the right key, while the address is limited
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"] == "too_many_failed_authentications"
    assert through.gateway.sample("gateway_auth_rate_limited_total", service="mockup-gateway") == 3
    assert through.gateway.sample("gateway_unauthorized_total", service="mockup-gateway") == 3
    warnings = [line for line in through.gateway.log_lines() if line["msg"].startswith("authentication")]
    assert len(warnings) == 6 and all(line["level"] == "warn" and line["client"] == "127.0.0.1" for line in warnings)
    assert "guess-" not in through.gateway.log.getvalue()


def test_client_aborting_an_upload_through_the_gateway_is_499_warn_not_5xx(through: GatewayStack) -> None:
    with connection(through.port) as sock:
        sock.sendall(b"POST /v1/files HTTP/1.1\r\nHost: t\r\nX-API-Key: " + KEY.encode()
                     + b"\r\nContent-Length: 100000\r\n\r\n" + b"a" * 30000)
        time.sleep(0.1)
    line = eventually(lambda: next((line for line in through.gateway.access_lines() if line["method"] == "POST"), None))
    assert (line["http_status"], line["level"]) == (499, "warn")
    assert eventually(lambda: through.server.access_lines())[-1]["http_status"] == 499
    assert five_xx(through.gateway) == [] and five_xx(through.server) == []


@pytest.mark.parametrize("through", [{"upstream_timeout": 0.3}], indirect=True)
def test_slow_but_steady_upload_through_the_gateway_is_not_an_upstream_timeout(through: GatewayStack) -> None:
    with connection(through.port) as sock:
        sock.sendall(b"POST /v1/files HTTP/1.1\r\nHost: t\r\nX-API-Key: " + KEY.encode()
                     + b"\r\nContent-Length: 6\r\n\r\n")
        for _ in range(6):  # 1.2 s in all, four times the upstream timeout, never idle for the body timeout
            time.sleep(0.2)
            sock.sendall(b"s")
        assert read_answer(sock).status == 201
    assert five_xx(through.gateway) == []


def test_malformed_chunked_body_through_the_gateway_is_400_not_5xx(through: GatewayStack) -> None:
    with connection(through.port) as sock:
        sock.sendall(b"POST /v1/files HTTP/1.1\r\nHost: t\r\nX-API-Key: " + KEY.encode()
                     + b"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nnot-hex\r\n")
        answer = read_answer(sock)
    assert (answer.status, answer.json()["error"]) == (400, "malformed_body")
    assert eventually(lambda: through.gateway.access_lines())[-1]["level"] == "warn"
    time.sleep(0.2)  # the upstream sees the aborted upload
    assert five_xx(through.gateway) == [] and five_xx(through.server) == []


# -- the sum of it: no input gives a 5xx ----------------------------------------------------------

HOSTILE_REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(500)) + b"\r\n",
    b"GARBAGE\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello on the plain port
    b"POST /v1/files HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"POST /v1/files HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
    b"POST /v1/files HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
    b"POST /v1/files HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
    b"POST /v1/files HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999\r\n\r\n",
    b"POST /v1/files HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary="
    + b"q" * 300 + b"\r\nContent-Length: 4\r\n\r\nabcd",
    b"POST /v1/files?filename=%E2%80%AEevil.exe HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nab",
    b"POST /v1/files?filename=%FF%FE HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nab",
    b"POST /admin/faults HTTP/1.1\r\nHost: t\r\nX-Admin-Key: " + ADMIN_KEY.encode()
    + b"\r\nContent-Length: 19\r\n\r\n{\"error_rate\": NaN}",
    b"POST /admin/faults HTTP/1.1\r\nHost: t\r\nX-Admin-Key: " + ADMIN_KEY.encode()
    + b"\r\nContent-Length: 5\r\n\r\n\xff\xfe\x00{[",
    b"GET /v1/files/" + b"ab" * 32 + b" HTTP/1.1\r\nHost: t\r\nRange: bytes=99999999999999999999-\r\n\r\n",
    b"GET /v1/files/%00 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /v1/files/..%2F..%2Fetc%2Fpasswd HTTP/1.1\r\nHost: t\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET http://evil.example/v1/files HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"GET /healthz HTTP/1.0\r\n\r\n",
    b"GET /healthz HTTP/9.9\r\nHost: t\r\n\r\n",
    b"POST /v1/detect HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
]


def hostile_answers(port: int, extra_head: bytes = b"") -> list[int | None]:
    """Send each hostile request on its own connection; the status of the answer, None for none."""
    statuses: list[int | None] = []
    for raw in HOSTILE_REQUESTS:
        if extra_head and b"\r\nHost: t\r\n" in raw:
            raw = raw.replace(b"\r\nHost: t\r\n", b"\r\nHost: t\r\n" + extra_head, 1)
        with connection(port) as sock:
            send_all_until_refused(sock, raw)
            try:
                statuses.append(read_answer(sock).status)
            except (ConnectionError, TimeoutError):
                statuses.append(None)
    return statuses


def test_no_hostile_input_gives_mime_server_a_5xx(live: Live) -> None:
    statuses = hostile_answers(live.port)
    assert all(status is not None and status < 500 for status in statuses), list(zip(statuses, HOSTILE_REQUESTS))
    assert five_xx(live.harness) == []
    assert not [line for line in live.harness.log_lines() if line["level"] == "error"]


def test_no_hostile_input_gives_the_gateway_a_5xx(through: GatewayStack) -> None:
    statuses = hostile_answers(through.port, b"X-API-Key: " + KEY.encode() + b"\r\n")
    assert all(status is not None and status < 500 for status in statuses), list(zip(statuses, HOSTILE_REQUESTS))
    time.sleep(0.2)
    assert five_xx(through.gateway) == [] and five_xx(through.server) == []
