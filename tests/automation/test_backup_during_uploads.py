"""A backup taken while mime-server is receiving uploads restores to complete objects matching their hashes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.automation.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def _start_mime_server(storage: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mime_server", "--host", "127.0.0.1", "--port", str(port), "--storage", str(storage)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1, trust_env=False).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("mime-server did not become healthy within 30 s")


def test_backup_during_uploads_restores_only_complete_objects(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    storage = tmp_path / "storage"
    process, base = _start_mime_server(storage)
    stop = threading.Event()
    acknowledged: list[str] = []
    errors: list[str] = []

    def upload_loop(seed: int) -> None:
        with httpx.Client(base_url=base, timeout=10, trust_env=False) as client:
            n = 0
            while not stop.is_set():
                n += 1
                body = os.urandom(4096 * (1 + (n * 7 + seed) % 64))  # 4 KiB .. 256 KiB
                response = client.post("/v1/files", content=body)
                if response.status_code == 201:
                    acknowledged.append(response.json()["sha256"])
                else:
                    errors.append(f"{response.status_code}: {response.text[:100]}")

    workers = [threading.Thread(target=upload_loop, args=(i,)) for i in range(4)]
    try:
        for worker in workers:
            worker.start()
        while len(acknowledged) < 30:
            time.sleep(0.05)
        # objects/ first: a visible object's sidecar already exists, so meta/, read later, holds it.
        result = cli("backup", "--source", str(storage), "--dest", str(tmp_path / "backups"), "--no-progress",
                     "--compression", "zst", "--first", "objects", "--exclude", "tmp/*")
        time.sleep(0.2)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
        process.terminate()
        process.wait(10)
    assert result.exit_code == 0, result.stderr
    assert not errors
    archive = json.loads(result.stdout)["archive"]

    target = tmp_path / "restored"
    restored = cli("restore", "--archive", archive, "--target", str(target), "--no-progress")
    assert restored.exit_code == 0, restored.stderr
    objects = list((target / "objects").iterdir())
    assert len(objects) >= 30
    for path in objects:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, f"object {path.name} is incomplete"
        metadata = target / "meta" / f"{path.name}.json"
        assert json.loads(metadata.read_text())  # the sidecar is written before its object becomes visible
    assert set(p.name for p in objects) <= set(acknowledged) | set(p.name for p in (storage / "objects").iterdir())
