"""mime-server endpoints: round trips, every bad input, fault injection, metrics and log fields."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.types import Message, Scope

from mime_server.detection import DETECTION_SLOTS, Detector
from mime_server.faults import FaultInjector, FaultSpec
from mime_server.storage import PendingUpload
from tests.service.conftest import ADMIN_KEY, Harness, ThreadedServer, eventually, make_server

PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f0e0000000049454e44ae426082")


def stored_names(storage: Path) -> list[str]:
    return sorted(p.name for p in (storage / "objects").iterdir())


# -- round trips ------------------------------------------------------------------------------


def test_upload_raw_answers_201_with_detection_and_stores_content_addressed(server: Harness) -> None:
    response = server.client.post("/v1/files?filename=pixel.png", content=PNG_1x1)
    assert response.status_code == 201
    body = response.json()
    digest = hashlib.sha256(PNG_1x1).hexdigest()
    assert body == {"id": digest, "sha256": digest, "size": len(PNG_1x1), "mime_type": "image/png",
                    "charset": "binary", "extension_mismatch": False, "filename": "pixel.png"}
    assert (server.storage / "objects" / digest).read_bytes() == PNG_1x1
    assert list((server.storage / "tmp").iterdir()) == []


def test_upload_multipart_file_field_uses_part_filename(server: Harness) -> None:
    response = server.client.post("/v1/files", files={"file": ("notes.pdf", b"plain words\n", "text/plain")},
                                  data={"comment": "ignored"})
    assert response.status_code == 201
    body = response.json()
    assert (body["mime_type"], body["charset"], body["filename"]) == ("text/plain", "us-ascii", "notes.pdf")
    assert body["extension_mismatch"] is True


def test_same_content_twice_is_stored_once(server: Harness) -> None:
    first = server.client.post("/v1/files?filename=a.txt", content=b"same bytes\n")
    second = server.client.post("/v1/files?filename=b.txt", content=b"same bytes\n")
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert stored_names(server.storage) == [first.json()["id"]]
    assert server.sample("mime_uploads_total", service="mime-server", outcome="deduplicated") == 1
    assert server.sample("mime_stored_objects", service="mime-server") == 1


def test_get_returns_bytes_with_detected_type_etag_and_length(server: Harness) -> None:
    data = gzip.compress(b"x" * 1000)
    object_id = server.client.post("/v1/files", content=data).json()["id"]
    response = server.client.get(f"/v1/files/{object_id}")
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "application/gzip"
    assert response.headers["etag"] == f'"{object_id}"'
    assert response.headers["content-length"] == str(len(data))
    cached = server.client.get(f"/v1/files/{object_id}", headers={"if-none-match": f'"{object_id}"'})
    assert cached.status_code == 304


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_lost_or_torn_sidecar_is_detected_again_on_read(server: Harness, damage: str) -> None:
    object_id = server.client.post("/v1/files", content=PNG_1x1).json()["id"]
    sidecar = server.storage / "meta" / f"{object_id}.json"
    if damage == "delete":
        sidecar.unlink()
    else:
        sidecar.write_bytes(b"")
    response = server.client.get(f"/v1/files/{object_id}")
    assert (response.status_code, response.headers["content-type"]) == (200, "image/png")
    assert response.content == PNG_1x1


def test_text_is_served_with_its_charset(server: Harness) -> None:
    text = "grüße aus köln\n".encode()
    object_id = server.client.post("/v1/files", content=text).json()["id"]
    response = server.client.get(f"/v1/files/{object_id}")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.content == text


def test_head_gives_headers_without_body(server: Harness) -> None:
    object_id = server.client.post("/v1/files", content=PNG_1x1).json()["id"]
    response = server.client.head(f"/v1/files/{object_id}")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(len(PNG_1x1))
    assert response.headers["content-type"] == "image/png"


def test_range_request_answers_206_with_the_slice(server: Harness) -> None:
    data = bytes(range(256)) * 4
    object_id = server.client.post("/v1/files", content=data).json()["id"]
    response = server.client.get(f"/v1/files/{object_id}", headers={"range": "bytes=10-19"})
    assert response.status_code == 206
    assert response.content == data[10:20]
    assert response.headers["content-range"] == f"bytes 10-19/{len(data)}"
    suffix = server.client.get(f"/v1/files/{object_id}", headers={"range": "bytes=-5"})
    assert (suffix.status_code, suffix.content) == (206, data[-5:])


def test_unsatisfiable_range_answers_416(server: Harness) -> None:
    object_id = server.client.post("/v1/files", content=b"short\n").json()["id"]
    response = server.client.get(f"/v1/files/{object_id}", headers={"range": "bytes=100-200"})
    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */6"


def test_detect_reports_type_and_stores_nothing(server: Harness) -> None:
    response = server.client.post("/v1/detect?filename=doc.txt", content=b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    assert response.status_code == 200
    body = response.json()
    assert body["mime_type"] == "application/pdf"
    assert body["extension_mismatch"] is True
    assert stored_names(server.storage) == []
    assert list((server.storage / "tmp").iterdir()) == []


def test_detect_holds_only_what_libmagic_reads_and_agrees_with_file(tmp_path: Path) -> None:
    harness = make_server(tmp_path, max_upload_bytes=64 * 1024 * 1024)
    detector = harness.app.state.server.detector
    seen: list[int] = []
    detect_file = detector.detect_file  # a prefix this large is spilled to tmp/ and detected from there
    detector.detect_file = lambda path, filename=None: (seen.append(os.stat(path).st_size),
                                                        detect_file(path, filename))[1]
    data = PNG_1x1 + os.urandom(detector.bytes_max + 3 * 1024 * 1024)  # larger than libmagic reads
    sample = tmp_path / "big.png"
    sample.write_bytes(data)
    expected = subprocess.run(["file", "--brief", "--mime-type", str(sample)], capture_output=True, text=True,
                              check=True).stdout.strip()
    with harness.client:
        answer = harness.client.post("/v1/detect", content=data).json()
    assert (answer["size"], answer["mime_type"]) == (len(data), expected)
    assert seen == [detector.bytes_max]  # the prefix `file` reads, not the whole body
    assert list((harness.storage / "tmp").iterdir()) == []


def test_detections_from_many_threads_share_a_bounded_pool_of_libmagic_cookies() -> None:
    detector = Detector()  # each cookie holds its own ~8 MB copy of the magic database
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: detector.detect_bytes(b"plain text %d\n" % i).mime_type, range(200)))
    assert answers == ["text/plain"] * 200
    assert 1 <= detector.cookies <= DETECTION_SLOTS < 16


def test_health_ready_and_metrics(server: Harness) -> None:
    assert server.client.get("/healthz").json() == {"status": "ok"}
    ready = server.client.get("/readyz")
    assert (ready.status_code, ready.json()["status"]) == (200, "ok")
    metrics = server.client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = [line for line in metrics.text.splitlines() if line and not line.startswith("#")]
    assert len(samples) > 50


def test_readyz_is_503_when_storage_directory_vanished(server: Harness) -> None:
    for leftover in (server.storage / "tmp").iterdir():
        leftover.unlink()
    (server.storage / "tmp").rmdir()
    response = server.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["value"] == str(server.storage)


# -- bad input --------------------------------------------------------------------------------


def test_empty_body_is_400(server: Harness) -> None:
    response = server.client.post("/v1/files", content=b"")
    assert response.status_code == 400
    assert response.json()["error"] == "empty_body"
    assert stored_names(server.storage) == []


def test_over_limit_with_content_length_is_413(server: Harness) -> None:
    response = server.client.post("/v1/files", content=b"x" * (64 * 1024 + 1))
    assert response.status_code == 413
    assert response.json() == {"error": "payload_too_large", "detail": "upload exceeds the limit of 65536 bytes",
                               "value": 65537}


def test_over_limit_is_refused_while_streaming_without_reading_the_rest(tmp_path: Path) -> None:
    harness = make_server(tmp_path, max_upload_bytes=64 * 1024)
    chunk = b"y" * 16384
    with ThreadedServer(harness.app) as live, socket.create_connection(("127.0.0.1", live.port)) as sock:
        sock.sendall(b"POST /v1/files HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        sock.settimeout(5)
        try:
            for _ in range(100):  # 1.6 MiB offered against a 64 KiB limit, no Content-Length to check
                sock.sendall(b"4000\r\n" + chunk + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413")
    line = harness.access_lines()[-1]
    assert line["http_status"] == 413
    # The app stops at the first receive() message that crosses the limit. uvicorn pauses reading once
    # 64 KiB are buffered, so a message holds at most that plus one socket read (uvloop: 256 KiB):
    # what was read stays far below the 1.6 MiB offered.
    assert line["bytes_in"] <= 64 * 1024 + 64 * 1024 + 256 * 1024, f"app read {line['bytes_in']} bytes"
    assert stored_names(harness.storage) == []
    assert list((harness.storage / "tmp").iterdir()) == []


def test_multipart_file_over_limit_is_413(server: Harness) -> None:
    response = server.client.post("/v1/files", files={"file": ("big.bin", b"z" * (64 * 1024 + 10))})
    assert response.status_code == 413


@pytest.mark.parametrize("body,content_type,detail", [
    (b"--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc", "multipart/form-data; boundary=b",
     "ends before its closing boundary"),
    (b"whatever", "multipart/form-data", "without a boundary"),
    (b"--b\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nabc\r\n--b--\r\n",
     "multipart/form-data; boundary=b", "no part named 'file'"),
    (b"--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc\r\n--b--\r\n",
     "multipart/form-data; boundary=xyz", "does not parse"),
])
def test_malformed_multipart_is_400(server: Harness, body: bytes, content_type: str, detail: str) -> None:
    response = server.client.post("/v1/files", content=body, headers={"content-type": content_type})
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_multipart"
    assert detail in response.json()["detail"]
    assert stored_names(server.storage) == []


# -- upload buffering: memory, spilling to tmp/, nothing left behind -----------------------------

SPILL_AT = 1024  # tests lower the store's spill threshold so that failures happen after a spill
MULTIPART = [("content-type", "multipart/form-data; boundary=b")]
PART = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.bin"\r\n\r\n'


def post_in_pieces(app: Starlette, pieces: list[bytes], headers: list[tuple[str, str]] | None = None,
                   disconnect_after: int | None = None) -> tuple[int, dict[str, Any]]:
    """POST /v1/files straight to the ASGI app, one http.request message per piece (TestClient would
    send one), optionally with the client disconnecting after ``disconnect_after`` pieces."""
    messages: list[Message] = [{"type": "http.request", "body": piece, "more_body": True} for piece in pieces]
    if disconnect_after is not None:
        messages[disconnect_after:] = [{"type": "http.disconnect"}]
    else:
        messages.append({"type": "http.request", "body": b"", "more_body": False})
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    async def request() -> None:
        await app(scope, receive, send)

    scope: Scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/files", "raw_path": b"/v1/files", "query_string": b"", "root_path": "",
             "headers": [(name.encode(), value.encode()) for name, value in headers or []],
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    anyio.run(request)
    status = next(message["status"] for message in sent if message["type"] == "http.response.start")
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    return status, json.loads(body)


def pieces_of(data: bytes, size: int = 4096) -> list[bytes]:
    return [data[start:start + size] for start in range(0, len(data), size)]


@pytest.fixture
def spills(server: Harness, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Lower the spill threshold; list the temp file's size after each spill made while streaming."""
    server.app.state.server.store.spill_threshold = SPILL_AT
    counted: list[int] = []
    real_spill = PendingUpload.spill

    def spill(self: PendingUpload) -> None:
        real_spill(self)
        assert self.path is not None
        counted.append(self.path.stat().st_size)

    monkeypatch.setattr(PendingUpload, "spill", spill)
    return counted


