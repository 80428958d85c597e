"""The S3 backend's own behaviour against moto's server on 127.0.0.1: metadata on the object, keys under
the prefix, multipart uploads completed or aborted, conditional writes, reads by range, the spill
directory, a missing bucket or store, the region, and no boto3 in a filesystem server."""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mime_server.app import ServerSettings, create_app
from mime_server.s3storage import METADATA_KEY, S3ContentStore, SpillDirectory
from mime_server.storage import S3Location, StorageConfigError, StorageUnavailable
from tests.service.conftest import MotoS3, free_port, make_server, wait_until_listening
from tests.service.test_server import PNG_1x1
from tests.service.test_storage import METADATA, commit

REPO = Path(__file__).resolve().parents[2]
PREFIX = "mime-storage/"
MiB = 1024 * 1024


class Calls:
    """Wraps one method of a boto3 client: records the keyword arguments of each call; ``fail(n, kwargs)``
    may return an exception to raise instead of call n, ``after(n)`` runs once call n has returned."""

    def __init__(self, client: Any, name: str, fail: Any = None, after: Any = None) -> None:
        self.real = getattr(client, name)
        self.calls: list[dict[str, Any]] = []
        self.fail = fail
        self.after = after
        setattr(client, name, self)

    def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        if self.fail is not None:
            error = self.fail(len(self.calls), kwargs)
            if error is not None:
                raise error
        try:
            return self.real(**kwargs)
        finally:
            if self.after is not None:
                self.after(len(self.calls))


def client_error(status: int, code: str, operation: str) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": code},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


@pytest.fixture
def bucket(s3_env: MotoS3) -> str:
    return s3_env.new_bucket()


@pytest.fixture
def open_store(s3_env: MotoS3, bucket: str, tmp_path: Path) -> Iterator[Any]:
    opened: list[S3ContentStore] = []

    def open_(prefix: str = PREFIX, **kwargs: Any) -> S3ContentStore:
        store = S3ContentStore(S3Location(bucket, prefix, s3_env.endpoint, "us-east-1"),
                               spill_root=tmp_path / "spill", **kwargs)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


def keys(moto: MotoS3, bucket: str) -> list[str]:
    return sorted(entry["Key"] for entry in moto.client().list_objects_v2(Bucket=bucket).get("Contents", []))


# -- layout and metadata --------------------------------------------------------------------------


def test_the_object_carries_its_metadata_and_is_the_only_key(open_store: Any, s3_env: MotoS3, bucket: str) -> None:
    data = b"metadata rides on the object\n"
    object_id, _ = commit(open_store(), data)
    assert keys(s3_env, bucket) == [f"{PREFIX}objects/{object_id}"]  # no sidecar, no temp key
    head = s3_env.client().head_object(Bucket=bucket, Key=f"{PREFIX}objects/{object_id}")
    assert json.loads(head["Metadata"][METADATA_KEY]) == {**METADATA, "size": len(data)}
    assert (head["ContentType"], head["ContentLength"]) == ("text/plain", len(data))


def test_an_empty_prefix_keeps_objects_at_the_bucket_root(open_store: Any, s3_env: MotoS3, bucket: str) -> None:
    object_id, _ = commit(open_store(prefix=""), b"no prefix\n")
    assert keys(s3_env, bucket) == [f"objects/{object_id}"]


def test_the_put_is_conditional_and_carries_the_sha256_of_the_content(open_store: Any) -> None:
    store = open_store()
    puts = Calls(store.client, "put_object")
    data = b"checked by the store\n"
    commit(store, data)
    [put] = puts.calls
    assert put["IfNoneMatch"] == "*"
    assert put["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_an_object_with_invalid_metadata_is_served_after_detecting_again(s3_env: MotoS3, bucket: str,
                                                                         tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    object_id = hashlib.sha256(PNG_1x1).hexdigest()
    s3_env.client().put_object(Bucket=bucket, Key=f"{PREFIX}objects/{object_id}", Body=PNG_1x1,
                               Metadata={METADATA_KEY: '{"mime_type": "text/plain", "size": 3}'})  # wrong size
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "spill"))
    harness = make_server(tmp_path, s3=S3Location(bucket, PREFIX, s3_env.endpoint, "us-east-1"))
    with harness.client:
        got = harness.client.get(f"/v1/files/{object_id}")
    assert (got.status_code, got.headers["content-type"], got.content) == (200, "image/png", PNG_1x1)


# -- multipart ------------------------------------------------------------------------------------


def test_a_body_over_the_threshold_goes_as_a_multipart_upload_of_streamed_parts(
        open_store: Any, s3_env: MotoS3, bucket: str) -> None:
    store = open_store(multipart_threshold=5 * MiB, part_size=5 * MiB)  # S3's smallest part
    parts = Calls(store.client, "upload_part")
    data = os.urandom(11 * MiB)
    object_id, created = commit(store, data)
    assert created and object_id == hashlib.sha256(data).hexdigest()
    assert [(call["PartNumber"], call["ContentLength"]) for call in parts.calls] == [
        (1, 5 * MiB), (2, 5 * MiB), (3, 1 * MiB)]
    assert all(not isinstance(call["Body"], bytes) for call in parts.calls), "a part was read into memory"
    client = s3_env.client()
    got = client.get_object(Bucket=bucket, Key=store.key(object_id))
    assert got["ETag"].endswith('-3"') and got["Body"].read() == data
    assert store.get(object_id).metadata == {**METADATA, "size": len(data)}
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert store.spill.leftovers() == []


