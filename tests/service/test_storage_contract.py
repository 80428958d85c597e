"""The storage contract, proved on both backends: the filesystem directory and S3 (moto's server on 127.0.0.1).

Stored under the sha256 of the bytes with the detected metadata; the same content stored once,
also when uploaded concurrently; a failed commit leaves nothing visible and no temp file; spilled
uploads stay within the memory budget; and, through the HTTP app, whole and ranged reads.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mime_server import storage
from mime_server.storage import (
    ContentStore, InvalidObjectId, ObjectNotFound, ObjectStore, S3Location, StorageUnavailable,
)
from tests.service.conftest import Harness, MotoS3, make_server
from tests.service.test_storage import METADATA, commit, upload

PREFIX = "mime-storage/"


@dataclass
class Backend:
    """One storage backend under test: how to open a store, and how to see what it holds."""

    name: str
    open: Callable[..., ObjectStore]              # keyword arguments: spill_threshold, memory_budget
    stored_bytes: Callable[[str], bytes]          # the bytes the backend holds for an id, read around the store
    temp_files: Callable[[ObjectStore], list[Path]]  # uploads in progress on local disk
    fail_writes: Callable[[ObjectStore, pytest.MonkeyPatch], None]  # make the next object write fail


def filesystem_backend(tmp_path: Path) -> Backend:
    root = tmp_path / "storage"

    def fail_writes(store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
        def replace(src: str | Path, dst: str | Path) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(storage.os, "replace", replace)

    return Backend("filesystem", lambda **kw: ContentStore(root, **kw),
                   lambda object_id: (root / "objects" / object_id).read_bytes(),
                   lambda store: list(store.tmp.iterdir()),  # type: ignore[attr-defined]
                   fail_writes)


def s3_backend(tmp_path: Path, moto: MotoS3, opened: list[Any]) -> Backend:
    from mime_server.s3storage import S3ContentStore

    bucket = moto.new_bucket()
    client = moto.client()

    def open_store(**kwargs: Any) -> ObjectStore:
        store = S3ContentStore(S3Location(bucket, PREFIX, moto.endpoint, "us-east-1"),
                               spill_root=tmp_path / "spill", **kwargs)
        opened.append(store)
        return store

    def stored_bytes(object_id: str) -> bytes:
        return bytes(client.get_object(Bucket=bucket, Key=f"{PREFIX}objects/{object_id}")["Body"].read())

    def fail_writes(store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
        from botocore.exceptions import EndpointConnectionError

        def unreachable(**kwargs: Any) -> None:
            raise EndpointConnectionError(endpoint_url=moto.endpoint)

        monkeypatch.setattr(store.client, "put_object", unreachable)  # type: ignore[attr-defined]

    return Backend("s3", open_store, stored_bytes,
                   lambda store: store.spill.leftovers(),  # type: ignore[attr-defined]
                   fail_writes)


@pytest.fixture(params=["filesystem", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "filesystem":
        yield filesystem_backend(tmp_path)
        return
    request.getfixturevalue("s3_env")
    opened: list[Any] = []
    yield s3_backend(tmp_path, request.getfixturevalue("moto_s3"), opened)
    for store in opened:
        store.close()


# -- the store ------------------------------------------------------------------------------------


def test_an_upload_is_stored_under_its_sha256_with_its_metadata(backend: Backend) -> None:
    store = backend.open()
    data = b"stored under its digest\n" * 100
    object_id, created = commit(store, data)
    assert (object_id, created) == (hashlib.sha256(data).hexdigest(), True)
    assert backend.stored_bytes(object_id) == data
    stored = store.get(object_id)
    assert (stored.id, stored.stat.st_size, stored.metadata) == (object_id, len(data), {**METADATA, "size": len(data)})
    assert store.object_ids() == [object_id]
    assert backend.temp_files(store) == []


def test_a_spilled_upload_is_stored_whole_and_leaves_no_temp_file(backend: Backend) -> None:
    store = backend.open(spill_threshold=10_000)
    data = os.urandom(35_000)
    pending = upload(store, data, piece=3000)
    assert pending.on_disk and backend.temp_files(store) == [pending.path]
    object_id, created = store.commit(pending, {**METADATA, "size": len(data)})
    assert created and backend.stored_bytes(object_id) == data
    assert backend.temp_files(store) == []


def test_uploads_together_stay_within_the_memory_budget(backend: Backend) -> None:
    store = backend.open(spill_threshold=1_000_000, memory_budget=100_000)
    first, second = store.begin(), store.begin()
    first.write(b"a" * 60_000)
    second.write(b"b" * 60_000)
    assert first.needs_spill and second.needs_spill  # together past the budget, each under the threshold
    first.spill()
    assert store.memory.used == 60_000 and first.on_disk
    for pending, byte in ((first, b"a"), (second, b"b")):
        object_id, created = store.commit(pending, {**METADATA, "size": 60_000})
        assert created and backend.stored_bytes(object_id) == byte * 60_000
    assert store.memory.used == 0 and backend.temp_files(store) == []


def test_the_same_content_is_stored_once(backend: Backend) -> None:
    store = backend.open()
    first = commit(store, b"twice\n")
    assert commit(store, b"twice\n") == (first[0], False)
    assert store.object_ids() == [first[0]]
    assert backend.temp_files(store) == []


def test_concurrent_identical_uploads_are_stored_once(backend: Backend) -> None:
    store = backend.open(spill_threshold=2_000)  # bodies spilled: a twin's temp file must go too
    data = os.urandom(50_000)
    writers = 8
    barrier = threading.Barrier(writers)

    def writer(_: int) -> tuple[str, bool]:
        pending = upload(store, data)
        barrier.wait()
        return store.commit(pending, {**METADATA, "size": len(data)})

    with ThreadPoolExecutor(writers) as pool:
        results = list(pool.map(writer, range(writers)))
    digest = hashlib.sha256(data).hexdigest()
    assert sorted(results) == [(digest, False)] * (writers - 1) + [(digest, True)]
    assert store.object_ids() == [digest] and backend.stored_bytes(digest) == data
    assert backend.temp_files(store) == []


def test_unknown_and_malformed_ids_are_refused(backend: Backend) -> None:
    store = backend.open()
    with pytest.raises(ObjectNotFound):
        store.get("0" * 64)
    with pytest.raises(InvalidObjectId):
        store.get("../../etc/passwd")


def test_a_failed_write_leaves_nothing_visible_and_no_temp_file(backend: Backend,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    store = backend.open(spill_threshold=1_000)
    backend.fail_writes(store, monkeypatch)
    pending = upload(store, os.urandom(5_000))
    with pytest.raises(OSError) as failure:
        store.commit(pending, {**METADATA, "size": 5_000})
    if backend.name == "s3":  # an unreachable store is told apart from a broken disk: a retry is safe
        assert isinstance(failure.value, StorageUnavailable)
    monkeypatch.undo()
    assert store.object_ids() == [] and backend.temp_files(store) == []
    with pytest.raises(ObjectNotFound):
        store.get(pending.sha256)


def test_a_working_store_is_ready(backend: Backend) -> None:
    backend.open().check_ready()


# -- through the HTTP app -------------------------------------------------------------------------


@pytest.fixture
def served(backend: Backend, tmp_path: Path, request: pytest.FixtureRequest,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    if backend.name == "filesystem":
        harness = make_server(tmp_path)
    else:
        moto: MotoS3 = request.getfixturevalue("moto_s3")
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "spill"))
        harness = make_server(tmp_path, s3=S3Location(moto.new_bucket(), PREFIX, moto.endpoint, "us-east-1"))
    with harness.client:
        yield harness
    close = getattr(harness.app.state.server.store, "close", None)
    if close is not None:
        close()


BODY = bytes(range(256)) * 40  # 10 240 bytes, every offset's value known


def test_an_upload_reads_back_whole_with_its_type(served: Harness) -> None:
    created = served.client.post("/v1/files?filename=notes.txt", content=b"plain words\n" * 50)
    assert created.status_code == 201
    got = served.client.get(created.headers["location"])
    assert (got.status_code, got.content) == (200, b"plain words\n" * 50)
    assert got.headers["content-type"] == "text/plain; charset=us-ascii"
    assert got.headers["etag"] == f'"{created.json()["id"]}"' and got.headers["content-length"] == "600"
    head = served.client.head(created.headers["location"])
    assert (head.status_code, head.headers["content-length"], head.content) == (200, "600", b"")
    assert served.client.get(created.headers["location"],
                             headers={"if-none-match": got.headers["etag"]}).status_code == 304
    assert served.client.get("/v1/files/" + "0" * 64).status_code == 404


@pytest.mark.parametrize(("header", "expected"), [
    ("bytes=100-199", (100, 200)),
    ("bytes=10000-", (10000, 10240)),
    ("bytes=-40", (10200, 10240)),
    ("bytes=10200-99999", (10200, 10240)),
])
def test_a_single_range_is_served_from_the_store(served: Harness, header: str, expected: tuple[int, int]) -> None:
    location = served.client.post("/v1/files", content=BODY).headers["location"]
    got = served.client.get(location, headers={"range": header})
    start, end = expected
    assert got.status_code == 206
    assert got.headers["content-range"] == f"bytes {start}-{end - 1}/{len(BODY)}"
    assert got.content == BODY[start:end]


def test_several_ranges_are_served_as_multipart_byteranges(served: Harness) -> None:
    location = served.client.post("/v1/files", content=BODY).headers["location"]
    got = served.client.get(location, headers={"range": "bytes=0-9, 5000-5009, -5"})
    assert got.status_code == 206
    assert got.headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert int(got.headers["content-length"]) == len(got.content)
    for start, end in ((0, 10), (5000, 5010), (10235, 10240)):
        part = f"Content-Range: bytes {start}-{end - 1}/{len(BODY)}\r\n\r\n".encode() + BODY[start:end] + b"\r\n"
        assert part in got.content


def test_an_unsatisfiable_range_is_416_and_an_invalid_one_is_ignored(served: Harness) -> None:
    location = served.client.post("/v1/files", content=BODY).headers["location"]
    refused = served.client.get(location, headers={"range": "bytes=20000-"})
    assert (refused.status_code, refused.headers["content-range"]) == (416, f"bytes */{len(BODY)}")
    ignored = served.client.get(location, headers={"range": "bytes=9-2"})
    assert (ignored.status_code, ignored.content) == (200, BODY)


def test_concurrent_identical_uploads_over_http_store_one_object(served: Harness) -> None:
    data = os.urandom(3_000_000)  # past the spill threshold: each twin spills to its own temp file
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: served.client.post("/v1/files", content=data), range(6)))
    assert {(a.status_code, a.json()["id"]) for a in answers} == {(201, hashlib.sha256(data).hexdigest())}
    assert served.sample("mime_uploads_total", service="mime-server", outcome="created") == 1
    assert served.sample("mime_uploads_total", service="mime-server", outcome="deduplicated") == 5
    assert served.app.state.server.store.object_ids() == [hashlib.sha256(data).hexdigest()]
    assert served.client.get(answers[0].headers["location"]).content == data


def test_readyz_is_ok_on_a_working_store(served: Harness) -> None:
    assert served.client.get("/readyz").json() == {"status": "ok"}


def test_a_range_over_many_chunks_streams_whole(served: Harness) -> None:
    data = os.urandom(2_500_000)
    location = served.client.post("/v1/files", content=data).headers["location"]
    got = served.client.get(location, headers={"range": "bytes=65530-2400000"})
    assert got.status_code == 206 and got.content == data[65530:2400001]
    assert served.client.get(location).content == data
