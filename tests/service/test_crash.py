"""Crash consistency: kill -9 mime-server during concurrent uploads; every acknowledged upload survives intact."""

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
from pathlib import Path

import httpx

from tests.service.conftest import free_port

ROUNDS = 12
WRITERS = 6
REPO = Path(__file__).resolve().parents[2]


def start_server(storage: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none", "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "mime_server", "--host", "127.0.0.1", "--port", str(port),
                                "--storage", str(storage)], cwd=REPO, env=env,
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


def upload_until_killed(url: str, rng: random.Random, acked: dict[str, bytes], lock: threading.Lock,
                        stop: threading.Event) -> None:
    with httpx.Client(timeout=5) as client:
        while not stop.is_set():
            # Bodies up to 1 MiB are committed from memory; the largest is spilled to tmp/ while streaming.
            data = rng.randbytes(rng.choice((1, 700, 4096, 65536, 262_144, 1_500_000)))
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


def test_acknowledged_uploads_survive_kill_9(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    rng = random.Random(20261127)
    acked: dict[str, bytes] = {}
    lock = threading.Lock()
    leftovers_seen = 0
    verified: set[str] = set()
    for round_number in range(ROUNDS):
        process = start_server(storage, port)
        # A restart must have removed the previous round's temp files and kept every acknowledged object.
        assert list((storage / "tmp").iterdir()) == []
        assert_store_consistent(storage)
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
                                    args=(url, random.Random(rng.random()), acked, lock, stop))
                   for _ in range(WRITERS)]
        for writer in writers:
            writer.start()
        time.sleep(rng.uniform(0.3, 0.8))
        leftovers_seen += len(list((storage / "tmp").iterdir()))
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        stop.set()
        for writer in writers:
            writer.join(timeout=10)
        assert_store_consistent(storage)
    final = start_server(storage, port)
    try:
        with httpx.Client(timeout=5) as client:
            for object_id, data in acked.items():
                assert client.get(f"{url}/v1/files/{object_id}").content == data
    finally:
        final.kill()
        final.wait()
    assert len(acked) > ROUNDS * 5, f"too few acknowledged uploads ({len(acked)}) to prove anything"
    assert leftovers_seen > 0, "no kill ever landed during an upload: the test did not exercise a crash"