def test_upload_past_the_spill_threshold_round_trips(server: Harness, spills: list[int]) -> None:
    data = PNG_1x1 + bytes(range(256)) * 100
    status, body = post_in_pieces(server.app, pieces_of(data, 1000))
    assert status == 201
    assert (body["size"], body["mime_type"]) == (len(data), "image/png")
    assert len(spills) > 10 and spills == sorted(spills)  # the temp file grew while the body streamed in
    assert server.client.get(f"/v1/files/{body['id']}").content == data
    assert list((server.storage / "tmp").iterdir()) == []


def test_multipart_upload_past_the_spill_threshold_round_trips(server: Harness, spills: list[int]) -> None:
    data = bytes(range(256)) * 100
    status, body = post_in_pieces(server.app, pieces_of(PART + data + b"\r\n--b--\r\n", 3000), MULTIPART)
    assert (status, body["size"], body["filename"]) == (201, len(data), "x.bin")
    assert spills
    assert server.client.get(f"/v1/files/{body['id']}").content == data


def test_small_upload_is_kept_in_memory(server: Harness, spills: list[int]) -> None:
    status, _body = post_in_pieces(server.app, [b"small\n"] * 100)
    assert status == 201
    assert spills == []
    assert list((server.storage / "tmp").iterdir()) == []


