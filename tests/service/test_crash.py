"""Crash consistency: kill -9 mime-server during concurrent uploads; every acknowledged upload survives intact.

The same test runs on both storage backends: a directory, and an S3 bucket (moto's server on
127.0.0.1, which outlives every kill of mime-server, as a real object store would).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from mime_server.storage import OBJECT_ID, valid_metadata
from tests.service.conftest import MotoS3, free_port

ROUNDS = 12
WRITERS = 6
REPO = Path(__file__).resolve().parents[2]
# Bodies up to 1 MiB are committed from memory; larger ones are spilled to disk while streaming.
SIZES = (1, 700, 4096, 65536, 262_144, 1_500_000)
S3_PREFIX = "mime-storage/"


class Store(Protocol):
    """A backend as the crash test sees it from outside mime-server."""

    name: str
    options: list[str]
    env: dict[str, str]
    sizes: tuple[int, ...]

    def interrupted(self) -> int:
        """What the last kill left of unacknowledged uploads (temp files, new incomplete multipart uploads)."""
        ...

    def assert_restart_cleaned(self) -> None:
        """A restart removed what the previous process left of unacknowledged uploads."""
        ...

    def assert_consistent(self) -> None:
        """Every visible object is whole (its bytes hash to its name) and has its metadata."""
        ...


class FilesystemStore:
    name = "filesystem"
    sizes = SIZES

    def __init__(self, tmp_path: Path) -> None:
        self.storage = tmp_path / "storage"
        self.options = ["--storage", str(self.storage)]
        self.env: dict[str, str] = {}

    def interrupted(self) -> int:
        return len(list((self.storage / "tmp").iterdir()))

    def assert_restart_cleaned(self) -> None:
        assert list((self.storage / "tmp").iterdir()) == []

    def assert_consistent(self) -> None:
        assert_store_consistent(self.storage)


class S3Store:
    """A bucket on moto's server; spilled uploads go under ``tmp`` (the server's TMPDIR)."""

    name = "s3"
    sizes = (*SIZES, 9_000_000)  # past 8 MiB: a multipart upload, two parts

    def __init__(self, tmp_path: Path, moto: MotoS3) -> None:
        self.client = moto.client()
        self.bucket = moto.new_bucket()
        self.tmp = tmp_path / "tmp"
        self.tmp.mkdir()
        self.options = ["--storage-backend", "s3", "--s3-bucket", self.bucket, "--s3-prefix", S3_PREFIX,
                        "--s3-endpoint", moto.endpoint]
        self.env = {**moto.env(), "TMPDIR": str(self.tmp)}
        self.checked: set[str] = set()
        self.abandoned = 0  # incomplete multipart uploads left by kills so far

    def spilled(self) -> list[Path]:
        return [file for directory in self.tmp.glob("mime-server-uploads-*") for file in directory.iterdir()
                if file.name != ".lock"]

    def incomplete_multipart_uploads(self) -> int:
        return len(self.client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", []))

    def interrupted(self) -> int:
        before, self.abandoned = self.abandoned, self.incomplete_multipart_uploads()
        return len(self.spilled()) + self.abandoned - before

    def assert_restart_cleaned(self) -> None:
        # Incomplete multipart uploads stay: invisible, for the bucket's lifecycle rule (another
        # replica's may be in progress, so no process aborts uploads it did not start).
        assert [p.name for p in self.tmp.iterdir() if not p.name.startswith("mime-server-uploads-")] == []
        assert len(list(self.tmp.glob("mime-server-uploads-*"))) == 1 and self.spilled() == []

    def assert_consistent(self) -> None:
        keys = [entry["Key"] for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
                for entry in page.get("Contents", [])]
        assert all(key.startswith(f"{S3_PREFIX}objects/") for key in keys), f"foreign keys visible: {keys}"
        for key in set(keys) - self.checked:  # objects are immutable: each is checked once
            name = key.removeprefix(f"{S3_PREFIX}objects/")
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
            content = answer["Body"].read()
            assert OBJECT_ID.fullmatch(name) and hashlib.sha256(content).hexdigest() == name, f"partial: {key}"
            metadata = valid_metadata(answer["Metadata"].get("mime-metadata", "").encode(), len(content))
            assert metadata is not None, f"object without metadata: {key}"
            self.checked.add(key)


@pytest.fixture(params=["filesystem", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "s3":
        yield S3Store(tmp_path, request.getfixturevalue("moto_s3"))
    else:
        yield FilesystemStore(tmp_path)


def start_server(store: Store, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none", "PYTHONPATH": str(REPO), **store.env}
    process = subprocess.Popen([sys.executable, "-m", "mime_server", "--host", "127.0.0.1", "--port", str(port),
                                *store.options], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mime-server exited with {process.returncode}: {process.stderr.read()!r}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"mime-server did not become healthy on port {port}")


def upload_until_killed(url: str, sizes: tuple[int, ...], rng: random.Random, acked: dict[str, bytes],
                        lock: threading.Lock, stop: threading.Event) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            data = rng.randbytes(rng.choice(sizes))
            try:
                response = client.post(f"{url}/v1/files", content=data)
            except httpx.HTTPError:
                return  # the server died under us: this upload was never acknowledged
            if response.status_code == 201:
                with lock:
                    acked[response.json()["id"]] = data


def assert_store_consistent(storage: Path) -> None:
    for obj in (storage / "objects").iterdir():
        content = obj.read_bytes()
        assert hashlib.sha256(content).hexdigest() == obj.name, f"partial or corrupt object visible: {obj.name}"
        sidecar = storage / "meta" / f"{obj.name}.json"
        assert sidecar.exists(), f"object without metadata: {obj.name}"
        # kill -9 keeps the page cache: the sidecar, complete before the rename, must be whole.
        metadata = json.loads(sidecar.read_bytes())
        assert (metadata["size"], type(metadata["mime_type"])) == (len(content), str), f"bad sidecar: {obj.name}"


def test_acknowledged_uploads_survive_kill_9(store: Store, record_property: Any) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    rng = random.Random(20261127)
    acked: dict[str, bytes] = {}
    lock = threading.Lock()
    leftovers_seen = 0
    verified: set[str] = set()
    for round_number in range(ROUNDS):
        process = start_server(store, port)
        # A restart must have removed the previous round's temp files and kept every acknowledged object.
        store.assert_restart_cleaned()
        store.assert_consistent()
        with httpx.Client(timeout=5) as client:
            # Objects acknowledged since the last restart; the final restart checks every one of them.
            for object_id in set(acked) - verified:
                data = acked[object_id]
                response = client.get(f"{url}/v1/files/{object_id}")
                assert response.status_code == 200, f"round {round_number}: acknowledged {object_id} lost"
                assert response.content == data, f"round {round_number}: {object_id} differs after kill -9"
                verified.add(object_id)
        stop = threading.Event()
        writers = [threading.Thread(target=upload_until_killed,
                                    args=(url, store.sizes, random.Random(rng.random()), acked, lock, stop))
                   for _ in range(WRITERS)]
        for writer in writers:
            writer.start()
        time.sleep(rng.uniform(0.3, 0.8))
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        leftovers_seen += store.interrupted()
        stop.set()
        for writer in writers:
            writer.join(timeout=15)
        store.assert_consistent()
    final = start_server(store, port)
    readable = 0
    try:
        with httpx.Client(timeout=10) as client:
            for object_id, data in acked.items():
                assert client.get(f"{url}/v1/files/{object_id}").content == data
                readable += 1
    finally:
        final.kill()
        final.wait()
    figures = {"backend": store.name, "kills": ROUNDS, "acknowledged": len(acked), "readable_after_kills": readable,
               "interrupted_uploads_left": leftovers_seen}
    if isinstance(store, S3Store):  # invisible; the bucket's lifecycle rule removes them
        figures["incomplete_multipart_uploads"] = store.abandoned
    record_property("crash_figures", figures)
    print(f"\ncrash figures: {json.dumps(figures)}")
    assert len(acked) > ROUNDS * 5, f"too few acknowledged uploads ({len(acked)}) to prove anything"
    assert leftovers_seen > 0, "no kill ever landed during an upload: the test did not exercise a crash"