def test_a_failed_multipart_upload_is_aborted_and_nothing_is_visible(open_store: Any, s3_env: MotoS3,
                                                                     bucket: str) -> None:
    from botocore.exceptions import ConnectionClosedError

    store = open_store(multipart_threshold=5 * MiB, part_size=5 * MiB)
    Calls(store.client, "upload_part",
          fail=lambda n, kw: ConnectionClosedError(endpoint_url=s3_env.endpoint) if n == 2 else None)
    aborts = Calls(store.client, "abort_multipart_upload")
    data = os.urandom(11 * MiB)
    with pytest.raises(StorageUnavailable, match="storing mime-storage/objects/"):
        commit(store, data)
    assert len(aborts.calls) == 1
    assert keys(s3_env, bucket) == []
    assert s3_env.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert store.spill.leftovers() == []


# -- conditional writes ---------------------------------------------------------------------------


def test_a_twin_stored_by_another_replica_between_head_and_put_is_not_created_twice(
        open_store: Any, s3_env: MotoS3, bucket: str) -> None:
    first, second = open_store(), open_store()
    data = b"raced by another replica\n"
    # The other replica stores it right after this one's HeadObject found nothing.
    heads = Calls(second.client, "head_object", after=lambda n: commit(first, data))
    puts = Calls(second.client, "put_object")
    object_id, created = commit(second, data)
    assert (object_id, created) == (hashlib.sha256(data).hexdigest(), False)
    assert (len(heads.calls), len(puts.calls)) == (1, 1)  # the PUT was sent and refused: 412
    assert keys(s3_env, bucket) == [first.key(object_id)]


def test_a_twin_completing_a_multipart_upload_first_gets_412_and_the_parts_are_aborted(
        open_store: Any, s3_env: MotoS3, bucket: str) -> None:
    first = open_store()
    second = open_store(multipart_threshold=5 * MiB, part_size=5 * MiB)
    data = os.urandom(6 * MiB)
    Calls(second.client, "head_object", after=lambda n: commit(first, data))
    completes = Calls(second.client, "complete_multipart_upload")
    aborts = Calls(second.client, "abort_multipart_upload")
    assert commit(second, data)[1] is False
    assert (len(completes.calls), len(aborts.calls)) == (1, 1)
    assert s3_env.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_conflicting_conditional_write_in_flight_is_retried(open_store: Any) -> None:
    store = open_store()
    puts = Calls(store.client, "put_object",
                 fail=lambda n, kw: client_error(409, "ConditionalRequestConflict", "PutObject") if n == 1 else None)
    assert commit(store, b"conflict then success\n")[1] is True
    assert len(puts.calls) == 2


# -- reads ----------------------------------------------------------------------------------------


def test_a_range_request_reads_only_that_range_from_the_store(s3_env: MotoS3, bucket: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "spill"))
    harness = make_server(tmp_path, s3=S3Location(bucket, PREFIX, s3_env.endpoint, "us-east-1"))
    data = os.urandom(300_000)
    with harness.client:
        location = harness.client.post("/v1/files", content=data).headers["location"]
        gets = Calls(harness.app.state.server.store.client, "get_object")
        assert harness.client.get(location, headers={"range": "bytes=1000-1999"}).content == data[1000:2000]
        assert harness.client.get(location, headers={"range": "bytes=0-1,-2"}).status_code == 206
        assert harness.client.get(location).content == data
    assert [call["Range"] for call in gets.calls] == [
        "bytes=1000-1999", "bytes=0-1", "bytes=299998-299999", "bytes=0-299999"]
    harness.app.state.server.store.close()


# -- the spill directory --------------------------------------------------------------------------


def test_spilled_files_of_a_dead_process_are_removed_and_a_live_ones_kept(tmp_path: Path) -> None:
    root = tmp_path / "tmp"
    live = SpillDirectory(root)
    (live.path / "upload-live.part").write_bytes(b"in progress")
    dead = root / "mime-server-uploads-dead"  # as a process killed with kill -9 leaves it: unlocked
    dead.mkdir()
    (dead / ".lock").touch()
    (dead / "upload-1.part").write_bytes(b"never acknowledged")
    starting = SpillDirectory(root)
    assert not dead.exists()
    assert [p.name for p in live.leftovers()] == ["upload-live.part"]
    assert starting.leftovers() == []
    with open(live.path / ".lock") as lock, pytest.raises(BlockingIOError):
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    live.close()
    starting.close()
    assert list(root.iterdir()) == []


# -- a store that is missing, unreachable or refuses us ------------------------------------------


def test_a_missing_bucket_is_refused_at_start_naming_the_option(s3_env: MotoS3, tmp_path: Path) -> None:
    with pytest.raises(StorageConfigError, match="--s3-bucket 'no-such-bucket': no such bucket at http://127"):
        S3ContentStore(S3Location("no-such-bucket", PREFIX, s3_env.endpoint, "us-east-1"), spill_root=tmp_path)