@pytest.mark.parametrize("case", ["413 streamed", "413 multipart", "400 empty", "400 truncated multipart",
                                  "400 multipart without file", "499 client disconnected"])
def test_failed_upload_leaves_nothing_in_tmp(server: Harness, spills: list[int], case: str) -> None:
    headers, disconnect_after = None, None
    if case == "413 streamed":
        pieces = pieces_of(b"a" * (64 * 1024 + 1))
    elif case == "413 multipart":
        pieces, headers = pieces_of(PART + b"a" * (64 * 1024 + 1) + b"\r\n--b--\r\n"), MULTIPART
    elif case == "400 empty":
        pieces = []
    elif case == "400 truncated multipart":
        pieces, headers = pieces_of(PART + b"a" * 20_000), MULTIPART
    elif case == "400 multipart without file":
        pieces, headers = [b'--b\r\nContent-Disposition: form-data; name="other"\r\n\r\nabc\r\n--b--\r\n'], MULTIPART
    else:
        pieces, disconnect_after = pieces_of(b"c" * 20_000), 3
    status, body = post_in_pieces(server.app, pieces, headers, disconnect_after)
    assert status == int(case[:3]), body
    assert bool(spills) == (case not in ("400 empty", "400 multipart without file"))
    assert list((server.storage / "tmp").iterdir()) == []
    assert stored_names(server.storage) == []


def test_in_memory_upload_of_a_pie_executable_is_detected_like_file_does(server: Harness) -> None:
    data = Path("/usr/bin/file").read_bytes()  # libmagic's buffer answer is x-sharedlib: refined from the file
    response = server.client.post("/v1/files", content=data)
    assert (response.status_code, response.json()["mime_type"]) == (201, "application/x-pie-executable")
    assert server.client.get(f"/v1/files/{response.json()['id']}").content == data
    assert list((server.storage / "tmp").iterdir()) == []


def test_client_disconnect_mid_body_leaves_nothing_in_tmp(tmp_path: Path) -> None:
    harness = make_server(tmp_path, max_upload_bytes=64 * 1024)
    harness.app.state.server.store.spill_threshold = SPILL_AT
    tmp = harness.storage / "tmp"
    with ThreadedServer(harness.app) as live:
        with socket.create_connection(("127.0.0.1", live.port)) as sock:
            sock.sendall(b"POST /v1/files HTTP/1.1\r\nHost: t\r\nContent-Length: 60000\r\n\r\n" + b"d" * 20_000)
            assert eventually(lambda: list(tmp.iterdir())), "the body was never spilled to tmp/"
        # The connection is closed 40 000 bytes short: the server sees a disconnect.
        assert eventually(lambda: harness.access_lines()), "the aborted request was never logged"
        assert eventually(lambda: not list(tmp.iterdir())), f"left in tmp/: {list(tmp.iterdir())}"
    assert harness.access_lines()[-1]["http_status"] == 499  # client closed request: no answer could be sent
    assert harness.access_lines()[-1]["level"] == "warn"
    assert stored_names(harness.storage) == []