def test_missing_credentials_are_refused_at_start(s3_env: MotoS3, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "absent"))
    with pytest.raises(StorageConfigError, match="no credentials for --storage-backend s3"):
        S3ContentStore(S3Location(s3_env.new_bucket(), PREFIX, s3_env.endpoint, "us-east-1"), spill_root=tmp_path)


def test_a_bucket_removed_after_start_makes_readyz_fail(s3_env: MotoS3, bucket: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "spill"))
    harness = make_server(tmp_path, s3=S3Location(bucket, PREFIX, s3_env.endpoint, "us-east-1"))
    with harness.client:
        assert harness.client.get("/readyz").status_code == 200
        s3_env.client().delete_bucket(Bucket=bucket)
        ready = harness.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["detail"] == f"bucket {bucket!r} does not exist at {s3_env.endpoint}"
    assert ready.json()["value"] == f"s3://{bucket}/{PREFIX} at {s3_env.endpoint}"
    harness.app.state.server.store.close()


def test_an_unreachable_store_is_503_with_retry_after_and_not_ready(s3_env: MotoS3, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "spill"))
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    harness = make_server(tmp_path, s3=S3Location("any-bucket", PREFIX, closed, "us-east-1"))  # starts anyway
    with harness.client:
        stored = harness.client.post("/v1/files", content=b"not stored\n")
        read = harness.client.get("/v1/files/" + "a" * 64)
        ready = harness.client.get("/readyz")
    assert (stored.status_code, stored.json()["error"], stored.headers["retry-after"]) == (
        503, "storage_unavailable", "5")
    assert "127.0.0.1" not in stored.text, "the store's address is for the log, not for clients"
    assert (read.status_code, read.json()["error"]) == (503, "storage_unavailable")
    assert ready.status_code == 503 and "HeadBucket 'any-bucket'" in ready.json()["detail"]
    logged = [line["error"] for line in harness.log_lines()
              if line.get("msg") == "object store unavailable: request refused"]
    assert len(logged) == 2 and logged[0].startswith("storing mime-storage/objects/")
    assert all("EndpointConnectionError" in error for error in logged)
    harness.app.state.server.store.close()


def test_the_region_comes_from_aws_region(s3_env: MotoS3, bucket: str, tmp_path: Path) -> None:
    from mime_server import __main__ as server_cli

    args = server_cli.parse_args(["--storage-backend", "s3", "--s3-bucket", bucket],
                                 {"AWS_REGION": "eu-west-3"})
    assert args.s3.region == "eu-west-3"
    store = S3ContentStore(S3Location(bucket, PREFIX, s3_env.endpoint, "eu-west-3"), spill_root=tmp_path)
    assert store.client.meta.region_name == "eu-west-3"
    store.close()


# -- processes ------------------------------------------------------------------------------------


def run_python(code: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**env, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_filesystem_server_never_imports_boto3(tmp_path: Path) -> None:
    code = ("import sys; from pathlib import Path; from mime_server.app import ServerSettings, create_app; "
            f"create_app(ServerSettings(storage=Path({str(tmp_path)!r})));"
            "print(sorted(m for m in ('boto3', 'botocore', 's3transfer') if m in sys.modules))")
    assert run_python(code, {**os.environ, "OTEL_TRACES_EXPORTER": "none"}) == "[]"


def test_a_server_process_on_s3_reads_its_credentials_file_and_serves(s3_env: MotoS3, bucket: str,
                                                                      tmp_path: Path) -> None:
    port = free_port()
    env = {**s3_env.process_env(), "OTEL_TRACES_EXPORTER": "none", "PYTHONPATH": str(REPO),
           "TMPDIR": str(tmp_path), "MIME_STORAGE": "/data"}  # the image's default, ignored by this backend
    process = subprocess.Popen([sys.executable, "-m", "mime_server", "--port", str(port), "--storage-backend", "s3",
                                "--s3-bucket", bucket, "--s3-prefix", PREFIX, "--s3-endpoint", s3_env.endpoint],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_listening(port, process)
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/readyz").json() == {"status": "ok"}
        created = httpx.post(f"{url}/v1/files", content=PNG_1x1)
        assert created.status_code == 201
        assert keys(s3_env, bucket) == [f"{PREFIX}objects/{created.json()['id']}"]
        assert httpx.get(url + created.headers["location"]).content == PNG_1x1
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_server_process_stops_at_start_on_a_missing_bucket(s3_env: MotoS3) -> None:
    env = {**s3_env.process_env(), "OTEL_TRACES_EXPORTER": "none", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "mime_server", "--port", str(free_port()), "--storage-backend",
                           "s3", "--s3-bucket", "absent-bucket", "--s3-endpoint", s3_env.endpoint],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"mime-server: --s3-bucket 'absent-bucket': no such bucket at {s3_env.endpoint}")


def test_settings_name_exactly_one_backend() -> None:
    with pytest.raises(ValueError, match="exactly one of storage"):
        create_app(ServerSettings())