def test_upload_makes_no_file_system_call_on_the_event_loop(server: Harness, spills: list[int],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    store = server.app.state.server.store
    loop_threads: set[int] = set()
    calls: list[tuple[str, int]] = []
    real_begin = store.begin

    def begin() -> PendingUpload:
        loop_threads.add(threading.get_ident())  # begin() runs on the event loop
        return real_begin()

    def recorded(name: str, function: Callable[..., object]) -> Callable[..., object]:
        def call(*args: object, **kwargs: object) -> object:
            calls.append((name, threading.get_ident()))
            return function(*args, **kwargs)
        return call

    monkeypatch.setattr(store, "begin", begin)
    for module, names in ((os, ("open", "write", "fsync", "close", "replace", "unlink", "stat")),
                          (tempfile, ("mkstemp",))):
        for name in names:
            monkeypatch.setattr(module, name, recorded(name, getattr(module, name)))
    small, large = b"kept in memory\n" * 100, bytes(range(256)) * 40
    outcomes = [post_in_pieces(server.app, [small])[0],
                post_in_pieces(server.app, [small])[0],  # deduplicated
                post_in_pieces(server.app, pieces_of(large))[0],
                post_in_pieces(server.app, pieces_of(b"z" * (64 * 1024 + 1)))[0],
                post_in_pieces(server.app, pieces_of(b"y" * 9000), disconnect_after=2)[0]]
    monkeypatch.undo()
    assert outcomes == [201, 201, 201, 413, 499]
    assert loop_threads == {threading.get_ident()} and spills  # anyio.run runs the loop in this thread
    assert {name for name, _ in calls} >= {"open", "write", "fsync", "close", "replace", "unlink", "mkstemp"}
    on_loop = [name for name, thread in calls if thread in loop_threads]
    assert on_loop == [], f"blocking calls on the event loop: {on_loop}"
    assert list((server.storage / "tmp").iterdir()) == []


@pytest.mark.parametrize("bad_id", ["abc", "g" * 64, "0" * 63, "0" * 65, "0" * 64 + ".json", "%20" + "0" * 64])
def test_id_that_is_not_64_hex_is_400(server: Harness, bad_id: str) -> None:
    response = server.client.get(f"/v1/files/{bad_id}")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_id"


def test_unknown_id_is_404(server: Harness) -> None:
    response = server.client.get(f"/v1/files/{'ab' * 32}")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "no object with this id", "value": "ab" * 32}


@pytest.mark.parametrize("name", ["evil\nname.txt", "tab\there", "nul\x00.bin", "del\x7f"])
def test_filename_with_control_characters_is_refused(server: Harness, name: str) -> None:
    response = server.client.post("/v1/files", params={"filename": name}, content=b"data\n")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_filename"
    assert response.json()["value"] == name
    assert stored_names(server.storage) == []


def test_filename_path_components_are_stripped(server: Harness) -> None:
    response = server.client.post("/v1/files", params={"filename": "../../etc/passwd.txt"}, content=b"data\n")
    assert response.status_code == 201
    assert response.json()["filename"] == "passwd.txt"


def upload_failing_at_commit(server: Harness, monkeypatch: pytest.MonkeyPatch, error: OSError) -> Any:
    """POST an upload whose commit raises ``error``; the response."""
    def failing_commit(*args: object) -> None:
        raise error

    monkeypatch.setattr(server.app.state.server.store, "commit", failing_commit)
    return server.client.post("/v1/files", content=b"data\n")


def test_unhandled_exception_is_500_json_without_its_text_and_logged_as_error(
        server: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    response = upload_failing_at_commit(server, monkeypatch, OSError(5, "Input/output error at /srv/secret/path"))
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal_error" and "/srv/secret/path" not in response.text
    assert body["value"] == response.headers["x-request-id"]
    line = server.access_lines()[-1]
    assert (line["level"], line["status"], line["http_status"]) == ("error", "error", 500)
    assert "Input/output error at /srv/secret/path" in line["error"]  # the log keeps what happened
    assert list((server.storage / "tmp").iterdir()) == []


def test_full_disk_is_507_with_a_clear_message_and_nothing_left_in_tmp(
        server: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    response = upload_failing_at_commit(server, monkeypatch,
                                        OSError(28, "No space left on device: '/data/tmp/upload-x.part'"))
    assert response.status_code == 507
    assert response.json() == {"error": "insufficient_storage",
                               "detail": "the storage volume is full: nothing was stored; retry later"}
    assert "/data/tmp" not in response.text and response.headers["retry-after"] == "60"
    lines = server.log_lines()
    assert any(line["msg"] == "storage full: request refused" and line["errno"] == "ENOSPC" for line in lines)
    assert server.access_lines()[-1]["http_status"] == 507
    assert list((server.storage / "tmp").iterdir()) == []


def test_detect_body_spilling_to_a_full_disk_is_507(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    harness = make_server(tmp_path)
    harness.app.state.server.store.spill_threshold = SPILL_AT

    def full_spill(self: PendingUpload) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(PendingUpload, "spill", full_spill)
    with harness.client:
        response = harness.client.post("/v1/detect", content=b"x" * 10 * SPILL_AT)
    assert (response.status_code, response.json()["error"]) == (507, "insufficient_storage")
    assert harness.access_lines()[-1]["level"] == "error"  # the service's own condition: an operator acts


# -- fault injection --------------------------------------------------------------------------


def test_faults_are_404_without_admin_key(tmp_path: Path) -> None:
    harness = make_server(tmp_path)
    assert harness.client.get("/admin/faults").status_code == 404
    assert harness.client.post("/admin/faults", json={"error_rate": 1}).status_code == 404


def test_faults_wrong_key_is_401(server: Harness) -> None:
    response = server.client.post("/admin/faults", json={"error_rate": 1}, headers={"x-admin-key": "nope"})
    assert response.status_code == 401
    assert server.client.get("/admin/faults").status_code == 401


def test_injected_errors_hit_v1_only_are_5xx_in_metrics_and_logs_and_clear(server: Harness) -> None:
    admin = {"x-admin-key": ADMIN_KEY}
    set_response = server.client.post("/admin/faults", headers=admin,
                                      json={"error_rate": 1.0, "delay_rate": 0, "delay_ms": 0, "duration_s": 60})
    assert set_response.status_code == 200
    state = server.client.get("/admin/faults", headers=admin).json()
    assert state["active"] is True and state["error_rate"] == 1.0 and 0 < state["remaining_s"] <= 60
    for _ in range(3):
        failed = server.client.post("/v1/detect", content=b"abc")
        assert failed.status_code == 500
        assert failed.json()["error"] == "injected_fault"
    assert server.client.get("/healthz").status_code == 200
    assert server.client.get("/metrics").status_code == 200
    assert server.sample("http_requests_total", service="mime-server", method="POST", route="/v1/detect",
                         code="500") == 3
    assert server.sample("mime_faults_injected_total", service="mime-server") == 3
    errors = [line for line in server.access_lines() if line["http_status"] == 500]
    assert len(errors) == 3 and all(line["level"] == "error" and line["status"] == "error" for line in errors)
    assert server.client.delete("/admin/faults", headers=admin).json() == {"active": False}
    assert server.client.post("/v1/detect", content=b"abc").status_code == 200


@pytest.mark.parametrize("body,field", [
    ({"error_rate": 1.5}, "error_rate"), ({"delay_rate": -0.1}, "delay_rate"),
    ({"duration_s": 3601}, "duration_s"), ({"duration_s": 0}, "duration_s"), ({"delay_ms": "slow"}, "delay_ms"),
])
def test_fault_spec_out_of_bounds_is_400_naming_the_field(server: Harness, body: dict[str, object],
                                                          field: str) -> None:
    response = server.client.post("/admin/faults", json=body, headers={"x-admin-key": ADMIN_KEY})
    assert response.status_code == 400
    assert field in response.json()["detail"]
    assert response.json()["value"] == body[field]


def test_fault_expires_after_its_duration() -> None:
    now = [100.0]
    injector = FaultInjector(clock=lambda: now[0])
    injector.set(FaultSpec(error_rate=1.0, delay_rate=0.0, delay_ms=0, duration_s=5))
    assert injector.active() is not None
    now[0] = 104.9
    assert injector.state()["active"] is True
    now[0] = 105.0
    assert injector.active() is None and injector.state() == {"active": False}


def test_injected_delay_slows_v1_requests(server: Harness) -> None:
    server.client.post("/admin/faults", headers={"x-admin-key": ADMIN_KEY},
                       json={"error_rate": 0, "delay_rate": 1.0, "delay_ms": 300, "duration_s": 30})
    response = server.client.post("/v1/detect", content=b"abc")
    assert response.status_code == 200
    line = server.access_lines()[-1]
    assert line["route"] == "/v1/detect" and line["duration_ms"] >= 300


# -- metrics and logs -------------------------------------------------------------------------


def test_metrics_use_route_templates_and_service_label(server: Harness) -> None:
    object_id = server.client.post("/v1/files", content=b"one\n").json()["id"]
    server.client.get(f"/v1/files/{object_id}")
    server.client.get(f"/v1/files/{'0' * 64}")
    text = server.client.get("/metrics").text
    assert f"/v1/files/{object_id}" not in text
    assert server.sample("http_requests_total", service="mime-server", method="GET", route="/v1/files/{id}",
                         code="200") == 1
    assert server.sample("http_requests_total", service="mime-server", method="GET", route="/v1/files/{id}",
                         code="404") == 1
    for le in ("0.5", "1.0"):
        assert server.sample("http_request_duration_seconds_bucket", service="mime-server", method="POST",
                             route="/v1/files", le=le) == 1
    assert server.sample("mime_detections_total", service="mime-server", mime_type="text/plain") == 1
    assert server.sample("mime_upload_bytes_sum", service="mime-server", endpoint="upload") == 4
    assert server.sample("mime_stored_bytes", service="mime-server") == 4
    assert 'http_requests_in_flight{service="mime-server"}' in text
    assert "process_cpu_seconds_total" in text and "python_info" in text


def test_openmetrics_scrape_carries_trace_id_exemplars(server: Harness) -> None:
    server.client.post("/v1/detect", content=b"abc")
    trace_id = server.access_lines()[-1]["trace_id"]
    response = server.client.get("/metrics", headers={"accept": "application/openmetrics-text"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    exemplar_lines = [line for line in response.text.splitlines()
                      if line.startswith("http_request_duration_seconds_bucket") and "/v1/detect" in line
                      and "# {" in line]
    assert exemplar_lines and f'trace_id="{trace_id}"' in exemplar_lines[0]


def test_access_log_line_has_every_field(server: Harness) -> None:
    server.client.post("/v1/files?filename=a.txt", content=b"hello\n", headers={"x-request-id": "req-42"})
    line = server.access_lines()[-1]
    expected = {"ts", "level", "service", "msg", "method", "route", "path", "http_status", "status", "duration_ms",
                "trace_id", "span_id", "request_id", "bytes_in", "bytes_out"}
    assert expected <= set(line)
    assert (line["service"], line["method"], line["route"], line["path"]) == (
        "mime-server", "POST", "/v1/files", "/v1/files?filename=a.txt")
    assert (line["http_status"], line["status"], line["level"], line["request_id"]) == (201, "ok", "info", "req-42")
    assert line["bytes_in"] == 6 and line["bytes_out"] > 0
    assert len(line["trace_id"]) == 32 and len(line["span_id"]) == 16
    assert line["ts"].endswith("+00:00") and "T" in line["ts"]


def test_request_id_is_echoed_or_generated(server: Harness) -> None:
    assert server.client.get("/healthz", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"
    generated = server.client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32
    injected = server.client.get("/healthz", headers={"x-request-id": "bad id {with} spaces"})
    assert injected.headers["x-request-id"] not in ("", "bad id {with} spaces")


def test_4xx_logs_warn_and_every_5xx_logs_error(server: Harness) -> None:
    server.client.post("/v1/files", content=b"")
    server.client.get("/v1/files/xyz")
    server.client.get("/no/such/route")
    server.client.post("/admin/faults", headers={"x-admin-key": ADMIN_KEY}, json={"error_rate": 0.5,
                                                                                   "duration_s": 30})
    codes = [server.client.post("/v1/detect", content=b"abc").status_code for _ in range(40)]
    assert 500 in codes and 200 in codes
    lines = server.access_lines()
    assert [line["level"] for line in lines[:3]] == ["warn", "warn", "warn"]
    assert lines[2]["route"] == "unmatched"
    five_xx = [line for line in lines if line["http_status"] >= 500]
    assert len(five_xx) == codes.count(500)
    assert all(line["level"] == "error" and line["status"] == "error" for line in five_xx)
    assert all(line["level"] != "error" for line in lines if line["http_status"] < 500)


def test_server_spans_have_detection_and_storage_children(server: Harness) -> None:
    server.client.post("/v1/files", content=b"traced\n")
    spans = {span.name: span for span in server.spans.get_finished_spans()}
    root = spans["POST /v1/files"]
    assert spans["detect"].parent.span_id == root.context.span_id
    assert spans["storage.write"].parent.span_id == root.context.span_id
    assert root.attributes["http.response.status_code"] == 201
